/**
 * The built-in BitTorrent tracker's routes: `GET /announce` and `GET /scrape`, handed to the
 * tracker as they came (see src/backends/bittorrent/tracker.ts). They speak the tracker
 * protocol, not the REST API's: no credentials (BitTorrent clients send none), bencoded bodies,
 * errors as a bencoded `failure reason`. Registered only when the tracker runs; otherwise the
 * paths answer 404 like any unknown route of the gateway.
 */
import type { FastifyInstance } from 'fastify'
import type { GatewayDeps } from '../server.ts'

/** Register `GET /announce` and `GET /scrape` when `deps.tracker` is set. */
export async function trackerRoutes (app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  const tracker = deps.tracker
  if (tracker === undefined) return
  for (const action of ['announce', 'scrape'] as const) {
    app.get(`/${action}`, async (request, reply) => {
      // the tracker writes the response itself, from the raw request (binary query values,
      // the peer's socket address)
      reply.hijack()
      reply.raw.setHeader('x-request-id', request.id)
      tracker.handle(request.raw, reply.raw, action)
      return reply
    })
  }
}
