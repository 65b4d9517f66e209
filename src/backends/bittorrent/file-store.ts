/**
 * The chunk store WebTorrent seeds from: the content's own data file, read in place.
 *
 * WebTorrent's default store (fs-chunk-store) would open the file read-write, create it if
 * missing and, behind its default cache, read a whole piece (up to 4 MiB here) to answer a 16 KiB
 * block request. Atlas's data files are complete and immutable once renamed into place, so this
 * store is read-only and answers each request with one positional read of exactly the bytes
 * asked for (the OS page cache does the caching). The file is opened on the first request, not
 * when the torrent is added, so that seeding thousands of contents does not hold thousands of
 * descriptors; it is closed when WebTorrent closes the store (the torrent is removed or the
 * client destroyed).
 */
import { close, open, read } from 'node:fs'
import type { ChunkStore } from 'webtorrent'

type Callback<T> = (err: Error | null, value?: T) => void

export class FileChunkStore implements ChunkStore {
  readonly chunkLength: number
  readonly #path: string
  readonly #length: number
  #fd: number | undefined
  #opening: Array<Callback<number>> | undefined
  #closed = false

  /**
   * @param path the data file
   * @param chunkLength the torrent's piece length
   * @param length the content's size
   */
  constructor (path: string, chunkLength: number, length: number) {
    this.chunkLength = chunkLength
    this.#path = path
    this.#length = length
  }

  get (index: number, opts: { offset?: number, length?: number } | null | undefined, cb: (err: Error | null, buf?: Uint8Array) => void): void {
    if (typeof opts === 'function') {
      // abstract-chunk-store allows get(index, cb)
      this.get(index, null, opts)
      return
    }
    const pieceStart = index * this.chunkLength
    const pieceLength = Math.min(this.chunkLength, this.#length - pieceStart)
    const offset = opts?.offset ?? 0
    const length = opts?.length ?? pieceLength - offset
    if (!Number.isInteger(index) || index < 0 || pieceLength <= 0 || offset < 0 || length < 0 || offset + length > pieceLength) {
      queueMicrotask(() => { cb(new RangeError(`No bytes ${offset}+${length} in piece ${index}`)) })
      return
    }
    this.#withFd((err, fd) => {
      if (err !== null || fd === undefined) {
        cb(err ?? new Error('The store is closed'))
        return
      }
      const buffer = Buffer.allocUnsafe(length)
      readFully(fd, buffer, pieceStart + offset, (readErr) => {
        if (readErr !== null) cb(readErr)
        else cb(null, buffer)
      })
    })
  }

  put (index: number, _buf: Uint8Array, cb?: (err: Error | null) => void): void {
    // a complete seed never downloads; a write would mean WebTorrent thinks a piece is missing
    queueMicrotask(() => { cb?.(new Error(`The content is read-only (piece ${index})`)) })
  }

  close (cb?: (err?: Error | null) => void): void {
    this.#closed = true
    const fd = this.#fd
    this.#fd = undefined
    if (fd === undefined) {
      queueMicrotask(() => { cb?.(null) })
      return
    }
    close(fd, err => { cb?.(err) })
  }

  /** The data file is Atlas's, not WebTorrent's: destroying the store only closes it. */
  destroy (cb?: (err?: Error | null) => void): void {
    this.close(cb)
  }

  #withFd (cb: Callback<number>): void {
    if (this.#closed) {
      queueMicrotask(() => { cb(new Error('The store is closed')) })
      return
    }
    if (this.#fd !== undefined) {
      cb(null, this.#fd)
      return
    }
    if (this.#opening !== undefined) {
      this.#opening.push(cb)
      return
    }
    const waiting: Array<Callback<number>> = [cb]
    this.#opening = waiting
    open(this.#path, 'r', (err, fd) => {
      this.#opening = undefined
      if (err === null && this.#closed) {
        close(fd, () => {})
        for (const w of waiting) w(new Error('The store is closed'))
        return
      }
      if (err === null) this.#fd = fd
      for (const w of waiting) w(err, err === null ? fd : undefined)
    })
  }
}

/** Fill `buffer` from `fd` at `position`, however many reads it takes. */
function readFully (fd: number, buffer: Buffer, position: number, cb: (err: Error | null) => void): void {
  if (buffer.byteLength === 0) {
    queueMicrotask(() => { cb(null) })
    return
  }
  let done = 0
  const next = (): void => {
    read(fd, buffer, done, buffer.byteLength - done, position + done, (err, bytesRead) => {
      if (err !== null) {
        cb(err)
        return
      }
      if (bytesRead === 0) {
        cb(new Error(`The data file ended ${buffer.byteLength - done} bytes early`))
        return
      }
      done += bytesRead
      if (done === buffer.byteLength) cb(null)
      else next()
    })
  }
  next()
}
