/**
 * The backend compliance suite against IpfsBackend, offline and with networking on loopback.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IpfsBackend } from '../../src/backends/ipfs/ipfs-backend.ts'
import { backendTests } from './backend.ts'
import type { StorageBackend } from '../../src/backends/backend.ts'

for (const offline of [true, false]) {
  const dirs = new WeakMap<StorageBackend, string>()

  const open = async (dataDir: string, bootstrap: string[] = []): Promise<IpfsBackend> => {
    const backend = new IpfsBackend({
      dataDir,
      listen: offline ? [] : ['/ip4/127.0.0.1/tcp/0'],
      bootstrap,
      offline,
      repairStallMs: 5_000
    })
    await backend.start()
    dirs.set(backend, dataDir)
    return backend
  }

  const teardown = async (backend: StorageBackend): Promise<void> => {
    await backend.stop()
    const dir = dirs.get(backend)
    // libp2p's peer store may still land a write while the tree goes: retry as rm -r does
    if (dir !== undefined) await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
  }

  backendTests(offline ? 'ipfs (offline)' : 'ipfs (loopback networking)', {
    setup: async () => open(await mkdtemp(join(tmpdir(), 'atlas-ipfs-compliance-'))),
    teardown,
    ...(offline
      ? {}
      : {
          peers: async () => {
            const holder = await open(await mkdtemp(join(tmpdir(), 'atlas-ipfs-compliance-')))
            const repairer = await open(await mkdtemp(join(tmpdir(), 'atlas-ipfs-compliance-')), holder.multiaddrs())
            // repair asks connected peers only: wait for the bootstrap dial
            const deadline = Date.now() + 10_000
            while (!repairer.connectedPeers().includes(holder.peerId())) {
              if (Date.now() > deadline) throw new Error('the two IPFS nodes did not connect')
              await new Promise(resolve => setTimeout(resolve, 20))
            }
            return { holder, repairer, teardown: async () => { await teardown(repairer); await teardown(holder) } }
          },
          loseData: async (backend) => {
            // every block file goes: the content's and any other's
            await rm(join(dirs.get(backend) as string, 'blocks'), { recursive: true, force: true })
            await mkdir(join(dirs.get(backend) as string, 'blocks'), { recursive: true })
          }
        }),
    reopen: async (backend) => {
      const dir = dirs.get(backend) as string
      await backend.stop()
      return open(dir)
    }
  })
}
