/**
 * JSON shapes of the REST API (openapi.yaml is their contract).
 */
import type { Bucket, Content, ObjectRecord } from '../../metadata/store.ts'
import { userMetadata } from '../../objects/object-metadata.ts'

export interface Addresses {
  ipfs?: string
  btih?: string
  magnet?: string
  torrent?: string
}

export function addressesOf (content: Content): Addresses {
  const out: Addresses = {}
  for (const location of content.locations) {
    if (location.backend === 'ipfs') out.ipfs = location.address
    if (location.backend === 'bittorrent') {
      out.btih = location.address
      if (location.extra.magnet !== undefined) out.magnet = location.extra.magnet
    }
  }
  return out
}

/** Response headers naming a content's addresses: x-atlas-content-id, x-atlas-cid, x-atlas-btih */
export function addressHeaders (content: Content): Record<string, string> {
  const addresses = addressesOf(content)
  const headers: Record<string, string> = { 'x-atlas-content-id': content.id }
  if (addresses.ipfs !== undefined) headers['x-atlas-cid'] = addresses.ipfs
  if (addresses.btih !== undefined) headers['x-atlas-btih'] = addresses.btih
  return headers
}

export function bucketView (bucket: Bucket): Record<string, unknown> {
  return {
    name: bucket.name,
    backends: bucket.backends,
    public: bucket.public,
    createdAt: bucket.createdAt.toISOString()
  }
}

export function objectView (object: ObjectRecord, content: Content): Record<string, unknown> {
  return {
    bucket: object.bucket,
    key: object.key,
    size: object.size,
    etag: object.etag,
    contentType: object.contentType,
    contentId: content.id,
    addresses: addressesOf(content),
    lastModified: object.createdAt.toISOString(),
    metadata: userMetadata(object.metadata)
  }
}

export function objectSummaryView (object: ObjectRecord): Record<string, unknown> {
  return {
    key: object.key,
    size: object.size,
    etag: object.etag,
    contentType: object.contentType,
    contentId: object.contentId,
    lastModified: object.createdAt.toISOString()
  }
}

/** Opaque listing cursors: base64url of the last key or prefix returned */
export function encodeCursor (next: string): string {
  return Buffer.from(next, 'utf8').toString('base64url')
}

export function decodeCursor (cursor: string): string {
  return Buffer.from(cursor, 'base64url').toString('utf8')
}
