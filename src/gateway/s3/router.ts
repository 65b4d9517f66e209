/**
 * The S3 API's entry: every path outside the gateway's own prefixes. It finds the bucket and key
 * (path style, or virtual-hosted style under the configured domain), authenticates SigV4, looks
 * the operation up in the table and calls its handler. Errors render as S3 XML.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AtlasError } from '../../core/errors.ts'
import { objectKeyProblem } from '../../core/names.ts'
import { renderProblem } from '../rest/render-problem.ts'
import { errorResponder, type GatewayDeps } from '../server.ts'
import { verifySigV4 } from './auth/sigv4.ts'
import type { S3Context, S3Handler } from './context.ts'
import { matchOperation, type S3Target } from './operations.ts'
import { renderS3Error } from './render-error.ts'

/** Path prefixes that belong to the gateway's other APIs, never to S3 */
export const RESERVED_PREFIXES = ['/v1', '/ipfs', '/ipns', '/bt', '/announce', '/scrape', '/healthz', '/readyz', '/metrics']

export function isReservedPath (path: string): boolean {
  return RESERVED_PREFIXES.some((p) => path === p || path.startsWith(`${p}/`) || path.startsWith(`${p}?`))
}

export interface Addressed {
  bucket: string | undefined
  key: string | undefined
}

/**
 * Bucket and key of a request. Path style: `/bucket/key…`; virtual-hosted style:
 * `Host: bucket.<domain>` with the whole path as the key.
 * @throws AtlasError InvalidURI-like InvalidArgument for undecodable paths
 */
export function addressOf (rawPath: string, host: string | undefined, domain: string | undefined): Addressed {
  let path: string
  try {
    path = decodeURIComponent(rawPath)
  } catch {
    throw new AtlasError('InvalidArgument', 'Could not parse the specified URI')
  }
  const hostname = host?.replace(/:\d+$/, '').toLowerCase()
  if (domain !== undefined && hostname !== undefined) {
    const base = domain.replace(/:\d+$/, '').toLowerCase()
    if (hostname.endsWith(`.${base}`)) {
      const bucket = hostname.slice(0, -(base.length + 1))
      const key = path.replace(/^\//, '')
      return { bucket, key: key === '' ? undefined : key }
    }
  }
  const trimmed = path.replace(/^\//, '')
  if (trimmed === '') return { bucket: undefined, key: undefined }
  const slash = trimmed.indexOf('/')
  if (slash === -1) return { bucket: trimmed, key: undefined }
  const key = trimmed.slice(slash + 1)
  return { bucket: trimmed.slice(0, slash), key: key === '' ? undefined : key }
}

export async function s3Routes (app: FastifyInstance, deps: GatewayDeps, handlers: Record<string, S3Handler>): Promise<void> {
  const lookup = async (accessKeyId: string): Promise<{ secretAccessKey: string, accountId: string, defaultLane?: string } | null> => {
    const key = await deps.metadata.getAccessKey(accessKeyId)
    if (key === null || key.revokedAt !== null || key.secretAccessKey === undefined) return null
    return { secretAccessKey: key.secretAccessKey, accountId: key.accountId, ...(key.defaultLane === undefined ? {} : { defaultLane: key.defaultLane }) }
  }

  await app.register(async (scope) => {
    // S3 bodies are read by the handlers themselves: streamed objects, or XML documents
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
    scope.setErrorHandler(errorResponder(renderS3Error))

    const dispatch = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      const rawUrl = request.raw.url ?? '/'
      const q = rawUrl.indexOf('?')
      const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q)
      const rawQuery = q === -1 ? '' : rawUrl.slice(q + 1)
      if (isReservedPath(rawPath)) {
        // a path of another API that matched none of its routes
        return renderProblem(new AtlasError('NotFound', `No route for ${request.method} ${rawPath}`), request, reply)
      }
      void reply.header('x-amz-request-id', request.id).header('x-amz-id-2', request.id)

      const address = addressOf(rawPath, request.headers.host, deps.config.s3.domain)
      const query = new URLSearchParams(rawQuery)
      // S3 without versioning accepts the "null" version on every object operation
      if (query.get('versionId') === 'null') query.delete('versionId')

      const auth = await verifySigV4({ method: request.method, rawPath, rawQuery, headers: request.headers }, lookup, {})
      const target: S3Target = address.bucket === undefined ? 'service' : address.key === undefined ? 'bucket' : 'object'
      const match = matchOperation({ method: request.method, target, query, headers: request.headers })
      if (match.kind === 'not-implemented') {
        throw new AtlasError('NotImplemented', `Atlas does not implement the ${match.subresource} sub-resource`)
      }
      if (match.kind === 'method-not-allowed') {
        throw new AtlasError('MethodNotAllowed', `The specified method is not allowed against this resource (${request.method} on a ${target})`)
      }
      if (address.key !== undefined) {
        const problem = objectKeyProblem(address.key)
        if (problem !== undefined) throw new AtlasError(problem.includes('bytes') ? 'KeyTooLong' : 'InvalidObjectKey', problem)
      }
      const handler = handlers[match.spec.name]
      if (handler === undefined) throw new AtlasError('NotImplemented', `${match.spec.name} is not implemented`)
      const ctx: S3Context = {
        request,
        reply,
        deps,
        operation: match.spec.name,
        bucketName: address.bucket,
        key: address.key,
        query,
        principal: auth === null ? null : { accountId: auth.accountId, accessKeyId: auth.accessKeyId, ...(auth.defaultLane === undefined ? {} : { defaultLane: auth.defaultLane }) },
        auth
      }
      request.principal = ctx.principal
      return await handler(ctx)
    }

    for (const url of ['/', '/*']) {
      scope.route({ method: ['GET', 'PUT', 'POST', 'DELETE', 'HEAD'], url, handler: dispatch })
    }
  })
}
