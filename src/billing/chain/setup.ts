/**
 * The chain client from the configuration: in `tron` mode a TronwebChain on the configured full
 * node; in `dev` mode a DevNode (the project's TRON stand-in) started in this process, in memory,
 * and a TronwebChain pointed at it, so that development runs the same tronweb code path as
 * production.
 *
 * Dev mode's hot wallet key lives in `<dataDir>/dev-hot-wallet.key` (created when absent), and a
 * running server writes where its dev node listens to `<dataDir>/dev-node.json`, which the
 * `atlas dev …` and `atlas chain status` commands read to reach it.
 *
 * Keys are read here and handed to the chain client only: never logged, never put in an error.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Kysely } from 'kysely'
import { MAINNET_BTT_CONTRACT, type AtlasConfig } from '../../config.ts'
import { AtlasError } from '../../core/errors.ts'
import type { Database, DialectName } from '../../metadata/schema.ts'
import { createFileOnce } from '../../metadata/secret-box.ts'
import type { Ledger } from '../ledger.ts'
import type { ChainClient } from './chain.ts'
import { DepositWatcher } from './deposits.ts'
import { DEV_BTT, DevNode, devTokenAddress } from './dev-node.ts'
import { isBase58Address } from './trc20.ts'
import { TronwebChain } from './tronweb-chain.ts'
import { Wallets } from './wallets.ts'
import { Withdrawals } from './withdrawals.ts'

/** The dev node's address and tokens, written by a running server for the CLI */
export const DEV_NODE_FILE = 'dev-node.json'

/** Dev mode's hot wallet key (hex), created when absent */
export const DEV_HOT_WALLET_FILE = 'dev-hot-wallet.key'

export type ChainMode = AtlasConfig['chain']['mode']

/** What `<dataDir>/dev-node.json` holds. */
export interface DevNodeInfo {
  /** The dev node's base URL (its fullHost) */
  url: string
  /** The server process that runs it */
  pid: number
  tokenContract: string
  depositAddress: string
  /** The address that holds the dev token's supply (`/admin/fund` pays from it) */
  faucet: string
  startedAt: string
}

export interface ChainSetup {
  mode: ChainMode
  /** The node's base URL */
  fullHost: string
  client: TronwebChain
  /** Stop the dev node (dev mode) and forget its address file */
  close(): Promise<void>
}

export interface ChainLogger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
}

const HEX_KEY = /^(?:0x)?([0-9a-fA-F]{64})$/

/**
 * The hot wallet key in a file: 64 hex digits (an optional `0x`, surrounding whitespace ignored).
 *
 * @throws AtlasError InvalidArgument naming the file, never its content
 */
