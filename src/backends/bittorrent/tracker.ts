/**
 * The gateway's built-in BitTorrent tracker: bittorrent-tracker's `Server` with no server of
 * its own (no HTTP listener, no UDP, no WebSocket, no stats page), answering the requests that
 * the gateway's HTTP server routes to it at `GET /announce` (BEP 3) and `GET /scrape` (BEP 48).
 * With it a self-hosted Atlas is a complete swarm: its torrents and magnet links name it, its own
 * seeder announces to it, and a client that has nothing but a magnet link finds the seeder there.
 *
 * Choices:
 * - **Only torrents the gateway stores are tracked.** An announce for any other infohash is
 *   refused with a `failure reason`, so the gateway is not an open tracker that anyone can use
 *   to coordinate unrelated swarms (load, memory held per swarm, and whatever those swarms
 *   share). Every torrent Atlas hands out is one it stores, so no legitimate client is refused;
 *   a swarm whose content is removed is forgotten at the next refused announce.
 * - **A scrape must name its infohashes.** bittorrent-tracker answers a bare `/scrape` with every
 *   swarm it knows, which would list the infohash of every content in use, private ones included,
 *   and an infohash is all a peer needs to fetch a content from the seeder.
 * - **Peers are listed at the address their announce came from** (the TCP peer of the request):
 *   right when clients reach the gateway directly. Behind a reverse proxy every peer would appear
 *   at the proxy's address; trusting `X-Forwarded-For` is not offered yet, so run the tracker
 *   only where clients connect to the gateway itself, or use an external tracker (`announce`).
 * - **Responses follow the tracker protocol, not the REST API's:** bencoded dictionaries in 200
 *   responses, errors as `failure reason`, no credentials asked (BitTorrent clients send none).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import bencode from 'bencode'
import { Server } from 'bittorrent-tracker'
import type { BackendLogger } from '../backend.ts'

/** What a tracker request asks: `/announce` or `/scrape`. */
export type TrackerAction = 'announce' | 'scrape'

/**
 * Content type of every tracker response. BEP 3 names none; `text/plain` is what trackers in
 * use send (the body is a bencoded dictionary, which may hold binary peer lists).
 */
export const TRACKER_CONTENT_TYPE = 'text/plain'

/** Constructor options of {@link BuiltInTracker}. */
export interface BuiltInTrackerInit {
  /** Whether the tracker tracks this infohash (40 lowercase hex digits): the gateway stores it */
  tracks: (infoHash: string) => boolean
  /**
   * Seconds clients are told to wait between announces.
   *
   * @default 600 (bittorrent-tracker's; a peer that stays silent for 20 minutes is dropped)
   */
  intervalSeconds?: number
  logger?: BackendLogger
}

const NOOP_LOGGER: BackendLogger = { info () {}, warn () {}, error () {}, debug () {} }

/** An HTTP tracker served through another HTTP server's requests. */
export class BuiltInTracker {
  readonly #server: Server
  #closed = false

  constructor (init: BuiltInTrackerInit) {
    const log = init.logger ?? NOOP_LOGGER
    const server = new Server({
      http: false,
      udp: false,
      ws: false,
      stats: false,
      interval: init.intervalSeconds === undefined ? undefined : init.intervalSeconds * 1000,
      filter: (infoHash, _params, cb) => {
        if (init.tracks(infoHash)) {
          cb(null)
          return
        }
        // a content removed since its swarm was made: forget the swarm
        delete server.torrents[infoHash]
        cb(new Error('This tracker only tracks torrents stored on this gateway'))
      }
    })
    // refused and malformed requests: the client gets the reason, the operator a debug line
    server.on('warning', (err: Error) => { log.debug({ err }, 'tracker: request refused') })
    this.#server = server
  }

  /**
   * Answer one tracker request: write a bencoded dictionary to `res` (the peers, the scrape
   * counts, or a `failure reason`). The query string is read from `req.url` byte for byte
   * (`info_hash` and `peer_id` are binary, percent-encoded), and the peer's address from the
   * request's socket.
   */
  handle (req: IncomingMessage, res: ServerResponse, action: TrackerAction): void {
    res.setHeader('content-type', TRACKER_CONTENT_TYPE)
    res.setHeader('cache-control', 'no-store')
    if (this.#closed) {
      res.end(failure('The tracker is shutting down'))
      return
    }
    if (action === 'scrape' && !new URLSearchParams(req.url?.split('?')[1] ?? '').has('info_hash')) {
      res.end(failure('A scrape must name the infohashes it asks about (info_hash)'))
      return
    }
    this.#server.onHttpRequest(req, res, { action })
  }

  /** The peers listed for `infoHash` (lowercase hex), as `ip:port`. */
  peers (infoHash: string): string[] {
    return [...(this.#server.torrents[infoHash]?.peers.keys ?? [])]
  }

  /** Stop answering: requests from now on get a `failure reason`. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await new Promise<void>((resolve) => { this.#server.close(() => { resolve() }) })
  }
}

function failure (reason: string): Uint8Array {
  return bencode.encode({ 'failure reason': reason })
}
