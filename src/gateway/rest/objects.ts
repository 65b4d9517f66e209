/**
 * REST API v1: objects. Uploads stream: a raw PUT body goes straight into the ingest pipeline,
 * and each file of a multipart/form-data POST does too, one after the other.
 */
import fastifyMultipart from '@fastify/multipart'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AtlasError } from '../../core/errors.ts'
import { assertObjectKey } from '../../core/names.ts'
import type { Bucket } from '../../metadata/store.ts'
import { headersFromMetadata, metadataFromHeaders } from '../../objects/object-metadata.ts'
import type { StoredObject } from '../../objects/object-store.ts'
import { ownedBucket, readableBucket, requirePrincipal } from '../auth.ts'
import { declaredLength, requestBody, requestSignal } from '../http.ts'
import { deliveryFor } from '../delivery.ts'
import { sendContent } from '../send-content.ts'
import type { GatewayDeps } from '../server.ts'
import { addressHeaders, decodeCursor, encodeCursor, objectSummaryView, objectView } from './views.ts'

/** User metadata headers on the REST API */
export const REST_META_PREFIX = 'x-atlas-meta-'

/** Most entries one listing page returns */
export const MAX_LIST_LIMIT = 1000

interface ObjectParams { bucket: string, '*': string }


function sendStored (reply: FastifyReply, stored: StoredObject, status: number): FastifyReply {
  return reply.code(status).headers(addressHeaders(stored.content)).header('etag', `"${stored.object.etag}"`).send(objectView(stored.object, stored.content))
}

function parseMd5Header (value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined
  const raw = Buffer.from(String(value), 'base64')
  if (raw.byteLength !== 16) throw new AtlasError('BadDigest', 'Content-MD5 must be the base64 of a 16-byte MD5 digest')
  return raw.toString('hex')
}

