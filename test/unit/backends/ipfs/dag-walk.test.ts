/**
 * The DAG walk behind the /ipfs CAR responses: depth-first pre-order on DAGs several levels deep,
 * each block once or every time, the blocks a byte range needs and no others; and the backend's
 * block reads on top of it (any block of a retained DAG, checked against its CID).
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import fc from 'fast-check'
import { base32upper } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { walkDag, type DagBlock } from '../../../../src/backends/ipfs/dag-walk.ts'
import { IpfsBackend } from '../../../../src/backends/ipfs/ipfs-backend.ts'
import { importUnixfs } from '../../../../src/backends/ipfs/profile.ts'
import { ContentUnavailableError, NotFoundError } from '../../../../src/core/errors.ts'

const CHUNK = 100
const LINKS = 3

class MemoryBlocks {
  readonly blocks = new Map<string, Uint8Array>()
  reads = 0

  async put (cid: CID, bytes: Uint8Array): Promise<CID> {
    this.blocks.set(cid.toString(), bytes)
    return cid
  }

  read = async (cid: CID): Promise<Uint8Array> => {
    const bytes = this.blocks.get(cid.toString())
    if (bytes === undefined) throw new ContentUnavailableError(`no block ${cid}`)
    this.reads++
    return bytes
  }
}

async function * once (bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes
}

/** Import under a shrunk profile: 100-byte leaves, 3 links per node, so a few KiB are 4+ levels deep. */
async function imported (bytes: Uint8Array): Promise<{ store: MemoryBlocks, root: CID }> {
  const store = new MemoryBlocks()
  const root = await importUnixfs(once(bytes), store, { chunkSize: CHUNK, maxLinks: LINKS })
  return { store, root }
}

async function walk (store: MemoryBlocks, root: CID, options: Parameters<typeof walkDag>[2] = {}): Promise<DagBlock[]> {
  const out: DagBlock[] = []
  for await (const block of walkDag(store.read, root, options)) out.push(block)
  return out
}

const children = (block: DagBlock): CID[] => (block.cid.code === dagPb.code ? dagPb.decode(block.bytes).Links.map((l) => l.Hash) : [])

