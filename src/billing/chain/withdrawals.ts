/**
 * Withdrawals: BTT from an account's available balance to one of its linked wallets, paid by the
 * hot wallet as a TRC-20 transfer. The same path will pay seeders (a payout is a withdrawal that
 * the gateway, not the customer, asks for), so nothing here is specific to customers beyond the
 * ledger accounts.
 *
 * Each withdrawal is a row that only moves forward:
 *
 *   requested ─▶ held ─▶ signed ─▶ broadcast ─▶ confirmed   (hold settled in full: BTT left)
 *                  │         └─────────┴──────▶ failed      (reverted on chain: hold voided)
 *                  │                   └──────▶ expired     (never included: hold voided)
 *                  └▶ failed (the hold could not be placed when a restart took it up)
 *
 * - The ledger hold comes first: the amount leaves `available` for `held` before anything is
 *   signed, so concurrent requests cannot spend it twice.
 * - The signed transaction and its id are written to the row before the broadcast. A restart
 *   finds rows in `signed` or `broadcast` and broadcasts that same transaction again (a node
 *   answers a transaction it has with a duplicate, not a second transfer). A new transaction is
 *   signed only for a row still in `held`, whose earlier signature (if any) was never recorded
 *   and so never broadcast.
 * - Settlement follows the chain: the hold is settled to the full amount (to the payouts ledger
 *   account) once the transfer is solidified and succeeded; voided once it is solidified and
 *   reverted; voided as expired only when the head block's time (chain time, not the local
 *   clock) is past the transaction's expiration by {@link EXPIRY_MARGIN_MS} and no node state
 *   knows the transaction: after that it can never be included.
 * - The hold's owner is {@link WITHDRAWAL_HOLD_OWNER}, not a process instance, so the delivery
 *   hold recovery at start (Billing.recoverHolds) never settles a withdrawal's hold.
 *
 * A background loop ({@link Withdrawals.start}) advances every open withdrawal; several
 * processes may run it on one database (each step is a conditional update, the ledger's hold
 * operations are idempotent).
 */
import type { Kysely, Selectable } from 'kysely'
import { AtlasError } from '../../core/errors.ts'
import type { ChainWithdrawalsTable, Database, DialectName } from '../../metadata/schema.ts'
import { UploadIdGenerator } from '../../metadata/upload-id.ts'
import { formatBtt, parseBtt } from '../amount.ts'
import { LedgerAccounts, type Ledger } from '../ledger.ts'
import { BroadcastRefusedError, type ChainClient, type ChainOptions } from './chain.ts'
import { Poller } from './poller.ts'

/** The ledger account a settled withdrawal pays (a payout account: BTT that left for the chain) */
export const WITHDRAWALS_LEDGER_ACCOUNT = 'payouts:withdrawals'

/** Owner of withdrawal holds: no process instance, so no start-up recovery settles them */
export const WITHDRAWAL_HOLD_OWNER = 'chain:withdrawals'

/** Chain time past a transaction's expiration before a withdrawal that never landed is given up */
export const EXPIRY_MARGIN_MS = 60_000

/** A `requested` row younger than this belongs to the request that wrote it; the loop leaves it */
const REQUEST_GRACE_MS = 60_000

const DAY_MS = 86_400_000

/** Most withdrawals one listing returns */
export const MAX_WITHDRAWALS_PAGE = 1000

/** Open withdrawals one loop pass advances at most */
const PASS_LIMIT = 200

export type WithdrawalState = 'requested' | 'held' | 'signed' | 'broadcast' | 'confirmed' | 'failed' | 'expired'

/** States of a withdrawal that has not ended yet */
export const OPEN_STATES: WithdrawalState[] = ['requested', 'held', 'signed', 'broadcast']
const COUNTED_STATES: WithdrawalState[] = [...OPEN_STATES, 'confirmed']

export interface Withdrawal {
  id: string
  accountId: string
  address: string
  amount: bigint
  state: WithdrawalState
  /** The ledger hold reserving the amount (from `held` on) */
  holdId?: string
  txId?: string
  /** The block that included it */
  blockNumber?: number
  /** The receipt result (SUCCESS, REVERT, …) */
  result?: string
  /** Why it failed or expired, or the last refusal of a broadcast */
  error?: string
  /** The transaction's expiration (chain time) */
  expiration?: Date
  broadcasts: number
  createdAt: Date
  updatedAt: Date
}

