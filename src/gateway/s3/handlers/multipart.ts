/**
 * Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload,
 * AbortMultipartUpload, ListParts, ListMultipartUploads.
 */
import { AtlasError } from '../../../core/errors.ts'
import { parseRange } from '../../../core/range.ts'
import type { Part } from '../../../metadata/store.ts'
import type { RequestedPart } from '../../../objects/multipart.ts'
import { requestSignal } from '../../http.ts'
import { parseContentMd5 } from '../auth/payload.ts'
import { readXmlBody, s3Body } from '../body.ts'
import { ownBucket, requireKey, requireSigned, type S3Context } from '../context.ts'
import { renderXml, text } from '../xml.ts'
import { copySource, s3AddressHeaders, uploadMetadata } from './objects.ts'
import { parseTagging } from './tagging.ts'

const MAX_PARTS_LISTED = 1000

function partNumberOf (ctx: S3Context): number {
  const raw = ctx.query.get('partNumber') ?? ''
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || n < 1 || n > 10_000) throw new AtlasError('InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive')
  return n
}

async function uploadOf (ctx: S3Context) {
  const key = requireKey(ctx)
  const bucket = await ownBucket(ctx)
  const upload = await ctx.deps.multipart.get(bucket.name, key, ctx.query.get('uploadId') ?? '')
  return { bucket, key, upload }
}

function limitParam (ctx: S3Context, name: string): number {
  const raw = ctx.query.get(name)
  if (raw === null || raw === '') return MAX_PARTS_LISTED
  if (!/^\d+$/.test(raw)) throw new AtlasError('InvalidArgument', `Provided ${name} not an integer or within integer range`)
  return Math.min(Number(raw), MAX_PARTS_LISTED)
}

function partChecksumXml (part: Part): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [algorithm, value] of Object.entries(part.checksums)) out[`Checksum${algorithm.toUpperCase()}`] = value
  return out
}

export async function createMultipartUpload (ctx: S3Context) {
  const principal = requireSigned(ctx)
  const key = requireKey(ctx)
  const bucket = await ownBucket(ctx)
  const headers = ctx.request.headers
  const algorithm = headers['x-amz-checksum-algorithm']
  const upload = await ctx.deps.multipart.create({
    bucket,
    key,
    initiatorId: principal.accountId,
    contentType: headers['content-type'] ?? 'application/octet-stream',
    metadata: uploadMetadata(ctx),
    tags: typeof headers['x-amz-tagging'] === 'string' ? parseTagging(headers['x-amz-tagging']) : undefined,
    checksumAlgorithm: typeof algorithm === 'string' ? algorithm.toUpperCase() : null
  })
  if (typeof algorithm === 'string') void ctx.reply.header('x-amz-checksum-algorithm', algorithm.toUpperCase())
  const xml = renderXml('InitiateMultipartUploadResult', { Bucket: bucket.name, Key: key, UploadId: upload.uploadId })
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}

export async function uploadPart (ctx: S3Context) {
  const partNumber = partNumberOf(ctx)
  const { upload } = await uploadOf(ctx)
  const md5 = ctx.request.headers['content-md5']
  const { body, length, checksums } = s3Body(ctx)
  if (length === undefined) throw new AtlasError('MissingContentLength', 'You must provide the Content-Length HTTP header.')
  const part = await ctx.deps.multipart.uploadPart({
    upload,
    partNumber,
    body,
    expectedSize: length,
    expectedMd5: md5 === undefined ? undefined : parseContentMd5(String(md5)),
    checksums: () => checksums.values,
    signal: requestSignal(ctx.request, ctx.reply)
  })
  for (const [algorithm, value] of Object.entries(part.checksums)) void ctx.reply.header(`x-amz-checksum-${algorithm.toLowerCase()}`, value)
  return ctx.reply.header('etag', `"${part.etag}"`).send()
}

export async function uploadPartCopy (ctx: S3Context) {
  const partNumber = partNumberOf(ctx)
  const { upload } = await uploadOf(ctx)
  const source = await copySource(ctx)
  const rangeHeader = ctx.request.headers['x-amz-copy-source-range']
  let range: { start: number, end: number } | undefined
  if (typeof rangeHeader === 'string') {
    const valid = /^bytes=\d+-\d+$/.test(rangeHeader.trim())
    const parsed = valid ? (() => { try { return parseRange(rangeHeader, source.content.size) } catch { return undefined } })() : undefined
    const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader.trim()) ?? []
    if (parsed === undefined || Number(b) >= source.content.size || Number(a) > Number(b)) {
      throw new AtlasError('InvalidArgument', `Range specified is not valid for source object of size: ${source.content.size}`)
    }
    range = parsed
  }
  const part = await ctx.deps.multipart.copyPart({ upload, partNumber, source, range, signal: requestSignal(ctx.request, ctx.reply) })
  const xml = renderXml('CopyPartResult', { LastModified: part.createdAt.toISOString(), ETag: `"${part.etag}"` })
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}

