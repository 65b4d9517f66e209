/**
 * One upload, both networks: a bucket on IPFS and BitTorrent gets every object on both from one
 * read of the body, with every native address, and any of them finds the content again.
 */
import { createHash, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('fan-out to IPFS and BitTorrent', () => {
  let t: TestAtlas
  beforeAll(async () => { t = await startTestAtlas() })
  afterAll(async () => { await t?.stop() })

  it('stores on both, answers with both addresses, and resolves each of them', async () => {
    const created = await t.api('/v1/buckets/both', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":["ipfs","bittorrent"]}' })
    expect(created.status).toBe(201)
    const body = randomBytes(3 * 1024 * 1024 + 99)
    const res = await t.api('/v1/buckets/both/objects/file.bin', { method: 'PUT', body })
    expect(res.status).toBe(200)
    const json = await res.json() as { contentId: string, addresses: { ipfs: string, btih: string, magnet: string } }
    expect(json.addresses.ipfs).toMatch(/^bafy/)
    expect(json.addresses.btih).toMatch(/^[0-9a-f]{40}$/)
    expect(json.addresses.magnet).toContain(`xt=urn:btih:${json.addresses.btih}`)
    expect(res.headers.get('x-atlas-btih')).toBe(json.addresses.btih)

    const bittorrent = t.atlas.bittorrent
    expect(bittorrent).toBeDefined()
    expect(await t.atlas.ipfs.has(json.addresses.ipfs)).toBe(true)
    expect(await bittorrent?.has(json.addresses.btih)).toBe(true)

    for (const address of [json.contentId, json.addresses.ipfs, json.addresses.btih, encodeURIComponent(json.addresses.magnet)]) {
      const got = await t.api(`/v1/content/${address}`)
      expect(got.status, address).toBe(200)
      expect(sha256(new Uint8Array(await got.arrayBuffer()))).toBe(sha256(body))
    }
    // each backend serves the bytes on its own
    for (const [backend, address] of [[t.atlas.ipfs, json.addresses.ipfs], [bittorrent, json.addresses.btih]] as const) {
      const hash = createHash('sha256')
      for await (const chunk of backend!.get(address)) hash.update(chunk)
      expect(hash.digest('hex')).toBe(sha256(body))
    }

    expect((await t.api('/v1/buckets/both/objects/file.bin', { method: 'DELETE' })).status).toBe(204)
    await t.atlas.objects.sweep()
    expect(await t.atlas.ipfs.has(json.addresses.ipfs)).toBe(false)
    expect(await bittorrent?.has(json.addresses.btih)).toBe(false)
  })

  it('stores nothing on either network when the upload fails', async () => {
    await t.api('/v1/buckets/both-fail', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":["ipfs","bittorrent"]}' })
    const body = randomBytes(2 * 1024 * 1024)
    const wrongMd5 = createHash('md5').update('something else').digest('base64')
    const res = await t.api('/v1/buckets/both-fail/objects/x.bin', { method: 'PUT', body, headers: { 'content-md5': wrongMd5 } })
    expect(res.status).toBe(400)
    await t.atlas.objects.sweep()
    const listed = async (backend: { list: () => AsyncIterable<string> }): Promise<string[]> => {
      const out: string[] = []
      for await (const a of backend.list()) out.push(a)
      return out
    }
    // the sweeper released the bytes both backends had taken
    expect(await listed(t.atlas.ipfs)).toEqual([])
    expect(await listed(t.atlas.bittorrent!)).toEqual([])
  })
})
