/**
 * The shared metadata store suite: every MetadataStore implementation (SQLite, PostgreSQL) must
 * pass it. `setup()` returns a fresh, empty store, migrated or not; the suite migrates it (again).
 *
 * Expected listings come from a small in-memory model (`modelList`) that follows S3's rules
 * directly (sorted keys, filter, roll up, cut at the limit), never from the store under test.
 */
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { canonicalIdFromSha256 } from '../../src/core/content-id.ts'
import { AtlasError } from '../../src/core/errors.ts'
import type { ErrorCode } from '../../src/core/errors.ts'
import type {
  ContentLocation,
  ListObjectsInput,
  ListObjectsResult,
  MetadataStore,
  PutObjectInput
} from '../../src/metadata/store.ts'

export interface MetadataStoreTestOptions {
  /** A fresh, empty store; the suite calls `migrate()` on it */
  setup(): Promise<MetadataStore>
  teardown(store: MetadataStore): Promise<void>
  /** The access_keys row of `accessKeyId` exactly as the database holds it */
  rawAccessKeyRow(store: MetadataStore, accessKeyId: string): Promise<Record<string, unknown> | undefined>
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
        await store.deleteBucket('full')
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
  })
}
