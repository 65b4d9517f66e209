/**
 * REST API v1: content by address. Any address form resolves (canonical id, UnixFS CID,
 * sha256:<hex>, and BitTorrent forms once that backend exists). A content is readable by anyone
 * when some public bucket refers to it, otherwise by the owners of the buckets that do.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AtlasError } from '../../core/errors.ts'
import type { Content, MetadataStore } from '../../metadata/store.ts'
import type { Principal } from '../auth.ts'
import { deliveryFor } from '../delivery.ts'
import { sendContent } from '../send-content.ts'
import type { GatewayDeps } from '../server.ts'
import { addressHeaders } from './views.ts'

/** Throw unless the principal may read the content. Unknown and forbidden look the same (404). */
/**
 * Check that the caller may read a content (it is in a public bucket, or in one of theirs) and
 * return who pays for delivering it: the caller, or for an anonymous read the owner of a public
 * bucket that holds it.
 */
export async function assertContentReadable (metadata: MetadataStore, principal: Principal | null, content: Content): Promise<string> {
  const buckets = await metadata.listContentBuckets(content.id)
  if (principal !== null && buckets.some((b) => b.public || b.ownerId === principal.accountId)) return principal.accountId
  const open = buckets.find((b) => b.public)
  if (open !== undefined) return open.ownerId
  // do not reveal that content exists to callers who may not read it
  throw new AtlasError('NoSuchContent', 'No content you may read is stored at that address')
}

/** Headers of a response that carries content by address: its addresses, immutable caching */
export function contentHeaders (content: Content): Record<string, string> {
  return { ...addressHeaders(content), 'cache-control': 'public, max-age=29030400, immutable' }
}

export async function contentRoutes (app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  const { metadata, objects } = deps
  const handler = async (request: FastifyRequest<{ Params: { '*': string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const content = await objects.resolve(request.params['*'])
    const payer = await assertContentReadable(metadata, request.principal, content)
    const headers = contentHeaders(content)
    // content reached with credentials may be private: shared caches must not keep it
    if (request.principal !== null) headers['cache-control'] = 'private, max-age=29030400, immutable'
    return await sendContent(request, reply, objects, {
      content,
      etag: `"${content.id}"`,
      contentType: 'application/octet-stream',
      headers,
      delivery: deliveryFor(request, deps, payer)
    })
  }
  app.get<{ Params: { '*': string } }>('/v1/content/*', { exposeHeadRoute: false }, handler)
  app.head<{ Params: { '*': string } }>('/v1/content/*', handler)
}
