/**
 * What the compliance suite cannot see from outside: how much of a table a listing reads. A
 * Kysely plugin counts the selects on the table and the rows they return.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kysely } from 'kysely'
import type { KyselyPlugin, QueryId } from 'kysely'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { KyselyMetadataStore } from '../../../src/metadata/kysely-store.ts'
import type { Database } from '../../../src/metadata/schema.ts'
import { SecretBox } from '../../../src/metadata/secret-box.ts'
import { NodeSqliteDialect } from '../../../src/metadata/sqlite-dialect.ts'

/** Counts the selects from `table` and the rows they return into `reads`. */
function readCounter (table: string, reads: () => { queries: number, rows: number }): KyselyPlugin {
  const selects = new WeakSet<QueryId>()
  return {
    transformQuery: ({ node, queryId }) => {
      if (node.kind === 'SelectQueryNode' && JSON.stringify(node.from).includes(`"name":"${table}"`)) selects.add(queryId)
      return node
    },
    transformResult: async ({ queryId, result }) => {
      if (selects.has(queryId)) {
        reads().queries++
        reads().rows += result.rows.length
      }
      return result
    }
  }
}

describe('KyselyMetadataStore listing', () => {
  let dir: string
  let store: KyselyMetadataStore
  let reads: { queries: number, rows: number }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-list-'))
    reads = { queries: 0, rows: 0 }
    const counter = readCounter('objects', () => reads)
    const db = new Kysely<Database>({ dialect: new NodeSqliteDialect({ path: join(dir, 'atlas.db') }), plugins: [counter] })
    store = new KyselyMetadataStore({ db, dialect: 'sqlite', secretBox: new SecretBox(randomBytes(32)) })
    await store.migrate()
    await store.createAccount({ id: 'owner', name: 'Owner' })
    await store.createBucket({ name: 'bucket', ownerId: 'owner', backends: ['ipfs'], public: false })
    const content = { id: 'bafkreicontent', size: 1, locations: [] }
    const keys = [
      ...Array.from({ length: 1500 }, (_, i) => `big/${String(i).padStart(4, '0')}`),
      'middle',
      ...Array.from({ length: 300 }, (_, i) => `\u{1F600}/${i}`),
      'tail'
    ]
    for (const key of keys) await store.putObject({ bucket: 'bucket', key, content, etag: 'e', contentType: 'x', metadata: {} })
    reads = { queries: 0, rows: 0 }
  })

  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('seeks past a rolled-up prefix instead of reading the keys under it', async () => {
    const page = await store.listObjects({ bucket: 'bucket', delimiter: '/', limit: 2 })
    expect(page).toMatchObject({ commonPrefixes: ['big/'], truncated: true, next: 'middle' })
    expect(page.objects.map(o => o.key)).toEqual(['middle'])
    // Pages of limit + 1 rows: one inside big/, then one from past it
    expect(reads.rows).toBeLessThanOrEqual(6)

    reads = { queries: 0, rows: 0 }
    const rest = await store.listObjects({ bucket: 'bucket', delimiter: '/', after: page.next })
    expect(rest).toMatchObject({ objects: [{ key: 'tail' }], commonPrefixes: ['\u{1F600}/'], truncated: false })
    expect(reads.rows).toBeLessThan(1000 + 10)
    expect(reads.queries).toBeLessThanOrEqual(3)
  })

  it('reads at most a page of rows per round trip with the default limit', async () => {
    const all = await store.listObjects({ bucket: 'bucket', delimiter: '/' })
    expect(all.commonPrefixes).toEqual(['big/', '\u{1F600}/'])
    expect(all.objects.map(o => o.key)).toEqual(['middle', 'tail'])
    // Without the seek this would read all 1,802 rows
    expect(reads.rows).toBeLessThanOrEqual(1000 + 300 + 2)
    expect(reads.queries).toBeLessThanOrEqual(3)
  })
})

describe('KyselyMetadataStore multipart upload listing', () => {
  let dir: string
  let store: KyselyMetadataStore
  let reads: { queries: number, rows: number }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-mpu-list-'))
    reads = { queries: 0, rows: 0 }
    const db = new Kysely<Database>({ dialect: new NodeSqliteDialect({ path: join(dir, 'atlas.db') }), plugins: [readCounter('multipart_uploads', () => reads)] })
    store = new KyselyMetadataStore({ db, dialect: 'sqlite', secretBox: new SecretBox(randomBytes(32)) })
    await store.migrate()
    await store.createAccount({ id: 'owner', name: 'Owner' })
    await store.createBucket({ name: 'bucket', ownerId: 'owner', backends: ['ipfs'], public: false })
    // Several uploads per key under big/, so that pages end in the middle of a key
    const keys = [...Array.from({ length: 1200 }, (_, i) => `big/${String(i % 400).padStart(3, '0')}`), 'middle', 'middle', 'tail']
    for (const key of keys) await store.createMultipartUpload({ bucket: 'bucket', key, initiatorId: 'owner', contentType: 'x', metadata: {} })
    reads = { queries: 0, rows: 0 }
  })

  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('seeks past a rolled-up prefix instead of reading the uploads under it', async () => {
    const page = await store.listMultipartUploads('bucket', { delimiter: '/', limit: 2 })
    expect(page.commonPrefixes).toEqual(['big/'])
    expect(page.uploads.map(u => u.key)).toEqual(['middle'])
    expect(page).toMatchObject({ truncated: true, nextKeyMarker: 'middle' })
    expect(reads.rows).toBeLessThanOrEqual(6)
  })

  it('pages through uploads of one key across round trips', async () => {
    const all = await store.listMultipartUploads('bucket', { prefix: 'big/' })
    expect(all.uploads).toHaveLength(1000)
    expect(all.truncated).toBe(true)
    const rest = await store.listMultipartUploads('bucket', { prefix: 'big/', keyMarker: all.nextKeyMarker, uploadIdMarker: all.nextUploadIdMarker })
    expect(rest.uploads).toHaveLength(200)
    expect(rest.truncated).toBe(false)
    const ids = [...all.uploads, ...rest.uploads].map(u => u.uploadId)
    expect(new Set(ids).size).toBe(1200)
    expect(reads.queries).toBeLessThanOrEqual(4)
  })
})
