/**
 * BitTorrentBackend seeds to real BitTorrent clients, aria2c and libtorrent, on loopback: a
 * bittorrent-tracker on 127.0.0.1 is the only way they find the backend, DHT / LPD / PEX / UPnP
 * are off everywhere, and the .torrent's webseed points at a closed port (the gateway's /bt route
 * does not exist yet), so every byte comes over the peer wire from the backend.
 *
 * Throughput is printed two ways: the client's wall time (aria2c spends about 2–4 s of fixed
 * overhead on its one-second scheduling ticks: announce, connect to peers, final announce, exit)
 * and the seeder's transfer window (first to last byte uploaded), which is what the backend's
 * seeding costs.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BitTorrentBackend } from '../../src/backends/bittorrent/bittorrent-backend.ts'
import { canonicalIdFromSha256 } from '../../src/core/content-id.ts'
import { LOOPBACK_ONLY, aria2c, libtorrentPython, runAria2c, runLibtorrent, sha256File, startTracker } from '../fixtures/bittorrent-clients.ts'
import { toolGate } from '../fixtures/tools.ts'
import type { ClientRun, LoopbackTracker } from '../fixtures/bittorrent-clients.ts'

const MiB = 1024 * 1024
const SIZE = 64 * MiB
const CLIENT_TIMEOUT_MS = 90_000

const withAria2c = toolGate(aria2c, it)
const withLibtorrent = toolGate(libtorrentPython, it)

if (withAria2c || withLibtorrent) {
  describe('BitTorrent backend seeding to real clients over loopback', () => {
    let dir: string
    let tracker: LoopbackTracker
    let backend: BitTorrentBackend
    let address: string
    let torrentPath: string
    let expectedSha256: string
    let name: string

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'atlas-bt-interop-'))
      tracker = await startTracker()
      const closedPort = await unusedPort()
      backend = new BitTorrentBackend({
        dataDir: join(dir, 'backend'),
        publicUrl: () => `http://127.0.0.1:${closedPort}`,
        ...LOOPBACK_ONLY,
        announce: [tracker.announceUrl]
      })
      await backend.start()
      const bytes = randomBytes(SIZE)
      expectedSha256 = createHash('sha256').update(bytes).digest('hex')
      name = canonicalIdFromSha256(Buffer.from(expectedSha256, 'hex'))
      const result = await backend.put((async function * () {
        for (let i = 0; i < SIZE; i += MiB) yield bytes.subarray(i, i + MiB)
      })(), { size: SIZE })
      address = result.address
      torrentPath = join(dir, 'content.torrent')
      await writeFile(torrentPath, await backend.torrentFile(address))
    }, 120_000)

    afterAll(async () => {
      await backend?.stop()
      await tracker?.close()
      if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    })

    /** Run a client while watching how many bytes the backend uploads, and when. */
    async function download (label: string, fetch: (out: string) => Promise<ClientRun>): Promise<void> {
      const out = join(dir, label)
      await mkdir(out)
      const before = backend.swarm(address)?.uploaded ?? 0
      const began = performance.now()
      let first: number | undefined
      let last = 0
      let seen = before
      const watch = setInterval(() => {
        const uploaded = backend.swarm(address)?.uploaded ?? 0
        if (uploaded !== seen) {
          const now = performance.now() - began
          first ??= now
          last = now
          seen = uploaded
        }
      }, 5)
      let run: ClientRun
      try {
        run = await fetch(out)
      } finally {
        clearInterval(watch)
      }
      expect(await readdir(out)).toContain(name)
      expect(await sha256File(join(out, name))).toBe(expectedSha256)
      const uploaded = (backend.swarm(address)?.uploaded ?? 0) - before
      // every byte came from the backend over the peer wire (the webseed is unreachable)
      expect(uploaded).toBeGreaterThanOrEqual(SIZE)
      const windowS = Math.max(last - (first ?? last), 5) / 1000
      const transfer = SIZE / MiB / windowS
      const wall = SIZE / MiB / (run.ms / 1000)
      console.log(`${label}: ${SIZE / MiB} MiB, wall ${(run.ms / 1000).toFixed(2)} s = ${wall.toFixed(1)} MiB/s; ` +
        `seeder transfer window ${windowS.toFixed(2)} s = ${transfer.toFixed(0)} MiB/s (first byte after ${((first ?? 0) / 1000).toFixed(2)} s)`)
    }

    if (withAria2c) {
      it('lets aria2c download 64 MiB from it', async () => {
        await download('aria2c', async out => runAria2c(torrentPath, out, CLIENT_TIMEOUT_MS))
      }, CLIENT_TIMEOUT_MS + 30_000)
    }

    if (withLibtorrent) {
      it('lets libtorrent download 64 MiB from it', async () => {
        await download('libtorrent', async out => runLibtorrent(libtorrentPython.python, torrentPath, out, CLIENT_TIMEOUT_MS))
      }, CLIENT_TIMEOUT_MS + 30_000)
    }
  })
}

/** A loopback TCP port nothing listens on (connections to it are refused at once). */
async function unusedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}
