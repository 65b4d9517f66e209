/**
 * Wiring: build every part from the configuration, start it, and stop it again in the reverse
 * order. `atlas serve` and the tests use the same function.
 */
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { pino, type Logger as PinoLogger } from 'pino'
import type { StorageBackend } from './backends/backend.ts'
import { BitTorrentBackend } from './backends/bittorrent/bittorrent-backend.ts'
import { BuiltInTracker } from './backends/bittorrent/tracker.ts'
import { IpfsBackend } from './backends/ipfs/ipfs-backend.ts'
import { Billing, loadOrCreateInstanceId } from './billing/billing.ts'
import { createChainServices, type ChainServices } from './billing/chain/setup.ts'
import { KyselyLedger } from './billing/kysely-ledger.ts'
import { publicUrl, type AtlasConfig } from './config.ts'
import { buildServer } from './gateway/server.ts'
import { KyselyMetadataStore } from './metadata/kysely-store.ts'
import { openMetadata } from './metadata/open.ts'
import type { MetadataStore } from './metadata/store.ts'
import { MultipartUploads } from './objects/multipart.ts'
import { ObjectStore } from './objects/object-store.ts'
import { StagingArea } from './objects/staging.ts'

export interface Atlas {
  config: AtlasConfig
  server: FastifyInstance
  metadata: MetadataStore
  objects: ObjectStore
  multipart: MultipartUploads
  /** Metering and charging; undefined when billing is off */
  billing: Billing | undefined
  /** BTT on TRON: wallet links, deposits, withdrawals; runs when billing is on */
  chain: ChainServices | undefined
  ipfs: IpfsBackend
  bittorrent: BitTorrentBackend | undefined
  /** The built-in BitTorrent tracker (`/announce`, `/scrape`), when the backend and it are on */
  tracker: BuiltInTracker | undefined
  /** The base URL the server listens on (after listen) */
  url: string
  logger: PinoLogger
  stop(): Promise<void>
}

export interface StartOptions {
  /** Listen on the configured host and port. @default true */
  listen?: boolean
  logger?: PinoLogger
}

export function createLogger (config: AtlasConfig): PinoLogger {
  return pino({
    level: config.logLevel,
    redact: { paths: ['req.headers.authorization', 'headers.authorization', '*.secretAccessKey', '*.token', '*.apiKey', '*.privateKey'], censor: '[redacted]' }
  })
}

