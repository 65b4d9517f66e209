/**
 * The ingest pipeline: one pass over an upload body that counts the bytes, computes MD5 (the S3
 * ETag) and SHA-256 (the canonical id), enforces the size limits and feeds every backend of the
 * bucket at once. Nothing is visible until the object store commits the metadata row; when any
 * stage fails, every backend that accepted the bytes is told to drop them.
 */
import { createHash } from 'node:crypto'
import type { BackendName, StorageBackend } from '../backends/backend.ts'
import { canonicalIdFromSha256 } from '../core/content-id.ts'
import { AbortedError, AtlasError, isAbortError } from '../core/errors.ts'
import { checkLength, fanOut } from '../core/streams.ts'
import { recycleBlock, StreamDigester, type DigestPool } from './digest-pool.ts'
import type { ContentLocation } from '../metadata/store.ts'

export interface IngestOptions {
  backends: StorageBackend[]
  /** Bytes the client announced (Content-Length); a different count is an error */
  expectedSize?: number
  /** Largest accepted body */
  maxSize: number
  /** Expected MD5 (Content-MD5), hex */
  expectedMd5?: string
  signal?: AbortSignal
  /** Worker threads for the whole-body digests; without one they are computed inline */
  digestPool?: DigestPool
  /**
   * Told what the backends stored for an ingest that then failed. The bytes may also belong to
   * a committed content or to a concurrent upload, so the caller decides when they can go.
   */
  discard: (locations: ContentLocation[]) => void
}

export interface IngestResult {
  contentId: string
  size: number
  md5: string
  sha256: string
  locations: ContentLocation[]
}

/** Per-stage observer, so that the caller can meter bytes as they pass. */
export interface Digests {
  size: number
  md5: string
  sha256: string
}

/**
 * Stream `source` into every backend and return the content's identity and locations.
 *
 * @throws AtlasError IncompleteBody (short body), EntityTooLarge, BadDigest, ClientClosed; or the
 * error a backend raised. On any throw, what the backends stored for this call has been removed.
 */
export async function ingest (source: AsyncIterable<Uint8Array>, options: IngestOptions): Promise<IngestResult> {
  const { backends, expectedSize, maxSize, signal } = options
  if (backends.length === 0) throw new AtlasError('InvalidBackend', 'A bucket needs at least one backend')
  if (expectedSize !== undefined && expectedSize > maxSize) {
    throw new AtlasError('EntityTooLarge', `Body of ${expectedSize} bytes exceeds the limit of ${maxSize} bytes`, { details: { limit: maxSize } })
  }
  const controller = new AbortController()
  const onAbort = (): void => { controller.abort(signal?.reason) }
  if (signal?.aborted === true) throw new AbortedError()
  signal?.addEventListener('abort', onAbort, { once: true })

  const digests: Digests = { size: 0, md5: '', sha256: '' }
  const blocks = new OwnedBlocks(backends.length)
  const hashed = hashAndLimit(source, digests, { expectedSize, maxSize, signal: controller.signal, pool: options.digestPool, blocks })
  const feeds = fanOut(hashed, backends.length, controller.signal)

  const settled = await Promise.allSettled(backends.map(async (backend, i) => {
    try {
      // the digests are set before a feed ends (hashAndLimit): a backend may use them then
      return await backend.put(feeds[i] as AsyncIterable<Uint8Array>, {
        signal: controller.signal,
        size: expectedSize,
        sha256: () => digests.sha256 === '' ? undefined : digests.sha256,
        release: blocks.release
      })
    } catch (err) {
      // one backend failing stops the others: a fan-out is all or nothing
      controller.abort(err)
      throw err
    }
  }))
  signal?.removeEventListener('abort', onAbort)

  const failure = firstFailure(settled, signal)
  const locations: ContentLocation[] = []
  settled.forEach((s, i) => {
    if (s.status === 'fulfilled') {
      locations.push({ backend: (backends[i] as StorageBackend).name as BackendName, address: s.value.address, extra: s.value.extra ?? {} })
    }
  })
  if (failure !== undefined) {
    if (locations.length > 0) options.discard(locations)
    throw failure
  }
  if (options.expectedMd5 !== undefined && options.expectedMd5 !== digests.md5) {
    options.discard(locations)
    throw new AtlasError('BadDigest', 'The Content-MD5 you specified did not match what was received')
  }

  const contentId = canonicalIdFromSha256(Buffer.from(digests.sha256, 'hex'))
  return { contentId, size: digests.size, md5: digests.md5, sha256: digests.sha256, locations }
}

