/**
 * The chunk store WebTorrent seeds from: the content's own data file, read in place.
 *
 * WebTorrent's default store (fs-chunk-store) would open the file read-write, create it if
 * missing and, behind its default cache, read a whole piece (up to 4 MiB here) to answer a 16 KiB
 * block request, and keep up to 20 such pieces per torrent for as long as the torrent lives.
 * Atlas's data files are complete and immutable once renamed into place, so this store is
 * read-only, and reads ahead a little instead: a request that misses reads
 * {@link READ_AHEAD_BYTES} from its offset (not past the end of its piece) into a window, and the
 * requests that follow (peers ask for a piece's 16 KiB blocks in order, many at once) are served
 * from it as slices, with no further read. One read per 16 KiB block costs WebTorrent's main
 * thread a thread-pool round trip and a fresh buffer each; one per 256 KiB costs a sixteenth of
 * that (measured: aria2c pulling 256 MiB over loopback). A store holds at most
 * {@link MAX_WINDOWS} windows, drops each as soon as all its bytes have been handed out, and
 * drops what is left after {@link WINDOW_IDLE_MS} without a request, so an idle torrent holds no
 * memory; the OS page cache does the caching beyond that. The file is opened on the first
 * request, not when the torrent is added, so that seeding thousands of contents does not hold
 * thousands of descriptors; it is closed when WebTorrent closes the store (the torrent is removed
 * or the client destroyed).
 */
import { close, open, read } from 'node:fs'
import type { ChunkStore } from 'webtorrent'

/** Bytes read at once when a request finds no window holding it (never past its piece's end). */
export const READ_AHEAD_BYTES = 256 * 1024
/** Windows one store holds at most: a few peers, or one peer on a few pieces, at a time. */
export const MAX_WINDOWS = 4
/** A store drops its windows when no request came for this long. */
export const WINDOW_IDLE_MS = 2_000

type Callback<T> = (err: Error | null, value?: T) => void

/** Bytes `[start, end)` of the file, being read (`buffer` undefined) or read. */
interface Window {
  start: number
  end: number
  buffer: Buffer | undefined
  /** Requests waiting for the read */
  waiting: Array<() => void>
  /** Bytes handed out so far: the window goes once every byte has been */
  served: number
  error: Error | undefined
}

export class FileChunkStore implements ChunkStore {
  readonly chunkLength: number
  readonly #path: string
  readonly #length: number
  #fd: number | undefined
  #opening: Array<Callback<number>> | undefined
  #closed = false
  /** Read-ahead windows, oldest first */
  #windows: Window[] = []
  #lastRequest = 0
  #idleTimer: NodeJS.Timeout | undefined
  /** Reads in flight, and what close() left to do once they are over */
  #reads = 0
  #afterReads: (() => void) | undefined

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
    if (this.#closed) {
      queueMicrotask(() => { cb(new Error('The store is closed')) })
      return
    }
    const start = pieceStart + offset
    const end = start + length
    this.#lastRequest = performance.now()
    let window = this.#windows.find(w => w.start <= start && end <= w.end)
    if (window === undefined) {
      window = this.#readWindow(start, Math.max(end, Math.min(pieceStart + pieceLength, start + READ_AHEAD_BYTES)))
    }
    const serve = (w: Window): void => {
      if (w.error !== undefined || w.buffer === undefined) {
        cb(w.error ?? new Error('The store is closed'))
        return
      }
      w.served += length
      if (w.served >= w.end - w.start) this.#drop(w)
      // a slice, not a copy: the window's buffer is never written again once read
      cb(null, w.buffer.subarray(start - w.start, end - w.start))
    }
    if (window.buffer !== undefined || window.error !== undefined) {
      const ready = window
      queueMicrotask(() => { serve(ready) })
    } else {
      const pending = window
      pending.waiting.push(() => { serve(pending) })
    }
  }

  /** Start reading `[start, end)` into a new window, which requests can wait on at once. */
  #readWindow (start: number, end: number): Window {
    const window: Window = { start, end, buffer: undefined, waiting: [], served: 0, error: undefined }
    this.#windows.push(window)
    // past the bound, forget the oldest: requests already waiting on it are still answered
    if (this.#windows.length > MAX_WINDOWS) this.#windows.shift()
    this.#armIdleTimer()
    const settle = (err: Error | null, buffer?: Buffer): void => {
      if (err !== null) {
        window.error = err
        this.#drop(window)
      } else {
        window.buffer = buffer
      }
      const waiting = window.waiting
      window.waiting = []
      for (const wake of waiting) wake()
    }
    this.#withFd((err, fd) => {
      if (err !== null || fd === undefined) {
        settle(err ?? new Error('The store is closed'))
        return
      }
      const buffer = Buffer.allocUnsafe(end - start)
      this.#reads++
      readFully(fd, buffer, start, (readErr) => {
        this.#reads--
        if (readErr !== null) settle(readErr)
        else settle(null, buffer)
        if (this.#reads === 0) this.#afterReads?.()
      })
    })
    return window
  }

  #drop (window: Window): void {
    const at = this.#windows.indexOf(window)
    if (at !== -1) this.#windows.splice(at, 1)
  }

  /** Drop the windows of a store that stopped being asked (a peer that went away mid-piece). */
  #armIdleTimer (): void {
    if (this.#idleTimer !== undefined) return
    const check = (): void => {
      this.#idleTimer = undefined
      if (this.#windows.length === 0) return
      if (performance.now() - this.#lastRequest >= WINDOW_IDLE_MS) {
        this.#windows = this.#windows.filter(w => w.buffer === undefined && w.error === undefined)
        if (this.#windows.length === 0) return
      }
      this.#idleTimer = setTimeout(check, WINDOW_IDLE_MS)
      this.#idleTimer.unref()
    }
    this.#idleTimer = setTimeout(check, WINDOW_IDLE_MS)
    this.#idleTimer.unref()
  }

  /** Windows held now (for tests). */
  get windows (): number {
    return this.#windows.length
  }

  put (index: number, _buf: Uint8Array, cb?: (err: Error | null) => void): void {
    // a complete seed never downloads; a write would mean WebTorrent thinks a piece is missing
    queueMicrotask(() => { cb?.(new Error(`The content is read-only (piece ${index})`)) })
  }

  close (cb?: (err?: Error | null) => void): void {
    this.#closed = true
    this.#windows = []
    clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
    const fd = this.#fd
    this.#fd = undefined
    if (fd === undefined) {
      queueMicrotask(() => { cb?.(null) })
      return
    }
    // never close the descriptor under a read: its number could be reused by another open file
    if (this.#reads > 0) {
      this.#afterReads = () => { close(fd, err => { cb?.(err) }) }
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
