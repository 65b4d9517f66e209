/**
 * What is particular to the IPFS backend, beyond the shared compliance suite: its addresses,
 * identity, damaged stores, garbage collection, stopping with work in flight, and races.
 */
import { createHash, randomBytes } from 'node:crypto'
import { access, mkdtemp, rm, unlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { FsBlockstore } from 'blockstore-fs'
import { base32upper } from 'multiformats/bases/base32'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { IpfsBackend } from '../../../../src/backends/ipfs/ipfs-backend.ts'
import { importUnixfs } from '../../../../src/backends/ipfs/profile.ts'
import { canonicalIdFromSha256 } from '../../../../src/core/content-id.ts'
import { AtlasError, ContentUnavailableError, isAbortError } from '../../../../src/core/errors.ts'

const MiB = 1024 * 1024

async function * once (bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  if (bytes.byteLength > 0) yield bytes
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const part of source) parts.push(part)
  return Buffer.concat(parts)
}

function sha256 (bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest()
}

/** Path of a block's file in blockstore-fs's default layout. */
function blockFile (dataDir: string, cid: CID): string {
  const name = base32upper.encoder.encode(cid.multihash.bytes)
  return join(dataDir, 'blocks', name.slice(-2), `${name}.data`)
}

async function exists (file: string): Promise<boolean> {
  return access(file).then(() => true, () => false)
}

async function rawCid (bytes: Uint8Array): Promise<CID> {
  return CID.createV1(raw.code, await sha256Hasher.digest(bytes))
}

