/**
 * The benchmark's payload: a deterministic, incompressible byte stream that is cheap to make.
 *
 * The bytes are the AES-128-CTR keystream (AES over zero buffers) under a key and IV derived from
 * a seed string, so the REST upload and the direct Helia reference consume exactly the same bytes
 * without either holding them in memory, every 1 MiB chunk differs from every other (no
 * deduplication of leaves), and making them costs well under a millisecond per MiB with AES-NI.
 */
import { createCipheriv, createHash } from 'node:crypto'

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

/** Size of the chunks the generator yields (the UnixFS leaf size, so chunks map onto leaves). */
export const PAYLOAD_CHUNK_SIZE = MiB

/** One benchmark payload: `size` bytes of the keystream named by `seed`. */
export interface Payload {
  size: number
  seed: string
}

const ZEROS = Buffer.alloc(PAYLOAD_CHUNK_SIZE)

/**
 * Yield the bytes of `payload` in chunks of {@link PAYLOAD_CHUNK_SIZE} (the last one shorter).
 * Every chunk is a fresh buffer: consumers may keep references to them.
 */
export function * payloadBytes (payload: Payload): Generator<Buffer, void, undefined> {
  const digest = createHash('sha256').update(`atlas-bench:${payload.seed}`).digest()
  const cipher = createCipheriv('aes-128-ctr', digest.subarray(0, 16), digest.subarray(16, 32))
  let left = payload.size
  while (left > 0) {
    const n = Math.min(left, PAYLOAD_CHUNK_SIZE)
    yield cipher.update(n === PAYLOAD_CHUNK_SIZE ? ZEROS : ZEROS.subarray(0, n))
    left -= n
  }
}

/** SHA-256 (hex) of a payload, and how fast the generator plus hashing ran. */
export function payloadSha256 (payload: Payload): { sha256: string, ms: number } {
  const started = performance.now()
  const hash = createHash('sha256')
  for (const chunk of payloadBytes(payload)) hash.update(chunk)
  return { sha256: hash.digest('hex'), ms: performance.now() - started }
}
