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
/** Copy buffers kept for reuse: the in-flight bound's worth, and a few more */
const SPARE_BUFFERS = 8

export interface Digests {
  md5: string
  sha256: string
}

interface Reply {
  id: number
  op: 'ack' | 'done'
  bytes?: number
  buf?: ArrayBuffer
  md5?: string
  sha256?: string
}

interface SessionState {
  inFlight: number
  wake: (() => void) | undefined
  done: ((d: Digests) => void) | undefined
  fail: ((err: Error) => void) | undefined
}

export class DigestPool {
  private readonly size: number
  private readonly workers: Worker[] = []
  private readonly sessions = new Map<number, SessionState>()
  private nextId = 1
  private nextWorker = 0
  private closed = false
  /** Buffers the workers handed back, for the next copies */
  private readonly spare: Buffer[] = []

  constructor (size = DIGEST_WORKERS) {
    this.size = size
  }

  private worker (): Worker {
    if (this.closed) throw new AtlasError('ServiceUnavailable', 'The server is shutting down')
    if (this.workers.length < this.size) {
      const worker = new Worker(new URL('./digest-worker.mjs', import.meta.url))
      worker.unref()
      worker.on('message', (reply: Reply) => { this.onReply(reply) })
      worker.on('error', (err) => { this.onWorkerError(worker, err) })
      this.workers.push(worker)
      return worker
    }
    const worker = this.workers[this.nextWorker % this.workers.length] as Worker
    this.nextWorker++
    return worker
  }

  private onReply (reply: Reply): void {
    const state = this.sessions.get(reply.id)
    if (state === undefined) return
    if (reply.op === 'ack') {
      if (reply.buf !== undefined && this.spare.length < SPARE_BUFFERS) this.spare.push(Buffer.from(reply.buf))
      state.inFlight -= reply.bytes ?? 0
      state.wake?.()
    } else {
      this.sessions.delete(reply.id)
      state.done?.({ md5: reply.md5 as string, sha256: reply.sha256 as string })
    }
  }

  private onWorkerError (worker: Worker, err: Error): void {
    this.workers.splice(this.workers.indexOf(worker), 1)
    for (const state of this.sessions.values()) state.fail?.(err)
  }

  /** Start digesting one body. */
  session (): DigestSession {
    const worker = this.worker()
    const id = this.nextId++
    const state: SessionState = { inFlight: 0, wake: undefined, done: undefined, fail: undefined }
    this.sessions.set(id, state)
    return new DigestSession(id, worker, state, () => { this.sessions.delete(id) }, () => this.spareBuffer())
  }

  /** A transferable buffer of {@link DIGEST_BATCH} bytes (its ArrayBuffer is its own) */
  spareBuffer (): Buffer {
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(DIGEST_BATCH)
  }

  async close (): Promise<void> {
    this.closed = true
    await Promise.all(this.workers.splice(0).map(async (w) => await w.terminate()))
  }
}

export class DigestSession {
  private readonly id: number
  private readonly worker: Worker
  private readonly state: SessionState
  private readonly forget: () => void
  private readonly spare: () => Buffer
  private error: Error | undefined

  constructor (id: number, worker: Worker, state: SessionState, forget: () => void, spare: () => Buffer) {
    this.id = id
    this.spare = spare
    this.worker = worker
    this.state = state
    this.forget = forget
    state.fail = (err) => { this.error = err; state.wake?.() }
  }

  /** Hash a block (copied: the caller keeps it). */
  async update (batch: Uint8Array): Promise<void> {
    if (this.error !== undefined) throw this.error
    // the worker gets its own copy, in a buffer that travels there and back (moved, not
    // cloned) and is reused: the block itself stays with the backends, whose lifetime for it
    // is theirs to decide
    const copy = this.spare()
    copy.set(batch)
    const buf = copy.buffer as ArrayBuffer
    this.state.inFlight += batch.byteLength
    this.worker.postMessage({ id: this.id, op: 'update', buf, offset: 0, length: batch.byteLength }, [buf])
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
    this.worker.postMessage({ id: this.id, op: 'end' })
    return await result
  }

  /** Forget the session (an upload that failed). */
  drop (): void {
    this.forget()
    this.worker.postMessage({ id: this.id, op: 'drop' })
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
  private batch: Buffer
  private filled = 0

  constructor (pool: DigestPool) {
    this.pool = pool
    this.batch = newBlock()
  }

  /** Add bytes; returns the blocks they completed, each already handed to the worker. */
  async push (chunk: Uint8Array): Promise<Buffer[]> {
    const full: Buffer[] = []
    let offset = 0
    while (offset < chunk.byteLength) {
      const n = Math.min(chunk.byteLength - offset, DIGEST_BATCH - this.filled)
      this.batch.set(chunk.subarray(offset, offset + n), this.filled)
      this.filled += n
      offset += n
      if (this.filled === DIGEST_BATCH) {
        const block = this.batch
        this.batch = newBlock()
        this.filled = 0
        this.session ??= this.pool.session()
        await this.session.update(block)
        full.push(block)
      }
    }
    return full
  }

  /** The last, partial block (undefined when the stream ended on a block boundary). */
  rest (): Buffer | undefined {
    return this.filled === 0 ? undefined : this.batch.subarray(0, this.filled)
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

function newBlock (): Buffer {
  return Buffer.allocUnsafeSlow(DIGEST_BATCH)
}
