/**
 * The ledger suite on PostgreSQL, in a throwaway cluster: one fresh database per test, and a
 * second ledger on its own pool (a second Atlas process) for the concurrency tests.
 *
 * When PostgreSQL cannot be started, the suite fails on CI with the reason and is skipped
 * elsewhere with the reason printed.
 */
import { randomBytes } from 'node:crypto'
import { Kysely } from 'kysely'
import { KyselyLedger } from '../../src/billing/kysely-ledger.ts'
import { KyselyMetadataStore } from '../../src/metadata/kysely-store.ts'
import { createPostgresDialect, createPostgresPool } from '../../src/metadata/postgres.ts'
import type { Database } from '../../src/metadata/schema.ts'
import { SecretBox } from '../../src/metadata/secret-box.ts'
import { postgresForFile } from '../fixtures/postgres-suite.ts'
import { ledgerTests } from './ledger.ts'

const postgres = await postgresForFile('the ledger suite')

function store (url: string): KyselyMetadataStore {
  const db = new Kysely<Database>({ dialect: createPostgresDialect(createPostgresPool({ url })) })
  return new KyselyMetadataStore({ db, dialect: 'postgres', secretBox: new SecretBox(randomBytes(32)) })
}

if (postgres.unavailable === undefined) {
  ledgerTests('postgres', {
    async setup () {
      const url = await postgres.createDatabase()
      const a = store(url)
      await a.migrate()
      const b = store(url)
      return {
        ledger: new KyselyLedger({ db: a.db, dialect: 'postgres' }),
        second: new KyselyLedger({ db: b.db, dialect: 'postgres' }),
        createCustomer: async (id) => { await a.createAccount({ id, name: id }) },
        teardown: async () => {
          await a.close()
          await b.close()
        }
      }
    }
  })
}
