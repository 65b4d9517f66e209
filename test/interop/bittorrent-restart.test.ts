/**
 * Re-seeding after kill -9 (issue 4): `atlas serve` stores 100 contents in a BitTorrent bucket,
 * is killed with SIGKILL in the middle of a 101st upload, and is started again on the same data
 * dir. The restarted server must announce every one of the 100 to the tracker from its new peer
 * port, and aria2c must download all of them from that port, sha256 compared.
 *
 * Only the peer wire can serve aria2c: the .torrent files it gets are the restarted server's
 * (/bt/{infohash}.torrent) with the url-list removed (no webseed) and the announce list replaced
 * by a loopback tracker that this test runs; DHT, PEX and LPD are off in aria2c, and the server
 * runs with its DHT off. The server's own built-in tracker is turned off (ATLAS_BT_TRACKER, a
 * variable older builds ignore) so that the test tracker is the only place the peer is found.
 *
 * The time to re-seed is printed three ways, none asserted (timings belong in bench/): the
 * backend's own start time from its 'bittorrent backend started' log line, the wall time from
 * spawn to /healthz, and the wall time from spawn until the tracker lists the new peer for all
 * 100 infohashes.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto'
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import bencode from 'bencode'
import type { BencodeValue } from 'bencode'
import { afterAll, describe, expect, it } from 'vitest'
import { aria2c, runAria2c, sha256File, startTracker, type LoopbackTracker } from '../fixtures/bittorrent-clients.ts'
import { atlasJson, startServerProcess, type ServerProcess } from '../fixtures/server-process.ts'
import { toolGate } from '../fixtures/tools.ts'

const KiB = 1024
const MiB = 1024 * KiB
const COUNT = 100
/** Most contents are small; a few span many pieces */
const LARGE_SIZES = [2 * MiB + 1, 4 * MiB, 6 * MiB + 7]
/** Uploads in flight at once while filling the server */
const UPLOAD_CONCURRENCY = 8
const ARIA2C_TIMEOUT_MS = 90_000

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

interface Stored {
  key: string
  size: number
  sha256: string
  contentId: string
  btih: string
}

const withAria2c = toolGate(aria2c, it)

