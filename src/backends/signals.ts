/**
 * What every backend does with get ranges and abort signals, in one place.
 */
import { AbortedError, AtlasError, isAbortError } from '../core/errors.ts'
import type { BackendGetOptions } from './backend.ts'

/** Validate a get's offset and length. @throws AtlasError InvalidArgument */
export function checkRange (options: BackendGetOptions): { offset: number, length: number | undefined } {
  const offset = options.offset ?? 0
  const length = options.length
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new AtlasError('InvalidArgument', `offset must be a non-negative integer, not ${offset}`)
  }
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new AtlasError('InvalidArgument', `length must be a non-negative integer, not ${length}`)
  }
  return { offset, length }
}

/** A signal that fires when the caller's does or the backend stops. */
export function linkSignal (stopping: AbortSignal, signal: AbortSignal | undefined): AbortSignal {
  return signal === undefined ? stopping : AbortSignal.any([signal, stopping])
}

/** Aborts become AbortedError; AtlasErrors and everything else pass through unchanged. */
export function abortToAtlasError (err: unknown, signal: AbortSignal): unknown {
  if (err instanceof AtlasError) return err
  if (signal.aborted || isAbortError(err)) {
    const reason: unknown = signal.reason
    if (reason instanceof AbortedError) return reason
    return new AbortedError(undefined, { cause: err })
  }
  return err
}

/**
 * Pass `source` through and reject as soon as `signal` fires, even while the source is stalled
 * waiting for bytes; `onChunk` sees every chunk's size.
 */
export async function * abortable (source: AsyncIterable<Uint8Array>, signal: AbortSignal, onChunk?: (bytes: number) => void): AsyncGenerator<Uint8Array, void, undefined> {
  const iterator = source[Symbol.asyncIterator]()
  let finished = false
  try {
    while (true) {
      const next = await raceAbort(iterator.next(), signal)
      if (next.done === true) {
        finished = true
        return
      }
      onChunk?.(next.value.byteLength)
      yield next.value
    }
  } finally {
    if (!finished) {
      // don't await: a stalled source would hold up the abort
      Promise.resolve(iterator.return?.()).catch(() => {})
    }
  }
}

/** Settle with `promise`, or reject with the signal's reason as soon as it fires. */
export async function raceAbort<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted()
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        onAbort = () => { reject(signal.reason) }
        signal.addEventListener('abort', onAbort, { once: true })
      })
    ])
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
  }
}