export async function startAtlas (config: AtlasConfig, options: StartOptions = {}): Promise<Atlas> {
  const logger = options.logger ?? createLogger(config)
  const metadata = await openMetadata(config, logger)
  // billing's ledger, and the chain that funds it (in dev mode a TRON stand-in in this process)
  let ledger: KyselyLedger | undefined
  let chain: ChainServices | undefined
  let billing: Billing | undefined
  if (config.billing.enabled) {
    if (!(metadata instanceof KyselyMetadataStore)) throw new Error('Billing needs the SQL metadata store')
    ledger = new KyselyLedger({ db: metadata.db, dialect: metadata.dialect })
    try {
      chain = await createChainServices({
        config,
        db: metadata.db,
        dialect: metadata.dialect,
        ledger,
        // a deposit pays what a dry account owes and brings it back
        onCredited: async (accountId) => { await billing?.settleOwed(accountId) },
        logger: logger.child({ component: 'chain' })
      })
    } catch (err) {
      await metadata.close()
      throw err
    }
  }
  const ipfs = new IpfsBackend({
    dataDir: join(config.dataDir, 'ipfs'),
    listen: config.ipfs.listen,
    bootstrap: config.ipfs.bootstrap,
    offline: config.ipfs.offline,
    logger: logger.child({ component: 'ipfs' })
  })
  // the webseed URL needs the bound port, known only after listen
  let boundPort = config.port
  // the built-in tracker goes into torrents, magnets and the seeder's announces only once the
  // server listens: before that nothing answers at its URL (which may even name port 0)
  let serving = false
  const announce = (): string[] => serving && config.bittorrent.tracker
    ? [`${publicUrl(config, boundPort)}/announce`, ...config.bittorrent.announce]
    : config.bittorrent.announce
  const bittorrent = config.bittorrent.enabled
    ? new BitTorrentBackend({
      dataDir: join(config.dataDir, 'bittorrent'),
      publicUrl: () => publicUrl(config, boundPort),
      announce,
      port: config.bittorrent.port,
      dht: config.bittorrent.dht,
      lsd: config.bittorrent.lsd,
      // uTP needs utp-native's build step, which the install does not run
      utp: false,
      webrtc: false,
      natUpnp: config.bittorrent.natUpnp,
      natPmp: config.bittorrent.natPmp,
      logger: logger.child({ component: 'bittorrent' })
    })
    : undefined
  const started: StorageBackend[] = []
  try {
    for (const backend of [ipfs, bittorrent]) {
      if (backend === undefined) continue
      await backend.start()
      started.push(backend)
    }
  } catch (err) {
    for (const backend of started) await backend.stop().catch(() => {})
    await chain?.stop()
    await metadata.close()
    throw err
  }
  const staging = new StagingArea(join(config.dataDir, 'staging'))
  const objects = new ObjectStore({
    metadata,
    backends: started,
    maxObjectSize: config.limits.maxObjectSize,
    staging,
    logger: logger.child({ component: 'objects' }),
    // storage is paid by the bucket's owner, who needs the runway for it
    admitUpload: async (bucket, size) => { await billing?.assertCanUpload(bucket.ownerId, size ?? 0, bucket.backends) }
  })
  if (ledger !== undefined && metadata instanceof KyselyMetadataStore) {
    billing = new Billing({
      ledger,
      db: metadata.db,
      config: config.billing,
      owner: await loadOrCreateInstanceId(config.dataDir),
      logger: logger.child({ component: 'billing' }),
      releaseContents: async (ids) => await objects.releaseContents(ids)
    })
  }
  const multipart = new MultipartUploads({
    metadata,
    objects,
    staging,
    minPartSize: config.s3.minPartSize,
    maxPartSize: config.limits.maxObjectSize,
    expiryMs: config.s3.multipartExpiryHours * 3600_000,
    logger: logger.child({ component: 'multipart' })
  })
  const readiness = async (): Promise<Record<string, boolean>> => {
    let db = false
    try {
      await metadata.getAccount('readiness-probe')
      db = true
    } catch {}
    return { metadata: db, ipfs: ipfs.isStarted(), ...(bittorrent === undefined ? {} : { bittorrent: bittorrent.isStarted() }) }
  }
  const tracker = bittorrent !== undefined && config.bittorrent.tracker
    ? new BuiltInTracker({
      // only what this gateway stores (see tracker.ts); `swarm()` knows it without disk access
      tracks: (infoHash) => bittorrent.isStarted() && bittorrent.swarm(infoHash) !== undefined,
      logger: logger.child({ component: 'tracker' })
    })
    : undefined
  const server = await buildServer({ config, metadata, objects, multipart, torrents: bittorrent, tracker, ipfs, billing, chain, readiness }, { logger })
  objects.start()
  await multipart.start()
  await billing?.start()
  chain?.start()

  let url = ''
  if (options.listen !== false) {
    await server.listen({ host: config.host, port: config.port })
    const address = server.server.address()
    const port = typeof address === 'object' && address !== null ? address.port : config.port
    boundPort = port
    url = publicUrl({ ...config, publicUrl: undefined }, port)
    serving = true
    // contents re-seeded at start announced without the built-in tracker: announce to it now
    if (tracker !== undefined) await bittorrent?.reannounce()
    logger.info({ url, publicUrl: publicUrl(config, port), ipfs: ipfs.multiaddrs(), bittorrentPort: bittorrent?.port }, 'Atlas is serving')
  }

  let stopping: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    stopping ??= (async () => {
      // stop taking requests, let those in flight finish, then close the parts under them
      await server.close()
      await tracker?.close()
      multipart.stop()
      await chain?.stop()
      await billing?.stop()
      await objects.stop()
      await ipfs.stop()
      await bittorrent?.stop()
      await metadata.close()
    })()
    await stopping
  }
  return { config, server, metadata, objects, multipart, ipfs, bittorrent, tracker, billing, chain, url, logger, stop }
}
