/**
 * HTTP Range parsing (RFC 9110 section 14) for single byte ranges. Several ranges in one header
 * are answered with the whole representation, which the RFC allows and S3 does too.
 */
import { AtlasError } from './errors.ts'

export interface ByteRange {
  /** First byte, inclusive */
  start: number
  /** Last byte, inclusive */
  end: number
}

/**
 * Resolve a Range header against a representation of `size` bytes.
 *
 * @returns the range to send, or undefined to send the whole representation
 * @throws AtlasError InvalidRange when the range cannot be satisfied (416)
 */
export function parseRange (header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined
  const match = /^\s*bytes\s*=\s*(.+)$/i.exec(header)
  if (match === null) return undefined // unknown unit: ignore, as the RFC says
  const specs = (match[1] as string).split(',').map((s) => s.trim())
  if (specs.length !== 1) return undefined
  const spec = specs[0] as string
  const m = /^(\d*)\s*-\s*(\d*)$/.exec(spec)
  if (m === null || (m[1] === '' && m[2] === '')) return undefined
  let start: number
  let end: number
  if (m[1] === '') {
    // suffix range: the last N bytes
    const suffix = Number(m[2])
    if (suffix === 0) throw unsatisfiable(size)
    start = Math.max(0, size - suffix)
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
    if (m[2] !== '' && Number(m[2]) < start) return undefined // invalid range: ignore the header
  }
  if (start >= size || size === 0) throw unsatisfiable(size)
  return { start, end }
}

function unsatisfiable (size: number): AtlasError {
  return new AtlasError('InvalidRange', 'The requested range is not satisfiable', { details: { size } })
}
