/**
 * What is particular to the BitTorrent backend, beyond the shared compliance suite: its
 * addresses and .torrent files, re-seeding after a restart without reading the data, damaged
 * and left-over files, stopping with work in flight, races, and seeding to a real peer.
 */
import { LOOPBACK_ONLY, startTracker } from '../../../fixtures/bittorrent-clients.ts'
import { createHash, randomBytes } from 'node:crypto'
import { access, mkdtemp, readFile, readdir, rm, truncate, unlink, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import parseTorrent from 'parse-torrent'
import WebTorrent from 'webtorrent'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { BitTorrentBackend } from '../../../../src/backends/bittorrent/bittorrent-backend.ts'
import { FileChunkStore } from '../../../../src/backends/bittorrent/file-store.ts'
import { pieceLengthFor } from '../../../../src/backends/bittorrent/profile.ts'
import { canonicalIdFromSha256 } from '../../../../src/core/content-id.ts'
import { AtlasError, ContentUnavailableError, NotFoundError, isAbortError } from '../../../../src/core/errors.ts'
import type { BitTorrentBackendInit } from '../../../../src/backends/bittorrent/bittorrent-backend.ts'
import type { Torrent } from 'webtorrent'

const MiB = 1024 * 1024

async function * chunks (bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield bytes.subarray(i, i + size)
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const part of source) parts.push(part)
  return Buffer.concat(parts)
}

function sha256 (bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest()
}

async function exists (file: string): Promise<boolean> {
  return access(file).then(() => true, () => false)
}

/** A TCP port nothing listens on right now. */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}

const CLOSED: Omit<BitTorrentBackendInit, 'dataDir'> = {
  publicUrl: () => 'https://atlas.test',
  ...LOOPBACK_ONLY
}

