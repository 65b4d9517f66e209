/**
 * Stream helpers over async iterables of `Uint8Array`. No I/O here: callers bring the sources
 * (an HTTP request, a backend read) and the sinks.
 */
import { AbortedError, AtlasError } from './errors.ts'

/** Chunks a fan-out consumer may run ahead of the slowest one. */
export const FAN_OUT_QUEUE_CHUNKS = 4

/**
 * Feed one source to `n` consumers, reading it once. Each consumer receives every chunk in
 * order through a small bounded queue; the source is pulled only while every queue has room, so
 * the slowest consumer sets the pace and memory stays at a few chunks per consumer.
 *
 * A fan-out is all or nothing: a consumer that stops early, a source that throws or an abort
 * fails every consumer.
 */
export function fanOut (source: AsyncIterable<Uint8Array>, n: number, signal?: AbortSignal): Array<AsyncIterable<Uint8Array>> {
  if (n === 1) return [source]
  const queues = Array.from({ length: n }, () => new BoundedQueue(FAN_OUT_QUEUE_CHUNKS))
  let failed = false
  const fail = (err: Error): void => {
    if (failed) return
    failed = true
    for (const q of queues) q.fail(err)
  }
  const onAbort = (): void => { fail(new AbortedError()) }
  signal?.addEventListener('abort', onAbort, { once: true })

  let started = false
  const pump = async (): Promise<void> => {
    try {
      for await (const chunk of source) {
        if (failed) return
        await Promise.all(queues.map(async (q) => { await q.push(chunk) }))
      }
      for (const q of queues) q.end()
    } catch (err) {
      fail(err instanceof Error ? err : new Error(String(err)))
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  return queues.map((queue) => ({
    [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
      if (!started) {
        started = true
        void pump()
      }
      return {
        next: async () => await queue.shift(),
        return: async () => {
          if (!queue.ended) fail(new Error('A fan-out consumer stopped before the end of the stream'))
          return { done: true, value: undefined }
        }
      }
    }
  }))
}

/** A single-producer, single-consumer queue of bounded length with failure propagation. */
class BoundedQueue {
  private readonly items: Uint8Array[] = []
  private readonly capacity: number
  private error: Error | undefined
  private finished = false
  /** True once the consumer has seen the end of the stream */
  ended = false
  private wakeProducer: (() => void) | undefined
  private wakeConsumer: (() => void) | undefined

  constructor (capacity: number) {
    this.capacity = capacity
  }

  async push (chunk: Uint8Array): Promise<void> {
    while (this.items.length >= this.capacity && this.error === undefined) {
      await new Promise<void>((resolve) => { this.wakeProducer = resolve })
    }
    if (this.error !== undefined) throw this.error
    this.items.push(chunk)
    this.wakeConsumer?.()
  }

  end (): void {
    this.finished = true
    this.wakeConsumer?.()
  }

  fail (err: Error): void {
    this.error ??= err
    this.wakeConsumer?.()
    this.wakeProducer?.()
  }

  async shift (): Promise<IteratorResult<Uint8Array>> {
    while (this.items.length === 0 && !this.finished && this.error === undefined) {
      await new Promise<void>((resolve) => { this.wakeConsumer = resolve })
    }
    if (this.error !== undefined) throw this.error
    const item = this.items.shift()
    this.wakeProducer?.()
    if (item === undefined) {
      this.ended = true
      return { done: true, value: undefined }
    }
    return { done: false, value: item }
  }
}

/** Yield at most `length` bytes of the source, starting `offset` bytes in. */
export async function * slice (source: AsyncIterable<Uint8Array>, offset: number, length: number): AsyncGenerator<Uint8Array> {
  let skip = offset
  let left = length
  if (left <= 0) return
  for await (const chunk of source) {
    let view = chunk
    if (skip > 0) {
      if (view.byteLength <= skip) {
        skip -= view.byteLength
        continue
      }
      view = view.subarray(skip)
      skip = 0
    }
    if (view.byteLength >= left) {
      yield view.subarray(0, left)
      return
    }
    left -= view.byteLength
    yield view
  }
}

/** Collect a (small) iterable into one buffer. Only for bounded inputs: tests, JSON bodies. */
export async function collect (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, maxBytes = Number.POSITIVE_INFINITY): Promise<Uint8Array> {
  const chunks: Uint8Array[] = []
  let total = 0
  for await (const chunk of source) {
    total += chunk.byteLength
    if (total > maxBytes) throw new RangeError(`More than ${maxBytes} bytes`)
    chunks.push(chunk)
  }
  // one chunk (a block read in one piece) is returned as it is, without a copy
  return chunks.length === 1 ? chunks[0] as Uint8Array : Buffer.concat(chunks, total)
}

/**
 * Pass the source through, failing (instead of ending) when it carries more than `max` bytes or,
 * when `expected` is given, any other count than that.
 */
export async function * checkLength (source: AsyncIterable<Uint8Array>, expected: number | undefined, max: number): AsyncGenerator<Uint8Array> {
  let size = 0
  const limit = expected ?? max
  for await (const chunk of source) {
    size += chunk.byteLength
    if (size > limit) {
      throw expected === undefined
        ? new AtlasError('EntityTooLarge', `Body exceeds the limit of ${max} bytes`, { details: { limit: max } })
        : new AtlasError('IncompleteBody', `Body is longer than the ${expected} bytes announced`)
    }
    yield chunk
  }
  if (expected !== undefined && size !== expected) {
    throw new AtlasError('IncompleteBody', `Received ${size} of the ${expected} bytes announced`)
  }
}

/**
 * Continue an iteration whose first step was already taken (to see an error before committing
 * to a response): yield that step's value, then the rest of `iterator`, and close the iterator
 * when the consumer stops early.
 */
export async function * resume<T> (first: IteratorResult<T>, iterator: AsyncIterator<T>): AsyncGenerator<T, void, undefined> {
  try {
    if (first.done === true) return
    yield first.value
    for (;;) {
      const next = await iterator.next()
      if (next.done === true) return
      yield next.value
    }
  } finally {
    await iterator.return?.()
  }
}
