/**
 * The BitTorrent storage backend (DESIGN.md section 3): each content is one file on disk, seeded
 * by a WebTorrent client under a torrent built to the fixed profile of `profile.ts`.
 *
 * Layout of `dataDir`:
 *
 * ```
 * data/<infohash>              the content's bytes, exactly (renamed into place when whole)
 * torrents/<infohash>.torrent  its .torrent: the record that the content is retained here
 * tmp/                         puts in flight; emptied at start
 * ```
 *
 * How data is trusted. A put streams the bytes once into a temporary file, computing the SHA-1 of
 * every piece and the SHA-256 of the whole as they pass (`piece-hasher.ts`); the file is renamed
 * to `data/<infohash>` only once it is whole and hashed, and its .torrent is written after that.
 * So a data file with a .torrent next to it was complete and matched its piece hashes when it
 * was written, and WebTorrent seeds it with `skipVerify` (no hashing when a torrent is added).
 * At start the backend re-seeds every content from its .torrent after one `stat` of its data
 * file: a missing file or a wrong size marks the content damaged (`has()` is false, `get()`
 * throws ContentUnavailableError, it is not seeded; putting the same bytes again repairs it).
 * Bytes that rot inside a file of the right size are not detected at start: downloaders verify
 * every piece against the torrent (so bad bytes never reach a BitTorrent peer as good ones), and
 * {@link BitTorrentBackend.verify} re-hashes one content on demand. Files are not fsynced: a
 * killed process loses nothing written (the page cache survives it), and what a power loss can
 * do to a freshly renamed file (leave it short or empty) is what the size check at start catches.
 * Re-seeding costs about 0.3 ms per content without trackers (100 contents: 30 ms; 1000:
 * 230 ms) and about twice that when each content announces to a tracker.
 *
 * Networking is configured, not defaulted: DHT, local service discovery, uTP, WebRTC, UPnP and
 * NAT-PMP follow the init flags (WebTorrent would turn most of them on), the only trackers are
 * the configured ones, and the client never fetches from web seeds (it only ever seeds complete
 * data). The peer port listens on all interfaces: WebTorrent 3 has no option to bind one address.
 */
import { randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import WebTorrent from 'webtorrent'
import { canonicalIdFromSha256, parseAddress as parseAnyAddress } from '../../core/content-id.ts'
import { AbortedError, AtlasError, ContentUnavailableError, NotFoundError } from '../../core/errors.ts'
import { abortable, abortToAtlasError, checkRange, linkSignal, raceAbort } from '../signals.ts'
import { FileChunkStore } from './file-store.ts'
import { TorrentHasher, hashPiecesOfFile } from './piece-hasher.ts'
import { decodeTorrentFile, encodeTorrentFile, infoHashOf, magnetLink } from './profile.ts'
import type { AbortOptions, BackendLogger, BackendGetOptions, BackendPutOptions, BackendPutResult, BackendRepairOptions, BackendStats, StorageBackend } from '../backend.ts'
import type { TorrentExtras, TorrentInfo } from './profile.ts'
import type { FileHandle } from 'node:fs/promises'
import type { Torrent } from 'webtorrent'

/** The part of a pino logger the backend uses. */
export type BitTorrentBackendLogger = BackendLogger

/** Constructor options of {@link BitTorrentBackend}. */
export interface BitTorrentBackendInit {
  /** The backend's own directory (e.g. `<data>/bittorrent`): `data/`, `torrents/`, `tmp/` */
  dataDir: string
  /**
   * The gateway's public base URL (e.g. `https://atlas.example`), asked each time a .torrent or a
   * magnet link is written: the webseed URL of a content is `${publicUrl()}/bt/${infohash}`.
   */
  publicUrl: () => string
  /**
   * Tracker URLs, in order, written into every .torrent and magnet link and announced to by the
   * seeder; `[]` for none. A function is asked each time (like `publicUrl`): for trackers that
   * come and go, such as the gateway's own, reachable only once its server listens. After the
   * list changes, {@link BitTorrentBackend.reannounce} makes the contents already seeding
   * announce to the new one.
   */
  announce: readonly string[] | (() => readonly string[])
  /** TCP port for BitTorrent peers; 0 picks a free one (see {@link BitTorrentBackend.port}) */
  port: number
  /** Join the mainline DHT (BEP 5), which bootstraps from public routers */
  dht: boolean
  /** Local service discovery (BEP 14, multicast on the LAN) */
  lsd: boolean
  /** uTP (BEP 29) besides TCP; needs the optional native `utp-native` module */
  utp: boolean
  /** WebRTC peers, found through WebSocket trackers (what browsers running WebTorrent use) */
  webrtc: boolean
  /** Ask the router for a port mapping over UPnP */
  natUpnp: boolean
  /** Ask the router for a port mapping over NAT-PMP */
  natPmp: boolean
  /**
   * Peer exchange (ut_pex, BEP 11): learn peers from connected peers.
   *
   * @default true
   */
  pex?: boolean
  /**
   * How long {@link BitTorrentBackend.repair} waits for the next downloaded byte (or for the
   * metadata of a magnet) before it gives up, in milliseconds.
   *
   * @default 30000
   */
  repairStallMs?: number
  logger?: BitTorrentBackendLogger
}

/** Where a content stands in the swarm, for operators and tests. */
export interface SwarmStatus {
  /** WebTorrent has the torrent, holds all its pieces and serves them */
  seeding: boolean
  /** Connected peers */
  peers: number
  /** Bytes uploaded since the torrent was added (since start) */
  uploaded: number
}

/** Bytes written to the temporary file at once (and the most a put holds besides the write in flight). */
const WRITE_BATCH_BYTES = 1024 * 1024

/** Bytes per chunk that `get()` yields. */
const READ_CHUNK_BYTES = 256 * 1024

/** How long a repair waits for the next downloaded byte before it gives up. */
const DEFAULT_REPAIR_STALL_MS = 30_000

/** How long a repair waits for a first peer before it gives up. */
const NO_PEER_MS = 8_000

/** .torrent files read and checked at once when start() loads the store. */
const LOAD_CONCURRENCY = 16

const NOOP_LOGGER: BitTorrentBackendLogger = { info () {}, warn () {}, error () {}, debug () {} }

interface Entry {
  infoHash: string
  /** The torrent's name: the canonical content id */
  name: string
  size: number
  pieceLength: number
  /** Size of the .torrent file on disk */
  torrentBytes: number
  /** Why the content cannot be read (its data file is missing or the wrong size) */
  damaged: string | undefined
  /** The WebTorrent torrent seeding it; undefined for empty and damaged contents */
  torrent: Torrent | undefined
}

/** The record of a stored content, not yet seeding */
function newEntry (infoHash: string, info: TorrentInfo, torrentBytes: number, damaged: string | undefined): Entry {
  return { infoHash, name: info.name, size: info.length, pieceLength: info.pieceLength, torrentBytes, damaged, torrent: undefined }
}

interface Running {
  client: WebTorrent
  entries: Map<string, Entry>
  /** Aborted by stop(): every call in flight listens to it */
  stopping: AbortController
  /** Writes in flight (puts, removes), awaited by stop() */
  writes: Set<Promise<unknown>>
  /** Repairs in flight, by infohash */
  repairs: Map<string, Promise<void>>
}

/**
 * {@link StorageBackend} on BitTorrent.
 *
 * Addresses are v1 infohashes (40 lowercase hex digits) under the profile of `profile.ts`;
 * `get`, `has` and `remove` also take the other forms `parseAddress` in core knows for them
 * (`btih:`, base32, magnet links). Retention is one record per address: putting bytes that are
 * already retained returns the same address without storing them twice, and one `remove()`
 * releases them (the object store counts references across keys).
 *
 * Concurrency: a put writes its own temporary file, so puts run in parallel and a remove can
 * never take bytes from a put in flight; the short step that publishes a content (rename, write
 * the .torrent, start seeding) and `remove()` run one at a time under one lock, so a put and a
 * remove of the same bytes end in one of the two orders, never in between.
 */
export class BitTorrentBackend implements StorageBackend {
  readonly name = 'bittorrent'

  readonly #init: BitTorrentBackendInit
  readonly #log: BitTorrentBackendLogger
  readonly #dataDir: string
  readonly #tmpDir: string
  readonly #torrentDir: string
  /** Serialises publishing and removing contents */
  readonly #lock = new Lock()
  #running: Running | undefined
  #starting: Promise<void> | undefined

  constructor (init: BitTorrentBackendInit) {
    this.#init = init
    this.#log = init.logger ?? NOOP_LOGGER
    this.#dataDir = join(init.dataDir, 'data')
    this.#tmpDir = join(init.dataDir, 'tmp')
    this.#torrentDir = join(init.dataDir, 'torrents')
  }

  /**
   * Start the WebTorrent client on the peer port, clear what puts interrupted by a crash left
   * in `tmp/`, and re-seed every stored content from its .torrent (one small read and one
   * `stat` per content; no data is read). Resolves once every content is seeding.
   */
  async start (): Promise<void> {
    if (this.#running !== undefined) return
    this.#starting ??= this.#start().finally(() => { this.#starting = undefined })
    await this.#starting
  }

  async #start (): Promise<void> {
    const began = performance.now()
    await mkdir(this.#dataDir, { recursive: true })
    await mkdir(this.#torrentDir, { recursive: true })
    // nothing runs before start: whatever is in tmp/ is left over from a put a crash cut short
    await rm(this.#tmpDir, { recursive: true, force: true })
    await mkdir(this.#tmpDir, { recursive: true })

    const client = await this.#startClient()
    const running: Running = { client, entries: new Map(), stopping: new AbortController(), writes: new Set(), repairs: new Map() }
    try {
      const torrents = await this.#load(running)
      await Promise.all(torrents.map(async ({ entry, info }) => { await this.#seed(running, entry, info) }))
    } catch (err) {
      await destroyClient(client)
      throw err
    }
    this.#running = running
    this.#log.info({
      port: this.port,
      contents: running.entries.size,
      seeding: client.torrents.length,
      ms: Math.round(performance.now() - began)
    }, 'bittorrent backend started')
  }

  async #startClient (): Promise<WebTorrent> {
    const init = this.#init
    if (init.utp && !WebTorrent.UTP_SUPPORT) {
      this.#log.warn({}, 'bittorrent: uTP asked for but utp-native is not available; TCP only')
    }
    const client = new WebTorrent({
      torrentPort: init.port,
      dht: init.dht,
      lsd: init.lsd,
      utp: init.utp,
      natUpnp: init.natUpnp,
      natPmp: init.natPmp,
      utPex: init.pex ?? true,
      // Atlas only seeds complete data: it never downloads, from peers or from web seeds
      webSeeds: false,
      // without trackers (and none to come: a list that is a function may grow), no tracker
      // clients at all; `wrtc: false` keeps bittorrent-tracker from offering WebRTC connections
      // through WebSocket trackers
      tracker: Array.isArray(init.announce) && init.announce.length === 0 ? false : (init.webrtc ? {} : { wrtc: false })
    })
    try {
      await new Promise<void>((resolve, reject) => {
        if (client.listening) {
          resolve()
          return
        }
        const onError = (err: Error): void => {
          client.removeListener('listening', onListening)
          reject(err)
        }
        const onListening = (): void => {
          client.removeListener('error', onError)
          resolve()
        }
        client.once('error', onError)
        client.once('listening', onListening)
      })
    } catch (err) {
      if (!client.destroyed) await destroyClient(client)
      throw new AtlasError('ServiceUnavailable', `The BitTorrent client could not listen on port ${init.port}`, { cause: err })
    }
    client.on('error', (err: Error) => { this.#log.error({ err }, 'bittorrent client error') })
    return client
  }

  /** Read every .torrent, check its data file, drop orphaned data files; returns what to seed. */
  async #load (running: Running): Promise<Array<{ entry: Entry, info: TorrentInfo }>> {
    const torrentNames = (await readdir(this.#torrentDir)).filter(name => /^[0-9a-f]{40}\.torrent$/.test(name))
    const known = new Set(torrentNames.map(name => name.slice(0, 40)))
    // a data file without a .torrent is a put that crashed before publishing it or a remove
    // that crashed after unpublishing it: nothing refers to it
    for (const name of await readdir(this.#dataDir)) {
      if (known.has(name)) continue
      await rm(join(this.#dataDir, name), { force: true, recursive: true })
      this.#log.warn({ file: name }, 'bittorrent: deleted a data file that has no .torrent')
    }
    const loaded: Array<{ entry: Entry, info: TorrentInfo }> = []
    await forEachLimited(torrentNames, LOAD_CONCURRENCY, async (name) => {
      const infoHash = name.slice(0, 40)
      const path = join(this.#torrentDir, name)
      let info: TorrentInfo
      let torrentBytes: number
      try {
        const bytes = await readFile(path)
        info = decodeTorrentFile(bytes)
        torrentBytes = bytes.byteLength
        if (infoHashOf(info) !== infoHash) throw new TypeError('its info dictionary does not hash to its name')
      } catch (err) {
        this.#log.error({ err, file: name }, 'bittorrent: ignoring an unreadable .torrent')
        return
      }
      const entry = newEntry(infoHash, info, torrentBytes, await this.#checkDataFile(infoHash, info.length))
      if (entry.damaged !== undefined) this.#log.warn({ infoHash, reason: entry.damaged }, 'bittorrent: content damaged, not seeding it')
      running.entries.set(infoHash, entry)
      loaded.push({ entry, info })
    })
    return loaded
  }

  /** Undefined when the data file is there with the right size, else what is wrong. */
  async #checkDataFile (infoHash: string, size: number): Promise<string | undefined> {
    try {
      const stats = await stat(this.#dataPath(infoHash))
      if (!stats.isFile()) return 'its data file is not a file'
      if (stats.size !== size) return `its data file has ${stats.size} bytes instead of ${size}`
      return undefined
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'its data file is missing'
      throw err
    }
  }

  /** Abort calls in flight, wait for writes to unwind, then destroy the client (peers, trackers, files). */
  async stop (): Promise<void> {
    await this.#starting?.catch(() => {})
    const running = this.#running
    if (running === undefined) return
    this.#running = undefined
    running.stopping.abort(new AbortedError('The BitTorrent backend is stopping'))
    await Promise.allSettled([...running.writes])
    await this.#lock.run(async () => {})
    await destroyClient(running.client)
    this.#log.info({}, 'bittorrent backend stopped')
  }

  /** True between a successful `start()` and `stop()`. */
  isStarted (): boolean {
    return this.#running !== undefined
  }

  /** The TCP port the client listens on for peers (the one chosen when `port` was 0). */
  get port (): number {
    return this.#state().client.address()?.port ?? 0
  }

  /** The client's BitTorrent peer id (hex; a new one at each start). */
  get peerId (): string {
    return this.#state().client.peerId
  }

  /**
   * Stream `source` into `tmp/`, hashing pieces as the bytes pass, then publish the content:
   * rename the file to `data/<infohash>`, write `torrents/<infohash>.torrent` and start seeding
   * it. Memory stays at about two write batches (1 MiB each) whatever the size.
   *
   * The piece length is chosen from `options.size` when given (see `piece-hasher.ts` for what
   * happens without it, or when the source ends at another size).
   *
   * A put that fails, is aborted or is cut short by `stop()` rejects after deleting its
   * temporary file; once publishing has begun it runs to its end whatever the signal says.
   *
   * @returns the infohash as address, and in `extra` the `magnet` link and the path of the
   * `torrent` file
   */
  async put (source: AsyncIterable<Uint8Array>, options: BackendPutOptions = {}): Promise<BackendPutResult> {
    const running = this.#state()
    const signal = linkSignal(running.stopping.signal, options.signal)
    return this.#trackWrite(running, this.#put(running, source, options, signal))
  }

  async #put (running: Running, source: AsyncIterable<Uint8Array>, options: BackendPutOptions, signal: AbortSignal): Promise<BackendPutResult> {
    const temporary = join(this.#tmpDir, `${randomUUID()}.part`)
    let handle: FileHandle | undefined
    let published = false
    try {
      signal.throwIfAborted()
      handle = await open(temporary, 'wx')
      const hasher = new TorrentHasher({ expectedSize: options.size, sha256: options.sha256 === undefined })
      await writeAndHash(handle, abortable(source, signal), hasher, options.release)
      await handle.close()
      handle = undefined
      const hashes = hasher.finish()
      let pieces = hashes.pieces
      if (pieces === undefined) {
        // the size hint was wrong and the final size needs another piece length: the slow path
        this.#log.warn({ expected: options.size, actual: hashes.size }, 'bittorrent put: size hint was wrong, hashing the file again')
        pieces = await hashPiecesOfFile(temporary, hashes.pieceLength, signal)
      }
      const sha256 = hashes.sha256 ?? sha256FromCaller(options.sha256)
      const info: TorrentInfo = { name: canonicalIdFromSha256(sha256), length: hashes.size, pieceLength: hashes.pieceLength, pieces }
      const infoHash = infoHashOf(info)

      return await this.#lock.run(async () => {
        signal.throwIfAborted()
        const existing = running.entries.get(infoHash)
        if (existing !== undefined && existing.damaged === undefined && await this.#checkDataFile(infoHash, existing.size) === undefined) {
          this.#log.debug({ address: infoHash, size: info.length }, 'bittorrent put: already stored')
          return this.#result(existing)
        }
        // from here on the put runs to its end: a half-published content would be lost
        if (existing !== undefined) this.#unseed(existing)
        await rename(temporary, this.#dataPath(infoHash))
        published = true
        let torrentBytes: number
        try {
          torrentBytes = await this.#writeTorrentFile(info, infoHash)
        } catch (err) {
          // unpublish: a damaged record this put meant to repair stays as it was, damaged
          await rm(this.#dataPath(infoHash), { force: true })
          throw err
        }
        const entry = newEntry(infoHash, info, torrentBytes, undefined)
        running.entries.set(infoHash, entry)
        await this.#seed(running, entry, info)
        this.#log.debug({ address: infoHash, size: info.length, pieceLength: info.pieceLength }, 'bittorrent put')
        return this.#result(entry)
      })
    } catch (err) {
      throw abortToAtlasError(err, signal)
    } finally {
      await handle?.close().catch(() => {})
      if (!published) await rm(temporary, { force: true }).catch(() => {})
    }
  }

  /** Write the .torrent (via a temporary file, so a crash never leaves half of one); returns its size. */
  async #writeTorrentFile (info: TorrentInfo, infoHash: string): Promise<number> {
    const bytes = encodeTorrentFile(info, this.#extras(infoHash))
    const temporary = join(this.#tmpDir, `${randomUUID()}.torrent`)
    try {
      await writeFile(temporary, bytes, { flag: 'wx' })
      await rename(temporary, this.#torrentPath(infoHash))
    } catch (err) {
      await rm(temporary, { force: true })
      throw err
    }
    return bytes.byteLength
  }

  /**
   * Add the content to the WebTorrent client, serving pieces straight from its data file, and
   * wait until WebTorrent has it ready. Errors are logged, not thrown: the content stays stored
   * and readable even if it cannot be seeded.
   */
  async #seed (running: Running, entry: Entry, info: TorrentInfo): Promise<void> {
    // nothing to share in an empty content (and BitTorrent clients refuse zero-length torrents)
    if (entry.size === 0 || entry.damaged !== undefined) return
    let torrent: Torrent
    try {
      torrent = running.client.add(encodeTorrentFile(info, this.#extras(entry.infoHash)), {
        preloadedStore: new FileChunkStore(this.#dataPath(entry.infoHash), entry.pieceLength, entry.size),
        // the pieces were hashed as the bytes were written: reading them all back to check would
        // cost a full read of every content at every start
        skipVerify: true,
        // reads go to the page cache; WebTorrent's cache would hold up to 20 whole pieces (80 MiB
        // at 4 MiB pieces) per torrent and read a whole piece to answer a 16 KiB request
        storeCacheSlots: 0
      })
    } catch (err) {
      this.#log.error({ err, infoHash: entry.infoHash }, 'bittorrent: could not seed a content')
      return
    }
    entry.torrent = torrent
    torrent.on('warning', (err: Error) => { this.#log.debug({ err, infoHash: entry.infoHash }, 'bittorrent: torrent warning') })
    try {
      await whenReady(torrent)
    } catch (err) {
      this.#log.error({ err, infoHash: entry.infoHash }, 'bittorrent: could not seed a content')
      if (entry.torrent === torrent) entry.torrent = undefined
      return
    }
    torrent.on('error', (err: Error) => { this.#log.error({ err, infoHash: entry.infoHash }, 'bittorrent: torrent error') })
  }

  /** Stop seeding (without waiting for trackers to hear that it stopped). */
  #unseed (entry: Entry): void {
    const torrent = entry.torrent
    entry.torrent = undefined
    if (torrent !== undefined && !torrent.destroyed) torrent.destroy({ destroyStore: false })
  }

  /**
   * Stream the content, or the slice `[offset, offset + length)` of it (clamped to its size),
   * from its data file, reading as the consumer pulls.
   *
   * @throws AtlasError `InvalidAddress` when `address` is not an infohash, `InvalidArgument`
   * for a negative or fractional offset or length
   * @throws NotFoundError when the content is not stored here
   * @throws ContentUnavailableError when it is stored but its data file is damaged
   */
  async * get (address: string, options: BackendGetOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    const running = this.#state()
    const { offset, length } = checkRange(options)
    const infoHash = parseInfoHash(address)
    if (infoHash === undefined) throw new AtlasError('InvalidAddress', `${truncate(address)} is not a BitTorrent infohash`)
    const entry = running.entries.get(infoHash)
    if (entry === undefined) throw new NotFoundError(`${infoHash} is not stored on BitTorrent here`)
    if (entry.damaged !== undefined) throw new ContentUnavailableError(`${infoHash} is damaged here: ${entry.damaged}`)
    const signal = linkSignal(running.stopping.signal, options.signal)
    const start = Math.min(offset, entry.size)
    const end = length === undefined ? entry.size : Math.min(entry.size, start + length)
    if (start === end) return

    let handle: FileHandle
    try {
      // once open, the file stays readable even if remove() unlinks it meanwhile
      handle = await open(this.#dataPath(infoHash), 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      if (!running.entries.has(infoHash)) throw new NotFoundError(`${infoHash} is not stored on BitTorrent here`)
      throw new ContentUnavailableError(`The data file of ${infoHash} is missing`, { cause: err })
    }
    try {
      let position = start
      while (position < end) {
        if (signal.aborted) throw abortToAtlasError(signal.reason, signal)
        // a fresh buffer each time: the consumer may keep the chunk
        const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, end - position))
        const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, position)
        if (bytesRead === 0) throw new ContentUnavailableError(`The data file of ${infoHash} is shorter than its torrent says`)
        position += bytesRead
        yield bytesRead === buffer.byteLength ? buffer : buffer.subarray(0, bytesRead)
      }
    } finally {
      await handle.close()
    }
  }

  /**
   * Read repair: download the content from the swarm (peers found through the trackers and, when
   * on, the DHT) into `tmp/`, then publish it through the same path as `put()`, which hashes it
   * again: WebTorrent checks every piece against the torrent as it arrives, and the put checks
   * that the whole hashes to the torrent's name and infohash. A content with a .torrent here
   * (its data file was lost) is fetched from that .torrent; one never stored here (another
   * replica stored it) from a magnet link, its metadata coming from peers (BEP 9). Repairs of
   * one infohash share one download. Gives up with ContentUnavailableError when there is no way
   * to find peers or no byte arrives for {@link BitTorrentBackendInit.repairStallMs}.
   */
  async repair (address: string, options: BackendRepairOptions = {}): Promise<void> {
    const running = this.#state()
    const infoHash = parseInfoHash(address)
    if (infoHash === undefined) throw new AtlasError('InvalidAddress', `${truncate(address)} is not a BitTorrent infohash`)
    if (await this.has(infoHash)) return
    const signal = linkSignal(running.stopping.signal, options.signal)
    let repair = running.repairs.get(infoHash)
    if (repair === undefined) {
      // the shared download listens only to stop(): one caller giving up does not end it for others
      repair = this.#trackWrite(running, this.#repair(running, infoHash, options)).finally(() => { running.repairs.delete(infoHash) })
      running.repairs.set(infoHash, repair)
    }
    try {
      await raceAbort(repair, signal)
    } catch (err) {
      throw abortToAtlasError(err, signal)
    }
  }

  async #repair (running: Running, infoHash: string, options: BackendRepairOptions): Promise<void> {
    const signal = running.stopping.signal
    const extras = this.#extras(infoHash)
    if (extras.announce.length === 0 && !this.#init.dht) {
      throw new ContentUnavailableError(`${infoHash} cannot be fetched: no tracker is configured and the DHT is off`)
    }
    const entry = running.entries.get(infoHash)
    let torrentId: Uint8Array | string
    if (entry !== undefined) {
      // a torrent still seeding from a lost file would answer peers with errors, and WebTorrent
      // takes one torrent per infohash
      this.#unseed(entry)
      torrentId = encodeTorrentFile(decodeTorrentFile(await readFile(this.#torrentPath(infoHash))), extras)
    } else {
      torrentId = magnetLink(infoHash, options.contentId ?? infoHash, options.size ?? 0, extras)
    }
    const dir = join(this.#tmpDir, `${randomUUID()}.repair`)
    const stallMs = this.#init.repairStallMs ?? DEFAULT_REPAIR_STALL_MS
    let torrent: Torrent | undefined
    try {
      signal.throwIfAborted()
      torrent = running.client.add(torrentId, { path: dir, storeCacheSlots: 0 })
      await whenDownloaded(torrent, stallMs, signal)
      const file = torrent.files[0]
      if (torrent.files.length !== 1 || file === undefined) throw new ContentUnavailableError(`${infoHash} is not a single-file torrent`)
      const info = decodeTorrentFile(torrent.torrentFile)
      const path = join(dir, file.path)
      await closeTorrent(torrent)
      torrent = undefined
      const result = await this.#put(running, createReadStream(path), { size: info.length }, signal)
      if (result.address !== infoHash) {
        // bytes that match the pieces but not the profile (another name or piece length)
        await this.remove(result.address).catch(() => {})
        throw new ContentUnavailableError(`${infoHash} does not follow Atlas's torrent profile`)
      }
      this.#log.info({ infoHash, size: info.length }, 'bittorrent repair: fetched a content from the swarm')
    } catch (err) {
      if (err instanceof AtlasError) throw err
      throw new ContentUnavailableError(`${infoHash} could not be fetched from the swarm: ${(err as Error).message}`, { cause: err })
    } finally {
      if (torrent !== undefined) await closeTorrent(torrent).catch(() => {})
      await rm(dir, { recursive: true, force: true }).catch(() => {})
    }
  }

  /** True when the content is stored and its data file is there with the right size (one `stat`). */
  async has (address: string, _options: AbortOptions = {}): Promise<boolean> {
    const running = this.#state()
    const infoHash = parseInfoHash(address)
    if (infoHash === undefined) return false
    const entry = running.entries.get(infoHash)
    if (entry === undefined || entry.damaged !== undefined) return false
    return await this.#checkDataFile(infoHash, entry.size) === undefined
  }

  /**
   * Stop seeding the content and delete its .torrent and data file. Unknown addresses are a
   * no-op. The signal is honoured until the removal starts; from there it runs to the end.
   * Reads already streaming the content finish (the open file outlives the unlink).
   */
  async remove (address: string, options: AbortOptions = {}): Promise<void> {
    const running = this.#state()
    const infoHash = parseInfoHash(address)
    if (infoHash === undefined) return
    const signal = linkSignal(running.stopping.signal, options.signal)
    await this.#trackWrite(running, this.#lock.run(async () => {
      if (signal.aborted) throw abortToAtlasError(signal.reason, signal)
      const entry = running.entries.get(infoHash)
      if (entry === undefined) return
      running.entries.delete(infoHash)
      this.#unseed(entry)
      // the .torrent first: it is what says the content is here, and a data file left without
      // one (a crash in between) is deleted at the next start
      await rm(this.#torrentPath(infoHash), { force: true })
      await rm(this.#dataPath(infoHash), { force: true })
      this.#log.debug({ address: infoHash }, 'bittorrent remove')
    }))
  }

  /**
   * Contents retained (damaged ones included) and the bytes of their data files plus their
   * .torrent files, from the in-memory index: no disk access.
   */
  async stats (_options: AbortOptions = {}): Promise<BackendStats> {
    const running = this.#state()
    let bytes = 0
    for (const entry of running.entries.values()) bytes += entry.torrentBytes + (entry.damaged === undefined ? entry.size : 0)
    return { contents: running.entries.size, bytes }
  }

  /** The infohashes of every stored content. */
  async * list (options: AbortOptions = {}): AsyncGenerator<string, void, undefined> {
    const running = this.#state()
    for (const infoHash of [...running.entries.keys()]) {
      options.signal?.throwIfAborted()
      yield infoHash
    }
  }

  /**
   * The .torrent of a stored content, with the trackers and webseed URL of the current
   * configuration (what the gateway serves at `/bt/<infohash>.torrent`).
   *
   * @throws NotFoundError when the content is not stored here
   */
  async torrentFile (address: string): Promise<Uint8Array> {
    const running = this.#state()
    const infoHash = parseInfoHash(address)
    if (infoHash === undefined || !running.entries.has(infoHash)) throw new NotFoundError(`${truncate(address)} is not stored on BitTorrent here`)
    const info = decodeTorrentFile(await readFile(this.#torrentPath(infoHash)))
    return encodeTorrentFile(info, this.#extras(infoHash))
  }

  /**
   * The magnet link of a stored content, with the current trackers and webseed URL.
   *
   * @throws NotFoundError when the content is not stored here
   */
  magnet (address: string): string {
    const running = this.#state()
    const infoHash = parseInfoHash(address)
    const entry = infoHash === undefined ? undefined : running.entries.get(infoHash)
    if (entry === undefined) throw new NotFoundError(`${truncate(address)} is not stored on BitTorrent here`)
    return magnetLink(entry.infoHash, entry.name, entry.size, this.#extras(entry.infoHash))
  }

  /** How the content is doing in the swarm; undefined when it is not stored here. */
  swarm (address: string): SwarmStatus | undefined {
    const running = this.#state()
    const infoHash = parseInfoHash(address)
    const entry = infoHash === undefined ? undefined : running.entries.get(infoHash)
    if (entry === undefined) return undefined
    const torrent = entry.torrent
    // `done`: WebTorrent holds every piece as verified, so it answers every request
    const seeding = torrent !== undefined && torrent.ready && torrent.done && !torrent.destroyed
    return { seeding, peers: seeding ? torrent.numPeers : 0, uploaded: seeding ? torrent.uploaded : 0 }
  }

  /**
   * Make every seeding content whose torrent names other trackers than the current list seed
   * under the current list, so that it announces to each of them: call it when the list has
   * changed (the gateway calls it once its HTTP server listens, so that its own tracker lists
   * this seeder for the contents re-seeded at start, before it could answer).
   *
   * WebTorrent fixes a torrent's trackers when the torrent is added, so each such content is
   * taken out of the client and added again (no data is read; 100 contents took 0.2 s). The
   * old torrents are closed first, all at once, and waited for, so that their `stopped`
   * announces reach trackers before the new `started` ones (a tracker that got them the other
   * way round would drop this seeder). Peers connected to those contents are disconnected.
   *
   * @returns how many contents were re-seeded
   */
  async reannounce (): Promise<number> {
    const running = this.#state()
    return await this.#trackWrite(running, this.#lock.run(async () => {
      const announce = this.#announce()
      const stale = [...running.entries.values()].filter((entry) => {
        const torrent = entry.torrent
        return torrent !== undefined && !torrent.destroyed && !sameList(torrent.announce, announce)
      })
      await Promise.all(stale.map(async (entry) => {
        const torrent = entry.torrent as Torrent
        entry.torrent = undefined
        await closeTorrent(torrent)
      }))
      await forEachLimited(stale, LOAD_CONCURRENCY, async (entry) => {
        if (running.stopping.signal.aborted || running.entries.get(entry.infoHash) !== entry) return
        let info: TorrentInfo
        try {
          info = decodeTorrentFile(await readFile(this.#torrentPath(entry.infoHash)))
        } catch (err) {
          this.#log.error({ err, infoHash: entry.infoHash }, 'bittorrent: could not read a .torrent to seed it again')
          return
        }
        await this.#seed(running, entry, info)
      })
      if (stale.length > 0) this.#log.info({ contents: stale.length, trackers: announce }, 'bittorrent: contents seeding under new trackers')
      return stale.length
    }))
  }

  /**
   * Re-hash a stored content's data file against its piece hashes (a full read of the file).
   * Maintenance, not routine: see the module notes on how data is trusted.
   *
   * @returns true when every piece matches; false when the content is damaged or a piece differs
   * @throws NotFoundError when the content is not stored here
   */
  async verify (address: string, options: AbortOptions = {}): Promise<boolean> {
    const running = this.#state()
    const infoHash = parseInfoHash(address)
    const entry = infoHash === undefined ? undefined : running.entries.get(infoHash)
    if (entry === undefined) throw new NotFoundError(`${truncate(address)} is not stored on BitTorrent here`)
    if (entry.damaged !== undefined || await this.#checkDataFile(entry.infoHash, entry.size) !== undefined) return false
    const info = decodeTorrentFile(await readFile(this.#torrentPath(entry.infoHash)))
    const pieces = await hashPiecesOfFile(this.#dataPath(entry.infoHash), info.pieceLength, linkSignal(running.stopping.signal, options.signal))
    return Buffer.from(pieces).equals(Buffer.from(info.pieces))
  }

  /** Trackers and webseed for a content, from the current configuration. */
  #extras (infoHash: string): TorrentExtras {
    let base = ''
    try {
      base = this.#init.publicUrl().replace(/\/+$/, '')
    } catch (err) {
      // the gateway may not know its URL yet; a torrent without a webseed still works
      this.#log.warn({ err }, 'bittorrent: no public URL, leaving out the webseed')
    }
    return {
      announce: this.#announce(),
      urlList: base === '' ? [] : [`${base}/bt/${infoHash}`]
    }
  }

  /** The trackers of the current configuration, in order, without duplicates. */
  #announce (): readonly string[] {
    const announce = this.#init.announce
    return [...new Set(typeof announce === 'function' ? announce() : announce)]
  }

  #result (entry: Entry): BackendPutResult {
    return {
      address: entry.infoHash,
      size: entry.size,
      extra: {
        magnet: magnetLink(entry.infoHash, entry.name, entry.size, this.#extras(entry.infoHash)),
        torrent: this.#torrentPath(entry.infoHash)
      }
    }
  }

  #dataPath (infoHash: string): string {
    return join(this.#dataDir, infoHash)
  }

  #torrentPath (infoHash: string): string {
    return join(this.#torrentDir, `${infoHash}.torrent`)
  }

  async #trackWrite<T> (running: Running, work: Promise<T>): Promise<T> {
    running.writes.add(work)
    try {
      return await work
    } finally {
      running.writes.delete(work)
    }
  }

  #state (): Running {
    if (this.#running === undefined) throw new AtlasError('ServiceUnavailable', 'The BitTorrent backend is not started')
    return this.#running
  }
}

/**
 * Copy `source` into `handle` while hashing it: one batch is written (on libuv's thread pool)
 * while the next is pulled and hashed (on this thread), so the two overlap.
 */
async function writeAndHash (handle: FileHandle, source: AsyncIterable<Uint8Array>, hasher: TorrentHasher, release?: (chunk: Uint8Array) => void): Promise<void> {
  let batch: Uint8Array[] = []
  let batchBytes = 0
  let inFlight: Promise<void> | undefined
  try {
    for await (const chunk of source) {
      if (chunk.byteLength === 0) continue
      hasher.update(chunk)
      batch.push(chunk)
      batchBytes += chunk.byteLength
      if (batchBytes >= WRITE_BATCH_BYTES) {
        await inFlight
        inFlight = writeAll(handle, batch, release)
        // handled here so that a failing write is not reported as unhandled while the loop waits
        // on the source; the error still surfaces at the next `await inFlight`
        inFlight.catch(() => {})
        batch = []
        batchBytes = 0
      }
    }
    await inFlight
    if (batch.length > 0) await writeAll(handle, batch, release)
  } finally {
    // never return (and let the file be closed and deleted) while a write is still running
    await inFlight?.catch(() => {})
  }
}

/**
 * Write all of `chunks` at the file position, however many `writev` calls it takes, then hand
 * each chunk to `release`.
 */
async function writeAll (handle: FileHandle, chunks: Uint8Array[], release?: (chunk: Uint8Array) => void): Promise<void> {
  let pending = chunks
  while (pending.length > 0) {
    let { bytesWritten } = await handle.writev(pending)
    const rest: Uint8Array[] = []
    for (const chunk of pending) {
      if (bytesWritten >= chunk.byteLength) {
        bytesWritten -= chunk.byteLength
      } else {
        rest.push(bytesWritten === 0 ? chunk : chunk.subarray(bytesWritten))
        bytesWritten = 0
      }
    }
    pending = rest
  }
  // every byte is in the file, and the hasher took its share when the chunk arrived
  if (release !== undefined) for (const chunk of chunks) release(chunk)
}

/** The caller's SHA-256 of the source (see BackendPutOptions.sha256), which it must have by now. */
function sha256FromCaller (sha256: (() => string | undefined) | undefined): Uint8Array {
  const hex = sha256?.()
  if (hex === undefined || !/^[0-9a-f]{64}$/.test(hex)) throw new AtlasError('InternalError', 'The caller promised the SHA-256 of the content but did not provide it')
  return Buffer.from(hex, 'hex')
}

/** A FIFO async lock: `run()` calls execute one at a time, in call order. */
class Lock {
  #tail: Promise<unknown> = Promise.resolve()

  async run<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn)
    this.#tail = result.catch(() => {})
    return result
  }
}

async function forEachLimited<T> (items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await fn(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/** Resolves when WebTorrent has the torrent ready; rejects if it fails or closes first. */
async function whenReady (torrent: Torrent): Promise<void> {
  if (torrent.ready) return
  await new Promise<void>((resolve, reject) => {
    const settle = (err?: Error): void => {
      torrent.removeListener('ready', onReady)
      torrent.removeListener('error', onError)
      torrent.removeListener('close', onClose)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onReady = (): void => { settle() }
    const onError = (err: Error): void => { settle(err) }
    const onClose = (): void => { settle(new Error('The torrent was closed before it was ready')) }
    torrent.once('ready', onReady)
    torrent.once('error', onError)
    torrent.once('close', onClose)
  })
}

/**
 * Resolves when the torrent holds every piece, verified; rejects when it fails, closes, makes no
 * progress (no metadata, no downloaded byte) for `stallMs`, or `signal` aborts.
 */
async function whenDownloaded (torrent: Torrent, stallMs: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout
    const arm = (): void => {
      clearTimeout(timer)
      timer = setTimeout(() => { settle(new ContentUnavailableError(`No peer sent anything for ${stallMs} ms`)) }, stallMs)
    }
    // no peer at all is a quicker no than a stalled one
    const noPeerMs = Math.min(stallMs, NO_PEER_MS)
    const noPeer = setTimeout(() => {
      if (torrent.numPeers === 0) settle(new ContentUnavailableError(`No peer of the swarm was found in ${noPeerMs} ms`))
    }, noPeerMs)
    const settle = (err?: Error): void => {
      clearTimeout(timer)
      clearTimeout(noPeer)
      torrent.removeListener('done', onDone)
      torrent.removeListener('error', onError)
      torrent.removeListener('close', onClose)
      torrent.removeListener('download', arm)
      torrent.removeListener('metadata', arm)
      signal.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onDone = (): void => { settle() }
    const onError = (err: Error | string): void => { settle(typeof err === 'string' ? new Error(err) : err) }
    const onClose = (): void => { settle(new Error('The torrent was closed before it was downloaded')) }
    const onAbort = (): void => { settle(abortToAtlasError(signal.reason, signal) as Error) }
    arm()
    torrent.on('download', arm)
    torrent.once('metadata', arm)
    torrent.once('done', onDone)
    torrent.once('error', onError)
    torrent.once('close', onClose)
    signal.addEventListener('abort', onAbort, { once: true })
    if (torrent.done) settle()
  })
}

/** Remove a torrent from its client, keeping its files. */
async function closeTorrent (torrent: Torrent): Promise<void> {
  if (torrent.destroyed) return
  await new Promise<void>((resolve) => { torrent.destroy({ destroyStore: false }, () => { resolve() }) })
}

async function destroyClient (client: WebTorrent): Promise<void> {
  if (client.destroyed) return
  await new Promise<void>((resolve) => {
    client.destroy(() => { resolve() })
  })
}

function sameList (a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i])
}

/** The v1 infohash (lowercase hex) an address names, or undefined when it names none. */
function parseInfoHash (address: string): string | undefined {
  try {
    const parsed = parseAnyAddress(address)
    return parsed.kind === 'btih' ? parsed.infohash : undefined
  } catch {
    return undefined
  }
}

function truncate (s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}
