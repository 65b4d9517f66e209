/**
 * The HTTP server: one Fastify instance carrying the REST API, the health routes and (in later
 * issues) the S3 API and the content gateway. Every error leaves through one handler that turns
 * it into an AtlasError and renders it for the API the route belongs to.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Billing } from '../billing/billing.ts'
import type { ChainServices } from '../billing/chain/setup.ts'
import type { AtlasConfig } from '../config.ts'
import { AtlasError, isAbortError } from '../core/errors.ts'
import type { MetadataStore } from '../metadata/store.ts'
import type { MultipartUploads } from '../objects/multipart.ts'
import type { Logger, ObjectStore } from '../objects/object-store.ts'
import { bearerPrincipal } from './auth.ts'
import { btRoutes } from './content/bt.ts'
import { ipfsRoutes, type IpfsBlockSource } from './content/ipfs.ts'
import { trackerRoutes } from './content/tracker.ts'
import { toAtlasError } from './errors.ts'
import { healthRoutes } from './health.ts'
import { accountRoutes } from './rest/account.ts'
import { bucketRoutes } from './rest/buckets.ts'
import { contentRoutes } from './rest/content.ts'
import { objectRoutes } from './rest/objects.ts'
import { renderProblem } from './rest/render-problem.ts'
import { walletRoutes } from './rest/wallets.ts'
import { S3_HANDLERS } from './s3/handlers/index.ts'
import { renderS3Error } from './s3/render-error.ts'
import { isReservedPath, s3Routes } from './s3/router.ts'

export interface GatewayDeps {
  config: AtlasConfig
  /** Metering and charging, when billing is on */
  billing?: Billing
  /** BTT on TRON (wallet links, deposits, withdrawals), when billing is on */
  chain?: ChainServices
  metadata: MetadataStore
  objects: ObjectStore
  multipart: MultipartUploads
  /** The BitTorrent backend's torrents and magnets, when it runs */
  torrents?: {
    torrentFile(address: string): Promise<Uint8Array>
    magnet(address: string): string
  }
  /** The built-in BitTorrent tracker, when it runs: answers `/announce` and `/scrape` */
  tracker?: {
    handle(req: IncomingMessage, res: ServerResponse, action: 'announce' | 'scrape'): void
  }
  /** The IPFS backend's local blocks, for the /ipfs raw-block and CAR responses */
  ipfs?: IpfsBlockSource
  /** Named readiness checks */
  readiness: () => Promise<Record<string, boolean>>
}

export interface BuildServerOptions {
  /** A pino logger instance, or false for none */
  logger: Logger | false
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route registered, as (method, url pattern) */
    atlasRoutes: Array<{ method: string, url: string }>
  }
}

let requestCounter = 0

export type ErrorRenderer = (err: AtlasError, request: FastifyRequest, reply: FastifyReply) => FastifyReply

/**
 * The error handler shared by every API: convert, log, and render with the API's renderer. A
 * client that went away gets nothing (its socket is gone); an upload refused half-way has the
 * rest of its body discarded so that the client, still sending, reads the error.
 */
/** Headers of a content response that must not reach an error response rendered in its place */
const REPRESENTATION_HEADERS = ['content-length', 'content-range', 'content-disposition', 'etag', 'last-modified', 'accept-ranges', 'cache-control']

export function errorResponder (render: ErrorRenderer) {
  return async (err: unknown, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const atlasError = toAtlasError(err)
    if (atlasError.code === 'ClientClosed' || (isAbortError(err) && reply.raw.destroyed)) {
      request.log.debug({ err }, 'client went away')
      if (!reply.raw.headersSent) reply.raw.destroy()
      return reply
    }
    if (!request.raw.complete && !request.raw.destroyed) request.raw.resume()
    if (atlasError.code === 'InternalError') request.log.error({ err }, 'internal error')
    else request.log.info({ code: atlasError.code, msg: atlasError.message }, 'request failed')
    if (reply.raw.headersSent) {
      reply.raw.destroy()
      return reply
    }
    // a representation's headers, set before the failure, do not describe the error document
    for (const name of REPRESENTATION_HEADERS) reply.removeHeader(name)
    return render(atlasError, request, reply)
  }
}

export async function buildServer (deps: GatewayDeps, options: BuildServerOptions): Promise<FastifyInstance> {
  const { config } = deps
  const app = Fastify({
    loggerInstance: options.logger === false ? undefined : (options.logger as never),
    bodyLimit: config.limits.maxJsonBody,
    // keys may hold any character: leave the path alone beyond percent-decoding
    routerOptions: { ignoreDuplicateSlashes: false, maxParamLength: 2048 },
    genReqId: () => `${Date.now().toString(36)}-${(++requestCounter).toString(36)}`,
    requestIdHeader: false,
    // uploads can be long; idle sockets are still reaped by keepAliveTimeout
    requestTimeout: 0,
    // HEAD is served where it is documented (objects, content), not added to every GET
    exposeHeadRoutes: false
  })

  // the route table, for the OpenAPI conformance test and for logs
  const routes: Array<{ method: string, url: string }> = []
  app.decorate('atlasRoutes', routes)
  app.addHook('onRoute', (route) => {
    for (const method of ([] as string[]).concat(route.method)) routes.push({ method, url: route.url })
  })

  app.decorateRequest('principal', null)
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id)
  })
  app.addHook('preHandler', async (request) => {
    if (request.url.startsWith('/v1/') || request.url.startsWith('/bt/') || request.url.startsWith('/ipfs/')) request.principal = await bearerPrincipal(request, deps.metadata)
  })

  app.setErrorHandler(errorResponder(renderProblem))
  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0] ?? '/'
    if (!isReservedPath(path)) {
      // the S3 API owns every other path; only its methods are routed
      return renderS3Error(new AtlasError('MethodNotAllowed', `The specified method is not allowed against this resource (${request.method})`), request, reply)
    }
    return renderProblem(toAtlasError({ code: 'FST_ERR_NOT_FOUND', message: `No route for ${request.method} ${path}` }), request, reply)
  })

  await healthRoutes(app, deps)
  await bucketRoutes(app, deps)
  await objectRoutes(app, deps)
  await contentRoutes(app, deps)
  await accountRoutes(app, deps)
  await walletRoutes(app, deps)
  await btRoutes(app, deps)
  await ipfsRoutes(app, deps)
  await trackerRoutes(app, deps)
  await s3Routes(app, deps, S3_HANDLERS)
  return app
}
