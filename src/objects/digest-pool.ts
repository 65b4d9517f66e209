/**
 * Whole-body digests (MD5 for the S3 ETag, SHA-256 for the canonical id) computed on worker
 * threads, so that on a large upload the main thread only parses HTTP and feeds the backends.
 * Hashing both digests costs about as much CPU as importing the bytes into IPFS; on two cores
 * the two now run side by side.
 *
 * Small bodies never reach a worker: the first {@link DIGEST_BATCH} bytes are hashed inline
 * when the body ends there (a thread round trip would cost more than the hashing).
 */
import { createHash } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import { AtlasError } from '../core/errors.ts'

/** Size of the blocks the body is re-cut into, the same as the IPFS leaf size */
export const DIGEST_BATCH = 1024 * 1024
/** Bytes one session may have in flight to its worker before the upload waits */
export const DIGEST_MAX_IN_FLIGHT = 4 * DIGEST_BATCH
/**
 * Workers in the pool. One worker beside the main thread uses both cores of a small machine;
 * every worker costs an isolate's memory.
 */
export const DIGEST_WORKERS = 1
/**
 * Shared-memory slots per worker, each {@link DIGEST_BATCH} bytes: the bound on one session's
 * in-flight bytes, and as much again for other uploads digesting at the same time
 */
const DIGEST_SLOTS = 2 * (DIGEST_MAX_IN_FLIGHT / DIGEST_BATCH)

export interface Digests {
  md5: string
  sha256: string
}

interface Reply {
  id: number
  op: 'ack' | 'done'
  slot?: number
  bytes?: number
  md5?: string
  sha256?: string
}

interface SessionState {
  inFlight: number
  wake: (() => void) | undefined
  done: ((d: Digests) => void) | undefined
  fail: ((err: Error) => void) | undefined
}

/**
 * One worker and the slots it reads from. A block is copied into a free slot and the worker is
 * told the slot's number: the memory is shared from the start, so nothing is allocated, moved
 * or cloned per block (moving a fresh `ArrayBuffer` to the worker and back for every MiB made
 * garbage that only V8's full collections reclaimed).
 */
class DigestWorker {
  readonly worker: Worker
  readonly #slots: Buffer[]
  readonly #free: number[]
  readonly #waiting: Array<() => void> = []

  constructor (onReply: (reply: Reply) => void, onError: (err: Error) => void) {
    const memory = Array.from({ length: DIGEST_SLOTS }, () => new SharedArrayBuffer(DIGEST_BATCH))
    this.#slots = memory.map((m) => Buffer.from(m))
    this.#free = memory.map((_, i) => i)
    this.worker = new Worker(new URL('./digest-worker.mjs', import.meta.url), { workerData: { slots: memory } })
    this.worker.unref()
    this.worker.on('message', (reply: Reply) => {
      if (reply.op === 'ack' && reply.slot !== undefined) this.#freeSlot(reply.slot)
      onReply(reply)
    })
    this.worker.on('error', onError)
  }

