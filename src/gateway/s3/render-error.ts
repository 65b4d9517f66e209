/**
 * S3 error responses: `<Error><Code/><Message/><Resource/><RequestId/></Error>` with the status
 * from the one error table; HEAD responses carry no body, so the code goes in x-amz-error-code.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ERROR_TABLE, type AtlasError, type ErrorSpec } from '../../core/errors.ts'
import { renderXml } from './xml.ts'

export function renderS3Error (err: AtlasError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const spec: ErrorSpec = ERROR_TABLE[err.code]
  void reply.code(spec.s3Status ?? spec.status)
    .header('x-amz-request-id', request.id)
    .header('x-amz-id-2', request.id)
  if (err.code === 'InvalidRange' && typeof err.details?.size === 'number') {
    void reply.header('content-range', `bytes */${err.details.size}`)
  }
  if (request.method === 'HEAD') {
    return reply.header('x-amz-error-code', spec.s3).header('x-amz-error-message', encodeURIComponent(err.message).slice(0, 512)).send()
  }
  const extra: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(err.details ?? {})) {
    // S3 adds context elements such as <BucketName> or <Key>; only plain strings and numbers
    if (/^[A-Z][A-Za-z]+$/.test(k) && (typeof v === 'string' || typeof v === 'number')) extra[k] = v
  }
  const body = renderXml('Error', {
    Code: spec.s3,
    Message: err.message,
    ...extra,
    Resource: decodeURIComponentSafe(request.url.split('?')[0] ?? '/'),
    RequestId: request.id
  }).replace(` xmlns="http://s3.amazonaws.com/doc/2006-03-01/"`, '')
  return reply.header('content-type', 'application/xml').send(body)
}

function decodeURIComponentSafe (s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
