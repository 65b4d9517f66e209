/**
 * Deposit detection: the watcher scans solidified blocks for Transfer logs of the token to the
 * deposit address (ChainClient.transfersTo, which works against any full node: it reads
 * `/walletsolidity/gettransactioninfobyblocknum` block by block) and credits each one once.
 *
 * - Only solidified (irreversible) blocks are scanned, so nothing is credited before it can no
 *   longer be undone. Reverted transfers, other tokens and other recipients never appear: the
 *   chain client keeps Transfer logs of the configured contract to the deposit address from
 *   successful transactions only.
 * - Crash-safe: a step records the deposits of a block range and moves the persisted cursor past
 *   that range in one database transaction, so a crash either recorded both or neither; a
 *   deposit is unique on (transaction id, log index). Crediting is a second step, idempotent on
 *   the ledger key `deposit:<txid>:<logIndex>`, then the row says `credited`; a crash between the
 *   two is finished by the next pass ({@link DepositWatcher.creditPending}), which the ledger
 *   makes a replay, not a second credit.
 * - Attribution: a deposit from a linked wallet is its account's. One from an unknown sender is
 *   recorded unattributed (no account) and credited when that address is linked.
 * - The cursor keeps the chain's genesis block id. A node on another chain (a database pointed
 *   from Nile to mainnet, say) stops the scan with an error in `tron` mode; in `dev` mode it
 *   means the in-memory dev chain started over, and the scan starts over at its block 0.
 *
 * Several processes may run watchers on one database: the cursor row is locked while a step
 * records (PostgreSQL), a step whose range another process recorded meanwhile records nothing,
 * and the ledger's idempotency keys keep credits single.
 */
import type { Kysely } from 'kysely'
import { AtlasError } from '../../core/errors.ts'
import type { Database, DialectName } from '../../metadata/schema.ts'
import { LedgerAccounts, type Ledger } from '../ledger.ts'
import type { ChainClient, ChainOptions, TokenTransfer } from './chain.ts'
import { Poller } from './poller.ts'

/** @default blocks one scan step reads */
export const DEFAULT_SCAN_BATCH = 100

/** Deposits one credit pass takes at most (the next pass takes the rest) */
const CREDIT_PAGE = 500

/** Most deposits one listing returns */
export const MAX_DEPOSITS_PAGE = 1000

export type DepositState =
  /** Found in a solidified block, not credited yet (its sender is not linked, or a pass is due) */
  | 'solidified'
  /** Credited to the account's available balance */
  | 'credited'

/** A token transfer to the deposit address, as recorded and credited. */
export interface Deposit extends TokenTransfer {
  /** The account credited, or to credit; absent while the sender is not linked */
  accountId?: string
  state: DepositState
  /** The ledger transaction that credited it */
  transactionId?: string
  recordedAt: Date
  creditedAt?: Date
}

export interface DepositCursor {
  /** The next block to scan */
  nextBlock: number
  genesisId: string
  updatedAt: Date
}

export interface DepositLogger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export interface DepositWatcherInit {
  db: Kysely<Database>
  dialect: DialectName
  chain: ChainClient
  ledger: Ledger
  /** `dev`: a chain that starts over (genesis changed) restarts the scan; `tron`: it stops it */
  mode: 'dev' | 'tron'
  /** Solidified blocks per step. @default {@link DEFAULT_SCAN_BATCH} */
  batchBlocks?: number
  /** The first block a database that never scanned starts at. @default dev: 0; tron: the solidified head + 1 */
  startBlock?: number
  /** Told after each credit: billing pays what the account owes from it */
  onCredited?: (accountId: string) => Promise<void>
  logger: DepositLogger
  /** The clock, for tests. @default Date.now */
  now?: () => number
}

/** What one scan step did. */
export interface ScanStep {
  /** Blocks [from, to] recorded by this step; absent when there was nothing new to scan */
  from?: number
  to?: number
  /** Deposits found in them */
  found: number
  /** Solidified blocks still unscanned after this step */
  behind: number
}

