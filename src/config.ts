/**
 * Atlas configuration: one zod schema, parsed once at start. Values come from an optional JSON
 * config file (`--config`) overlaid by ATLAS_* environment variables; an invalid value fails at
 * start with the path of the bad field.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { z } from 'zod'
import { BACKEND_NAMES } from './backends/backend.ts'
import { UNITS_PER_BTT, parseBtt } from './billing/amount.ts'
import { DEFAULT_MEDIUM_LANE_BYTES_PER_SECOND, DEFAULT_SLOW_LANE_BYTES_PER_SECOND, LANE_NAMES } from './billing/lanes.ts'

const MiB = 1024 * 1024
const GiB = 1024 * MiB

const csv = z.union([
  z.array(z.string()),
  z.string().transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x.length > 0))
])

const bool = z.union([
  z.boolean(),
  z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((s) => s === 'true' || s === '1' || s === 'yes')
])

const port = z.coerce.number().int().min(0).max(65535)

/** A price in decimal BTT (`"0.5"`), read exactly into base units */
const btt = z.union([z.string(), z.number()]).transform((value, ctx) => {
  try {
    return parseBtt(String(value))
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
    return z.NEVER
  }
})

/** A base58check TRON address's shape (`T…`, 34 characters); the checksum is checked where it is used */
const tronAddress = z.string().regex(/^T[1-9A-HJ-NP-Za-km-z]{33}$/, 'must be a base58 TRON address (T…)')

/** The BTT TRC-20 contract on TRON mainnet (18 decimals) */
export const MAINNET_BTT_CONTRACT = 'TAFjULxiVgT4qWk6UZwjqwZXTSaGaqnVp4'

const chainSchema = z.object({
  /**
   * `dev`: a TRON stand-in (src/billing/chain/dev-node.ts) runs inside `atlas serve`, in memory
   * (its chain starts over at every start); `tron`: a real TRON full node at `fullHost`.
   * @default dev
   */
  mode: z.enum(['dev', 'tron']).default('dev'),
  /** The node's HTTP API (TronGrid, a java-tron node, Nile's). Required in tron mode; unused in dev mode */
  fullHost: z.url().optional(),
  /** A TronGrid API key, sent as TRON-PRO-API-KEY (never logged) */
  apiKey: z.string().min(1).optional(),
  /** The token contract (base58). @default mainnet BTT in tron mode, the dev node's BTT in dev mode */
  tokenContract: tronAddress.optional(),
  /**
   * A file holding the hot wallet's private key (64 hex digits): its address is the deposit
   * address, and it signs withdrawals. Required in tron mode; in dev mode
   * `<dataDir>/dev-hot-wallet.key`, created when absent.
   */
  keyFile: z.string().min(1).optional(),
  /** Seconds between two deposit scans (and two rounds of the withdrawal loop). @default 3 (one TRON block) */
  scanIntervalSeconds: z.coerce.number().positive().default(3),
  /** Most solidified blocks one scan step reads. @default 100 */
  scanBatchBlocks: z.coerce.number().int().min(1).max(10_000).default(100),
  /** The first block scanned for deposits on a database that never scanned. @default the solidified head at the first start */
  startBlock: z.coerce.number().int().min(0).optional(),
  withdrawals: z.object({
    /** Smallest withdrawal, in BTT. @default 1 */
    min: btt.default(UNITS_PER_BTT),
    /** Largest single withdrawal, in BTT. @default 1000000 */
    max: btt.default(1_000_000n * UNITS_PER_BTT),
    /** Most one account withdraws in any 24 hours, in BTT. @default 10000000 */
    maxPerDay: btt.default(10_000_000n * UNITS_PER_BTT)
  }).prefault({}),
  /** The in-process TRON stand-in of dev mode */
  dev: z.object({
    /** Its HTTP port on 127.0.0.1; 0 picks a free one (written to `<dataDir>/dev-node.json`). @default 0 */
    port: port.default(0),
    /** A block every this many ms. @default 3000 (TRON's slot) */
    blockIntervalMs: z.coerce.number().int().positive().default(3000),
    /** Blocks the solidified head trails the head. @default 19 (mainnet: about a minute) */
    solidityLag: z.coerce.number().int().min(0).default(19)
  }).prefault({})
}).superRefine((chain, ctx) => {
  if (chain.mode !== 'tron') return
  if (chain.fullHost === undefined) ctx.addIssue({ code: 'custom', path: ['fullHost'], message: 'is required when the chain mode is tron' })
  if (chain.keyFile === undefined) ctx.addIssue({ code: 'custom', path: ['keyFile'], message: 'is required when the chain mode is tron (the hot wallet key)' })
})