  /** Copy `block` into a free slot (waiting for one) and have the worker hash it for session `id`. */
  async send (id: number, block: Uint8Array, failed: () => Error | undefined): Promise<void> {
    while (this.#free.length === 0) {
      const error = failed()
      if (error !== undefined) throw error
      await new Promise<void>((resolve) => { this.#waiting.push(resolve) })
    }
    const slot = this.#free.pop() as number
    const memory = this.#slots[slot] as Buffer
    memory.set(block)
    this.worker.postMessage({ id, op: 'update', slot, length: block.byteLength })
  }

  /** Wake everything waiting for a slot (the worker failed: they must see the error). */
  wakeAll (): void {
    for (const wake of this.#waiting.splice(0)) wake()
  }

  #freeSlot (slot: number): void {
    this.#free.push(slot)
    this.#waiting.shift()?.()
  }
}

export class DigestPool {
  private readonly size: number
  private readonly workers: DigestWorker[] = []
  private readonly sessions = new Map<number, SessionState>()
  private nextId = 1
  private nextWorker = 0
  private closed = false

  constructor (size = DIGEST_WORKERS) {
    this.size = size
  }

  private worker (): DigestWorker {
    if (this.closed) throw new AtlasError('ServiceUnavailable', 'The server is shutting down')
    if (this.workers.length < this.size) {
      const worker: DigestWorker = new DigestWorker((reply) => { this.onReply(reply) }, (err) => { this.onWorkerError(worker, err) })
      this.workers.push(worker)
      return worker
    }
    const worker = this.workers[this.nextWorker % this.workers.length] as DigestWorker
    this.nextWorker++
    return worker
  }

  private onReply (reply: Reply): void {
    const state = this.sessions.get(reply.id)
    if (state === undefined) return
    if (reply.op === 'ack') {
      state.inFlight -= reply.bytes ?? 0
      state.wake?.()
    } else {
      this.sessions.delete(reply.id)
      state.done?.({ md5: reply.md5 as string, sha256: reply.sha256 as string })
    }
  }

  private onWorkerError (worker: DigestWorker, err: Error): void {
    this.workers.splice(this.workers.indexOf(worker), 1)
    for (const state of this.sessions.values()) state.fail?.(err)
    worker.wakeAll()
  }

  /** Start digesting one body. */
  session (): DigestSession {
    const worker = this.worker()
    const id = this.nextId++
    const state: SessionState = { inFlight: 0, wake: undefined, done: undefined, fail: undefined }
    this.sessions.set(id, state)
    return new DigestSession(id, worker, state, () => { this.sessions.delete(id) })
  }

  async close (): Promise<void> {
    this.closed = true
    await Promise.all(this.workers.splice(0).map(async (w) => await w.worker.terminate()))
  }
}

export class DigestSession {
  private readonly id: number
  private readonly worker: DigestWorker
  private readonly state: SessionState
  private readonly forget: () => void
  private error: Error | undefined

  constructor (id: number, worker: DigestWorker, state: SessionState, forget: () => void) {
    this.id = id
    this.worker = worker
    this.state = state
    this.forget = forget
    state.fail = (err) => { this.error = err; state.wake?.() }
  }

  /** Hash a block (copied: the caller keeps it). */
  async update (batch: Uint8Array): Promise<void> {
    if (this.error !== undefined) throw this.error
    this.state.inFlight += batch.byteLength
    await this.worker.send(this.id, batch, () => this.error)
    while (this.state.inFlight > DIGEST_MAX_IN_FLIGHT && this.error === undefined) {
      await new Promise<void>((resolve) => { this.state.wake = resolve })
    }
    if (this.error !== undefined) throw this.error
  }

  async digest (): Promise<Digests> {
    if (this.error !== undefined) throw this.error
    const result = new Promise<Digests>((resolve, reject) => {
      this.state.done = resolve
      this.state.fail = reject
    })
    this.worker.worker.postMessage({ id: this.id, op: 'end' })
    return await result
  }

  /** Forget the session (an upload that failed). */
  drop (): void {
    this.forget()
    this.worker.worker.postMessage({ id: this.id, op: 'drop' })
  }
}

/**
 * Digest a stream as it passes through, re-cut into blocks of {@link DIGEST_BATCH} bytes that the
 * backends consume as they are (the IPFS importer would otherwise glue socket-sized chunks into
 * its 1 MiB leaves itself); the worker hashes a copy of each block.
 */
export class StreamDigester {
  private readonly pool: DigestPool
  private session: DigestSession | undefined
  /** The block being filled: taken when the first byte for it arrives */
  private batch: Buffer | undefined
  private filled = 0

  constructor (pool: DigestPool) {
    this.pool = pool
  }

  /** Add bytes; returns the blocks they completed, each already handed to the worker. */
  async push (chunk: Uint8Array): Promise<Buffer[]> {
    const full: Buffer[] = []
    let offset = 0
    while (offset < chunk.byteLength) {
      const batch = this.batch ??= newBlock()
      const n = Math.min(chunk.byteLength - offset, DIGEST_BATCH - this.filled)
      batch.set(chunk.subarray(offset, offset + n), this.filled)
      this.filled += n
      offset += n
      if (this.filled === DIGEST_BATCH) {
        this.batch = undefined
        this.filled = 0
        this.session ??= this.pool.session()
        await this.session.update(batch)
        full.push(batch)
      }
    }
    return full
  }

  /** The last, partial block (undefined when the stream ended on a block boundary). */
  rest (): Buffer | undefined {
    return this.batch === undefined || this.filled === 0 ? undefined : this.batch.subarray(0, this.filled)
  }

  async digest (): Promise<Digests> {
    const rest = this.rest()
    if (this.session === undefined) {
      // the whole body fits one block: hashing it here is cheaper than a round trip
      const bytes = rest ?? new Uint8Array(0)
      return { md5: createHash('md5').update(bytes).digest('hex'), sha256: createHash('sha256').update(bytes).digest('hex') }
    }
    if (rest !== undefined) await this.session.update(rest)
    return await this.session.digest()
  }

  drop (): void {
    this.session?.drop()
  }
}

/** Freed blocks' memory kept for the next ones: a few uploads' worth in flight */
const SPARE_BLOCKS = 16
const spareBlocks: ArrayBuffer[] = []

function newBlock (): Buffer {
  const spare = spareBlocks.pop()
  return spare === undefined ? Buffer.allocUnsafeSlow(DIGEST_BATCH) : Buffer.from(spare)
}

/**
 * Take back a block nobody reads any more (every backend has released it). Its memory moves to a
 * new `ArrayBuffer` kept for a later block, and the old one is detached, so that any view still
 * around sees zero bytes rather than a later block's data. Blocks of another size are only
 * detached.
 */
export function recycleBlock (block: Uint8Array): void {
  const buffer = block.buffer
  if (!(buffer instanceof ArrayBuffer) || buffer.detached) return
  if (buffer.byteLength === DIGEST_BATCH && spareBlocks.length < SPARE_BLOCKS) spareBlocks.push(buffer.transfer())
  else buffer.transfer(0)
}
