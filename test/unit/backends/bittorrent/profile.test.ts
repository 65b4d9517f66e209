/**
 * The torrent profile: the piece-length table, the info dictionary and its infohash, the .torrent
 * file and the magnet link. The references are independent implementations: create-torrent
 * (which hashes the bytes itself) for the infohash, parse-torrent for reading back what Atlas
 * writes, and plain SHA-1 over slices for the piece hashes.
 */
import { createHash, randomBytes } from 'node:crypto'
import bencode from 'bencode'
import createTorrent from 'create-torrent'
import parseTorrent from 'parse-torrent'
import { describe, expect, it } from 'vitest'
import { TorrentHasher } from '../../../../src/backends/bittorrent/piece-hasher.ts'
import {
  MAX_PIECE_LENGTH,
  MIN_PIECE_LENGTH,
  decodeTorrentFile,
  encodeInfo,
  encodeTorrentFile,
  infoHashOf,
  magnetLink,
  pieceCount,
  pieceLengthFor
} from '../../../../src/backends/bittorrent/profile.ts'
import { canonicalIdFromSha256 } from '../../../../src/core/content-id.ts'
import type { TorrentInfo } from '../../../../src/backends/bittorrent/profile.ts'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

/** SHA-1 of each `pieceLength` slice of `bytes`, the obvious way. */
function referencePieces (bytes: Uint8Array, pieceLength: number): Buffer {
  const digests: Buffer[] = []
  for (let i = 0; i < bytes.byteLength; i += pieceLength) {
    digests.push(createHash('sha1').update(bytes.subarray(i, i + pieceLength)).digest())
  }
  return Buffer.concat(digests)
}

function infoFor (bytes: Uint8Array): TorrentInfo {
  const pieceLength = pieceLengthFor(bytes.byteLength)
  return {
    name: canonicalIdFromSha256(createHash('sha256').update(bytes).digest()),
    length: bytes.byteLength,
    pieceLength,
    pieces: referencePieces(bytes, pieceLength)
  }
}

/** The .torrent create-torrent makes for `bytes` under the same name and piece length. */
async function createTorrentFile (bytes: Buffer, name: string, pieceLength: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    createTorrent(bytes, { name, pieceLength, announceList: [] }, (err, torrent) => {
      if (err !== null && err !== undefined) reject(err)
      else resolve(torrent)
    })
  })
}

describe('pieceLengthFor', () => {
  const table: Array<[number, number]> = [
    [0, 16 * KiB],
    [1, 16 * KiB],
    [4 * MiB, 16 * KiB],
    [4 * MiB + 1, 32 * KiB],
    [8 * MiB, 32 * KiB],
    [8 * MiB + 1, 64 * KiB],
    [16 * MiB, 64 * KiB],
    [16 * MiB + 1, 128 * KiB],
    [32 * MiB, 128 * KiB],
    [32 * MiB + 1, 256 * KiB],
    [64 * MiB, 256 * KiB],
    [64 * MiB + 1, 512 * KiB],
    [128 * MiB, 512 * KiB],
    [128 * MiB + 1, MiB],
    [256 * MiB, MiB],
    [256 * MiB + 1, 2 * MiB],
    [512 * MiB, 2 * MiB],
    [512 * MiB + 1, 4 * MiB],
    [GiB, 4 * MiB],
    [100 * GiB, 4 * MiB]
  ]
  for (const [size, expected] of table) {
    it(`gives ${expected / KiB} KiB pieces to ${size} bytes`, () => {
      expect(pieceLengthFor(size)).toBe(expected)
    })
  }

  it('keeps pieces between 16 KiB and 4 MiB, powers of two, at most 256 of them below 1 GiB', () => {
    for (let size = 1; size < 2 * GiB; size = Math.ceil(size * 1.37)) {
      const length = pieceLengthFor(size)
      expect(length).toBeGreaterThanOrEqual(MIN_PIECE_LENGTH)
      expect(length).toBeLessThanOrEqual(MAX_PIECE_LENGTH)
      expect(length & (length - 1)).toBe(0)
      if (size <= GiB) expect(pieceCount(size, length)).toBeLessThanOrEqual(256)
      // never more pieces than needed: half the length would need more than 256
      if (length > MIN_PIECE_LENGTH && length < MAX_PIECE_LENGTH) expect(pieceCount(size, length / 2)).toBeGreaterThan(256)
    }
  })

  it('never shrinks as the size grows', () => {
    let previous = 0
    for (let size = 0; size < 4 * GiB; size += 7 * MiB + 12_345) {
      const length = pieceLengthFor(size)
      expect(length).toBeGreaterThanOrEqual(previous)
      previous = length
    }
  })

  it('rejects sizes that are not non-negative integers', () => {
    expect(() => pieceLengthFor(-1)).toThrow(RangeError)
    expect(() => pieceLengthFor(1.5)).toThrow(RangeError)
  })
})

