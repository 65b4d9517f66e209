/**
 * Liveness and readiness. /healthz answers while the process serves HTTP; /readyz checks that
 * the metadata store answers and every backend is started.
 */
import type { FastifyInstance } from 'fastify'
import type { GatewayDeps } from './server.ts'

export async function healthRoutes (app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_request, reply) => {
    const checks = await deps.readiness()
    const ok = Object.values(checks).every(Boolean)
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not-ready', checks })
  })
}
