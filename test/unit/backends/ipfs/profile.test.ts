/**
 * The UnixFS CID Atlas computes equals what an independent implementation computes for the same
 * bytes and profile. The reference is ipfs-car, which builds DAGs with @ipld/unixfs (a separate
 * code base from Helia's ipfs-unixfs-importer). ipfs-car's default settings are the profile
 * itself (raw leaves, 1 MiB chunks, balanced width 1024, raw single-block files); for the
 * shrunken layouts the same @ipld/unixfs settings objects are passed to ipfs-car.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import * as UnixFS from '@ipld/unixfs'
import { withMaxChunkSize } from '@ipld/unixfs/file/chunker/fixed'
import { withWidth } from '@ipld/unixfs/file/layout/balanced'
import { createFileEncoderStream } from 'ipfs-car'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { describe, expect, it } from 'vitest'
import { UNIXFS_CHUNK_SIZE, UNIXFS_MAX_LINKS, importUnixfs } from '../../../../src/backends/ipfs/profile.ts'
import { canonicalIdFromSha256, DAG_PB_CODE } from '../../../../src/core/content-id.ts'
import type { UnixfsLayoutParams } from '../../../../src/backends/ipfs/profile.ts'

const MiB = 1024 * 1024

/** A source of `total` pseudo-random bytes, the same on every call with the same seed. */
function seeded (total: number, seed: string, piece = MiB): () => AsyncGenerator<Uint8Array> {
  const key = createHash('sha256').update(seed).digest()
  return async function * () {
    for (let offset = 0, n = 0; offset < total; offset += piece, n++) {
      const size = Math.min(piece, total - offset)
      // an AES-CTR keystream: fast, deterministic, and no two pieces alike
      const iv = Buffer.alloc(16)
      iv.writeUInt32BE(n, 0)
      yield createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc(size))
    }
  }
}

function fromBytes (bytes: Uint8Array): () => AsyncGenerator<Uint8Array> {
  return async function * () {
    if (bytes.byteLength > 0) yield bytes
  }
}

/** The root CID Atlas's importer gives, blocks discarded. */
async function atlasCid (source: () => AsyncIterable<Uint8Array>, params?: UnixfsLayoutParams): Promise<CID> {
  return importUnixfs(source(), { put: async (cid) => cid }, params)
}

/** The root CID ipfs-car gives (the last block it emits is the root). */
async function ipfsCarCid (source: () => AsyncIterable<Uint8Array>, params?: UnixfsLayoutParams): Promise<CID> {
  const settings = params === undefined
    ? undefined // ipfs-car's own defaults: the profile, without Atlas telling it so
    : UnixFS.configure({
      fileChunkEncoder: raw,
      smallFileEncoder: raw,
      chunker: withMaxChunkSize(params.chunkSize ?? UNIXFS_CHUNK_SIZE),
      fileLayout: withWidth(params.maxLinks ?? UNIXFS_MAX_LINKS)
    })
  const blob = {
    stream: () => {
      const iterator = source()[Symbol.asyncIterator]()
      return new ReadableStream<Uint8Array>({
        async pull (controller) {
          const next = await iterator.next()
          if (next.done === true) controller.close()
          else controller.enqueue(next.value)
        }
      })
    }
  }
  let root: CID | undefined
  await createFileEncoderStream(blob, settings).pipeTo(new WritableStream({
    write (block) { root = CID.parse(block.cid.toString()) }
  }))
  if (root === undefined) throw new Error('ipfs-car emitted no block')
  return root
}

