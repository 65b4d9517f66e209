/**
 * The built-in BitTorrent tracker at /announce and /scrape, spoken to as BitTorrent clients do
 * (binary info_hash and peer_id, compact peer lists): bencoded answers, failures as `failure
 * reason`, only torrents the gateway stores, Atlas's own seeder listed (also for contents that
 * were seeded again at start, before the server listened), and off when configured off.
 */
import { randomBytes } from 'node:crypto'
import bencode from 'bencode'
import parseTorrent from 'parse-torrent'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TRACKER_CONTENT_TYPE } from '../../src/backends/bittorrent/tracker.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { announceQuery, compactPeers, listedPeers, percentEncode, trackerGet, waitUntilListed } from '../fixtures/tracker.ts'

const json = { 'content-type': 'application/json' }

function reason (body: Record<string, unknown>): string | undefined {
  const value = body['failure reason']
  return value instanceof Uint8Array ? Buffer.from(value).toString() : undefined
}

describe('built-in tracker', () => {
  let t: TestAtlas
  let announceUrl: string
  let publicIh: string
  let privateIh: string

  beforeAll(async () => {
    t = await startTestAtlas()
    announceUrl = `${t.url}/announce`
    await t.api('/v1/buckets/tracked', { method: 'PUT', headers: json, body: '{"backends":["bittorrent"],"public":true}' })
    await t.api('/v1/buckets/tracked-private', { method: 'PUT', headers: json, body: '{"backends":["bittorrent"]}' })
    const put = async (path: string): Promise<string> => {
      const res = await t.api(path, { method: 'PUT', body: randomBytes(300_000) })
      expect(res.status).toBe(200)
      return (await res.json() as { addresses: { btih: string } }).addresses.btih
    }
    publicIh = await put('/v1/buckets/tracked/objects/a.bin')
    privateIh = await put('/v1/buckets/tracked-private/objects/b.bin')
  })

  afterAll(async () => { await t?.stop() })

  it('lists Atlas\'s seeder for every content it stores, private ones included, at its peer port', async () => {
    const seeder = `127.0.0.1:${t.atlas.bittorrent?.port}`
    await waitUntilListed(announceUrl, publicIh, seeder)
    // the seeder serves any peer that knows the infohash, whatever the bucket: so does the tracker
    await waitUntilListed(announceUrl, privateIh, seeder)
    expect(t.atlas.tracker?.peers(publicIh)).toEqual([seeder])
  })

  it('answers an announce with a bencoded peer list, the peer at the address it came from', async () => {
    const leecher = { peerId: Buffer.from('-XX0001-leecher00001'), port: 50_001, left: 1000 }
    const reply = await trackerGet(`${announceUrl}?${announceQuery(publicIh, { ...leecher, event: 'started' })}`)
    expect(reply.status).toBe(200)
    expect(reply.contentType).toBe(TRACKER_CONTENT_TYPE)
    expect(reason(reply.body)).toBeUndefined()
    expect(reply.body.interval).toBeGreaterThan(0)
    expect(reply.body.complete).toBe(1)
    expect(reply.body.incomplete).toBe(1)
    expect(compactPeers(reply.body.peers)).toContain(`127.0.0.1:${t.atlas.bittorrent?.port}`)
    expect(await listedPeers(announceUrl, publicIh)).toContain('127.0.0.1:50001')

    await trackerGet(`${announceUrl}?${announceQuery(publicIh, { ...leecher, event: 'stopped' })}`)
    expect(await listedPeers(announceUrl, publicIh)).not.toContain('127.0.0.1:50001')
  })

  it('answers a scrape for named infohashes, and refuses a scrape of everything', async () => {
    const reply = await trackerGet(`${t.url}/scrape?info_hash=${percentEncode(Buffer.from(publicIh, 'hex'))}`)
    expect(reply.status).toBe(200)
    expect(reply.contentType).toBe(TRACKER_CONTENT_TYPE)
    // one entry, keyed by the 20 binary bytes of the infohash
    const files = Object.values(reply.body.files as Record<string, Record<string, number>>)
    expect(files).toHaveLength(1)
    expect(files[0]?.complete).toBe(1)

    const all = await trackerGet(`${t.url}/scrape`)
    expect(all.status).toBe(200)
    expect(reason(all.body)).toMatch(/info_hash/)
    expect(all.body.files).toBeUndefined()
  })

  it('refuses torrents the gateway does not store, and malformed announces, with a failure reason', async () => {
    const unknown = await trackerGet(`${announceUrl}?${announceQuery('ab'.repeat(20), { event: 'started', left: 10 })}`)
    expect(unknown.status).toBe(200)
    expect(reason(unknown.body)).toMatch(/only tracks torrents stored on this gateway/)
    expect(t.atlas.tracker?.peers('ab'.repeat(20))).toEqual([])

    const bare = await trackerGet(announceUrl)
    expect(bare.contentType).toBe(TRACKER_CONTENT_TYPE)
    expect(reason(bare.body)).toMatch(/info_hash/)
    const noPort = await trackerGet(`${announceUrl}?${announceQuery(publicIh).replace(/&port=\d+/, '')}`)
    expect(reason(noPort.body)).toMatch(/port/)
  })

  it('needs no credentials, and stops tracking a content once it is removed', async () => {
    const res = await t.api('/v1/buckets/tracked/objects/gone.bin', { method: 'PUT', body: randomBytes(50_000) })
    const ih = (await res.json() as { addresses: { btih: string } }).addresses.btih
    await waitUntilListed(announceUrl, ih, `127.0.0.1:${t.atlas.bittorrent?.port}`)
    expect((await t.api('/v1/buckets/tracked/objects/gone.bin', { method: 'DELETE' })).status).toBe(204)
    await t.atlas.objects.sweep()
    expect(t.atlas.bittorrent?.swarm(ih)).toBeUndefined()
    const after = await trackerGet(`${announceUrl}?${announceQuery(ih, { event: 'started', left: 10 })}`)
    expect(reason(after.body)).toMatch(/only tracks torrents stored on this gateway/)
    expect(t.atlas.tracker?.peers(ih)).toEqual([])
  })
})