export const ConfigSchema = z.object({
  /** Address the HTTP server binds. @default 127.0.0.1 */
  host: z.string().min(1).default('127.0.0.1'),
  /** HTTP port; 0 picks a free one. @default 8080 */
  port: port.default(8080),
  /** Where Atlas keeps its database, IPFS repo, staging area and keys. @default ./data */
  dataDir: z.string().min(1).default('./data'),
  /** Metadata database: unset for SQLite in the data dir, or a postgres:// URL */
  databaseUrl: z.string().regex(/^(postgres(ql)?:\/\/|sqlite:|file:)/, 'must be a postgres:// URL or sqlite:PATH').optional(),
  /** The URL clients reach this gateway at (links, webseeds); defaults to http://host:port */
  publicUrl: z.url().optional(),
  /** Log level for pino. @default info */
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Base64 32-byte key that encrypts stored access-key secrets; default: <dataDir>/secret.key */
  secretKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'must be 32 bytes in base64').optional(),
  /** Backends of a bucket created without an explicit choice. @default ['ipfs'] */
  defaultBackends: csv.pipe(z.array(z.enum(BACKEND_NAMES as [string, ...string[]])).min(1)).default(['ipfs']),
  limits: z.object({
    /** Largest single upload body in bytes. @default 5 GiB (S3's single PUT limit) */
    maxObjectSize: z.coerce.number().int().positive().default(5 * GiB),
    /** Largest JSON request body in bytes. @default 1 MiB */
    maxJsonBody: z.coerce.number().int().positive().default(MiB),
    /** Most files in one multipart/form-data upload. @default 100 */
    maxFormFiles: z.coerce.number().int().positive().default(100)
  }).prefault({}),
  s3: z.object({
    /** Domain for virtual-hosted-style requests (`bucket.<domain>`); path style always works */
    domain: z.string().regex(/^[a-z0-9.-]+(:\d+)?$/i, 'must be a host name').optional(),
    /** Region reported to clients and accepted in CreateBucket. @default us-east-1 */
    region: z.string().min(1).default('us-east-1'),
    /** Smallest part of a multipart upload, except the last. @default 5 MiB (S3's) */
    minPartSize: z.coerce.number().int().positive().default(5 * MiB),
    /** Multipart uploads not completed within this many hours are aborted. @default 168 (7 days) */
    multipartExpiryHours: z.coerce.number().positive().default(168)
  }).prefault({}),
  bittorrent: z.object({
    /** Run the BitTorrent backend. @default true */
    enabled: bool.default(true),
    /** Peer TCP port; 0 picks a free one. @default 6881 */
    port: port.default(6881),
    /**
     * The built-in HTTP tracker at `/announce` and `/scrape`, listed first in every torrent and
     * magnet link and announced to by the gateway's own seeder. It tracks only torrents the
     * gateway stores. Turn it off when replicas share one public URL (each replica's tracker
     * would know only its own peers) and configure a shared tracker in `announce` instead.
     * @default true
     */
    tracker: bool.default(true),
    /** Tracker announce URLs put in every torrent and magnet link (after the built-in one). @default [] */
    announce: csv.default([]),
    /** Mainline DHT (reaches public DHT nodes). @default true */
    dht: bool.default(true),
    /** Local service discovery (multicast on the LAN). @default false */
    lsd: bool.default(false),
    /** Port mapping on the router by UPnP. @default false */
    natUpnp: bool.default(false),
    /** Port mapping on the router by NAT-PMP. @default false */
    natPmp: bool.default(false)
  }).prefault({}),
  ipfs: z.object({
    /** No libp2p networking at all. @default false */
    offline: bool.default(false),
    /** libp2p listen multiaddrs. @default ['/ip4/0.0.0.0/tcp/4001'] */
    listen: csv.default(['/ip4/0.0.0.0/tcp/4001']),
    /** Peers (multiaddrs with /p2p/) dialled at start and kept connected. @default [] */
    bootstrap: csv.default([])
  }).prefault({}),
  billing: z.object({
    /**
     * Bill storage and delivery in BTT against each account's balance. Off, every request is
     * free and nothing is metered. @default true
     */
    enabled: bool.default(true),
    /** Length of a storage metering period in seconds. @default 3600 (hourly) */
    periodSeconds: z.coerce.number().int().min(1).default(3600),
    /** Storage price per GiB-month (30 days) on each backend, in BTT; a bucket on both pays both */
    storagePerGiBMonth: z.object({
      /** @default 5000 BTT */
      ipfs: btt.default(5000n * UNITS_PER_BTT),
      /** @default 5000 BTT */
      bittorrent: btt.default(5000n * UNITS_PER_BTT)
    }).prefault({}),
    /** Egress price per GiB in each delivery lane, in BTT */
    egressPerGiB: z.object({
      /** @default 2000 BTT */
      slow: btt.default(2000n * UNITS_PER_BTT),
      /** @default 5000 BTT */
      medium: btt.default(5000n * UNITS_PER_BTT),
      /** @default 10000 BTT */
      fast: btt.default(10000n * UNITS_PER_BTT)
    }).prefault({}),
    /** A fee per request that delivers content (GET), in BTT. @default 0 */
    requestFee: btt.default(0n),
    /** Throughput cap of each throttled lane in bytes per second */
    lanes: z.object({
      /** @default 1 MiB/s */
      slow: z.coerce.number().int().positive().default(DEFAULT_SLOW_LANE_BYTES_PER_SECOND),
      /** @default 10 MiB/s */
      medium: z.coerce.number().int().positive().default(DEFAULT_MEDIUM_LANE_BYTES_PER_SECOND)
    }).prefault({}),
    /** The lane of a request that names none and whose key has no default. @default fast */
    defaultLane: z.enum(LANE_NAMES).default('fast'),
    /** Days of storage an upload's account must be able to pay for up front. @default 7 */
    uploadRunwayDays: z.coerce.number().min(0).default(7),
    /** Days an account that ran dry keeps its data before unpaid content is unpinned. @default 14 */
    graceDays: z.coerce.number().min(0).default(14)
  }).prefault({}),
  /** BTT on TRON: deposits, wallet links, withdrawals. Runs when billing is on. */
  chain: chainSchema.prefault({})
})

