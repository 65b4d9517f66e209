/**
 * The UnixFS import profile Atlas uses for every content it stores on IPFS (DESIGN.md section 2).
 *
 * The UnixFS root CID of a byte string depends on how the bytes are cut into blocks and how the
 * blocks are linked, so Atlas fixes those choices once, here, and never varies them per call:
 *
 * | setting             | value                                                     |
 * | ------------------- | --------------------------------------------------------- |
 * | CID version         | 1 (base32 `bafy…` / `bafk…` strings)                      |
 * | hash                | sha2-256                                                  |
 * | leaves              | `raw` blocks (codec 0x55), no UnixFS protobuf wrapper     |
 * | chunker             | fixed size, 1 MiB (1 048 576 bytes)                       |
 * | DAG layout          | balanced, at most 1024 links per dag-pb node              |
 * | single-leaf content | the root is the leaf itself (`reduceSingleLeafToSelf`)   |
 * | wrapping directory  | none: the root is the file itself                         |
 *
 * These are the file settings of the IPIP-499 `unixfs-v1-2025` profile (the same ones `ipfs-car`
 * and Kubo's `--cid-version=1 --raw-leaves --chunker=size-1048576` with a 1024-wide balanced DAG
 * use), so another implementation that follows the profile computes the same root CID for the
 * same bytes. A content of at most 1 MiB is a single raw block: its UnixFS CID is the canonical
 * content id (CIDv1 raw sha2-256) itself.
 *
 * Changing any of these values changes the address of every content stored afterwards and breaks
 * deduplication with what is already stored: treat them as a wire format.
 */
import { importFile } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import type { BufferImporter, ImporterOptions, WritableStorage } from 'ipfs-unixfs-importer'

/** Name of the IPIP-499 CID profile Atlas follows. */
export const UNIXFS_PROFILE_NAME = 'unixfs-v1-2025'

/** Leaf size of the fixed-size chunker, in bytes (1 MiB). */
export const UNIXFS_CHUNK_SIZE = 1_048_576

/** Maximum number of links in one dag-pb node of the balanced layout. */
export const UNIXFS_MAX_LINKS = 1024

/**
 * The knobs of the profile that tests may shrink to exercise the DAG shape on small inputs.
 * Production code always uses {@link UNIXFS_CHUNK_SIZE} and {@link UNIXFS_MAX_LINKS}.
 */
export interface UnixfsLayoutParams {
  /** @default UNIXFS_CHUNK_SIZE */
  chunkSize?: number
  /** @default UNIXFS_MAX_LINKS */
  maxLinks?: number
}

/**
 * Importer options (for `ipfs-unixfs-importer`, and `@helia/unixfs`'s `add*` which forward
 * them) that implement the profile. Every setting is spelled out rather than left to library
 * defaults, so that a library upgrade that changes a default cannot change Atlas's CIDs.
 */
export function unixfsImporterOptions (params: UnixfsLayoutParams = {}): ImporterOptions {
  return {
    profile: UNIXFS_PROFILE_NAME,
    cidVersion: 1,
    rawLeaves: true,
    reduceSingleLeafToSelf: true,
    wrapWithDirectory: false,
    chunker: fixedSize({ chunkSize: params.chunkSize ?? UNIXFS_CHUNK_SIZE }),
    layout: balanced({ maxChildrenPerNode: params.maxLinks ?? UNIXFS_MAX_LINKS })
  }
}

/**
 * Import one byte stream as a UnixFS file under the profile, writing its blocks to `blockstore`
 * as they are made. Memory stays bounded by a few chunks whatever the stream's length.
 *
 * @returns the root CID
 */
export async function importUnixfs (source: AsyncIterable<Uint8Array>, blockstore: WritableStorage, params: UnixfsLayoutParams = {}, release: (chunk: Uint8Array) => void = () => {}): Promise<CID> {
  // the profile's leaves are raw: the leaf step below is the one every import runs
  const options = { ...unixfsImporterOptions(params), bufferImporter: releasingLeafImporter(release) }
  const { cid } = await importFile({ content: source }, blockstore, options)
  return cid
}

/**
 * The importer's leaf step for the profile's raw leaves (what its default does with `rawLeaves`:
 * CIDv1, `raw` codec, sha2-256, one block per chunk, no progress events), that also hands every
 * chunk to `release` once its block is written: the importer never reads a leaf's bytes again
 * after that (its result carries the size, computed before the release, and no bytes). With chunks of exactly
 * the leaf size the chunker passes the source's own objects through, so `release` gets those.
 */
function releasingLeafImporter (release: (chunk: Uint8Array) => void): BufferImporter {
  return async function * (file, blockstore) {
    for await (const chunk of file.content) {
      yield async () => {
        const size = BigInt(chunk.byteLength)
        const cid = CID.createV1(raw.code, await sha256.digest(chunk))
        await blockstore.put(cid, chunk)
        release(chunk)
        return { cid, size, block: EMPTY }
      }
    }
  }
}

const EMPTY = new Uint8Array(0)
