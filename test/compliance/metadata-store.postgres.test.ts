/**
 * The metadata store suite on PostgreSQL, one fresh database per test in a throwaway cluster,
 * plus what only a server shows: two processes (two pools) migrating and writing at once.
 *
 * When PostgreSQL cannot be started, the suite fails on CI (`CI` set) with the reason, and is
 * skipped elsewhere with the reason printed. It never passes without running.
 */
import { randomBytes } from 'node:crypto'
import { Kysely, sql } from 'kysely'
import pg from 'pg'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createMetadataStore } from '../../src/metadata/index.ts'
import { KyselyMetadataStore } from '../../src/metadata/kysely-store.ts'
import { migrateTo, MIGRATION_TABLE, MIGRATIONS } from '../../src/metadata/migrations/index.ts'
import { createPostgresDialect, createPostgresPool } from '../../src/metadata/postgres.ts'
import type { Database } from '../../src/metadata/schema.ts'
import { SecretBox } from '../../src/metadata/secret-box.ts'
import type { Part, PutPartInput } from '../../src/metadata/store.ts'
import { postgresForFile } from '../fixtures/postgres-suite.ts'
import { metadataStoreTests, putInput, testContent } from './metadata-store.ts'

const postgres = await postgresForFile('the metadata store suite')
const { createDatabase } = postgres
let shared: string | undefined

/**
 * One migrated database for the shared suite, emptied before each test: truncating its tables
 * costs a fraction of creating and migrating a database per test. The migrations themselves are
 * tested on empty databases below.
 */
async function emptiedSharedDatabase (): Promise<string> {
  if (shared === undefined) {
    shared = await createDatabase()
    const store = rawStore(shared, randomBytes(32))
    await store.migrate()
    await store.close()
  }
  await postgres.admin(async client => await client.query('truncate chain_withdrawals, chain_deposits, chain_challenges, chain_wallets, chain_cursors, billing_status_events, storage_periods, storage_intervals, ledger_holds, ledger_postings, ledger_transactions, ledger_accounts, multipart_parts, multipart_uploads, objects, content_locations, contents, buckets, access_keys, accounts'), shared)
  return shared
}

function rawStore (url: string, secretKey: Uint8Array, logger?: { warn(...args: unknown[]): void }): KyselyMetadataStore {
  const db = new Kysely<Database>({ dialect: createPostgresDialect(createPostgresPool({ url })) })
  return new KyselyMetadataStore({ db, dialect: 'postgres', secretBox: new SecretBox(secretKey), logger })
}

const suite = postgres.unavailable === undefined ? describe : describe.skip