export type AtlasConfig = z.output<typeof ConfigSchema>
export type AtlasConfigInput = z.input<typeof ConfigSchema>

/** Environment variables and the config path each one sets. */
export const ENV_MAP: Record<string, string[]> = {
  ATLAS_HOST: ['host'],
  ATLAS_PORT: ['port'],
  ATLAS_DATA_DIR: ['dataDir'],
  ATLAS_DATABASE_URL: ['databaseUrl'],
  ATLAS_PUBLIC_URL: ['publicUrl'],
  ATLAS_LOG_LEVEL: ['logLevel'],
  ATLAS_SECRET_KEY: ['secretKey'],
  ATLAS_DEFAULT_BACKENDS: ['defaultBackends'],
  ATLAS_MAX_OBJECT_SIZE: ['limits', 'maxObjectSize'],
  ATLAS_MAX_JSON_BODY: ['limits', 'maxJsonBody'],
  ATLAS_MAX_FORM_FILES: ['limits', 'maxFormFiles'],
  ATLAS_S3_DOMAIN: ['s3', 'domain'],
  ATLAS_S3_REGION: ['s3', 'region'],
  ATLAS_S3_MIN_PART_SIZE: ['s3', 'minPartSize'],
  ATLAS_S3_MULTIPART_EXPIRY_HOURS: ['s3', 'multipartExpiryHours'],
  ATLAS_BT_ENABLED: ['bittorrent', 'enabled'],
  ATLAS_BT_PORT: ['bittorrent', 'port'],
  ATLAS_BT_TRACKER: ['bittorrent', 'tracker'],
  ATLAS_BT_ANNOUNCE: ['bittorrent', 'announce'],
  ATLAS_BT_DHT: ['bittorrent', 'dht'],
  ATLAS_BT_LSD: ['bittorrent', 'lsd'],
  ATLAS_BT_UPNP: ['bittorrent', 'natUpnp'],
  ATLAS_BT_NATPMP: ['bittorrent', 'natPmp'],
  ATLAS_IPFS_OFFLINE: ['ipfs', 'offline'],
  ATLAS_IPFS_LISTEN: ['ipfs', 'listen'],
  ATLAS_IPFS_BOOTSTRAP: ['ipfs', 'bootstrap'],
  ATLAS_BILLING_ENABLED: ['billing', 'enabled'],
  ATLAS_BILLING_PERIOD_SECONDS: ['billing', 'periodSeconds'],
  ATLAS_PRICE_STORAGE_IPFS: ['billing', 'storagePerGiBMonth', 'ipfs'],
  ATLAS_PRICE_STORAGE_BITTORRENT: ['billing', 'storagePerGiBMonth', 'bittorrent'],
  ATLAS_PRICE_EGRESS_SLOW: ['billing', 'egressPerGiB', 'slow'],
  ATLAS_PRICE_EGRESS_MEDIUM: ['billing', 'egressPerGiB', 'medium'],
  ATLAS_PRICE_EGRESS_FAST: ['billing', 'egressPerGiB', 'fast'],
  ATLAS_PRICE_REQUEST: ['billing', 'requestFee'],
  ATLAS_LANE_SLOW_BPS: ['billing', 'lanes', 'slow'],
  ATLAS_LANE_MEDIUM_BPS: ['billing', 'lanes', 'medium'],
  ATLAS_DEFAULT_LANE: ['billing', 'defaultLane'],
  ATLAS_BILLING_RUNWAY_DAYS: ['billing', 'uploadRunwayDays'],
  ATLAS_BILLING_GRACE_DAYS: ['billing', 'graceDays'],
  ATLAS_CHAIN: ['chain', 'mode'],
  ATLAS_TRON_FULL_HOST: ['chain', 'fullHost'],
  ATLAS_TRON_API_KEY: ['chain', 'apiKey'],
  ATLAS_BTT_CONTRACT: ['chain', 'tokenContract'],
  ATLAS_TRON_KEY_FILE: ['chain', 'keyFile'],
  ATLAS_CHAIN_SCAN_INTERVAL_SECONDS: ['chain', 'scanIntervalSeconds'],
  ATLAS_CHAIN_SCAN_BATCH_BLOCKS: ['chain', 'scanBatchBlocks'],
  ATLAS_CHAIN_START_BLOCK: ['chain', 'startBlock'],
  ATLAS_WITHDRAWAL_MIN: ['chain', 'withdrawals', 'min'],
  ATLAS_WITHDRAWAL_MAX: ['chain', 'withdrawals', 'max'],
  ATLAS_WITHDRAWAL_MAX_PER_DAY: ['chain', 'withdrawals', 'maxPerDay'],
  ATLAS_DEV_CHAIN_PORT: ['chain', 'dev', 'port'],
  ATLAS_DEV_CHAIN_BLOCK_MS: ['chain', 'dev', 'blockIntervalMs'],
  ATLAS_DEV_CHAIN_SOLIDITY_LAG: ['chain', 'dev', 'solidityLag']
}

