/**
 * Type declarations for the untyped BitTorrent packages, limited to what Atlas uses. They
 * follow the sources in node_modules (webtorrent 3, bencode 4, parse-torrent 11,
 * bittorrent-tracker 11); none of these packages ships its own types, and DefinitelyTyped's
 * `@types/webtorrent` describes the 1.x/2.x API, not 3.x.
 */

declare module 'bencode' {
  /** A decoded bencode value: byte strings stay `Uint8Array` unless an encoding is given */
  export type BencodeValue = number | Uint8Array | BencodeValue[] | { [key: string]: BencodeValue }
  /** What `encode` accepts: strings are written as UTF-8, dict keys are sorted */
  export type BencodeInput = number | string | Uint8Array | BencodeInput[] | { [key: string]: BencodeInput | undefined }

  interface Bencode {
    encode(data: BencodeInput): Uint8Array
    decode(data: Uint8Array, encoding?: string): BencodeValue
    decode(data: Uint8Array, start: number, end: number, encoding?: string): BencodeValue
    encodingLength(data: BencodeInput): number
  }
  const bencode: Bencode
  export default bencode
}

declare module 'parse-torrent' {
  export interface ParsedTorrentFile {
    path: string
    name: string
    length: number
    offset: number
  }
  export interface ParsedTorrent {
    infoHash: string
    infoHashBuffer?: Uint8Array
    name?: string
    announce?: string[]
    urlList?: string[]
    info?: Record<string, unknown>
    infoBuffer?: Uint8Array
    private?: boolean
    created?: Date
    createdBy?: string
    files?: ParsedTorrentFile[]
    length?: number
    pieceLength?: number
    lastPieceLength?: number
    /** Piece hashes as hex strings */
    pieces?: string[]
    /** Magnet links: web seeds (`ws=`) */
    xs?: string | string[]
  }
  export default function parseTorrent (torrentId: string | Uint8Array | ParsedTorrent): Promise<ParsedTorrent>
  export function toMagnetURI (parsed: ParsedTorrent): string
  export function toTorrentFile (parsed: ParsedTorrent): Uint8Array
}

declare module 'create-torrent' {
  export interface CreateTorrentOptions {
    name?: string
    pieceLength?: number
    announceList?: string[][]
    urlList?: string[]
    createdBy?: string
    creationDate?: Date
    private?: boolean
  }
  export default function createTorrent (
    input: Uint8Array | string | Array<Uint8Array | string>,
    opts: CreateTorrentOptions,
    cb: (err: Error | null | undefined, torrent: Uint8Array) => void
  ): void
}

declare module 'webtorrent' {
  import type { EventEmitter } from 'node:events'
  import type { AddressInfo } from 'node:net'

  /** An abstract-chunk-store (https://github.com/mafintosh/abstract-chunk-store) */
  export interface ChunkStore {
    readonly chunkLength: number
    get(index: number, opts: { offset?: number, length?: number } | null | undefined, cb: (err: Error | null, buf?: Uint8Array) => void): void
    put(index: number, buf: Uint8Array, cb?: (err: Error | null) => void): void
    close(cb?: (err?: Error | null) => void): void
    destroy(cb?: (err?: Error | null) => void): void
  }

  export interface WebTorrentOptions {
    /** TCP (and uTP) port to listen on; 0 picks one @default 0 */
    torrentPort?: number
    dhtPort?: number
    /** false disables the DHT; an object is passed to bittorrent-dht @default true */
    dht?: boolean | Record<string, unknown>
    /** false disables trackers; an object configures bittorrent-tracker clients @default {} */
    tracker?: false | { announce?: string[], wrtc?: unknown, getAnnounceOpts?: () => Record<string, unknown> }
    lsd?: boolean
    utPex?: boolean
    utp?: boolean
    natUpnp?: boolean | 'permanent'
    natPmp?: boolean
    webSeeds?: boolean
    maxConns?: number
    /** Bytes per second, -1 for no limit @default -1 */
    uploadLimit?: number
    downloadLimit?: number
    /** 0 = plaintext only, 1 = protocol encryption accepted with plaintext fallback, 2 = RC4 only @default 1 */
    secure?: number
    seedOutgoingConnections?: boolean
    peerId?: string | Uint8Array
    nodeId?: string | Uint8Array
    userAgent?: string
    blocklist?: unknown
  }

