/**
 * The streaming UnixFS reader returns exactly the requested slice for DAGs of every shape the
 * importer can make (not only Atlas's profile: a CID fetched from elsewhere may be built
 * otherwise), and fails loudly on a damaged DAG.
 */
import { randomBytes } from 'node:crypto'
import * as dagPb from '@ipld/dag-pb'
import fc from 'fast-check'
import { importFile } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced, flat, trickle } from 'ipfs-unixfs-importer/layout'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { readUnixfsFile } from '../../../../src/backends/ipfs/reader.ts'
import { ContentUnavailableError } from '../../../../src/core/errors.ts'
import type { ImporterOptions } from 'ipfs-unixfs-importer'

/** An in-memory block store that hands blocks out in small pieces, as a file store does. */
class PieceStore {
  readonly blocks = new Map<string, Uint8Array>()
  reads = 0

  async put (cid: CID, bytes: Uint8Array): Promise<CID> {
    this.blocks.set(cid.toString(), bytes)
    return cid
  }

  async * get (cid: CID): AsyncGenerator<Uint8Array> {
    const bytes = this.blocks.get(cid.toString())
    if (bytes === undefined) throw Object.assign(new Error(`no block ${cid}`), { name: 'NotFoundError' })
    this.reads++
    for (let i = 0; i < bytes.byteLength; i += 5) yield bytes.subarray(i, i + 5)
    if (bytes.byteLength === 0) yield bytes
  }
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const part of source) parts.push(part)
  return Buffer.concat(parts)
}

const shapes: Array<[string, ImporterOptions]> = [
  ['raw leaves, balanced width 3', { rawLeaves: true, chunker: fixedSize({ chunkSize: 7 }), layout: balanced({ maxChildrenPerNode: 3 }) }],
  ['UnixFS file leaves (CIDv0 style)', { cidVersion: 0, rawLeaves: false, reduceSingleLeafToSelf: false, chunker: fixedSize({ chunkSize: 11 }), layout: balanced({ maxChildrenPerNode: 4 }) }],
  ['UnixFS raw leaves', { rawLeaves: false, leafType: 'raw', chunker: fixedSize({ chunkSize: 9 }), layout: balanced({ maxChildrenPerNode: 2 }) }],
  ['trickle layout', { rawLeaves: true, chunker: fixedSize({ chunkSize: 5 }), layout: trickle({ maxChildrenPerNode: 3, layerRepeat: 2 }) }],
  ['flat layout', { rawLeaves: true, chunker: fixedSize({ chunkSize: 13 }), layout: flat() }]
]

describe('readUnixfsFile', () => {
  for (const [label, importerOptions] of shapes) {
    it(`reads any range of a DAG with ${label}`, async () => {
      await fc.assert(fc.asyncProperty(
        fc.integer({ min: 0, max: 300 }),
        fc.nat({ max: 400 }),
        fc.option(fc.nat({ max: 400 }), { nil: undefined }),
        async (size, offset, length) => {
          const bytes = randomBytes(size)
          const store = new PieceStore()
          const { cid } = await importFile({ content: bytes }, store, importerOptions)
          const got = await collect(readUnixfsFile((c) => store.get(c), cid, { offset, length }))
          const start = Math.min(offset, size)
          const end = length === undefined ? size : Math.min(offset + length, size)
          expect(got).toEqual(bytes.subarray(start, Math.max(start, end)))
        }
      ), { numRuns: 60 })
    })
  }

  it('does not read children that lie wholly before or after the range', async () => {
    const store = new PieceStore()
    const bytes = randomBytes(100 * 10)
    const { cid } = await importFile({ content: bytes }, store, { rawLeaves: true, chunker: fixedSize({ chunkSize: 10 }), layout: balanced({ maxChildrenPerNode: 10 }) })
    store.reads = 0
    expect(await collect(readUnixfsFile((c) => store.get(c), cid, { offset: 555, length: 10 }))).toEqual(bytes.subarray(555, 565))
    // root, one inner node, two leaves
    expect(store.reads).toBe(4)
  })

  it('pulls leaves only as the consumer asks for bytes', async () => {
    const store = new PieceStore()
    const bytes = randomBytes(100 * 10)
    const { cid } = await importFile({ content: bytes }, store, { rawLeaves: true, chunker: fixedSize({ chunkSize: 10 }), layout: balanced({ maxChildrenPerNode: 10 }) })
    store.reads = 0
    const iterator = readUnixfsFile((c) => store.get(c), cid)[Symbol.asyncIterator]()
    await iterator.next()
    // root, first inner node, first leaf: nothing read ahead
    expect(store.reads).toBe(3)
    await iterator.return?.()
  })

  it('fails on a leaf that is shorter than its parent says', async () => {
    const store = new PieceStore()
    const bytes = randomBytes(50)
    const { cid } = await importFile({ content: bytes }, store, { rawLeaves: true, chunker: fixedSize({ chunkSize: 10 }) })
    const root = dagPb.decode(store.blocks.get(cid.toString()) as Uint8Array)
    const leaf = root.Links[2]?.Hash as CID
    store.blocks.set(leaf.toString(), (store.blocks.get(leaf.toString()) as Uint8Array).subarray(0, 4))
    await expect(collect(readUnixfsFile((c) => store.get(c), cid))).rejects.toBeInstanceOf(ContentUnavailableError)
  })

  it('fails on a missing block with the store\'s error', async () => {
    const store = new PieceStore()
    const { cid } = await importFile({ content: randomBytes(50) }, store, { rawLeaves: true, chunker: fixedSize({ chunkSize: 10 }) })
    const root = dagPb.decode(store.blocks.get(cid.toString()) as Uint8Array)
    store.blocks.delete((root.Links[3]?.Hash as CID).toString())
    await expect(collect(readUnixfsFile((c) => store.get(c), cid))).rejects.toMatchObject({ name: 'NotFoundError' })
  })

  it('refuses a directory', async () => {
    const store = new PieceStore()
    const dir = dagPb.encode({ Data: new UnixFS({ type: 'directory' }).marshal(), Links: [] })
    const cid = CID.createV1(dagPb.code, await sha256.digest(dir))
    await store.put(cid, dir)
    await expect(collect(readUnixfsFile((c) => store.get(c), cid))).rejects.toBeInstanceOf(ContentUnavailableError)
  })
})
