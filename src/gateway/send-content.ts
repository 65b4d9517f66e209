/**
 * Sending stored bytes over HTTP, shared by every route that delivers content: conditional
 * requests (If-None-Match, If-Match, If-Modified-Since, If-Unmodified-Since), single byte
 * ranges, HEAD, and a stream that starts only once the backend has produced its first chunk.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { AtlasError } from '../core/errors.ts'
import { parseRange } from '../core/range.ts'
import type { Content } from '../metadata/store.ts'
import type { ObjectStore } from '../objects/object-store.ts'
import { deliver, type DeliveryContext } from './delivery.ts'
import { primeStream, requestSignal } from './http.ts'

export interface Representation {
  content: Content
  /** Quoted entity tag */
  etag: string
  contentType: string
  lastModified?: Date
  /** Extra response headers (addresses, cache-control, user metadata) */
  headers: Record<string, string>
  /** The lane and who pays (see delivery.ts): every content response is paced and metered */
  delivery: DeliveryContext
}

function etagMatches (header: string, etag: string): boolean {
  if (header.trim() === '*') return true
  const bare = etag.replace(/^W\//, '')
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === bare)
}

/** Evaluate preconditions (RFC 9110 section 13.2.2 order). Returns 304 / throws 412 as needed. */
export function checkConditions (h: Record<string, string | string[] | undefined>, rep: { etag: string, lastModified?: Date }): 'ok' | 'not-modified' {
  const header = (name: string): string | undefined => {
    const v = h[name]
    return Array.isArray(v) ? v.join(',') : v
  }
  const ifMatch = header('if-match')
  if (ifMatch !== undefined && !etagMatches(ifMatch, rep.etag)) {
    throw new AtlasError('PreconditionFailed', 'At least one of the preconditions you specified did not hold')
  }
  const ifUnmodified = header('if-unmodified-since')
  if (ifMatch === undefined && ifUnmodified !== undefined && rep.lastModified !== undefined) {
    const since = Date.parse(ifUnmodified)
    if (!Number.isNaN(since) && Math.floor(rep.lastModified.getTime() / 1000) > Math.floor(since / 1000)) {
      throw new AtlasError('PreconditionFailed', 'At least one of the preconditions you specified did not hold')
    }
  }
  const ifNoneMatch = header('if-none-match')
  if (ifNoneMatch !== undefined) {
    if (etagMatches(ifNoneMatch, rep.etag)) return 'not-modified'
  } else {
    const ifModified = header('if-modified-since')
    if (ifModified !== undefined && rep.lastModified !== undefined) {
      const since = Date.parse(ifModified)
      if (!Number.isNaN(since) && Math.floor(rep.lastModified.getTime() / 1000) <= Math.floor(since / 1000)) return 'not-modified'
    }
  }
  return 'ok'
}

export async function sendContent (request: FastifyRequest, reply: FastifyReply, objects: ObjectStore, rep: Representation): Promise<FastifyReply> {
  const size = rep.content.size
  void reply.header('etag', rep.etag)
  if (rep.lastModified !== undefined) void reply.header('last-modified', rep.lastModified.toUTCString())
  void reply.header('accept-ranges', 'bytes')
  // a 304 carries the validators only, and a 412 none of the representation's headers (a
  // checksum header on an error response would make clients check the error body against it)
  if (checkConditions(request.headers, rep) === 'not-modified') {
    return reply.code(304).send()
  }
  for (const [name, value] of Object.entries(rep.headers)) void reply.header(name, value)

  // If-Range: only honour the range when the validator still matches
  const ifRange = request.headers['if-range'] as string | undefined
  const rangeHeader = ifRange === undefined || etagMatches(ifRange, rep.etag) ? request.headers.range : undefined
  const range = parseRange(rangeHeader, size)

  void reply.header('content-type', rep.contentType)
  const start = range?.start ?? 0
  const length = range === undefined ? size : range.end - range.start + 1
  if (range !== undefined) {
    void reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`)
  }
  void reply.header('content-length', String(length))
  if (request.method === 'HEAD' || length === 0) return reply.send()

  const signal = requestSignal(request, reply)
  const { source, finish } = await deliver(request, rep.delivery, length, () => objects.read(rep.content, { offset: start, length, signal }), signal)
  // settled when the response is over, sent in full or cut short
  reply.raw.once('close', () => { void finish() })
  let stream
  try {
    stream = await primeStream(source)
  } catch (err) {
    await finish()
    throw err
  }
  return reply.send(stream)
}
