/**
 * The StorageBackend interface (DESIGN.md section 3). Every network Atlas stores on implements
 * it, and test/compliance/backend.ts is the suite every implementation must pass.
 *
 * Data moves as async iterables of `Uint8Array`; every call takes an optional `AbortSignal`.
 * A backend addresses content by its own native address (a UnixFS CID, a BitTorrent infohash)
 * and reports it from `put()`; the object store keeps the mapping to the canonical id.
 */

export type BackendName = 'ipfs' | 'bittorrent'

export const BACKEND_NAMES: readonly BackendName[] = ['ipfs', 'bittorrent']

/** The part of a pino logger a backend uses. */
export interface BackendLogger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
  debug(obj: object, msg?: string): void
}

export interface AbortOptions {
  signal?: AbortSignal
}

export interface BackendPutOptions extends AbortOptions {
  /** The canonical content id, when the caller knows it up front (it usually does not) */
  contentId?: string
  /** Expected size in bytes, when known; a backend may use it to choose a layout */
  size?: number
  /**
   * The SHA-256 (hex) of every byte the source yielded, available once the source has ended:
   * a caller that hashes the bytes anyway (the ingest) spares a backend that needs the whole
   * content's hash from computing it again. Returns undefined when it does not have it.
   */
  sha256?: () => string | undefined
  /**
   * Told, optionally, that the backend will never read a chunk of the source again (its bytes are
   * written or copied): the caller may then free the chunk's memory at once instead of leaving it
   * to the garbage collector. A backend calls it at most once per chunk, with the very object the
   * source yielded, and never touches the chunk afterwards; one that never calls it is correct.
   */
  release?: (chunk: Uint8Array) => void
}

export interface BackendPutResult {
  /** The backend's native address for the bytes (UnixFS root CID, v1 infohash…) */
  address: string
  /** Bytes the backend consumed */
  size: number
  /** Further native addresses (for example `magnet`, `btmh`), keyed by kind */
  extra?: Record<string, string>
}

export interface BackendRepairOptions extends AbortOptions {
  /** The canonical content id, when known (a backend may need it to ask the network) */
  contentId?: string
  /** The content's size in bytes, when known */
  size?: number
}

export interface BackendGetOptions extends AbortOptions {
  /** First byte to return @default 0 */
  offset?: number
  /** Number of bytes to return @default the rest of the content */
  length?: number
}

export interface BackendStats {
  /** Contents the backend retains (pinned roots, seeded torrents) */
  contents: number
  /** Bytes on disk, where the backend can tell */
  bytes: number
}

export interface StorageBackend {
  readonly name: BackendName

  start(): Promise<void>
  stop(): Promise<void>

  /**
   * Store the bytes of `source` and retain them (pin, seed) until `remove()`. The source is
   * consumed exactly once. When the returned promise rejects, nothing is retained for that call.
   * Putting bytes that are already retained is allowed and returns the same address.
   */
  put(source: AsyncIterable<Uint8Array>, options?: BackendPutOptions): Promise<BackendPutResult>

  /**
   * Stream the content at `address`, or a slice of it.
   *
   * @throws NotFoundError when the backend does not know the address
   * @throws ContentUnavailableError when it knows it but cannot read it now
   */
  get(address: string, options?: BackendGetOptions): AsyncIterable<Uint8Array>

  /** True when the content is retained locally and readable without the network. */
  has(address: string, options?: AbortOptions): Promise<boolean>

  /**
   * Read repair: fetch the content at `address` from the backend's network (Bitswap peers, the
   * BitTorrent swarm), check every byte against the address, and retain it here again, as
   * `put()` would have. For content this node lost (a deleted file, a missing block) or never
   * stored (another replica stored it). Resolves once `has(address)` is true; a content that is
   * already whole here resolves at once. Fetching gives up when it makes no progress for a while
   * (a backend's own bound) or when the signal aborts.
   *
   * @throws ContentUnavailableError when the network cannot provide it (offline, no peer has it)
   * @throws AtlasError `InvalidAddress` when `address` is not one of the backend's addresses
   */
  repair(address: string, options?: BackendRepairOptions): Promise<void>

  /** Stop retaining the content and reclaim its space. Removing an unknown address is a no-op. */
  remove(address: string, options?: AbortOptions): Promise<void>

  stats(options?: AbortOptions): Promise<BackendStats>

  /**
   * Every address the backend retains. The object store compares this with the metadata at
   * start, to release what a crash left retained but never committed.
   */
  list(options?: AbortOptions): AsyncIterable<string>
}
