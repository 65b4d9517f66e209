/**
 * The set of blocks of a UnixFS DAG, found cheaply.
 *
 * Only dag-pb nodes are read (one per 1024 leaves under the Atlas profile, about 45 KiB each);
 * raw leaves have no links, so for them it is enough to know they are present. Retaining a
 * 1 GiB content therefore reads about 50 KiB and checks 1024 files, instead of reading 1 GiB back.
 */
import * as dagPb from '@ipld/dag-pb'
import * as raw from 'multiformats/codecs/raw'
import { ContentUnavailableError } from '../../core/errors.ts'
import { collect } from '../../core/streams.ts'
import { blockKey } from './pin-index.ts'
import type { AbortOptions } from '../backend.ts'
import type { CID } from 'multiformats/cid'

/** The local block store, as the walk needs it. */
export interface LocalBlocks {
  get(cid: CID, options?: AbortOptions): AsyncIterable<Uint8Array>
  has(cid: CID, options?: AbortOptions): Promise<boolean>
}

export interface DagBlocksOptions extends AbortOptions {
  /**
   * Collect what can be reached and skip what is missing, without checking that raw leaves are
   * present: for releasing a DAG, where a damaged DAG must still be released as far as it goes.
   *
   * @default false
   */
  lenient?: boolean
}

/**
 * Walk the DAG under `root` in the local store and return its distinct blocks by block key
 * (a content whose 1 MiB chunks repeat has fewer blocks than leaves).
 *
 * @throws ContentUnavailableError when a block is missing (unless `lenient`) or the DAG uses
 * another codec than raw and dag-pb
 */
export async function dagBlocks (store: LocalBlocks, root: CID, options: DagBlocksOptions = {}): Promise<Map<string, CID>> {
  const blocks = new Map<string, CID>()
  const stack: CID[] = [root]
  while (stack.length > 0) {
    const cid = stack.pop() as CID
    const key = blockKey(cid)
    if (blocks.has(key)) continue
    options.signal?.throwIfAborted()
    blocks.set(key, cid)
    let children: CID[]
    try {
      children = await childLinks(store, cid, root, options)
    } catch (err) {
      // lenient: the block itself is still released; what hangs below it cannot be found
      if (options.lenient === true && err instanceof ContentUnavailableError) continue
      throw err
    }
    for (let i = children.length - 1; i >= 0; i--) {
      const child = children[i] as CID
      if (!blocks.has(blockKey(child))) stack.push(child)
    }
  }
  return blocks
}

/** The links of `cid`: none for a raw leaf (whose presence is checked unless lenient). */
async function childLinks (store: LocalBlocks, cid: CID, root: CID, options: DagBlocksOptions): Promise<CID[]> {
  if (cid.code === raw.code) {
    if (options.lenient !== true && !await store.has(cid, options)) {
      throw new ContentUnavailableError(`Block ${cid} of ${root} is missing`)
    }
    return []
  }
  if (cid.code !== dagPb.code) {
    throw new ContentUnavailableError(`Block ${cid} of ${root} is neither raw nor dag-pb`)
  }
  const bytes = await readBlock(store, cid, root, options)
  try {
    return dagPb.decode(bytes).Links.map(link => link.Hash)
  } catch (err) {
    throw new ContentUnavailableError(`Block ${cid} of ${root} is not valid dag-pb`, { cause: err })
  }
}

async function readBlock (store: LocalBlocks, cid: CID, root: CID, options: AbortOptions): Promise<Uint8Array> {
  try {
    return await collect(store.get(cid, options))
  } catch (err) {
    if ((err as Error).name === 'NotFoundError') {
      throw new ContentUnavailableError(`Block ${cid} of ${root} is missing`, { cause: err })
    }
    throw err
  }
}
