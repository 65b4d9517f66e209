/**
 * The shared metadata store suite: every MetadataStore implementation (SQLite, PostgreSQL) must
 * pass it. `setup()` returns a fresh, empty store, migrated or not; the suite migrates it (again).
 *
 * Expected listings come from a small in-memory model (`modelList`) that follows S3's rules
 * directly (sorted keys, filter, roll up, cut at the limit), never from the store under test.
 */
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import fc from 'fast-check'
import type { Kysely } from 'kysely'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { canonicalIdFromSha256 } from '../../src/core/content-id.ts'
import { AtlasError } from '../../src/core/errors.ts'
import type { ErrorCode } from '../../src/core/errors.ts'
import { MIGRATION_TABLE, MIGRATIONS } from '../../src/metadata/migrations/index.ts'
import type {
  ContentLocation,
  ListMultipartUploadsOptions,
  ListMultipartUploadsResult,
  ListObjectsInput,
  ListObjectsResult,
  MetadataStore,
  MultipartUpload,
  Part,
  PutObjectInput,
  PutPartInput
} from '../../src/metadata/store.ts'

export interface MetadataStoreTestOptions {
  /** A fresh, empty store; the suite calls `migrate()` on it */
  setup(): Promise<MetadataStore>
  teardown(store: MetadataStore): Promise<void>
  /** The access_keys row of `accessKeyId` exactly as the database holds it */
  rawAccessKeyRow(store: MetadataStore, accessKeyId: string): Promise<Record<string, unknown> | undefined>
  /**
   * A store over a fresh database migrated up to and including `migration` only (as an older
   * release left it), with the Kysely instance to write rows in that schema; the suite migrates
   * it to the latest and tears it down with `teardown`.
   */
  storeAtMigration(migration: string): Promise<{ store: MetadataStore, db: Kysely<any> }>
}

// Helpers shared with the dialect-specific test files

/** A canonical content id for `seed`, and the content record to put with it. */
export function testContent (seed: string, locations?: ContentLocation[]): PutObjectInput['content'] {
  const bytes = Buffer.from(`content ${seed}`)
  const id = canonicalIdFromSha256(createHash('sha256').update(bytes).digest())
  return {
    id,
    size: bytes.byteLength,
    locations: locations ?? [{ backend: 'ipfs', address: `ipfs-${seed}`, extra: {} }]
  }
}

export function putInput (bucket: string, key: string, content: PutObjectInput['content'], extra: Partial<PutObjectInput> = {}): PutObjectInput {
  return { bucket, key, content, etag: `etag-${key}`, contentType: 'application/octet-stream', metadata: {}, ...extra }
}

/** Await `promise` and check it rejects with an AtlasError of `code`. */
export async function expectAtlasError (promise: Promise<unknown>, code: ErrorCode): Promise<AtlasError> {
  const outcome = await promise.then(value => ({ value }), (err: unknown) => ({ err }))
  if (!('err' in outcome)) throw new Error(`Expected AtlasError ${code}, but the call succeeded`)
  expect(outcome.err).toBeInstanceOf(AtlasError)
  expect((outcome.err as AtlasError).code).toBe(code)
  return outcome.err as AtlasError
}

/** Compare by UTF-8 bytes, written independently of the store's own helper. */
export function byteOrder (a: string, b: string): number {
  const x = new TextEncoder().encode(a)
  const y = new TextEncoder().encode(b)
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number)
  }
  return x.length - y.length
}

export interface ModelListing {
  keys: string[]
  commonPrefixes: string[]
  truncated: boolean
  next?: string
}

/**
 * S3 listing over a set of keys, by definition: keys in byte order, those under the prefix and
 * after `after`, each rolled up to prefix + up to the first delimiter after the prefix, a common
 * prefix counted once and never one equal to `after` (the caller has it already).
 */
export function modelList (allKeys: Iterable<string>, input: Omit<ListObjectsInput, 'bucket'>): ModelListing {
  const prefix = input.prefix ?? ''
  const delimiter = input.delimiter === '' ? undefined : input.delimiter
  const limit = input.limit ?? 1000
  const entries: Array<{ key: string } | { prefix: string }> = []
  let lastPrefix: string | undefined
  for (const key of [...new Set(allKeys)].sort(byteOrder)) {
    if (!key.startsWith(prefix)) continue
    if (input.after !== undefined && byteOrder(key, input.after) <= 0) continue
    const at = delimiter === undefined ? -1 : key.indexOf(delimiter, prefix.length)
    if (at >= 0 && delimiter !== undefined) {
      const common = key.slice(0, at + delimiter.length)
      if (common === input.after || common === lastPrefix) continue
      lastPrefix = common
      entries.push({ prefix: common })
    } else {
      entries.push({ key })
    }
  }
  const page = entries.slice(0, limit)
  const truncated = limit > 0 && entries.length > limit
  const result: ModelListing = {
    keys: page.flatMap(e => 'key' in e ? [e.key] : []),
    commonPrefixes: page.flatMap(e => 'prefix' in e ? [e.prefix] : []),
    truncated
  }
  const last = page.at(-1)
  if (truncated && last !== undefined) result.next = 'key' in last ? last.key : last.prefix
  return result
}

function summarise (result: ListObjectsResult): ModelListing {
  const summary: ModelListing = { keys: result.objects.map(o => o.key), commonPrefixes: result.commonPrefixes, truncated: result.truncated }
  if (result.next !== undefined) summary.next = result.next
  return summary
}

/** Follow `next` until the listing is complete; returns every page. */
async function listAll (store: MetadataStore, input: ListObjectsInput): Promise<ListObjectsResult[]> {
  const pages: ListObjectsResult[] = []
  let after = input.after
  for (let i = 0; i < 10_000; i++) {
    const page = await store.listObjects({ ...input, ...(after === undefined ? {} : { after }) })
    pages.push(page)
    if (!page.truncated) return pages
    expect(page.next).toBeDefined()
    after = page.next
  }
  throw new Error('listing did not end')
}

export interface ModelUploadListing {
  /** [key, upload id] */
  uploads: Array<[string, string]>
  commonPrefixes: string[]
  truncated: boolean
  nextKeyMarker?: string
  nextUploadIdMarker?: string
}

/**
 * S3's ListMultipartUploads over a set of uploads, by definition: by key in byte order, then by
 * upload id (creation order); after the key marker, or with an upload-id marker after that
 * upload of the marker's key; rolled up at the delimiter; a common prefix counted once and never
 * one equal to the key marker.
 */
export function modelUploadList (all: Iterable<{ key: string, uploadId: string }>, input: ListMultipartUploadsOptions): ModelUploadListing {
  const prefix = input.prefix ?? ''
  const delimiter = input.delimiter === '' ? undefined : input.delimiter
  const limit = input.limit ?? 1000
  const marker = input.keyMarker
  const idMarker = input.uploadIdMarker === '' ? undefined : input.uploadIdMarker
  const sorted = [...all].sort((a, b) => byteOrder(a.key, b.key) || (a.uploadId < b.uploadId ? -1 : a.uploadId > b.uploadId ? 1 : 0))
  const entries: Array<{ upload: [string, string] } | { prefix: string }> = []
  let lastPrefix: string | undefined
  for (const { key, uploadId } of sorted) {
    if (!key.startsWith(prefix)) continue
    if (marker !== undefined) {
      const order = byteOrder(key, marker)
      if (idMarker === undefined ? order <= 0 : order < 0 || (order === 0 && uploadId <= idMarker)) continue
    }
    const at = delimiter === undefined ? -1 : key.indexOf(delimiter, prefix.length)
    if (at >= 0 && delimiter !== undefined) {
      const common = key.slice(0, at + delimiter.length)
      if (common === marker || common === lastPrefix) continue
      lastPrefix = common
      entries.push({ prefix: common })
    } else {
      entries.push({ upload: [key, uploadId] })
    }
  }
  const page = entries.slice(0, limit)
  const truncated = limit > 0 && entries.length > limit
  const result: ModelUploadListing = {
    uploads: page.flatMap(e => 'upload' in e ? [e.upload] : []),
    commonPrefixes: page.flatMap(e => 'prefix' in e ? [e.prefix] : []),
    truncated
  }
  const last = page.at(-1)
  if (truncated && last !== undefined) {
    if ('prefix' in last) {
      result.nextKeyMarker = last.prefix
    } else {
      result.nextKeyMarker = last.upload[0]
      result.nextUploadIdMarker = last.upload[1]
    }
  }
  return result
}

function summariseUploads (result: ListMultipartUploadsResult): ModelUploadListing {
  const summary: ModelUploadListing = {
    uploads: result.uploads.map(u => [u.key, u.uploadId]),
    commonPrefixes: result.commonPrefixes,
    truncated: result.truncated
  }
  if (result.nextKeyMarker !== undefined) summary.nextKeyMarker = result.nextKeyMarker
  if (result.nextUploadIdMarker !== undefined) summary.nextUploadIdMarker = result.nextUploadIdMarker
  return summary
}

/** Follow the next markers until the upload listing is complete; returns every page. */
async function listAllUploads (store: MetadataStore, bucket: string, input: ListMultipartUploadsOptions): Promise<ListMultipartUploadsResult[]> {
  const pages: ListMultipartUploadsResult[] = []
  let markers: ListMultipartUploadsOptions = {}
  for (let i = 0; i < 10_000; i++) {
    const page = await store.listMultipartUploads(bucket, { ...input, ...markers })
    pages.push(page)
    if (!page.truncated) return pages
    expect(page.nextKeyMarker).toBeDefined()
    markers = { keyMarker: page.nextKeyMarker, uploadIdMarker: page.nextUploadIdMarker }
  }
  throw new Error('listing did not end')
}

