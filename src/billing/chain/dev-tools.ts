/**
 * What the `atlas chain …` and `atlas dev …` commands do, apart from their argument parsing and
 * printing (src/cli.ts).
 *
 * - {@link chainStatus}: the configured chain and how far the deposit scan is, read from the
 *   node and the database.
 * - {@link createDevWallet} and {@link devDeposit}: development helpers that reach the dev node of
 *   a running `atlas serve` through `<dataDir>/dev-node.json`. A dev wallet is funded by the dev
 *   node's faucet (`/admin/fund`, a real signed transfer); a dev deposit is a real tronweb
 *   TRC-20 transfer from a key to the deposit address, as a user's wallet would send it.
 */
import type { Kysely } from 'kysely'
import { TronWeb } from 'tronweb'
import type { AtlasConfig } from '../../config.ts'
import { AtlasError } from '../../core/errors.ts'
import type { Database } from '../../metadata/schema.ts'
import { depositCursorName } from './deposits.ts'
import { hotWalletKey, readDevNodeInfo, tokenContractOf, type DevNodeInfo } from './setup.ts'
import { DEFAULT_FEE_LIMIT, TronwebChain } from './tronweb-chain.ts'
import { OPEN_STATES } from './withdrawals.ts'

/** fee_limit of a dev deposit, in sun (the dev node charges no fees; java-tron wants a bound) */

export interface ChainStatus {
  mode: 'dev' | 'tron'
  /** The node's URL; absent in dev mode when no server runs */
  fullHost?: string
  tokenContract: string
  depositAddress: string
  /** Unreachable node, or no dev node running */
  error?: string
  head?: number
  solidifiedHead?: number
  /** The next block the deposit scan reads; absent before the first scan */
  cursor?: number
  /** Solidified blocks not scanned yet */
  behind?: number
  /** The hot wallet's token balance (solidified), base units */
  hotWalletBalance?: bigint
  /** Deposits whose sender no account has linked */
  unattributedDeposits: number
  /** Withdrawals not settled yet, and what they will take from the hot wallet */
  openWithdrawals: number
  openWithdrawalsAmount: bigint
}

/** The configured chain, its node's heads, the scan cursor and the hot wallet's balance. */
export async function chainStatus (config: AtlasConfig, db: Kysely<Database>): Promise<ChainStatus> {
  const tokenContract = tokenContractOf(config)
  const privateKey = await hotWalletKey(config)
  const depositAddress = TronWeb.address.fromPrivateKey(privateKey) as string
  const cursor = await db.selectFrom('chain_cursors').select('next_block').where('name', '=', depositCursorName(tokenContract, depositAddress)).executeTakeFirst()
  const unattributed = await db.selectFrom('chain_deposits').select(eb => eb.fn.countAll<number | bigint | string>().as('n')).where('account_id', 'is', null).executeTakeFirst()
  const open = await db.selectFrom('chain_withdrawals').select('amount').where('state', 'in', OPEN_STATES).execute()
  const status: ChainStatus = {
    mode: config.chain.mode,
    tokenContract,
    depositAddress,
    ...(cursor === undefined ? {} : { cursor: Number(cursor.next_block) }),
    unattributedDeposits: Number(unattributed?.n ?? 0),
    openWithdrawals: open.length,
    openWithdrawalsAmount: open.reduce((sum, r) => sum + BigInt(r.amount), 0n)
  }
  let fullHost = config.chain.fullHost
  if (config.chain.mode === 'dev') {
    const info = await readDevNodeInfo(config.dataDir)
    if (info === undefined) return { ...status, error: 'no dev node: the development chain runs inside `atlas serve` (ATLAS_CHAIN=dev); start it' }
    fullHost = info.url
  }
  const host = fullHost as string
  const chain = new TronwebChain({ fullHost: host, tokenContract, privateKey, ...(config.chain.apiKey === undefined ? {} : { apiKey: config.chain.apiKey }) })
  try {
    const head = await chain.head()
    const solid = await chain.solidifiedHead()
    const balance = await chain.tokenBalance(depositAddress)
    return {
      ...status,
      fullHost: host,
      head: head.number,
      solidifiedHead: solid.number,
      ...(status.cursor === undefined ? {} : { behind: Math.max(0, solid.number - status.cursor + 1) }),
      hotWalletBalance: balance
    }
  } catch (err) {
    return { ...status, fullHost: host, error: `the node does not answer: ${(err as Error).message}` }
  }
}

/** The dev node of the `atlas serve` running on this data dir. @throws AtlasError when there is none */
export async function runningDevNode (config: AtlasConfig): Promise<DevNodeInfo> {
  if (config.chain.mode !== 'dev') throw new AtlasError('InvalidArgument', 'The atlas dev commands work in development mode only (ATLAS_CHAIN=dev); this configuration uses a real TRON node')
  const info = await readDevNodeInfo(config.dataDir)
  const down = new AtlasError('ServiceUnavailable', `No development chain is running for ${config.dataDir}: start \`atlas serve\` (ATLAS_CHAIN=dev) with the same data dir first`)
  if (info === undefined) throw down
  try {
    const res = await fetch(`${info.url}/admin/status`, { method: 'POST' })
    if (!res.ok) throw down
  } catch {
    throw down
  }
  return info
}

export interface DevWallet {
  address: string
  /** 64 hex digits */
  privateKey: string
  /** Base units the faucet sent */
  funded: bigint
  /** The faucet transfer */
  txId: string
}

/** A new wallet on the dev chain, funded with `amount` base units of the token by the faucet. */
export async function createDevWallet (config: AtlasConfig, amount: bigint): Promise<DevWallet> {
  const info = await runningDevNode(config)
  const account = TronWeb.createRandom()
  const res = await fetch(`${info.url}/admin/fund`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ address: account.address, amount: amount.toString(), token: info.tokenContract })
  })
  const reply = await res.json() as { txid?: string, error?: string }
  if (!res.ok || reply.txid === undefined) throw new AtlasError('ServiceUnavailable', `The dev node could not fund the wallet: ${reply.error ?? res.status}`)
  return { address: account.address, privateKey: account.privateKey.replace(/^0x/, ''), funded: amount, txId: reply.txid }
}

export interface DevDeposit {
  txId: string
  from: string
  to: string
  amount: bigint
}

/** A TRC-20 transfer of `amount` base units from `privateKey`'s wallet to the deposit address, through tronweb. */
export async function devDeposit (config: AtlasConfig, privateKey: string, amount: bigint): Promise<DevDeposit> {
  const info = await runningDevNode(config)
  const key = privateKey.trim().replace(/^0x/i, '')
  if (!/^[0-9a-fA-F]{64}$/.test(key)) throw new AtlasError('InvalidArgument', '--key must be a private key of 64 hex digits (as `atlas dev wallet` prints it)')
  const tronWeb = new TronWeb({ fullHost: info.url, privateKey: key })
  const from = TronWeb.address.fromPrivateKey(key) as string
  const contract = await tronWeb.contract().at(info.tokenContract)
  let txId: string
  try {
    txId = await contract.transfer(info.depositAddress, amount.toString()).send({ feeLimit: DEFAULT_FEE_LIMIT }) as string
  } catch (err) {
    throw new AtlasError('ServiceUnavailable', `The transfer was refused: ${err instanceof Error ? err.message : String(err)}`)
  }
  return { txId, from, to: info.depositAddress, amount }
}
