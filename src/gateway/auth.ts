/**
 * Who is calling: REST callers present `Authorization: Bearer <token>`; the S3 API (its own
 * issue) verifies SigV4 with the same access keys. A principal is resolved once per request.
 */
import type { FastifyRequest } from 'fastify'
import { keyForToken } from '../accounts/credentials.ts'
import { AtlasError } from '../core/errors.ts'
import type { Bucket, MetadataStore } from '../metadata/store.ts'

export interface Principal {
  accountId: string
  accessKeyId: string
  /** The key's default delivery lane, if it has one */
  defaultLane?: string
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by authentication; null for anonymous requests */
    principal: Principal | null
  }
}

/**
 * Resolve the bearer token, if any. A malformed or unknown token is an error even on routes that
 * allow anonymous reads: a client that sends credentials means to use them.
 */
export async function bearerPrincipal (request: FastifyRequest, metadata: MetadataStore): Promise<Principal | null> {
  const header = request.headers.authorization
  if (header === undefined || header === '') return null
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (match === null) throw new AtlasError('InvalidToken', 'Authorization must be "Bearer <token>"')
  const key = await keyForToken(metadata, match[1] as string)
  if (key === null) throw new AtlasError('InvalidToken', 'The token is unknown or has been revoked')
  return { accountId: key.accountId, accessKeyId: key.accessKeyId, ...(key.defaultLane === undefined ? {} : { defaultLane: key.defaultLane }) }
}

export function requirePrincipal (request: FastifyRequest): Principal {
  if (request.principal === null) throw new AtlasError('Unauthorized', 'This request needs "Authorization: Bearer <token>"')
  return request.principal
}

/** The bucket, if the principal owns it. Another account's bucket is a 403, a missing one a 404. */
export async function ownedBucket (metadata: MetadataStore, principal: Principal, name: string): Promise<Bucket> {
  const bucket = await metadata.getBucket(name)
  if (bucket === null) throw new AtlasError('NoSuchBucket', `The bucket ${name} does not exist`)
  if (bucket.ownerId !== principal.accountId) throw new AtlasError('AccessDenied', `The bucket ${name} belongs to another account`)
  return bucket
}

/** The bucket, if the principal may read it: its owner, or anyone when it is public. */
export async function readableBucket (metadata: MetadataStore, principal: Principal | null, name: string): Promise<Bucket> {
  const bucket = await metadata.getBucket(name)
  if (bucket === null) throw new AtlasError('NoSuchBucket', `The bucket ${name} does not exist`)
  if (bucket.public || (principal !== null && bucket.ownerId === principal.accountId)) return bucket
  if (principal === null) throw new AtlasError('Unauthorized', `The bucket ${name} is private: send a token`)
  throw new AtlasError('AccessDenied', `The bucket ${name} belongs to another account`)
}