interface LimitOptions {
  expectedSize: number | undefined
  maxSize: number
  signal: AbortSignal
  pool: DigestPool | undefined
  blocks: OwnedBlocks
}

/**
 * The blocks the ingest cuts the body into (1 MiB buffers, see StreamDigester), freed as soon as
 * every backend has released them (`BackendPutOptions.release`), their memory kept for the next
 * blocks, rather than left to the garbage collector. A block lives only while it is in flight,
 * but long enough for V8 to promote it to the old generation, whose memory comes back only with
 * a full collection: on a large upload that made many full collections and kept a hundred MiB of
 * dead blocks in memory between them. Freeing detaches the buffer (its memory moves to a new
 * one), so a reader that broke the contract would see zero bytes, never another block's data.
 * Chunks the ingest did not allocate (a small body passes the socket's own chunks through) are
 * never freed here.
 */
class OwnedBlocks {
  readonly #consumers: number
  /** Releases still awaited per block (weak: a backend that never releases holds nothing) */
  readonly #awaited = new WeakMap<Uint8Array, number>()

  constructor (consumers: number) {
    this.#consumers = consumers
  }

  own (block: Uint8Array): Uint8Array {
    this.#awaited.set(block, this.#consumers)
    return block
  }

  readonly release = (chunk: Uint8Array): void => {
    const awaited = this.#awaited.get(chunk)
    if (awaited === undefined) return
    if (awaited > 1) {
      this.#awaited.set(chunk, awaited - 1)
      return
    }
    this.#awaited.delete(chunk)
    recycleBlock(chunk)
  }
}

async function * hashAndLimit (source: AsyncIterable<Uint8Array>, out: Digests, options: LimitOptions): AsyncGenerator<Uint8Array> {
  const digester = options.pool === undefined ? undefined : new StreamDigester(options.pool)
  const md5 = digester === undefined ? createHash('md5') : undefined
  const sha256 = digester === undefined ? createHash('sha256') : undefined
  let size = 0
  let finished = false
  try {
    // checkLength fails the stream instead of ending it on a short or long body
    for await (const chunk of checkLength(source, options.expectedSize, options.maxSize)) {
      if (options.signal.aborted) throw new AbortedError()
      size += chunk.byteLength
      if (digester !== undefined) {
        for (const block of await digester.push(chunk)) yield options.blocks.own(block)
      } else {
        md5?.update(chunk)
        sha256?.update(chunk)
        yield chunk
      }
    }
    const last = digester?.rest()
    // the digests are ready before the end is signalled: the backends finish after this
    const digests = digester === undefined
      ? { md5: md5?.digest('hex') as string, sha256: sha256?.digest('hex') as string }
      : await digester.digest()
    out.size = size
    out.md5 = digests.md5
    out.sha256 = digests.sha256
    finished = true
    if (last !== undefined) yield options.blocks.own(last)
  } catch (err) {
    if (err instanceof AtlasError) throw err
    if (isAbortError(err)) throw new AbortedError('The client closed the connection during the upload', { cause: err })
    throw err
  } finally {
    if (!finished) digester?.drop()
  }
}

function firstFailure (settled: Array<PromiseSettledResult<unknown>>, signal: AbortSignal | undefined): Error | undefined {
  const reasons = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => s.reason as unknown)
  if (reasons.length === 0) return undefined
  // prefer the error that says what went wrong with the body over the aborts it caused elsewhere
  const atlas = reasons.find((r) => r instanceof AtlasError && !(r instanceof AbortedError))
  if (atlas !== undefined) return atlas as Error
  if (signal?.aborted === true || reasons.some(isAbortError)) return new AbortedError('The upload was aborted')
  const first = reasons[0]
  return first instanceof Error ? first : new Error(String(first))
}
