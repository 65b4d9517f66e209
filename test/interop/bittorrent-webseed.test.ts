/**
 * The gateway is an HTTP webseed (BEP 19) for its own torrents: aria2c and libtorrent, each
 * given the .torrent from /bt/{infohash}.torrent, download a 64 MiB content with Atlas's peer
 * port closed to them, from the url-list alone, and the bytes hash-match.
 *
 * "Peer port closed": the .torrent they get has its trackers removed and their DHT, peer
 * exchange and local discovery are off, so they have no way to learn the peer port; and
 * Atlas's seeder never learns of them (they announce nowhere). That nothing came over the peer
 * wire is checked, not assumed: Atlas's upload counter for the content stays at 0.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import parseTorrent from 'parse-torrent'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { aria2c, libtorrentPython, runAria2c, runLibtorrent, sha256File } from '../fixtures/bittorrent-clients.ts'
import { toolGate } from '../fixtures/tools.ts'
import { withoutKeys } from '../fixtures/tracker.ts'
import type { ClientRun } from '../fixtures/bittorrent-clients.ts'

const MiB = 1024 * 1024
const SIZE = 64 * MiB
const CLIENT_TIMEOUT_MS = 120_000

const withAria2c = toolGate(aria2c, it)
const withLibtorrent = toolGate(libtorrentPython, it)

if (withAria2c || withLibtorrent) {
  describe('webseed', () => {
    let t: TestAtlas
    let dir: string
    let ih: string
    let contentId: string
    let expectedSha256: string
    /** The served .torrent without trackers, as a file */
    let webseedOnly: string

    beforeAll(async () => {
      t = await startTestAtlas()
      dir = await mkdtemp(join(tmpdir(), 'atlas-webseed-'))
      await t.api('/v1/buckets/seeded', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":["ipfs","bittorrent"],"public":true}' })
      const body = randomBytes(SIZE)
      expectedSha256 = createHash('sha256').update(body).digest('hex')
      const stored = await (await t.api('/v1/buckets/seeded/objects/big.bin', { method: 'PUT', body })).json() as { contentId: string, addresses: { btih: string } }
      ih = stored.addresses.btih
      contentId = stored.contentId
    }, 120_000)

    afterAll(async () => {
      await t?.stop()
      if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    })

    it('serves a torrent and a magnet link naming the built-in tracker and the webseed', async () => {
      const torrentRes = await fetch(`${t.url}/bt/${ih}.torrent`)
      expect(torrentRes.status).toBe(200)
      expect(torrentRes.headers.get('content-type')).toBe('application/x-bittorrent')
      const torrent = Buffer.from(await torrentRes.arrayBuffer())
      const parsed = await parseTorrent(torrent) as { infoHash: string, urlList: string[], announce: string[] }
      expect(parsed.infoHash).toBe(ih)
      expect(parsed.urlList).toEqual([`${t.url}/bt/${ih}`])
      expect(parsed.announce).toEqual([`${t.url}/announce`])

      const magnet = await (await fetch(`${t.url}/bt/${ih}/magnet`)).text()
      expect(magnet).toContain(`xt=urn:btih:${ih}`)
      expect(new URL(magnet).searchParams.getAll('tr')).toEqual([`${t.url}/announce`])
      expect(new URL(magnet).searchParams.get('ws')).toBe(`${t.url}/bt/${ih}`)

      const stripped = withoutKeys(torrent, ['announce', 'announce-list'])
      const strippedParsed = await parseTorrent(stripped)
      expect(strippedParsed.infoHash).toBe(ih)
      expect(strippedParsed.announce).toEqual([])
      expect(strippedParsed.urlList).toEqual([`${t.url}/bt/${ih}`])
      webseedOnly = join(dir, 'webseed-only.torrent')
      await writeFile(webseedOnly, stripped)
    })

    /** Run one download from the webseed alone, check it, print the throughput. */
    async function download (label: string, fetch: (out: string) => Promise<ClientRun>): Promise<void> {
      expect(webseedOnly, 'the torrent test runs first').toBeDefined()
      const out = join(dir, label)
      await mkdir(out)
      const run = await fetch(out)
      expect(await readdir(out)).toContain(contentId)
      expect(await sha256File(join(out, contentId))).toBe(expectedSha256)
      // not one byte over the peer wire, though the seeder was there to serve it: the webseed
      // served it all
      expect(t.atlas.bittorrent?.swarm(ih)?.seeding).toBe(true)
      expect(t.atlas.bittorrent?.swarm(ih)?.uploaded).toBe(0)
      console.log(`${label}: ${SIZE / MiB} MiB from the webseed alone in ${(run.ms / 1000).toFixed(2)} s = ${(SIZE / MiB / (run.ms / 1000)).toFixed(1)} MiB/s`)
    }

    if (withAria2c) {
      it('serves aria2c the whole content through the url-list of the torrent', async () => {
        await download('aria2c', async (out) => runAria2c(webseedOnly, out, CLIENT_TIMEOUT_MS))
      }, CLIENT_TIMEOUT_MS + 30_000)
    }

    if (withLibtorrent) {
      it('serves libtorrent the whole content through the url-list of the torrent', async () => {
        await download('libtorrent', async (out) => runLibtorrent(libtorrentPython.python, webseedOnly, out, CLIENT_TIMEOUT_MS, { webSeeds: true }))
      }, CLIENT_TIMEOUT_MS + 30_000)
    }

    it('keeps private content from anonymous webseed requests', async () => {
      await t.api('/v1/buckets/private-seeded', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":["bittorrent"]}' })
      const stored = await (await t.api('/v1/buckets/private-seeded/objects/p.bin', { method: 'PUT', body: randomBytes(5000) })).json() as { addresses: { btih: string } }
      expect((await fetch(`${t.url}/bt/${stored.addresses.btih}`)).status).toBe(404)
      expect((await fetch(`${t.url}/bt/${stored.addresses.btih}.torrent`)).status).toBe(404)
      expect((await t.api(`/bt/${stored.addresses.btih}`)).status).toBe(200)
    })
  })
}
