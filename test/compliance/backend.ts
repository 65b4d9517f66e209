/**
 * The StorageBackend compliance suite (DESIGN.md section 3): the one set of behaviours every
 * backend (IPFS, BitTorrent) must show. A backend's test file calls `backendTests()` with a way
 * to make a fresh started backend, to tear it down, and to reopen its storage in a new instance.
 *
 * Nothing here knows about CIDs or infohashes: addresses are whatever `put()` returns.
 */
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ContentUnavailableError, NotFoundError, isAbortError } from '../../src/core/errors.ts'
import type { StorageBackend } from '../../src/backends/backend.ts'

export interface BackendTestOptions {
  /** A new, started backend over fresh, empty storage */
  setup: () => Promise<StorageBackend>
  /** Stop the backend and discard its storage */
  teardown: (backend: StorageBackend) => Promise<void>
  /**
   * Stop `backend` and return a new, started instance over the same storage (what a restart of
   * the process does). `teardown` is then called with the new instance.
   */
  reopen: (backend: StorageBackend) => Promise<StorageBackend>
  /**
   * Two started backends that are peers on their network (for read repair), and how to tear
   * them down. Backends without networking in the test leave it out.
   */
  peers?: () => Promise<BackendPeers>
  /** Delete the local bytes of a stored content behind the backend's back (a lost file) */
  loseData?: (backend: StorageBackend, address: string) => Promise<void>
}

export interface BackendPeers {
  holder: StorageBackend
  repairer: StorageBackend
  teardown: () => Promise<void>
}

const MiB = 1024 * 1024

/**
 * Bytes a put consumes before the failure tests make it fail. Backends write in batches (the
 * IPFS importer writes ten 1 MiB blocks at a time), and a failure before the first batch lands
 * would leave nothing behind even in a backend that never cleans up.
 */
export const FAIL_AFTER_BYTES = 12 * MiB

/** Size of the large stream of the memory test; big enough that buffering it would show. */
export const LARGE_STREAM_BYTES = 256 * MiB

/**
 * RSS growth allowed while the large stream goes through: a quarter of it, room for a few dozen
 * chunks in flight. The test collects garbage as it goes, so what it measures is what the
 * backend holds on to, not what V8 has not got round to freeing yet (without that, dead 1 MiB
 * chunks alone lift RSS by about 90 MiB on Node 24).
 */
export const MAX_RSS_GROWTH_BYTES = LARGE_STREAM_BYTES / 4

/** Collect garbage every so many bytes while streaming in the memory test. */
const GC_EVERY_BYTES = 8 * MiB

