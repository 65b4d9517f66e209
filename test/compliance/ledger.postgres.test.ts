/**
 * The ledger suite on PostgreSQL, in a throwaway cluster: one fresh database per test, and a
 * second ledger on its own pool (a second Atlas process) for the concurrency tests.
 *
 * When PostgreSQL cannot be started, the suite fails on CI with the reason and is skipped
 * elsewhere with the reason printed.
 */
import { randomBytes } from 'node:crypto'
import { Kysely } from 'kysely'
import pg from 'pg'
import { afterAll, describe, it } from 'vitest'
import { KyselyLedger } from '../../src/billing/kysely-ledger.ts'
import { KyselyMetadataStore } from '../../src/metadata/kysely-store.ts'
import { createPostgresDialect, createPostgresPool } from '../../src/metadata/postgres.ts'
import type { Database } from '../../src/metadata/schema.ts'
import { SecretBox } from '../../src/metadata/secret-box.ts'
import { startPostgres, type PostgresCluster } from '../fixtures/postgres.ts'
import { ledgerTests } from './ledger.ts'

const onCi = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false'

let cluster: PostgresCluster | undefined
let unavailable: string | undefined
try {
  cluster = await startPostgres()
} catch (err) {
  unavailable = (err as Error).message
}

afterAll(async () => {
  await cluster?.stop()
})

let databases = 0

async function createDatabase (): Promise<string> {
  if (cluster === undefined) throw new Error('no cluster')
  const name = `atlas_ledger_${process.pid}_${++databases}`
  const client = new pg.Client({ connectionString: cluster.url })
  await client.connect()
  try {
    await client.query(`create database ${name}`)
  } finally {
    await client.end()
  }
  const url = new URL(cluster.url)
  url.pathname = `/${name}`
  return url.toString()
}

function store (url: string): KyselyMetadataStore {
  const db = new Kysely<Database>({ dialect: createPostgresDialect(createPostgresPool({ url })) })
  return new KyselyMetadataStore({ db, dialect: 'postgres', secretBox: new SecretBox(randomBytes(32)) })
}

if (unavailable !== undefined) {
  if (onCi) {
    describe('ledger compliance: postgres', () => {
      it('has a PostgreSQL to run against', () => {
        throw new Error(`PostgreSQL is required on CI but could not be started: ${unavailable}`)
      })
    })
  } else {
    console.warn(`Skipping the PostgreSQL ledger suite: ${unavailable}`)
  }
}

if (unavailable === undefined) {
  ledgerTests('postgres', {
    async setup () {
      const url = await createDatabase()
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
