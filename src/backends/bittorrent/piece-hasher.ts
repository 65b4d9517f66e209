/**
 * Streaming hashes for the torrent profile: the SHA-1 of every piece and the SHA-256 of the whole
 * content (for the name), computed as the bytes of a put pass, without holding them.
 *
 * The piece length depends on the final size (`pieceLengthFor`), which a put may not know until
 * its source ends. With a size hint (the object store passes the request's Content-Length) the
 * hasher hashes at that one piece length. Without one it hashes at every piece length the final
 * size can still call for, and drops each as the byte count rules it out: all nine lengths for
 * the first 4 MiB, one (4 MiB) past 512 MiB. The SHA-1 work is then about (piece lengths still
 * possible at the end + 1) times the size: 9× for 4 MiB, 5× for 128 MiB, 3× for 512 MiB, 2× for
 * 1 GiB, and never more than about 1 GiB of extra SHA-1 (a second of one core) whatever the
 * size. Never a second read. (Measured on a 2-core runner: a 1 GiB put takes 3.4 s with a hint
 * and 3.7 s without, bound by the disk either way; 2.8 s and 4.0 s of CPU.)
 * A hint that turns out wrong (the source ends at another size that needs another piece length)
 * leaves the caller to hash the stored file again: see {@link hashPiecesOfFile}.
 */
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { MAX_PIECE_LENGTH, MIN_PIECE_LENGTH, pieceLengthFor } from './profile.ts'
import type { Hash } from 'node:crypto'

/** SHA-1 of consecutive pieces of one length. */
class PieceLevel {
  readonly pieceLength: number
  readonly #digests: Buffer[] = []
  #current: Hash | undefined
  #filled = 0

  constructor (pieceLength: number) {
    this.pieceLength = pieceLength
  }

  update (chunk: Uint8Array): void {
    let offset = 0
    while (offset < chunk.byteLength) {
      const take = Math.min(this.pieceLength - this.#filled, chunk.byteLength - offset)
      this.#current ??= createHash('sha1')
      this.#current.update(take === chunk.byteLength ? chunk : chunk.subarray(offset, offset + take))
      this.#filled += take
      offset += take
      if (this.#filled === this.pieceLength) {
        this.#digests.push(this.#current.digest())
        this.#current = undefined
        this.#filled = 0
      }
    }
  }

  /** The concatenated digests, the last (short) piece included. */
  finish (): Uint8Array {
    if (this.#current !== undefined) {
      this.#digests.push(this.#current.digest())
      this.#current = undefined
    }
    return Buffer.concat(this.#digests)
  }
}

/** What {@link TorrentHasher.finish} found. */
export interface TorrentHashes {
  size: number
  /** SHA-256 of the whole content; undefined when the hasher was told not to compute it */
  sha256: Uint8Array | undefined
  /** The profile's piece length for `size` */
  pieceLength: number
  /**
   * SHA-1 of each piece at `pieceLength`, concatenated; undefined when a wrong size hint kept
   * the hasher from computing them (hash the stored bytes again with {@link hashPiecesOfFile}).
   */
  pieces: Uint8Array | undefined
}

export interface TorrentHasherInit {
  /** The size the content is expected to have; hashing then runs at its piece length only */
  expectedSize?: number
  /**
   * Compute the SHA-256 of the whole content (the torrent's name). Off when the caller has it
   * from elsewhere (the ingest's digests, computed over the same bytes).
   *
   * @default true
   */
  sha256?: boolean
}

/** Every piece length of the profile, smallest first. */
function allPieceLengths (): number[] {
  const lengths: number[] = []
  for (let length = MIN_PIECE_LENGTH; length <= MAX_PIECE_LENGTH; length *= 2) lengths.push(length)
  return lengths
}

/**
 * Hashes a content as it streams by, for the torrent profile. Feed every chunk, in order, to
 * `update()`, then call `finish()` once.
 */
export class TorrentHasher {
  readonly #sha256: Hash | undefined
  #levels: PieceLevel[]
  #size = 0

  constructor (init: TorrentHasherInit = {}) {
    const { expectedSize } = init
    this.#sha256 = init.sha256 === false ? undefined : createHash('sha256')
    const lengths = expectedSize !== undefined && Number.isSafeInteger(expectedSize) && expectedSize >= 0
      ? [pieceLengthFor(expectedSize)]
      : allPieceLengths()
    this.#levels = lengths.map(length => new PieceLevel(length))
  }

  /** Bytes seen so far. */
  get size (): number {
    return this.#size
  }

  /** Piece lengths still being hashed (for tests and logs). */
  get pieceLengths (): number[] {
    return this.#levels.map(level => level.pieceLength)
  }

  update (chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return
    this.#size += chunk.byteLength
    // the final size is at least what has been seen: shorter pieces than it calls for are out
    const floor = pieceLengthFor(this.#size)
    if ((this.#levels[0]?.pieceLength ?? Infinity) < floor) {
      this.#levels = this.#levels.filter(level => level.pieceLength >= floor)
    }
    this.#sha256?.update(chunk)
    for (const level of this.#levels) level.update(chunk)
  }

  finish (): TorrentHashes {
    const pieceLength = pieceLengthFor(this.#size)
    const level = this.#levels.find(l => l.pieceLength === pieceLength)
    return {
      size: this.#size,
      sha256: this.#sha256?.digest(),
      pieceLength,
      pieces: level?.finish()
    }
  }
}

/**
 * SHA-1 of each piece of the file at `path`, read once from start to end. The slow path, for a
 * put whose size hint was wrong, and for `BitTorrentBackend.verify()`.
 */
export async function hashPiecesOfFile (path: string, pieceLength: number, signal?: AbortSignal): Promise<Uint8Array> {
  const level = new PieceLevel(pieceLength)
  const handle = await open(path, 'r')
  try {
    const buffer = Buffer.allocUnsafe(Math.max(pieceLength, 1024 * 1024))
    while (true) {
      signal?.throwIfAborted()
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null)
      if (bytesRead === 0) break
      level.update(buffer.subarray(0, bytesRead))
    }
  } finally {
    await handle.close()
  }
  return level.finish()
}