describe('the info dictionary and its infohash', () => {
  for (const size of [1, 1000, 16 * KiB, 16 * KiB + 1, 3 * MiB + 17, 5 * MiB]) {
    it(`equals create-torrent's for the same ${size} bytes, name and piece length`, async () => {
      const bytes = randomBytes(size)
      const info = infoFor(bytes)
      const reference = await parseTorrent(await createTorrentFile(bytes, info.name, info.pieceLength))
      expect(infoHashOf(info)).toBe(reference.infoHash)
      expect(Buffer.from(encodeInfo(info)).equals(Buffer.from(reference.infoBuffer as Uint8Array))).toBe(true)
    })
  }

  it('holds exactly length, name, piece length and pieces, keys sorted', () => {
    const info = infoFor(randomBytes(100))
    const encoded = Buffer.from(encodeInfo(info)).toString('latin1')
    expect(encoded).toMatch(/^d6:lengthi100e4:name59:bafkrei[a-z2-7]{52}12:piece lengthi16384e6:pieces20:/)
    expect(encoded.endsWith('e')).toBe(true)
    expect(encoded.length).toBe('d6:lengthi100e4:name59:'.length + 59 + '12:piece lengthi16384e6:pieces20:'.length + 20 + 1)
  })

  it('is the same for the same bytes, whatever else goes into the .torrent', async () => {
    const info = infoFor(randomBytes(50_000))
    const a = await parseTorrent(encodeTorrentFile(info, { announce: [], urlList: [] }))
    const b = await parseTorrent(encodeTorrentFile(info, { announce: ['http://127.0.0.1:1/announce', 'udp://127.0.0.1:2'], urlList: ['http://example.test/bt/x'] }))
    expect(a.infoHash).toBe(infoHashOf(info))
    expect(b.infoHash).toBe(infoHashOf(info))
  })

  it('rejects piece hashes that do not match the length and piece length', () => {
    const info = infoFor(randomBytes(40_000))
    expect(() => encodeInfo({ ...info, pieces: info.pieces.subarray(20) })).toThrow(TypeError)
    expect(() => encodeInfo({ ...info, pieceLength: 3 * KiB })).toThrow(TypeError)
    expect(() => encodeInfo({ ...info, pieceLength: 8 * MiB })).toThrow(TypeError)
  })

  it('describes an empty content with no pieces', async () => {
    const info = infoFor(new Uint8Array(0))
    expect(info.pieces.byteLength).toBe(0)
    const parsed = await parseTorrent(encodeTorrentFile(info, { announce: [], urlList: [] }))
    expect(parsed.infoHash).toBe(infoHashOf(info))
    expect(parsed.length).toBe(0)
  })
})

describe('the .torrent file', () => {
  const info = infoFor(randomBytes(70_000))
  const extras = { announce: ['http://127.0.0.1:6969/announce', 'udp://127.0.0.1:6969'], urlList: ['https://atlas.test/bt/abc'] }

  it('reads back with parse-torrent: name, sizes, pieces, trackers in order, webseed', async () => {
    const parsed = await parseTorrent(encodeTorrentFile(info, extras))
    expect(parsed.infoHash).toBe(infoHashOf(info))
    expect(parsed.name).toBe(info.name)
    expect(parsed.length).toBe(70_000)
    expect(parsed.pieceLength).toBe(16 * KiB)
    expect(parsed.lastPieceLength).toBe(70_000 - 4 * 16 * KiB)
    expect(parsed.pieces).toEqual(Array.from({ length: 5 }, (_, i) => Buffer.from(info.pieces.subarray(i * 20, i * 20 + 20)).toString('hex')))
    expect(parsed.announce).toEqual(extras.announce)
    expect(parsed.urlList).toEqual(extras.urlList)
    expect(parsed.private).toBeUndefined()
  })

  it('carries no creation date, creator, comment or encoding, and one tracker per tier', () => {
    const decoded = bencode.decode(encodeTorrentFile(info, extras)) as Record<string, unknown>
    expect(Object.keys(decoded).sort()).toEqual(['announce', 'announce-list', 'info', 'url-list'])
    expect((decoded['announce-list'] as unknown[][]).map(tier => tier.length)).toEqual([1, 1])
  })

  it('leaves out announce and url-list when there are none, and is byte-identical each time', () => {
    const bare = encodeTorrentFile(info, { announce: [], urlList: [] })
    expect(Object.keys(bencode.decode(bare) as object)).toEqual(['info'])
    expect(Buffer.from(encodeTorrentFile(info, { announce: [], urlList: [] })).equals(Buffer.from(bare))).toBe(true)
  })

  it('decodes back to the same info', () => {
    const back = decodeTorrentFile(encodeTorrentFile(info, extras))
    expect(back.name).toBe(info.name)
    expect(back.length).toBe(info.length)
    expect(back.pieceLength).toBe(info.pieceLength)
    expect(Buffer.from(back.pieces).equals(Buffer.from(info.pieces))).toBe(true)
  })

  it('refuses files that are not single-file v1 torrents', () => {
    expect(() => decodeTorrentFile(new TextEncoder().encode('not bencode'))).toThrow(TypeError)
    expect(() => decodeTorrentFile(bencode.encode({ announce: 'x' }))).toThrow(TypeError)
    expect(() => decodeTorrentFile(bencode.encode({ info: { name: 'x', 'piece length': 16384, pieces: new Uint8Array(20), files: [] } }))).toThrow(TypeError)
  })
})