export function backendTests (name: string, options: BackendTestOptions): void {
  describe(`${name} backend compliance`, () => {
    let backend: StorageBackend

    beforeEach(async () => {
      backend = await options.setup()
    })

    afterEach(async () => {
      await options.teardown(backend)
    })

    describe('put and get', () => {
      const sizes: Array<[string, number]> = [
        ['empty', 0],
        ['one byte', 1],
        ['one byte under 1 MiB', MiB - 1],
        ['exactly 1 MiB', MiB],
        ['one byte over 1 MiB', MiB + 1],
        ['about 5 MiB', 5 * MiB + 12_345]
      ]
      for (const [label, size] of sizes) {
        it(`round-trips ${label} (${size} bytes)`, async () => {
          const bytes = randomBytes(size)
          const result = await backend.put(pieces(bytes, 65_536 + 3))
          expect(result.size).toBe(size)
          expect(typeof result.address).toBe('string')
          expect(result.address.length).toBeGreaterThan(0)
          expect(await backend.has(result.address)).toBe(true)
          const back = await collect(backend.get(result.address))
          expect(back.byteLength).toBe(size)
          expect(sha256(back)).toBe(sha256(bytes))
        })
      }

      it('accepts a source whose chunks do not line up with anything', async () => {
        const bytes = randomBytes(2 * MiB + 77)
        const a = await backend.put(irregularPieces(bytes))
        const b = await backend.put(pieces(bytes, 2 * MiB + 77))
        expect(a.address).toBe(b.address)
        expect(sha256(await collect(backend.get(a.address)))).toBe(sha256(bytes))
      })

      it('gives identical bytes the same address and keeps them once', async () => {
        const bytes = randomBytes(MiB + 100)
        const first = await backend.put(pieces(bytes, 4096))
        const statsAfterFirst = await backend.stats()
        const second = await backend.put(pieces(bytes, 100_000))
        expect(second.address).toBe(first.address)
        expect(second.size).toBe(first.size)
        expect(await backend.stats()).toEqual(statsAfterFirst)
      })

      it('gives different bytes different addresses', async () => {
        const a = randomBytes(1000)
        const b = Buffer.from(a)
        b[999] = (b[999] as number) ^ 1
        const ra = await backend.put(pieces(a, 1000))
        const rb = await backend.put(pieces(b, 1000))
        expect(ra.address).not.toBe(rb.address)
        expect(await collect(backend.get(rb.address))).toEqual(b)
      })

      it('stores two puts of the same bytes running at once', async () => {
        const bytes = randomBytes(3 * MiB)
        const [a, b] = await Promise.all([
          backend.put(pieces(bytes, 50_000)),
          backend.put(pieces(bytes, 70_000))
        ])
        expect(a.address).toBe(b.address)
        expect(await backend.has(a.address)).toBe(true)
        expect(sha256(await collect(backend.get(a.address)))).toBe(sha256(bytes))
      })
    })

    describe('ranges', () => {
      const size = 3 * MiB + 500
      let bytes: Buffer
      let address: string

      beforeEach(async () => {
        bytes = randomBytes(size)
        address = (await backend.put(pieces(bytes, 256 * 1024))).address
      })

      const ranges: Array<[string, number | undefined, number | undefined]> = [
        ['no offset, no length', undefined, undefined],
        ['offset only', 1000, undefined],
        ['a slice inside the first MiB', 10, 100],
        ['a slice across a 1 MiB boundary', MiB - 10, 20],
        ['a slice across two boundaries', MiB - 1, MiB + 2],
        ['starting exactly at a boundary', 2 * MiB, 5],
        ['the last byte', size - 1, 1],
        ['the last byte, no length', size - 1, undefined],
        ['length 0', 5, 0],
        ['length 0 at offset 0', 0, 0],
        ['offset at the end', size, undefined],
        ['offset at the end with a length', size, 10],
        ['offset past the end', size + 10, undefined],
        ['length past the end (clamped)', size - 100, 1000],
        ['length far past the end (clamped)', 0, size * 4]
      ]
      for (const [label, offset, length] of ranges) {
        it(`reads ${label}`, async () => {
          const start = Math.min(offset ?? 0, size)
          const end = length === undefined ? size : Math.min(start + length, size)
          const back = await collect(backend.get(address, { offset, length }))
          expect(back.byteLength).toBe(end - start)
          expect(back.equals(bytes.subarray(start, end))).toBe(true)
        })
      }

      it('reads every byte of an empty content as nothing, whatever the range', async () => {
        const empty = await backend.put(pieces(Buffer.alloc(0), 1))
        expect((await collect(backend.get(empty.address, { offset: 0, length: 10 }))).byteLength).toBe(0)
        expect((await collect(backend.get(empty.address, { offset: 3 }))).byteLength).toBe(0)
      })

      it('rejects a negative offset or length', async () => {
        await expect(collect(backend.get(address, { offset: -1 }))).rejects.toThrow()
        await expect(collect(backend.get(address, { offset: 0, length: -1 }))).rejects.toThrow()
      })
    })

    describe('has and remove', () => {
      it('forgets a removed content', async () => {
        const bytes = randomBytes(2 * MiB + 3)
        const { address } = await backend.put(pieces(bytes, 65_536))
        expect(await backend.has(address)).toBe(true)
        await backend.remove(address)
        expect(await backend.has(address)).toBe(false)
        await expect(collect(backend.get(address))).rejects.toBeInstanceOf(NotFoundError)
      })

      it('treats removing an unknown or already removed address as a no-op', async () => {
        const { address } = await backend.put(pieces(randomBytes(10), 10))
        await backend.remove(address)
        const before = await backend.stats()
        await backend.remove(address)
        expect(await backend.stats()).toEqual(before)
      })

      it('throws NotFoundError for an address it never stored', async () => {
        // an address of the right form for this backend that it does not hold
        const { address } = await backend.put(pieces(randomBytes(5000), 5000))
        await backend.remove(address)
        await expect(collect(backend.get(address))).rejects.toBeInstanceOf(NotFoundError)
        await expect(collect(backend.get(address, { offset: 1, length: 1 }))).rejects.toBeInstanceOf(NotFoundError)
        expect(await backend.has(address)).toBe(false)
      })

      it('stores a content again after it was removed', async () => {
        const bytes = randomBytes(MiB + 1)
        const first = await backend.put(pieces(bytes, 65_536))
        await backend.remove(first.address)
        const again = await backend.put(pieces(bytes, 65_536))
        expect(again.address).toBe(first.address)
        expect(await backend.has(again.address)).toBe(true)
        expect(sha256(await collect(backend.get(again.address)))).toBe(sha256(bytes))
      })

      it('reclaims the space of a removed content', async () => {
        const baseline = await backend.stats()
        const { address } = await backend.put(pieces(randomBytes(3 * MiB), 65_536))
        expect((await backend.stats()).bytes).toBeGreaterThan(baseline.bytes)
        await backend.remove(address)
        expect(await backend.stats()).toEqual(baseline)
      })

      it('reclaims the space of a content whose chunks repeat', async () => {
        const baseline = await backend.stats()
        const chunk = randomBytes(MiB)
        const bytes = Buffer.concat([chunk, chunk, chunk, randomBytes(10), chunk])
        const { address } = await backend.put(pieces(bytes, 65_536))
        expect(sha256(await collect(backend.get(address)))).toBe(sha256(bytes))
        await backend.remove(address)
        expect(await backend.stats()).toEqual(baseline)
      })
    })

    describe('contents that share bytes', () => {
      // B = A + A: on a chunking backend every chunk of A is also a chunk of B
      let a: Buffer
      let b: Buffer

      beforeEach(() => {
        a = randomBytes(3 * MiB)
        b = Buffer.concat([a, a])
      })

      it('keeps the larger content intact when the smaller one is removed', async () => {
        const ra = await backend.put(pieces(a, 65_536))
        const rb = await backend.put(pieces(b, 65_536))
        await backend.remove(ra.address)
        expect(await backend.has(ra.address)).toBe(false)
        expect(await backend.has(rb.address)).toBe(true)
        expect(sha256(await collect(backend.get(rb.address)))).toBe(sha256(b))
      })

      it('keeps the smaller content intact when the larger one is removed', async () => {
        const ra = await backend.put(pieces(a, 65_536))
        const rb = await backend.put(pieces(b, 65_536))
        await backend.remove(rb.address)
        expect(await backend.has(rb.address)).toBe(false)
        expect(sha256(await collect(backend.get(ra.address)))).toBe(sha256(a))
      })

      for (const [label, other] of [['A + A', () => b], ['A + other bytes', () => Buffer.concat([a, randomBytes(2 * MiB)])]] as const) {
        it(`keeps shared bytes of a content stored again after removal (B = ${label})`, async () => {
          // regression guard for Helia 7's pins, which remember the removed root on the shared
          // blocks, so that the second put of A does not count them and removing B frees them
          const bytes = other()
          const ra = await backend.put(pieces(a, 65_536))
          const rb = await backend.put(pieces(bytes, 65_536))
          await backend.remove(ra.address)
          await backend.put(pieces(a, 65_536))
          await backend.remove(rb.address)
          expect(await backend.has(ra.address)).toBe(true)
          expect(sha256(await collect(backend.get(ra.address)))).toBe(sha256(a))
        })
      }

      it('reclaims all space once both are removed', async () => {
        const baseline = await backend.stats()
        const ra = await backend.put(pieces(a, 65_536))
        const rb = await backend.put(pieces(b, 65_536))
        await backend.remove(ra.address)
        await backend.remove(rb.address)
        expect(await backend.stats()).toEqual(baseline)
      })

      it('does not let a removal take bytes from a put in progress', async () => {
        // big enough that a backend which writes in batches has written the shared part
        const shared = randomBytes(FAIL_AFTER_BYTES)
        const tail = randomBytes(MiB)
        const old = await backend.put(pieces(shared, 65_536))
        const source = async function * (): AsyncGenerator<Uint8Array> {
          yield * pieces(shared, 65_536)
          yield tail.subarray(0, 10)
          // the put has now seen (and probably written) the shared bytes: remove the old content
          await sleep(50)
          await backend.remove(old.address)
          yield tail.subarray(10)
        }
        const fresh = await backend.put(source())
        expect(await backend.has(old.address)).toBe(false)
        expect(await backend.has(fresh.address)).toBe(true)
        expect(sha256(await collect(backend.get(fresh.address)))).toBe(sha256(Buffer.concat([shared, tail])))
      })
    })

    describe('failed puts', () => {
      it('rejects an aborted put and keeps nothing of it', async () => {
        const bytes = randomBytes(FAIL_AFTER_BYTES + 4 * MiB)
        const { address } = await backend.put(pieces(bytes, MiB))
        await backend.remove(address)
        const baseline = await backend.stats()

        const controller = new AbortController()
        const source = async function * (): AsyncGenerator<Uint8Array> {
          let sent = 0
          for await (const piece of pieces(bytes, 256 * 1024)) {
            if (sent >= FAIL_AFTER_BYTES) controller.abort()
            sent += piece.byteLength
            yield piece
          }
        }
        const err = await backend.put(source(), { signal: controller.signal }).then(() => undefined, (e: unknown) => e)
        expect(err).toBeDefined()
        expect(isAbortError(err)).toBe(true)
        expect(await backend.has(address)).toBe(false)
        expect(await backend.stats()).toEqual(baseline)
      })

      it('rejects a put whose source stalls when its signal fires', async () => {
        const baseline = await backend.stats()
        const controller = new AbortController()
        const source = async function * (): AsyncGenerator<Uint8Array> {
          yield * pieces(randomBytes(FAIL_AFTER_BYTES + 10), MiB)
          await sleep(50)
          controller.abort()
          await new Promise(() => {}) // never sends the rest
        }
        const err = await backend.put(source(), { signal: controller.signal }).then(() => undefined, (e: unknown) => e)
        expect(isAbortError(err)).toBe(true)
        expect(await backend.stats()).toEqual(baseline)
      })

      it('rejects a put whose signal is already aborted', async () => {
        const baseline = await backend.stats()
        const err = await backend.put(pieces(randomBytes(1000), 100), { signal: AbortSignal.abort() }).then(() => undefined, (e: unknown) => e)
        expect(isAbortError(err)).toBe(true)
        expect(await backend.stats()).toEqual(baseline)
      })

      it('rejects with the source\'s own error when the source throws, and keeps nothing', async () => {
        const bytes = randomBytes(FAIL_AFTER_BYTES + 4 * MiB)
        const { address } = await backend.put(pieces(bytes, MiB))
        await backend.remove(address)
        const baseline = await backend.stats()

        const boom = new Error('the client went away')
        const source = async function * (): AsyncGenerator<Uint8Array> {
          let sent = 0
          for await (const piece of pieces(bytes, 300_000)) {
            if (sent >= FAIL_AFTER_BYTES) throw boom
            sent += piece.byteLength
            yield piece
          }
        }
        await expect(backend.put(source())).rejects.toBe(boom)
        expect(await backend.has(address)).toBe(false)
        expect(await backend.stats()).toEqual(baseline)
      })

      it('keeps other contents whole when a put sharing their bytes fails', async () => {
        const shared = randomBytes(FAIL_AFTER_BYTES)
        const kept = await backend.put(pieces(shared, MiB))
        const statsBefore = await backend.stats()
        const source = async function * (): AsyncGenerator<Uint8Array> {
          yield * pieces(shared, MiB)
          yield * pieces(randomBytes(MiB), MiB)
          throw new Error('cut')
        }
        await expect(backend.put(source())).rejects.toThrow('cut')
        expect(await backend.stats()).toEqual(statsBefore)
        expect(sha256(await collect(backend.get(kept.address)))).toBe(sha256(shared))
      })
    })

    describe('persistence', () => {
      it('keeps its contents across a restart', async () => {
        const small = randomBytes(100)
        const large = randomBytes(4 * MiB + 1)
        const rs = await backend.put(pieces(small, 100))
        const rl = await backend.put(pieces(large, MiB))
        const removed = await backend.put(pieces(randomBytes(MiB * 2), MiB))
        await backend.remove(removed.address)
        const stats = await backend.stats()

        backend = await options.reopen(backend)

        expect(await backend.stats()).toEqual(stats)
        expect(await backend.has(rs.address)).toBe(true)
        expect(await backend.has(rl.address)).toBe(true)
        expect(await backend.has(removed.address)).toBe(false)
        expect(await collect(backend.get(rs.address))).toEqual(small)
        expect(sha256(await collect(backend.get(rl.address)))).toBe(sha256(large))
        // and it still works normally afterwards
        await backend.remove(rl.address)
        expect(await backend.has(rl.address)).toBe(false)
        expect(await collect(backend.get(rs.address, { offset: 50, length: 10 }))).toEqual(small.subarray(50, 60))
      })
    })

    describe('stats', () => {
      it('counts contents and their bytes', async () => {
        const empty = await backend.stats()
        expect(empty.contents).toBe(0)
        const r1 = await backend.put(pieces(randomBytes(2 * MiB), MiB))
        const one = await backend.stats()
        expect(one.contents).toBe(1)
        expect(one.bytes).toBeGreaterThanOrEqual(2 * MiB)
        const r2 = await backend.put(pieces(randomBytes(MiB), MiB))
        const two = await backend.stats()
        expect(two.contents).toBe(2)
        expect(two.bytes).toBeGreaterThanOrEqual(3 * MiB)
        await backend.remove(r1.address)
        expect((await backend.stats()).contents).toBe(1)
        await backend.remove(r2.address)
        expect(await backend.stats()).toEqual(empty)
      })
    })

    describe('list', () => {
      const listed = async (): Promise<string[]> => {
        const out: string[] = []
        for await (const address of backend.list()) out.push(address)
        return out.sort()
      }

      it('lists exactly the retained addresses, each once', async () => {
        expect(await listed()).toEqual([])
        const a = await backend.put(pieces(randomBytes(3 * MiB), MiB))
        const b = await backend.put(pieces(randomBytes(1000), 1000))
        const again = await backend.put(pieces(randomBytes(0), 1))
        await expect(backend.put((async function * () { yield randomBytes(10); throw new Error('source failed') })())).rejects.toThrow()
        expect(await listed()).toEqual([a.address, b.address, again.address].sort())
        await backend.remove(b.address)
        expect(await listed()).toEqual([a.address, again.address].sort())
      })
    })

    describe('repair', () => {
      it('resolves at once for a content it holds whole', async () => {
        const bytes = randomBytes(2 * MiB + 3)
        const { address } = await backend.put(pieces(bytes, MiB))
        await backend.repair(address)
        expect(await backend.has(address)).toBe(true)
        expect(sha256(await collect(backend.get(address)))).toBe(sha256(bytes))
      })

      it('rejects ContentUnavailableError when no peer can provide a content', async () => {
        const { address } = await backend.put(pieces(randomBytes(100_000), 10_000))
        await backend.remove(address)
        const error = await backend.repair(address).then(() => undefined, (err: unknown) => err)
        expect(error).toBeInstanceOf(ContentUnavailableError)
        expect(await backend.has(address)).toBe(false)
      })

      it('rejects an address that is not one of its own', async () => {
        await expect(backend.repair('not an address')).rejects.toMatchObject({ code: 'InvalidAddress' })
      })

      if (options.peers !== undefined) {
        const makePeers = options.peers
        describe('with a peer that holds the content', () => {
          let peers: BackendPeers
          beforeEach(async () => { peers = await makePeers() })
          afterEach(async () => { await peers.teardown() })

          it('fetches a content it never stored, verifies it and retains it', async () => {
            const bytes = randomBytes(3 * MiB + 7)
            const { address } = await peers.holder.put(pieces(bytes, MiB), { size: bytes.byteLength })
            expect(await peers.repairer.has(address)).toBe(false)
            await peers.repairer.repair(address, { size: bytes.byteLength })
            expect(await peers.repairer.has(address)).toBe(true)
            expect(sha256(await collect(peers.repairer.get(address)))).toBe(sha256(bytes))
            const listed: string[] = []
            for await (const a of peers.repairer.list()) listed.push(a)
            expect(listed).toContain(address)
            // retained as a put retains: one remove releases it
            await peers.repairer.remove(address)
            expect(await peers.repairer.has(address)).toBe(false)
          }, 60_000)

          if (options.loseData !== undefined) {
            const loseData = options.loseData
            it('fetches again the bytes of a content whose local copy was lost', async () => {
              const bytes = randomBytes(2 * MiB + 11)
              const { address } = await peers.holder.put(pieces(bytes, MiB), { size: bytes.byteLength })
              await peers.repairer.put(pieces(bytes, MiB), { size: bytes.byteLength })
              await loseData(peers.repairer, address)
              expect(await peers.repairer.has(address)).toBe(false)
              await expect(collect(peers.repairer.get(address))).rejects.toBeInstanceOf(ContentUnavailableError)
              await peers.repairer.repair(address, { size: bytes.byteLength })
              expect(await peers.repairer.has(address)).toBe(true)
              expect(sha256(await collect(peers.repairer.get(address)))).toBe(sha256(bytes))
            }, 60_000)
          }
        })
      }
    })

    describe('memory', () => {
      it(`streams a ${LARGE_STREAM_BYTES / MiB} MiB put and get without buffering them`, async () => {
        const gc = exposeGc()
        let sinceGc = 0
        const sample = (bytes: number): void => {
          sinceGc += bytes
          if (sinceGc >= GC_EVERY_BYTES) {
            sinceGc = 0
            gc()
          }
          peak = Math.max(peak, process.memoryUsage().rss)
        }
        gc()
        const baseline = process.memoryUsage().rss
        let peak = baseline

        const hashIn = createHash('sha256')
        const source = async function * (): AsyncGenerator<Uint8Array> {
          for (const chunk of generated(LARGE_STREAM_BYTES, MiB)) {
            hashIn.update(chunk)
            sample(chunk.byteLength)
            yield chunk
          }
        }
        const { address, size } = await backend.put(source())
        sample(0)
        expect(size).toBe(LARGE_STREAM_BYTES)
        const putGrowth = peak - baseline

        // read it back with a consumer that stalls after the first chunk: a reader that runs
        // ahead of its consumer would fill memory with the content meanwhile
        gc()
        peak = process.memoryUsage().rss
        const readBaseline = peak
        const hashOut = createHash('sha256')
        let first = true
        let read = 0
        for await (const chunk of backend.get(address)) {
          if (first) {
            first = false
            await sleep(500)
          }
          hashOut.update(chunk)
          read += chunk.byteLength
          sample(chunk.byteLength)
        }
        const getGrowth = peak - readBaseline
        expect(read).toBe(LARGE_STREAM_BYTES)
        expect(hashOut.digest('hex')).toBe(hashIn.digest('hex'))
        expect(putGrowth, `RSS grew ${(putGrowth / MiB).toFixed(0)} MiB during the put`).toBeLessThan(MAX_RSS_GROWTH_BYTES)
        expect(getGrowth, `RSS grew ${(getGrowth / MiB).toFixed(0)} MiB during the get`).toBeLessThan(MAX_RSS_GROWTH_BYTES)
        await backend.remove(address)
      }, 300_000)
    })
  })
}

