/**
 * The ingest frees the blocks it cut only once every backend of the upload has released them
 * (`BackendPutOptions.release`), and never a chunk it did not allocate.
 */
import { createHash, randomBytes } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { DIGEST_BATCH, DigestPool } from '../../../src/objects/digest-pool.ts'
import { ingest } from '../../../src/objects/ingest.ts'
import type { BackendPutOptions, BackendPutResult, StorageBackend } from '../../../src/backends/backend.ts'

const pool = new DigestPool(1)
afterAll(async () => { await pool.close() })

interface Seen {
  chunks: Uint8Array[]
  sha256: string
}

/**
 * A backend that hashes what it reads. `release`: 'at-once' releases each chunk as soon as it has
 * hashed it; 'after' holds every chunk until `until` settles, then hashes them all and releases
 * them; 'never' does not release.
 */
function backend (name: string, release: 'at-once' | 'after' | 'never', seen: Seen, until?: Promise<unknown>): StorageBackend {
  const put = async (source: AsyncIterable<Uint8Array>, options: BackendPutOptions = {}): Promise<BackendPutResult> => {
    const hash = createHash('sha256')
    let size = 0
    for await (const chunk of source) {
      seen.chunks.push(chunk)
      size += chunk.byteLength
      if (release !== 'after') hash.update(chunk)
      if (release === 'at-once') options.release?.(chunk)
    }
    if (release === 'after') {
      await until
      for (const chunk of seen.chunks) hash.update(chunk)
      for (const chunk of seen.chunks) options.release?.(chunk)
    }
    seen.sha256 = hash.digest('hex')
    return { address: `${name}:${seen.sha256}`, size }
  }
  return { name, put } as unknown as StorageBackend
}

async function * chunked (bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield Uint8Array.from(bytes.subarray(i, i + size))
}

function detached (chunk: Uint8Array): boolean {
  return (chunk.buffer as ArrayBuffer).detached
}

function sha256 (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

describe('ingest: blocks freed once every backend released them', () => {
  const body = randomBytes(3 * DIGEST_BATCH + 4321)

  it('frees no block while another backend still holds it, and every block once all have released', async () => {
    const eager: Seen = { chunks: [], sha256: '' }
    const late: Seen = { chunks: [], sha256: '' }
    let eagerDone!: () => void
    const eagerFinished = new Promise<void>((resolve) => { eagerDone = resolve })
    const first = backend('eager', 'at-once', eager)
    const wrapped = { name: 'eager', put: async (s: AsyncIterable<Uint8Array>, o?: BackendPutOptions) => { try { return await first.put(s, o) } finally { eagerDone() } } } as unknown as StorageBackend
    const result = await ingest(chunked(body, 64 * 1024), {
      backends: [wrapped, backend('late', 'after', late, eagerFinished)],
      expectedSize: body.byteLength,
      maxSize: 1 << 30,
      digestPool: pool,
      discard: () => {}
    })
    expect(result.sha256).toBe(sha256(body))
    // the late backend read every byte after the eager one had released them all
    expect(eager.sha256).toBe(sha256(body))
    expect(late.sha256).toBe(sha256(body))
    // the blocks are the ingest's 1 MiB cuts (and the rest), now freed
    expect(late.chunks.length).toBe(4)
    expect(late.chunks.every((c) => detached(c) && c.byteLength === 0)).toBe(true)
  })

  it('frees nothing when a backend never releases', async () => {
    const eager: Seen = { chunks: [], sha256: '' }
    const keeper: Seen = { chunks: [], sha256: '' }
    await ingest(chunked(body, 64 * 1024), {
      backends: [backend('eager', 'at-once', eager), backend('keeper', 'never', keeper)],
      expectedSize: body.byteLength,
      maxSize: 1 << 30,
      digestPool: pool,
      discard: () => {}
    })
    expect(keeper.chunks.length).toBe(4)
    expect(keeper.chunks.some((c) => detached(c))).toBe(false)
    expect(sha256(Buffer.concat(keeper.chunks))).toBe(sha256(body))
  })

  it('frees the blocks of a single backend as it releases them', async () => {
    const only: Seen = { chunks: [], sha256: '' }
    await ingest(chunked(body, 100_000), { backends: [backend('only', 'at-once', only)], maxSize: 1 << 30, digestPool: pool, discard: () => {} })
    expect(only.sha256).toBe(sha256(body))
    expect(only.chunks.every((c) => detached(c))).toBe(true)
  })

  it('never frees a chunk it did not allocate (a body passed through without the digest pool)', async () => {
    const only: Seen = { chunks: [], sha256: '' }
    const small = randomBytes(10_000)
    const source = [Uint8Array.from(small.subarray(0, 6000)), Uint8Array.from(small.subarray(6000))]
    await ingest((async function * () { yield * source })(), { backends: [backend('only', 'at-once', only)], maxSize: 1 << 30, discard: () => {} })
    expect(only.sha256).toBe(sha256(small))
    expect(source.some((c) => detached(c))).toBe(false)
  })
})
