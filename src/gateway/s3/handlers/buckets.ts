/**
 * S3 bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation.
 * A bucket's backends travel in LocationConstraint (`ipfs`, `bittorrent`, `ipfs+bittorrent`) or
 * the x-atlas-backends header; a plain region name means the gateway's default backends.
 */
import { BACKEND_NAMES, type BackendName } from '../../../backends/backend.ts'
import { AtlasError } from '../../../core/errors.ts'
import { assertBucketName } from '../../../core/names.ts'
import { readXmlBody } from '../body.ts'
import { ownBucket, requireBucketName, requireSigned, type S3Context } from '../context.ts'
import { renderXml, text } from '../xml.ts'

const REGION_RE = /^[a-z]{2}(-[a-z]+)+-\d+$/

/** `ipfs+bittorrent`, `ipfs,bittorrent` or `ipfs bittorrent` as backend names; undefined when it is not such a list */
export function parseBackendList (value: string): BackendName[] | undefined {
  const names = value.split(/[+, ]+/).map((s) => s.trim().toLowerCase()).filter((s) => s.length > 0)
  if (names.length === 0 || !names.every((n) => (BACKEND_NAMES as readonly string[]).includes(n))) return undefined
  return [...new Set(names)] as BackendName[]
}

/** The location constraint that describes a set of backends */
export function locationOf (backends: BackendName[]): string {
  return BACKEND_NAMES.filter((b) => backends.includes(b)).join('+')
}

export async function listBuckets (ctx: S3Context) {
  const principal = requireSigned(ctx)
  const buckets = await ctx.deps.metadata.listBuckets(principal.accountId)
  const account = await ctx.deps.metadata.getAccount(principal.accountId)
  const xml = renderXml('ListAllMyBucketsResult', {
    Owner: { ID: principal.accountId, DisplayName: account?.name ?? principal.accountId },
    Buckets: buckets.length === 0 ? '' : { Bucket: buckets.map((b) => ({ Name: b.name, CreationDate: b.createdAt.toISOString(), BucketRegion: ctx.deps.config.s3.region })) }
  })
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}

export async function createBucket (ctx: S3Context) {
  const principal = requireSigned(ctx)
  const name = requireBucketName(ctx)
  assertBucketName(name)
  const config = await readXmlBody(ctx, 'CreateBucketConfiguration', { optional: true })
  const constraint = text(config?.LocationConstraint)?.trim() ?? ''
  const header = ctx.request.headers['x-atlas-backends']
  let backends: BackendName[] | undefined
  if (typeof header === 'string' && header !== '') {
    backends = parseBackendList(header)
    if (backends === undefined) throw new AtlasError('InvalidLocationConstraint', `x-atlas-backends must name backends among ${BACKEND_NAMES.join(', ')}`)
  } else if (constraint !== '') {
    backends = parseBackendList(constraint)
    if (backends === undefined && constraint !== ctx.deps.config.s3.region && !REGION_RE.test(constraint)) {
      throw new AtlasError('InvalidLocationConstraint', `The specified location-constraint is not valid: use ipfs, bittorrent or ipfs+bittorrent (or a region name for the default, ${locationOf(ctx.deps.config.defaultBackends as BackendName[])})`)
    }
  }
  backends ??= [...ctx.deps.config.defaultBackends] as BackendName[]
  const missing = backends.filter((b) => ctx.deps.objects.backend(b) === undefined)
  if (missing.length > 0) {
    throw new AtlasError('InvalidLocationConstraint', `The ${missing.join(', ')} backend is not enabled on this gateway`)
  }
  const acl = ctx.request.headers['x-amz-acl']
  if (acl !== undefined && acl !== 'private' && acl !== 'public-read') {
    throw new AtlasError('NotImplemented', `Atlas supports the canned ACLs private and public-read, not ${String(acl)}`)
  }
  await ctx.deps.metadata.createBucket({ name, ownerId: principal.accountId, backends, public: acl === 'public-read' })
  return ctx.reply.header('location', `/${name}`).send()
}

export async function headBucket (ctx: S3Context) {
  const bucket = await ownBucket(ctx)
  return ctx.reply
    .header('x-amz-bucket-region', ctx.deps.config.s3.region)
    .header('x-atlas-backends', locationOf(bucket.backends))
    .send()
}

export async function deleteBucket (ctx: S3Context) {
  const bucket = await ownBucket(ctx)
  await ctx.deps.objects.deleteBucket(bucket.name)
  return ctx.reply.code(204).send()
}

export async function getBucketLocation (ctx: S3Context) {
  const bucket = await ownBucket(ctx)
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${locationOf(bucket.backends)}</LocationConstraint>`
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}
