import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Kysely, sql } from 'kysely'
import type { ColumnType, Generated } from 'kysely'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { classifyDbError } from '../../../src/metadata/db-errors.ts'
import { createMetadataStore } from '../../../src/metadata/index.ts'
import { KyselyMetadataStore } from '../../../src/metadata/kysely-store.ts'
import { MIGRATION_TABLE, MIGRATIONS } from '../../../src/metadata/migrations/index.ts'
import { NodeSqliteDialect } from '../../../src/metadata/sqlite-dialect.ts'

interface TestDb {
  parent: { id: Generated<number>, name: string, flag: ColumnType<number, boolean | undefined, boolean> }
  child: { id: number, parent_id: number }
}

describe('NodeSqliteDialect', () => {
  let dir: string
  let db: Kysely<TestDb>

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-sqlite-'))
    db = new Kysely<TestDb>({ dialect: new NodeSqliteDialect({ path: join(dir, 'test.db'), busyTimeoutMs: 1234, statementCacheSize: 2 }) })
    await sql`create table parent (id integer primary key, name text not null, flag boolean not null default 0)`.execute(db)
    await sql`create table child (id integer primary key, parent_id integer not null references parent (id))`.execute(db)
  })

  afterEach(async () => {
    await db.destroy()
    await rm(dir, { recursive: true, force: true })
  })

  it('opens with WAL, the busy timeout, foreign keys on and synchronous NORMAL', async () => {
    const pragma = async (name: string): Promise<unknown> => Object.values((await sql.raw(`pragma ${name}`).execute(db)).rows[0] as object)[0]
    expect(await pragma('journal_mode')).toBe('wal')
    expect(await pragma('busy_timeout')).toBe(1234)
    expect(await pragma('foreign_keys')).toBe(1)
    expect(await pragma('synchronous')).toBe(1)
  })

  it('returns rows for queries and RETURNING, counts and ids for the rest', async () => {
    const inserted = await db.insertInto('parent').values({ name: 'a', flag: true }).executeTakeFirst()
    expect(inserted.insertId).toBe(1n)
    expect(inserted.numInsertedOrUpdatedRows).toBe(1n)
    const returned = await db.insertInto('parent').values({ name: 'b', flag: false }).returning(['id', 'name', 'flag']).execute()
    expect(returned).toEqual([{ id: 2, name: 'b', flag: 0 }])
    const updated = await db.updateTable('parent').set({ name: 'z' }).executeTakeFirst()
    expect(updated.numUpdatedRows).toBe(2n)
    const rows = await db.selectFrom('parent').selectAll().orderBy('id').execute()
    expect(rows).toEqual([{ id: 1, name: 'z', flag: 1 }, { id: 2, name: 'z', flag: 0 }])
    // Ordinary objects, not node:sqlite's null-prototype rows
    expect(Object.getPrototypeOf(rows[0])).toBe(Object.prototype)
    // More distinct statements than the cache holds, twice over
    for (let round = 0; round < 2; round++) {
      for (const id of [1, 2]) {
        expect((await db.selectFrom('parent').select('id').where('id', '=', id).executeTakeFirst())?.id).toBe(id)
        expect((await db.selectFrom('parent').select('name').where('id', '=', id).executeTakeFirst())?.name).toBe('z')
        expect(await db.selectFrom('child').selectAll().execute()).toEqual([])
      }
    }
  })

  it('enforces foreign keys, with an error the store can classify', async () => {
    const err = await db.insertInto('child').values({ id: 1, parent_id: 99 }).execute().then(() => undefined, (e: unknown) => e)
    expect(classifyDbError(err)?.kind).toBe('foreign-key')
    await db.insertInto('parent').values({ id: 1, name: 'p' }).execute()
    const dup = await db.insertInto('parent').values({ id: 1, name: 'q' }).execute().then(() => undefined, (e: unknown) => e)
    expect(classifyDbError(dup)?.kind).toBe('unique')
  })

  it('runs one transaction at a time; nothing sees a transaction half done', async () => {
    const seen: number[] = []
    const count = async (): Promise<number> => Number((await db.selectFrom('parent').select(eb => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)
    const writer = db.transaction().execute(async trx => {
      await trx.insertInto('parent').values({ name: 'one' }).execute()
      await sleep(30)
      await trx.insertInto('parent').values({ name: 'two' }).execute()
    })
    await sleep(5)
    const reader = count().then(n => { seen.push(n) })
    const other = db.transaction().execute(async trx => {
      seen.push(Number((await trx.selectFrom('parent').select(eb => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n))
    })
    await Promise.all([writer, reader, other])
    expect(seen).toEqual([2, 2])
  })

  it('rolls back a transaction that throws, and savepoints', async () => {
    await expect(db.transaction().execute(async trx => {
      await trx.insertInto('parent').values({ name: 'lost' }).execute()
      throw new Error('boom')
    })).rejects.toThrow('boom')
    expect(await db.selectFrom('parent').selectAll().execute()).toEqual([])

    const trx = await db.startTransaction().execute()
    await trx.insertInto('parent').values({ name: 'kept' }).execute()
    const sp = await trx.savepoint('before "quoted"').execute()
    await sp.insertInto('parent').values({ name: 'undone' }).execute()
    await sp.rollbackToSavepoint('before "quoted"').execute()
    await trx.commit().execute()
    expect((await db.selectFrom('parent').select('name').execute()).map(r => r.name)).toEqual(['kept'])
  })

  it('streams rows in chunks', async () => {
    for (let i = 0; i < 25; i++) await db.insertInto('parent').values({ name: `n${i}` }).execute()
    const names: string[] = []
    for await (const row of db.selectFrom('parent').select('name').orderBy('id').stream(10)) names.push(row.name)
    expect(names).toEqual(Array.from({ length: 25 }, (_, i) => `n${i}`))
  })
})

describe('SQLite shared by several processes', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-sqlite-mp-'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('migrates once and keeps counts exact when processes write at once', async () => {
    const path = join(dir, 'shared.db')
    const writer = fileURLToPath(new URL('./fixtures/sqlite-writer.ts', import.meta.url))
    const workers = 3
    const perWorker = 40
    await Promise.all(Array.from({ length: workers }, async (_, i) => {
      await promisify(execFile)(process.execPath, [writer, path, String(i), String(perWorker)])
    }))
    const store = await createMetadataStore({ url: `sqlite:${path}`, dataDir: dir, secretKey: new Uint8Array(32) })
    try {
      expect((await store.getContent('bafkreishared'))?.refCount).toBe(workers * perWorker)
      expect((await store.listObjects({ bucket: 'bucket' })).objects).toHaveLength(workers * perWorker)
      if (!(store instanceof KyselyMetadataStore)) throw new TypeError('expected a KyselyMetadataStore')
      expect(await store.db.selectFrom(MIGRATION_TABLE as any).selectAll().execute()).toHaveLength(Object.keys(MIGRATIONS).length)
    } finally {
      await store.close()
    }
  })
})
