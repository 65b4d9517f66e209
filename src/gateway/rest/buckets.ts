/**
 * REST API v1: buckets.
 */
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { BACKEND_NAMES, type BackendName } from '../../backends/backend.ts'
import { AtlasError } from '../../core/errors.ts'
import { assertBucketName } from '../../core/names.ts'
import { ownedBucket, requirePrincipal } from '../auth.ts'
import type { GatewayDeps } from '../server.ts'
import { bucketView } from './views.ts'

const CreateBucketBody = z.object({
  backends: z.array(z.enum(BACKEND_NAMES as [BackendName, ...BackendName[]])).min(1).max(BACKEND_NAMES.length).optional(),
  public: z.boolean().optional()
}).strict()

export async function bucketRoutes (app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  const { metadata, objects, config } = deps

  app.get('/v1/buckets', async (request) => {
    const principal = requirePrincipal(request)
    const buckets = await metadata.listBuckets(principal.accountId)
    return { buckets: buckets.map(bucketView) }
  })

  app.put<{ Params: { bucket: string } }>('/v1/buckets/:bucket', async (request, reply) => {
    const principal = requirePrincipal(request)
    const name = request.params.bucket
    assertBucketName(name)
    const parsed = CreateBucketBody.safeParse(request.body ?? {})
    if (!parsed.success) {
      throw new AtlasError('InvalidArgument', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '))
    }
    const backends = [...new Set(parsed.data.backends ?? config.defaultBackends)] as BackendName[]
    const missing = backends.filter((b) => objects.backend(b) === undefined)
    if (missing.length > 0) {
      throw new AtlasError('InvalidBackend', `Backend ${missing.join(', ')} is not available on this gateway (available: ${objects.availableBackends.join(', ')})`)
    }
    const bucket = await metadata.createBucket({ name, ownerId: principal.accountId, backends, public: parsed.data.public ?? false })
    return reply.code(201).header('location', `/v1/buckets/${name}`).send(bucketView(bucket))
  })

  app.get<{ Params: { bucket: string } }>('/v1/buckets/:bucket', async (request) => {
    const principal = requirePrincipal(request)
    return bucketView(await ownedBucket(metadata, principal, request.params.bucket))
  })

  app.delete<{ Params: { bucket: string } }>('/v1/buckets/:bucket', async (request, reply) => {
    const principal = requirePrincipal(request)
    await ownedBucket(metadata, principal, request.params.bucket)
    await objects.deleteBucket(request.params.bucket)
    return reply.code(204).send()
  })
}
