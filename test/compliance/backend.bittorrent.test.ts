/**
 * The backend compliance suite against BitTorrentBackend, with networking closed: no DHT, no
 * LSD, no uTP, no WebRTC, no UPnP or NAT-PMP, no trackers; the peer port is a random one.
 */
import { LOOPBACK_ONLY } from '../fixtures/bittorrent-clients.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BitTorrentBackend } from '../../src/backends/bittorrent/bittorrent-backend.ts'
import { backendTests } from './backend.ts'
import type { StorageBackend } from '../../src/backends/backend.ts'

const dirs = new WeakMap<StorageBackend, string>()

const open = async (dataDir: string): Promise<BitTorrentBackend> => {
  const backend = new BitTorrentBackend({
    dataDir,
    // nothing listens there: the webseed URL only has to be well-formed
    publicUrl: () => 'http://127.0.0.1:9',
    ...LOOPBACK_ONLY
  })
  await backend.start()
  dirs.set(backend, dataDir)
  return backend
}

backendTests('bittorrent (no networking)', {
  setup: async () => open(await mkdtemp(join(tmpdir(), 'atlas-bt-compliance-'))),
  teardown: async (backend) => {
    await backend.stop()
    const dir = dirs.get(backend)
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  },
  reopen: async (backend) => {
    const dir = dirs.get(backend) as string
    await backend.stop()
    return open(dir)
  }
})
