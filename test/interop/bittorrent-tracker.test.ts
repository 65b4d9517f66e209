/**
 * A self-hosted Atlas is a complete swarm: its built-in tracker at /announce is the only way
 * downloaders find its seeder, and they download a 64 MiB object over the peer wire.
 *
 * - A second WebTorrent client (in this process) starts from nothing but the magnet link of
 *   GET /bt/{infohash}/magnet: it learns the seeder from the tracker named in `tr=` and the
 *   torrent's metadata from the seeder (ut_metadata, BEP 9).
 * - aria2c and libtorrent start from GET /bt/{infohash}.torrent with its url-list removed, so
 *   that they cannot fall back to the webseed (bittorrent-webseed.test.ts covers that path).
 *
 * Every client runs with DHT, local discovery, peer exchange, UPnP and NAT-PMP off, and web
 * seeds off, and each run must raise Atlas's upload counter for the content by at least its
 * size: the bytes came from the seeder. Throughput is printed (wall time, client start to done).
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import parseTorrent from 'parse-torrent'
import WebTorrent from 'webtorrent'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { aria2c, libtorrentPython, runAria2c, runLibtorrent, sha256File } from '../fixtures/bittorrent-clients.ts'
import { toolGate } from '../fixtures/tools.ts'
import { listedPeers, waitUntilListed, withoutKeys } from '../fixtures/tracker.ts'
import type { ClientRun } from '../fixtures/bittorrent-clients.ts'

const MiB = 1024 * 1024
const SIZE = 64 * MiB
const CLIENT_TIMEOUT_MS = 120_000

describe('the built-in tracker makes Atlas a complete swarm', () => {
  let t: TestAtlas
  let dir: string
  let infoHash: string
  let contentId: string
  let expectedSha256: string
  let announceUrl: string

  beforeAll(async () => {
    t = await startTestAtlas()
    dir = await mkdtemp(join(tmpdir(), 'atlas-bt-tracker-'))
    announceUrl = `${t.url}/announce`
    await t.api('/v1/buckets/swarm', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":["bittorrent"],"public":true}' })
    const body = randomBytes(SIZE)
    expectedSha256 = createHash('sha256').update(body).digest('hex')
    const res = await t.api('/v1/buckets/swarm/objects/big.bin', { method: 'PUT', body })
    expect(res.status).toBe(200)
    const stored = await res.json() as { contentId: string, addresses: { btih: string } }
    infoHash = stored.addresses.btih
    contentId = stored.contentId
  }, 120_000)

  afterAll(async () => {
    await t?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  const uploaded = (): number => t.atlas.bittorrent?.swarm(infoHash)?.uploaded ?? 0

  /** Run one download, check what arrived and where it came from, print the throughput. */
  async function download (label: string, fetch: (out: string) => Promise<ClientRun>): Promise<void> {
    const out = join(dir, label)
    await mkdir(out)
    const before = uploaded()
    const run = await fetch(out)
    expect(await readdir(out)).toContain(contentId)
    expect(await sha256File(join(out, contentId))).toBe(expectedSha256)
    // every byte came from Atlas's seeder over the peer wire
    expect(uploaded() - before).toBeGreaterThanOrEqual(SIZE)
    console.log(`${label}: ${SIZE / MiB} MiB through the built-in tracker from Atlas's seeder in ${(run.ms / 1000).toFixed(2)} s = ${(SIZE / MiB / (run.ms / 1000)).toFixed(1)} MiB/s`)
  }

  it('lists Atlas\'s seeder for the content', async () => {
    const seeder = `127.0.0.1:${t.atlas.bittorrent?.port}`
    await waitUntilListed(announceUrl, infoHash, seeder)
    expect(await listedPeers(announceUrl, infoHash)).toContain(seeder)
  })

  it('names itself first in the magnet link and the .torrent', async () => {
    const magnet = await (await fetch(`${t.url}/bt/${infoHash}/magnet`)).text()
    expect(new URL(magnet).searchParams.getAll('tr')).toEqual([announceUrl])
    const parsed = await parseTorrent(Buffer.from(await (await fetch(`${t.url}/bt/${infoHash}.torrent`)).arrayBuffer()))
    expect(parsed.announce).toEqual([announceUrl])
  })

  it('lets a second WebTorrent client download it from the magnet link alone', async () => {
    const magnet = await (await fetch(`${t.url}/bt/${infoHash}/magnet`)).text()
    const client = new WebTorrent({
      torrentPort: 0,
      dht: false,
      lsd: false,
      natUpnp: false,
      natPmp: false,
      utPex: false,
      // Atlas speaks TCP only (utp: false there); a uTP attempt first costs a 5 s timeout a try
      utp: false,
      // the magnet's ws= would let it fetch from the gateway over HTTP: only the swarm counts here
      webSeeds: false,
      tracker: { wrtc: false }
    })
    try {
      await download('webtorrent', async (out) => {
        const began = performance.now()
        const torrent = client.add(magnet, { path: out })
        const peers: string[] = []
        torrent.on('wire', (_wire: unknown, addr?: string) => { if (addr !== undefined) peers.push(addr) })
        await new Promise<void>((resolve, reject) => {
          torrent.once('done', () => { resolve() })
          torrent.once('error', reject)
          client.once('error', reject)
        })
        // it found the seeder where the tracker said (no other way was open to it)
        expect(peers).toContain(`127.0.0.1:${t.atlas.bittorrent?.port}`)
        const ms = performance.now() - began
        // closing the torrent closes its files, so that what is hashed is what was written
        await new Promise<void>((resolve) => { torrent.destroy(null, () => { resolve() }) })
        return { ms, stdout: '', stderr: '' }
      })
    } finally {
      await new Promise<void>((resolve) => { client.destroy(() => { resolve() }) })
    }
  }, CLIENT_TIMEOUT_MS + 30_000)

  /** The .torrent as the gateway serves it, without its webseed, written to a file. */
  async function peerOnlyTorrent (): Promise<string> {
    const served = new Uint8Array(await (await fetch(`${t.url}/bt/${infoHash}.torrent`)).arrayBuffer())
    const torrent = withoutKeys(served, ['url-list'])
    const parsed = await parseTorrent(torrent)
    expect(parsed.infoHash).toBe(infoHash)
    expect(parsed.urlList).toEqual([])
    expect(parsed.announce).toEqual([announceUrl])
    const file = join(dir, 'peer-only.torrent')
    await writeFile(file, torrent)
    return file
  }

  if (toolGate(aria2c, it)) {
    it('lets aria2c download it from its .torrent, Atlas being the only seeder', async () => {
      const torrent = await peerOnlyTorrent()
      await download('aria2c', async (out) => runAria2c(torrent, out, CLIENT_TIMEOUT_MS))
    }, CLIENT_TIMEOUT_MS + 30_000)
  }

  if (toolGate(libtorrentPython, it)) {
    it('lets libtorrent download it from its .torrent, Atlas being the only seeder', async () => {
      const torrent = await peerOnlyTorrent()
      await download('libtorrent', async (out) => runLibtorrent(libtorrentPython.python, torrent, out, CLIENT_TIMEOUT_MS))
    }, CLIENT_TIMEOUT_MS + 30_000)
  }
})