export function metadataStoreTests (name: string, options: MetadataStoreTestOptions): void {
  describe(`MetadataStore compliance: ${name}`, () => {
    let store: MetadataStore

    beforeEach(async () => {
      store = await options.setup()
      await store.migrate()
    })

    afterEach(async () => {
      await options.teardown(store)
    })

    async function bucketWithOwner (bucket = 'bucket', owner = 'owner'): Promise<void> {
      if (await store.getAccount(owner) === null) await store.createAccount({ id: owner, name: owner })
      await store.createBucket({ name: bucket, ownerId: owner, backends: ['ipfs'], public: false })
    }

    async function refCount (content: { id: string }): Promise<number | undefined> {
      return (await store.getContent(content.id))?.refCount
    }

    describe('migrations', () => {
      it('migrate() again is a no-op that keeps the data', async () => {
        await store.createAccount({ id: 'acct', name: 'Acct' })
        await store.migrate()
        await Promise.all([store.migrate(), store.migrate()])
        expect(await store.getAccount('acct')).toMatchObject({ id: 'acct', name: 'Acct' })
        expect(store.dialect === 'sqlite' || store.dialect === 'postgres').toBe(true)
      })

      it('upgrades a database created at 0001 and keeps its objects, with no tags and no checksums', async () => {
        const { store: legacy, db } = await options.storeAtMigration('0001-initial')
        try {
          const applied = async (): Promise<string[]> => (await db.selectFrom(MIGRATION_TABLE).select('name').orderBy('name').execute()).map(r => r.name as string)
          expect(await applied()).toEqual(['0001-initial'])
          // Rows as release 0001 wrote them: its columns only
          const written = new Date('2024-05-06T07:08:09.123Z')
          const content = testContent('legacy')
          await db.insertInto('accounts').values({ id: 'owner', name: 'Owner', created_at: written.toISOString() }).execute()
          await db.insertInto('buckets').values({ name: 'old', owner_id: 'owner', backends: '["ipfs"]', public: false, created_at: written.toISOString() }).execute()
          await db.insertInto('contents').values({ id: content.id, size: content.size, ref_count: 2, created_at: written.toISOString() }).execute()
          await db.insertInto('content_locations').values({ content_id: content.id, backend: 'ipfs', address: 'ipfs-legacy', extra: '{}' }).execute()
          for (const key of ['a', 'b']) {
            await db.insertInto('objects').values({
              bucket: 'old', key, content_id: content.id, size: content.size, etag: `etag-${key}`,
              content_type: 'text/plain', metadata: '{"x-amz-meta-k":"v"}', created_at: written.toISOString()
            }).execute()
          }

          await legacy.migrate()
          expect(await applied()).toEqual(Object.keys(MIGRATIONS).sort())
          const object = await legacy.getObject('old', 'a')
          expect(object).toEqual({
            bucket: 'old',
            key: 'a',
            contentId: content.id,
            size: content.size,
            etag: 'etag-a',
            contentType: 'text/plain',
            metadata: { 'x-amz-meta-k': 'v' },
            tags: {},
            checksums: {},
            createdAt: written
          })
          expect((await legacy.listObjects({ bucket: 'old' })).objects.map(o => [o.key, o.tags, o.checksums])).toEqual([['a', {}, {}], ['b', {}, {}]])
          expect((await legacy.getContent(content.id))?.refCount).toBe(2)

          // And the new features work on the upgraded rows
          expect((await legacy.putObjectTags('old', 'a', { colour: 'blue' })).tags).toEqual({ colour: 'blue' })
          expect((await legacy.deleteObject('old', 'b'))?.orphaned).toBeNull()
          const upload = await legacy.createMultipartUpload({ bucket: 'old', key: 'new', initiatorId: 'owner', contentType: 'x', metadata: {} })
          expect(await legacy.getMultipartUpload(upload.uploadId)).toEqual(upload)
        } finally {
          await options.teardown(legacy)
        }
      })
    })

    describe('accounts', () => {
      it('creates, gets and lists accounts', async () => {
        const before = Date.now()
        const created = await store.createAccount({ id: 'b-acct', name: 'Bee' })
        await store.createAccount({ id: 'a-acct', name: 'Ay' })
        expect(created).toMatchObject({ id: 'b-acct', name: 'Bee' })
        expect(created.createdAt).toBeInstanceOf(Date)
        expect(created.createdAt.getTime()).toBeGreaterThanOrEqual(before - 1000)
        const read = await store.getAccount('b-acct')
        expect(read).toEqual(created)
        expect(await store.getAccount('nobody')).toBeNull()
        expect((await store.listAccounts()).map(a => a.id)).toEqual(['a-acct', 'b-acct'])
      })

      it('refuses a duplicate account id', async () => {
        await store.createAccount({ id: 'dup', name: 'One' })
        await expectAtlasError(store.createAccount({ id: 'dup', name: 'Two' }), 'Conflict')
        expect((await store.getAccount('dup'))?.name).toBe('One')
      })
    })

    describe('access keys', () => {
      const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'

      beforeEach(async () => {
        await store.createAccount({ id: 'acct', name: 'Acct' })
      })

      it('round-trips the secret, decrypted, while storing it sealed', async () => {
        const created = await store.createAccessKey({ accessKeyId: 'AKIDONE', accountId: 'acct', secretAccessKey: secret, tokenHash: 'hash-one' })
        expect(created).toMatchObject({ accessKeyId: 'AKIDONE', accountId: 'acct', revokedAt: null })
        expect(created.secretAccessKey).toBeUndefined()

        const read = await store.getAccessKey('AKIDONE')
        expect(read).toMatchObject({ accessKeyId: 'AKIDONE', accountId: 'acct', secretAccessKey: secret, revokedAt: null })
        expect(read?.createdAt.getTime()).toBe(created.createdAt.getTime())

        const row = await options.rawAccessKeyRow(store, 'AKIDONE')
        expect(row).toBeDefined()
        const stored = JSON.stringify(row)
        expect(stored).not.toContain(secret)
        expect(stored).not.toContain(Buffer.from(secret).toString('base64'))
        expect(stored).not.toContain(Buffer.from(secret).toString('hex'))
        expect(typeof row?.secret_enc).toBe('string')
        expect(row?.secret_enc).not.toBe(secret)

        // The same secret under another key seals to a different value (random IV, bound id)
        await store.createAccessKey({ accessKeyId: 'AKIDTWO', accountId: 'acct', secretAccessKey: secret, tokenHash: 'hash-two' })
        const other = await options.rawAccessKeyRow(store, 'AKIDTWO')
        expect(other?.secret_enc).not.toBe(row?.secret_enc)
        expect((await store.getAccessKey('AKIDTWO'))?.secretAccessKey).toBe(secret)
      })

      it('finds the active key by token hash, without its secret', async () => {
        await store.createAccessKey({ accessKeyId: 'AKIDONE', accountId: 'acct', secretAccessKey: secret, tokenHash: 'hash-one' })
        await store.createAccessKey({ accessKeyId: 'AKIDTWO', accountId: 'acct', secretAccessKey: 'other', tokenHash: 'hash-two' })
        const found = await store.getAccessKeyByTokenHash('hash-two')
        expect(found).toMatchObject({ accessKeyId: 'AKIDTWO', accountId: 'acct', revokedAt: null })
        expect(found?.secretAccessKey).toBeUndefined()
        expect(await store.getAccessKeyByTokenHash('hash-three')).toBeNull()
        expect(await store.getAccessKey('AKIDNONE')).toBeNull()
      })

      it('revokes a key once, and hides it unless asked', async () => {
        await store.createAccessKey({ accessKeyId: 'AKIDONE', accountId: 'acct', secretAccessKey: secret, tokenHash: 'hash-one' })
        await store.createAccessKey({ accessKeyId: 'AKIDTWO', accountId: 'acct', secretAccessKey: 'other', tokenHash: 'hash-two' })
        expect(await store.revokeAccessKey('AKIDONE')).toBe(true)
        expect(await store.revokeAccessKey('AKIDONE')).toBe(false)
        expect(await store.revokeAccessKey('AKIDNONE')).toBe(false)

        expect(await store.getAccessKey('AKIDONE')).toBeNull()
        expect(await store.getAccessKeyByTokenHash('hash-one')).toBeNull()
        const revoked = await store.getAccessKey('AKIDONE', { includeRevoked: true })
        expect(revoked?.revokedAt).toBeInstanceOf(Date)
        expect(revoked?.secretAccessKey).toBe(secret)
        expect(await store.getAccessKey('AKIDTWO')).not.toBeNull()

        const listed = await store.listAccessKeys('acct')
        expect(listed.map(k => [k.accessKeyId, k.revokedAt === null])).toEqual([['AKIDONE', false], ['AKIDTWO', true]])
        expect(listed.every(k => k.secretAccessKey === undefined)).toBe(true)
        expect(await store.listAccessKeys('other-account')).toEqual([])
      })

      it('refuses duplicate ids, duplicate token hashes and unknown accounts', async () => {
        await store.createAccessKey({ accessKeyId: 'AKIDONE', accountId: 'acct', secretAccessKey: secret, tokenHash: 'hash-one' })
        await expectAtlasError(store.createAccessKey({ accessKeyId: 'AKIDONE', accountId: 'acct', secretAccessKey: 'x', tokenHash: 'hash-new' }), 'Conflict')
        await expectAtlasError(store.createAccessKey({ accessKeyId: 'AKIDNEW', accountId: 'acct', secretAccessKey: 'x', tokenHash: 'hash-one' }), 'Conflict')
        await expectAtlasError(store.createAccessKey({ accessKeyId: 'AKIDNEW', accountId: 'ghost', secretAccessKey: 'x', tokenHash: 'hash-ghost' }), 'NoSuchAccount')
        expect((await store.getAccessKey('AKIDONE'))?.secretAccessKey).toBe(secret)
      })
    })

    describe('buckets', () => {
      beforeEach(async () => {
        await store.createAccount({ id: 'alice', name: 'Alice' })
        await store.createAccount({ id: 'bob', name: 'Bob' })
      })

      it('creates, gets and lists buckets per owner in byte order', async () => {
        const created = await store.createBucket({ name: 'zeta', ownerId: 'alice', backends: ['ipfs', 'bittorrent'], public: true })
        await store.createBucket({ name: 'Alpha', ownerId: 'alice', backends: ['bittorrent'], public: false })
        await store.createBucket({ name: 'beta', ownerId: 'bob', backends: ['ipfs'], public: false })
        expect(created).toMatchObject({ name: 'zeta', ownerId: 'alice', backends: ['ipfs', 'bittorrent'], public: true })
        expect(await store.getBucket('zeta')).toEqual(created)
        expect(await store.getBucket('Alpha')).toMatchObject({ public: false, backends: ['bittorrent'] })
        expect(await store.getBucket('missing')).toBeNull()
        expect((await store.listBuckets('alice')).map(b => b.name)).toEqual(['Alpha', 'zeta'])
        expect((await store.listBuckets('bob')).map(b => b.name)).toEqual(['beta'])
        expect(await store.listBuckets('carol')).toEqual([])
      })

      it('tells a bucket you own from one someone else owns', async () => {
        await store.createBucket({ name: 'shared', ownerId: 'alice', backends: ['ipfs'], public: false })
        await expectAtlasError(store.createBucket({ name: 'shared', ownerId: 'alice', backends: ['ipfs'], public: true }), 'BucketAlreadyOwnedByYou')
        await expectAtlasError(store.createBucket({ name: 'shared', ownerId: 'bob', backends: ['ipfs'], public: true }), 'BucketAlreadyExists')
        expect(await store.getBucket('shared')).toMatchObject({ ownerId: 'alice', public: false })
        await expectAtlasError(store.createBucket({ name: 'orphan', ownerId: 'carol', backends: ['ipfs'], public: false }), 'NoSuchAccount')
      })

      it('maps concurrent creates of one name: one wins, the others get the right error', async () => {
        const owners = ['alice', 'bob', 'alice', 'bob', 'alice', 'bob']
        const outcomes = await Promise.allSettled(owners.map(async ownerId => await store.createBucket({ name: 'race', ownerId, backends: ['ipfs'], public: false })))
        const winners = outcomes.filter(o => o.status === 'fulfilled')
        expect(winners).toHaveLength(1)
        const owner = (await store.getBucket('race'))?.ownerId
        expect(owner === 'alice' || owner === 'bob').toBe(true)
        outcomes.forEach((outcome, i) => {
          if (outcome.status === 'fulfilled') {
            expect(outcome.value.ownerId).toBe(owner)
            return
          }
          expect(outcome.reason).toBeInstanceOf(AtlasError)
          expect((outcome.reason as AtlasError).code).toBe(owners[i] === owner ? 'BucketAlreadyOwnedByYou' : 'BucketAlreadyExists')
        })
      })

      it('deletes only existing, empty buckets', async () => {
        await expectAtlasError(store.deleteBucket('missing'), 'NoSuchBucket')
        await store.createBucket({ name: 'full', ownerId: 'alice', backends: ['ipfs'], public: false })
        await store.putObject(putInput('full', 'k', testContent('x')))
        await expectAtlasError(store.deleteBucket('full'), 'BucketNotEmpty')
        expect(await store.getBucket('full')).not.toBeNull()
        await store.deleteObject('full', 'k')
        expect(await store.deleteBucket('full')).toEqual({ abortedParts: [] })
        expect(await store.getBucket('full')).toBeNull()
        await expectAtlasError(store.deleteBucket('full'), 'NoSuchBucket')
        // The name is free again, for anyone
        await store.createBucket({ name: 'full', ownerId: 'bob', backends: ['ipfs'], public: false })
        expect((await store.getBucket('full'))?.ownerId).toBe('bob')
      })
    })

    describe('objects and reference counts', () => {
      beforeEach(async () => {
        await bucketWithOwner('bucket')
        await store.createBucket({ name: 'other', ownerId: 'owner', backends: ['ipfs'], public: true })
      })

      it('puts and gets an object with its metadata', async () => {
        const content = testContent('hello')
        const result = await store.putObject(putInput('bucket', 'dir/hello.txt', content, {
          etag: 'd41d8cd98f00b204e9800998ecf8427e',
          contentType: 'text/plain',
          metadata: { 'x-amz-meta-colour': 'blue', 'cache-control': 'no-cache' }
        }))
        expect(result.orphaned).toBeNull()
        expect(result.object).toMatchObject({
          bucket: 'bucket',
          key: 'dir/hello.txt',
          contentId: content.id,
          size: content.size,
          etag: 'd41d8cd98f00b204e9800998ecf8427e',
          contentType: 'text/plain',
          metadata: { 'x-amz-meta-colour': 'blue', 'cache-control': 'no-cache' }
        })
        expect(await store.getObject('bucket', 'dir/hello.txt')).toEqual(result.object)
        expect(await store.getObject('bucket', 'dir/other')).toBeNull()
        expect(await store.getObject('other', 'dir/hello.txt')).toBeNull()
        const stored = await store.getContent(content.id)
        expect(stored).toMatchObject({ id: content.id, size: content.size, refCount: 1, locations: content.locations })
        expect(stored?.createdAt).toBeInstanceOf(Date)
      })

      it('refuses a put into a missing bucket and writes nothing', async () => {
        const content = testContent('nowhere')
        await expectAtlasError(store.putObject(putInput('missing', 'k', content)), 'NoSuchBucket')
        expect(await store.getContent(content.id)).toBeNull()
        expect(await store.getContentByAddress('ipfs-nowhere')).toBeNull()
      })

      it('refuses keys the dialects cannot store alike', async () => {
        await expectAtlasError(store.putObject(putInput('bucket', 'nul\u0000key', testContent('a'))), 'InvalidObjectKey')
        await expectAtlasError(store.putObject(putInput('bucket', 'lone\uD800surrogate', testContent('a'))), 'InvalidObjectKey')
        await expectAtlasError(store.putObject(putInput('bucket', '', testContent('a'))), 'InvalidObjectKey')
        expect(await store.getObject('bucket', 'nul\u0000key')).toBeNull()
        expect(await store.deleteObject('bucket', 'lone\uD800surrogate')).toBeNull()
        // Such bucket names cannot exist, and say so alike on both dialects
        await expectAtlasError(store.createBucket({ name: 'nul\u0000bucket', ownerId: 'owner', backends: ['ipfs'], public: false }), 'InvalidBucketName')
        expect(await store.getBucket('nul\u0000bucket')).toBeNull()
        expect(await store.getObject('nul\u0000bucket', 'k')).toBeNull()
        await expectAtlasError(store.putObject(putInput('nul\u0000bucket', 'k', testContent('a'))), 'NoSuchBucket')
        await expectAtlasError(store.listObjects({ bucket: 'nul\u0000bucket' }), 'NoSuchBucket')
        await expectAtlasError(store.deleteBucket('nul\u0000bucket'), 'NoSuchBucket')
        await expectAtlasError(store.listObjects({ bucket: 'bucket', after: 'a\u0000' }), 'InvalidArgument')
        await expectAtlasError(store.listObjects({ bucket: 'bucket', prefix: '\uDC00' }), 'InvalidArgument')
      })

      it('counts one reference per object across keys and buckets (dedup)', async () => {
        const content = testContent('shared')
        await store.putObject(putInput('bucket', 'a', content))
        await store.putObject(putInput('bucket', 'b', content))
        await store.putObject(putInput('other', 'a', content))
        expect(await refCount(content)).toBe(3)
        expect((await store.listContentBuckets(content.id)).map(b => [b.name, b.public])).toEqual([['bucket', false], ['other', true]])
        expect(await store.listContentBuckets(testContent('unknown').id)).toEqual([])

        const first = await store.deleteObject('bucket', 'a')
        expect(first?.object.key).toBe('a')
        expect(first?.orphaned).toBeNull()
        expect(await refCount(content)).toBe(2)
        expect((await store.deleteObject('other', 'a'))?.orphaned).toBeNull()
        expect((await store.listContentBuckets(content.id)).map(b => b.name)).toEqual(['bucket'])
        const last = await store.deleteObject('bucket', 'b')
        expect(last?.orphaned).toMatchObject({ id: content.id, refCount: 0, size: content.size, locations: content.locations })
        expect(await refCount(content)).toBe(0)
        expect(await store.deleteObject('bucket', 'b')).toBeNull()
        expect(await store.deleteObject('missing', 'b')).toBeNull()
      })

      it('moves the reference when an object is replaced, and reports the orphan', async () => {
        const one = testContent('one')
        const two = testContent('two')
        await store.putObject(putInput('bucket', 'k', one))
        await store.putObject(putInput('bucket', 'keep', two))
        const replaced = await store.putObject(putInput('bucket', 'k', two, { etag: 'new' }))
        expect(replaced.object).toMatchObject({ contentId: two.id, etag: 'new' })
        expect(replaced.orphaned).toMatchObject({ id: one.id, refCount: 0, locations: one.locations })
        expect(await refCount(one)).toBe(0)
        expect(await refCount(two)).toBe(2)

        // Replaced again, by content still referenced elsewhere: nothing orphaned
        const back = await store.putObject(putInput('bucket', 'k', one))
        expect(back.orphaned).toBeNull()
        expect(await refCount(one)).toBe(1)
        expect(await refCount(two)).toBe(1)
      })

      it('replacing an object by the same content is net zero but updates the object', async () => {
        const content = testContent('same')
        await store.putObject(putInput('bucket', 'k', content, { metadata: { v: '1' } }))
        const again = await store.putObject(putInput('bucket', 'k', content, { metadata: { v: '2' }, contentType: 'text/plain' }))
        expect(again.orphaned).toBeNull()
        expect(await refCount(content)).toBe(1)
        expect(await store.getObject('bucket', 'k')).toMatchObject({ metadata: { v: '2' }, contentType: 'text/plain' })
      })

      it('merges the locations of a content and finds it by any native address', async () => {
        const ipfs: ContentLocation = { backend: 'ipfs', address: 'bafy-unixfs-root', extra: {} }
        const bt: ContentLocation = { backend: 'bittorrent', address: 'a'.repeat(40), extra: { magnet: 'magnet:?xt=urn:btih:aaaa', btmh: '1220ff' } }
        const content = testContent('located', [ipfs])
        await store.putObject(putInput('bucket', 'one', content))
        await store.putObject(putInput('bucket', 'two', { ...content, locations: [bt] }))
        const merged = await store.getContent(content.id)
        expect(merged?.locations).toHaveLength(2)
        expect(merged?.locations).toEqual(expect.arrayContaining([ipfs, bt]))

        expect((await store.getContentByAddress('bafy-unixfs-root'))?.id).toBe(content.id)
        expect((await store.getContentByAddress('a'.repeat(40)))?.id).toBe(content.id)
        expect(await store.getContentByAddress('b'.repeat(40))).toBeNull()

        // A newer report of a backend's location replaces the older one
        await store.putObject(putInput('bucket', 'three', { ...content, locations: [{ ...ipfs, address: 'bafy-new-root' }] }))
        expect(await store.getContentByAddress('bafy-unixfs-root')).toBeNull()
        expect((await store.getContentByAddress('bafy-new-root'))?.refCount).toBe(3)
      })

      it('refuses a known content id with another size', async () => {
        const content = testContent('sized')
        await store.putObject(putInput('bucket', 'a', content))
        await expectAtlasError(store.putObject(putInput('bucket', 'b', { ...content, size: content.size + 1 })), 'InternalError')
        expect(await store.getObject('bucket', 'b')).toBeNull()
        expect(await refCount(content)).toBe(1)
      })

      it('lists orphans and deletes a content only while it is orphaned', async () => {
        const kept = testContent('kept')
        const gone = testContent('gone', [{ backend: 'ipfs', address: 'gone-ipfs', extra: {} }, { backend: 'bittorrent', address: 'gone-bt', extra: {} }])
        const revived = testContent('revived')
        await store.putObject(putInput('bucket', 'kept', kept))
        await store.putObject(putInput('bucket', 'gone', gone))
        await store.putObject(putInput('bucket', 'revived', revived))
        expect(await store.listOrphanedContents(10)).toEqual([])
        await store.deleteObject('bucket', 'gone')
        await store.deleteObject('bucket', 'revived')

        const orphans = await store.listOrphanedContents(10)
        expect(orphans.map(c => c.id).sort()).toEqual([gone.id, revived.id].sort())
        expect(orphans.find(c => c.id === gone.id)?.locations).toHaveLength(2)
        expect(await store.listOrphanedContents(1)).toHaveLength(1)
        expect(await store.listOrphanedContents(0)).toEqual([])

        // A put that takes the content again before collection wins
        await store.putObject(putInput('other', 'again', revived))
        expect(await store.deleteContentIfOrphaned(revived.id)).toBe(false)
        expect(await refCount(revived)).toBe(1)
        expect(await store.deleteContentIfOrphaned(kept.id)).toBe(false)
        expect(await refCount(kept)).toBe(1)

        expect(await store.deleteContentIfOrphaned(gone.id)).toBe(true)
        expect(await store.getContent(gone.id)).toBeNull()
        expect(await store.getContentByAddress('gone-ipfs')).toBeNull()
        expect(await store.getContentByAddress('gone-bt')).toBeNull()
        expect(await store.deleteContentIfOrphaned(gone.id)).toBe(false)
        expect(await store.listOrphanedContents(10)).toEqual([])

        // Collected content can come back as new
        await store.putObject(putInput('bucket', 'gone', gone))
        expect(await refCount(gone)).toBe(1)
      })

      it('keeps counts exact under many concurrent puts of the same content', async () => {
        const content = testContent('popular')
        const keys = Array.from({ length: 24 }, (_, i) => `k${i}`)
        await Promise.all(keys.map(async key => await store.putObject(putInput('bucket', key, content))))
        expect(await refCount(content)).toBe(keys.length)

        // Concurrent overwrites of one key, alternating between two contents
        const a = testContent('a')
        const b = testContent('b')
        const overwrites = await Promise.all(Array.from({ length: 16 }, async (_, i) => await store.putObject(putInput('bucket', 'hot', i % 2 === 0 ? a : b))))
        const hot = await store.getObject('bucket', 'hot')
        const winner = hot?.contentId === a.id ? a : b
        const loser = winner === a ? b : a
        expect(await refCount(winner)).toBe(1)
        expect(await refCount(loser)).toBe(0)
        // Every overwrite that orphaned something orphaned the content it replaced
        for (const r of overwrites) {
          if (r.orphaned !== null) expect([a.id, b.id]).toContain(r.orphaned.id)
        }

        // Concurrent deletes: exactly the last one orphans the content
        const deletes = await Promise.all(keys.map(async key => await store.deleteObject('bucket', key)))
        expect(deletes.every(d => d !== null)).toBe(true)
        expect(deletes.filter(d => d?.orphaned !== null)).toHaveLength(1)
        expect(await refCount(content)).toBe(0)
      })

      it('keeps counts equal to the objects that refer to them over random writes', async () => {
        const keys = ['k1', 'k2', 'k3']
        const contents = ['c1', 'c2', 'c3']
        const op = fc.record({
          del: fc.boolean(),
          bucket: fc.constantFrom('bucket', 'other'),
          key: fc.constantFrom(...keys),
          content: fc.constantFrom(...contents)
        })
        let run = 0
        await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async ops => {
          run++
          const made = new Map(contents.map(c => [c, testContent(`run${run}-${c}`)]))
          const model = new Map<string, string>() // bucket/key → content seed
          const count = (seed: string): number => [...model.values()].filter(v => v === seed).length
          for (const o of ops) {
            const at = `${o.bucket}/run${run}/${o.key}`
            const key = `run${run}/${o.key}`
            const previous = model.get(at)
            if (o.del) {
              const deleted = await store.deleteObject(o.bucket, key)
              model.delete(at)
              expect(deleted === null).toBe(previous === undefined)
              const expectOrphan = previous !== undefined && count(previous) === 0
              expect(deleted?.orphaned?.id ?? null).toBe(expectOrphan && previous !== undefined ? made.get(previous)?.id : null)
            } else {
              const result = await store.putObject(putInput(o.bucket, key, made.get(o.content) as PutObjectInput['content']))
              model.set(at, o.content)
              const expectOrphan = previous !== undefined && previous !== o.content && count(previous) === 0
              expect(result.orphaned?.id ?? null).toBe(expectOrphan && previous !== undefined ? made.get(previous)?.id : null)
            }
          }
          for (const [seed, content] of made) {
            const stored = await store.getContent(content.id)
            if (stored !== null) expect(stored.refCount).toBe(count(seed))
            else expect(count(seed)).toBe(0)
          }
        }), { numRuns: 12 })
      })
    })

    describe('listing', () => {
      beforeEach(async () => {
        await bucketWithOwner('bucket')
      })

      async function putKeys (keys: string[], bucket = 'bucket'): Promise<void> {
        // A few at a time: PostgreSQL takes them concurrently, SQLite one by one. One content per
        // key, so that the concurrent puts do not queue on one content row's lock.
        for (let i = 0; i < keys.length; i += 16) {
          await Promise.all(keys.slice(i, i + 16).map(async key => await store.putObject(putInput(bucket, key, testContent(`${bucket}/${key}`)))))
        }
      }

      it('lists keys in UTF-8 byte order, not UTF-16 order', async () => {
        // UTF-16 puts U+1F600 (surrogates D83D DE00) before U+FFFD; UTF-8 puts EF BF BD before F0 9F 98 80
        await putKeys(['\u{1F600}', '\uFFFD', 'é', 'z', 'Z', 'a'])
        const listed = await store.listObjects({ bucket: 'bucket' })
        expect(listed.objects.map(o => o.key)).toEqual(['Z', 'a', 'z', 'é', '\uFFFD', '\u{1F600}'])
        expect(listed.truncated).toBe(false)
        expect(listed.next).toBeUndefined()
      })

      it('filters by prefix and rolls keys up at the delimiter', async () => {
        const keys = ['photos/2024/a.jpg', 'photos/2024/b.jpg', 'photos/2025/c.jpg', 'photos/readme', 'photosynthesis', 'docs/x', 'top']
        await putKeys(keys)
        const listed = await store.listObjects({ bucket: 'bucket', prefix: 'photos/', delimiter: '/' })
        expect(listed.objects.map(o => o.key)).toEqual(['photos/readme'])
        expect(listed.commonPrefixes).toEqual(['photos/2024/', 'photos/2025/'])
        expect(summarise(listed)).toEqual(modelList(keys, { prefix: 'photos/', delimiter: '/' }))

        const root = await store.listObjects({ bucket: 'bucket', delimiter: '/' })
        expect(root.commonPrefixes).toEqual(['docs/', 'photos/'])
        expect(root.objects.map(o => o.key)).toEqual(['photosynthesis', 'top'])
        expect((await store.listObjects({ bucket: 'bucket', prefix: 'photo' })).objects).toHaveLength(5)
        expect((await store.listObjects({ bucket: 'bucket', prefix: 'nothing' })).objects).toEqual([])
      })

      it('counts a common prefix as one entry and pages past it with next', async () => {
        const keys = [
          ...Array.from({ length: 7 }, (_, i) => `a/${i}`),
          'b',
          ...Array.from({ length: 5 }, (_, i) => `c/${i}/x`),
          'd'
        ]
        await putKeys(keys)
        for (const limit of [1, 2, 3]) {
          const pages = await listAll(store, { bucket: 'bucket', delimiter: '/', limit })
          const prefixes = pages.flatMap(p => p.commonPrefixes)
          const objects = pages.flatMap(p => p.objects.map(o => o.key))
          expect(prefixes).toEqual(['a/', 'c/'])
          expect(objects).toEqual(['b', 'd'])
          for (const page of pages) expect(page.objects.length + page.commonPrefixes.length).toBeLessThanOrEqual(limit)
          expect(pages.length).toBe(Math.ceil(4 / limit))
        }
        const first = await store.listObjects({ bucket: 'bucket', delimiter: '/', limit: 1 })
        expect(first).toMatchObject({ commonPrefixes: ['a/'], objects: [], truncated: true, next: 'a/' })
        const second = await store.listObjects({ bucket: 'bucket', delimiter: '/', limit: 1, after: 'a/' })
        expect(second.objects.map(o => o.key)).toEqual(['b'])
        expect(second.next).toBe('b')
      })

      it('starts after a key, inside or outside the prefix', async () => {
        const keys = ['a/1', 'a/2', 'a/3', 'b/1', 'c']
        await putKeys(keys)
        for (const input of [
          { after: 'a/1' },
          { after: 'a/2', delimiter: '/' },
          { after: 'a/', delimiter: '/' },
          { after: 'a', delimiter: '/' },
          { after: 'b', prefix: 'a/' },
          { after: '0', prefix: 'a/' },
          { after: 'c' },
          { after: 'zzz' }
        ]) {
          expect(summarise(await store.listObjects({ bucket: 'bucket', ...input })), JSON.stringify(input)).toEqual(modelList(keys, input))
        }
        // A key inside a rolled-up prefix rolls up again; the prefix itself does not
        expect((await store.listObjects({ bucket: 'bucket', after: 'a/2', delimiter: '/' })).commonPrefixes).toEqual(['a/', 'b/'])
        expect((await store.listObjects({ bucket: 'bucket', after: 'a/', delimiter: '/' })).commonPrefixes).toEqual(['b/'])
      })

      it('honours limit 0, the default limit of 1000, and missing buckets', async () => {
        const keys = Array.from({ length: 1001 }, (_, i) => `key-${String(i).padStart(4, '0')}`)
        await putKeys(keys)
        const full = await store.listObjects({ bucket: 'bucket' })
        expect(full.objects).toHaveLength(1000)
        expect(full.truncated).toBe(true)
        expect(full.next).toBe('key-0999')
        const rest = await store.listObjects({ bucket: 'bucket', after: full.next })
        expect(rest.objects.map(o => o.key)).toEqual(['key-1000'])
        expect(rest.truncated).toBe(false)
        expect(await store.listObjects({ bucket: 'bucket', limit: 0 })).toEqual({ objects: [], commonPrefixes: [], truncated: false })
        await expectAtlasError(store.listObjects({ bucket: 'missing' }), 'NoSuchBucket')
        await expectAtlasError(store.listObjects({ bucket: 'bucket', limit: -1 }), 'InvalidArgument')
      })

      it('matches the model for random keys, prefixes, delimiters and pages', async () => {
        // Units chosen to straddle the UTF-16 / UTF-8 order differences and the top of Unicode
        const unit = fc.constantFrom('a', 'b', '/', '-', 'é', '\uFFFD', '\u{1F600}', '\u{10FFFF}')
        const text = (max: number, min = 0): fc.Arbitrary<string> => fc.string({ unit, minLength: min, maxLength: max })
        let run = 0
        await fc.assert(fc.asyncProperty(
          fc.uniqueArray(text(5, 1), { minLength: 0, maxLength: 14 }),
          text(2),
          fc.option(fc.constantFrom('/', '-', 'é', '\u{1F600}', 'a/'), { nil: undefined }),
          fc.integer({ min: 1, max: 4 }),
          fc.option(text(3), { nil: undefined }),
          async (keys, prefix, delimiter, limit, after) => {
            run++
            const bucket = `prop-${run}`
            await store.createBucket({ name: bucket, ownerId: 'owner', backends: ['ipfs'], public: false })
            await putKeys(keys, bucket)
            const input = { prefix, delimiter, limit, ...(after === undefined ? {} : { after }) }
            const page = await store.listObjects({ bucket, ...input })
            expect(summarise(page)).toEqual(modelList(keys, input))

            // Following next from the start yields the whole listing, once
            const pages = await listAll(store, { bucket, prefix, delimiter, limit })
            const all = modelList(keys, { prefix, delimiter, limit: keys.length + 1 })
            expect(pages.flatMap(p => p.objects.map(o => o.key))).toEqual(all.keys)
            expect(pages.flatMap(p => p.commonPrefixes)).toEqual(all.commonPrefixes)
          }
        ), { numRuns: 40 })
      })
    })

    describe('object tags and checksums', () => {
      beforeEach(async () => {
        await bucketWithOwner('bucket')
      })

      it('stores tags and checksums with an object, and a put replaces them', async () => {
        const content = testContent('tagged')
        const checksums = { CRC32: 'AAAAAA==', SHA256: 'n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=' }
        const put = await store.putObject(putInput('bucket', 'k', content, { tags: { project: 'atlas', empty: '' }, checksums }))
        expect(put.object).toMatchObject({ tags: { project: 'atlas', empty: '' }, checksums })
        expect(await store.getObject('bucket', 'k')).toEqual(put.object)
        expect((await store.listObjects({ bucket: 'bucket' })).objects).toEqual([put.object])

        // Pairs, as parsed from x-amz-tagging, are accepted too
        const pairs = await store.putObject(putInput('bucket', 'pairs', content, { tags: [['a', '1'], ['b', '2']] }))
        expect(pairs.object.tags).toEqual({ a: '1', b: '2' })

        // A put without tags or checksums replaces the whole object: none are left
        const plain = await store.putObject(putInput('bucket', 'k', content))
        expect(plain.object).toMatchObject({ tags: {}, checksums: {} })
        expect(await store.getObject('bucket', 'k')).toMatchObject({ tags: {}, checksums: {} })
        expect(await refCount(content)).toBe(2)
      })

      it('replaces and deletes the tag set without touching the rest of the object', async () => {
        const put = await store.putObject(putInput('bucket', 'k', testContent('t'), { tags: { a: '1' }, checksums: { CRC32C: 'AAAAAA==' } }))
        const tagged = await store.putObjectTags('bucket', 'k', { b: '2', c: '3' })
        expect(tagged).toEqual({ ...put.object, tags: { b: '2', c: '3' } })
        expect(await store.getObject('bucket', 'k')).toEqual(tagged)
        expect((await store.putObjectTags('bucket', 'k', [['d', '4']])).tags).toEqual({ d: '4' })
        const cleared = await store.putObjectTags('bucket', 'k', {})
        expect(cleared).toEqual({ ...put.object, tags: {} })
        expect(cleared.createdAt.getTime()).toBe(put.object.createdAt.getTime())

        await expectAtlasError(store.putObjectTags('bucket', 'missing', { a: '1' }), 'NoSuchKey')
        await expectAtlasError(store.putObjectTags('bucket', 'nul\u0000', { a: '1' }), 'NoSuchKey')
        await expectAtlasError(store.putObjectTags('missing', 'k', { a: '1' }), 'NoSuchBucket')
      })

      it('enforces S3 tag limits with InvalidTag and writes nothing', async () => {
        const ten = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, `v${i}`]))
        const content = testContent('limits')
        await store.putObject(putInput('bucket', 'k', content, { tags: ten }))
        const valid: Array<Record<string, string>> = [
          { ['k'.repeat(128)]: 'v'.repeat(256) },
          // Lengths count UTF-16 code units: 64 emoji are 128 of them
          { ['\u{1F600}'.repeat(64)]: '\u{1F600}'.repeat(128) },
          { key: '' }
        ]
        for (const tags of valid) expect((await store.putObjectTags('bucket', 'k', tags)).tags).toEqual(tags)

        const invalid: Array<PutObjectInput['tags']> = [
          { ...ten, k10: 'v10' },
          { '': 'v' },
          { ['k'.repeat(129)]: 'v' },
          { ['\u{1F600}'.repeat(65)]: 'v' },
          { k: 'v'.repeat(257) },
          { k: 'nul\u0000' },
          { 'lone\uD800': 'v' },
          [['dup', '1'], ['dup', '2']],
          [['only-key']] as unknown as Array<[string, string]>,
          { k: 42 } as unknown as Record<string, string>
        ]
        for (const tags of invalid) {
          await expectAtlasError(store.putObjectTags('bucket', 'k', tags ?? {}), 'InvalidTag')
          await expectAtlasError(store.putObject(putInput('bucket', 'other', testContent('other'), { tags })), 'InvalidTag')
          await expectAtlasError(store.createMultipartUpload({ bucket: 'bucket', key: 'mpu', initiatorId: 'owner', contentType: 'x', metadata: {}, tags }), 'InvalidTag')
        }
        expect(await store.getObject('bucket', 'k')).toMatchObject({ tags: { key: '' } })
        expect(await store.getObject('bucket', 'other')).toBeNull()
        expect(await store.getContent(testContent('other').id)).toBeNull()
        expect((await store.listMultipartUploads('bucket')).uploads).toEqual([])
      })

      it('refuses checksums that are not a map of text', async () => {
        for (const checksums of [{ CRC32: 1 }, { '': 'x' }, { CRC32: 'a\u0000' }, ['x']] as unknown as Array<Record<string, string>>) {
          await expectAtlasError(store.putObject(putInput('bucket', 'k', testContent('c'), { checksums })), 'InvalidArgument')
        }
        expect(await store.getObject('bucket', 'k')).toBeNull()
      })
    })

    describe('multipart uploads', () => {
      beforeEach(async () => {
        await bucketWithOwner('bucket')
      })

      async function upload (key: string, bucket = 'bucket', extra: Partial<Parameters<MetadataStore['createMultipartUpload']>[0]> = {}): Promise<MultipartUpload> {
        return await store.createMultipartUpload({ bucket, key, initiatorId: 'owner', contentType: 'application/octet-stream', metadata: {}, ...extra })
      }

      function part (uploadId: string, partNumber: number, version = 'v1', extra: Partial<PutPartInput> = {}): PutPartInput {
        const etag = createHash('md5').update(`${uploadId}/${partNumber}/${version}`).digest('hex')
        return { uploadId, partNumber, size: 5 * 1024 * 1024 + partNumber, etag, checksums: { CRC32: `crc-${partNumber}-${version}` }, stagingPath: `/staging/${uploadId}/${partNumber}-${version}`, ...extra }
      }

      /** What a stored part should look like, minus its time */
      function stored (input: PutPartInput): Omit<Part, 'createdAt'> {
        return { uploadId: input.uploadId, partNumber: input.partNumber, size: input.size, etag: input.etag, checksums: input.checksums ?? {}, stagingPath: input.stagingPath }
      }

      function withoutTime (parts: Part[]): Array<Omit<Part, 'createdAt'>> {
        return parts.map(({ createdAt, ...rest }) => {
          expect(createdAt).toBeInstanceOf(Date)
          return rest
        })
      }

      it('creates and gets an upload with what the object will carry', async () => {
        const before = Date.now()
        const created = await upload('dir/big.bin', 'bucket', {
          contentType: 'video/mp4',
          metadata: { 'x-amz-meta-a': 'b' },
          tags: [['t', '1']],
          checksumAlgorithm: 'CRC32',
          checksumType: 'COMPOSITE'
        })
        expect(created).toMatchObject({
          bucket: 'bucket',
          key: 'dir/big.bin',
          initiatorId: 'owner',
          contentType: 'video/mp4',
          metadata: { 'x-amz-meta-a': 'b' },
          tags: { t: '1' },
          checksumAlgorithm: 'CRC32',
          checksumType: 'COMPOSITE'
        })
        expect(created.createdAt.getTime()).toBeGreaterThanOrEqual(before - 1000)
        expect(created.uploadId).toMatch(/^[0-9a-z]{16,}$/)
        expect(await store.getMultipartUpload(created.uploadId)).toEqual(created)
        const plain = await upload('dir/big.bin')
        expect(plain).toMatchObject({ tags: {}, checksumAlgorithm: null, checksumType: null })
        expect(await store.getMultipartUpload(plain.uploadId)).toEqual(plain)

        // Ids are unique and sort in creation order
        const ids = [created.uploadId, plain.uploadId]
        for (let i = 0; i < 20; i++) ids.push((await upload('same')).uploadId)
        expect(new Set(ids).size).toBe(ids.length)
        expect([...ids].sort()).toEqual(ids)

        expect(await store.getMultipartUpload('unknown')).toBeNull()
        expect(await store.getMultipartUpload('nul\u0000')).toBeNull()
        await expectAtlasError(upload('k', 'missing'), 'NoSuchBucket')
        await expectAtlasError(upload('k', 'bucket', { initiatorId: 'ghost' }), 'NoSuchAccount')
        await expectAtlasError(upload(''), 'InvalidObjectKey')
        await expectAtlasError(upload('nul\u0000'), 'InvalidObjectKey')
      })

      it('records parts, and a part uploaded again replaces the old one, which it returns', async () => {
        const u = await upload('k')
        const one = part(u.uploadId, 1)
        const two = part(u.uploadId, 2, 'v1', { checksums: undefined })
        expect(await store.putPart(one)).toEqual({ replaced: null })
        expect(await store.putPart(two)).toEqual({ replaced: null })

        const oneAgain = part(u.uploadId, 1, 'v2')
        const { replaced } = await store.putPart(oneAgain)
        expect(replaced).toMatchObject(stored(one))
        expect(replaced?.createdAt).toBeInstanceOf(Date)

        const listed = await store.listParts(u.uploadId)
        expect(listed.truncated).toBe(false)
        expect(listed.next).toBeUndefined()
        expect(withoutTime(listed.parts)).toEqual([stored(oneAgain), { ...stored(two), checksums: {} }])

        for (const partNumber of [0, 10_001, 1.5, -1, Number.NaN]) {
          await expectAtlasError(store.putPart(part(u.uploadId, partNumber)), 'InvalidArgument')
        }
        await expectAtlasError(store.putPart(part(u.uploadId, 3, 'v1', { size: -1 })), 'InvalidArgument')
        expect(await store.putPart(part(u.uploadId, 10_000))).toEqual({ replaced: null })
        await expectAtlasError(store.putPart(part('unknown', 1)), 'NoSuchUpload')
        await expectAtlasError(store.putPart(part('nul\u0000', 1, 'v1', { stagingPath: '/staging/nul' })), 'NoSuchUpload')
      })

      it('upserts one part number from many concurrent writers: every version is returned once', async () => {
        const u = await upload('k')
        const versions = Array.from({ length: 12 }, (_, i) => part(u.uploadId, 7, `v${i}`))
        const results = await Promise.all(versions.map(async v => await store.putPart(v)))
        expect(results.filter(r => r.replaced === null)).toHaveLength(1)
        const final = (await store.listParts(u.uploadId)).parts
        expect(final).toHaveLength(1)
        // The replaced staging paths and the one left stored are each version exactly once
        const paths = [...results.flatMap(r => r.replaced === null ? [] : [r.replaced.stagingPath]), ...final.map(p => p.stagingPath)]
        expect(paths.sort()).toEqual(versions.map(v => v.stagingPath).sort())
      })

      it('pages through parts in number order', async () => {
        const u = await upload('k')
        for (const n of [7, 3, 1, 5, 2, 6, 4]) await store.putPart(part(u.uploadId, n))
        const first = await store.listParts(u.uploadId, { limit: 3 })
        expect(first.parts.map(p => p.partNumber)).toEqual([1, 2, 3])
        expect(first).toMatchObject({ truncated: true, next: 3 })
        const second = await store.listParts(u.uploadId, { after: first.next, limit: 3 })
        expect(second.parts.map(p => p.partNumber)).toEqual([4, 5, 6])
        expect(second).toMatchObject({ truncated: true, next: 6 })
        const third = await store.listParts(u.uploadId, { after: second.next, limit: 3 })
        expect(third.parts.map(p => p.partNumber)).toEqual([7])
        expect(third.truncated).toBe(false)
        expect(third.next).toBeUndefined()
        // Exactly full is not truncated
        expect(await store.listParts(u.uploadId, { after: 4, limit: 3 })).toMatchObject({ truncated: false })
        expect((await store.listParts(u.uploadId)).parts).toHaveLength(7)
        expect((await store.listParts(u.uploadId, { after: 10_000 })).parts).toEqual([])
        expect(await store.listParts(u.uploadId, { limit: 0 })).toEqual({ parts: [], truncated: false })
        await expectAtlasError(store.listParts(u.uploadId, { limit: -1 }), 'InvalidArgument')
        await expectAtlasError(store.listParts('unknown'), 'NoSuchUpload')
        // Another upload's parts are its own
        expect((await store.listParts((await upload('k')).uploadId)).parts).toEqual([])
      })

      it('lists uploads by key in byte order, then by creation, and continues from key and upload-id markers', async () => {
        const made: MultipartUpload[] = []
        for (const key of ['b', 'é', 'a', 'b', 'Z', 'b', '\u{1F600}', '\uFFFD', 'a']) made.push(await upload(key))
        const ids = (key: string): string[] => made.filter(u => u.key === key).map(u => u.uploadId)
        const all = await store.listMultipartUploads('bucket')
        expect(all.uploads.map(u => [u.key, u.uploadId])).toEqual([
          ['Z', ...ids('Z')],
          ...ids('a').map(id => ['a', id]),
          ...ids('b').map(id => ['b', id]),
          ['é', ...ids('é')],
          ['\uFFFD', ...ids('\uFFFD')],
          ['\u{1F600}', ...ids('\u{1F600}')]
        ])
        expect(all.uploads.find(u => u.uploadId === made[0]?.uploadId)).toEqual(made[0])
        expect(all).toMatchObject({ commonPrefixes: [], truncated: false })
        expect(all.nextKeyMarker).toBeUndefined()

        const [b1, b2, b3] = ids('b') as [string, string, string]
        // key-marker alone: keys after it
        expect((await store.listMultipartUploads('bucket', { keyMarker: 'b' })).uploads.map(u => u.key)).toEqual(['é', '\uFFFD', '\u{1F600}'])
        // with upload-id-marker: the rest of that key's uploads first
        expect((await store.listMultipartUploads('bucket', { keyMarker: 'b', uploadIdMarker: b1 })).uploads.map(u => u.uploadId)).toEqual([b2, b3, ...ids('é'), ...ids('\uFFFD'), ...ids('\u{1F600}')])
        expect((await store.listMultipartUploads('bucket', { keyMarker: 'b', uploadIdMarker: b3 })).uploads.map(u => u.key)).toEqual(['é', '\uFFFD', '\u{1F600}'])
        // upload-id-marker without key-marker is ignored, as in S3
        expect((await store.listMultipartUploads('bucket', { uploadIdMarker: b2 })).uploads).toHaveLength(made.length)

        const page = await store.listMultipartUploads('bucket', { limit: 4 })
        expect(page.uploads.map(u => u.uploadId)).toEqual([...ids('Z'), ...ids('a'), b1])
        expect(page).toMatchObject({ truncated: true, nextKeyMarker: 'b', nextUploadIdMarker: b1 })

        const expected = made.map(u => [u.key, u.uploadId])
        for (const limit of [1, 2, 3, 4, 9, 10]) {
          const pages = await listAllUploads(store, 'bucket', { limit })
          expect(pages.flatMap(p => p.uploads.map(u => [u.key, u.uploadId])).sort()).toEqual([...expected].sort())
          expect(pages.flatMap(p => p.uploads.map(u => u.uploadId))).toEqual(all.uploads.map(u => u.uploadId))
          for (const p of pages) expect(p.uploads.length).toBeLessThanOrEqual(limit)
        }

        expect(await store.listMultipartUploads('bucket', { limit: 0 })).toEqual({ uploads: [], commonPrefixes: [], truncated: false })
        await expectAtlasError(store.listMultipartUploads('missing'), 'NoSuchBucket')
        await expectAtlasError(store.listMultipartUploads('bucket', { limit: -1 }), 'InvalidArgument')
        await expectAtlasError(store.listMultipartUploads('bucket', { keyMarker: 'a\u0000' }), 'InvalidArgument')
      })

      it('filters uploads by prefix and rolls keys up at the delimiter', async () => {
        const keys = ['photos/2024/a.jpg', 'photos/2024/b.jpg', 'photos/2024/a.jpg', 'photos/2025/c.jpg', 'photos/readme', 'photos/readme', 'photosynthesis', 'docs/x', 'top']
        const made: MultipartUpload[] = []
        for (const key of keys) made.push(await upload(key))
        const listed = await store.listMultipartUploads('bucket', { prefix: 'photos/', delimiter: '/' })
        expect(listed.commonPrefixes).toEqual(['photos/2024/', 'photos/2025/'])
        expect(listed.uploads.map(u => u.key)).toEqual(['photos/readme', 'photos/readme'])
        expect(summariseUploads(listed)).toEqual(modelUploadList(made, { prefix: 'photos/', delimiter: '/' }))

        const root = await store.listMultipartUploads('bucket', { delimiter: '/' })
        expect(root.commonPrefixes).toEqual(['docs/', 'photos/'])
        expect(root.uploads.map(u => u.key)).toEqual(['photosynthesis', 'top'])
        expect((await store.listMultipartUploads('bucket', { prefix: 'photo' })).uploads).toHaveLength(7)
        expect((await store.listMultipartUploads('bucket', { prefix: 'nothing' })).uploads).toEqual([])

        // A common prefix counts as one entry; as a key marker it skips every key under it
        const first = await store.listMultipartUploads('bucket', { prefix: 'photos/', delimiter: '/', limit: 1 })
        expect(summariseUploads(first)).toEqual({ uploads: [], commonPrefixes: ['photos/2024/'], truncated: true, nextKeyMarker: 'photos/2024/' })
        const second = await store.listMultipartUploads('bucket', { prefix: 'photos/', delimiter: '/', limit: 1, keyMarker: first.nextKeyMarker })
        expect(second.commonPrefixes).toEqual(['photos/2025/'])
        const readme = made.filter(u => u.key === 'photos/readme').map(u => u.uploadId)
        for (const limit of [1, 2, 3]) {
          const pages = await listAllUploads(store, 'bucket', { prefix: 'photos/', delimiter: '/', limit })
          expect(pages.flatMap(p => p.commonPrefixes)).toEqual(['photos/2024/', 'photos/2025/'])
          expect(pages.flatMap(p => p.uploads.map(u => u.uploadId))).toEqual(readme)
        }
      })

      it('matches the model for random keys, prefixes, delimiters and markers', async () => {
        const unit = fc.constantFrom('a', 'b', '/', 'é', '\u{1F600}')
        const text = (max: number, min = 0): fc.Arbitrary<string> => fc.string({ unit, minLength: min, maxLength: max })
        let run = 0
        await fc.assert(fc.asyncProperty(
          fc.array(text(4, 1), { minLength: 0, maxLength: 12 }),
          text(2),
          fc.option(fc.constantFrom('/', 'é', 'a/'), { nil: undefined }),
          fc.integer({ min: 1, max: 4 }),
          fc.option(fc.tuple(text(3), fc.option(fc.nat(20), { nil: undefined })), { nil: undefined }),
          async (keys, prefix, delimiter, limit, marker) => {
            run++
            const bucket = `mpu-prop-${run}`
            await store.createBucket({ name: bucket, ownerId: 'owner', backends: ['ipfs'], public: false })
            // Keys repeat in the array: several uploads of one key
            const made: MultipartUpload[] = []
            for (const key of keys) made.push(await upload(key, bucket))
            const markers: ListMultipartUploadsOptions = {}
            if (marker !== undefined) {
              const [keyMarker, pick] = marker
              markers.keyMarker = keyMarker
              // An upload-id marker of an upload of that key, or of any upload
              if (pick !== undefined) markers.uploadIdMarker = (made.filter(u => u.key === keyMarker)[pick % 3] ?? made[pick])?.uploadId ?? '0'
            }
            const input = { prefix, delimiter, limit, ...markers }
            expect(summariseUploads(await store.listMultipartUploads(bucket, input)), JSON.stringify(input)).toEqual(modelUploadList(made, input))

            const pages = await listAllUploads(store, bucket, { prefix, delimiter, limit })
            const whole = modelUploadList(made, { prefix, delimiter, limit: made.length + 1 })
            expect(pages.flatMap(p => p.uploads.map(u => [u.key, u.uploadId]))).toEqual(whole.uploads)
            expect(pages.flatMap(p => p.commonPrefixes)).toEqual(whole.commonPrefixes)
          }
        ), { numRuns: 30 })
      })

      it('completes an upload: the object is written as a put writes it, and the upload and its parts go', async () => {
        const old = testContent('old')
        const assembled = testContent('assembled')
        await store.putObject(putInput('bucket', 'big', old))
        await store.putObject(putInput('bucket', 'elsewhere', assembled))
        const u = await upload('big', 'bucket', { tags: { t: '1' } })
        const other = await upload('big')
        const p1 = part(u.uploadId, 1)
        const p2 = part(u.uploadId, 2)
        const p1b = part(u.uploadId, 1, 'v2')
        for (const p of [p1, p2, p1b]) await store.putPart(p)
        await store.putPart(part(other.uploadId, 1))

        const checksums = { CRC32: 'AAAAAA==-2' }
        const result = await store.completeMultipartUpload({
          uploadId: u.uploadId,
          object: putInput('bucket', 'big', assembled, { etag: 'abc-2', tags: u.tags, checksums, metadata: { m: 'n' } }),
          parts: [{ partNumber: 1, etag: p1b.etag }, { partNumber: 2, etag: p2.etag }]
        })
        expect(result.object).toMatchObject({ bucket: 'bucket', key: 'big', contentId: assembled.id, etag: 'abc-2', tags: { t: '1' }, checksums, metadata: { m: 'n' } })
        expect(await store.getObject('bucket', 'big')).toEqual(result.object)
        // The replaced object's content lost its only reference; the new one has two
        expect(result.orphaned).toMatchObject({ id: old.id, refCount: 0 })
        expect(await refCount(old)).toBe(0)
        expect(await refCount(assembled)).toBe(2)
        expect(withoutTime(result.parts)).toEqual([stored(p1b), stored(p2)])

        expect(await store.getMultipartUpload(u.uploadId)).toBeNull()
        await expectAtlasError(store.listParts(u.uploadId), 'NoSuchUpload')
        expect((await store.listMultipartUploads('bucket')).uploads.map(x => x.uploadId)).toEqual([other.uploadId])
        expect((await store.listParts(other.uploadId)).parts).toHaveLength(1)

        await expectAtlasError(store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('bucket', 'big', assembled) }), 'NoSuchUpload')
        await expectAtlasError(store.putPart(part(u.uploadId, 3)), 'NoSuchUpload')
        expect(await store.abortMultipartUpload(u.uploadId)).toBeNull()
        expect(await refCount(assembled)).toBe(2)

        // Completing without a part list takes whatever is stored, and a new key counts once
        const fresh = testContent('fresh')
        const done = await store.completeMultipartUpload({ uploadId: other.uploadId, object: putInput('bucket', 'big', fresh) })
        expect(done.parts.map(p => p.partNumber)).toEqual([1])
        expect(done.orphaned).toBeNull()
        expect(await refCount(fresh)).toBe(1)
        expect(await refCount(assembled)).toBe(1)
      })

      it('refuses to complete as another object, with parts that changed, or into a missing bucket, and then changes nothing', async () => {
        const u = await upload('k')
        const p1 = part(u.uploadId, 1)
        await store.putPart(p1)
        const content = testContent('never')
        await expectAtlasError(store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('bucket', 'other-key', content) }), 'NoSuchUpload')
        await bucketWithOwner('second')
        await expectAtlasError(store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('second', 'k', content) }), 'NoSuchUpload')
        await expectAtlasError(store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('missing', 'k', content) }), 'NoSuchBucket')
        await expectAtlasError(store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('bucket', 'k', content), parts: [{ partNumber: 1, etag: 'stale' }] }), 'InvalidPart')
        await expectAtlasError(store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('bucket', 'k', content), parts: [{ partNumber: 1, etag: p1.etag }, { partNumber: 2, etag: 'x' }] }), 'InvalidPart')
        await expectAtlasError(store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('bucket', 'k', content), parts: [{ partNumber: 0, etag: p1.etag }] }), 'InvalidArgument')
        await expectAtlasError(store.completeMultipartUpload({ uploadId: 'unknown', object: putInput('bucket', 'k', content) }), 'NoSuchUpload')
        expect(await store.getObject('bucket', 'k')).toBeNull()
        expect(await store.getObject('bucket', 'other-key')).toBeNull()
        expect(await store.getContent(content.id)).toBeNull()
        expect(await store.getMultipartUpload(u.uploadId)).toEqual(u)
        expect(withoutTime((await store.listParts(u.uploadId)).parts)).toEqual([stored(p1)])
        // And the upload still completes afterwards
        const done = await store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('bucket', 'k', content), parts: [{ partNumber: 1, etag: p1.etag }] })
        expect(done.object.contentId).toBe(content.id)
      })

      it('lets exactly one of two concurrent completions of an upload win', async () => {
        for (let round = 0; round < 8; round++) {
          const key = `race-${round}`
          const u = await upload(key)
          for (const n of [1, 2, 3]) await store.putPart(part(u.uploadId, n))
          const a = testContent(`${key}-a`)
          const b = testContent(`${key}-b`)
          const outcomes = await Promise.allSettled([a, b].map(async c => await store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('bucket', key, c) })))
          const won = outcomes.flatMap((o, i) => o.status === 'fulfilled' ? [{ result: o.value, content: i === 0 ? a : b }] : [])
          expect(won).toHaveLength(1)
          const lost = outcomes.find(o => o.status === 'rejected')
          expect(lost?.reason).toBeInstanceOf(AtlasError)
          expect((lost?.reason as AtlasError).code).toBe('NoSuchUpload')
          const winner = won[0] as (typeof won)[number]
          const loser = winner.content === a ? b : a
          expect(winner.result.parts.map(p => p.partNumber)).toEqual([1, 2, 3])
          expect((await store.getObject('bucket', key))?.contentId).toBe(winner.content.id)
          expect(await refCount(winner.content)).toBe(1)
          expect(await store.getContent(loser.id)).toBeNull()
          expect(await store.getMultipartUpload(u.uploadId)).toBeNull()
        }
      })

      it('lets exactly one of a completion and an abort win, and hands out every part once', async () => {
        for (let round = 0; round < 8; round++) {
          const key = `race-${round}`
          const u = await upload(key)
          for (const n of [1, 2]) await store.putPart(part(u.uploadId, n))
          const content = testContent(key)
          const complete = store.completeMultipartUpload({ uploadId: u.uploadId, object: putInput('bucket', key, content) })
          const abort = store.abortMultipartUpload(u.uploadId)
          const [completed, aborted] = await Promise.allSettled([complete, abort])
          if (aborted?.status !== 'fulfilled') throw new Error('an abort never fails')
          if (completed?.status === 'fulfilled') {
            expect(aborted.value).toBeNull()
            expect(completed.value.parts.map(p => p.partNumber)).toEqual([1, 2])
            expect(await refCount(content)).toBe(1)
          } else {
            expect((completed?.reason as AtlasError).code).toBe('NoSuchUpload')
            expect(aborted.value?.map(p => p.partNumber)).toEqual([1, 2])
            expect(await store.getObject('bucket', key)).toBeNull()
            expect(await store.getContent(content.id)).toBeNull()
          }
          expect(await store.getMultipartUpload(u.uploadId)).toBeNull()
        }
      })

      it('aborts an upload, returns its parts, and refuses parts for it afterwards', async () => {
        const u = await upload('k')
        const keep = await upload('k')
        const p1 = part(u.uploadId, 1)
        const p2 = part(u.uploadId, 2)
        await store.putPart(p2)
        await store.putPart(p1)
        await store.putPart(part(keep.uploadId, 1))
        const parts = await store.abortMultipartUpload(u.uploadId)
        expect(withoutTime(parts ?? [])).toEqual([stored(p1), stored(p2)])
        expect(await store.getMultipartUpload(u.uploadId)).toBeNull()
        await expectAtlasError(store.putPart(part(u.uploadId, 3)), 'NoSuchUpload')
        await expectAtlasError(store.listParts(u.uploadId), 'NoSuchUpload')
        expect(await store.abortMultipartUpload(u.uploadId)).toBeNull()
        expect(await store.abortMultipartUpload('unknown')).toBeNull()
        expect(await store.abortMultipartUpload('nul\u0000')).toBeNull()
        expect((await store.listParts(keep.uploadId)).parts).toHaveLength(1)
        // An upload with no parts aborts to an empty list, not null
        expect(await store.abortMultipartUpload((await upload('empty')).uploadId)).toEqual([])
      })

      it('loses no part to an abort racing with parts being recorded', async () => {
        for (let round = 0; round < 6; round++) {
          const u = await upload(`race-${round}`)
          await store.putPart(part(u.uploadId, 1))
          const puts = [2, 3, 4, 5].map(async n => await store.putPart(part(u.uploadId, n)))
          const abort = store.abortMultipartUpload(u.uploadId)
          const outcomes = await Promise.allSettled(puts)
          const aborted = await abort
          for (const o of outcomes) {
            if (o.status === 'rejected') expect((o.reason as AtlasError).code).toBe('NoSuchUpload')
          }
          // Every part that was recorded is among those the abort returned
          const recorded = [1, ...outcomes.flatMap((o, i) => o.status === 'fulfilled' ? [i + 2] : [])]
          expect(aborted?.map(p => p.partNumber)).toEqual(recorded)
        }
      })

      it('aborts the uploads in progress when their bucket is deleted, and returns their parts', async () => {
        await store.createBucket({ name: 'kept', ownerId: 'owner', backends: ['ipfs'], public: false })
        const a = await upload('a')
        const b = await upload('b/c')
        const elsewhere = await upload('a', 'kept')
        const parts = [part(a.uploadId, 1), part(a.uploadId, 2), part(b.uploadId, 1)]
        for (const p of parts) await store.putPart(p)
        await store.putPart(part(elsewhere.uploadId, 1))

        // Objects still make the bucket not empty, and then no upload is touched
        await store.putObject(putInput('bucket', 'obj', testContent('obj')))
        await expectAtlasError(store.deleteBucket('bucket'), 'BucketNotEmpty')
        expect((await store.listMultipartUploads('bucket')).uploads).toHaveLength(2)
        await store.deleteObject('bucket', 'obj')

        const { abortedParts } = await store.deleteBucket('bucket')
        expect(withoutTime(abortedParts)).toEqual(parts.map(stored).sort((x, y) => x.uploadId < y.uploadId ? -1 : x.uploadId > y.uploadId ? 1 : x.partNumber - y.partNumber))
        expect(await store.getBucket('bucket')).toBeNull()
        expect(await store.getMultipartUpload(a.uploadId)).toBeNull()
        expect(await store.getMultipartUpload(b.uploadId)).toBeNull()
        await expectAtlasError(store.putPart(part(a.uploadId, 3)), 'NoSuchUpload')
        expect(await store.getMultipartUpload(elsewhere.uploadId)).toEqual(elsewhere)
        expect((await store.listParts(elsewhere.uploadId)).parts).toHaveLength(1)

        // The name can be taken again, with nothing left over
        await store.createBucket({ name: 'bucket', ownerId: 'owner', backends: ['ipfs'], public: false })
        expect((await store.listMultipartUploads('bucket')).uploads).toEqual([])
      })

      it('lists stale uploads oldest first, for the sweeper', async () => {
        const made: MultipartUpload[] = []
        for (const key of ['z', 'a', 'm']) {
          made.push(await upload(key))
          await sleep(5)
        }
        const future = new Date(Date.now() + 60_000)
        expect((await store.listStaleMultipartUploads(future, 10)).map(u => u.uploadId)).toEqual(made.map(u => u.uploadId))
        expect(await store.listStaleMultipartUploads(future, 10)).toEqual(made)
        expect((await store.listStaleMultipartUploads(future, 2)).map(u => u.key)).toEqual(['z', 'a'])
        // Strictly older than the cut-off
        expect((await store.listStaleMultipartUploads((made[1] as MultipartUpload).createdAt, 10)).map(u => u.key)).toEqual(['z'])
        expect(await store.listStaleMultipartUploads(new Date(0), 10)).toEqual([])
        expect(await store.listStaleMultipartUploads(future, 0)).toEqual([])
        await expectAtlasError(store.listStaleMultipartUploads(future, -1), 'InvalidArgument')
        await expectAtlasError(store.listStaleMultipartUploads(new Date(Number.NaN), 1), 'InvalidArgument')
        // Sweeping: abort what is listed, and it is no longer stale
        await store.abortMultipartUpload((made[0] as MultipartUpload).uploadId)
        expect((await store.listStaleMultipartUploads(future, 10)).map(u => u.key)).toEqual(['a', 'm'])
      })
    })
  })
}
