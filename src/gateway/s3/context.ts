/**
 * What every S3 handler receives: the request, the matched operation, the bucket and key the
 * request addresses, the caller (null when anonymous) and how the payload was signed.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { AtlasError } from '../../core/errors.ts'
import type { Bucket } from '../../metadata/store.ts'
import type { Principal } from '../auth.ts'
import type { GatewayDeps } from '../server.ts'
import type { VerifiedAuth } from './auth/sigv4.ts'

export interface S3Context {
  request: FastifyRequest
  reply: FastifyReply
  deps: GatewayDeps
  operation: string
  bucketName: string | undefined
  key: string | undefined
  query: URLSearchParams
  principal: Principal | null
  auth: VerifiedAuth | null
}

export type S3Handler = (ctx: S3Context) => Promise<FastifyReply>

export function requireBucketName (ctx: S3Context): string {
  if (ctx.bucketName === undefined) throw new AtlasError('InvalidRequest', 'This operation needs a bucket')
  return ctx.bucketName
}

export function requireKey (ctx: S3Context): string {
  if (ctx.key === undefined) throw new AtlasError('InvalidRequest', 'This operation needs an object key')
  return ctx.key
}

export function requireSigned (ctx: S3Context): Principal {
  if (ctx.principal === null) throw new AtlasError('AccessDenied', 'Access Denied')
  return ctx.principal
}

/** The bucket when the caller owns it (writes, and reads of private buckets). */
export async function ownBucket (ctx: S3Context): Promise<Bucket> {
  const name = requireBucketName(ctx)
  const bucket = await ctx.deps.metadata.getBucket(name)
  if (bucket === null) throw new AtlasError('NoSuchBucket', 'The specified bucket does not exist', { details: { BucketName: name } })
  if (ctx.principal === null || bucket.ownerId !== ctx.principal.accountId) throw new AtlasError('AccessDenied', 'Access Denied')
  return bucket
}

/** The bucket when the caller may read it: its owner, or anyone when it is public. */
export async function readBucket (ctx: S3Context): Promise<Bucket> {
  const name = requireBucketName(ctx)
  const bucket = await ctx.deps.metadata.getBucket(name)
  if (bucket === null) throw new AtlasError('NoSuchBucket', 'The specified bucket does not exist', { details: { BucketName: name } })
  if (bucket.public || (ctx.principal !== null && bucket.ownerId === ctx.principal.accountId)) return bucket
  throw new AtlasError('AccessDenied', 'Access Denied')
}
