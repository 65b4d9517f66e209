/**
 * The BitTorrent storage backend: WebTorrent seeding files kept on disk, torrents under a fixed
 * profile, re-seeded after a restart without re-hashing.
 */
export { BitTorrentBackend } from './bittorrent-backend.ts'
export type { BitTorrentBackendInit, BitTorrentBackendLogger, SwarmStatus } from './bittorrent-backend.ts'
export {
  MAX_PIECE_LENGTH,
  MIN_PIECE_LENGTH,
  TARGET_PIECE_COUNT,
  TORRENT_PROFILE_NAME,
  decodeTorrentFile,
  encodeInfo,
  encodeTorrentFile,
  infoHashOf,
  magnetLink,
  pieceCount,
  pieceLengthFor
} from './profile.ts'
export type { TorrentExtras, TorrentInfo } from './profile.ts'
export { BuiltInTracker, TRACKER_CONTENT_TYPE } from './tracker.ts'
export type { BuiltInTrackerInit, TrackerAction } from './tracker.ts'
export { TorrentHasher, hashPiecesOfFile } from './piece-hasher.ts'
export type { TorrentHashes, TorrentHasherInit } from './piece-hasher.ts'
