/**
 * HTTP-edge helpers shared by the REST, S3 and content routes: an AbortSignal that fires when
 * the client goes away, request bodies as async iterables, and streamed responses whose first
 * chunk is read before the headers go out (so a backend that cannot deliver still gets a proper
 * error response instead of a broken 200).
 */
import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { resume } from '../core/streams.ts'

/**
 * An AbortSignal that fires when the client disconnects before the response has finished (the
 * response closes without finishing, or the upload is cut off).
 */
export function requestSignal (request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  const abort = (): void => {
    if (!controller.signal.aborted) controller.abort(new DOMException('The client closed the connection', 'AbortError'))
  }
  reply.raw.once('close', () => { if (!reply.raw.writableFinished) abort() })
  request.raw.once('aborted', abort)
  return controller.signal
}

/**
 * The raw request body as an async iterable. Stopping early (a limit hit, a digest mismatch) does
 * not destroy the socket: Node then discards the rest of the body, so the client still reads the
 * error response instead of a connection reset.
 */
export function requestBody (request: FastifyRequest): AsyncIterable<Uint8Array> {
  return request.raw.iterator({ destroyOnReturn: false })
}

/** Content-Length of the request, when present and valid. */
export function declaredLength (request: FastifyRequest): number | undefined {
  const header = request.headers['content-length']
  if (header === undefined) return undefined
  const n = Number(header)
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined
}

/**
 * Read the first chunk of `source`, so that errors that happen before any byte (not found,
 * unavailable) throw here; return a Readable that replays it and streams the rest.
 */
export async function primeStream (source: AsyncIterable<Uint8Array>): Promise<Readable> {
  const iterator = source[Symbol.asyncIterator]()
  const first = await iterator.next()
  return Readable.from(resume(first, iterator), { objectMode: false, highWaterMark: 64 * 1024 })
}

