/**
 * The blocks of a UnixFS DAG in the order a trustless gateway's CAR carries them: depth-first,
 * pre-order (a node before its children, children in link order), which the trustless gateway
 * specification calls `order=dfs`. A client can then verify each block as it arrives, because
 * every block after the first is linked from one it has already seen.
 *
 * The walk is lazy: it reads a block only when the consumer asks for the next one, and it keeps
 * the links of one dag-pb node per DAG level (about 45 KiB each under the Atlas profile), so
 * memory does not grow with the size of the content. With duplicates left out (`dups=n`, the
 * default) it also remembers the CIDs already sent: about 100 bytes per distinct block, some
 * 100 KiB per GiB of content.
 */
import * as dagPb from '@ipld/dag-pb'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { ContentUnavailableError } from '../../core/errors.ts'
import type { AbortOptions } from '../backend.ts'
import { unmarshalFile } from './reader.ts'
import type { CID } from 'multiformats/cid'

/** One block: its CID and its bytes. */
export interface DagBlock {
  cid: CID
  bytes: Uint8Array
}

/** Reads one whole block (the caller checks it exists, belongs where it should and is intact). */
export type WholeBlockReader = (cid: CID, options: AbortOptions) => Promise<Uint8Array>

/** A byte range of the file at the root of the DAG: `[start, end)`. */
export interface FileRange {
  start: number
  end: number
}

/** Options of {@link walkDag}. */
export interface WalkDagOptions extends AbortOptions {
  /**
   * Send a block every time the walk meets it (CAR `dups=y`) instead of once (`dups=n`). A content
   * whose 1 MiB chunks repeat links the same leaf several times.
   *
   * @default false
   */
  duplicates?: boolean
  /**
   * Only the blocks needed to read and verify these bytes of the file (the trustless gateway's
   * `entity-bytes`): the dag-pb nodes on the way down, and the leaves that overlap the range.
   * Without it, every block of the DAG.
   */
  range?: FileRange
}

/**
 * Yield the blocks of the DAG under `root` in depth-first pre-order. Blocks whose CID is an
 * identity multihash are never yielded (their bytes are inside the CID that links to them).
 *
 * @throws ContentUnavailableError when a node is not raw or dag-pb, or a dag-pb node is not the
 * UnixFS file node a range needs
 * @throws whatever `read` throws (a missing block)
 */
export async function * walkDag (read: WholeBlockReader, root: CID, options: WalkDagOptions = {}): AsyncGenerator<DagBlock, void, undefined> {
  const seen = options.duplicates === true ? undefined : new Set<string>()
  yield * visit(read, root, 0, root, seen, options)
}

async function * visit (read: WholeBlockReader, cid: CID, position: number, root: CID, seen: Set<string> | undefined, options: WalkDagOptions): AsyncGenerator<DagBlock, void, undefined> {
  if (cid.multihash.code === identity.code) return
  options.signal?.throwIfAborted()
  const key = cid.toString()
  const repeated = seen?.has(key) === true
  // a repeated node's subtree went out with its first occurrence, unless a range is cut: then the
  // same node at another position of the file may need other children than it sent the first time
  if (repeated && (options.range === undefined || cid.code === raw.code)) return
  if (cid.code !== raw.code && cid.code !== dagPb.code) {
    throw new ContentUnavailableError(`Block ${cid} of ${root} is neither raw nor dag-pb`)
  }
  const bytes = await read(cid, options)
  if (!repeated) {
    seen?.add(key)
    yield { cid, bytes }
  }
  if (cid.code === raw.code) return

  let node: dagPb.PBNode
  try {
    node = dagPb.decode(bytes)
  } catch (err) {
    throw new ContentUnavailableError(`Block ${cid} of ${root} is not valid dag-pb`, { cause: err })
  }
  const range = options.range
  if (range === undefined) {
    for (const link of node.Links) yield * visit(read, link.Hash, 0, root, seen, options)
    return
  }
  // cut by range: the UnixFS block sizes say where each child's bytes sit in the file
  const file = unmarshalFile(node, cid)
  let offset = position + (file.data?.byteLength ?? 0)
  if (file.blockSizes.length !== node.Links.length) {
    throw new ContentUnavailableError(`UnixFS node ${cid} has ${file.blockSizes.length} block sizes for ${node.Links.length} links`)
  }
  for (let i = 0; i < node.Links.length && offset < range.end; i++) {
    const size = Number(file.blockSizes[i])
    if (offset + size > range.start) {
      yield * visit(read, (node.Links[i] as dagPb.PBLink).Hash, offset, root, seen, options)
    }
    offset += size
  }
}

