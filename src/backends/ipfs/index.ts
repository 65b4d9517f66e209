/**
 * The IPFS storage backend: Helia, UnixFS under a fixed profile, Bitswap over a closed libp2p.
 */
export { IpfsBackend } from './ipfs-backend.ts'
export type { IpfsBackendInit, IpfsBackendLogger } from './ipfs-backend.ts'
export { UNIXFS_CHUNK_SIZE, UNIXFS_MAX_LINKS, UNIXFS_PROFILE_NAME, importUnixfs, unixfsImporterOptions } from './profile.ts'
export type { UnixfsLayoutParams } from './profile.ts'
