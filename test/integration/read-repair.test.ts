/**
 * Read repair: when the gateway's local copy of an object is gone (a lost file or block), a GET
 * fetches it from a peer that holds it (over Bitswap, or from the BitTorrent swarm), checks it
 * against its address, serves it, and the gateway holds it again.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BitTorrentBackend } from '../../src/backends/bittorrent/bittorrent-backend.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { LOOPBACK_ONLY, startTracker, type LoopbackTracker } from '../fixtures/bittorrent-clients.ts'
import { startHeliaPeer, type HeliaPeer } from '../fixtures/helia-peer.ts'

const MiB = 1024 * 1024
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

interface Stored { contentId: string, addresses: { ipfs?: string, btih?: string } }

describe('read repair', () => {
  let t: TestAtlas | undefined
  let peer: HeliaPeer | undefined
  let tracker: LoopbackTracker | undefined
  let seeder: BitTorrentBackend | undefined
  let seederDir: string | undefined

  afterEach(async () => {
    await peer?.stop()
    await seeder?.stop()
    await t?.stop()
    await tracker?.close()
    if (seederDir !== undefined) await rm(seederDir, { recursive: true, force: true })
    t = peer = tracker = seeder = seederDir = undefined
  })

  async function store (atlas: TestAtlas, backends: string[], body: Uint8Array): Promise<Stored> {
    expect((await atlas.api('/v1/buckets/repair', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ backends }) })).status).toBe(201)
    const res = await atlas.api('/v1/buckets/repair/objects/lost.bin', { method: 'PUT', body })
    expect(res.status).toBe(200)
    return await res.json() as Stored
  }

  it('fetches a content whose IPFS blocks were lost from a peer over Bitswap, and keeps it again', async () => {
    t = await startTestAtlas({ network: true })
    const body = randomBytes(6 * MiB + 5)
    const stored = await store(t, ['ipfs'], body)
    const cid = stored.addresses.ipfs as string

    // another IPFS node fetches it, so it holds every block
    peer = await startHeliaPeer({ dial: t.atlas.ipfs.multiaddrs() })
    const parts: Uint8Array[] = []
    for await (const part of peer.fetchBytes(cid)) parts.push(part)
    expect(sha256(Buffer.concat(parts))).toBe(sha256(body))

    // the gateway loses every block file
    const blocks = join(t.dataDir, 'ipfs', 'blocks')
    await rm(blocks, { recursive: true, force: true })
    await mkdir(blocks)
    expect(await t.atlas.ipfs.has(cid)).toBe(false)

    const res = await t.api('/v1/buckets/repair/objects/lost.bin')
    expect(res.status).toBe(200)
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(body))
    expect(await t.atlas.ipfs.has(cid)).toBe(true)

    // stored again: served with no peer at all
    await peer.stop()
    peer = undefined
    const again = await t.api('/v1/buckets/repair/objects/lost.bin', { headers: { range: 'bytes=1000-1999' } })
    expect(again.status).toBe(206)
    expect(Buffer.from(await again.arrayBuffer()).equals(body.subarray(1000, 2000))).toBe(true)
  }, 60_000)

  it('fetches a content whose BitTorrent data file was lost from the swarm, and seeds it again', async () => {
    tracker = await startTracker()
    t = await startTestAtlas({ config: { bittorrent: { enabled: true, port: 0, announce: [tracker.announceUrl], dht: false, lsd: false, natUpnp: false, natPmp: false } } })
    const body = randomBytes(5 * MiB + 3)
    const stored = await store(t, ['bittorrent'], body)
    const infoHash = stored.addresses.btih as string

    // another BitTorrent peer seeds the same bytes (same profile, so the same infohash)
    seederDir = await mkdtemp(join(tmpdir(), 'atlas-repair-seeder-'))
    seeder = new BitTorrentBackend({ dataDir: seederDir, publicUrl: () => 'http://127.0.0.1:9', ...LOOPBACK_ONLY, announce: [tracker.announceUrl] })
    await seeder.start()
    expect((await seeder.put((async function * () { yield body })(), { size: body.byteLength })).address).toBe(infoHash)

    const dataFile = join(t.dataDir, 'bittorrent', 'data', infoHash)
    await rm(dataFile)
    expect(await t.atlas.bittorrent?.has(infoHash)).toBe(false)

    const res = await t.api('/v1/buckets/repair/objects/lost.bin')
    expect(res.status).toBe(200)
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(body))
    expect((await stat(dataFile)).size).toBe(body.byteLength)
    expect(await t.atlas.bittorrent?.has(infoHash)).toBe(true)
    expect(t.atlas.bittorrent?.swarm(infoHash)?.seeding).toBe(true)
    expect(seeder.swarm(infoHash)?.uploaded).toBeGreaterThanOrEqual(body.byteLength)
  }, 60_000)

  it('answers 503 when the local copy is lost and no peer holds it', async () => {
    t = await startTestAtlas()
    const body = randomBytes(100_000)
    const stored = await store(t, ['bittorrent'], body)
    await rm(join(t.dataDir, 'bittorrent', 'data', stored.addresses.btih as string))
    const res = await t.api('/v1/buckets/repair/objects/lost.bin')
    expect(res.status).toBe(503)
    expect(res.headers.get('content-type')).toContain('application/problem+json')
  })
})