export async function objectRoutes (app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  const { metadata, objects, config } = deps

  // Raw uploads: no body parser runs, the handler reads the request stream itself
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_request, _payload, done) => { done(null) })

    scope.put<{ Params: ObjectParams }>('/v1/buckets/:bucket/objects/*', async (request, reply) => {
      const principal = requirePrincipal(request)
      const key = request.params['*']
      assertObjectKey(key)
      const bucket = await ownedBucket(metadata, principal, request.params.bucket)
      if (request.headers['transfer-encoding'] === undefined && request.headers['content-length'] === undefined) {
        throw new AtlasError('BadRequest', 'Send Content-Length or a chunked body')
      }
      const stored = await objects.putObject({
        bucket,
        key,
        body: requestBody(request),
        expectedSize: declaredLength(request),
        expectedMd5: parseMd5Header(request.headers['content-md5']),
        contentType: request.headers['content-type'],
        metadata: metadataFromHeaders(request.headers, REST_META_PREFIX),
        signal: requestSignal(request, reply)
      })
      return sendStored(reply, stored, 200)
    })
  })

  // Form uploads: one or many files, each streamed into the bucket in turn
  await app.register(async (scope) => {
    await scope.register(fastifyMultipart, {
      limits: { fileSize: config.limits.maxObjectSize, files: config.limits.maxFormFiles, fields: 100, fieldSize: 64 * 1024, parts: config.limits.maxFormFiles + 100 }
    })
    scope.post<{ Params: { bucket: string } }>('/v1/buckets/:bucket/objects', async (request, reply) => {
      const principal = requirePrincipal(request)
      const bucket = await ownedBucket(metadata, principal, request.params.bucket)
      if (!request.isMultipart()) throw new AtlasError('UnsupportedMediaType', 'Send multipart/form-data with one or more files')
      const stored = await formUpload(request, reply, bucket, deps)
      if (stored.length === 0) throw new AtlasError('BadRequest', 'The form contained no file')
      return reply.code(200).send({ objects: stored.map((s) => objectView(s.object, s.content)) })
    })
  })

  app.get<{ Params: { bucket: string }, Querystring: Record<string, string | undefined> }>('/v1/buckets/:bucket/objects', async (request) => {
    const bucket = await readableBucket(metadata, request.principal, request.params.bucket)
    const q = request.query
    const limit = q.limit === undefined ? MAX_LIST_LIMIT : Number(q.limit)
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new AtlasError('InvalidArgument', `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`)
    }
    if (q.delimiter !== undefined && q.delimiter.length !== 1) throw new AtlasError('InvalidArgument', 'delimiter must be one character')
    const page = await metadata.listObjects({
      bucket: bucket.name,
      prefix: q.prefix,
      delimiter: q.delimiter,
      after: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
      limit
    })
    return {
      objects: page.objects.map(objectSummaryView),
      commonPrefixes: page.commonPrefixes,
      ...(page.truncated && page.next !== undefined ? { nextCursor: encodeCursor(page.next) } : {})
    }
  })

  const readObject = async (request: FastifyRequest<{ Params: ObjectParams }>, reply: FastifyReply): Promise<FastifyReply> => {
    const key = request.params['*']
    assertObjectKey(key)
    const bucket = await readableBucket(metadata, request.principal, request.params.bucket)
    const stored = await objects.getObject(bucket.name, key)
    return await sendContent(request, reply, objects, {
      content: stored.content,
      etag: `"${stored.object.etag}"`,
      contentType: stored.object.contentType,
      lastModified: stored.object.createdAt,
      headers: { ...addressHeaders(stored.content), ...headersFromMetadata(stored.object.metadata, REST_META_PREFIX) },
      delivery: deliveryFor(request, deps, request.principal?.accountId ?? bucket.ownerId, { bucket: bucket.name, key })
    })
  }
  app.get<{ Params: ObjectParams }>('/v1/buckets/:bucket/objects/*', { exposeHeadRoute: false }, readObject)
  app.head<{ Params: ObjectParams }>('/v1/buckets/:bucket/objects/*', readObject)

  app.delete<{ Params: ObjectParams }>('/v1/buckets/:bucket/objects/*', async (request, reply) => {
    const principal = requirePrincipal(request)
    const key = request.params['*']
    assertObjectKey(key)
    await ownedBucket(metadata, principal, request.params.bucket)
    const deleted = await objects.deleteObject(request.params.bucket, key)
    if (deleted === null) throw new AtlasError('NoSuchKey', `No object ${key} in bucket ${request.params.bucket}`)
    return reply.code(204).send()
  })
}

/**
 * Store every file part of a form. Fields that come before a file apply to it: `key` names the
 * next file (default: its filename, after `prefix`), `prefix` applies to all following files.
 */
async function formUpload (request: FastifyRequest, reply: FastifyReply, bucket: Bucket, deps: GatewayDeps): Promise<StoredObject[]> {
  const stored: StoredObject[] = []
  const signal = requestSignal(request, reply)
  let prefix = ''
  let nextKey: string | undefined
  try {
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        const value = String(part.value)
        if (part.fieldname === 'prefix') prefix = value
        else if (part.fieldname === 'key') nextKey = value
        continue
      }
      const key = nextKey ?? `${prefix}${part.filename}`
      nextKey = undefined
      assertObjectKey(key)
      const file = part.file
      const body = (async function * () {
        for await (const chunk of file) yield chunk as Uint8Array
        // busboy ends a file early at the size limit: that must fail, not store a short object
        if (file.truncated) {
          throw new AtlasError('EntityTooLarge', `File ${part.filename} exceeds the limit of ${deps.config.limits.maxObjectSize} bytes`)
        }
      })()
      stored.push(await deps.objects.putObject({
        bucket,
        key,
        body,
        contentType: part.mimetype,
        metadata: {},
        signal
      }))
    }
  } catch (err) {
    if (stored.length > 0 && err instanceof AtlasError) {
      // earlier files of the form are stored and stay so: say which
      throw new AtlasError(err.code, err.message, { cause: err, details: { stored: stored.map((s) => s.object.key) } })
    }
    throw err
  }
  return stored
}