export async function readKeyFile (path: string): Promise<string> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new AtlasError('InvalidArgument', `Cannot read the TRON key file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  return parseKey(text, path)
}

function parseKey (text: string, path: string): string {
  const match = HEX_KEY.exec(text.trim())
  if (match === null) throw new AtlasError('InvalidArgument', `The TRON key file ${path} must hold a private key of 64 hex digits`)
  return (match[1] as string).toLowerCase()
}

/** Dev mode's hot wallet key: read from the data dir, or made there (readable by its owner only). */
export async function loadOrCreateDevKey (dataDir: string): Promise<string> {
  const path = join(dataDir, DEV_HOT_WALLET_FILE)
  try {
    return parseKey(await readFile(path, 'utf8'), path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dataDir, { recursive: true })
  // two processes starting at once end up with the same key, never with a half-written file
  await createFileOnce(path, `${randomBytes(32).toString('hex')}\n`)
  return await readKeyFile(path)
}

/** The token contract the configuration names, or the default of its mode. */
export function tokenContractOf (config: AtlasConfig): string {
  return config.chain.tokenContract ?? (config.chain.mode === 'dev' ? devTokenAddress(DEV_BTT.symbol) : MAINNET_BTT_CONTRACT)
}

/** The hot wallet key of the configuration: the key file, or dev mode's own. */
export async function hotWalletKey (config: AtlasConfig): Promise<string> {
  if (config.chain.keyFile !== undefined) return await readKeyFile(resolve(config.chain.keyFile))
  if (config.chain.mode === 'dev') return await loadOrCreateDevKey(config.dataDir)
  throw new AtlasError('InvalidArgument', 'chain.keyFile (ATLAS_TRON_KEY_FILE) is required in tron mode')
}

/** What a running server wrote about its dev node, or undefined when there is none. */
export async function readDevNodeInfo (dataDir: string): Promise<DevNodeInfo | undefined> {
  try {
    return JSON.parse(await readFile(join(dataDir, DEV_NODE_FILE), 'utf8')) as DevNodeInfo
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/**
 * The chain of the configuration, started: in dev mode with its dev node listening on loopback
 * and its address written to `<dataDir>/dev-node.json`.
 */
export async function openChain (config: AtlasConfig, logger: ChainLogger): Promise<ChainSetup> {
  const tokenContract = tokenContractOf(config)
  if (!isBase58Address(tokenContract)) throw new AtlasError('InvalidArgument', `chain.tokenContract ${tokenContract} is not a valid TRON address (bad checksum)`)
  const privateKey = await hotWalletKey(config)
  if (config.chain.mode === 'tron') {
    const fullHost = config.chain.fullHost as string
    const client = new TronwebChain({ fullHost, tokenContract, privateKey, ...(config.chain.apiKey === undefined ? {} : { apiKey: config.chain.apiKey }) })
    logger.info({ mode: 'tron', fullHost, tokenContract, depositAddress: client.depositAddress }, 'chain: TRON node configured')
    return { mode: 'tron', fullHost, client, close: async () => {} }
  }
  const devNode = await DevNode.start({
    host: '127.0.0.1',
    port: config.chain.dev.port,
    blockIntervalMs: config.chain.dev.blockIntervalMs,
    solidityLag: config.chain.dev.solidityLag,
    tokens: [{ ...DEV_BTT, address: tokenContract }]
  })
  const client = new TronwebChain({ fullHost: devNode.url, tokenContract, privateKey })
  const info: DevNodeInfo = {
    url: devNode.url,
    pid: process.pid,
    tokenContract,
    depositAddress: client.depositAddress,
    faucet: devNode.faucetAddress,
    startedAt: new Date().toISOString()
  }
  const file = join(config.dataDir, DEV_NODE_FILE)
  await mkdir(config.dataDir, { recursive: true })
  const temp = `${file}.${process.pid}.tmp`
  await writeFile(temp, `${JSON.stringify(info, null, 2)}\n`)
  await rename(temp, file)
  logger.info({ mode: 'dev', fullHost: devNode.url, tokenContract, depositAddress: client.depositAddress }, 'chain: development TRON node started (in memory: its chain starts over at every start)')
  return {
    mode: 'dev',
    fullHost: devNode.url,
    client,
    close: async () => {
      await devNode.close()
      // only our own file: another server on this data dir may have written its own since
      const current = await readDevNodeInfo(config.dataDir).catch(() => undefined)
      if (current?.pid === process.pid && current.url === info.url) await rm(file, { force: true })
    }
  }
}

/** The chain parts the gateway and the CLI use, running. */
export interface ChainServices {
  mode: ChainMode
  fullHost: string
  client: ChainClient
  wallets: Wallets
  deposits: DepositWatcher
  withdrawals: Withdrawals
  /** Start the deposit scan and the withdrawal loop */
  start(): void
  /** Stop the loops, then the dev node */
  stop(): Promise<void>
}

export interface ChainServicesInit {
  config: AtlasConfig
  db: Kysely<Database>
  dialect: DialectName
  ledger: Ledger
  /** Told after each deposit credit (billing pays what the account owes from it) */
  onCredited?: (accountId: string) => Promise<void>
  logger: ChainLogger & { error(obj: object, msg?: string): void }
}

/**
 * The chain client of the configuration with the deposit watcher, wallet links and withdrawals
 * over the metadata database; `start()` starts their loops.
 */
export async function createChainServices (init: ChainServicesInit): Promise<ChainServices> {
  const { config, db, dialect, ledger, logger } = init
  const setup = await openChain(config, logger)
  const client = setup.client
  const deposits = new DepositWatcher({
    db,
    dialect,
    chain: client,
    ledger,
    mode: setup.mode,
    batchBlocks: config.chain.scanBatchBlocks,
    ...(config.chain.startBlock === undefined ? {} : { startBlock: config.chain.startBlock }),
    ...(init.onCredited === undefined ? {} : { onCredited: init.onCredited }),
    logger
  })
  const wallets = new Wallets({
    db,
    chain: client,
    // what the wallet sent before it was linked is credited now
    onLinked: async (accountId) => { await deposits.creditPending(accountId) }
  })
  const withdrawals = new Withdrawals({
    db,
    dialect,
    chain: client,
    ledger,
    walletOwner: async (address) => await wallets.accountOf(address),
    limits: config.chain.withdrawals,
    logger
  })
  const intervalMs = config.chain.scanIntervalSeconds * 1000
  return {
    mode: setup.mode,
    fullHost: setup.fullHost,
    client,
    wallets,
    deposits,
    withdrawals,
    start: () => {
      deposits.start(intervalMs)
      withdrawals.start(intervalMs)
    },
    stop: async () => {
      await deposits.stop()
      await withdrawals.stop()
      await setup.close()
    }
  }
}