/** The cursor row of a token and deposit address: changing either starts a new scan. */
export function depositCursorName (tokenContract: string, depositAddress: string): string {
  return `deposits:${tokenContract}:${depositAddress}`
}

export class DepositWatcher {
  readonly #db: Kysely<Database>
  readonly #pg: boolean
  readonly #chain: ChainClient
  readonly #ledger: Ledger
  readonly #mode: 'dev' | 'tron'
  readonly #batch: number
  readonly #startBlock: number | undefined
  readonly #onCredited: DepositWatcherInit['onCredited']
  readonly #log: DepositLogger
  readonly #now: () => number
  /** The cursor row: one per token and deposit address (see {@link depositCursorName}) */
  readonly cursorName: string
  #genesisChecked = false
  readonly #poller: Poller

  constructor (init: DepositWatcherInit) {
    this.#db = init.db
    this.#pg = init.dialect === 'postgres'
    this.#chain = init.chain
    this.#ledger = init.ledger
    this.#mode = init.mode
    this.#batch = init.batchBlocks ?? DEFAULT_SCAN_BATCH
    if (!Number.isSafeInteger(this.#batch) || this.#batch < 1) throw new RangeError('batchBlocks must be a positive integer')
    this.#startBlock = init.startBlock
    this.#onCredited = init.onCredited
    this.#log = init.logger
    this.#now = init.now ?? Date.now
    this.cursorName = depositCursorName(init.chain.tokenContract, init.chain.depositAddress)
    this.#poller = new Poller('deposits: scan', async (signal) => await this.scan({ signal }), this.#log)
  }

  /** Scan every `intervalMs` (first at once), until {@link stop}. */
  start (intervalMs: number): void {
    this.#poller.start(intervalMs)
  }

  /** Stop scanning; waits for a step in progress to end (its chain calls are aborted). */
  async stop (): Promise<void> {
    await this.#poller.stop()
  }

  /** Scan until caught up with the solidified head, then credit what is due. */
  async scan (options: ChainOptions = {}): Promise<void> {
    for (;;) {
      const step = await this.scanStep(options)
      if (step.behind === 0 || options.signal?.aborted === true) break
    }
    await this.creditPending()
  }

  /**
   * One step: record the deposits of up to `batchBlocks` solidified blocks after the cursor and
   * move the cursor past them, in one database transaction. Credits nothing (see
   * {@link creditPending}).
   */
  async scanStep (options: ChainOptions = {}): Promise<ScanStep> {
    const cursor = await this.#ensureCursor(options)
    const solid = await this.#chain.solidifiedHead(options)
    if (solid.number < cursor.nextBlock - 1) {
      // the node is behind what was scanned: another chain, a restarted dev chain, or a node
      // still syncing; the genesis tells them apart
      this.#genesisChecked = false
      const again = await this.#ensureCursor(options)
      if (solid.number < again.nextBlock - 1) {
        this.#log.warn({ solidified: solid.number, cursor: again.nextBlock }, 'deposits: the node\'s solidified head is behind the scan cursor; waiting for it')
        return { found: 0, behind: 0 }
      }
      return await this.scanStep(options)
    }
    const from = cursor.nextBlock
    const to = Math.min(solid.number, from + this.#batch - 1)
    if (to < from) return { found: 0, behind: 0 }
    const transfers = (await this.#chain.transfersTo(this.#chain.depositAddress, from, to, options))
      // a zero transfer moves nothing and could not be posted (a ledger posting is never zero)
      .filter(t => t.amount > 0n)
    const recorded = await this.#record(transfers, from, to)
    if (recorded && transfers.length > 0) this.#log.info({ from, to, deposits: transfers.length }, 'deposits: found')
    return { from, to, found: recorded ? transfers.length : 0, behind: solid.number - to }
  }

  /**
   * Credit every recorded deposit that has an account and is not credited yet (of one account,
   * when given). Deposits from senders linked since they were recorded are attributed first.
   *
   * @returns the number credited by this call
   */
  async creditPending (accountId?: string): Promise<number> {
    await this.#attribute()
    let credited = 0
    for (;;) {
      let query = this.#db.selectFrom('chain_deposits').selectAll().where('state', '=', 'solidified').where('account_id', 'is not', null)
      if (accountId !== undefined) query = query.where('account_id', '=', accountId)
      const rows = await query.orderBy('block_number').orderBy('tx_id').orderBy('log_index').limit(CREDIT_PAGE).execute()
      for (const row of rows) {
        await this.#credit(toDeposit(row))
        credited++
      }
      if (rows.length < CREDIT_PAGE) return credited
    }
  }

  /** An account's deposits, newest first. */
  async list (accountId: string, options: { limit?: number } = {}): Promise<Deposit[]> {
    const limit = Math.max(1, Math.min(options.limit ?? 100, MAX_DEPOSITS_PAGE))
    const rows = await this.#db.selectFrom('chain_deposits').selectAll().where('account_id', '=', accountId)
      .orderBy('block_number', 'desc').orderBy('tx_id', 'desc').orderBy('log_index', 'desc').limit(limit).execute()
    return rows.map(toDeposit)
  }

  /** Deposits nobody linked the sender of yet, oldest first (for operators). */
  async unattributed (limit = 100): Promise<Deposit[]> {
    const rows = await this.#db.selectFrom('chain_deposits').selectAll().where('account_id', 'is', null)
      .orderBy('block_number').orderBy('tx_id').orderBy('log_index').limit(limit).execute()
    return rows.map(toDeposit)
  }

  /** The scan cursor, or undefined before the first scan. */
  async cursor (): Promise<DepositCursor | undefined> {
    const row = await this.#db.selectFrom('chain_cursors').selectAll().where('name', '=', this.cursorName).executeTakeFirst()
    return row === undefined ? undefined : { nextBlock: Number(row.next_block), genesisId: row.genesis_id, updatedAt: new Date(Number(row.updated_ms)) }
  }

  /** The cursor, created at the first scan; checks once per watcher that the chain is the one scanned. */
  async #ensureCursor (options: ChainOptions): Promise<DepositCursor> {
    const existing = await this.cursor()
    if (existing !== undefined && this.#genesisChecked) return existing
    const genesis = await this.#chain.solidifiedBlock(0, options)
    if (genesis === undefined) throw new AtlasError('ServiceUnavailable', 'TRON node: it has no solidified genesis block')
    const now = this.#now()
    if (existing === undefined) {
      const start = this.#startBlock ?? (this.#mode === 'dev' ? 0 : (await this.#chain.solidifiedHead(options)).number + 1)
      await this.#db.insertInto('chain_cursors').values({ name: this.cursorName, genesis_id: genesis.id, next_block: start, updated_ms: now })
        .onConflict(oc => oc.column('name').doNothing()).execute()
      this.#log.info({ startBlock: start }, 'deposits: scanning starts')
    } else if (existing.genesisId !== genesis.id) {
      if (this.#mode !== 'dev') {
        throw new AtlasError('ServiceUnavailable', `The TRON node is on another chain than the one this database scanned (genesis block ${genesis.id}, not ${existing.genesisId}): deposits are not scanned. Point ATLAS_TRON_FULL_HOST at the network this database belongs to.`)
      }
      await this.#db.updateTable('chain_cursors').set({ genesis_id: genesis.id, next_block: this.#startBlock ?? 0, updated_ms: now })
        .where('name', '=', this.cursorName).where('genesis_id', '=', existing.genesisId).execute()
      this.#log.warn({ previousCursor: existing.nextBlock }, 'deposits: the development chain started over; scanning it from its first block')
    }
    this.#genesisChecked = true
    return await this.cursor() as DepositCursor
  }

  /** Record the deposits of [from, to] and move the cursor past it, atomically. False when another process did. */
  async #record (transfers: TokenTransfer[], from: number, to: number): Promise<boolean> {
    return await this.#db.transaction().execute(async trx => {
      let query = trx.selectFrom('chain_cursors').select('next_block').where('name', '=', this.cursorName)
      if (this.#pg) query = query.forUpdate()
      const row = await query.executeTakeFirst()
      if (row === undefined || Number(row.next_block) !== from) return false
      const senders = [...new Set(transfers.map(t => t.from))]
      const owners = new Map<string, string>()
      if (senders.length > 0) {
        for (const w of await trx.selectFrom('chain_wallets').select(['address', 'account_id']).where('address', 'in', senders).execute()) owners.set(w.address, w.account_id)
      }
      const now = this.#now()
      for (const t of transfers) {
        await trx.insertInto('chain_deposits').values({
          tx_id: t.txId,
          log_index: t.logIndex,
          block_number: t.blockNumber,
          token_contract: this.#chain.tokenContract,
          from_address: t.from,
          to_address: t.to,
          amount: t.amount.toString(),
          account_id: owners.get(t.from) ?? null,
          state: 'solidified',
          transaction_id: null,
          recorded_ms: now,
          credited_ms: null
        }).onConflict(oc => oc.columns(['tx_id', 'log_index']).doNothing()).execute()
      }
      await trx.updateTable('chain_cursors').set({ next_block: to + 1, updated_ms: now }).where('name', '=', this.cursorName).execute()
      return true
    })
  }

  /** Give unattributed deposits of senders linked meanwhile their account. */
  async #attribute (): Promise<void> {
    const waiting = await this.#db.selectFrom('chain_deposits').innerJoin('chain_wallets', 'chain_wallets.address', 'chain_deposits.from_address')
      .select(['chain_deposits.from_address as address', 'chain_wallets.account_id as accountId'])
      .where('chain_deposits.account_id', 'is', null).distinct().execute()
    for (const w of waiting) {
      await this.#db.updateTable('chain_deposits').set({ account_id: w.accountId }).where('from_address', '=', w.address).where('account_id', 'is', null).execute()
    }
  }

  async #credit (deposit: Deposit): Promise<void> {
    const accountId = deposit.accountId as string
    const tx = await this.#ledger.post({
      idempotencyKey: `deposit:${deposit.txId}:${deposit.logIndex}`,
      kind: 'deposit',
      cause: { chainTx: deposit.txId, reason: `BTT deposit from ${deposit.from} (block ${deposit.blockNumber}, log ${deposit.logIndex})` },
      postings: [
        { account: LedgerAccounts.funding.chain, amount: -deposit.amount },
        { account: LedgerAccounts.available(accountId), amount: deposit.amount }
      ]
    })
    await this.#db.updateTable('chain_deposits').set({ state: 'credited', transaction_id: tx.id, credited_ms: this.#now() })
      .where('tx_id', '=', deposit.txId).where('log_index', '=', deposit.logIndex).where('state', '=', 'solidified').execute()
    this.#log.info({ accountId, txId: deposit.txId, amount: deposit.amount.toString() }, 'deposits: credited')
    await this.#onCredited?.(accountId)
  }
}

interface DepositRow {
  tx_id: string
  log_index: number
  block_number: number | bigint
  from_address: string
  to_address: string
  amount: string
  account_id: string | null
  state: string
  transaction_id: string | null
  recorded_ms: number | bigint
  credited_ms: number | bigint | string | null
}

function toDeposit (row: DepositRow): Deposit {
  return {
    txId: row.tx_id,
    logIndex: Number(row.log_index),
    blockNumber: Number(row.block_number),
    from: row.from_address,
    to: row.to_address,
    amount: BigInt(row.amount),
    ...(row.account_id === null ? {} : { accountId: row.account_id }),
    state: row.state as DepositState,
    ...(row.transaction_id === null ? {} : { transactionId: row.transaction_id }),
    recordedAt: new Date(Number(row.recorded_ms)),
    ...(row.credited_ms === null ? {} : { creditedAt: new Date(Number(row.credited_ms)) })
  }
}
