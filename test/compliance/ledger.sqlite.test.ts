/**
 * The ledger suite on SQLite (node:sqlite), a fresh database file per test.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KyselyLedger } from '../../src/billing/kysely-ledger.ts'
import { createMetadataStore, KyselyMetadataStore } from '../../src/metadata/index.ts'
import { ledgerTests } from './ledger.ts'

ledgerTests('sqlite', {
  async setup () {
    const dir = await mkdtemp(join(tmpdir(), 'atlas-ledger-'))
    const store = await createMetadataStore({ dataDir: dir, secretKey: randomBytes(32) })
    if (!(store instanceof KyselyMetadataStore)) throw new TypeError('expected a KyselyMetadataStore')
    return {
      ledger: new KyselyLedger({ db: store.db, dialect: 'sqlite' }),
      createCustomer: async (id) => { await store.createAccount({ id, name: id }) },
      teardown: async () => {
        await store.close()
        await rm(dir, { recursive: true, force: true })
      }
    }
  }
})