suite('postgres', () => {
  metadataStoreTests('postgres', {
    async setup () {
      return await createMetadataStore({ url: await emptiedSharedDatabase(), dataDir: '/nonexistent', secretKey: randomBytes(32) })
    },
    async teardown (store) {
      await store.close()
    },
    async rawAccessKeyRow (store, accessKeyId) {
      if (!(store instanceof KyselyMetadataStore)) throw new TypeError('expected a KyselyMetadataStore')
      return await store.db.selectFrom('access_keys').selectAll().where('access_key_id', '=', accessKeyId).executeTakeFirst()
    },
    async storeAtMigration (migration) {
      const store = rawStore(await createDatabase(), randomBytes(32))
      await migrateTo(store.db, 'postgres', migration)
      return { store, db: store.db }
    }
  })

  describe('PostgreSQL specifics', () => {
    const key = randomBytes(32)
    let stores: KyselyMetadataStore[] = []
    let url: string
    /** What the stores logged: each retried transaction (a deadlock, say) is one entry */
    let warnings: unknown[][] = []

    beforeEach(async () => {
      url = await createDatabase()
      warnings = []
      const logger = { warn: (...args: unknown[]) => { warnings.push(args) } }
      // Two stores with two pools: two gateway replicas sharing one database
      stores = [rawStore(url, key, logger), rawStore(url, key, logger)]
    })

    afterEach(async () => {
      await Promise.all(stores.map(async s => { await s.close() }))
    })

    it('migrates from two processes at once, exactly once', async () => {
      const [a, b] = stores as [KyselyMetadataStore, KyselyMetadataStore]
      await Promise.all([a.migrate(), b.migrate(), a.migrate(), b.migrate()])
      const applied = await a.db.selectFrom(MIGRATION_TABLE as any).selectAll().execute()
      expect(applied.map(r => (r as { name: string }).name).sort()).toEqual(Object.keys(MIGRATIONS).sort())
      await a.createAccount({ id: 'acct', name: 'A' })
      expect(await b.getAccount('acct')).not.toBeNull()
    })

    it('keeps counts exact with puts and deletes from two pools at once', async () => {
      const [a, b] = stores as [KyselyMetadataStore, KyselyMetadataStore]
      await a.migrate()
      await a.createAccount({ id: 'owner', name: 'Owner' })
      await a.createBucket({ name: 'bucket', ownerId: 'owner', backends: ['ipfs'], public: false })
      const shared = testContent('shared')
      const x = testContent('x')
      const y = testContent('y')

      // Same content from both replicas under distinct keys, and cross-replacements of two hot
      // keys between two contents (the pattern that deadlocks without a fixed lock order)
      await Promise.all([
        ...Array.from({ length: 30 }, async (_, i) => await (i % 2 === 0 ? a : b).putObject(putInput('bucket', `k${i}`, shared))),
        ...Array.from({ length: 20 }, async (_, i) => await (i % 2 === 0 ? a : b).putObject(putInput('bucket', i % 4 < 2 ? 'hot1' : 'hot2', i % 3 === 0 ? x : y)))
      ])
      expect((await a.getContent(shared.id))?.refCount).toBe(30)
      const hot = [await a.getObject('bucket', 'hot1'), await a.getObject('bucket', 'hot2')]
      for (const content of [x, y]) {
        expect((await b.getContent(content.id))?.refCount).toBe(hot.filter(o => o?.contentId === content.id).length)
      }

      const deletes = await Promise.all(Array.from({ length: 30 }, async (_, i) => await (i % 2 === 0 ? b : a).deleteObject('bucket', `k${i}`)))
      expect(deletes.filter(d => d?.orphaned !== null && d?.orphaned !== undefined)).toHaveLength(1)
      expect((await a.getContent(shared.id))?.refCount).toBe(0)
    })

    it('lets a put that revives an orphan win against collection of it', async () => {
      const [a, b] = stores as [KyselyMetadataStore, KyselyMetadataStore]
      await a.migrate()
      await a.createAccount({ id: 'owner', name: 'Owner' })
      await a.createBucket({ name: 'bucket', ownerId: 'owner', backends: ['ipfs'], public: false })
      for (let round = 0; round < 15; round++) {
        const content = testContent(`gc-${round}`)
        await a.putObject(putInput('bucket', `old-${round}`, content))
        await a.deleteObject('bucket', `old-${round}`)
        const [put, collected] = await Promise.all([
          a.putObject(putInput('bucket', `new-${round}`, content)),
          b.deleteContentIfOrphaned(content.id)
        ])
        expect(put.object.contentId).toBe(content.id)
        expect(typeof collected).toBe('boolean')
        // Whichever ran first, the object's content exists, counted once, with its location
        const stored = await b.getContent(content.id)
        expect(stored?.refCount).toBe(1)
        expect(stored?.locations).toEqual(content.locations)
      }
    })

    it('retries a put whose content was collected while it waited', async () => {
      const [a, b] = stores as [KyselyMetadataStore, KyselyMetadataStore]
      await a.migrate()
      await a.createAccount({ id: 'owner', name: 'Owner' })
      await a.createBucket({ name: 'bucket', ownerId: 'owner', backends: ['ipfs'], public: false })
      const orphan = testContent('orphan')
      const current = testContent('current')
      await a.putObject(putInput('bucket', 'k', current))
      await a.putObject(putInput('bucket', 'tmp', orphan))
      await a.deleteObject('bucket', 'tmp')

      // Hold the object row so that the put stops after seeing the orphan's row exist (step 2)
      // and before pointing the object at it (step 3); collect the orphan meanwhile
      const blocker = new pg.Client({ connectionString: url })
      await blocker.connect()
      try {
        await blocker.query('begin')
        await blocker.query(`select 1 from objects where bucket = 'bucket' and key = 'k' for update`)
        const put = a.putObject(putInput('bucket', 'k', orphan))
        for (let i = 0; i < 200; i++) {
          const { rows } = await blocker.query(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()`)
          if ((rows[0] as { n: number }).n > 0) break
          await new Promise(resolve => setTimeout(resolve, 10))
        }
        expect(await b.deleteContentIfOrphaned(orphan.id)).toBe(true)
        await blocker.query('commit')
        const result = await put
        expect(result.object.contentId).toBe(orphan.id)
        expect(result.orphaned?.id).toBe(current.id)
      } finally {
        await blocker.end()
      }
      const revived = await a.getContent(orphan.id)
      expect(revived?.refCount).toBe(1)
      expect(revived?.locations).toEqual(orphan.locations)
      expect((await a.getContent(current.id))?.refCount).toBe(0)
    })

    it('completes, aborts, records parts and deletes buckets from two pools in one lock order', async () => {
      const [a, b] = stores as [KyselyMetadataStore, KyselyMetadataStore]
      await a.migrate()
      await a.createAccount({ id: 'owner', name: 'Owner' })
      const part = (uploadId: string, partNumber: number): PutPartInput => ({
        uploadId, partNumber, size: 1, etag: `etag-${partNumber}`, checksums: {}, stagingPath: `/staging/${uploadId}/${partNumber}`
      })
      const codeOf = (outcome: PromiseSettledResult<unknown>): string | undefined =>
        outcome.status === 'rejected' ? (outcome.reason as { code?: string }).code : undefined

      for (let round = 0; round < 12; round++) {
        const bucket = `race-${round}`
        await a.createBucket({ name: bucket, ownerId: 'owner', backends: ['ipfs'], public: false })
        const completing = await a.createMultipartUpload({ bucket, key: 'k', initiatorId: 'owner', contentType: 'x', metadata: {} })
        const aborting = await b.createMultipartUpload({ bucket, key: 'j', initiatorId: 'owner', contentType: 'x', metadata: {} })
        const recorded = [part(completing.uploadId, 1), part(completing.uploadId, 2), part(aborting.uploadId, 1)]
        for (const p of recorded) await a.putPart(p)
        const late = [part(completing.uploadId, 3), part(aborting.uploadId, 2)]
        const content = testContent(`race-${round}`)

        const [completed, deleted, aborted, ...puts] = await Promise.allSettled([
          a.completeMultipartUpload({ uploadId: completing.uploadId, object: putInput(bucket, 'k', content) }),
          b.deleteBucket(bucket),
          a.abortMultipartUpload(aborting.uploadId),
          ...late.map(async (p, i) => await (i % 2 === 0 ? b : a).putPart(p))
        ])

        // Either the completion or the bucket deletion won, never both
        expect([completed?.status, deleted?.status].filter(s => s === 'fulfilled')).toHaveLength(1)
        if (completed?.status === 'fulfilled') {
          expect(codeOf(deleted as PromiseSettledResult<unknown>)).toBe('BucketNotEmpty')
          expect((await a.getObject(bucket, 'k'))?.contentId).toBe(content.id)
          expect((await a.getContent(content.id))?.refCount).toBe(1)
        } else {
          expect(['NoSuchBucket', 'NoSuchUpload']).toContain(codeOf(completed as PromiseSettledResult<unknown>))
          expect(await a.getBucket(bucket)).toBeNull()
          expect(await a.getContent(content.id)).toBeNull()
        }
        for (const p of puts) if (p.status === 'rejected') expect(codeOf(p)).toBe('NoSuchUpload')
        expect(aborted?.status).toBe('fulfilled')

        // Every part recorded is handed back exactly once: by the completion, the abort, the
        // bucket deletion, or still stored
        recorded.push(...late.filter((_, i) => puts[i]?.status === 'fulfilled'))
        const returned: Part[] = [
          ...(completed?.status === 'fulfilled' ? completed.value.parts : []),
          ...(deleted?.status === 'fulfilled' ? deleted.value.abortedParts : []),
          ...(aborted?.status === 'fulfilled' ? aborted.value ?? [] : [])
        ]
        for (const u of [completing, aborting]) {
          if (await a.getMultipartUpload(u.uploadId) !== null) returned.push(...(await a.listParts(u.uploadId)).parts)
        }
        expect(returned.map(p => p.stagingPath).sort()).toEqual(recorded.map(p => p.stagingPath).sort())
      }
      // No transaction had to be retried: the fixed lock order leaves nothing to deadlock
      expect(warnings).toEqual([])
    })

    it('declares the key columns COLLATE "C"', async () => {
      const a = stores[0] as KyselyMetadataStore
      await a.migrate()
      const columns = await sql<{ table_name: string, column_name: string, collation_name: string | null }>`
        select table_name, column_name, collation_name from information_schema.columns
        where table_name in ('objects', 'buckets', 'multipart_uploads', 'multipart_parts') and column_name in ('key', 'bucket', 'name', 'upload_id')
        order by table_name, column_name`.execute(a.db)
      expect(columns.rows.map(r => [r.table_name, r.column_name, r.collation_name])).toEqual([
        ['buckets', 'name', 'C'],
        ['multipart_parts', 'upload_id', 'C'],
        ['multipart_uploads', 'bucket', 'C'],
        ['multipart_uploads', 'key', 'C'],
        ['multipart_uploads', 'upload_id', 'C'],
        ['objects', 'bucket', 'C'],
        ['objects', 'key', 'C']
      ])
    })

    it('lists bytewise in a database whose default collation is linguistic', async ctx => {
      let url = ''
      try {
        url = await createDatabase({ createSql: "template template0 encoding 'UTF8' locale_provider icu icu_locale 'en-US' locale 'C'" })
      } catch (err) {
        ctx.skip(`this PostgreSQL cannot create an ICU database: ${(err as Error).message}`)
      }
      const store = rawStore(url, key)
      try {
        // The database itself sorts linguistically: 'a' before 'B'
        const { rows } = await sql<{ k: string }>`select k from (values ('B'), ('a')) as t(k) order by k`.execute(store.db)
        expect(rows.map(r => r.k)).toEqual(['a', 'B'])
        await store.migrate()
        await store.createAccount({ id: 'owner', name: 'Owner' })
        await store.createBucket({ name: 'bucket', ownerId: 'owner', backends: ['ipfs'], public: false })
        for (const k of ['a', 'B', 'é', 'Z', '_']) await store.putObject(putInput('bucket', k, testContent(k)))
        expect((await store.listObjects({ bucket: 'bucket' })).objects.map(o => o.key)).toEqual(['B', 'Z', '_', 'a', 'é'])
        expect((await store.listObjects({ bucket: 'bucket', after: 'Z' })).objects.map(o => o.key)).toEqual(['_', 'a', 'é'])
      } finally {
        await store.close()
      }
    })

    it('reads int8 beyond 2^53 as bigint rather than rounding it', async () => {
      const a = stores[0] as KyselyMetadataStore
      const { rows } = await sql<{ small: number | bigint, big: number | bigint }>`select 42::int8 as small, 9007199254740993::int8 as big`.execute(a.db)
      expect(rows[0]?.small).toBe(42)
      expect(rows[0]?.big).toBe(9007199254740993n)
    })
  })
})
