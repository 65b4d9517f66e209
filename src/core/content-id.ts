/**
 * Content addressing (DESIGN.md section 2).
 *
 * The canonical content id is the CIDv1 with codec `raw` (0x55) over the SHA-256 multihash of the
 * whole byte string, rendered in base32 (`bafkrei…`). It depends on the bytes alone, so the same
 * bytes get the same id wherever they are uploaded and however a backend chunks them.
 *
 * `parseAddress()` recognises every address form a caller may hand Atlas and says what kind it
 * is; the object store turns that into a content record.
 */
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { AtlasError } from './errors.ts'

/** Multicodec code of dag-pb, the codec of UnixFS directory and multi-block file roots */
export const DAG_PB_CODE = 0x70

/** The canonical id (a CIDv1 raw string) for the given SHA-256 digest (32 bytes). */
export function canonicalIdFromSha256 (digest: Uint8Array): string {
  if (digest.byteLength !== 32) throw new TypeError('SHA-256 digest must be 32 bytes')
  return CID.createV1(raw.code, Digest.create(sha256Hasher.code, digest)).toString()
}

/** The SHA-256 digest, as lowercase hex, that a canonical id commits to. */
export function sha256HexFromCanonicalId (id: string): string {
  const cid = CID.parse(id)
  if (cid.version !== 1 || cid.code !== raw.code || cid.multihash.code !== sha256Hasher.code) {
    throw new AtlasError('InvalidAddress', `${id} is not a canonical content id`)
  }
  return Buffer.from(cid.multihash.digest).toString('hex')
}

export type ParsedAddress =
  /** The canonical id itself (CIDv1 raw sha2-256) */
  | { kind: 'canonical', id: string }
  /** Any other CID: a UnixFS root (dag-pb) or a raw leaf that is not the canonical form */
  | { kind: 'ipfs', cid: string }
  /** A BitTorrent v1 infohash, lowercase hex */
  | { kind: 'btih', infohash: string }
  /** A BitTorrent v2 infohash (SHA-256), lowercase hex */
  | { kind: 'btmh', infohash: string }

const HEX40 = /^[0-9a-fA-F]{40}$/
const HEX64 = /^[0-9a-fA-F]{64}$/
const BASE32_BTIH = /^[A-Za-z2-7]{32}$/

/**
 * Parse any address form: canonical CID, other CID (UnixFS), `sha256:<hex>`, a 40-hex or base32
 * BitTorrent v1 infohash (optionally `btih:`-prefixed), or a magnet link.
 *
 * @throws AtlasError InvalidAddress for anything else
 */
export function parseAddress (input: string): ParsedAddress {
  const address = input.trim()
  if (address.length === 0 || address.length > 4096) {
    throw new AtlasError('InvalidAddress', 'Address is empty or too long')
  }
  const lower = address.toLowerCase()

  if (lower.startsWith('sha256:')) {
    const hex = lower.slice('sha256:'.length)
    if (!HEX64.test(hex)) throw new AtlasError('InvalidAddress', 'sha256: must be followed by 64 hex digits')
    return { kind: 'canonical', id: canonicalIdFromSha256(Buffer.from(hex, 'hex')) }
  }

  if (lower.startsWith('magnet:')) return parseMagnet(address)

  if (lower.startsWith('btih:')) return parseInfohash(address.slice(5))
  if (HEX40.test(address)) return { kind: 'btih', infohash: lower }

  let cid: CID
  try {
    cid = CID.parse(address.startsWith('/ipfs/') ? address.slice(6) : address)
  } catch (err) {
    throw new AtlasError('InvalidAddress', `Not a recognised content address: ${truncate(address)}`, { cause: err })
  }
  const v1 = cid.toV1()
  if (v1.code === raw.code && v1.multihash.code === sha256Hasher.code) {
    return { kind: 'canonical', id: v1.toString() }
  }
  return { kind: 'ipfs', cid: v1.toString() }
}

function parseInfohash (value: string): ParsedAddress {
  if (HEX40.test(value)) return { kind: 'btih', infohash: value.toLowerCase() }
  if (BASE32_BTIH.test(value)) return { kind: 'btih', infohash: base32ToHex(value) }
  throw new AtlasError('InvalidAddress', 'A BitTorrent infohash is 40 hex or 32 base32 characters')
}

function parseMagnet (link: string): ParsedAddress {
  let params: URLSearchParams
  try {
    params = new URL(link).searchParams
  } catch (err) {
    throw new AtlasError('InvalidAddress', 'Malformed magnet link', { cause: err })
  }
  for (const xt of params.getAll('xt')) {
    const lower = xt.toLowerCase()
    if (lower.startsWith('urn:btih:')) return parseInfohash(xt.slice('urn:btih:'.length))
  }
  for (const xt of params.getAll('xt')) {
    // BEP 52: urn:btmh:1220<64 hex> (multihash sha2-256)
    const lower = xt.toLowerCase()
    if (lower.startsWith('urn:btmh:1220') && HEX64.test(lower.slice(13))) {
      return { kind: 'btmh', infohash: lower.slice(13) }
    }
  }
  throw new AtlasError('InvalidAddress', 'Magnet link has no urn:btih or urn:btmh exact topic')
}

function base32ToHex (value: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0
  let acc = 0
  const out: number[] = []
  for (const ch of value.toUpperCase()) {
    acc = (acc << 5) | alphabet.indexOf(ch)
    bits += 5
    if (bits >= 8) {
      bits -= 8
      out.push((acc >> bits) & 0xff)
    }
  }
  return Buffer.from(out).toString('hex')
}

function truncate (s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}