export interface WithdrawalLimits {
  /** Smallest withdrawal, base units */
  min: bigint
  /** Largest single withdrawal, base units */
  max: bigint
  /** Most one account withdraws in any 24 hours, base units */
  maxPerDay: bigint
}

export interface WithdrawalRequest {
  address: unknown
  /** Decimal BTT as a string (`"12.5"`), up to 18 decimals */
  amount: unknown
}

export interface WithdrawalsLogger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export interface WithdrawalsInit {
  db: Kysely<Database>
  dialect: DialectName
  chain: ChainClient
  ledger: Ledger
  /** The account an address is linked to */
  walletOwner: (address: string) => Promise<string | undefined>
  limits: WithdrawalLimits
  logger: WithdrawalsLogger
  /** The clock, for tests. @default Date.now */
  now?: () => number
}

type Row = Selectable<ChainWithdrawalsTable>

export class Withdrawals {
  readonly #db: Kysely<Database>
  readonly #pg: boolean
  readonly #chain: ChainClient
  readonly #ledger: Ledger
  readonly #walletOwner: WithdrawalsInit['walletOwner']
  readonly limits: WithdrawalLimits
  readonly #log: WithdrawalsLogger
  readonly #now: () => number
  readonly #ids = new UploadIdGenerator()
  readonly #poller: Poller

  constructor (init: WithdrawalsInit) {
    this.#db = init.db
    this.#pg = init.dialect === 'postgres'
    this.#chain = init.chain
    this.#ledger = init.ledger
    this.#walletOwner = init.walletOwner
    this.limits = init.limits
    this.#log = init.logger
    this.#now = init.now ?? Date.now
    this.#poller = new Poller('withdrawals: pass', async (signal) => await this.advanceAll({ signal }), this.#log)
  }

