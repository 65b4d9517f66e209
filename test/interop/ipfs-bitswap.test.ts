/**
 * IpfsBackend serves what it stores to another, independent Helia node over Bitswap, on
 * loopback, with no routing: the other node knows only the backend's address.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { IpfsBackend } from '../../src/backends/ipfs/ipfs-backend.ts'
import { sha256Of, startHeliaPeer } from '../fixtures/helia-peer.ts'
import type { HeliaPeer } from '../fixtures/helia-peer.ts'

const MiB = 1024 * 1024

describe('IPFS backend over Bitswap', () => {
  let dir: string
  let backend: IpfsBackend
  let peer: HeliaPeer | undefined

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-ipfs-interop-'))
  })

  afterEach(async () => {
    await peer?.stop()
    peer = undefined
    await backend?.stop()
    // libp2p's peer store may still land a write while the tree goes: retry as rm -r does
    await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
  })

  async function startBackend (bootstrap: string[] = []): Promise<IpfsBackend> {
    backend = new IpfsBackend({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, offline: false })
    await backend.start()
    return backend
  }

  it('lets a peer connected only to it fetch 8 MiB by root CID', async () => {
    await startBackend()
    const bytes = randomBytes(8 * MiB)
    const { address } = await backend.put((async function * () {
      for (let i = 0; i < bytes.byteLength; i += 100_000) yield bytes.subarray(i, i + 100_000)
    })())

    const [listen] = backend.multiaddrs()
    expect(listen).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${backend.peerId()}$`))
    peer = await startHeliaPeer({ dial: [listen as string] })
    expect(peer.connectedPeers()).toEqual([backend.peerId()])

    const got = await sha256Of(peer.fetchBytes(address, { signal: AbortSignal.timeout(30_000) }))
    expect(got.bytes).toBe(bytes.byteLength)
    expect(got.hex).toBe(createHash('sha256').update(bytes).digest('hex'))
    // the peer fetched from the backend and nowhere else
    expect(peer.connectedPeers()).toEqual([backend.peerId()])
  })

  it('dials its bootstrap peers at start, and they can fetch from it', async () => {
    peer = await startHeliaPeer()
    await startBackend(peer.multiaddrs())
    const bytes = randomBytes(3 * MiB + 5)
    const { address } = await backend.put((async function * () { yield bytes })())

    await waitFor(() => peer?.connectedPeers().includes(backend.peerId()) === true)
    const got = await sha256Of(peer.fetchBytes(address, { signal: AbortSignal.timeout(30_000) }))
    expect(got.hex).toBe(createHash('sha256').update(bytes).digest('hex'))
  })

  it('reconnects to a bootstrap peer that hung up on it', async () => {
    peer = await startHeliaPeer()
    const peerAddress = peer.multiaddrs()[0] as string
    backend = new IpfsBackend({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [peerAddress], offline: false, redialIntervalMs: 200 })
    await backend.start()
    await waitFor(() => peer?.connectedPeers().includes(backend.peerId()) === true)
    // drop the connection from the peer's side: the backend must come back on its own
    await peer.helia.libp2p.hangUp(peer.helia.libp2p.getConnections()[0]!.remotePeer)
    await waitFor(() => peer?.connectedPeers().includes(backend.peerId()) === true)
  })

  it('no longer serves a removed content', async () => {
    await startBackend()
    const bytes = randomBytes(MiB + 1)
    const { address } = await backend.put((async function * () { yield bytes })())
    await backend.remove(address)
    peer = await startHeliaPeer({ dial: backend.multiaddrs() })
    // Bitswap waits for a provider rather than failing: give it a moment, then give up
    await expect(sha256Of(peer.fetchBytes(address, { signal: AbortSignal.timeout(1500) }))).rejects.toThrow()
  })

  it('keeps its PeerId across restarts', async () => {
    await startBackend()
    const id = backend.peerId()
    await backend.stop()
    await startBackend()
    expect(backend.peerId()).toBe(id)
    expect(backend.multiaddrs().every(ma => ma.endsWith(`/p2p/${id}`))).toBe(true)
  })
})

async function waitFor (condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}
