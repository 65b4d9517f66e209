/**
 * The S3 "flexible checksums": CRC32, CRC32C, CRC64NVME, SHA1 and SHA256 of the object bytes,
 * exchanged base64-encoded in x-amz-checksum-<algorithm> headers or aws-chunked trailers.
 * CRC32 comes from node:zlib (native), CRC32C from @aws-crypto/crc32c, CRC64NVME from the AWS
 * SDK's own implementation (@aws-sdk/checksums), the SHAs from node:crypto.
 */
import { createHash, type Hash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { Crc32c } from '@aws-crypto/crc32c'
import { Crc64Nvme } from '@aws-sdk/checksums/crc'

/** The checksum algorithms of S3, named as in x-amz-checksum-algorithm. */
export type ChecksumAlgorithm = 'CRC32' | 'CRC32C' | 'CRC64NVME' | 'SHA1' | 'SHA256'

/** Every algorithm, in the order S3 documents them. */
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256']

/** Digest length in bytes of each algorithm. */
export const CHECKSUM_LENGTHS: Readonly<Record<ChecksumAlgorithm, number>> = { CRC32: 4, CRC32C: 4, CRC64NVME: 8, SHA1: 20, SHA256: 32 }

/** The header (and trailer) that carries each algorithm's value. */
export function checksumHeaderName (algorithm: ChecksumAlgorithm): string {
  return `x-amz-checksum-${algorithm.toLowerCase()}`
}

/** The algorithm of an `x-amz-checksum-<algorithm>` header name (lowercase); undefined for others. */
export function algorithmOfHeader (name: string): ChecksumAlgorithm | undefined {
  if (!name.startsWith('x-amz-checksum-')) return undefined
  return parseChecksumAlgorithm(name.slice('x-amz-checksum-'.length))
}

/** An algorithm name as clients send it (any case); undefined when unknown. */
export function parseChecksumAlgorithm (value: string): ChecksumAlgorithm | undefined {
  const upper = value.trim().toUpperCase()
  return (CHECKSUM_ALGORITHMS as readonly string[]).includes(upper) ? upper as ChecksumAlgorithm : undefined
}

/** A running checksum. */
export interface Checksummer {
  update: (bytes: Uint8Array) => void
  /** The digest, big-endian bytes; call once, after the last update */
  digest: () => Promise<Uint8Array>
}

/** A new running checksum of `algorithm`. */
export function createChecksummer (algorithm: ChecksumAlgorithm): Checksummer {
  switch (algorithm) {
    case 'CRC32': {
      let value = 0
      return {
        update: (bytes) => { value = crc32(bytes, value) },
        digest: async () => uint32(value)
      }
    }
    case 'CRC32C': {
      const crc = new Crc32c()
      return {
        update: (bytes) => { crc.update(bytes) },
        digest: async () => uint32(crc.digest())
      }
    }
    case 'CRC64NVME': {
      const crc = new Crc64Nvme()
      return {
        update: (bytes) => { crc.update(bytes) },
        digest: async () => await crc.digest()
      }
    }
    case 'SHA1':
    case 'SHA256':
      return fromHash(createHash(algorithm === 'SHA1' ? 'sha1' : 'sha256'))
  }
}

function fromHash (hash: Hash): Checksummer {
  return {
    update: (bytes) => { hash.update(bytes) },
    digest: async () => hash.digest()
  }
}

function uint32 (value: number): Uint8Array {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, value >>> 0)
  return out
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/**
 * Decode canonical base64 of exactly `length` bytes; undefined for anything else (wrong length,
 * URL-safe alphabet, missing padding, stray bits in the last character).
 */
export function decodeBase64Exact (value: string, length: number): Uint8Array | undefined {
  if (!BASE64.test(value)) return undefined
  const bytes = Buffer.from(value, 'base64')
  if (bytes.length !== length || bytes.toString('base64') !== value) return undefined
  return bytes
}
