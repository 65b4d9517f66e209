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
