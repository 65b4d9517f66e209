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
      if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    },
    reopen: async (backend) => {
      const dir = dirs.get(backend) as string
      await backend.stop()
      return open(dir)
    }
  })
}