  export interface TorrentOptions {
    announce?: string[]
    urlList?: string[]
    path?: string
    skipVerify?: boolean
    preloadedStore?: ChunkStore
    store?: unknown
    storeCacheSlots?: number
    destroyStoreOnDestroy?: boolean
    private?: boolean
    /** Upload slots (unchoked peers) @default 10 */
    uploads?: number | false
    alwaysChokeSeeders?: boolean
    deselect?: boolean
    paused?: boolean
    strategy?: 'rarest' | 'sequential'
    maxWebConns?: number
  }

  /** bittorrent-protocol's Wire, reduced to what Atlas reads */
  export interface Wire extends EventEmitter {
    readonly type: string
    readonly peerId: string | null
    readonly uploaded: number
    readonly downloaded: number
    readonly amChoking: boolean
    readonly peerInterested: boolean
    remoteAddress?: string
    remotePort?: number
    peerExtendedHandshake: Record<string, unknown>
    extendedHandshake: Record<string, unknown>
    readonly peerRequests: unknown[]
    destroy(): void
  }

  export interface Torrent extends EventEmitter {
    readonly infoHash: string
    readonly name: string
    readonly length: number
    readonly pieceLength: number
    readonly ready: boolean
    readonly done: boolean
    readonly destroyed: boolean
    readonly numPeers: number
    readonly uploaded: number
    readonly wires: Wire[]
    readonly magnetURI: string
    /** The trackers it announces to: the torrent's own, then the `announce` option's */
    readonly announce: string[]
    /** The .torrent (bencoded), once the metadata is known */
    readonly torrentFile: Uint8Array
    /** The torrent's files, once the metadata is known; `path` is relative to the torrent's path */
    readonly files: Array<{ readonly path: string, readonly length: number }>
    destroy(opts?: { destroyStore?: boolean } | null, cb?: (err?: Error | null) => void): void
    addPeer(addr: string): boolean
  }

  export default class WebTorrent extends EventEmitter {
    constructor (opts?: WebTorrentOptions)
    readonly peerId: string
    readonly listening: boolean
    readonly destroyed: boolean
    readonly torrentPort: number
    readonly torrents: Torrent[]
    static readonly VERSION: string
    static readonly UTP_SUPPORT: boolean
    static readonly WEBRTC_SUPPORT: boolean
    add(torrentId: string | Uint8Array, opts?: TorrentOptions, ontorrent?: (torrent: Torrent) => void): Torrent
    remove(torrentId: string | Torrent, opts?: { destroyStore?: boolean } | null, cb?: (err?: Error | null) => void): Promise<void>
    get(torrentId: string | Torrent): Promise<Torrent | null>
    address(): AddressInfo | null
    throttleUpload(rate: number): boolean | undefined
    destroy(cb?: (err?: Error | null) => void): void
  }
}

declare module 'bittorrent-tracker' {
  import type { EventEmitter } from 'node:events'
  import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http'

  export interface ServerOptions {
    interval?: number
    trustProxy?: boolean
    http?: boolean | Record<string, unknown>
    udp?: boolean | Record<string, unknown>
    ws?: boolean | Record<string, unknown>
    stats?: boolean
    filter?: (infoHash: string, params: unknown, cb: (err?: Error | null) => void) => void
  }

  export class Server extends EventEmitter {
    constructor (opts?: ServerOptions)
    readonly http: HttpServer | null
    /** Swarms by infohash (hex); peers keyed by `ip:port` for HTTP and UDP peers */
    readonly torrents: Record<string, { peers: { keys: string[], length: number } }>
    /** Answer one HTTP tracker request from any HTTP server (the action defaults from the path) */
    onHttpRequest(req: IncomingMessage, res: ServerResponse, opts?: { action?: 'announce' | 'scrape', trustProxy?: boolean }): void
    listen(port: number, hostname: string, onlistening?: () => void): void
    close(cb?: (err?: Error | null) => void): void
  }
}
