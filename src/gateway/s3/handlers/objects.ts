/**
 * S3 object operations on single objects: PutObject, GetObject, HeadObject, DeleteObject,
 * DeleteObjects, CopyObject.
 */
import { AtlasError } from '../../../core/errors.ts'
import { objectKeyProblem } from '../../../core/names.ts'
import type { ObjectRecord } from '../../../metadata/store.ts'
import { headersFromMetadata, metadataFromHeaders } from '../../../objects/object-metadata.ts'
import type { StoredObject } from '../../../objects/object-store.ts'
import { requestSignal } from '../../http.ts'
import { addressHeaders } from '../../rest/views.ts'
import { deliveryFor } from '../../delivery.ts'
import { checkConditions, sendContent } from '../../send-content.ts'
import { parseContentMd5 } from '../auth/payload.ts'
import { s3Body, readXmlBody } from '../body.ts'
import { ownBucket, readBucket, requireKey, type S3Context } from '../context.ts'
import { parseTagging, tagsHeaderCount } from './tagging.ts'
import { renderXml, text } from '../xml.ts'

/** User metadata headers on the S3 API */
export const S3_META_PREFIX = 'x-amz-meta-'

/** Response headers that a signed GetObject may override with response-* query parameters */
const OVERRIDES: Record<string, string> = {
  'response-content-type': 'content-type',
  'response-content-language': 'content-language',
  'response-expires': 'expires',
  'response-cache-control': 'cache-control',
  'response-content-disposition': 'content-disposition',
  'response-content-encoding': 'content-encoding'
}

/** Headers every S3 object response carries: the addresses, plus x-amz-meta-cid as Filebase sends it */
export function s3AddressHeaders (stored: StoredObject): Record<string, string> {
  const headers = addressHeaders(stored.content)
  const cid = headers['x-atlas-cid']
  return cid === undefined ? headers : { ...headers, 'x-amz-meta-cid': cid }
}

function checksumHeaders (object: ObjectRecord): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [algorithm, value] of Object.entries(object.checksums ?? {})) out[`x-amz-checksum-${algorithm.toLowerCase()}`] = value
  return out
}

/** The metadata map of an upload: x-amz-meta-*, stored headers, minus aws-chunked from Content-Encoding */
export function uploadMetadata (ctx: S3Context): Record<string, string> {
  const metadata = metadataFromHeaders(ctx.request.headers, S3_META_PREFIX)
  const encoding = metadata['content-encoding']
  if (encoding !== undefined) {
    const rest = encoding.split(',').map((s) => s.trim()).filter((s) => s !== '' && s.toLowerCase() !== 'aws-chunked')
    if (rest.length === 0) delete metadata['content-encoding']
    else metadata['content-encoding'] = rest.join(', ')
  }
  return metadata
}

export async function putObject (ctx: S3Context) {
  const key = requireKey(ctx)
  const bucket = await ownBucket(ctx)
  const headers = ctx.request.headers
  const expectedMd5 = headers['content-md5'] === undefined ? undefined : parseContentMd5(String(headers['content-md5']))
  const tags = typeof headers['x-amz-tagging'] === 'string' ? parseTagging(headers['x-amz-tagging']) : undefined
  const { body, length, checksums } = s3Body(ctx)
  if (length === undefined && headers['transfer-encoding'] === undefined) {
    throw new AtlasError('MissingContentLength', 'You must provide the Content-Length HTTP header.')
  }
  const stored = await ctx.deps.objects.putObject({
    bucket,
    key,
    body,
    expectedSize: length,
    expectedMd5,
    contentType: headers['content-type'] ?? undefined,
    metadata: uploadMetadata(ctx),
    checksums: () => checksums.values,
    tags,
    signal: requestSignal(ctx.request, ctx.reply)
  })
  return ctx.reply
    .header('etag', `"${stored.object.etag}"`)
    .headers(s3AddressHeaders(stored))
    .headers(checksumHeaders(stored.object))
    .send()
}

