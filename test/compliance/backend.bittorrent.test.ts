/**
 * The backend compliance suite against BitTorrentBackend, with networking closed: no DHT, no
 * LSD, no uTP, no WebRTC, no UPnP or NAT-PMP, no trackers; the peer port is a random one.
 */
import { LOOPBACK_ONLY, startTracker } from '../fixtures/bittorrent-clients.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BitTorrentBackend } from '../../src/backends/bittorrent/bittorrent-backend.ts'
import { backendTests } from './backend.ts'
import type { StorageBackend } from '../../src/backends/backend.ts'

const dirs = new WeakMap<StorageBackend, string>()

const open = async (dataDir: string, announce: string[] = []): Promise<BitTorrentBackend> => {
  const backend = new BitTorrentBackend({
    dataDir,
    // nothing listens there: the webseed URL only has to be well-formed
    publicUrl: () => 'http://127.0.0.1:9',
    ...LOOPBACK_ONLY,
    announce,
    repairStallMs: 10_000
  })
  await backend.start()
  dirs.set(backend, dataDir)
  return backend
}

const teardown = async (backend: StorageBackend): Promise<void> => {
  await backend.stop()
  const dir = dirs.get(backend)
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
}

backendTests('bittorrent (no networking)', {
  setup: async () => open(await mkdtemp(join(tmpdir(), 'atlas-bt-compliance-'))),
  teardown,
  // two backends that find each other through a tracker on loopback
  peers: async () => {
    const tracker = await startTracker()
    const holder = await open(await mkdtemp(join(tmpdir(), 'atlas-bt-compliance-')), [tracker.announceUrl])
    const repairer = await open(await mkdtemp(join(tmpdir(), 'atlas-bt-compliance-')), [tracker.announceUrl])
    return {
      holder,
      repairer,
      teardown: async () => {
        await teardown(repairer)
        await teardown(holder)
        await tracker.close()
      }
    }
  },
  loseData: async (backend, address) => {
    await rm(join(dirs.get(backend) as string, 'data', address))
  },
  reopen: async (backend) => {
    const dir = dirs.get(backend) as string
    await backend.stop()
    return open(dir)
  }
})
