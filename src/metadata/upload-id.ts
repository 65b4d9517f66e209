/**
 * Multipart upload ids. S3 lists the uploads of one key in the order they were initiated, and
 * continues such a listing after "upload ids lexicographically greater" than `upload-id-marker`.
 * Both agree only when ids sort in creation order, so an id here is, ULID-like:
 *
 *   10 characters: the creation time in milliseconds (50 bits)
 *    4 characters: a sequence number within that millisecond in this process (20 bits)
 *   16 characters: random (80 bits), so that processes never collide
 *
 * in lowercase Crockford base32, whose alphabet is in ASCII order: the ids are URL-safe, sort
 * bytewise like the numbers they encode, and start with a digit or a letter (never `-`, which
 * command-line clients would read as an option). The time in the id is the upload's `created_at`.
 */
import { randomBytes } from 'node:crypto'

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'
const TIME_CHARS = 10
const SEQUENCE_CHARS = 4
const RANDOM_BYTES = 10
const MAX_SEQUENCE = 32 ** SEQUENCE_CHARS - 1

/** Length of every id {@link UploadIdGenerator} makes */
export const UPLOAD_ID_LENGTH = TIME_CHARS + SEQUENCE_CHARS + (RANDOM_BYTES * 8) / 5

/** Makes upload ids that sort in the order they were made, within a process and across clocks. */
export class UploadIdGenerator {
  #lastMs = 0
  #sequence = 0

  /**
   * A new id and the time it encodes: `now`, or slightly later when the clock went back or a
   * millisecond's sequence ran out, so that ids from this generator always increase.
   */
  next (now: number = Date.now()): { id: string, time: Date } {
    if (now > this.#lastMs) {
      this.#lastMs = now
      this.#sequence = 0
    } else if (this.#sequence < MAX_SEQUENCE) {
      this.#sequence++
    } else {
      this.#lastMs++
      this.#sequence = 0
    }
    const id = encodeNumber(this.#lastMs, TIME_CHARS) + encodeNumber(this.#sequence, SEQUENCE_CHARS) + encodeBytes(randomBytes(RANDOM_BYTES))
    return { id, time: new Date(this.#lastMs) }
  }
}

/** `value` (a safe integer) in base32, left-padded to `chars` characters. */
function encodeNumber (value: number, chars: number): string {
  let out = ''
  for (let i = 0; i < chars; i++) {
    out = (ALPHABET[value % 32] as string) + out
    value = Math.floor(value / 32)
  }
  return out
}

/** Bytes in base32, five bits per character; the byte count must be a multiple of 5. */
function encodeBytes (bytes: Uint8Array): string {
  let out = ''
  let bits = 0
  let buffer = 0
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += ALPHABET[(buffer >> bits) & 31] as string
    }
    buffer &= (1 << bits) - 1
  }
  return out
}
