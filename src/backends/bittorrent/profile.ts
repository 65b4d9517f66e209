/**
 * The torrent profile Atlas uses for every content it seeds (DESIGN.md section 2).
 *
 * A v1 infohash is the SHA-1 of the bencoded `info` dictionary, so it depends on every field of
 * that dictionary: the file name, the piece length and the piece hashes. Atlas fixes those choices
 * here, once, so that the same bytes always get the same infohash, on any replica and at any time:
 *
 * | `info` field    | value                                                                  |
 * | --------------- | ---------------------------------------------------------------------- |
 * | layout          | single file (`length`, no `files` list)                                 |
 * | `name`          | the content's canonical id (`bafkrei…`, CIDv1 raw over its SHA-256)    |
 * | `length`        | the size in bytes                                                      |
 * | `piece length`  | {@link pieceLengthFor}`(length)`: a power of two, 16 KiB to 4 MiB       |
 * | `pieces`        | SHA-1 of each piece, concatenated (BitTorrent v1, BEP 3)               |
 * | anything else   | absent: no `private` flag, no `md5sum`, no v2 `meta version`/file tree |
 *
 * The name is the canonical id rather than something fixed such as `data` so that a file
 * fetched with any BitTorrent client lands under a name that says what it is and that anyone can
 * check (`sha256sum` of the file is the digest inside the CID). It costs one SHA-256 over the
 * bytes, computed in the same pass as the piece hashes.
 *
 * Outside `info` (so without effect on the infohash), a .torrent written by Atlas carries only
 * `announce`/`announce-list` (the configured trackers, in order, one per tier) and `url-list`
 * (the gateway's BEP 19 webseed URL for the content). No `creation date`, no `created by`, no
 * `comment`: the file itself is deterministic for a given configuration.
 *
 * Changing anything in this file changes the infohash of every content stored afterwards and
 * breaks deduplication with what is already stored: treat it as a wire format.
 */
import { createHash } from 'node:crypto'
import bencode from 'bencode'
import type { BencodeInput, BencodeValue } from 'bencode'

/** Name of this profile, for logs and docs. */
export const TORRENT_PROFILE_NAME = 'atlas-bt-v1-2025'

/** BitTorrent's block size (BEP 3 requests) and the smallest piece length Atlas uses: 16 KiB. */
export const MIN_PIECE_LENGTH = 16 * 1024

/** The largest piece length Atlas uses: 4 MiB. */
export const MAX_PIECE_LENGTH = 4 * 1024 * 1024

/** Pieces per content aimed at until pieces reach {@link MAX_PIECE_LENGTH}. */
export const TARGET_PIECE_COUNT = 256

/**
 * The piece length for a content of `size` bytes: the smallest power of two that cuts it into at
 * most {@link TARGET_PIECE_COUNT} pieces, kept between 16 KiB and 4 MiB.
 *
 * | size                 | piece length | pieces      |
 * | -------------------- | ------------ | ----------- |
 * | 0 to 4 MiB           | 16 KiB       | 0 to 256    |
 * | 4 to 8 MiB           | 32 KiB       | 129 to 256  |
 * | 8 to 16 MiB          | 64 KiB       | 129 to 256  |
 * | 16 to 32 MiB         | 128 KiB      | 129 to 256  |
 * | 32 to 64 MiB         | 256 KiB      | 129 to 256  |
 * | 64 to 128 MiB        | 512 KiB      | 129 to 256  |
 * | 128 to 256 MiB       | 1 MiB        | 129 to 256  |
 * | 256 to 512 MiB       | 2 MiB        | 129 to 256  |
 * | over 512 MiB         | 4 MiB        | 129 and up (2048 at 8 GiB) |
 *
 * (Each band includes its upper bound.) Why so few, large pieces: the gateway is the main seed
 * and also the BEP 19 webseed, and WebTorrent fetches a webseed one piece per HTTP request with
 * at most four requests in flight, so a piece is the unit of HTTP overhead (and of metering) on
 * that path; large contents get 1–4 MiB pieces, which keeps that overhead negligible. Peers
 * still exchange 16 KiB blocks whatever the piece length, so the wire protocol does not suffer.
 * Pieces stay at most 4 MiB because downloaders hold a piece in memory until it verifies, and
 * the piece list (20 bytes a piece) keeps the .torrent under 10 KiB up to 512 MiB and at 40 KiB
 * for 8 GiB.
 */
export function pieceLengthFor (size: number): number {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`size must be a non-negative integer, not ${size}`)
  let length = MIN_PIECE_LENGTH
  while (length < MAX_PIECE_LENGTH && length * TARGET_PIECE_COUNT < size) length *= 2
  return length
}

