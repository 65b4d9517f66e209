/**
 * Atlas as a trustless IPFS gateway, checked by clients that trust nothing it says: a 5 MiB
 * object uploaded through the REST API is fetched as `/ipfs/{cid}?format=car` with plain fetch
 * and verified block by block with @ipld/car and multiformats (every block re-hashed against its
 * CID, the root checked, the file rebuilt by ipfs-unixfs-exporter from the verified blocks alone
 * and compared with the upload); the same CAR with one byte changed must fail that check. Then an
 * independent Helia node, connected only to the gateway's libp2p address on loopback, fetches the
 * same CID over Bitswap.
 */
import { createHash, randomBytes } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { exportFile, verifyCar } from '../fixtures/car.ts'
import { sha256Of, startHeliaPeer, type HeliaPeer } from '../fixtures/helia-peer.ts'

const MiB = 1024 * 1024

describe('trustless gateway: CAR verified by an independent client, and the same CID over Bitswap', () => {
  let t: TestAtlas
  let peer: HeliaPeer | undefined

  beforeAll(async () => { t = await startTestAtlas({ network: true }) })
  afterAll(async () => {
    await peer?.stop()
    await t?.stop()
  })

  it('serves a 5 MiB object as a CAR whose every block verifies, and over Bitswap', async () => {
    const upload = randomBytes(5 * MiB)
    const expected = createHash('sha256').update(upload).digest('hex')
    const created = await t.api('/v1/buckets/trustless', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":["ipfs"],"public":true}' })
    expect(created.status).toBe(201)
    const stored = await t.api('/v1/buckets/trustless/objects/five.bin', { method: 'PUT', body: upload })
    expect(stored.status).toBe(200)
    const cid = (await stored.json() as { addresses: { ipfs: string } }).addresses.ipfs
    const root = CID.parse(cid)

    // no credentials: a public content, fetched as any IPFS client would
    const res = await fetch(`${t.url}/ipfs/${cid}?format=car`, { headers: { accept: 'application/vnd.ipld.car' } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=n')
    const car = new Uint8Array(await res.arrayBuffer())

    const verified = await verifyCar(car)
    expect(verified.roots.map(String)).toEqual([cid])
    expect(verified.blocks[0]?.cid.equals(root)).toBe(true)
    // a dag-pb root over five 1 MiB raw leaves
    expect(verified.blocks).toHaveLength(6)
    const rebuilt = await sha256Of(exportFile(root, verified.blocks))
    expect(rebuilt.bytes).toBe(upload.byteLength)
    expect(rebuilt.hex).toBe(expected)

    // the check can fail: one byte changed anywhere in a block's data is caught
    for (const at of [car.byteLength - 1, car.byteLength - 3 * MiB]) {
      const damaged = car.slice()
      damaged[at] = (damaged[at] as number) ^ 0xff
      await expect(verifyCar(damaged)).rejects.toThrow(/do not hash to its CID/)
    }

    const [listen] = t.atlas.ipfs.multiaddrs().filter((a) => a.startsWith('/ip4/127.0.0.1/'))
    expect(listen).toBeDefined()
    peer = await startHeliaPeer({ dial: [listen as string] })
    expect(peer.connectedPeers()).toEqual([t.atlas.ipfs.peerId()])
    const swapped = await sha256Of(peer.fetchBytes(cid, { signal: AbortSignal.timeout(60_000) }))
    expect(swapped.bytes).toBe(upload.byteLength)
    expect(swapped.hex).toBe(expected)
  })
})
