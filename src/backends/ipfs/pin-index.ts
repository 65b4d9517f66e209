/**
 * Atlas's pin index: which UnixFS roots are retained, and for every block how many retained
 * roots reach it. Blocks whose count falls to zero are garbage.
 *
 * Why not `helia.pins` (Helia 7.1): its `rm()` keeps the removed root in the block's `pinnedBy`
 * list instead of dropping it (the filter is inverted), so pinning A and B that share a block,
 * unpinning A, pinning A again and unpinning B leaves the block with a zero count while A still
 * needs it, and `helia.gc()` deletes it. It also counts a block once per occurrence on `rm()` but
 * once per root on `add()`, so a DAG that repeats a leaf (any content with two equal 1 MiB
 * chunks) drives the count negative and leaks. And its `add()` reads every block of the DAG,
 * leaves included (a 1 GiB content is read back from disk in full), and `helia.gc()` scans the
 * whole block store. This index counts each block once per root, learns a DAG's blocks by
 * reading only its dag-pb nodes, and frees exactly the blocks of the root being removed.
 *
 * Layout in the datastore:
 * - `/atlas/ipfs/pins/<root CIDv1>` → JSON `{ size, pinnedAt }`
 * - `/atlas/ipfs/refs/<2-char shard>/<base32 multihash>` → decimal count of roots reaching it
 *
 * Blocks are counted by multihash, as the block store files them, so a block reached under two
 * CIDs (two codecs, same bytes) is one block.
 *
 * The index is not safe for concurrent mutation: callers serialise `pin()`, `unpin()` and their
 * block deletions with one lock. Crash safety: `pin()` writes the counts before the root record
 * and `unpin()` deletes the root record before the counts, so a crash in between can only leave
 * counts too high (space leaked until `IpfsBackend.collectGarbage()` recounts them), never a
 * retained root with freed blocks.
 */
import { Key } from 'interface-datastore'
import { base32 } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import type { Datastore } from 'interface-datastore'

const PINS_PREFIX = '/atlas/ipfs/pins'
const REFS_PREFIX = '/atlas/ipfs/refs'

/** Count files updated at once (each update is a small file write and rename). */
export const REF_UPDATE_CONCURRENCY = 32

/** What the index keeps about a retained root. */
export interface PinRecord {
  /** Size of the content in bytes */
  size: number
  /** When it was first retained, ms since the epoch */
  pinnedAt: number
}

/** The key a block is counted and filed under: its multihash, base32 without prefix. */
export function blockKey (cid: CID): string {
  return base32.baseEncode(cid.multihash.bytes)
}

/** The form a root is recorded under: CIDv1 in base32. */
export function rootKey (cid: CID): string {
  return cid.toV1().toString()
}

/** The retained roots and per-block counts, kept in the backend's datastore (see above). */
export class PinIndex {
  readonly #datastore: Datastore
  #count = 0

  constructor (datastore: Datastore) {
    this.#datastore = datastore
  }

  /** Count the retained roots (one pass over the pin records at start). */
  async open (): Promise<void> {
    let count = 0
    for await (const _ of this.roots()) count++
    this.#count = count
  }

  /** Number of retained roots. */
  get size (): number {
    return this.#count
  }

  /** True when `root` is retained. */
  async isPinned (root: CID): Promise<boolean> {
    return this.#datastore.has(pinKey(root))
  }

  /** Number of retained roots that reach `block` (0 when none). */
  async refCount (block: CID | string): Promise<number> {
    try {
      const bytes = await this.#datastore.get(refKey(typeof block === 'string' ? block : blockKey(block)))
      return Number.parseInt(new TextDecoder().decode(bytes), 10)
    } catch (err) {
      if ((err as Error).name === 'NotFoundError') return 0
      throw err
    }
  }

  /**
   * Retain `root`, whose DAG consists of exactly the distinct `blocks` (they must be distinct:
   * their counts are updated concurrently). A root that is already
   * retained is left as it is (its blocks are not counted twice).
   *
   * @returns false when the root was already retained
   */
  async pin (root: CID, blocks: Iterable<string>, record: PinRecord): Promise<boolean> {
    if (await this.isPinned(root)) return false
    await eachConcurrently(blocks, async (block) => {
      await this.#setCount(block, await this.refCount(block) + 1)
    })
    await this.#datastore.put(pinKey(root), new TextEncoder().encode(JSON.stringify(record)))
    this.#count++
    return true
  }

  /**
   * Stop retaining `root`, whose DAG consists of the distinct `blocks`.
   *
   * @returns the blocks no retained root reaches any more, for the caller to delete
   */
  async unpin (root: CID, blocks: Iterable<string>): Promise<string[]> {
    if (!await this.isPinned(root)) return []
    await this.#datastore.delete(pinKey(root))
    this.#count--
    const freed: string[] = []
    await eachConcurrently(blocks, async (block) => {
      const count = await this.refCount(block) - 1
      await this.#setCount(block, count)
      if (count <= 0) freed.push(block)
    })
    return freed
  }

  /** Every retained root. */
  async * roots (): AsyncGenerator<CID, void, undefined> {
    for await (const key of this.#datastore.queryKeys({ prefix: PINS_PREFIX })) {
      let root: CID
      try {
        root = CID.parse(key.baseNamespace())
      } catch {
        continue
      }
      yield root
    }
  }

  /** Every block with a count, and the count. */
  async * refCounts (): AsyncGenerator<[block: string, count: number], void, undefined> {
    for await (const { key, value } of this.#datastore.query({ prefix: REFS_PREFIX })) {
      yield [key.baseNamespace(), Number.parseInt(new TextDecoder().decode(value), 10)]
    }
  }

  /** Overwrite a block's count (0 deletes it): for repairs after a crash. */
  async setRefCount (block: string, count: number): Promise<void> {
    await this.#setCount(block, count)
  }

  async #setCount (block: string, count: number): Promise<void> {
    if (count <= 0) {
      await this.#datastore.delete(refKey(block))
    } else {
      await this.#datastore.put(refKey(block), new TextEncoder().encode(String(count)))
    }
  }
}

/** Run `fn` over distinct `items`, {@link REF_UPDATE_CONCURRENCY} at a time. */
async function eachConcurrently (items: Iterable<string>, fn: (item: string) => Promise<void>): Promise<void> {
  const iterator = items[Symbol.iterator]()
  const worker = async (): Promise<void> => {
    for (let next = iterator.next(); next.done !== true; next = iterator.next()) await fn(next.value)
  }
  await Promise.all(Array.from({ length: REF_UPDATE_CONCURRENCY }, worker))
}

function pinKey (root: CID): Key {
  return new Key(`${PINS_PREFIX}/${rootKey(root)}`)
}

function refKey (block: string): Key {
  // shard like the block store does (by the last two characters) to keep directories small
  return new Key(`${REFS_PREFIX}/${block.slice(-2)}/${block}`)
}
