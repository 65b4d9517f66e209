/**
 * BitTorrent routes of the content gateway:
 * - `GET /bt/{infohash}.torrent`: the torrent, with the configured trackers and this gateway's
 *   webseed in its url-list;
 * - `GET /bt/{infohash}`: the bytes, with Range: the BEP 19 webseed URL of the torrent;
 * - `GET /bt/{infohash}/magnet`: the magnet link.
 * HEAD on each. Public content needs no credentials (webseed clients send none); private content
 * answers to its owner's token.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AtlasError } from '../../core/errors.ts'
import { assertContentReadable, contentHeaders } from '../rest/content.ts'
import { deliveryFor } from '../delivery.ts'
import { sendContent } from '../send-content.ts'
import type { GatewayDeps } from '../server.ts'

const INFOHASH = /^[0-9a-fA-F]{40}$/

export async function btRoutes (app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  const { metadata, objects } = deps

  const readable = async (request: FastifyRequest, infohash: string) => {
    if (!INFOHASH.test(infohash)) throw new AtlasError('InvalidAddress', 'A BitTorrent v1 infohash is 40 hex digits')
    const content = await objects.resolve(infohash.toLowerCase())
    const payer = await assertContentReadable(metadata, request.principal, content)
    return { content, payer }
  }

  const torrents = (): NonNullable<GatewayDeps['torrents']> => {
    if (deps.torrents === undefined) throw new AtlasError('NotFound', 'The BitTorrent backend is not enabled on this gateway')
    return deps.torrents
  }

  const data = async (request: FastifyRequest<{ Params: { name: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const { name } = request.params
    if (name.endsWith('.torrent')) {
      const { content } = await readable(request, name.slice(0, -'.torrent'.length))
      const torrent = await torrents().torrentFile(content.locations.find((l) => l.backend === 'bittorrent')?.address ?? '')
      void reply.header('content-type', 'application/x-bittorrent')
        .header('content-disposition', `attachment; filename="${content.id}.torrent"`)
        .header('cache-control', 'public, max-age=300')
        .header('content-length', String(torrent.byteLength))
      return request.method === 'HEAD' ? reply.send() : reply.send(Buffer.from(torrent))
    }
    const { content, payer } = await readable(request, name)
    return await sendContent(request, reply, objects, {
      content,
      etag: `"${content.id}"`,
      contentType: 'application/octet-stream',
      headers: contentHeaders(content),
      delivery: deliveryFor(request, deps, payer)
    })
  }

  const magnet = async (request: FastifyRequest<{ Params: { name: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const { content } = await readable(request, request.params.name)
    const link = torrents().magnet(content.locations.find((l) => l.backend === 'bittorrent')?.address ?? '')
    void reply.header('content-type', 'text/plain; charset=utf-8')
    return request.method === 'HEAD' ? reply.send() : reply.send(link)
  }

  app.get<{ Params: { name: string } }>('/bt/:name', data)
  app.head<{ Params: { name: string } }>('/bt/:name', data)
  app.get<{ Params: { name: string } }>('/bt/:name/magnet', magnet)
  app.head<{ Params: { name: string } }>('/bt/:name/magnet', magnet)
}
