/**
 * The gateway is an HTTP webseed (BEP 19) for its own torrents: aria2c, given the .torrent from
 * /bt/{infohash}.torrent, downloads the content with no peer to talk to (no tracker, no DHT),
 * from the url-list alone, and the bytes hash-match.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import parseTorrent from 'parse-torrent'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { aria2c, runAria2c } from '../fixtures/bittorrent-clients.ts'
import { toolGate } from '../fixtures/tools.ts'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

const withAria2c = toolGate(aria2c, it)

if (withAria2c) {
  describe('webseed', () => {
    let t: TestAtlas
    let dir: string
    beforeAll(async () => {
      t = await startTestAtlas()
      dir = await mkdtemp(join(tmpdir(), 'atlas-webseed-'))
    })
    afterAll(async () => {
      await t?.stop()
      if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    })

    it('serves aria2c a whole content through the url-list of the torrent', async () => {
      await t.api('/v1/buckets/seeded', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":["ipfs","bittorrent"],"public":true}' })
      const body = randomBytes(24 * 1024 * 1024 + 5)
      const stored = await (await t.api('/v1/buckets/seeded/objects/big.bin', { method: 'PUT', body })).json() as { contentId: string, addresses: { btih: string } }
      const ih = stored.addresses.btih

      const torrentRes = await fetch(`${t.url}/bt/${ih}.torrent`)
      expect(torrentRes.status).toBe(200)
      expect(torrentRes.headers.get('content-type')).toBe('application/x-bittorrent')
      const torrent = Buffer.from(await torrentRes.arrayBuffer())
      const parsed = await parseTorrent(torrent) as { infoHash: string, urlList: string[], announce: string[] }
      expect(parsed.infoHash).toBe(ih)
      expect(parsed.urlList).toEqual([`${t.url}/bt/${ih}`])
      expect(parsed.announce).toEqual([])

      const magnet = await (await fetch(`${t.url}/bt/${ih}/magnet`)).text()
      expect(magnet).toContain(`xt=urn:btih:${ih}`)
      expect(new URL(magnet).searchParams.get('ws')).toBe(`${t.url}/bt/${ih}`)

      const file = join(dir, 'content.torrent')
      await writeFile(file, torrent)
      const out = join(dir, 'out')
      await runAria2c(file, out, 90_000)
      const [name] = await readdir(out)
      expect(name).toBe(stored.contentId)
      expect(sha256(await readFile(join(out, name as string)))).toBe(sha256(body))
    }, 120_000)

    it('keeps private content from anonymous webseed requests', async () => {
      await t.api('/v1/buckets/private-seeded', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"backends":["bittorrent"]}' })
      const stored = await (await t.api('/v1/buckets/private-seeded/objects/p.bin', { method: 'PUT', body: randomBytes(5000) })).json() as { addresses: { btih: string } }
      expect((await fetch(`${t.url}/bt/${stored.addresses.btih}`)).status).toBe(404)
      expect((await fetch(`${t.url}/bt/${stored.addresses.btih}.torrent`)).status).toBe(404)
      expect((await t.api(`/bt/${stored.addresses.btih}`)).status).toBe(200)
    })
  })
}