describe('IpfsBackend', () => {
  let dir: string
  const started: IpfsBackend[] = []

  const open = async (init: Partial<ConstructorParameters<typeof IpfsBackend>[0]> = {}): Promise<IpfsBackend> => {
    // no collection at start unless a test asks: it would tidy up what the tests look for
    const backend = new IpfsBackend({ dataDir: dir, listen: [], bootstrap: [], offline: true, collectGarbageOnStart: false, ...init })
    await backend.start()
    started.push(backend)
    return backend
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-ipfs-unit-'))
  })

  afterEach(async () => {
    for (const backend of started.splice(0)) await backend.stop()
    await rm(dir, { recursive: true, force: true })
  })

  describe('addresses', () => {
    for (const size of [0, 1, 1000, MiB - 1, MiB]) {
      it(`addresses ${size} bytes by their canonical id`, async () => {
        const backend = await open()
        const bytes = randomBytes(size)
        const { address } = await backend.put(once(bytes))
        expect(address).toBe(canonicalIdFromSha256(sha256(bytes)))
      })
    }

    it('addresses larger contents by their UnixFS root under the profile', async () => {
      const backend = await open()
      const bytes = randomBytes(3 * MiB + 17)
      const { address } = await backend.put(once(bytes))
      const expected = await importUnixfs(once(bytes), { put: async (cid) => cid })
      expect(address).toBe(expected.toString())
      expect(address).toMatch(/^bafybei/)
    })

    it('finds a content by any string form of its CID', async () => {
      const backend = await open()
      const bytes = randomBytes(MiB + 1)
      const { address } = await backend.put(once(bytes))
      const cid = CID.parse(address)
      for (const form of [cid.toString(), `/ipfs/${address}`, cid.toV0().toString(), cid.toString(base36)]) {
        expect(await backend.has(form)).toBe(true)
        expect(await collect(backend.get(form))).toEqual(bytes)
      }
    })

    it('rejects reading something that is not a CID, and ignores it elsewhere', async () => {
      const backend = await open()
      const err = await collect(backend.get('not-a-cid')).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(AtlasError)
      expect((err as AtlasError).code).toBe('InvalidAddress')
      expect(await backend.has('not-a-cid')).toBe(false)
      await backend.remove('not-a-cid')
    })
  })

  describe('identity and networking', () => {
    it('keeps its PeerId across restarts, offline or not', async () => {
      const first = await open()
      const id = first.peerId()
      expect(id).toMatch(/^12D3KooW/)
      await first.stop()
      const online = await open({ offline: false, listen: ['/ip4/127.0.0.1/tcp/0'] })
      expect(online.peerId()).toBe(id)
      expect(online.multiaddrs()).toHaveLength(1)
      expect(online.multiaddrs()[0]).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/[1-9]\\d*/p2p/${id}$`))
    })

    it('listens nowhere when offline', async () => {
      const backend = await open({ listen: ['/ip4/127.0.0.1/tcp/0'] })
      expect(backend.multiaddrs()).toEqual([])
    })

    it('refuses a bootstrap address without a peer id, and stays stopped', async () => {
      const backend = new IpfsBackend({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: ['/ip4/127.0.0.1/tcp/4001'], offline: false })
      await expect(backend.start()).rejects.toThrow(/no \/p2p\//)
      expect(backend.isStarted()).toBe(false)
    })

    it('refuses calls before start and after stop', async () => {
      const backend = new IpfsBackend({ dataDir: dir, listen: [], bootstrap: [], offline: true })
      await expect(backend.stats()).rejects.toMatchObject({ code: 'ServiceUnavailable' })
      await backend.start()
      await backend.stop()
      expect(backend.isStarted()).toBe(false)
      await expect(backend.put(once(Buffer.from('x')))).rejects.toMatchObject({ code: 'ServiceUnavailable' })
    })
  })

  describe('a damaged store', () => {
    it('reports a missing leaf as ContentUnavailableError and has() false, serving what is there', async () => {
      const backend = await open()
      const bytes = randomBytes(3 * MiB)
      const { address } = await backend.put(once(bytes))
      await unlink(blockFile(dir, await rawCid(bytes.subarray(MiB, 2 * MiB))))

      expect(await backend.has(address)).toBe(false)
      expect(await collect(backend.get(address, { offset: 10, length: MiB - 10 }))).toEqual(bytes.subarray(10, MiB))
      expect(await collect(backend.get(address, { offset: 2 * MiB }))).toEqual(bytes.subarray(2 * MiB))
      await expect(collect(backend.get(address))).rejects.toBeInstanceOf(ContentUnavailableError)
      // a damaged content can still be removed, and leaves nothing behind
      await backend.remove(address)
      expect(await backend.stats()).toEqual({ contents: 0, bytes: 0 })
    })

    it('reports a missing root as ContentUnavailableError', async () => {
      const backend = await open()
      const bytes = randomBytes(2 * MiB)
      const { address } = await backend.put(once(bytes))
      await unlink(blockFile(dir, CID.parse(address)))
      expect(await backend.has(address)).toBe(false)
      await expect(collect(backend.get(address))).rejects.toBeInstanceOf(ContentUnavailableError)
      await backend.remove(address)
      // without its root the leaves cannot be found from the pin: collect them as garbage
      expect(await backend.collectGarbage()).toBe(2)
      expect(await backend.stats()).toEqual({ contents: 0, bytes: 0 })
    })

    it('collects blocks that no content reaches, and only those', async () => {
      const kept = randomBytes(2 * MiB + 1)
      const backend = await open()
      const { address } = await backend.put(once(kept))
      const before = await backend.stats()
      await backend.stop()

      // what a crash between writing blocks and retaining them leaves behind
      const orphans = [randomBytes(1000), randomBytes(MiB)]
      const store = new FsBlockstore(join(dir, 'blocks'))
      await store.open()
      for (const orphan of orphans) await store.put(await rawCid(orphan), orphan)
      await store.close()

      const reopened = await open()
      expect((await reopened.stats()).bytes).toBe(before.bytes + MiB + 1000)
      expect(await reopened.collectGarbage()).toBe(2)
      expect(await reopened.stats()).toEqual(before)
      expect(sha256(await collect(reopened.get(address)))).toEqual(sha256(kept))
    })
  })

  describe('start', () => {
    it('collects what a crash left behind, in the background', async () => {
      const kept = randomBytes(2 * MiB + 1)
      const backend = await open()
      const { address } = await backend.put(once(kept))
      const before = await backend.stats()
      await backend.stop()

      // blocks of an import that never got retained, and half-written files
      const store = new FsBlockstore(join(dir, 'blocks'))
      await store.open()
      const orphan = randomBytes(MiB)
      await store.put(await rawCid(orphan), orphan)
      await store.close()
      const stale = [join(dir, 'blocks', '.BCIQSTALE.data.tmp'), join(dir, 'datastore', '.stale.data.tmp')]
      for (const file of stale) await writeFile(file, randomBytes(100))
      const past = new Date(Date.now() - 60_000)
      for (const file of stale) await utimes(file, past, past)

      const reopened = await open({ collectGarbageOnStart: true })
      const deadline = Date.now() + 10_000
      while ((await reopened.stats()).bytes !== before.bytes || await exists(stale[0] as string) || await exists(stale[1] as string)) {
        if (Date.now() > deadline) throw new Error('the collection at start did not finish')
        await sleep(25)
      }
      expect(await reopened.has(address)).toBe(true)
      expect(sha256(await collect(reopened.get(address)))).toEqual(sha256(kept))
    })

    it('leaves temporary files of writes in progress alone', async () => {
      const backend = await open()
      const fresh = join(dir, 'blocks', '.BCIQFRESH.data.tmp')
      await writeFile(fresh, 'in progress')
      await backend.collectGarbage()
      expect(await exists(fresh)).toBe(true)
    })
  })

  describe('stopping', () => {
    it('aborts a put in flight, cleans up after it and then stops', async () => {
      const backend = await open()
      let stalled!: () => void
      const reachedStall = new Promise<void>(resolve => { stalled = resolve })
      const put = backend.put((async function * () {
        for (let i = 0; i < 12; i++) yield randomBytes(MiB)
        stalled()
        await new Promise(() => {})
      })())
      const outcome = put.then(() => undefined, (e: unknown) => e)
      await reachedStall
      await sleep(100) // let the first batch of blocks land on disk
      await backend.stop()
      expect(isAbortError(await outcome)).toBe(true)

      const reopened = await open()
      expect(await reopened.stats()).toEqual({ contents: 0, bytes: 0 })
    })
  })

  describe('concurrency', () => {
    it('keeps every retained content whole under concurrent overlapping puts and removes', async () => {
      const backend = await open()
      // contents made of chunks from a small pool, so that they share blocks in many ways
      const pool = Array.from({ length: 4 }, () => randomBytes(MiB))
      const contents = Array.from({ length: 16 }, (_, i) => Buffer.concat(
        Array.from({ length: 1 + (i % 5) }, (_, j) => pool[(i * 7 + j * 3) % pool.length] as Buffer)
          .concat(i % 3 === 0 ? [Buffer.from(`tail-${i}`)] : [])
      ))
      const addresses = await Promise.all(contents.map(async c => (await backend.put(once(c))).address))

      // remove the even ones while putting them again and putting the odd ones again
      await Promise.all(contents.map(async (c, i): Promise<unknown> => i % 2 === 0
        ? backend.remove(addresses[i] as string)
        : backend.put(once(c))))

      for (const [i, address] of addresses.entries()) {
        if (i % 2 === 1) {
          expect(await backend.has(address)).toBe(true)
          expect(sha256(await collect(backend.get(address)))).toEqual(sha256(contents[i] as Buffer))
        }
      }
      await Promise.all(addresses.map(async a => { await backend.remove(a) }))
      expect(await backend.stats()).toEqual({ contents: 0, bytes: 0 })
    })

    it('keeps a content whole when it is put while being removed', async () => {
      const backend = await open()
      const bytes = randomBytes(12 * MiB)
      const { address } = await backend.put(once(bytes))
      const results = await Promise.allSettled([backend.remove(address), backend.put(once(bytes))])
      expect(results.map(r => r.status)).toEqual(['fulfilled', 'fulfilled'])
      // whichever order they ran in, a put that succeeded after the remove left it whole, and a
      // put that ran before the remove left it removed: never half there
      const present = await backend.has(address)
      if (present) expect(sha256(await collect(backend.get(address)))).toEqual(sha256(bytes))
      else expect(await backend.stats()).toEqual({ contents: 0, bytes: 0 })
    })
  })
})
