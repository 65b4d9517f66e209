/**
 * Object tagging: GetObjectTagging, PutObjectTagging, DeleteObjectTagging, and the x-amz-tagging
 * header of PutObject and CopyObject. The metadata store enforces S3's limits (10 tags, key and
 * value lengths, unique keys).
 */
import { AtlasError } from '../../../core/errors.ts'
import type { ObjectRecord } from '../../../metadata/store.ts'
import { readXmlBody } from '../body.ts'
import { ownBucket, requireKey, type S3Context } from '../context.ts'
import { renderXml, text } from '../xml.ts'

/** Tags from the x-amz-tagging header (a URL query string) */
export function parseTagging (header: string): Record<string, string> {
  const tags: Record<string, string> = {}
  for (const [k, v] of new URLSearchParams(header)) {
    if (Object.hasOwn(tags, k)) throw new AtlasError('InvalidTag', 'Cannot provide multiple Tags with the same key')
    tags[k] = v
  }
  return tags
}

export function tagsHeaderCount (object: ObjectRecord): string | undefined {
  const n = Object.keys(object.tags ?? {}).length
  return n === 0 ? undefined : String(n)
}

export async function getObjectTagging (ctx: S3Context) {
  const key = requireKey(ctx)
  const bucket = await ownBucket(ctx)
  const object = await ctx.deps.metadata.getObject(bucket.name, key)
  if (object === null) throw new AtlasError('NoSuchKey', 'The specified key does not exist.', { details: { Key: key } })
  const xml = renderXml('Tagging', { TagSet: { Tag: Object.entries(object.tags ?? {}).map(([Key, Value]) => ({ Key, Value })) } })
  return ctx.reply.header('content-type', 'application/xml').send(xml)
}

export async function putObjectTagging (ctx: S3Context) {
  const key = requireKey(ctx)
  const bucket = await ownBucket(ctx)
  const doc = await readXmlBody(ctx, 'Tagging')
  const tagSet = doc?.TagSet
  if (tagSet === undefined) throw new AtlasError('MalformedXML', 'The Tagging document needs a TagSet')
  const entries = (typeof tagSet === 'object' && tagSet !== null ? (tagSet as { Tag?: unknown }).Tag ?? [] : []) as Array<Record<string, unknown>>
  const tags: Record<string, string> = {}
  for (const entry of entries) {
    const k = text(entry.Key)
    const v = text(entry.Value) ?? ''
    if (k === undefined) throw new AtlasError('MalformedXML', 'Every Tag needs a Key')
    if (Object.hasOwn(tags, k)) throw new AtlasError('InvalidTag', 'Cannot provide multiple Tags with the same key')
    tags[k] = v
  }
  await ctx.deps.metadata.putObjectTags(bucket.name, key, tags)
  return ctx.reply.send()
}

export async function deleteObjectTagging (ctx: S3Context) {
  const key = requireKey(ctx)
  const bucket = await ownBucket(ctx)
  await ctx.deps.metadata.putObjectTags(bucket.name, key, {})
  return ctx.reply.code(204).send()
}