describe('UnixFS import profile', () => {
  describe('under the real profile (1 MiB chunks, 1024 links)', () => {
    const sizes: Array<[string, number]> = [
      ['empty', 0],
      ['1 byte', 1],
      ['1 MiB - 1', MiB - 1],
      ['1 MiB', MiB],
      ['1 MiB + 1', MiB + 1],
      ['3.5 MiB', 3.5 * MiB]
    ]
    for (const [label, size] of sizes) {
      it(`matches ipfs-car for ${label}`, async () => {
        const bytes = randomBytes(size)
        const ours = await atlasCid(fromBytes(bytes))
        expect(ours.toString()).toBe((await ipfsCarCid(fromBytes(bytes))).toString())
        expect(ours.version).toBe(1)
      })
    }

    it('matches ipfs-car with more than 1024 leaves (1025 MiB + 1, two DAG levels)', async () => {
      const source = seeded(1025 * MiB + 1, 'two-levels')
      const ours = await atlasCid(source)
      expect(ours.code).toBe(DAG_PB_CODE)
      expect(ours.toString()).toBe((await ipfsCarCid(source)).toString())
    }, 120_000)

    for (const size of [0, 1, MiB - 1, MiB]) {
      it(`gives ${size} bytes a single raw block whose CID is the canonical id`, async () => {
        const bytes = randomBytes(size)
        const ours = await atlasCid(fromBytes(bytes))
        expect(ours.code).toBe(raw.code)
        expect(ours.toString()).toBe(canonicalIdFromSha256(createHash('sha256').update(bytes).digest()))
      })
    }

    it('gives 1 MiB + 1 bytes a dag-pb root, not the canonical id', async () => {
      const bytes = randomBytes(MiB + 1)
      const ours = await atlasCid(fromBytes(bytes))
      expect(ours.code).toBe(DAG_PB_CODE)
      expect(ours.toString()).not.toBe(canonicalIdFromSha256(createHash('sha256').update(bytes).digest()))
    })

    it('does not depend on how the source is cut into pieces', async () => {
      const bytes = Buffer.concat(await collectAll(seeded(2 * MiB + 333, 'pieces')()))
      const whole = await atlasCid(fromBytes(bytes))
      const odd = await atlasCid(async function * () {
        for (let i = 0; i < bytes.byteLength; i += 77_777) yield bytes.subarray(i, i + 77_777)
      })
      expect(odd.toString()).toBe(whole.toString())
    })
  })

  describe('with a shrunken layout on both sides', () => {
    const cases: Array<[string, number, UnixfsLayoutParams]> = [
      ['1025 leaves at width 1024 (two levels)', 1025 * 1024 + 5, { chunkSize: 1024, maxLinks: 1024 }],
      ['exactly 1024 leaves at width 1024 (one level)', 1024 * 1024, { chunkSize: 1024, maxLinks: 1024 }],
      ['2049 leaves at width 1024', 2049 * 512, { chunkSize: 512, maxLinks: 1024 }],
      ['four levels at width 4', 100, { chunkSize: 1, maxLinks: 4 }],
      ['a ragged tree at width 5', 1000, { chunkSize: 3, maxLinks: 5 }],
      ['a single chunk', 10, { chunkSize: 16, maxLinks: 4 }]
    ]
    for (const [label, size, params] of cases) {
      it(`matches ipfs-car for ${label}`, async () => {
        const bytes = randomBytes(size)
        const ours = await atlasCid(fromBytes(bytes), params)
        expect(ours.toString()).toBe((await ipfsCarCid(fromBytes(bytes), params)).toString())
      })
    }

    it('changes the CID when the layout changes (the comparison can tell layouts apart)', async () => {
      const bytes = randomBytes(1025 * 64)
      const wide = await atlasCid(fromBytes(bytes), { chunkSize: 64, maxLinks: 1024 })
      const narrow = await atlasCid(fromBytes(bytes), { chunkSize: 64, maxLinks: 1000 })
      const smaller = await atlasCid(fromBytes(bytes), { chunkSize: 32, maxLinks: 1024 })
      expect(new Set([wide.toString(), narrow.toString(), smaller.toString()]).size).toBe(3)
      expect((await ipfsCarCid(fromBytes(bytes), { chunkSize: 64, maxLinks: 1000 })).toString()).toBe(narrow.toString())
    })
  })
})

describe('UnixFS import with release (the ingest\'s path: chunks freed once their block is written)', () => {
  /**
   * Import `bytes` cut into fresh buffers of the chunk size (as the ingest hands them over), with
   * a release that frees each chunk as the ingest does (the buffer is detached: any later read
   * sees zero bytes). Checks that every chunk is released once, and only after its block is stored.
   */
  async function releasedImport (bytes: Uint8Array, params: UnixfsLayoutParams = {}): Promise<CID> {
    const chunkSize = params.chunkSize ?? UNIXFS_CHUNK_SIZE
    const chunks: Uint8Array[] = []
    for (let i = 0; i < bytes.byteLength; i += chunkSize) chunks.push(Uint8Array.from(bytes.subarray(i, i + chunkSize)))
    const stored = new Map<string, Uint8Array>()
    const released = new Set<Uint8Array>()
    const root = await importUnixfs((async function * () { yield * chunks })(), {
      put: async (cid, block) => {
        // a copy: the store must not depend on the chunk's memory outliving the put
        stored.set(cid.toString(), Uint8Array.from(block as Uint8Array))
        return cid
      }
    }, params, (chunk) => {
      expect(released.has(chunk), 'released twice').toBe(false)
      expect(chunks.includes(chunk), 'released something that is not a source chunk').toBe(true)
      // its block is stored by now, under the CID of its bytes
      expect([...stored.values()].some((b) => b.byteLength === chunk.byteLength && Buffer.from(b).equals(chunk))).toBe(true)
      released.add(chunk)
      const buffer = chunk.buffer as ArrayBuffer
      buffer.transfer(0)
    })
    expect(released.size).toBe(chunks.length)
    return root
  }

  const sizes: Array<[string, number, UnixfsLayoutParams]> = [
    ['1 byte', 1, {}],
    ['1 MiB', MiB, {}],
    ['1 MiB + 1', MiB + 1, {}],
    ['3.5 MiB', 3.5 * MiB, {}],
    ['1025 leaves at width 1024 (two levels)', 1025 * 1024 + 5, { chunkSize: 1024, maxLinks: 1024 }],
    ['a ragged tree at width 5', 1000, { chunkSize: 3, maxLinks: 5 }],
    ['a single chunk', 10, { chunkSize: 16, maxLinks: 4 }]
  ]
  for (const [label, size, params] of sizes) {
    it(`matches ipfs-car for ${label}`, async () => {
      const bytes = randomBytes(size)
      const expected = (await ipfsCarCid(fromBytes(bytes), Object.keys(params).length === 0 ? undefined : params)).toString()
      expect((await releasedImport(bytes, params)).toString()).toBe(expected)
    })
  }
})

async function collectAll (source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const chunk of source) out.push(chunk)
  return out
}