export class ConfigError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

export interface LoadConfigOptions {
  /** Path of a JSON config file */
  file?: string
  env?: NodeJS.ProcessEnv
  /** Values that win over file and environment (tests) */
  overrides?: AtlasConfigInput
}

/**
 * Build the configuration from file, environment and overrides, in that order of precedence
 * (later wins), and validate it.
 *
 * @throws ConfigError naming the path of each bad field
 */
export function loadConfig (options: LoadConfigOptions = {}): AtlasConfig {
  const env = options.env ?? process.env
  let input: Record<string, unknown> = {}
  const file = options.file ?? env.ATLAS_CONFIG
  if (file !== undefined && file !== '') {
    try {
      input = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    } catch (err) {
      throw new ConfigError(`Cannot read config file ${file}: ${(err as Error).message}`)
    }
  }
  for (const [name, path] of Object.entries(ENV_MAP)) {
    const value = env[name]
    if (value !== undefined && value !== '') setPath(input, path, value)
  }
  if (options.overrides !== undefined) input = merge(input, options.overrides as Record<string, unknown>)

  const parsed = ConfigSchema.safeParse(input)
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const path = issue.path.join('.')
      const envName = Object.entries(ENV_MAP).find(([, p]) => p.join('.') === path)?.[0]
      return `  ${path || '(root)'}${envName === undefined ? '' : ` (${envName})`}: ${issue.message}`
    })
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`)
  }
  const config = parsed.data
  config.dataDir = resolve(config.dataDir)
  return config
}

/** The public base URL, without a trailing slash. */
export function publicUrl (config: AtlasConfig, boundPort?: number): string {
  if (config.publicUrl !== undefined) return config.publicUrl.replace(/\/+$/, '')
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
  return `http://${host.includes(':') ? `[${host}]` : host}:${boundPort ?? config.port}`
}

function setPath (target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target
  for (const segment of path.slice(0, -1)) {
    const next = node[segment]
    if (typeof next !== 'object' || next === null) node[segment] = {}
    node = node[segment] as Record<string, unknown>
  }
  node[path[path.length - 1] as string] = value
}

function merge (base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const b = out[k]
    out[k] = (typeof v === 'object' && v !== null && !Array.isArray(v) && typeof b === 'object' && b !== null && !Array.isArray(b))
      ? merge(b as Record<string, unknown>, v as Record<string, unknown>)
      : v
  }
  return out
}
