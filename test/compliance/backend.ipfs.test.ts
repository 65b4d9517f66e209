/**
 * The backend compliance suite against IpfsBackend, offline and with networking on loopback.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IpfsBackend } from '../../src/backends/ipfs/ipfs-backend.ts'
import { backendTests } from './backend.ts'
import type { StorageBackend } from '../../src/backends/backend.ts'

for (const offline of [true, false]) {
  const dirs = new WeakMap<StorageBackend, string>()

  const open = async (dataDir: string): Promise<IpfsBackend> => {
    const backend = new IpfsBackend({
      dataDir,
      listen: offline ? [] : ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [],
      offline
    })
    await backend.start()
    dirs.set(backend, dataDir)
    return backend
  }

  backendTests(offline ? 'ipfs (offline)' : 'ipfs (loopback networking)', {
    setup: async () => open(await mkdtemp(join(tmpdir(), 'atlas-ipfs-compliance-'))),
    teardown: async (backend) => {
      await backend.stop()
      const dir = dirs.get(backend)
      // libp2p's peer store may still land a write while the tree goes: retry as rm -r does
      if (dir !== undefined) await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
    },
    reopen: async (backend) => {
      const dir = dirs.get(backend) as string
      await backend.stop()
      return open(dir)
    }
  })
}
