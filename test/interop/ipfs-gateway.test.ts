/**
 * End to end: an object uploaded through the REST API is on IPFS. A second, independent Helia
 * node that knows only the gateway's libp2p address on loopback fetches it by the CID the API
 * returned, over Bitswap.
 */
import { createHash, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { startHeliaPeer, type HeliaPeer } from '../fixtures/helia-peer.ts'

describe('REST upload, then Bitswap from another IPFS node', () => {
  let t: TestAtlas
  let peer: HeliaPeer | undefined

  beforeAll(async () => { t = await startTestAtlas({ network: true }) })
  afterAll(async () => {
    await peer?.stop()
    await t?.stop()
  })

  it('serves an 8 MiB upload by its CID', async () => {
    const bytes = randomBytes(8 * 1024 * 1024)
    expect((await t.api('/v1/buckets/swap', { method: 'PUT' })).status).toBe(201)
    const res = await t.api('/v1/buckets/swap/objects/eight.bin', { method: 'PUT', body: bytes })
    expect(res.status).toBe(200)
    const { addresses } = await res.json() as { addresses: { ipfs: string } }

    const [listen] = t.atlas.ipfs.multiaddrs().filter((a) => a.startsWith('/ip4/127.0.0.1/'))
    expect(listen).toBeDefined()
    peer = await startHeliaPeer({ dial: [listen as string] })
    expect(peer.connectedPeers()).toEqual([t.atlas.ipfs.peerId()])

    const hash = createHash('sha256')
    let size = 0
    for await (const chunk of peer.fetchBytes(addresses.ipfs, { signal: AbortSignal.timeout(60_000) })) {
      hash.update(chunk)
      size += chunk.byteLength
    }
    expect(size).toBe(bytes.byteLength)
    expect(hash.digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'))
  })
})