/** `bytes` cut into pieces of `size` (the last one shorter), as a source. */
export async function * pieces (bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield bytes.subarray(i, i + size)
}

/** `bytes` cut into pieces of irregular sizes, from 1 byte to a little over 1 MiB. */
async function * irregularPieces (bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  const sizes = [1, 7, 4096, 65_535, MiB + 3, 13, 300_001]
  let i = 0
  for (let n = 0; i < bytes.byteLength; n++) {
    const size = sizes[n % sizes.length] as number
    yield bytes.subarray(i, i + size)
    i += size
  }
}

/**
 * `total` bytes in fresh chunks of `chunkSize`, each distinct (random base, chunk index in the
 * first bytes), cheap to make. Fresh buffers: a backend may keep a reference to a chunk while it
 * writes it, so a generator must never reuse one.
 */
export function * generated (total: number, chunkSize: number): Generator<Buffer> {
  const base = randomBytes(chunkSize)
  for (let offset = 0, n = 0; offset < total; offset += chunkSize, n++) {
    const chunk = Buffer.from(base.subarray(0, Math.min(chunkSize, total - offset)))
    if (chunk.byteLength >= 4) chunk.writeUInt32BE(n, 0)
    yield chunk
  }
}

/**
 * V8's `gc()`, which vitest's workers do not expose: turning the flag on at run time and taking
 * the function from a fresh context is the usual way round that in tests.
 */
function exposeGc (): () => void {
  v8.setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

export async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const part of source) parts.push(part)
  return Buffer.concat(parts)
}

export function sha256 (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}
