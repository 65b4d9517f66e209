/**
 * Reading request headers for authentication. Node hands headers over as a record with
 * lowercased names whose values are a string (repeated headers joined by ", ", or repeats
 * dropped for the headers Node deduplicates) or, for `headersDistinct` and a few names, an array.
 * These helpers accept both shapes, so the wiring may pass either `request.headers` or
 * `request.raw.headersDistinct`.
 */
import { AtlasError, type ErrorCode } from '../../../core/errors.ts'

/** Request headers as Node exposes them: lowercased names. */
export type RequestHeaders = Record<string, string | string[] | undefined>

/** Every value of header `name` (lowercase), in arrival order; empty when absent. */
export function headerValues (headers: RequestHeaders, name: string): string[] {
  const value = headers[name]
  if (value === undefined) return []
  return typeof value === 'string' ? [value] : value
}

/**
 * The value of a header that must appear at most once. A repeated control header (two dates,
 * two payload hashes) is ambiguous: which one was signed? So it is refused rather than guessed.
 */
export function singleHeader (headers: RequestHeaders, name: string, code: ErrorCode = 'InvalidArgument'): string | undefined {
  const values = headerValues(headers, name)
  if (values.length === 0) return undefined
  if (values.length > 1) throw new AtlasError(code, `The ${name} header must be sent only once.`)
  return values[0]
}

/** A copy of `headers` with lowercased names, for callers that cannot promise Node's casing. */
export function lowercaseHeaders (headers: RequestHeaders): RequestHeaders {
  let lower = true
  for (const name of Object.keys(headers)) {
    if (name !== name.toLowerCase()) { lower = false; break }
  }
  if (lower) return headers
  const out: RequestHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    const key = name.toLowerCase()
    const previous = out[key]
    const values = typeof value === 'string' ? [value] : value
    out[key] = previous === undefined ? values : [...(typeof previous === 'string' ? [previous] : previous), ...values]
  }
  return out
}
