/**
 * The object store: the one place where objects (bucket + key) meet contents (bytes by canonical
 * id) and backends. Uploads go through the ingest pipeline and become visible when their metadata
 * row commits; reads pick a backend that holds the content; data that no object refers to any
 * more is removed from the backends by the sweeper.
 */
import type { BackendName, StorageBackend } from '../backends/backend.ts'
import { parseAddress } from '../core/content-id.ts'
import { AbortedError, AtlasError, ContentUnavailableError, NotFoundError, isAbortError } from '../core/errors.ts'
import { raceAbort } from '../backends/signals.ts'
import type { Bucket, Content, ContentLocation, MetadataStore, ObjectRecord, PutObjectInput, PutObjectResult, TagsInput } from '../metadata/store.ts'
import { DigestPool } from './digest-pool.ts'
import { IngestGate } from './gate.ts'
import type { StagingArea } from './staging.ts'
import { ingest } from './ingest.ts'

export interface Logger {
  info(obj: unknown, msg?: string): void
  warn(obj: unknown, msg?: string): void
  error(obj: unknown, msg?: string): void
  debug(obj: unknown, msg?: string): void
}

export interface ObjectStoreInit {
  metadata: MetadataStore
  backends: StorageBackend[]
  /** Largest accepted object in bytes */
  maxObjectSize: number
  logger: Logger
  /** Where multipart parts wait; their files go when a bucket's uploads are aborted */
  staging?: StagingArea
  /** How often the sweeper looks for unreferenced content. @default 30_000 ms */
  sweepIntervalMs?: number
  /**
   * Asked before an upload's body is read (with its declared size, when known) and before a
   * copy; throwing refuses it with nothing stored (billing's storage runway).
   */
  admitUpload?: (bucket: Bucket, size: number | undefined) => Promise<void>
}

export interface PutObjectOptions {
  bucket: Bucket
  key: string
  body: AsyncIterable<Uint8Array>
  /** Content-Length, when the client sent one */
  expectedSize?: number
  /** Content-MD5 as hex */
  expectedMd5?: string
  contentType?: string
  metadata?: Record<string, string>
  tags?: TagsInput
  /**
   * Checksums of the bytes (algorithm → base64), asked for once the body has been consumed and
   * verified, so that a layer that computes them as bytes pass can hand them over.
   */
  checksums?: () => Record<string, string>
  /** The ETag to store instead of the body's MD5 (multipart uploads: md5-of-md5s-N) */
  etag?: string
  /** Largest accepted body @default the store's maxObjectSize */
  maxSize?: number
  /**
   * How the object row is committed. @default metadata.putObject; CompleteMultipartUpload
   * commits and ends its upload in one transaction instead.
   */
  commit?: (input: PutObjectInput) => Promise<PutObjectResult>
  signal?: AbortSignal
}

export interface CopyObjectOptions {
  /** The source, as read before the copy; it is read again inside the copy */
  source: StoredObject
  bucket: Bucket
  key: string
  contentType?: string
  metadata: Record<string, string>
  tags?: TagsInput
  signal?: AbortSignal
}

export interface StoredObject {
  object: ObjectRecord
  content: Content
}

export interface ReadOptions {
  offset?: number
  length?: number
  signal?: AbortSignal
}

/** Rows the sweeper handles per pass */
const SWEEP_BATCH = 100

/** How long after a failed background read repair the same copy is not tried again. */
const REPAIR_RETRY_MS = 60_000

/** Failed repairs remembered at most (the memory is cleared when full). */
const MAX_REMEMBERED_REPAIR_FAILURES = 10_000

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream'

export class ObjectStore {
  readonly metadata: MetadataStore
  private readonly backends: Map<BackendName, StorageBackend>
  private readonly maxObjectSize: number
  private readonly log: Logger
  private readonly gate = new IngestGate()
  /** Locations written by uploads that failed; checked against the metadata at the next sweep */
  private discarded: ContentLocation[] = []
  private readonly sweepIntervalMs: number
  private readonly staging: StagingArea | undefined
  private readonly admitUpload: ((bucket: Bucket, size: number | undefined) => Promise<void>) | undefined
  private readonly digestPool = new DigestPool()
  private timer: NodeJS.Timeout | undefined
  private sweepRequested: NodeJS.Immediate | undefined
  private currentSweep: Promise<void> | undefined
  /** Compare what the backends retain with the metadata once, at the first sweep after start */
  private reconcilePending = false
  /** Read repairs in flight, by `backend:address` */
  private readonly repairs = new Map<string, Promise<void>>()
  /** When a background repair last failed, by `backend:address`: not retried before REPAIR_RETRY_MS */
  private readonly repairFailures = new Map<string, number>()
  /** Aborted by stop(): ends repairs in flight */
  private readonly stopping = new AbortController()