  /**
   * Withdraw to a linked wallet: checks, then the hold, the signature (recorded), the broadcast.
   * Settlement happens later, when the transfer is solidified ({@link advanceAll}).
   *
   * @throws AtlasError `InvalidArgument` (address), `InvalidAmount` (not a decimal string,
   * negative, zero, finer than a unit, outside the limits), `Conflict` (not a wallet linked to
   * this account; the day's limit reached), `InsufficientFunds`, `ServiceUnavailable` (the hot
   * wallet cannot pay it now, or the node is unreachable): all before any ledger change
   */
  async request (accountId: string, input: WithdrawalRequest, options: ChainOptions = {}): Promise<Withdrawal> {
    const { address, amount } = this.#check(input)
    if (await this.#walletOwner(address) !== accountId) {
      throw new AtlasError('Conflict', `${address} is not a wallet linked to this account: link it first (GET /v1/account/wallets/challenge, then POST /v1/account/wallets)`)
    }
    const available = await this.#ledger.balance(LedgerAccounts.available(accountId))
    if (available < amount) {
      throw new AtlasError('InsufficientFunds', `Account ${accountId} has ${formatBtt(available)} BTT available; this withdrawal needs ${formatBtt(amount)} BTT`, {
        details: { balance: available.toString(), required: amount.toString() }
      })
    }
    // the day's limit is checked here for a quick answer, and again where it counts, below
    this.#checkDailyLimit(await this.#withdrawnToday(this.#db, accountId, this.#now()), amount)
    await this.#checkLiquidity(amount, options)
    const now = this.#now()
    const { id } = this.#ids.next(now)
    await this.#db.transaction().execute(async trx => {
      // one account's requests in turn (PostgreSQL; SQLite runs one writer at a time), so that
      // two at once cannot both fit under the day's limit
      if (this.#pg) await trx.selectFrom('accounts').select('id').where('id', '=', accountId).forUpdate().execute()
      this.#checkDailyLimit(await this.#withdrawnToday(trx, accountId, now), amount)
      await trx.insertInto('chain_withdrawals').values({
        id, account_id: accountId, to_address: address, amount: amount.toString(), state: 'requested',
        hold_id: null, tx_id: null, signed_tx: null, expiration_ms: null, block_number: null, result: null, error: null,
        created_ms: now, updated_ms: now
      }).execute()
    })
    try {
      await this.#hold(await this.#load(id))
    } catch (err) {
      // the hold was refused (the balance moved since the check): nothing happened, forget it
      if (err instanceof AtlasError && err.code === 'InsufficientFunds') {
        await this.#db.deleteFrom('chain_withdrawals').where('id', '=', id).where('state', '=', 'requested').execute()
      }
      throw err
    }
    this.#log.info({ id, accountId, to: address, amount: amount.toString() }, 'withdrawals: held')
    // sign, record, broadcast now; if that fails the loop takes it from where it stopped
    try {
      return await this.advance(id, options)
    } catch (err) {
      this.#log.warn({ err, id }, 'withdrawals: could not send at once; the loop retries')
      return await this.#load(id)
    }
  }

  /** Move one withdrawal on as far as the chain allows now. */
  async advance (id: string, options: ChainOptions = {}): Promise<Withdrawal> {
    let w = await this.#load(id)
    if (w.state === 'requested') w = await this.#hold(w)
    if (w.state === 'held') w = await this.#sign(w, options)
    if (w.state === 'signed' || w.state === 'broadcast') w = await this.#follow(w, options)
    return w
  }

  /** Advance every open withdrawal (the loop's pass). @returns how many are still open */
  async advanceAll (options: ChainOptions = {}): Promise<number> {
    const rows = await this.#db.selectFrom('chain_withdrawals').select(['id', 'state', 'created_ms']).where('state', 'in', OPEN_STATES)
      .orderBy('created_ms').limit(PASS_LIMIT).execute()
    let open = 0
    const now = this.#now()
    for (const row of rows) {
      if (aborted(options)) break
      if (row.state === 'requested' && now - Number(row.created_ms) < REQUEST_GRACE_MS) {
        open++
        continue
      }
      try {
        const w = await this.advance(row.id, options)
        if (OPEN_STATES.includes(w.state)) open++
      } catch (err) {
        // one withdrawal's trouble (a node that refuses, a lost connection) holds up no other
        if (aborted(options)) throw err
        open++
        this.#log.warn({ err, id: row.id }, 'withdrawals: could not advance; retrying later')
      }
    }
    return open
  }

  /** Run {@link advanceAll} every `intervalMs` (first at once), until {@link stop}. */
  start (intervalMs: number): void {
    this.#poller.start(intervalMs)
  }

  /** Stop; waits for a pass in progress to end (its chain calls are aborted). */
  async stop (): Promise<void> {
    await this.#poller.stop()
  }

  /** An account's withdrawals, newest first. */
  async list (accountId: string, options: { limit?: number } = {}): Promise<Withdrawal[]> {
    const limit = Math.max(1, Math.min(options.limit ?? 100, MAX_WITHDRAWALS_PAGE))
    const rows = await this.#db.selectFrom('chain_withdrawals').selectAll().where('account_id', '=', accountId).orderBy('id', 'desc').limit(limit).execute()
    return rows.map(toWithdrawal)
  }

  /** A withdrawal by id. */
  async get (id: string): Promise<Withdrawal | undefined> {
    const row = await this.#db.selectFrom('chain_withdrawals').selectAll().where('id', '=', id).executeTakeFirst()
    return row === undefined ? undefined : toWithdrawal(row)
  }

  /** What open withdrawals still owe from the hot wallet. */
  async inFlight (): Promise<bigint> {
    const rows = await this.#db.selectFrom('chain_withdrawals').select('amount').where('state', 'in', OPEN_STATES).execute()
    return rows.reduce((sum, r) => sum + BigInt(r.amount), 0n)
  }

  #check (input: WithdrawalRequest): { address: string, amount: bigint } {
    if (typeof input.address !== 'string' || !this.#chain.isAddress(input.address)) {
      throw new AtlasError('InvalidArgument', `address must be a base58 TRON address (T…), not ${JSON.stringify(input.address ?? null).slice(0, 60)}`)
    }
    if (typeof input.amount !== 'string') {
      throw new AtlasError('InvalidAmount', 'amount must be a string of decimal BTT, such as "12.5" (a JSON number cannot carry 18 decimals exactly)')
    }
    const amount = parseBtt(input.amount)
    if (amount === 0n) throw new AtlasError('InvalidAmount', 'A withdrawal must be more than 0 BTT')
    if (amount < this.limits.min) throw new AtlasError('InvalidAmount', `A withdrawal is at least ${formatBtt(this.limits.min)} BTT`)
    if (amount > this.limits.max) throw new AtlasError('InvalidAmount', `A withdrawal is at most ${formatBtt(this.limits.max)} BTT`)
    return { address: input.address, amount }
  }

  /** What the account withdrew in the 24 hours before `now` (open or confirmed withdrawals). */
  async #withdrawnToday (db: Kysely<Database>, accountId: string, now: number): Promise<bigint> {
    const recent = await db.selectFrom('chain_withdrawals').select('amount').where('account_id', '=', accountId)
      .where('created_ms', '>', now - DAY_MS).where('state', 'in', COUNTED_STATES).execute()
    return recent.reduce((sum, r) => sum + BigInt(r.amount), 0n)
  }

  #checkDailyLimit (today: bigint, amount: bigint): void {
    if (today + amount <= this.limits.maxPerDay) return
    throw new AtlasError('Conflict', `Withdrawals are limited to ${formatBtt(this.limits.maxPerDay)} BTT per account in 24 hours; ${formatBtt(today)} BTT were withdrawn in the last 24 hours`, {
      details: { withdrawnToday: today.toString(), limit: this.limits.maxPerDay.toString() }
    })
  }

  /** The hot wallet must hold this on top of what open withdrawals will take. */
  async #checkLiquidity (amount: bigint, options: ChainOptions): Promise<void> {
    const balance = await this.#chain.tokenBalance(this.#chain.depositAddress, options)
    const owed = await this.inFlight()
    if (balance - owed < amount) {
      throw new AtlasError('ServiceUnavailable', `The gateway's hot wallet cannot pay ${formatBtt(amount)} BTT now (it holds ${formatBtt(balance)} BTT, ${formatBtt(owed)} BTT of it promised to withdrawals in flight); try a smaller amount or later`)
    }
  }

  async #hold (w: Withdrawal): Promise<Withdrawal> {
    try {
      const hold = await this.#ledger.placeHold({
        idempotencyKey: `withdrawal:${w.id}`,
        customerId: w.accountId,
        amount: w.amount,
        revenueAccount: WITHDRAWALS_LEDGER_ACCOUNT,
        owner: WITHDRAWAL_HOLD_OWNER,
        cause: { reason: `withdrawal ${w.id} to ${w.address}` }
      })
      await this.#update(w.id, ['requested'], { state: 'held', hold_id: hold.id })
    } catch (err) {
      // taken up after a restart with the funds gone meanwhile: it never started
      if (err instanceof AtlasError && err.code === 'InsufficientFunds' && this.#now() - w.createdAt.getTime() >= REQUEST_GRACE_MS) {
        await this.#update(w.id, ['requested'], { state: 'failed', error: 'the balance could no longer pay it when it was taken up again' })
        return await this.#load(w.id)
      }
      throw err
    }
    return await this.#load(w.id)
  }

  async #sign (w: Withdrawal, options: ChainOptions): Promise<Withdrawal> {
    const signed = await this.#chain.signTransfer(w.address, w.amount, options)
    // recorded before any broadcast: if another process signed first, this signature is dropped
    // unsent, and theirs is the one
    const won = await this.#update(w.id, ['held'], { state: 'signed', tx_id: signed.txId, signed_tx: signed.raw, expiration_ms: signed.expiration })
    const now = await this.#load(w.id)
    if (!won) return now
    this.#log.info({ id: w.id, txId: signed.txId }, 'withdrawals: signed')
    return await this.#broadcast(now, options)
  }

  /** Broadcast the recorded transaction (again). A refusal is recorded; the row stays open until the chain decides it. */
  async #broadcast (w: Withdrawal, options: ChainOptions): Promise<Withdrawal> {
    const row = await this.#db.selectFrom('chain_withdrawals').select(['tx_id', 'signed_tx', 'expiration_ms']).where('id', '=', w.id).executeTakeFirstOrThrow()
    if (row.tx_id === null || row.signed_tx === null || row.expiration_ms === null) throw new Error(`withdrawal ${w.id} has no signed transaction`)
    try {
      await this.#chain.broadcast({ txId: row.tx_id, raw: row.signed_tx, expiration: Number(row.expiration_ms) }, options)
    } catch (err) {
      if (!(err instanceof BroadcastRefusedError)) throw err
      // expired, busy, out of sync…: it may still be on chain, or will expire; the loop decides
      await this.#update(w.id, ['signed', 'broadcast'], { error: err.message })
      this.#log.warn({ id: w.id, txId: row.tx_id, code: err.nodeCode }, 'withdrawals: broadcast refused')
      return await this.#load(w.id)
    }
    await this.#db.updateTable('chain_withdrawals')
      .set(eb => ({ state: 'broadcast', broadcasts: eb('broadcasts', '+', 1), updated_ms: this.#now() }))
      .where('id', '=', w.id).where('state', 'in', ['signed', 'broadcast']).execute()
    return await this.#load(w.id)
  }

  /** Settle, void or broadcast again, as the chain says. */
  async #follow (w: Withdrawal, options: ChainOptions): Promise<Withdrawal> {
    const txId = w.txId as string
    // the head before the status: if the transaction is unknown after a head already past its
    // expiration, no later block can include it
    const head = await this.#chain.head(options)
    const status = await this.#chain.transactionStatus(txId, options)
    if (status.state === 'confirmed') {
      await this.#ledger.settleHold(holdOf(w), w.amount)
      await this.#update(w.id, ['signed', 'broadcast'], { state: 'confirmed', block_number: status.blockNumber ?? null, result: status.result ?? null, error: null })
      this.#log.info({ id: w.id, txId, block: status.blockNumber }, 'withdrawals: confirmed; hold settled')
      return await this.#load(w.id)
    }
    if (status.state === 'failed') {
      await this.#ledger.voidHold(holdOf(w))
      await this.#update(w.id, ['signed', 'broadcast'], { state: 'failed', block_number: status.blockNumber ?? null, result: status.result ?? null, error: `the transfer failed on chain (${status.result ?? 'no result'}); the amount is back in the balance` })
      this.#log.warn({ id: w.id, txId, result: status.result }, 'withdrawals: failed on chain; hold voided')
      return await this.#load(w.id)
    }
    if (status.state === 'pending') return w
    const expiration = w.expiration?.getTime() ?? 0
    if (head.timestamp >= expiration + EXPIRY_MARGIN_MS) {
      await this.#ledger.voidHold(holdOf(w))
      await this.#update(w.id, ['signed', 'broadcast'], { state: 'expired', error: `the transaction expired at ${new Date(expiration).toISOString()} (chain time) without being included; the amount is back in the balance` })
      this.#log.warn({ id: w.id, txId }, 'withdrawals: expired unincluded; hold voided')
      return await this.#load(w.id)
    }
    return await this.#broadcast(w, options)
  }

  /** A conditional step: applies only while the row is in one of `from`. @returns whether it applied */
  async #update (id: string, from: WithdrawalState[], set: Partial<{ state: WithdrawalState, hold_id: string, tx_id: string, signed_tx: string, expiration_ms: number, block_number: number | null, result: string | null, error: string | null }>): Promise<boolean> {
    const result = await this.#db.updateTable('chain_withdrawals').set({ ...set, updated_ms: this.#now() })
      .where('id', '=', id).where('state', 'in', from).executeTakeFirst()
    return result.numUpdatedRows > 0n
  }

  async #load (id: string): Promise<Withdrawal> {
    const row = await this.#db.selectFrom('chain_withdrawals').selectAll().where('id', '=', id).executeTakeFirst()
    if (row === undefined) throw new AtlasError('NotFound', `No withdrawal ${id}`)
    return toWithdrawal(row)
  }
}

function aborted (options: ChainOptions): boolean {
  return options.signal?.aborted === true
}

function holdOf (w: Withdrawal): string {
  if (w.holdId === undefined) throw new Error(`withdrawal ${w.id} has no hold`)
  return w.holdId
}

function toWithdrawal (row: Row): Withdrawal {
  return {
    id: row.id,
    accountId: row.account_id,
    address: row.to_address,
    amount: BigInt(row.amount),
    state: row.state as WithdrawalState,
    ...(row.hold_id === null ? {} : { holdId: row.hold_id }),
    ...(row.tx_id === null ? {} : { txId: row.tx_id }),
    ...(row.block_number === null ? {} : { blockNumber: Number(row.block_number) }),
    ...(row.result === null ? {} : { result: row.result }),
    ...(row.error === null ? {} : { error: row.error }),
    ...(row.expiration_ms === null ? {} : { expiration: new Date(Number(row.expiration_ms)) }),
    broadcasts: Number(row.broadcasts),
    createdAt: new Date(Number(row.created_ms)),
    updatedAt: new Date(Number(row.updated_ms))
  }
}
