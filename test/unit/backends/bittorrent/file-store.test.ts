/**
 * The chunk store WebTorrent seeds from: every block answers with the file's bytes, in any order
 * and all at once; requests within a read-ahead window are served from it (no read of their own);
 * windows are bounded and let go of.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { FileChunkStore, MAX_WINDOWS, READ_AHEAD_BYTES, WINDOW_IDLE_MS } from '../../../../src/backends/bittorrent/file-store.ts'

const KiB = 1024
const BLOCK = 16 * KiB
const PIECE = 1024 * KiB

async function get (store: FileChunkStore, index: number, opts?: { offset?: number, length?: number }): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    store.get(index, opts, (err, buf) => {
      if (err !== null) reject(err)
      else resolve(Buffer.from(buf as Uint8Array))
    })
  })
}

describe('FileChunkStore', () => {
  let dir: string
  let file: string
  let bytes: Buffer
  let store: FileChunkStore

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-file-store-'))
    file = join(dir, 'data')
    // three whole pieces and a short one
    bytes = randomBytes(3 * PIECE + 100 * KiB + 7)
    await writeFile(file, bytes)
    store = new FileChunkStore(file, PIECE, bytes.byteLength)
  })

  afterEach(async () => {
    vi.useRealTimers()
    await new Promise<void>(resolve => { store.close(() => { resolve() }) })
    await rm(dir, { recursive: true, force: true })
  })

  it('answers every block, asked all at once in random order, with the file\'s bytes', async () => {
    const requests: Array<{ index: number, offset: number, length: number }> = []
    for (let index = 0; index * PIECE < bytes.byteLength; index++) {
      const pieceLength = Math.min(PIECE, bytes.byteLength - index * PIECE)
      for (let offset = 0; offset < pieceLength; offset += BLOCK) requests.push({ index, offset, length: Math.min(BLOCK, pieceLength - offset) })
    }
    requests.sort(() => Math.random() - 0.5)
    const got = await Promise.all(requests.map(async r => await get(store, r.index, { offset: r.offset, length: r.length })))
    requests.forEach((r, i) => {
      const start = r.index * PIECE + r.offset
      expect(got[i]?.equals(bytes.subarray(start, start + r.length))).toBe(true)
    })
  })

  it('answers whole pieces, the short last one included, and odd offsets and lengths', async () => {
    for (let index = 0; index < 4; index++) {
      expect((await get(store, index)).equals(bytes.subarray(index * PIECE, (index + 1) * PIECE))).toBe(true)
    }
    expect((await get(store, 1, { offset: 12_345, length: 300_001 })).equals(bytes.subarray(PIECE + 12_345, PIECE + 312_346))).toBe(true)
    expect((await get(store, 2, { offset: 5 })).equals(bytes.subarray(2 * PIECE + 5, 3 * PIECE))).toBe(true)
    expect((await get(store, 0, { offset: 10, length: 0 })).byteLength).toBe(0)
  })

  it('serves the blocks after the first one of a window from what it read, then lets the window go', async () => {
    const first = await get(store, 1, { offset: 0, length: BLOCK })
    expect(first.equals(bytes.subarray(PIECE, PIECE + BLOCK))).toBe(true)
    expect(store.windows).toBe(1)
    // the file changes under the store: blocks of the window still come from the read
    const changed = Buffer.from(bytes)
    changed.fill(0, PIECE, 2 * PIECE)
    await writeFile(file, changed)
    for (let offset = BLOCK; offset < READ_AHEAD_BYTES; offset += BLOCK) {
      expect((await get(store, 1, { offset, length: BLOCK })).equals(bytes.subarray(PIECE + offset, PIECE + offset + BLOCK))).toBe(true)
    }
    // every byte of the window handed out: it is gone, and the next block is a new read
    expect(store.windows).toBe(0)
    expect((await get(store, 1, { offset: 0, length: BLOCK })).equals(changed.subarray(PIECE, PIECE + BLOCK))).toBe(true)
  })

  it('does not read ahead past the end of a piece', async () => {
    const offset = PIECE - 2 * BLOCK
    await get(store, 0, { offset, length: BLOCK })
    const changed = Buffer.alloc(bytes.byteLength)
    await writeFile(file, changed)
    // the window ends with piece 0; piece 1 is read anew
    expect((await get(store, 0, { offset: offset + BLOCK, length: BLOCK })).equals(bytes.subarray(offset + BLOCK, PIECE))).toBe(true)
    expect((await get(store, 1, { offset: 0, length: BLOCK })).equals(changed.subarray(PIECE, PIECE + BLOCK))).toBe(true)
  })

  it(`holds at most ${MAX_WINDOWS} windows, and none once idle for ${WINDOW_IDLE_MS} ms`, async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] })
    for (let i = 0; i < 2 * MAX_WINDOWS; i++) {
      // windows of pieces 0 to 2, at their first three read-ahead offsets
      await get(store, i % 3, { offset: Math.floor(i / 3) * READ_AHEAD_BYTES, length: BLOCK })
      expect(store.windows).toBeLessThanOrEqual(MAX_WINDOWS)
    }
    expect(store.windows).toBe(MAX_WINDOWS)
    vi.advanceTimersByTime(2 * WINDOW_IDLE_MS)
    expect(store.windows).toBe(0)
  })

  it('refuses bytes outside the content, writes, and reads once closed', async () => {
    await expect(get(store, 4)).rejects.toBeInstanceOf(RangeError)
    await expect(get(store, 3, { offset: 100 * KiB, length: 8 })).rejects.toBeInstanceOf(RangeError)
    await expect(get(store, -1)).rejects.toBeInstanceOf(RangeError)
    await expect(new Promise((resolve, reject) => { store.put(0, Buffer.alloc(1), err => { if (err !== null) reject(err); else resolve(undefined) }) })).rejects.toThrow(/read-only/)
    await get(store, 0, { offset: 0, length: BLOCK })
    await new Promise<void>(resolve => { store.close(() => { resolve() }) })
    expect(store.windows).toBe(0)
    await expect(get(store, 0, { offset: BLOCK, length: BLOCK })).rejects.toThrow(/closed/)
  })

  it('closes the file only once the reads in flight are over, and they are answered', async () => {
    // opens the file; the next request starts a read at once, then the store closes under it
    await get(store, 0, { offset: 0, length: BLOCK })
    const inFlight = get(store, 2, { offset: 0, length: BLOCK })
    let closed = false
    const closing = new Promise<void>(resolve => { store.close(() => { closed = true; resolve() }) })
    expect(closed).toBe(false)
    expect((await inFlight).equals(bytes.subarray(2 * PIECE, 2 * PIECE + BLOCK))).toBe(true)
    await closing
    expect(closed).toBe(true)
  })

  it('fails the requests waiting on a read of a file that is shorter than the torrent says', async () => {
    await writeFile(file, bytes.subarray(0, PIECE + 10))
    const waiting = [0, 1, 2].map(async i => await get(store, 1, { offset: i * BLOCK, length: BLOCK }))
    for (const request of waiting) await expect(request).rejects.toThrow(/ended/)
    expect(store.windows).toBe(0)
  })
})