  constructor (init: ObjectStoreInit) {
    this.metadata = init.metadata
    this.backends = new Map(init.backends.map((b) => [b.name, b]))
    this.maxObjectSize = init.maxObjectSize
    this.log = init.logger
    this.sweepIntervalMs = init.sweepIntervalMs ?? 30_000
    this.staging = init.staging
    this.admitUpload = init.admitUpload
  }

  /** Backends this store was built with, by name */
  backend (name: BackendName): StorageBackend | undefined {
    return this.backends.get(name)
  }

  get availableBackends (): BackendName[] {
    return [...this.backends.keys()]
  }

  /** Start the periodic sweeper (and run one pass now, which also finishes interrupted work). */
  start (): void {
    this.reconcilePending = true
    this.timer = setInterval(() => { this.requestSweep() }, this.sweepIntervalMs)
    this.timer.unref()
    this.requestSweep()
  }

  async stop (): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    if (this.sweepRequested !== undefined) clearImmediate(this.sweepRequested)
    this.stopping.abort(new AbortedError('The object store is stopping'))
    await Promise.allSettled([...this.repairs.values()])
    await this.currentSweep
    await this.digestPool.close()
  }

  /** Uploads in flight (for graceful shutdown and metrics) */
  get uploadsInFlight (): number {
    return this.gate.inFlight
  }

  /**
   * Stream `body` into the bucket's backends and commit the object. Until the commit nothing is
   * visible; on any failure nothing is.
   */
  async putObject (options: PutObjectOptions): Promise<StoredObject> {
    const backends = this.backendsFor(options.bucket)
    await this.admitUpload?.(options.bucket, options.expectedSize)
    const leave = await this.gate.enter()
    try {
      const result = await ingest(options.body, {
        backends,
        expectedSize: options.expectedSize,
        expectedMd5: options.expectedMd5,
        maxSize: options.maxSize ?? this.maxObjectSize,
        signal: options.signal,
        digestPool: this.digestPool,
        discard: (locations) => { this.discard(locations) }
      })
      let committed
      try {
        const commit = options.commit ?? (async (input: PutObjectInput) => await this.metadata.putObject(input))
        committed = await commit({
          bucket: options.bucket.name,
          key: options.key,
          content: { id: result.contentId, size: result.size, locations: result.locations },
          etag: options.etag ?? result.md5,
          contentType: options.contentType ?? DEFAULT_CONTENT_TYPE,
          metadata: options.metadata ?? {},
          tags: options.tags,
          checksums: options.checksums?.() ?? {}
        })
      } catch (err) {
        this.discard(result.locations)
        throw err
      }
      if (committed.orphaned !== null) this.requestSweep()
      const content = await this.metadata.getContent(result.contentId)
      if (content === null) throw new AtlasError('InternalError', 'Content row vanished after commit')
      return { object: committed.object, content }
    } finally {
      leave()
    }
  }

  /**
   * Point (bucket, key) at the source's content. No bytes move when the content already lives
   * on every backend of the destination bucket; otherwise it is streamed once into the backends
   * it lacks.
   */
  async copyObject (options: CopyObjectOptions): Promise<StoredObject> {
    await this.admitUpload?.(options.bucket, options.source.content.size)
    const leave = await this.gate.enter()
    try {
      // read the source again inside the gate: from here on no sweep can remove its content
      const source = await this.getObject(options.source.object.bucket, options.source.object.key)
      if (source.content.id !== options.source.content.id) {
        throw new AtlasError('PreconditionFailed', 'The source object changed during the copy')
      }
      const have = new Set(source.content.locations.map((l) => l.backend))
      const lacking = this.backendsFor(options.bucket).filter((b) => !have.has(b.name))
      let locations = source.content.locations
      if (lacking.length > 0) {
        const result = await ingest(this.read(source.content, { signal: options.signal }), {
          backends: lacking,
          expectedSize: source.content.size,
          maxSize: Number.MAX_SAFE_INTEGER,
          signal: options.signal,
          discard: (l) => { this.discard(l) }
        })
        if (result.contentId !== source.content.id) {
          this.discard(result.locations)
          throw new AtlasError('InternalError', 'The source content did not hash to its id')
        }
        locations = [...locations, ...result.locations]
      }
      const committed = await this.metadata.putObject({
        bucket: options.bucket.name,
        key: options.key,
        content: { id: source.content.id, size: source.content.size, locations },
        etag: source.object.etag,
        contentType: options.contentType ?? DEFAULT_CONTENT_TYPE,
        metadata: options.metadata,
        tags: options.tags,
        checksums: source.object.checksums
      })
      if (committed.orphaned !== null) this.requestSweep()
      const content = await this.metadata.getContent(source.content.id)
      if (content === null) throw new AtlasError('InternalError', 'Content row vanished after commit')
      return { object: committed.object, content }
    } finally {
      leave()
    }
  }

  /** Delete an empty bucket; multipart uploads in progress in it are aborted. */
  async deleteBucket (name: string): Promise<void> {
    const { abortedParts } = await this.metadata.deleteBucket(name)
    await this.staging?.release(abortedParts.map((p) => p.stagingPath))
  }

  async getObject (bucket: string, key: string): Promise<StoredObject> {
    const object = await this.metadata.getObject(bucket, key)
    if (object === null) throw new AtlasError('NoSuchKey', 'The specified key does not exist.')
    const content = await this.metadata.getContent(object.contentId)
    if (content === null) throw new AtlasError('InternalError', 'Object refers to a missing content')
    return { object, content }
  }

  async deleteObject (bucket: string, key: string): Promise<ObjectRecord | null> {
    const deleted = await this.metadata.deleteObject(bucket, key)
    if (deleted?.orphaned != null) this.requestSweep()
    return deleted?.object ?? null
  }

  /**
   * Find the content behind any address form (canonical id, UnixFS CID, sha256:, btih, magnet).
   * @throws AtlasError InvalidAddress, NoSuchContent
   */
  async resolve (address: string): Promise<Content> {
    const parsed = parseAddress(address)
    let content: Content | null
    switch (parsed.kind) {
      case 'canonical':
        content = await this.metadata.getContent(parsed.id)
        break
      case 'ipfs':
        content = await this.metadata.getContentByAddress(parsed.cid)
        break
      case 'btih':
      case 'btmh':
        content = await this.metadata.getContentByAddress(parsed.infohash)
        break
    }
    if (content === null) throw new AtlasError('NoSuchContent', `No content is stored at ${address}`)
    return content
  }

  /**
   * Stream a content, or a slice of it, from the first backend that holds it locally, with read
   * repair (DESIGN.md section 3): a backend whose local copy is missing (a lost file or block,
   * or a content another replica stored) is noted; when another backend serves the read, the
   * missing copies are repaired in the background; when none can, the first backend that can
   * fetch the content from its network (Bitswap, the swarm), verified by hash, is repaired
   * first and then serves it.
   * @throws NotFoundError / ContentUnavailableError when no backend can deliver it
   */
  read (content: Content, options: ReadOptions = {}): AsyncIterable<Uint8Array> {
    const locations = content.locations.filter((l) => this.backends.has(l.backend))
    if (locations.length === 0) throw new NotFoundError(`No configured backend holds ${content.id}`)
    const store = this
    return (async function * () {
      let lastError: unknown
      const missing: ContentLocation[] = []
      const attempt = async function * (location: ContentLocation): AsyncGenerator<Uint8Array, boolean, undefined> {
        const backend = store.backends.get(location.backend) as StorageBackend
        let started = false
        try {
          for await (const chunk of backend.get(location.address, options)) {
            started = true
            yield chunk
          }
          return true
        } catch (err) {
          // once bytes have left, switching backends would splice two streams: give up instead
          if (started || isAbortError(err)) throw err
          lastError = err
          return false
        }
      }
      for (const location of locations) {
        if (yield * attempt(location)) {
          store.repairLater(content, missing)
          return
        }
        if (lastError instanceof NotFoundError || lastError instanceof ContentUnavailableError) missing.push(location)
      }
      for (const [i, location] of missing.entries()) {
        try {
          await store.repair(content, location, options.signal)
        } catch (err) {
          if (isAbortError(err)) throw err
          lastError = err
          continue
        }
        if (yield * attempt(location)) {
          store.repairLater(content, missing.slice(i + 1))
          return
        }
      }
      throw lastError
    })()
  }

  /**
   * Fetch one missing copy of a content from its backend's network and retain it again (one
   * repair per copy at a time). Sweeps wait while it runs, as they wait for uploads.
   */
  private async repair (content: Content, location: ContentLocation, signal?: AbortSignal): Promise<void> {
    const key = `${location.backend}:${location.address}`
    let repair = this.repairs.get(key)
    if (repair === undefined) {
      const backend = this.backends.get(location.backend) as StorageBackend
      repair = (async () => {
        const leave = await this.gate.enter()
        try {
          await backend.repair(location.address, { contentId: content.id, size: content.size, signal: this.stopping.signal })
          this.log.info({ content: content.id, backend: location.backend }, 'read repair: fetched a missing copy from the network')
        } finally {
          leave()
        }
      })().finally(() => { this.repairs.delete(key) })
      this.repairs.set(key, repair)
    }
    await (signal === undefined ? repair : raceAbort(repair, signal))
  }

  /**
   * Stop retaining contents on every backend (unpin, stop seeding) while keeping their metadata:
   * what billing does to the content of an account suspended for lack of funds. Reads of them
   * then fail (or are repaired from the network, where a peer still has them); storing the same
   * bytes again retains them again.
   *
   * @returns the number of backend copies released
   */
  async releaseContents (ids: string[]): Promise<number> {
    let released = 0
    await this.gate.exclusive(async () => {
      for (const id of ids) {
        const content = await this.metadata.getContent(id)
        if (content === null) continue
        for (const location of content.locations) {
          const backend = this.backends.get(location.backend)
          if (backend === undefined) continue
          await backend.remove(location.address)
          released++
        }
      }
    })
    return released
  }

  /** Repair missing copies without holding up the read that found them missing. */
  private repairLater (content: Content, missing: ContentLocation[]): void {
    const now = Date.now()
    for (const location of missing) {
      const key = `${location.backend}:${location.address}`
      if (now - (this.repairFailures.get(key) ?? -Infinity) < REPAIR_RETRY_MS) continue
      this.repair(content, location).then(() => { this.repairFailures.delete(key) }, (err: unknown) => {
        if (this.repairFailures.size >= MAX_REMEMBERED_REPAIR_FAILURES) this.repairFailures.clear()
        this.repairFailures.set(key, Date.now())
        this.log.warn({ err, content: content.id, backend: location.backend }, 'read repair: a missing copy could not be fetched')
      })
    }
  }

  private backendsFor (bucket: Bucket): StorageBackend[] {
    return bucket.backends.map((name) => {
      const backend = this.backends.get(name)
      if (backend === undefined) {
        throw new AtlasError('ServiceUnavailable', `Backend ${name} of bucket ${bucket.name} is not enabled on this gateway`)
      }
      return backend
    })
  }

  private discard (locations: ContentLocation[]): void {
    this.discarded.push(...locations)
    this.requestSweep()
  }

  /** Ask for a sweep soon; several requests coalesce into one pass. */
  requestSweep (): void {
    if (this.sweepRequested !== undefined) return
    this.sweepRequested = setImmediate(() => {
      this.sweepRequested = undefined
      void this.sweep().catch((err: unknown) => { this.log.error({ err }, 'sweep failed') })
    })
  }

  /**
   * Remove from the backends what no object refers to: contents whose count dropped to zero and
   * the leftovers of failed uploads. Runs between uploads (see IngestGate), one pass at a time.
   */
  async sweep (): Promise<void> {
    if (this.currentSweep !== undefined) {
      await this.currentSweep
      return
    }
    this.currentSweep = this.gate.exclusive(async () => { await this.sweepPass() })
    try {
      await this.currentSweep
    } finally {
      this.currentSweep = undefined
    }
  }

  private async sweepPass (): Promise<void> {
    if (this.reconcilePending) {
      this.reconcilePending = false
      await this.reconcile()
    }
    const discarded = this.discarded.splice(0)
    for (const location of discarded) {
      const owner = await this.metadata.getContentByAddress(location.address)
      if (owner !== null) continue
      await this.removeLocation(location)
    }
    for (;;) {
      const orphans = await this.metadata.listOrphanedContents(SWEEP_BATCH)
      if (orphans.length === 0) break
      let removed = 0
      for (const content of orphans) {
        for (const location of content.locations) await this.removeLocation(location)
        if (await this.metadata.deleteContentIfOrphaned(content.id)) {
          removed++
          this.log.debug({ contentId: content.id }, 'removed unreferenced content')
        }
      }
      if (removed === 0 || orphans.length < SWEEP_BATCH) break
    }
  }

  /**
   * Release what a backend retains but no content row names: the bytes of an upload that the
   * process died with after the backends accepted it and before its metadata commit. Runs with
   * no upload in flight (see IngestGate), so nothing in progress can be mistaken for a leftover.
   */
  private async reconcile (): Promise<void> {
    for (const backend of this.backends.values()) {
      const leftovers: string[] = []
      for await (const address of backend.list()) {
        if (await this.metadata.getContentByAddress(address) === null) leftovers.push(address)
      }
      // removed after the listing, which may walk the very records a removal deletes
      for (const address of leftovers) await this.removeLocation({ backend: backend.name, address, extra: {} })
      if (leftovers.length > 0) this.log.info({ backend: backend.name, released: leftovers.length }, 'released content that no object refers to')
    }
  }

  private async removeLocation (location: ContentLocation): Promise<void> {
    const backend = this.backends.get(location.backend)
    if (backend === undefined) return
    try {
      await backend.remove(location.address)
    } catch (err) {
      this.log.warn({ err, backend: location.backend, address: location.address }, 'could not remove content from backend')
    }
  }
}