async function readObject (ctx: S3Context) {
  const key = requireKey(ctx)
  const bucket = await readBucket(ctx)
  if (ctx.query.has('partNumber')) throw new AtlasError('NotImplemented', 'GetObject by partNumber is not implemented')
  const stored = await ctx.deps.objects.getObject(bucket.name, key)
  const headers: Record<string, string> = {
    ...s3AddressHeaders(stored),
    ...headersFromMetadata(stored.object.metadata, S3_META_PREFIX),
    // whole-object checksums describe whole responses only, never a range of one
    ...(ctx.request.headers['x-amz-checksum-mode'] === 'ENABLED' && ctx.request.headers.range === undefined ? checksumHeaders(stored.object) : {})
  }
  const tagCount = tagsHeaderCount(stored.object)
  if (tagCount !== undefined) headers['x-amz-tagging-count'] = tagCount
  let contentType = stored.object.contentType
  for (const [param, header] of Object.entries(OVERRIDES)) {
    const value = ctx.query.get(param)
    if (value === null) continue
    if (ctx.principal === null) throw new AtlasError('InvalidRequest', 'Request specific response headers cannot be used for anonymous GET requests.')
    if (header === 'content-type') contentType = value
    else headers[header] = value
  }
  return await sendContent(ctx.request, ctx.reply, ctx.deps.objects, {
    content: stored.content,
    etag: `"${stored.object.etag}"`,
    contentType,
    lastModified: stored.object.createdAt,
    headers,
    delivery: deliveryFor(ctx.request, ctx.deps, ctx.principal?.accountId ?? bucket.ownerId, { bucket: bucket.name, key })
  })
}

export const getObject = readObject
export const headObject = readObject

export async function deleteObject (ctx: S3Context) {
  const key = requireKey(ctx)
  const bucket = await ownBucket(ctx)
  // S3 answers 204 whether or not the key existed
  await ctx.deps.objects.deleteObject(bucket.name, key)
  return ctx.reply.code(204).send()
}

export async function deleteObjects (ctx: S3Context) {
  const bucket = await ownBucket(ctx)
  const doc = await readXmlBody(ctx, 'Delete')
  const objects = (doc?.Object ?? []) as Array<Record<string, unknown>>
  if (!Array.isArray(objects) || objects.length === 0) throw new AtlasError('MalformedXML', 'The Delete document needs at least one Object')
  if (objects.length > 1000) throw new AtlasError('MalformedXML', 'A Delete document names at most 1000 objects')
  const quiet = text(doc?.Quiet)?.trim().toLowerCase() === 'true'
  const deleted: Array<Record<string, unknown>> = []
  const errors: Array<Record<string, unknown>> = []
  for (const entry of objects) {
    const key = text(entry.Key)
    if (key === undefined || key === '') throw new AtlasError('MalformedXML', 'Every Object needs a Key')
    const problem = objectKeyProblem(key)
    if (problem !== undefined) {
      errors.push({ Key: key, Code: 'InvalidArgument', Message: problem })
      continue
    }
    try {
      await ctx.deps.objects.deleteObject(bucket.name, key)
      if (!quiet) deleted.push({ Key: key })
    } catch (err) {
      const e = err instanceof AtlasError ? err : new AtlasError('InternalError', 'We encountered an internal error. Please try again.')
      errors.push({ Key: key, Code: e.code === 'InternalError' ? 'InternalError' : e.code, Message: e.message })
    }
  }
  const xml = renderXml('DeleteResult', { Deleted: deleted, Error: errors })
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}

