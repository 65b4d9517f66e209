/**
 * Bucket and key naming rules. Buckets follow S3's general-purpose bucket rules; keys follow S3's
 * (1 to 1024 bytes of UTF-8) plus what a gateway that also serves paths must refuse: `.` and `..`
 * segments (path traversal), control characters and empty segments at the start.
 */
import { AtlasError } from './errors.ts'

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/
const IPV4_RE = /^\d{1,3}(\.\d{1,3}){3}$/
const RESERVED_PREFIXES = ['xn--', 'sthree-', 'amzn-s3-demo-']
const RESERVED_SUFFIXES = ['-s3alias', '--ol-s3', '.mrap', '--x-s3', '--table-s3']

/** Why `name` is not a valid bucket name, or undefined when it is. */
export function bucketNameProblem (name: string): string | undefined {
  if (name.length < 3 || name.length > 63) return 'Bucket names are 3 to 63 characters long'
  if (!BUCKET_RE.test(name)) return 'Bucket names use lowercase letters, digits, dots and hyphens, and start and end with a letter or digit'
  if (name.includes('..')) return 'Bucket names must not contain two adjacent dots'
  if (name.includes('.-') || name.includes('-.')) return 'Bucket names must not have a dot next to a hyphen'
  if (IPV4_RE.test(name)) return 'Bucket names must not look like an IP address'
  if (RESERVED_PREFIXES.some((p) => name.startsWith(p))) return 'Bucket name uses a reserved prefix'
  if (RESERVED_SUFFIXES.some((s) => name.endsWith(s))) return 'Bucket name uses a reserved suffix'
  if (RESERVED_NAMES.has(name)) return 'Bucket name is reserved for a gateway route'
  return undefined
}

/**
 * Names that collide with the gateway's own path prefixes, so that path-style S3 requests for
 * every bucket stay unambiguous.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(['ipfs', 'ipns', 'announce', 'healthz', 'readyz', 'metrics', 'scrape'])

/** @throws AtlasError InvalidBucketName */
export function assertBucketName (name: string): void {
  const problem = bucketNameProblem(name)
  if (problem !== undefined) throw new AtlasError('InvalidBucketName', `${problem}: ${JSON.stringify(name.slice(0, 80))}`)
}

/** Longest key in UTF-8 bytes (S3's limit) */
export const MAX_KEY_BYTES = 1024

// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/

/** Why `key` is not a valid object key, or undefined when it is. */
export function objectKeyProblem (key: string): string | undefined {
  if (key.length === 0) return 'Object keys must not be empty'
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) return `Object keys are at most ${MAX_KEY_BYTES} bytes of UTF-8`
  if (CONTROL_RE.test(key)) return 'Object keys must not contain control characters'
  if (key.isWellFormed?.() === false) return 'Object keys must be valid UTF-8'
  for (const segment of key.split('/')) {
    if (segment === '.' || segment === '..') return 'Object keys must not contain "." or ".." path segments'
  }
  if (key.startsWith('/')) return 'Object keys must not start with "/"'
  return undefined
}

/** @throws AtlasError InvalidObjectKey */
export function assertObjectKey (key: string): void {
  const problem = objectKeyProblem(key)
  if (problem === undefined) return
  throw new AtlasError(Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES ? 'KeyTooLong' : 'InvalidObjectKey', problem)
}
