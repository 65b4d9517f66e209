/**
 * RFC 9457 problem details for the REST API and the content routes.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ERROR_TABLE, problemType, type AtlasError } from '../../core/errors.ts'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  instance: string
  code: string
  requestId: string
  [extension: string]: unknown
}

export function toProblem (err: AtlasError, request: FastifyRequest): Problem {
  const spec = ERROR_TABLE[err.code]
  return {
    ...(err.details ?? {}),
    type: problemType(err.code),
    title: spec.title,
    status: spec.status,
    detail: err.message,
    instance: request.url.split('?')[0] as string,
    code: err.code,
    requestId: request.id
  }
}

export function renderProblem (err: AtlasError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const problem = toProblem(err, request)
  if (err.code === 'InvalidRange' && typeof err.details?.size === 'number') {
    void reply.header('content-range', `bytes */${err.details.size}`)
  }
  void reply.code(problem.status).header('content-type', PROBLEM_CONTENT_TYPE)
  if (request.method === 'HEAD') return reply.send()
  return reply.send(JSON.stringify(problem))
}
