/**
 * The IPFS storage backend (DESIGN.md section 3): Helia over an on-disk block store and
 * datastore, UnixFS files under the fixed profile of `profile.ts`, contents retained by Atlas's
 * own pin index (`pin-index.ts`) and served to other IPFS nodes over Bitswap.
 *
 * Networking is opt-in and closed by default: with `offline` there is no libp2p at all; without
 * it, libp2p listens where told, dials only the `bootstrap` peers and runs Bitswap and Identify.
 * No DHT, no mDNS, no public bootstrap list, no delegated HTTP routing, no HTTP gateways.
 *
 * Reads are local only for now: a content that is not retained here is `NotFoundError`, a block
 * missing under a retained root is `ContentUnavailableError`; nothing waits on the network.
 */
import { createHash } from 'node:crypto'
import { lstat, mkdir, opendir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { KEEP_ALIVE } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { FsBlockstore } from 'blockstore-fs'
import { FsDatastore } from 'datastore-fs'
import { createHeliaLight } from 'helia'
import * as dagPb from '@ipld/dag-pb'
import { base32 } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { AbortedError, AtlasError, ContentUnavailableError, NotFoundError } from '../../core/errors.ts'
import { collect } from '../../core/streams.ts'
import { abortable, abortToAtlasError, checkRange, linkSignal } from '../signals.ts'
import { BlockGuard, Mutex } from './block-guard.ts'
import { dagBlocks } from './dag.ts'
import { walkDag, type DagBlock, type FileRange } from './dag-walk.ts'
import { libp2pOptions, loadOrCreatePeerKey } from './libp2p.ts'
import { PinIndex, blockKey, rootKey } from './pin-index.ts'
import { importUnixfs } from './profile.ts'
import { readUnixfsFile, unmarshalFile } from './reader.ts'
import type { AbortOptions, BackendLogger, BackendGetOptions, BackendPutOptions, BackendPutResult, BackendRepairOptions, BackendStats, StorageBackend } from '../backend.ts'
import type { AtlasLibp2pServices } from './libp2p.ts'
import type { Helia } from 'helia'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { WritableStorage } from 'ipfs-unixfs-importer'

/** The part of a pino logger the backend uses. */
export type IpfsBackendLogger = BackendLogger

/** Constructor options of {@link IpfsBackend}. */
export interface IpfsBackendInit {
  /** The backend's own directory (e.g. `<data>/ipfs`): `blocks/`, `datastore/` and `peer.key` */
  dataDir: string
  /** Multiaddrs to listen on, e.g. `/ip4/127.0.0.1/tcp/4001` (`tcp/0` picks a free port) */
  listen: string[]
  /** Multiaddrs with a `/p2p/<peer id>` part: dialled at start and kept connected */
  bootstrap: string[]
  /** No networking at all: no libp2p, no Bitswap, nothing listens or dials */
  offline: boolean
  logger?: IpfsBackendLogger
  /**
   * How often to redial bootstrap peers that are not connected, in milliseconds. libp2p itself
   * redials a kept-alive peer a few times after a disconnect; this catches the rest.
   *
   * @default 30000
   */
  redialIntervalMs?: number
  /**
   * Run {@link IpfsBackend.collectGarbage} in the background after start, to reclaim what a
   * crash left behind (blocks of an import that never got retained, half-written files).
   *
   * @default true
   */
  collectGarbageOnStart?: boolean
  /**
   * How long {@link IpfsBackend.repair} waits for the next block from the network before it
   * gives up, in milliseconds.
   *
   * @default 20000
   */
  repairStallMs?: number
}

/** Per-call options of {@link IpfsBackend.dagExport}. */
export interface DagExportOptions extends AbortOptions {
  /**
   * Yield a block each time the walk meets it (CAR `dups=y`), not just the first time
   *
   * @default false
   */
  duplicates?: boolean
  /** Only the blocks needed for these bytes of the file at the root (CAR `entity-bytes`) */
  range?: FileRange
}

const DEFAULT_REDIAL_INTERVAL_MS = 30_000

/** How long a repair waits for the next block before it gives up. */
const DEFAULT_REPAIR_STALL_MS = 20_000

/** Tag that asks libp2p to keep a connection to a bootstrap peer (and redial it). */
const BOOTSTRAP_TAG = `${KEEP_ALIVE}-atlas-bootstrap`

const NOOP_LOGGER: IpfsBackendLogger = { info () {}, warn () {}, error () {}, debug () {} }

interface Running {
  helia: Helia
  libp2p: Libp2p<AtlasLibp2pServices> | undefined
  blocks: FsBlockstore
  datastore: FsDatastore
  pins: PinIndex
  peerId: PeerId
  /** Aborted by stop(): every call in flight listens to it */
  stopping: AbortController
  /** Writes in flight (puts, removes), awaited by stop() */
  writes: Set<Promise<unknown>>
  redialTimer: NodeJS.Timeout | undefined
  /** When start() began: temporary files older than this are left over from a crash */
  startedAt: number
}

interface BootstrapPeer {
  peerId: PeerId
  address: Multiaddr
}

/**
 * {@link StorageBackend} on IPFS.
 *
 * Addresses are UnixFS root CIDs (CIDv1, base32) under the profile of `profile.ts`; a content of
 * at most 1 MiB has its canonical id as address. Retention is one pin per address: putting bytes
 * that are already retained returns the same address and does not add a second reference, and
 * one `remove()` releases them (the object store counts references across keys).
 */
export class IpfsBackend implements StorageBackend {
  readonly name = 'ipfs'

  readonly #init: IpfsBackendInit
  readonly #log: IpfsBackendLogger
  /** Serialises changes to the pin index and block deletions */
  readonly #mutex = new Mutex()
  readonly #guard = new BlockGuard()
  #running: Running | undefined
  #starting: Promise<void> | undefined

  constructor (init: IpfsBackendInit) {
    this.#init = init
    this.#log = init.logger ?? NOOP_LOGGER
  }

  /** Open the stores, load or create the peer identity and, unless offline, go online. */
  async start (): Promise<void> {
    if (this.#running !== undefined) return
    this.#starting ??= this.#start().finally(() => { this.#starting = undefined })
    await this.#starting
  }

  async #start (): Promise<void> {
    const startedAt = Date.now()
    const { dataDir, offline } = this.#init
    const bootstrap = offline ? [] : this.#init.bootstrap.map(parseBootstrap)
    await mkdir(dataDir, { recursive: true })
    const blocks = new FsBlockstore(join(dataDir, 'blocks'))
    const datastore = new FsDatastore(join(dataDir, 'datastore'))
    await blocks.open()
    await datastore.open()
    const privateKey: PrivateKey = await loadOrCreatePeerKey(join(dataDir, 'peer.key'))

    let helia: Helia = createHeliaLight({ blockstore: blocks, datastore })
    if (!offline) {
      // libp2p exactly as libp2p.ts builds it (withLibp2pLight adds nothing), Bitswap as the only
      // block broker, libp2p as the only router (it has no content routers: no DHT)
      helia = withBitswap(withLibp2pLight(helia, libp2pOptions({ privateKey, datastore, listen: this.#init.listen })))
    }
    const pins = new PinIndex(datastore)
    try {
      await helia.start()
      await pins.open()
    } catch (err) {
      await helia.stop().catch(() => {})
      await blocks.close()
      await datastore.close()
      throw err
    }
    const libp2p = offline ? undefined : (helia as Helia & { libp2p: Libp2p<AtlasLibp2pServices> }).libp2p

    const running: Running = {
      helia,
      libp2p,
      blocks,
      datastore,
      pins,
      peerId: peerIdFromPrivateKey(privateKey),
      stopping: new AbortController(),
      writes: new Set(),
      redialTimer: undefined,
      startedAt
    }
    this.#running = running

    if (libp2p !== undefined && bootstrap.length > 0) {
      const connect = (): void => { this.#connectBootstrap(libp2p, bootstrap) }
      connect()
      running.redialTimer = setInterval(connect, this.#init.redialIntervalMs ?? DEFAULT_REDIAL_INTERVAL_MS)
      running.redialTimer.unref()
    }
    this.#log.info({ peerId: running.peerId.toString(), multiaddrs: this.multiaddrs(), offline, contents: pins.size }, 'ipfs backend started')

    if (this.#init.collectGarbageOnStart !== false) {
      // in the background: a large store takes a while, and puts and removes queue behind it
      this.collectGarbage({ signal: running.stopping.signal }).catch(err => {
        if (!running.stopping.signal.aborted) this.#log.error({ err }, 'ipfs: garbage collection at start failed')
      })
    }
  }

  /** Abort calls in flight, wait for writes to unwind, then close Helia, libp2p and the stores. */
  async stop (): Promise<void> {
    await this.#starting?.catch(() => {})
    const running = this.#running
    if (running === undefined) return
    this.#running = undefined
    clearInterval(running.redialTimer)
    running.stopping.abort(new AbortedError('The IPFS backend is stopping'))
    await Promise.allSettled([...running.writes])
    await this.#mutex.run(async () => {})
    await running.helia.stop()
    await running.blocks.close()
    await running.datastore.close()
    this.#log.info({}, 'ipfs backend stopped')
  }

  /** True between a successful `start()` and `stop()`. */
  isStarted (): boolean {
    return this.#running !== undefined
  }

  /** The node's PeerId (stable across restarts: the key lives in `<dataDir>/peer.key`). */
  peerId (): string {
    return this.#state().peerId.toString()
  }

  /** The addresses the node listens on, each ending in `/p2p/<peer id>`; empty when offline. */
  multiaddrs (): string[] {
    return this.#state().libp2p?.getMultiaddrs().map(ma => ma.toString()) ?? []
  }

  /** The peer ids of the IPFS nodes connected now (those Bitswap asks during a repair). */
  connectedPeers (): string[] {
    const connections = this.#state().libp2p?.getConnections() ?? []
    return [...new Set(connections.map(c => c.remotePeer.toString()))]
  }

  /**
   * Import `source` as a UnixFS file under the profile, writing blocks as chunks complete (memory
   * stays at about a dozen 1 MiB chunks), then retain its root. Retaining walks the new DAG's
   * dag-pb nodes and bumps one count file per block: about 0.1 s per 256 MiB.
   *
   * A put that fails, is aborted or is cut short by `stop()` rejects only after deleting the
   * blocks it wrote that nothing else needs.
   */
  async put (source: AsyncIterable<Uint8Array>, options: BackendPutOptions = {}): Promise<BackendPutResult> {
    const running = this.#state()
    const signal = linkSignal(running.stopping.signal, options.signal)
    return this.#trackWrite(running, this.#put(running, source, signal, options.release))
  }

  async #put (running: Running, source: AsyncIterable<Uint8Array>, signal: AbortSignal, release?: (chunk: Uint8Array) => void): Promise<BackendPutResult> {
    const { helia, pins, blocks } = running
    const guard = this.#guard
    /** Every block the import wrote or found present, held until retained or given up */
    const touched = new Map<string, CID>()
    const writes = new Set<Promise<unknown>>()
    let abandoned = false
    let size = 0
    let retained: Map<string, CID> | undefined

    const store: WritableStorage = {
      async put (cid, bytes) {
        if (abandoned) throw new AbortedError('The import was abandoned')
        signal.throwIfAborted()
        const key = blockKey(cid)
        if (!touched.has(key)) {
          touched.set(key, cid)
          guard.hold(key)
        }
        await guard.settled(key)
        const write = Promise.resolve(helia.blockstore.put(cid, bytes, { signal }))
        writes.add(write)
        try {
          return await write
        } finally {
          writes.delete(write)
        }
      }
    }

    try {
      const root = await importUnixfs(abortable(source, signal, n => { size += n }), store, {}, release)
      const result = await this.#mutex.run(async () => {
        signal.throwIfAborted()
        const dag = await dagBlocks(blocks, root, { signal })
        await pins.pin(root, dag.keys(), { size, pinnedAt: Date.now() })
        retained = dag
        return { address: rootKey(root), size }
      })
      this.#log.debug({ address: result.address, size }, 'ipfs put')
      return result
    } catch (err) {
      throw abortToAtlasError(err, signal)
    } finally {
      abandoned = true
      // the importer may still have block writes under way after it failed: let them land first
      await Promise.allSettled([...writes])
      // retained blocks are safe from the collector by their counts now; the rest go (all of a
      // failed put's, and any block a successful import wrote outside its DAG)
      for (const key of touched.keys()) guard.release(key)
      const strays = [...touched].filter(([key]) => retained?.has(key) !== true)
      if (strays.length > 0) {
        await this.#mutex.run(async () => {
          for (const [key, cid] of strays) await this.#collect(running, key, cid)
        }).catch(err => {
          this.#log.error({ err }, 'ipfs put: could not delete the blocks of an abandoned import')
        })
      }
    }
  }

  /**
   * Stream a retained content, or the slice `[offset, offset + length)` of it (clamped to its
   * size), from the local store only, reading blocks as the consumer pulls.
   *
   * @throws AtlasError `InvalidAddress` when `address` is not a CID, `InvalidArgument` for a
   * negative or fractional offset or length
   * @throws NotFoundError when the content is not retained here
   * @throws ContentUnavailableError when a block of it is missing or damaged
   */
  async * get (address: string, options: BackendGetOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    const running = this.#state()
    const { offset, length } = checkRange(options)
    const root = parseAddress(address)
    if (root === undefined) throw new AtlasError('InvalidAddress', `${truncate(address)} is not a CID`)
    if (!await running.pins.isPinned(root)) throw new NotFoundError(`${rootKey(root)} is not stored on IPFS here`)
    const signal = linkSignal(running.stopping.signal, options.signal)
    // local only: `offline` makes Helia throw on a missing block instead of asking Bitswap
    async function * readBlock (cid: CID, opts: AbortOptions): AsyncGenerator<Uint8Array, void, undefined> {
      yield * running.helia.blockstore.get(cid, { signal: opts.signal, offline: true })
    }
    try {
      for await (const chunk of readUnixfsFile(readBlock, root, { offset, length, signal })) {
        signal.throwIfAborted()
        yield chunk
      }
    } catch (err) {
      const mapped = abortToAtlasError(err, signal)
      if (mapped instanceof AtlasError) throw mapped
      const name = (err as Error).name
      if (name === 'BlockNotFoundWhileOfflineError' || name === 'NotFoundError') {
        throw new ContentUnavailableError(`A block of ${rootKey(root)} is missing from the local store`, { cause: err })
      }
      throw err
    }
  }

  /**
   * The bytes of one block of a retained DAG, from the local store only, checked against the
   * block's CID.
   *
   * Any block that a retained root reaches is served, not only roots: the pin index counts every
   * such block by its multihash, so the test is one small datastore read. (A count a crash left
   * too high can let a block that no root reaches any more be served until the next garbage
   * collection: harmless, the bytes are still the ones the CID names.) Who may read which
   * content is not decided here: the gateway checks that on the content first.
   *
   * @throws AtlasError `InvalidAddress` when `cid` is not a CID
   * @throws NotFoundError when no retained DAG holds the block
   * @throws ContentUnavailableError when the block is missing from disk or its bytes do not match
   */
  async getBlock (cid: CID | string, options: AbortOptions = {}): Promise<Uint8Array> {
    const running = this.#state()
    const block = typeof cid === 'string' ? parseAddress(cid) : cid
    if (block === undefined) throw new AtlasError('InvalidAddress', `${truncate(String(cid))} is not a CID`)
    if (await running.pins.refCount(block) === 0) throw new NotFoundError(`${block} is not a block of any content stored on IPFS here`)
    const signal = linkSignal(running.stopping.signal, options.signal)
    return await this.#readVerified(running, block, signal)
  }

  /**
   * Every block of the retained DAG under `root` (a retained root, or any block under one),
   * depth-first in pre-order: the order of a trustless gateway's `order=dfs` CAR. Blocks are read
   * one at a time as the consumer pulls, each checked against its CID; see `dag-walk.ts` for
   * what the walk keeps in memory.
   *
   * @throws AtlasError `InvalidAddress` when `root` is not a CID
   * @throws NotFoundError when no retained DAG holds `root` (before anything is yielded)
   * @throws ContentUnavailableError when a block is missing from disk or damaged (possibly after
   * others were yielded: the consumer must treat a walk that throws as incomplete)
   */
  async * dagExport (root: CID | string, options: DagExportOptions = {}): AsyncGenerator<DagBlock, void, undefined> {
    const running = this.#state()
    const start = typeof root === 'string' ? parseAddress(root) : root
    if (start === undefined) throw new AtlasError('InvalidAddress', `${truncate(String(root))} is not a CID`)
    if (await running.pins.refCount(start) === 0) throw new NotFoundError(`${start} is not a block of any content stored on IPFS here`)
    const signal = linkSignal(running.stopping.signal, options.signal)
    const read = async (cid: CID): Promise<Uint8Array> => await this.#readVerified(running, cid, signal)
    try {
      yield * walkDag(read, start, { duplicates: options.duplicates, range: options.range, signal })
    } catch (err) {
      throw abortToAtlasError(err, signal)
    }
  }

  /** One whole block from disk, its bytes checked against its sha2-256 multihash. */
  async #readVerified (running: Running, cid: CID, signal: AbortSignal): Promise<Uint8Array> {
    if (cid.multihash.code !== sha256.code) {
      // the profile hashes with sha2-256 only: another hash here is not a block Atlas wrote
      throw new ContentUnavailableError(`Block ${cid} uses a hash function Atlas does not store`)
    }
    let bytes: Uint8Array
    try {
      bytes = await collect(running.blocks.get(cid, { signal }))
    } catch (err) {
      const mapped = abortToAtlasError(err, signal)
      if (mapped instanceof AtlasError) throw mapped
      if ((err as Error).name === 'NotFoundError') {
        throw new ContentUnavailableError(`Block ${cid} is missing from the local store`, { cause: err })
      }
      throw err
    }
    const digest = createHash('sha256').update(bytes).digest()
    if (!digest.equals(cid.multihash.digest)) {
      throw new ContentUnavailableError(`Block ${cid} is damaged on disk: its bytes do not match its hash`)
    }
    return bytes
  }

  /**
   * True when the content is retained and every block of it is on disk. Checking every block
   * costs one `access` per MiB of content plus reading its dag-pb nodes (about 45 KiB per GiB).
   */
  async has (address: string, options: AbortOptions = {}): Promise<boolean> {
    const running = this.#state()
    const root = parseAddress(address)
    if (root === undefined) return false
    if (!await running.pins.isPinned(root)) return false
    try {
      await dagBlocks(running.blocks, root, { signal: options.signal })
      return true
    } catch (err) {
      if (err instanceof ContentUnavailableError) return false
      throw err
    }
  }

  /**
   * Read repair: fetch every block of the DAG under `address` that is not in the local store from
   * connected peers over Bitswap, check each block against its CID (the SHA-256 of its bytes),
   * store it, and retain the root (as `put()` would). Blocks already here are not fetched again.
   * Gives up with ContentUnavailableError when offline, when no peer is connected, or when no
   * block arrives for {@link IpfsBackendInit.repairStallMs}.
   */
  async repair (address: string, options: BackendRepairOptions = {}): Promise<void> {
    const running = this.#state()
    const root = parseAddress(address)
    if (root === undefined) throw new AtlasError('InvalidAddress', `${truncate(address)} is not a CID`)
    if (await this.has(address, options)) return
    if (running.libp2p === undefined) throw new ContentUnavailableError(`${rootKey(root)} cannot be fetched: the IPFS node is offline`)
    if (running.libp2p.getConnections().length === 0) throw new ContentUnavailableError(`${rootKey(root)} cannot be fetched: no IPFS peer is connected`)
    const signal = linkSignal(running.stopping.signal, options.signal)
    await this.#trackWrite(running, this.#repair(running, root, signal))
  }

  async #repair (running: Running, root: CID, outer: AbortSignal): Promise<void> {
    const { helia, blocks, pins } = running
    const guard = this.#guard
    const stallMs = this.#init.repairStallMs ?? DEFAULT_REPAIR_STALL_MS
    const stall = new AbortController()
    let timer = setTimeout(() => { stall.abort() }, stallMs)
    const progress = (): void => {
      clearTimeout(timer)
      timer = setTimeout(() => { stall.abort() }, stallMs)
    }
    const signal = AbortSignal.any([outer, stall.signal])
    const held = new Map<string, CID>()
    let fetched = 0
    let retained = false
    try {
      let size: number | undefined
      const stack: CID[] = [root]
      const seen = new Set<string>()
      while (stack.length > 0) {
        const cid = stack.pop() as CID
        const key = blockKey(cid)
        if (seen.has(key)) continue
        seen.add(key)
        if (cid.code !== raw.code && cid.code !== dagPb.code) throw new ContentUnavailableError(`Block ${cid} of ${rootKey(root)} is neither raw nor dag-pb`)
        if (!held.has(key)) {
          held.set(key, cid)
          guard.hold(key)
        }
        const local = await blocks.has(cid)
        // raw leaves present here need no reading; dag-pb nodes are read for their links
        if (local && cid.code === raw.code && cid !== root) continue
        let bytes: Uint8Array
        if (local) {
          bytes = await collect(blocks.get(cid, { signal }))
        } else {
          // Helia checks what Bitswap brings against the CID's multihash before it stores it in
          // the local block store (the pin below fails if a block did not land there)
          bytes = await collect(helia.blockstore.get(cid, { signal }))
          fetched++
          progress()
        }
        if (cid.code === dagPb.code) {
          const node = dagPb.decode(bytes)
          if (cid === root) size = Number(unmarshalFile(node, cid).fileSize())
          for (let i = node.Links.length - 1; i >= 0; i--) stack.push((node.Links[i] as dagPb.PBLink).Hash)
        } else if (cid === root) {
          size = bytes.byteLength
        }
      }
      await this.#mutex.run(async () => {
        signal.throwIfAborted()
        const dag = await dagBlocks(blocks, root, { signal })
        if (!await pins.isPinned(root)) await pins.pin(root, dag.keys(), { size: size ?? 0, pinnedAt: Date.now() })
        retained = true
      })
      this.#log.info({ address: rootKey(root), fetched }, 'ipfs repair: fetched the missing blocks of a content')
    } catch (err) {
      if (stall.signal.aborted && !outer.aborted) {
        throw new ContentUnavailableError(`No IPFS peer sent a block of ${rootKey(root)} for ${stallMs} ms`, { cause: err })
      }
      const mapped = abortToAtlasError(err, outer)
      if ((mapped as Error).name === 'NotFoundError') throw new ContentUnavailableError(`A block of ${rootKey(root)} could not be fetched`, { cause: err })
      throw mapped
    } finally {
      clearTimeout(timer)
      for (const key of held.keys()) guard.release(key)
      if (!retained) {
        // blocks fetched for a repair that failed are kept only if something retains them
        await this.#mutex.run(async () => {
          for (const [key, cid] of held) if (await pins.refCount(key) === 0) await this.#collect(running, key, cid)
        }).catch(err => { this.#log.error({ err }, 'ipfs repair: could not delete the blocks of a failed repair') })
      }
    }
  }

  /**
   * Release the content and delete at once the blocks no other retained content (and no put in
   * flight) uses; costs about the same as retaining it. The signal is honoured until the
   * release starts; from there it runs to the end.
   */
  async remove (address: string, options: AbortOptions = {}): Promise<void> {
    const running = this.#state()
    const root = parseAddress(address)
    if (root === undefined) return
    const signal = linkSignal(running.stopping.signal, options.signal)
    await this.#trackWrite(running, this.#mutex.run(async () => {
      // once started, a release runs to its end: a half-released DAG would leak its blocks
      if (signal.aborted) throw abortToAtlasError(signal.reason, signal)
      if (!await running.pins.isPinned(root)) return
      const dag = await dagBlocks(running.blocks, root, { lenient: true })
      const freed = await running.pins.unpin(root, dag.keys())
      for (const key of freed) {
        await this.#collect(running, key, dag.get(key) as CID)
      }
      this.#log.debug({ address: rootKey(root), blocks: dag.size, freed: freed.length }, 'ipfs remove')
    }))
  }

  /**
   * Count retained roots and the bytes of the block files on disk. The byte count walks the
   * block directory (one `lstat` per block: about 1000 per GiB stored under the profile).
   */
  async stats (options: AbortOptions = {}): Promise<BackendStats> {
    const running = this.#state()
    const bytes = await diskUsage(running.blocks.path, options.signal)
    return { contents: running.pins.size, bytes }
  }

  /** The retained roots, as CIDv1 strings (the addresses put() returned). */
  async * list (options: AbortOptions = {}): AsyncGenerator<string, void, undefined> {
    const running = this.#state()
    for await (const root of running.pins.roots()) {
      options.signal?.throwIfAborted()
      yield root.toV1().toString()
    }
  }

  /**
   * Mark and sweep: recount, from the retained roots, how many roots reach each block, repair the
   * counts where they differ (a crash between a put's counts and its pin record, or a remove's
   * pin record and its counts, leaves them too high; a damaged DAG cannot release what it no
   * longer links to), then delete every block no root reaches and no import in flight holds.
   *
   * Temporary files that writes interrupted by a crash left in the backend's directory (older
   * than this start) are deleted too.
   *
   * Maintenance, not routine: `remove()` already frees a content's blocks. It walks the dag-pb
   * nodes of every retained content and lists the whole data directory, holding the lock that
   * puts need to finish and removes need to start. Runs once at start unless
   * `collectGarbageOnStart` is false.
   *
   * @returns the number of blocks deleted
   */
  async collectGarbage (options: AbortOptions = {}): Promise<number> {
    const running = this.#state()
    const { pins, blocks } = running
    return this.#trackWrite(running, this.#mutex.run(async () => {
      const counts = new Map<string, number>()
      for await (const root of pins.roots()) {
        for (const key of (await dagBlocks(blocks, root, { lenient: true, signal: options.signal })).keys()) {
          counts.set(key, (counts.get(key) ?? 0) + 1)
        }
      }
      let repaired = 0
      const recorded = new Set<string>()
      for await (const [key, count] of pins.refCounts()) {
        recorded.add(key)
        const actual = counts.get(key) ?? 0
        if (actual !== count) {
          await pins.setRefCount(key, actual)
          repaired++
        }
      }
      for (const [key, count] of counts) {
        if (!recorded.has(key)) {
          await pins.setRefCount(key, count)
          repaired++
        }
      }
      let deleted = 0
      for await (const key of blockFileKeys(blocks.path)) {
        options.signal?.throwIfAborted()
        if (counts.has(key)) continue
        const cid = CID.createV1(raw.code, Digest.decode(base32.baseDecode(key)))
        if (await this.#collect(running, key, cid)) deleted++
      }
      let temporary = 0
      for await (const file of walkFiles(this.#init.dataDir)) {
        if (!file.endsWith('.tmp')) continue
        try {
          if ((await lstat(file)).mtimeMs < running.startedAt) {
            await unlink(file)
            temporary++
          }
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        }
      }
      this.#log.info({ roots: pins.size, blocks: counts.size, repaired, deleted, temporary }, 'ipfs garbage collection')
      return deleted
    }))
  }

  /** Delete `cid` unless a retained root reaches it or an import holds it. Call under the mutex. */
  async #collect (running: Running, key: string, cid: CID): Promise<boolean> {
    if (await running.pins.refCount(key) > 0) return false
    return this.#guard.delete(key, async () => { await running.blocks.delete(cid) })
  }

  async #trackWrite<T> (running: Running, work: Promise<T>): Promise<T> {
    running.writes.add(work)
    try {
      return await work
    } finally {
      running.writes.delete(work)
    }
  }

  #connectBootstrap (libp2p: Libp2p, peers: BootstrapPeer[]): void {
    for (const { peerId, address } of peers) {
      if (libp2p.getConnections(peerId).length > 0) continue
      // the tag asks libp2p to keep the connection and redial it (re-set: libp2p drops it after
      // failed redials)
      libp2p.peerStore.merge(peerId, { multiaddrs: [address], tags: { [BOOTSTRAP_TAG]: { value: 50 } } })
        .then(async () => libp2p.dial(address))
        .then(() => { this.#log.info({ peer: address.toString() }, 'ipfs: connected to bootstrap peer') })
        .catch(err => { this.#log.warn({ err, peer: address.toString() }, 'ipfs: could not connect to bootstrap peer') })
    }
  }

  #state (): Running {
    if (this.#running === undefined) throw new AtlasError('ServiceUnavailable', 'The IPFS backend is not started')
    return this.#running
  }
}

function parseBootstrap (address: string): BootstrapPeer {
  const ma = multiaddr(address)
  const peer = ma.getComponents().find(c => c.name === 'p2p')?.value
  if (peer === undefined) throw new TypeError(`Bootstrap address ${address} has no /p2p/<peer id> part`)
  return { peerId: peerIdFromString(peer), address: ma }
}

/** A CID from any string form, or undefined when `address` is not one. */
function parseAddress (address: string): CID | undefined {
  try {
    return CID.parse(address.startsWith('/ipfs/') ? address.slice(6) : address).toV1()
  } catch {
    return undefined
  }
}

/** Sum of the sizes of the files under `dir`. */
async function diskUsage (dir: string, signal?: AbortSignal): Promise<number> {
  let bytes = 0
  for await (const file of walkFiles(dir)) {
    signal?.throwIfAborted()
    try {
      bytes += (await lstat(file)).size
    } catch (err) {
      // deleted since listed
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  return bytes
}

async function * walkFiles (dir: string): AsyncGenerator<string, void, undefined> {
  let handle
  try {
    handle = await opendir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  for await (const entry of handle) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield * walkFiles(path)
    else if (entry.isFile()) yield path
  }
}

/** Block keys of the block files under `dir` (blockstore-fs names them `B<BASE32 multihash>.data`). */
async function * blockFileKeys (dir: string): AsyncGenerator<string, void, undefined> {
  for await (const path of walkFiles(dir)) {
    const name = path.slice(path.lastIndexOf('/') + 1)
    if (name.startsWith('B') && name.endsWith('.data')) yield name.slice(1, -'.data'.length).toLowerCase()
  }
}

function truncate (s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

