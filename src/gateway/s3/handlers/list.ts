/**
 * ListObjects (v1) and ListObjectsV2: prefix, delimiter, max-keys, marker / start-after /
 * continuation-token, encoding-type=url, CommonPrefixes. Keys come back in bytewise order.
 */
import { AtlasError } from '../../../core/errors.ts'
import type { ListObjectsResult, ObjectRecord } from '../../../metadata/store.ts'
import { readBucket, type S3Context } from '../context.ts'
import { renderXml } from '../xml.ts'

export const MAX_KEYS = 1000

function maxKeys (query: URLSearchParams): number {
  const raw = query.get('max-keys')
  if (raw === null || raw === '') return MAX_KEYS
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n)) throw new AtlasError('InvalidArgument', 'Provided max-keys not an integer or within integer range')
  return Math.min(n, MAX_KEYS)
}

function encoder (query: URLSearchParams): (s: string) => string {
  const type = query.get('encoding-type')
  if (type === null) return (s) => s
  if (type !== 'url') throw new AtlasError('InvalidArgument', 'Invalid Encoding Method specified in Request')
  return (s) => encodeURIComponent(s).replace(/%2F/g, '/')
}

async function page (ctx: S3Context, after: string | undefined, limit: number): Promise<{ bucket: string, ownerId: string, prefix: string, delimiter: string | undefined, result: ListObjectsResult }> {
  const bucket = await readBucket(ctx)
  const prefix = ctx.query.get('prefix') ?? ''
  const delimiter = ctx.query.get('delimiter') ?? undefined
  const result = limit === 0
    ? { objects: [], commonPrefixes: [], truncated: false }
    : await ctx.deps.metadata.listObjects({ bucket: bucket.name, prefix, delimiter: delimiter === '' ? undefined : delimiter, after, limit })
  return { bucket: bucket.name, ownerId: bucket.ownerId, prefix, delimiter: delimiter === '' ? undefined : delimiter, result }
}

/** Contents entries; `owner` is the bucket owner's id when the listing shows owners */
function contents (objects: ObjectRecord[], enc: (s: string) => string, owner: string | undefined): Array<Record<string, unknown>> {
  return objects.map((o) => ({
    Key: enc(o.key),
    LastModified: o.createdAt.toISOString(),
    ETag: `"${o.etag}"`,
    Size: o.size,
    ...(owner === undefined ? {} : { Owner: { ID: owner, DisplayName: owner } }),
    StorageClass: 'STANDARD'
  }))
}

export async function listObjectsV2 (ctx: S3Context) {
  const enc = encoder(ctx.query)
  const limit = maxKeys(ctx.query)
  const token = ctx.query.get('continuation-token')
  const startAfter = ctx.query.get('start-after') ?? undefined
  let after = startAfter
  if (token !== null) {
    if (token === '') throw new AtlasError('InvalidArgument', 'The continuation token provided is incorrect')
    after = Buffer.from(token, 'base64url').toString('utf8')
  }
  const { bucket, ownerId, prefix, delimiter, result } = await page(ctx, after === '' ? undefined : after, limit)
  const owner = ctx.query.get('fetch-owner') === 'true' ? ownerId : undefined
  const xml = renderXml('ListBucketResult', {
    Name: bucket,
    Prefix: enc(prefix),
    ...(delimiter === undefined ? {} : { Delimiter: enc(delimiter) }),
    MaxKeys: limit,
    KeyCount: result.objects.length + result.commonPrefixes.length,
    IsTruncated: result.truncated,
    ...(token === null ? {} : { ContinuationToken: token }),
    ...(result.truncated && result.next !== undefined ? { NextContinuationToken: Buffer.from(result.next, 'utf8').toString('base64url') } : {}),
    ...(startAfter === undefined ? {} : { StartAfter: enc(startAfter) }),
    ...(ctx.query.get('encoding-type') === 'url' ? { EncodingType: 'url' } : {}),
    Contents: contents(result.objects, enc, owner),
    CommonPrefixes: result.commonPrefixes.map((p) => ({ Prefix: enc(p) }))
  })
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}

export async function listObjects (ctx: S3Context) {
  const enc = encoder(ctx.query)
  const limit = maxKeys(ctx.query)
  const marker = ctx.query.get('marker') ?? ''
  const { bucket, ownerId: owner, prefix, delimiter, result } = await page(ctx, marker === '' ? undefined : marker, limit)
  const xml = renderXml('ListBucketResult', {
    Name: bucket,
    Prefix: enc(prefix),
    Marker: enc(marker),
    ...(result.truncated && result.next !== undefined && delimiter !== undefined ? { NextMarker: enc(result.next) } : {}),
    MaxKeys: limit,
    ...(delimiter === undefined ? {} : { Delimiter: enc(delimiter) }),
    IsTruncated: result.truncated,
    ...(ctx.query.get('encoding-type') === 'url' ? { EncodingType: 'url' } : {}),
    Contents: contents(result.objects, enc, owner),
    CommonPrefixes: result.commonPrefixes.map((p) => ({ Prefix: enc(p) }))
  })
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}