if (withAria2c) {
  describe('BitTorrent re-seeding after kill -9', () => {
    let dir: string | undefined
    let tracker: LoopbackTracker | undefined
    let server: ServerProcess | undefined

    afterAll(async () => {
      await server?.kill('SIGKILL')
      await tracker?.close()
      if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    })

    it(`seeds all ${COUNT} stored contents again from the new peer port, and aria2c downloads every one over the peer wire`, async () => {
      const testBegan = performance.now()
      dir = await mkdtemp(join(tmpdir(), 'atlas-bt-restart-'))
      const dataDir = join(dir, 'data')
      tracker = await startTracker()
      const env = {
        ATLAS_DATA_DIR: dataDir,
        ATLAS_IPFS_OFFLINE: 'true',
        ATLAS_BT_ANNOUNCE: tracker.announceUrl,
        ATLAS_BT_TRACKER: 'false',
        // the backend's start line (contents, seeding, ms) is at info
        ATLAS_LOG_LEVEL: 'info'
      }
      const account = await atlasJson(['accounts', 'create', '--name', 'reseed'], env)
      const auth = { authorization: `Bearer ${account.token as string}` }

      server = await startServerProcess(env)
      const firstPort = startLine(server).port
      const created = await fetch(`${server.url}/v1/buckets/reseed`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ backends: ['bittorrent'], public: true })
      })
      expect(created.status).toBe(201)

      const sizes = Array.from({ length: COUNT }, (_, i) => LARGE_SIZES[i] ?? randomInt(16 * KiB, 256 * KiB + 1))
      const stored: Stored[] = []
      const firstUrl = server.url
      await forEachLimited(sizes.map((size, i) => ({ size, key: `c/${String(i).padStart(3, '0')}` })), UPLOAD_CONCURRENCY, async ({ size, key }) => {
        const body = randomBytes(size)
        const res = await fetch(`${firstUrl}/v1/buckets/reseed/objects/${key}`, { method: 'PUT', headers: auth, body })
        expect(res.status, key).toBe(200)
        const json = await res.json() as { contentId: string, addresses: { btih?: string } }
        expect(json.addresses.btih, key).toMatch(/^[0-9a-f]{40}$/)
        stored.push({ key, size, sha256: sha256(body), contentId: json.contentId, btih: json.addresses.btih as string })
      })
      expect(new Set(stored.map(s => s.btih)).size).toBe(COUNT)
      const totalBytes = stored.reduce((n, s) => n + s.size, 0)
      // the first process seeds them all too: the tracker lists it under its peer port
      const stalePeer = `127.0.0.1:${firstPort}`
      const seededBy = async (peer: string): Promise<string[]> => {
        const until = Date.now() + 20_000
        for (;;) {
          const missing = stored.filter(s => !(tracker as LoopbackTracker).peers(s.btih).includes(peer)).map(s => s.btih)
          if (missing.length === 0 || Date.now() > until) return missing
          await sleep(20)
        }
      }
      expect(await seededBy(stalePeer)).toEqual([])

      // a 101st upload of 32 MiB that dies after 12 MiB, with the process
      const btTmp = join(dataDir, 'bittorrent', 'tmp')
      const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
      // the server dies under this upload: its reset is expected
      socket.on('error', () => {})
      await new Promise<void>((resolve) => socket.once('connect', () => { resolve() }))
      socket.write(`PUT /v1/buckets/reseed/objects/killed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${account.token as string}\r\nContent-Length: ${32 * MiB}\r\n\r\n`)
      for (let i = 0; i < 12; i++) socket.write(randomBytes(MiB))
      const deadline = Date.now() + 20_000
      while (await bytesUnder(btTmp) < 4 * MiB) {
        if (Date.now() > deadline) throw new Error('the 101st upload never reached the BitTorrent backend')
        await sleep(25)
      }
      await server.kill('SIGKILL')
      socket.destroy()
      expect(server.child.signalCode).toBe('SIGKILL')
      expect(await bytesUnder(btTmp)).toBeGreaterThan(0)

      // restart; the tracker still lists the killed process under its old port (it never said
      // it stopped), so the new peer is told apart by its port
      const spawned = performance.now()
      let allAnnouncedMs: number | undefined
      const watch = setInterval(() => {
        if (allAnnouncedMs === undefined && stored.every(s => tracker?.peers(s.btih).some(p => p !== stalePeer))) {
          allAnnouncedMs = performance.now() - spawned
        }
      }, 5)
      let healthyMs: number
      try {
        server = await startServerProcess(env)
        healthyMs = performance.now() - spawned
        const waitUntil = Date.now() + 30_000
        while (allAnnouncedMs === undefined && Date.now() < waitUntil) await sleep(20)
      } finally {
        clearInterval(watch)
      }
      const started = startLine(server)
      expect(started.contents).toBe(COUNT)
      expect(started.seeding).toBe(COUNT)
      expect(started.port).not.toBe(firstPort)
      const newPeer = `127.0.0.1:${started.port}`
      expect(await seededBy(newPeer)).toEqual([])
      expect(allAnnouncedMs).toBeDefined()

      // what the crash left is gone, and the 101st object never became visible
      expect(await readdir(btTmp)).toEqual([])
      expect((await fetch(`${server.url}/v1/buckets/reseed/objects/killed`, { headers: auth })).status).toBe(404)

      // the restarted server's .torrent files, made peer-only and pointed at the test tracker
      const torrentDir = join(dir, 'torrents')
      await mkdir(torrentDir)
      const torrentPaths: string[] = []
      for (const s of stored) {
        const res = await fetch(`${server.url}/bt/${s.btih}.torrent`)
        expect(res.status, s.key).toBe(200)
        const path = join(torrentDir, `${s.btih}.torrent`)
        await writeFile(path, peerOnlyTorrent(new Uint8Array(await res.arrayBuffer()), s.btih, tracker.announceUrl))
        torrentPaths.push(path)
      }

      const out = join(dir, 'out')
      const run = await runAria2c(torrentPaths, out, ARIA2C_TIMEOUT_MS)
      // every content whole and nothing else (no .aria2 control file of an unfinished download)
      expect((await readdir(out)).sort()).toEqual(stored.map(s => s.contentId).sort())
      const mismatched: string[] = []
      for (const s of stored) {
        if (await sha256File(join(out, s.contentId)) !== s.sha256) mismatched.push(s.key)
      }
      expect(mismatched).toEqual([])

      console.log(
        `re-seed after kill -9: ${COUNT} contents (${(totalBytes / MiB).toFixed(1)} MiB); ` +
        `backend start ${started.ms} ms (its log line); spawn to healthy ${healthyMs.toFixed(0)} ms; ` +
        `spawn to tracker listing all ${COUNT} on the new port ${(allAnnouncedMs as number).toFixed(0)} ms; ` +
        `aria2c fetched all ${COUNT} over the peer wire in ${(run.ms / 1000).toFixed(2)} s; ` +
        `test ${((performance.now() - testBegan) / 1000).toFixed(1)} s`
      )
    }, 180_000)
  })
}

/** The fields of the backend's 'bittorrent backend started' log line. */
function startLine (server: ServerProcess): { port: number, contents: number, seeding: number, ms: number } {
  for (const line of server.output().split('\n')) {
    if (!line.startsWith('{')) continue
    let entry: Record<string, unknown>
    try {
      entry = JSON.parse(line) as Record<string, unknown>
    } catch {
      continue
    }
    if (entry.msg === 'bittorrent backend started') return entry as unknown as { port: number, contents: number, seeding: number, ms: number }
  }
  throw new Error(`no 'bittorrent backend started' line in the server's output:\n${server.output()}`)
}

/**
 * `torrent` with its url-list removed and `announce` as its only tracker. The info dictionary
 * is left as it is, which the check of its infohash proves.
 */
function peerOnlyTorrent (torrent: Uint8Array, infoHash: string, announce: string): Uint8Array {
  const decoded = bencode.decode(torrent) as Record<string, BencodeValue>
  const info = decoded.info
  if (info === undefined) throw new Error(`the .torrent of ${infoHash} has no info dictionary`)
  expect(createHash('sha1').update(bencode.encode(info)).digest('hex')).toBe(infoHash)
  const { 'url-list': _urlList, 'announce-list': _announceList, ...rest } = decoded
  return bencode.encode({ ...rest, announce })
}

async function bytesUnder (dir: string): Promise<number> {
  let total = 0
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return 0
  }
  for (const name of names) {
    try {
      total += (await stat(join(dir, name))).size
    } catch {}
  }
  return total
}

async function forEachLimited<T> (items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