describe('BitTorrentBackend', () => {
  let dir: string
  const started: BitTorrentBackend[] = []

  const open = async (init: Partial<BitTorrentBackendInit> = {}): Promise<BitTorrentBackend> => {
    const backend = new BitTorrentBackend({ ...CLOSED, dataDir: dir, ...init })
    await backend.start()
    started.push(backend)
    return backend
  }

  const reopen = async (backend: BitTorrentBackend, init: Partial<BitTorrentBackendInit> = {}): Promise<BitTorrentBackend> => {
    await backend.stop()
    return open(init)
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-bt-unit-'))
  })

  afterEach(async () => {
    vi.restoreAllMocks()
    for (const backend of started.splice(0)) await backend.stop()
    await rm(dir, { recursive: true, force: true })
  })

  describe('addresses and torrents', () => {
    it('gives the same bytes the same infohash in two fresh stores with different settings', async () => {
      const bytes = randomBytes(5 * MiB + 77)
      const a = await open()
      const first = await a.put(chunks(bytes, 65_536))
      const otherDir = await mkdtemp(join(tmpdir(), 'atlas-bt-unit-other-'))
      try {
        const b = new BitTorrentBackend({
          ...CLOSED,
          dataDir: otherDir,
          publicUrl: () => 'http://other.test:8080/',
          announce: ['http://127.0.0.1:1/announce']
        })
        await b.start()
        try {
          const second = await b.put(chunks(bytes, MiB + 3), { size: bytes.byteLength })
          expect(second.address).toBe(first.address)
          // the .torrent files differ (trackers, webseed) but their info dictionaries do not
          const pa = await parseTorrent(await readFile(first.extra?.torrent as string))
          const pb = await parseTorrent(await readFile(second.extra?.torrent as string))
          expect(Buffer.from(pa.infoBuffer as Uint8Array).equals(Buffer.from(pb.infoBuffer as Uint8Array))).toBe(true)
          expect(pa.urlList).not.toEqual(pb.urlList)
        } finally {
          await b.stop()
        }
      } finally {
        await rm(otherDir, { recursive: true, force: true })
      }
    })

    it('writes a .torrent that parse-torrent reads back: infohash, name, size, trackers, webseed', async () => {
      const announce = ['http://127.0.0.1:6969/announce', 'udp://127.0.0.1:6969']
      const backend = await open({ announce, publicUrl: () => 'https://atlas.test/' })
      const bytes = randomBytes(3 * MiB + 5)
      const { address, size, extra } = await backend.put(chunks(bytes, 100_000))
      expect(address).toMatch(/^[0-9a-f]{40}$/)
      expect(size).toBe(bytes.byteLength)
      expect(extra?.torrent).toBe(join(dir, 'torrents', `${address}.torrent`))
      const parsed = await parseTorrent(await readFile(extra?.torrent as string))
      expect(parsed.infoHash).toBe(address)
      expect(parsed.name).toBe(canonicalIdFromSha256(sha256(bytes)))
      expect(parsed.length).toBe(bytes.byteLength)
      expect(parsed.pieceLength).toBe(pieceLengthFor(bytes.byteLength))
      expect(parsed.announce).toEqual(announce)
      expect(parsed.urlList).toEqual([`https://atlas.test/bt/${address}`])
      expect(parsed.private).toBeUndefined()
      expect(parsed.created).toBeUndefined()
      expect(parsed.createdBy).toBeUndefined()
    })

    it('stores the bytes as they are, and its piece hashes are the SHA-1 of each piece of them', async () => {
      const backend = await open()
      const bytes = randomBytes(9 * MiB + 1234)
      const { address, extra } = await backend.put(chunks(bytes, 77_777))
      const stored = await readFile(join(dir, 'data', address))
      expect(stored.equals(bytes)).toBe(true)
      const parsed = await parseTorrent(await readFile(extra?.torrent as string))
      const pieceLength = parsed.pieceLength as number
      const expected: string[] = []
      for (let i = 0; i < stored.byteLength; i += pieceLength) {
        expected.push(createHash('sha1').update(stored.subarray(i, i + pieceLength)).digest('hex'))
      }
      expect(parsed.pieces).toEqual(expected)
      expect(await backend.verify(address)).toBe(true)
    })

    it('returns a magnet link with the infohash, the name, the size, each tracker and the webseed', async () => {
      const backend = await open({ announce: ['http://127.0.0.1:6969/announce'], publicUrl: () => 'https://atlas.test' })
      const bytes = randomBytes(1000)
      const { address, extra } = await backend.put(chunks(bytes, 1000))
      const name = canonicalIdFromSha256(sha256(bytes))
      expect(extra?.magnet).toBe(
        `magnet:?xt=urn:btih:${address}&dn=${name}&xl=1000` +
        `&tr=${encodeURIComponent('http://127.0.0.1:6969/announce')}&ws=${encodeURIComponent(`https://atlas.test/bt/${address}`)}`
      )
      expect(backend.magnet(address)).toBe(extra?.magnet)
      const parsed = await parseTorrent(extra?.magnet as string)
      expect(parsed.infoHash).toBe(address)
      expect(parsed.urlList).toEqual([`https://atlas.test/bt/${address}`])
    })

    it('gives the same infohash when the size hint was wrong (hashing the file again)', async () => {
      const backend = await open()
      const bytes = randomBytes(5 * MiB)
      const right = await backend.put(chunks(bytes, MiB))
      await backend.remove(right.address)
      const wrong = await backend.put(chunks(bytes, MiB), { size: 100 * MiB })
      expect(wrong.address).toBe(right.address)
      expect(await backend.verify(wrong.address)).toBe(true)
    })

    it('serves the .torrent and magnet with the current trackers and webseed after a restart', async () => {
      let backend = await open({ publicUrl: () => 'https://old.test' })
      const { address } = await backend.put(chunks(randomBytes(40_000), 40_000))
      backend = await reopen(backend, { publicUrl: () => 'https://new.test', announce: ['http://127.0.0.1:7/announce'] })
      const parsed = await parseTorrent(await backend.torrentFile(address))
      expect(parsed.infoHash).toBe(address)
      expect(parsed.urlList).toEqual([`https://new.test/bt/${address}`])
      expect(parsed.announce).toEqual(['http://127.0.0.1:7/announce'])
      expect(backend.magnet(address)).toContain(`ws=${encodeURIComponent(`https://new.test/bt/${address}`)}`)
      await expect(backend.torrentFile('c'.repeat(40))).rejects.toBeInstanceOf(NotFoundError)
    })

    it('accepts the other forms of an infohash: upper case, btih: hex or base32, magnet link', async () => {
      const backend = await open()
      const bytes = randomBytes(2000)
      const { address, extra } = await backend.put(chunks(bytes, 2000))
      const base32 = `btih:${base32Encode(Buffer.from(address, 'hex'))}`
      for (const form of [address.toUpperCase(), `btih:${address}`, base32, extra?.magnet as string]) {
        expect(await backend.has(form)).toBe(true)
        expect((await collect(backend.get(form))).equals(bytes)).toBe(true)
      }
    })

    it('rejects addresses that are not infohashes', async () => {
      const backend = await open()
      await expect(collect(backend.get('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'))).rejects.toMatchObject({ code: 'InvalidAddress' })
      await expect(collect(backend.get('nonsense'))).rejects.toBeInstanceOf(AtlasError)
      expect(await backend.has('nonsense')).toBe(false)
      await backend.remove('nonsense')
    })

    it('keeps an empty content without seeding it (no BitTorrent client takes a zero-length torrent)', async () => {
      const backend = await open()
      const { address, size } = await backend.put(chunks(new Uint8Array(0), 1))
      expect(size).toBe(0)
      expect(await backend.has(address)).toBe(true)
      expect((await collect(backend.get(address))).byteLength).toBe(0)
      expect(backend.swarm(address)).toEqual({ seeding: false, peers: 0, uploaded: 0 })
    })
  })

  describe('seeding', () => {
    it('seeds every content it stores, and stops when it is removed', async () => {
      const backend = await open()
      const { address } = await backend.put(chunks(randomBytes(MiB), MiB))
      expect(backend.swarm(address)?.seeding).toBe(true)
      await backend.remove(address)
      expect(backend.swarm(address)).toBeUndefined()
    })

    it('serves the content to a WebTorrent peer over loopback TCP', async () => {
      const backend = await open()
      const bytes = randomBytes(6 * MiB + 3)
      const { address, extra } = await backend.put(chunks(bytes, MiB))
      const downloads = await mkdtemp(join(tmpdir(), 'atlas-bt-peer-'))
      const peer = new WebTorrent({ dht: false, lsd: false, utp: false, natUpnp: false, natPmp: false, tracker: false, webSeeds: false, utPex: false })
      try {
        const torrent: Torrent = peer.add(await readFile(extra?.torrent as string), { path: downloads })
        await new Promise<void>((resolve, reject) => {
          torrent.once('ready', () => { resolve() })
          torrent.once('error', reject)
        })
        torrent.addPeer(`127.0.0.1:${backend.port}`)
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => { reject(new Error('download timed out')) }, 30_000)
          torrent.once('done', () => {
            clearTimeout(timer)
            resolve()
          })
        })
        const got = await readFile(join(downloads, canonicalIdFromSha256(sha256(bytes))))
        expect(got.equals(bytes)).toBe(true)
        expect(backend.swarm(address)?.uploaded).toBeGreaterThanOrEqual(bytes.byteLength)
      } finally {
        await new Promise<void>(resolve => { peer.destroy(() => { resolve() }) })
        await rm(downloads, { recursive: true, force: true })
      }
    })

    it('takes trackers from a function, and reannounce() makes seeding contents announce to new ones', async () => {
      const tracker = await startTracker()
      try {
        let trackers: string[] = []
        const backend = await open({ announce: () => trackers })
        const { address } = await backend.put(chunks(randomBytes(MiB), MiB))
        const seeder = `127.0.0.1:${backend.port}`
        expect(await backend.reannounce()).toBe(0)

        trackers = [tracker.announceUrl]
        // what is written from now on names the tracker; what seeds already does not, yet
        expect((await parseTorrent(await backend.torrentFile(address))).announce).toEqual([tracker.announceUrl])
        expect(backend.magnet(address)).toContain(`tr=${encodeURIComponent(tracker.announceUrl)}`)
        expect(tracker.peers(address)).toEqual([])

        expect(await backend.reannounce()).toBe(1)
        expect(backend.swarm(address)?.seeding).toBe(true)
        for (let i = 0; i < 200 && !tracker.peers(address).includes(seeder); i++) await sleep(25)
        expect(tracker.peers(address)).toEqual([seeder])
        // nothing changed: nothing to do
        expect(await backend.reannounce()).toBe(0)
      } finally {
        await tracker.close()
      }
    })

    it('listens on the configured peer port', async () => {
      const port = await freePort()
      const backend = await open({ port })
      expect(backend.port).toBe(port)
    })

    it('fails to start when the peer port is taken', async () => {
      const server = createServer()
      await new Promise<void>(resolve => server.listen(0, resolve))
      const { port } = server.address() as { port: number }
      try {
        const backend = new BitTorrentBackend({ ...CLOSED, dataDir: dir, port })
        await expect(backend.start()).rejects.toMatchObject({ code: 'ServiceUnavailable' })
        expect(backend.isStarted()).toBe(false)
      } finally {
        await new Promise<void>(resolve => server.close(() => { resolve() }))
      }
    })
  })

  describe('restart', () => {
    it('re-seeds every content without reading a byte of its data', async () => {
      let backend = await open()
      const addresses: string[] = []
      for (let i = 0; i < 20; i++) addresses.push((await backend.put(chunks(randomBytes(MiB + i), MiB))).address)
      await backend.stop()
      // with verification, WebTorrent would read every piece through the chunk store at add
      const reads = vi.spyOn(FileChunkStore.prototype, 'get')
      backend = await open()
      for (const address of addresses) expect(backend.swarm(address)?.seeding).toBe(true)
      expect(reads).not.toHaveBeenCalled()
    })

    it('trusts a data file of the right size at start; verify() is what finds rotten bytes', async () => {
      let backend = await open()
      const bytes = randomBytes(2 * MiB)
      const { address } = await backend.put(chunks(bytes, MiB))
      await backend.stop()
      // same size, other bytes: only hashing could tell
      await writeFile(join(dir, 'data', address), Buffer.alloc(bytes.byteLength))
      backend = await open()
      expect(await backend.has(address)).toBe(true)
      expect(backend.swarm(address)?.seeding).toBe(true)
      expect(await backend.verify(address)).toBe(false)
    })

    it('marks a content whose data file is missing or the wrong size as damaged, and repairs it on a new put', async () => {
      let backend = await open()
      const a = randomBytes(MiB + 1)
      const b = randomBytes(MiB + 2)
      const ra = await backend.put(chunks(a, MiB))
      const rb = await backend.put(chunks(b, MiB))
      await backend.stop()
      await unlink(join(dir, 'data', ra.address))
      await truncate(join(dir, 'data', rb.address), 1000)
      backend = await open()
      for (const address of [ra.address, rb.address]) {
        expect(await backend.has(address)).toBe(false)
        await expect(collect(backend.get(address))).rejects.toBeInstanceOf(ContentUnavailableError)
        expect(backend.swarm(address)?.seeding).toBe(false)
        expect(await backend.verify(address)).toBe(false)
      }
      expect((await backend.stats()).contents).toBe(2)
      const again = await backend.put(chunks(a, 4096))
      expect(again.address).toBe(ra.address)
      expect(await backend.has(ra.address)).toBe(true)
      expect((await collect(backend.get(ra.address))).equals(a)).toBe(true)
      expect(backend.swarm(ra.address)?.seeding).toBe(true)
      await backend.remove(rb.address)
      const torrentBytes = (await readFile(join(dir, 'torrents', `${ra.address}.torrent`))).byteLength
      expect(await backend.stats()).toEqual({ contents: 1, bytes: a.byteLength + torrentBytes })
      expect(await readdir(join(dir, 'data'))).toEqual([ra.address])
      expect(await readdir(join(dir, 'torrents'))).toEqual([`${ra.address}.torrent`])
    })

    it('deletes data files without a .torrent and files left in tmp/ by a crash', async () => {
      let backend = await open()
      const kept = await backend.put(chunks(randomBytes(5000), 5000))
      await backend.stop()
      await writeFile(join(dir, 'data', 'd'.repeat(40)), 'orphan')
      await writeFile(join(dir, 'tmp', 'crashed.part'), 'half a put')
      backend = await open()
      expect(await readdir(join(dir, 'data'))).toEqual([kept.address])
      expect(await readdir(join(dir, 'tmp'))).toEqual([])
      expect(await backend.has(kept.address)).toBe(true)
    })

    it('ignores a .torrent it cannot read and keeps going', async () => {
      let backend = await open()
      const kept = await backend.put(chunks(randomBytes(5000), 5000))
      await backend.stop()
      await writeFile(join(dir, 'torrents', `${'e'.repeat(40)}.torrent`), 'garbage')
      backend = await open()
      expect(await backend.has(kept.address)).toBe(true)
      expect(await backend.has('e'.repeat(40))).toBe(false)
      expect((await backend.stats()).contents).toBe(1)
    })
  })

  describe('work in flight', () => {
    it('rejects a put that stop() interrupts and leaves nothing of it', async () => {
      const backend = await open()
      let stopping: Promise<void> | undefined
      const source = async function * (): AsyncGenerator<Uint8Array> {
        yield randomBytes(3 * MiB)
        stopping = backend.stop()
        await sleep(20)
        yield randomBytes(MiB)
        await new Promise(() => {})
      }
      const err = await backend.put(source()).then(() => undefined, (e: unknown) => e)
      expect(isAbortError(err)).toBe(true)
      await stopping
      expect(await readdir(join(dir, 'tmp'))).toEqual([])
      expect(await readdir(join(dir, 'data'))).toEqual([])
      const again = await open()
      expect(await again.stats()).toEqual({ contents: 0, bytes: 0 })
    })

    it('keeps index, files and seeding consistent when puts and removes of the same bytes race', async () => {
      const backend = await open()
      const bytes = randomBytes(MiB + 7)
      const { address } = await backend.put(chunks(bytes, MiB))
      for (let round = 0; round < 10; round++) {
        const work: Array<Promise<unknown>> = [backend.remove(address), backend.put(chunks(bytes, 65_536 * (round + 1)))]
        if (round % 2 === 0) work.reverse()
        await Promise.all(work)
        const has = await backend.has(address)
        expect(await exists(join(dir, 'data', address))).toBe(has)
        expect(await exists(join(dir, 'torrents', `${address}.torrent`))).toBe(has)
        expect(backend.swarm(address)?.seeding ?? false).toBe(has)
        if (has) expect(sha256(await collect(backend.get(address)))).toEqual(sha256(bytes))
        else await backend.put(chunks(bytes, MiB))
      }
    })

    it('runs several puts at once, each to its own content', async () => {
      const backend = await open()
      const contents = Array.from({ length: 6 }, (_, i) => randomBytes(2 * MiB + i * 1000))
      const results = await Promise.all(contents.map(async bytes => backend.put(chunks(bytes, 100_000))))
      expect(new Set(results.map(r => r.address)).size).toBe(6)
      for (const [i, result] of results.entries()) {
        expect((await collect(backend.get(result.address))).equals(contents[i] as Buffer)).toBe(true)
      }
      expect((await backend.stats()).contents).toBe(6)
    })

    it('finishes a read of a content removed while it streams', async () => {
      const backend = await open()
      const bytes = randomBytes(3 * MiB)
      const { address } = await backend.put(chunks(bytes, MiB))
      const parts: Uint8Array[] = []
      let removed = false
      for await (const part of backend.get(address)) {
        parts.push(part)
        if (!removed) {
          removed = true
          await backend.remove(address)
        }
      }
      expect(Buffer.concat(parts).equals(bytes)).toBe(true)
      await expect(collect(backend.get(address))).rejects.toBeInstanceOf(NotFoundError)
    })

    it('stops a read whose signal fires', async () => {
      const backend = await open()
      const { address } = await backend.put(chunks(randomBytes(4 * MiB), MiB))
      const controller = new AbortController()
      const err = await (async () => {
        for await (const _ of backend.get(address, { signal: controller.signal })) controller.abort()
      })().then(() => undefined, (e: unknown) => e)
      expect(isAbortError(err)).toBe(true)
    })
  })
})

function base32Encode (bytes: Uint8Array): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0
  let value = 0
  let out = ''
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}