/** Number of pieces of a content of `size` bytes cut at `pieceLength`. */
export function pieceCount (size: number, pieceLength: number): number {
  return Math.ceil(size / pieceLength)
}

/** The fields of a single-file v1 `info` dictionary under the profile. */
export interface TorrentInfo {
  /** The canonical content id */
  name: string
  length: number
  pieceLength: number
  /** SHA-1 digests of the pieces, concatenated (20 bytes each) */
  pieces: Uint8Array
}

/** The bencoded `info` dictionary (what the infohash is the SHA-1 of). */
export function encodeInfo (info: TorrentInfo): Uint8Array {
  checkInfo(info)
  return bencode.encode(infoDict(info))
}

/** The v1 infohash (lowercase hex) of `info`. */
export function infoHashOf (info: TorrentInfo): string {
  return createHash('sha1').update(encodeInfo(info)).digest('hex')
}

/** What a .torrent carries besides `info`. */
export interface TorrentExtras {
  /** Tracker URLs, in order; each becomes its own tier of `announce-list` */
  announce: readonly string[]
  /** BEP 19 webseed URLs */
  urlList: readonly string[]
}

/**
 * The .torrent file for `info`: `announce` (the first tracker) and `announce-list` (one tier per
 * tracker) when there are trackers, `url-list` when there are webseeds, and `info`.
 */
export function encodeTorrentFile (info: TorrentInfo, extras: TorrentExtras): Uint8Array {
  checkInfo(info)
  const torrent: Record<string, BencodeInput | undefined> = { info: infoDict(info) }
  if (extras.announce.length > 0) {
    torrent.announce = extras.announce[0]
    torrent['announce-list'] = extras.announce.map(url => [url])
  }
  if (extras.urlList.length > 0) torrent['url-list'] = [...extras.urlList]
  return bencode.encode(torrent)
}

/**
 * Read a .torrent written under the profile back into its `info` fields.
 *
 * @throws TypeError when the file is not a single-file v1 torrent of the profile's shape
 */
export function decodeTorrentFile (bytes: Uint8Array): TorrentInfo {
  let decoded: BencodeValue
  try {
    decoded = bencode.decode(bytes)
  } catch (err) {
    throw new TypeError('Not a bencoded torrent file', { cause: err })
  }
  const info = isDict(decoded) ? decoded.info : undefined
  if (!isDict(info)) throw new TypeError('The torrent has no info dictionary')
  const { name, length, pieces } = info
  const pieceLength = info['piece length']
  if (!(name instanceof Uint8Array) || typeof length !== 'number' || typeof pieceLength !== 'number' || !(pieces instanceof Uint8Array)) {
    throw new TypeError('The torrent is not a single-file v1 torrent')
  }
  const result: TorrentInfo = { name: new TextDecoder().decode(name), length, pieceLength, pieces }
  checkInfo(result)
  return result
}

/**
 * A magnet link (BEP 9) for the content: `xt=urn:btih:<hex>`, `dn=` the name, `xl=` the size,
 * one `tr=` per tracker and one `ws=` per webseed (BEP 19 in magnets), values percent-encoded.
 */
export function magnetLink (infoHash: string, name: string, size: number, extras: TorrentExtras): string {
  const params = [`xt=urn:btih:${infoHash}`, `dn=${encodeURIComponent(name)}`, `xl=${size}`]
  for (const url of extras.announce) params.push(`tr=${encodeURIComponent(url)}`)
  for (const url of extras.urlList) params.push(`ws=${encodeURIComponent(url)}`)
  return `magnet:?${params.join('&')}`
}

function infoDict (info: TorrentInfo): Record<string, BencodeInput> {
  return { length: info.length, name: info.name, 'piece length': info.pieceLength, pieces: info.pieces }
}

function checkInfo (info: TorrentInfo): void {
  if (info.name.length === 0) throw new TypeError('The torrent name is empty')
  if (!Number.isSafeInteger(info.length) || info.length < 0) throw new TypeError(`Bad torrent length ${info.length}`)
  if (!Number.isSafeInteger(info.pieceLength) || info.pieceLength < MIN_PIECE_LENGTH || info.pieceLength > MAX_PIECE_LENGTH || (info.pieceLength & (info.pieceLength - 1)) !== 0) {
    throw new TypeError(`Bad piece length ${info.pieceLength}`)
  }
  if (info.pieces.byteLength !== 20 * pieceCount(info.length, info.pieceLength)) {
    throw new TypeError(`The torrent has ${info.pieces.byteLength / 20} piece hashes for ${pieceCount(info.length, info.pieceLength)} pieces`)
  }
}

function isDict (value: BencodeValue | undefined): value is { [key: string]: BencodeValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array)
}