describe('magnetLink', () => {
  it('has xt, dn, xl, one tr per tracker and one ws per webseed, percent-encoded', async () => {
    const infoHash = 'a'.repeat(40)
    const link = magnetLink(infoHash, 'bafkreiname', 1234, {
      announce: ['http://127.0.0.1:6969/announce', 'udp://tracker.test:80'],
      urlList: ['https://atlas.test/bt/' + infoHash]
    })
    expect(link).toBe(
      `magnet:?xt=urn:btih:${infoHash}&dn=bafkreiname&xl=1234` +
      '&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=udp%3A%2F%2Ftracker.test%3A80' +
      `&ws=https%3A%2F%2Fatlas.test%2Fbt%2F${infoHash}`
    )
    const parsed = await parseTorrent(link)
    expect(parsed.infoHash).toBe(infoHash)
    expect(parsed.name).toBe('bafkreiname')
    expect(parsed.announce).toEqual(['http://127.0.0.1:6969/announce', 'udp://tracker.test:80'])
    expect(parsed.urlList).toEqual([`https://atlas.test/bt/${infoHash}`])
  })

  it('has neither tr nor ws when there are no trackers and no webseed', () => {
    expect(magnetLink('b'.repeat(40), 'n', 0, { announce: [], urlList: [] })).toBe(`magnet:?xt=urn:btih:${'b'.repeat(40)}&dn=n&xl=0`)
  })
})

describe('TorrentHasher', () => {
  /** `bytes` cut at the given sizes, cycling. */
  function * cut (bytes: Uint8Array, sizes: number[]): Generator<Uint8Array> {
    for (let i = 0, n = 0; i < bytes.byteLength; n++) {
      const size = sizes[n % sizes.length] as number
      yield bytes.subarray(i, i + size)
      i += size
    }
  }

  const cases: Array<[string, number, number[]]> = [
    ['one byte', 1, [1]],
    ['a piece exactly', 16 * KiB, [5000]],
    ['a piece and a byte, in odd chunks', 16 * KiB + 1, [1, 7, 16 * KiB]],
    ['4 MiB (the last 16 KiB size)', 4 * MiB, [65_536]],
    ['4 MiB + 1 (the first 32 KiB size)', 4 * MiB + 1, [MiB + 3, 13]],
    ['9 MiB + 5 in chunks larger than a piece', 9 * MiB + 5, [3 * MiB + 1]]
  ]
  for (const [label, size, sizes] of cases) {
    for (const hinted of [true, false]) {
      it(`hashes ${label} like SHA-1 over slices (${hinted ? 'with' : 'without'} a size hint)`, () => {
        const bytes = randomBytes(size)
        const hasher = new TorrentHasher(hinted ? { expectedSize: size } : {})
        for (const chunk of cut(bytes, sizes)) hasher.update(chunk)
        const result = hasher.finish()
        expect(result.size).toBe(size)
        expect(result.pieceLength).toBe(pieceLengthFor(size))
        expect(Buffer.from(result.pieces as Uint8Array).equals(referencePieces(bytes, result.pieceLength))).toBe(true)
        expect(Buffer.from(result.sha256 as Uint8Array).toString('hex')).toBe(createHash('sha256').update(bytes).digest('hex'))
      })
    }
  }

  it('drops piece lengths the byte count rules out, without a hint', () => {
    const hasher = new TorrentHasher()
    expect(hasher.pieceLengths).toHaveLength(9)
    hasher.update(new Uint8Array(4 * MiB + 1))
    expect(hasher.pieceLengths[0]).toBe(32 * KiB)
    hasher.update(new Uint8Array(508 * MiB))
    expect(hasher.pieceLengths).toEqual([4 * MiB])
  })

  it('hashes at the hinted piece length only, and says so when the hint was wrong', () => {
    const hasher = new TorrentHasher({ expectedSize: 100 * MiB })
    expect(hasher.pieceLengths).toEqual([512 * KiB])
    hasher.update(randomBytes(1000))
    const result = hasher.finish()
    expect(result.pieceLength).toBe(16 * KiB)
    expect(result.pieces).toBeUndefined()
  })

  it('finishes an empty content with no pieces and the SHA-256 of nothing', () => {
    const result = new TorrentHasher().finish()
    expect(result.size).toBe(0)
    expect(result.pieces?.byteLength).toBe(0)
    expect(Buffer.from(result.sha256 as Uint8Array).toString('hex')).toBe(createHash('sha256').digest('hex'))
  })

  it('leaves the whole-content SHA-256 to a caller that has it, and still hashes every piece', () => {
    const bytes = randomBytes(300_000)
    const hasher = new TorrentHasher({ expectedSize: bytes.byteLength, sha256: false })
    hasher.update(bytes)
    const result = hasher.finish()
    expect(result.sha256).toBeUndefined()
    expect(Buffer.from(result.pieces as Uint8Array).equals(referencePieces(bytes, result.pieceLength))).toBe(true)
  })
})