/** Parse x-amz-copy-source: `bucket/key` or `/bucket/key`, URL-encoded, optional ?versionId=null */
export function parseCopySource (value: string): { bucket: string, key: string } {
  let source = value
  const q = source.indexOf('?')
  if (q !== -1) {
    const params = new URLSearchParams(source.slice(q + 1))
    const version = params.get('versionId')
    if (version !== null && version !== 'null') throw new AtlasError('NotImplemented', 'Atlas buckets are not versioned')
    source = source.slice(0, q)
  }
  try {
    source = decodeURIComponent(source)
  } catch {
    throw new AtlasError('InvalidArgument', 'Invalid copy source encoding')
  }
  source = source.replace(/^\//, '')
  const slash = source.indexOf('/')
  if (slash <= 0 || slash === source.length - 1) throw new AtlasError('InvalidArgument', 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey')
  return { bucket: source.slice(0, slash), key: source.slice(slash + 1) }
}

/** The source object of a copy, readable by the caller, with x-amz-copy-source-if-* checked */
export async function copySource (ctx: S3Context): Promise<StoredObject> {
  const { bucket: sourceBucket, key: sourceKey } = parseCopySource(String(ctx.request.headers['x-amz-copy-source']))
  const source = await ctx.deps.metadata.getBucket(sourceBucket)
  if (source === null) throw new AtlasError('NoSuchBucket', 'The specified bucket does not exist', { details: { BucketName: sourceBucket } })
  if (!source.public && (ctx.principal === null || source.ownerId !== ctx.principal.accountId)) throw new AtlasError('AccessDenied', 'Access Denied')
  const stored = await ctx.deps.objects.getObject(sourceBucket, sourceKey)
  const h = ctx.request.headers
  const conditions = {
    'if-match': h['x-amz-copy-source-if-match'],
    'if-none-match': h['x-amz-copy-source-if-none-match'],
    'if-modified-since': h['x-amz-copy-source-if-modified-since'],
    'if-unmodified-since': h['x-amz-copy-source-if-unmodified-since']
  }
  const verdict = checkConditions(conditions, { etag: `"${stored.object.etag}"`, lastModified: stored.object.createdAt })
  if (verdict === 'not-modified') throw new AtlasError('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
  return stored
}

export async function copyObject (ctx: S3Context) {
  const key = requireKey(ctx)
  const bucket = await ownBucket(ctx)
  const source = await copySource(ctx)
  const directive = String(ctx.request.headers['x-amz-metadata-directive'] ?? 'COPY').toUpperCase()
  if (directive !== 'COPY' && directive !== 'REPLACE') throw new AtlasError('InvalidArgument', 'Unknown metadata directive.')
  const taggingDirective = String(ctx.request.headers['x-amz-tagging-directive'] ?? 'COPY').toUpperCase()
  if (taggingDirective !== 'COPY' && taggingDirective !== 'REPLACE') throw new AtlasError('InvalidArgument', 'Unknown tagging directive.')
  const sameObject = source.object.bucket === bucket.name && source.object.key === key
  if (sameObject && directive === 'COPY') {
    throw new AtlasError('InvalidRequest', 'This copy request is illegal because it is trying to copy an object to itself without changing the object\'s metadata, storage class, website redirect location or encryption attributes.')
  }
  const replace = directive === 'REPLACE'
  const tags = taggingDirective === 'REPLACE'
    ? (typeof ctx.request.headers['x-amz-tagging'] === 'string' ? parseTagging(ctx.request.headers['x-amz-tagging']) : {})
    : source.object.tags
  const stored = await ctx.deps.objects.copyObject({
    source,
    bucket,
    key,
    contentType: replace ? (ctx.request.headers['content-type'] ?? undefined) : source.object.contentType,
    metadata: replace ? uploadMetadata(ctx) : source.object.metadata,
    tags,
    signal: requestSignal(ctx.request, ctx.reply)
  })
  const xml = renderXml('CopyObjectResult', { LastModified: stored.object.createdAt.toISOString(), ETag: `"${stored.object.etag}"` })
  return ctx.reply.headers(s3AddressHeaders(stored)).header('content-type', 'application/xml').send(xml)
}
