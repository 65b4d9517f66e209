import { createHash, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAccount } from '../../src/accounts/credentials.ts'
import { canonicalIdFromSha256 } from '../../src/core/content-id.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { rawRequest } from '../fixtures/http.ts'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex')

async function problem (res: Response): Promise<Record<string, unknown>> {
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  return await res.json() as Record<string, unknown>
}

describe('REST API v1', () => {
  let t: TestAtlas

  beforeAll(async () => {
    t = await startTestAtlas({ config: { limits: { maxObjectSize: 4 * 1024 * 1024 } } })
  })
  afterAll(async () => { await t?.stop() })

  const put = async (bucket: string, key: string, body: Uint8Array, headers: Record<string, string> = {}): Promise<Response> =>
    await t.api(`/v1/buckets/${bucket}/objects/${key}`, { method: 'PUT', body, headers })

  describe('buckets', () => {
    it('creates, describes, lists and deletes a bucket', async () => {
      const created = await t.api('/v1/buckets/photos', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ backends: ['ipfs'], public: false }) })
      expect(created.status).toBe(201)
      expect(await created.json()).toMatchObject({ name: 'photos', backends: ['ipfs'], public: false })
      const got = await t.api('/v1/buckets/photos')
      expect(got.status).toBe(200)
      const list = await (await t.api('/v1/buckets')).json() as { buckets: Array<{ name: string }> }
      expect(list.buckets.map((b) => b.name)).toContain('photos')
      const del = await t.api('/v1/buckets/photos', { method: 'DELETE' })
      expect(del.status).toBe(204)
      expect((await t.api('/v1/buckets/photos')).status).toBe(404)
    })

    it('defaults to the configured backends without a body', async () => {
      const res = await t.api('/v1/buckets/nobody-bucket', { method: 'PUT' })
      expect(res.status).toBe(201)
      expect((await res.json() as { backends: string[] }).backends).toEqual(['ipfs'])
    })

    it('refuses invalid names, unknown backends and unknown fields', async () => {
      for (const name of ['ab', 'UPPER', 'has_underscore', '192.168.1.1', 'a..b', '-dash']) {
        const res = await t.api(`/v1/buckets/${name}`, { method: 'PUT' })
        expect(res.status, name).toBe(400)
        expect((await problem(res)).code).toBe('InvalidBucketName')
      }
      const badBackend = await t.api('/v1/buckets/good-name', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":["s3"]}' })
      expect(badBackend.status).toBe(400)
      const extra = await t.api('/v1/buckets/good-name', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"colour":"red"}' })
      expect(extra.status).toBe(400)
      const notJson = await t.api('/v1/buckets/good-name', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":' })
      expect(notJson.status).toBe(400)
      expect((await problem(notJson)).code).toBe('MalformedRequest')
      expect((await t.api('/v1/buckets/good-name')).status).toBe(404)
    })

    it('reports duplicates and non-empty buckets', async () => {
      expect((await t.api('/v1/buckets/dupe-bucket', { method: 'PUT' })).status).toBe(201)
      const again = await t.api('/v1/buckets/dupe-bucket', { method: 'PUT' })
      expect(again.status).toBe(409)
      expect((await problem(again)).code).toBe('BucketAlreadyOwnedByYou')
      const other = await createAccount(t.atlas.metadata, 'other')
      const theirs = await t.api('/v1/buckets/dupe-bucket', { method: 'PUT', auth: other.token })
      expect((await problem(theirs)).code).toBe('BucketAlreadyExists')
      expect((await put('dupe-bucket', 'x', new Uint8Array([1]))).status).toBe(200)
      const notEmpty = await t.api('/v1/buckets/dupe-bucket', { method: 'DELETE' })
      expect(notEmpty.status).toBe(409)
      expect((await problem(notEmpty)).code).toBe('BucketNotEmpty')
    })

    it('needs a valid token and keeps accounts apart', async () => {
      const none = await t.api('/v1/buckets', { auth: false })
      expect(none.status).toBe(401)
      expect((await problem(none)).code).toBe('Unauthorized')
      const wrong = await t.api('/v1/buckets', { auth: 'atlas_not-a-real-token' })
      expect(wrong.status).toBe(401)
      expect((await problem(wrong)).code).toBe('InvalidToken')
      const malformed = await t.api('/v1/buckets', { headers: { authorization: 'Basic abc' } })
      expect(malformed.status).toBe(401)

      await t.api('/v1/buckets/mine-only', { method: 'PUT' })
      const other = await createAccount(t.atlas.metadata, 'intruder')
      for (const [method, path] of [['GET', '/v1/buckets/mine-only'], ['DELETE', '/v1/buckets/mine-only'], ['PUT', '/v1/buckets/mine-only/objects/k'], ['GET', '/v1/buckets/mine-only/objects'], ['GET', '/v1/buckets/mine-only/objects/k']] as const) {
        const res = await t.api(path, { method, auth: other.token, ...(method === 'PUT' ? { body: 'x' } : {}) })
        expect(res.status, `${method} ${path}`).toBe(403)
        expect((await problem(res)).code).toBe('AccessDenied')
      }
      const theirList = await (await t.api('/v1/buckets', { auth: other.token })).json() as { buckets: unknown[] }
      expect(theirList.buckets).toEqual([])
    })
  })

  describe('objects', () => {
    beforeAll(async () => {
      expect((await t.api('/v1/buckets/objs', { method: 'PUT' })).status).toBe(201)
    })

    it('round-trips bytes with addresses, ETag and metadata', async () => {
      const body = randomBytes(300_000)
      const res = await put('objs', 'dir/sub/file.bin', body, { 'content-type': 'image/png', 'x-atlas-meta-colour': 'blue', 'cache-control': 'max-age=60' })
      expect(res.status).toBe(200)
      const json = await res.json() as Record<string, any>
      const contentId = canonicalIdFromSha256(Buffer.from(sha256(body), 'hex'))
      expect(json).toMatchObject({ bucket: 'objs', key: 'dir/sub/file.bin', size: body.length, etag: md5(body), contentType: 'image/png', contentId, metadata: { colour: 'blue' } })
      // a single-leaf content's UnixFS CID is the canonical id
      expect(json.addresses.ipfs).toBe(contentId)
      expect(res.headers.get('x-atlas-content-id')).toBe(contentId)
      expect(res.headers.get('x-atlas-cid')).toBe(json.addresses.ipfs)

      const got = await t.api('/v1/buckets/objs/objects/dir/sub/file.bin')
      expect(got.status).toBe(200)
      expect(got.headers.get('content-type')).toBe('image/png')
      expect(got.headers.get('etag')).toBe(`"${md5(body)}"`)
      expect(got.headers.get('x-atlas-meta-colour')).toBe('blue')
      expect(got.headers.get('cache-control')).toBe('max-age=60')
      expect(got.headers.get('content-length')).toBe(String(body.length))
      expect(sha256(new Uint8Array(await got.arrayBuffer()))).toBe(sha256(body))

      const head = await t.api('/v1/buckets/objs/objects/dir/sub/file.bin', { method: 'HEAD' })
      expect(head.status).toBe(200)
      expect(head.headers.get('content-length')).toBe(String(body.length))
      expect(head.headers.get('x-atlas-content-id')).toBe(contentId)
    })

    it('stores a multi-block object and serves ranges of it', async () => {
      const body = randomBytes(3 * 1024 * 1024 + 17)
      const res = await put('objs', 'big.bin', body)
      const json = await res.json() as { addresses: { ipfs: string }, contentId: string }
      expect(json.addresses.ipfs).not.toBe(json.contentId)
      expect(json.addresses.ipfs).toMatch(/^bafy/)

      const range = await t.api('/v1/buckets/objs/objects/big.bin', { headers: { range: 'bytes=1048570-1048600' } })
      expect(range.status).toBe(206)
      expect(range.headers.get('content-range')).toBe(`bytes 1048570-1048600/${body.length}`)
      expect(Buffer.from(await range.arrayBuffer())).toEqual(body.subarray(1048570, 1048601))
      const suffix = await t.api('/v1/buckets/objs/objects/big.bin', { headers: { range: 'bytes=-10' } })
      expect(Buffer.from(await suffix.arrayBuffer())).toEqual(body.subarray(body.length - 10))
      const open = await t.api('/v1/buckets/objs/objects/big.bin', { headers: { range: `bytes=${body.length - 5}-` } })
      expect(Buffer.from(await open.arrayBuffer())).toEqual(body.subarray(body.length - 5))

      const bad = await t.api('/v1/buckets/objs/objects/big.bin', { headers: { range: `bytes=${body.length}-` } })
      expect(bad.status).toBe(416)
      expect(bad.headers.get('content-range')).toBe(`bytes */${body.length}`)
      expect((await problem(bad)).code).toBe('InvalidRange')
    })

    it('answers conditional requests', async () => {
      const body = Buffer.from('conditional')
      await put('objs', 'cond.txt', body)
      const etag = `"${md5(body)}"`
      expect((await t.api('/v1/buckets/objs/objects/cond.txt', { headers: { 'if-none-match': etag } })).status).toBe(304)
      expect((await t.api('/v1/buckets/objs/objects/cond.txt', { headers: { 'if-none-match': '"other"' } })).status).toBe(200)
      expect((await t.api('/v1/buckets/objs/objects/cond.txt', { headers: { 'if-match': '"other"' } })).status).toBe(412)
      const future = new Date(Date.now() + 3600_000).toUTCString()
      expect((await t.api('/v1/buckets/objs/objects/cond.txt', { headers: { 'if-modified-since': future } })).status).toBe(304)
    })

    it('replaces objects, deduplicates contents and deletes', async () => {
      const a = Buffer.from('version A')
      const b = Buffer.from('version B')
      await put('objs', 'v.txt', a)
      await put('objs', 'v-copy.txt', a)
      const content = await t.atlas.objects.resolve(`sha256:${sha256(a)}`)
      expect(content.refCount).toBe(2)
      await put('objs', 'v.txt', b)
      expect((await t.atlas.objects.resolve(`sha256:${sha256(a)}`)).refCount).toBe(1)
      expect(await (await t.api('/v1/buckets/objs/objects/v.txt')).text()).toBe('version B')
      expect((await t.api('/v1/buckets/objs/objects/v-copy.txt', { method: 'DELETE' })).status).toBe(204)
      expect((await t.api('/v1/buckets/objs/objects/v-copy.txt')).status).toBe(404)
      expect((await t.api('/v1/buckets/objs/objects/v-copy.txt', { method: 'DELETE' })).status).toBe(404)
      // the last reference went: the sweeper removes the content everywhere
      await t.atlas.objects.sweep()
      await expect(t.atlas.objects.resolve(`sha256:${sha256(a)}`)).rejects.toMatchObject({ code: 'NoSuchContent' })
      expect(await t.atlas.ipfs.has(content.locations[0]!.address)).toBe(false)
    })

    it('refuses bad keys, bad digests and oversized bodies, storing nothing', async () => {
      // fetch would normalise these paths away: send them as a client that does not
      for (const key of ['a/../b', './x', 'x/.', 'a/./b', 'a/%2E%2E/b', '%2e%2e']) {
        const res = await rawRequest(t.url, `PUT /v1/buckets/objs/objects/${key} HTTP/1.1\nHost: x\nAuthorization: Bearer ${t.account.token}\nContent-Length: 1\nConnection: close\n`, Buffer.from('x'))
        expect(res?.status, key).toBe(400)
        expect(JSON.parse(res?.body ?? '{}').code).toBe('InvalidObjectKey')
      }
      const control = await put('objs', 'bad%00key', Buffer.from('x'))
      expect(control.status).toBe(400)

      const body = Buffer.from('digest me')
      const wrongMd5 = await put('objs', 'digest.txt', body, { 'content-md5': createHash('md5').update('other').digest('base64') })
      expect(wrongMd5.status).toBe(400)
      expect((await problem(wrongMd5)).code).toBe('BadDigest')
      const rightMd5 = await put('objs', 'digest-ok.txt', body, { 'content-md5': createHash('md5').update(body).digest('base64') })
      expect(rightMd5.status).toBe(200)

      const tooBig = await put('objs', 'huge.bin', randomBytes(4 * 1024 * 1024 + 1))
      expect(tooBig.status).toBe(413)
      expect((await problem(tooBig)).code).toBe('EntityTooLarge')

      const chunkedTooBig = await t.api('/v1/buckets/objs/objects/huge2.bin', {
        method: 'PUT',
        duplex: 'half',
        body: new ReadableStream({
          start (c) {
            for (let i = 0; i < 5; i++) c.enqueue(randomBytes(1024 * 1024))
            c.close()
          }
        })
      } as RequestInit)
      expect(chunkedTooBig.status).toBe(413)

      const listed = await (await t.api('/v1/buckets/objs/objects?prefix=huge')).json() as { objects: unknown[] }
      expect(listed.objects).toEqual([])
      expect((await t.api('/v1/buckets/objs/objects/digest.txt')).status).toBe(404)
    })

    it('stores nothing when the client sends less than it announced and hangs up', async () => {
      const head = `PUT /v1/buckets/objs/objects/short.bin HTTP/1.1\nHost: x\nAuthorization: Bearer ${t.account.token}\nContent-Length: 100000\n`
      const res = await rawRequest(t.url, head, randomBytes(40_000), { hangUp: true })
      expect(res).toBeNull()
      const halfClosed = await rawRequest(t.url, head.replace('short.bin', 'short2.bin'), randomBytes(40_000), { halfClose: true })
      expect(halfClosed?.status ?? 400).toBeGreaterThanOrEqual(400)
      // the server notices the disconnect; wait until nothing is in flight
      for (let i = 0; i < 100 && t.atlas.objects.uploadsInFlight > 0; i++) await new Promise((r) => setTimeout(r, 20))
      expect(t.atlas.objects.uploadsInFlight).toBe(0)
      expect((await t.api('/v1/buckets/objs/objects/short.bin')).status).toBe(404)
      expect((await t.api('/v1/buckets/objs/objects/short2.bin')).status).toBe(404)
    })

    it('uploads one or many files from a form', async () => {
      const form = new FormData()
      form.append('prefix', 'uploads/')
      form.append('file', new Blob([Buffer.from('first file')], { type: 'text/plain' }), 'one.txt')
      form.append('key', 'named/explicitly.bin')
      form.append('file', new Blob([randomBytes(2 * 1024 * 1024)]), 'two.bin')
      const res = await t.api('/v1/buckets/objs/objects', { method: 'POST', body: form })
      expect(res.status).toBe(200)
      const json = await res.json() as { objects: Array<{ key: string, contentType: string, size: number }> }
      expect(json.objects.map((o) => o.key)).toEqual(['uploads/one.txt', 'named/explicitly.bin'])
      expect(json.objects[0]).toMatchObject({ contentType: 'text/plain', size: 10 })
      expect(await (await t.api('/v1/buckets/objs/objects/uploads/one.txt')).text()).toBe('first file')

      const big = new FormData()
      big.append('file', new Blob([randomBytes(4 * 1024 * 1024 + 10)]), 'too-big.bin')
      const tooBig = await t.api('/v1/buckets/objs/objects', { method: 'POST', body: big })
      expect(tooBig.status).toBe(413)
      expect((await t.api('/v1/buckets/objs/objects/too-big.bin')).status).toBe(404)

      const notForm = await t.api('/v1/buckets/objs/objects', { method: 'POST', body: 'plain', headers: { 'content-type': 'text/plain' } })
      expect(notForm.status).toBe(415)
    })

    it('lists with prefix, delimiter and cursor', async () => {
      await t.api('/v1/buckets/listing', { method: 'PUT' })
      const keys = ['a/1', 'a/2', 'a/b/3', 'b', 'c/1', 'c/2', 'd', 'é/x']
      for (const k of keys) await put('listing', k, Buffer.from(k))
      const all = await (await t.api('/v1/buckets/listing/objects')).json() as { objects: Array<{ key: string }>, commonPrefixes: string[] }
      expect(all.objects.map((o) => o.key)).toEqual(keys)
      const rolled = await (await t.api('/v1/buckets/listing/objects?delimiter=/')).json() as { objects: Array<{ key: string }>, commonPrefixes: string[] }
      expect(rolled.objects.map((o) => o.key)).toEqual(['b', 'd'])
      expect(rolled.commonPrefixes).toEqual(['a/', 'c/', 'é/'])
      const inA = await (await t.api('/v1/buckets/listing/objects?prefix=a/&delimiter=/')).json() as { objects: Array<{ key: string }>, commonPrefixes: string[] }
      expect(inA.objects.map((o) => o.key)).toEqual(['a/1', 'a/2'])
      expect(inA.commonPrefixes).toEqual(['a/b/'])

      const seen: string[] = []
      let cursor: string | undefined
      for (let page = 0; page < 10; page++) {
        const res = await (await t.api(`/v1/buckets/listing/objects?delimiter=/&limit=2${cursor === undefined ? '' : `&cursor=${cursor}`}`)).json() as { objects: Array<{ key: string }>, commonPrefixes: string[], nextCursor?: string }
        seen.push(...res.objects.map((o) => o.key), ...res.commonPrefixes)
        cursor = res.nextCursor
        if (cursor === undefined) break
      }
      expect(seen.sort()).toEqual(['a/', 'b', 'c/', 'd', 'é/'].sort())
      expect((await t.api('/v1/buckets/listing/objects?limit=0')).status).toBe(400)
      expect((await t.api('/v1/buckets/listing/objects?limit=abc')).status).toBe(400)
    })
  })

  describe('content by address', () => {
    it('resolves every address form, for readers only', async () => {
      await t.api('/v1/buckets/private-c', { method: 'PUT' })
      await t.api('/v1/buckets/public-c', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"public":true}' })
      const secret = randomBytes(2 * 1024 * 1024 + 3)
      const stored = await (await put('private-c', 's.bin', secret)).json() as { contentId: string, addresses: { ipfs: string } }
      for (const address of [stored.contentId, stored.addresses.ipfs, `sha256:${sha256(secret)}`]) {
        const res = await t.api(`/v1/content/${address}`)
        expect(res.status, address).toBe(200)
        expect(res.headers.get('etag')).toBe(`"${stored.contentId}"`)
        expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(secret))
      }
      // anonymous and other accounts cannot read private content, and cannot tell it exists
      expect((await t.api(`/v1/content/${stored.contentId}`, { auth: false })).status).toBe(404)
      const other = await createAccount(t.atlas.metadata, 'stranger')
      expect((await t.api(`/v1/content/${stored.contentId}`, { auth: other.token })).status).toBe(404)

      const open = Buffer.from('for everyone')
      const pub = await (await put('public-c', 'open.txt', open)).json() as { contentId: string }
      const anon = await t.api(`/v1/content/${pub.contentId}`, { auth: false })
      expect(anon.status).toBe(200)
      expect(anon.headers.get('cache-control')).toContain('immutable')
      expect(await anon.text()).toBe('for everyone')
      expect((await t.api('/v1/buckets/public-c/objects/open.txt', { auth: false })).status).toBe(200)
      expect((await t.api('/v1/buckets/public-c/objects', { auth: false })).status).toBe(200)
      expect((await t.api('/v1/buckets/public-c/objects/open.txt', { method: 'DELETE', auth: false })).status).toBe(401)

      const ranged = await t.api(`/v1/content/${pub.contentId}`, { auth: false, headers: { range: 'bytes=4-7' } })
      expect(ranged.status).toBe(206)
      expect(await ranged.text()).toBe('ever')
    })

    it('tells unknown from malformed addresses', async () => {
      const unknown = await t.api(`/v1/content/sha256:${'ab'.repeat(32)}`)
      expect(unknown.status).toBe(404)
      expect((await problem(unknown)).code).toBe('NoSuchContent')
      const malformed = await t.api('/v1/content/not-an-address')
      expect(malformed.status).toBe(400)
      expect((await problem(malformed)).code).toBe('InvalidAddress')
    })
  })

  it('answers health and unknown routes', async () => {
    expect((await t.api('/healthz', { auth: false })).status).toBe(200)
    const ready = await t.api('/readyz', { auth: false })
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ status: 'ready' })
    const missing = await t.api('/v1/nothing-here')
    expect(missing.status).toBe(404)
    expect((await problem(missing)).code).toBe('NotFound')
  })
})