describe('built-in tracker across a restart', () => {
  it('lists the seeder again for contents seeded at start, before the server listened', async () => {
    const first = await startTestAtlas()
    let second: TestAtlas | undefined
    try {
      await first.api('/v1/buckets/kept', { method: 'PUT', headers: json, body: '{"backends":["bittorrent"],"public":true}' })
      const res = await first.api('/v1/buckets/kept/objects/k.bin', { method: 'PUT', body: randomBytes(200_000) })
      const ih = (await res.json() as { addresses: { btih: string } }).addresses.btih
      await first.stop({ keepData: true })

      second = await startTestAtlas({ dataDir: first.dataDir })
      const seeder = `127.0.0.1:${second.atlas.bittorrent?.port}`
      // a new tracker that knows nothing: only the seeder's announce after listen can put it there
      await waitUntilListed(`${second.url}/announce`, ih, seeder)
      const torrent = await parseTorrent(Buffer.from(await (await fetch(`${second.url}/bt/${ih}.torrent`)).arrayBuffer()))
      expect(torrent.announce).toEqual([`${second.url}/announce`])
    } finally {
      await (second ?? first).stop()
    }
  })
})

describe('built-in tracker turned off', () => {
  let t: TestAtlas
  beforeAll(async () => {
    t = await startTestAtlas({
      config: { bittorrent: { enabled: true, port: 0, tracker: false, announce: ['http://127.0.0.1:1/announce'], dht: false, lsd: false, natUpnp: false, natPmp: false } }
    })
  })
  afterAll(async () => { await t?.stop() })

  it('serves no /announce or /scrape and leaves itself out of torrents and magnets', async () => {
    expect(t.atlas.tracker).toBeUndefined()
    for (const path of ['/announce', '/scrape']) {
      const res = await fetch(`${t.url}${path}`)
      expect(res.status).toBe(404)
      expect(res.headers.get('content-type')).toMatch(/problem\+json/)
    }
    await t.api('/v1/buckets/untracked', { method: 'PUT', headers: json, body: '{"backends":["bittorrent"],"public":true}' })
    const res = await t.api('/v1/buckets/untracked/objects/u.bin', { method: 'PUT', body: randomBytes(20_000) })
    const ih = (await res.json() as { addresses: { btih: string } }).addresses.btih
    const torrent = bencode.decode(new Uint8Array(await (await fetch(`${t.url}/bt/${ih}.torrent`)).arrayBuffer())) as Record<string, unknown>
    expect(Buffer.from(torrent.announce as Uint8Array).toString()).toBe('http://127.0.0.1:1/announce')
    const magnet = await (await fetch(`${t.url}/bt/${ih}/magnet`)).text()
    expect(new URL(magnet).searchParams.getAll('tr')).toEqual(['http://127.0.0.1:1/announce'])
  })
})
