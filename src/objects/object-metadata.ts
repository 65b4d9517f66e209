/**
 * What an object keeps besides its bytes: user metadata (S3's x-amz-meta-*, REST's
 * x-atlas-meta-*) and the response headers that S3 stores with an object and sends back.
 * Both live in one string map: user metadata under `meta:<lowercase name>`, headers under their
 * lowercase names.
 */
import { AtlasError } from '../core/errors.ts'

/** Headers stored at upload and returned on download */
export const STORED_HEADERS = ['cache-control', 'content-disposition', 'content-encoding', 'content-language', 'expires'] as const

/** S3's limit on user metadata: 2 KiB of names and values */
export const MAX_USER_METADATA_BYTES = 2048

const META = 'meta:'

/**
 * Collect user metadata (headers that start with `prefix`) and stored headers from a request.
 * @throws AtlasError InvalidArgument when user metadata exceeds 2 KiB
 */
export function metadataFromHeaders (headers: Record<string, string | string[] | undefined>, prefix: string): Record<string, string> {
  const out: Record<string, string> = {}
  let userBytes = 0
  for (const [rawName, rawValue] of Object.entries(headers)) {
    if (rawValue === undefined) continue
    const name = rawName.toLowerCase()
    const value = Array.isArray(rawValue) ? rawValue.join(',') : rawValue
    if (name.startsWith(prefix)) {
      const metaName = name.slice(prefix.length)
      if (metaName.length === 0) continue
      userBytes += Buffer.byteLength(metaName) + Buffer.byteLength(value)
      out[META + metaName] = value
    } else if ((STORED_HEADERS as readonly string[]).includes(name)) {
      out[name] = value
    }
  }
  if (userBytes > MAX_USER_METADATA_BYTES) {
    throw new AtlasError('InvalidArgument', `User metadata is limited to ${MAX_USER_METADATA_BYTES} bytes`)
  }
  return out
}

/** Response headers for an object's metadata, user metadata under `prefix`. */
export function headersFromMetadata (metadata: Record<string, string>, prefix: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(metadata)) {
    if (name.startsWith(META)) out[prefix + name.slice(META.length)] = value
    else if ((STORED_HEADERS as readonly string[]).includes(name)) out[name] = value
  }
  return out
}

/** User metadata only, without the prefix */
export function userMetadata (metadata: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(metadata)) {
    if (name.startsWith(META)) out[name.slice(META.length)] = value
  }
  return out
}
