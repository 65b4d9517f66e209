/**
 * The libp2p side of the IPFS backend: the persistent peer identity and the libp2p options.
 *
 * Atlas builds its libp2p configuration from nothing rather than from Helia's defaults, because
 * those defaults reach public hosts (the IPFS bootstrap list, the Amino DHT, delegated routing at
 * delegated-ipfs.dev, AutoNAT, UPnP, AutoTLS, mDNS). What is here is all there is: TCP, Noise,
 * Yamux and Identify, listening where the operator says and dialling only the configured peers.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import type { CreateLibp2pOptions } from '@helia/libp2p'
import type { PrivateKey } from '@libp2p/interface'
import type { Identify } from '@libp2p/identify'

/**
 * Load the node's private key from `file`, or create an Ed25519 key and store it there (mode
 * 0600, written to a temporary file and renamed into place) so that the PeerId survives restarts.
 */
export async function loadOrCreatePeerKey (file: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(await readFile(file))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(file), { recursive: true })
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`
  const handle = await open(tmp, 'wx', 0o600)
  try {
    await handle.writeFile(privateKeyToProtobuf(key))
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  return key
}

export interface Libp2pOptionsInit {
  privateKey: PrivateKey
  /** Where libp2p keeps its peer store */
  datastore: CreateLibp2pOptions['datastore']
  /** Multiaddrs to listen on */
  listen: string[]
}

// a type alias, not an interface: libp2p's ServiceMap needs an index signature
/** Services Atlas runs on its libp2p node. */
export type AtlasLibp2pServices = {
  identify: Identify
}

/**
 * The complete libp2p configuration. Options left out here get libp2p's (not Helia's) defaults,
 * none of which discovers peers or dials anything by itself.
 */
export function libp2pOptions (init: Libp2pOptionsInit): CreateLibp2pOptions<AtlasLibp2pServices> {
  return {
    privateKey: init.privateKey,
    datastore: init.datastore,
    addresses: { listen: init.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [],
    services: {
      // Bitswap learns which peers speak it from the protocols Identify reports
      identify: identify()
    }
  }
}