export async function completeMultipartUpload (ctx: S3Context) {
  const { bucket, upload } = await uploadOf(ctx)
  const doc = await readXmlBody(ctx, 'CompleteMultipartUpload')
  const entries = (doc?.Part ?? []) as Array<Record<string, unknown>>
  const requested: RequestedPart[] = entries.map((entry) => {
    const number = text(entry.PartNumber)?.trim()
    const etag = text(entry.ETag)
    if (number === undefined || !/^\d+$/.test(number) || etag === undefined) {
      throw new AtlasError('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema')
    }
    return { partNumber: Number(number), etag }
  })
  const stored = await ctx.deps.multipart.complete(bucket, upload, requested, requestSignal(ctx.request, ctx.reply))
  const location = `${ctx.request.protocol}://${ctx.request.headers.host ?? 'localhost'}/${bucket.name}/${encodeURIComponent(upload.key).replace(/%2F/g, '/')}`
  const xml = renderXml('CompleteMultipartUploadResult', { Location: location, Bucket: bucket.name, Key: upload.key, ETag: `"${stored.object.etag}"` })
  return ctx.reply.headers(s3AddressHeaders(stored)).header('content-type', 'application/xml').send(xml)
}

export async function abortMultipartUpload (ctx: S3Context) {
  const { upload } = await uploadOf(ctx)
  await ctx.deps.multipart.abort(upload.uploadId)
  return ctx.reply.code(204).send()
}

export async function listParts (ctx: S3Context) {
  const { bucket, key, upload } = await uploadOf(ctx)
  const limit = limitParam(ctx, 'max-parts')
  const markerRaw = ctx.query.get('part-number-marker')
  const marker = markerRaw === null || markerRaw === '' ? 0 : Number(markerRaw)
  if (!Number.isInteger(marker) || marker < 0) throw new AtlasError('InvalidArgument', 'Provided part-number-marker not an integer or within integer range')
  const page = await ctx.deps.metadata.listParts(upload.uploadId, { after: marker, limit })
  const initiator = { ID: upload.initiatorId, DisplayName: upload.initiatorId }
  const xml = renderXml('ListPartsResult', {
    Bucket: bucket.name,
    Key: key,
    UploadId: upload.uploadId,
    Initiator: initiator,
    Owner: { ID: bucket.ownerId, DisplayName: bucket.ownerId },
    StorageClass: 'STANDARD',
    PartNumberMarker: marker,
    ...(page.truncated && page.next !== undefined ? { NextPartNumberMarker: page.next } : {}),
    MaxParts: limit,
    IsTruncated: page.truncated,
    ...(upload.checksumAlgorithm === null ? {} : { ChecksumAlgorithm: upload.checksumAlgorithm }),
    Part: page.parts.map((p) => ({ PartNumber: p.partNumber, LastModified: p.createdAt.toISOString(), ETag: `"${p.etag}"`, Size: p.size, ...partChecksumXml(p) }))
  })
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}

export async function listMultipartUploads (ctx: S3Context) {
  const bucket = await ownBucket(ctx)
  const limit = limitParam(ctx, 'max-uploads')
  const url = ctx.query.get('encoding-type') === 'url'
  const enc = (s: string): string => url ? encodeURIComponent(s).replace(/%2F/g, '/') : s
  const prefix = ctx.query.get('prefix') ?? ''
  const delimiter = ctx.query.get('delimiter') ?? ''
  const keyMarker = ctx.query.get('key-marker') ?? ''
  const uploadIdMarker = ctx.query.get('upload-id-marker') ?? ''
  const page = limit === 0
    ? { uploads: [], commonPrefixes: [], truncated: false }
    : await ctx.deps.metadata.listMultipartUploads(bucket.name, {
      prefix: prefix === '' ? undefined : prefix,
      delimiter: delimiter === '' ? undefined : delimiter,
      keyMarker: keyMarker === '' ? undefined : keyMarker,
      uploadIdMarker: uploadIdMarker === '' ? undefined : uploadIdMarker,
      limit
    })
  const xml = renderXml('ListMultipartUploadsResult', {
    Bucket: bucket.name,
    KeyMarker: enc(keyMarker),
    UploadIdMarker: uploadIdMarker,
    ...('nextKeyMarker' in page && page.nextKeyMarker !== undefined ? { NextKeyMarker: enc(page.nextKeyMarker) } : {}),
    ...('nextUploadIdMarker' in page && page.nextUploadIdMarker !== undefined ? { NextUploadIdMarker: page.nextUploadIdMarker } : {}),
    ...(prefix === '' ? {} : { Prefix: enc(prefix) }),
    ...(delimiter === '' ? {} : { Delimiter: enc(delimiter) }),
    MaxUploads: limit,
    ...(url ? { EncodingType: 'url' } : {}),
    IsTruncated: page.truncated,
    Upload: page.uploads.map((u) => ({
      Key: enc(u.key),
      UploadId: u.uploadId,
      Initiator: { ID: u.initiatorId, DisplayName: u.initiatorId },
      Owner: { ID: bucket.ownerId, DisplayName: bucket.ownerId },
      StorageClass: 'STANDARD',
      Initiated: u.createdAt.toISOString()
    })),
    CommonPrefixes: page.commonPrefixes.map((p) => ({ Prefix: enc(p) }))
  })
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}