describe('walkDag', () => {
  it('walks depth-first in pre-order: a node, then each child subtree in link order', async () => {
    const bytes = randomBytes(CHUNK * 40 + 7)
    const { store, root } = await imported(bytes)
    const blocks = await walk(store, root, { duplicates: true })
    expect(blocks[0]?.cid.equals(root)).toBe(true)
    // pre-order: the block after a node is its first child, and a node's subtree is the run of
    // blocks right after it (checked by replaying the walk against a stack of expected children)
    const expected: CID[][] = [[root]]
    for (const block of blocks) {
      while ((expected.at(-1) as CID[]).length === 0) expected.pop()
      const next = (expected.at(-1) as CID[]).shift() as CID
      expect(block.cid.equals(next)).toBe(true)
      expected.push(children(block))
    }
    expect(expected.every((level) => level.length === 0)).toBe(true)
    expect(blocks.filter((b) => b.cid.code === dagPb.code).length).toBeGreaterThan(LINKS * 2)
    // the leaves in order are the file
    expect(Buffer.concat(blocks.filter((b) => b.cid.code === raw.code).map((b) => b.bytes)).equals(bytes)).toBe(true)
  })

  it('sends a repeated block once unless duplicates are asked for', async () => {
    const chunk = randomBytes(CHUNK)
    const bytes = Buffer.concat(Array.from({ length: 20 }, () => chunk))
    const { store, root } = await imported(bytes)
    const every = await walk(store, root, { duplicates: true })
    const unique = await walk(store, root)
    expect(every.filter((b) => b.cid.code === raw.code)).toHaveLength(20)
    expect(new Set(unique.map((b) => b.cid.toString())).size).toBe(unique.length)
    expect(new Set(every.map((b) => b.cid.toString())).size).toBe(unique.length)
    // once: every block still arrives after one that links to it
    const linked = new Set([root.toString()])
    for (const block of unique) {
      expect(linked.has(block.cid.toString())).toBe(true)
      for (const child of children(block)) linked.add(child.toString())
    }
  })

  it('yields for a byte range the nodes on the way down and exactly the leaves that overlap it', async () => {
    const size = CHUNK * 30 + 55
    const bytes = randomBytes(size)
    const { store, root } = await imported(bytes)
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: size - 1 }), fc.integer({ min: 1, max: size }), async (start, length) => {
      const end = Math.min(start + length, size)
      const blocks = await walk(store, root, { range: { start, end } })
      const leaves = blocks.filter((b) => b.cid.code === raw.code)
      const first = Math.floor(start / CHUNK)
      const last = Math.floor((end - 1) / CHUNK)
      expect(leaves).toHaveLength(last - first + 1)
      expect(Buffer.concat(leaves.map((b) => b.bytes)).equals(bytes.subarray(first * CHUNK, Math.min((last + 1) * CHUNK, size)))).toBe(true)
      // every node sent links to something sent after it (no node off the path)
      const sent = new Set(blocks.map((b) => b.cid.toString()))
      for (const node of blocks.filter((b) => b.cid.code === dagPb.code)) {
        expect(children(node).some((c) => sent.has(c.toString()))).toBe(true)
      }
    }), { numRuns: 60 })
  })

  it('descends again into a repeated node whose other occurrence a range needs other leaves of', async () => {
    const [a, b, c] = [randomBytes(CHUNK), randomBytes(CHUNK), randomBytes(CHUNK)] as [Buffer, Buffer, Buffer]
    // nine times the same three-leaf node: its first occurrence is cut to c, its second to a
    const bytes = Buffer.concat(Array.from({ length: 9 }, () => [a, b, c]).flat())
    const { store, root } = await imported(bytes)
    const blocks = await walk(store, root, { range: { start: 2 * CHUNK, end: 3 * CHUNK + 1 } })
    const leaves = blocks.filter((x) => x.cid.code === raw.code).map((x) => Buffer.from(x.bytes))
    expect(leaves).toHaveLength(2)
    expect(leaves[0]?.equals(c)).toBe(true)
    expect(leaves[1]?.equals(a)).toBe(true)
  })

  it('reads one block per step, as the consumer pulls', async () => {
    const { store, root } = await imported(randomBytes(CHUNK * 20))
    const walker = walkDag(store.read, root)
    await walker.next()
    await walker.next()
    expect(store.reads).toBe(2)
    await walker.return(undefined)
  })

  it('stops when its signal fires', async () => {
    const { store, root } = await imported(randomBytes(CHUNK * 20))
    const controller = new AbortController()
    const walker = walkDag(store.read, root, { signal: controller.signal })
    await walker.next()
    controller.abort(new Error('gone'))
    await expect(walker.next()).rejects.toThrow('gone')
  })

  it('passes on a missing block', async () => {
    const { store, root } = await imported(randomBytes(CHUNK * 20))
    const blocks = await walk(store, root)
    store.blocks.delete((blocks[5] as DagBlock).cid.toString())
    await expect(walk(store, root)).rejects.toBeInstanceOf(ContentUnavailableError)
  })
})

describe('IpfsBackend block reads', () => {
  let dir: string
  let backend: IpfsBackend

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-ipfs-walk-'))
    backend = new IpfsBackend({ dataDir: dir, listen: [], bootstrap: [], offline: true, collectGarbageOnStart: false })
    await backend.start()
  })
  afterEach(async () => {
    await backend.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const blockFile = (cid: CID): string => {
    const name = base32upper.encoder.encode(cid.multihash.bytes)
    return join(dir, 'blocks', name.slice(-2), `${name}.data`)
  }

  it('exports a retained DAG and reads any block of it, root or not', async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 1)
    const { address } = await backend.put(once(bytes))
    const blocks: DagBlock[] = []
    for await (const block of backend.dagExport(address)) blocks.push(block)
    expect(blocks.map((b) => b.cid.code)).toEqual([dagPb.code, raw.code, raw.code, raw.code, raw.code])
    expect(Buffer.concat(blocks.slice(1).map((b) => b.bytes)).equals(bytes)).toBe(true)
    for (const block of blocks) expect(Buffer.from(await backend.getBlock(block.cid)).equals(block.bytes)).toBe(true)
  })

  it('refuses blocks of no retained DAG, and damaged or missing ones', async () => {
    const stray = CID.createV1(raw.code, await sha256.digest(Buffer.from('not stored')))
    await expect(backend.getBlock(stray)).rejects.toBeInstanceOf(NotFoundError)
    await expect(backend.dagExport(stray).next()).rejects.toBeInstanceOf(NotFoundError)

    const { address } = await backend.put(once(randomBytes(2 * 1024 * 1024)))
    const root = CID.parse(address)
    await writeFile(blockFile(root), randomBytes(64))
    await expect(backend.getBlock(root)).rejects.toBeInstanceOf(ContentUnavailableError)
    await backend.remove(address)
    await expect(backend.getBlock(root)).rejects.toBeInstanceOf(NotFoundError)
  })
})
