/**
 * The {@link Ledger} over Kysely, for SQLite and PostgreSQL, in the tables of migration 0003.
 *
 * Concurrency. A transaction that touches customer accounts (the ones that may not go below
 * zero) locks their `ledger_accounts` rows `FOR UPDATE` in id order on PostgreSQL, reads each
 * one's last running balance, checks the new balances, and appends. Several Atlas processes on
 * one database therefore serialise per customer, never overdraw, and cannot deadlock (one lock
 * order). The unique (account_id, account_seq) index is the second line: two writers that read
 * the same last posting cannot both append after it. Revenue and funding accounts keep no
 * running balance and take no lock. On SQLite a process runs its transactions one at a time on
 * one connection (see `sqlite-dialect.ts`), and writers from other processes wait on the file
 * lock, so the same reads and checks are safe without row locks.
 *
 * Idempotency. The idempotency key is unique; a replay is found by it before anything is
 * written, and a concurrent twin loses on the unique constraint, is retried, and then finds it.
 */
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Kysely, Transaction } from 'kysely'
import { AtlasError } from '../core/errors.ts'
import { isDbError } from '../metadata/db-errors.ts'
import type { Database, DialectName } from '../metadata/schema.ts'
import { UploadIdGenerator } from '../metadata/upload-id.ts'
import { LedgerAccounts, accountKind } from './ledger.ts'
import type {
  Cause,
  CustomerBalances,
  Hold,
  HoldStatus,
  Ledger,
  LedgerEntriesPage,
  LedgerTransaction,
  PlaceHoldInput,
  Posting,
  PostingInput,
  TransactionInput,
  TransactionKind
} from './ledger.ts'

/** Attempts of a ledger transaction that collides with another (deadlock, busy, unique race) */
const MAX_ATTEMPTS = 10

/** Most entries one page of {@link KyselyLedger.entries} returns */
export const MAX_ENTRIES_PAGE = 1000

export interface KyselyLedgerInit {
  db: Kysely<Database>
  dialect: DialectName
  /** The clock, for tests @default Date.now */
  now?: () => number
}

type Trx = Transaction<Database>

export class KyselyLedger implements Ledger {
  readonly #db: Kysely<Database>
  readonly #pg: boolean
  readonly #ids = new UploadIdGenerator()
  readonly #now: () => number
  /** Ledger accounts known to exist (they are never deleted) */
  readonly #known = new Set<string>()
  /** Accounts the transaction in progress created; known once it commits */
  #pendingKnown: string[] = []

  constructor (init: KyselyLedgerInit) {
    this.#db = init.db
    this.#pg = init.dialect === 'postgres'
    this.#now = init.now ?? Date.now
  }

  async post (input: TransactionInput): Promise<LedgerTransaction> {
    checkTransaction(input)
    return await this.#run(async trx => await this.#post(trx, input))
  }

  async reverse (id: string, input: { idempotencyKey: string, reason: string }): Promise<LedgerTransaction> {
    return await this.#run(async trx => {
      const original = await this.#load(trx, id)
      if (original === null) throw new AtlasError('NotFound', `No ledger transaction ${id}`)
      const reversal: TransactionInput = {
        idempotencyKey: input.idempotencyKey,
        kind: 'reversal',
        cause: { reason: input.reason },
        postings: original.postings.map(p => ({ account: p.account, amount: -p.amount }))
      }
      const replay = await this.#replay(trx, reversal, id)
      if (replay !== null) return replay
      const already = await trx.selectFrom('ledger_transactions').select('id').where('reverses', '=', id).executeTakeFirst()
      if (already !== undefined) throw new AtlasError('Conflict', `Ledger transaction ${id} is already reversed by ${already.id}`)
      return await this.#post(trx, reversal, id)
    })
  }

  async transaction (id: string): Promise<LedgerTransaction | null> {
    return await this.#load(this.#db, id)
  }

  async balance (account: string): Promise<bigint> {
    if (isTracked(account)) return await this.#runningBalance(this.#db, account)
    // no running balance: the sum of its postings, exactly
    let total = 0n
    const rows = await this.#db.selectFrom('ledger_postings').select('amount').where('account_id', '=', account).execute()
    for (const row of rows) total += BigInt(row.amount)
    return total
  }

  async customerBalances (customerId: string): Promise<CustomerBalances> {
    return {
      available: await this.#runningBalance(this.#db, LedgerAccounts.available(customerId)),
      held: await this.#runningBalance(this.#db, LedgerAccounts.held(customerId)),
      receivable: await this.#runningBalance(this.#db, LedgerAccounts.receivable(customerId))
    }
  }

  async entries (customerId: string, options: { limit?: number, before?: string } = {}): Promise<LedgerEntriesPage> {
    const limit = Math.max(1, Math.min(options.limit ?? 100, MAX_ENTRIES_PAGE))
    let query = this.#db.selectFrom('ledger_postings')
      .select('transaction_id')
      .distinct()
      .where('account_id', 'in', [LedgerAccounts.available(customerId), LedgerAccounts.held(customerId), LedgerAccounts.receivable(customerId)])
    if (options.before !== undefined) query = query.where('transaction_id', '<', options.before)
    const ids = await query.orderBy('transaction_id', 'desc').limit(limit + 1).execute()
    const page = ids.slice(0, limit)
    const entries = await this.#loadMany(this.#db, page.map(r => r.transaction_id))
    return { entries, ...(ids.length > limit ? { next: page[page.length - 1]?.transaction_id } : {}) }
  }

  async placeHold (input: PlaceHoldInput): Promise<Hold> {
    if (input.amount <= 0n) throw new AtlasError('InvalidAmount', `A hold must be for a positive amount, not ${input.amount}`)
    accountKind(input.revenueAccount)
    return await this.#run(async trx => {
      const existing = await trx.selectFrom('ledger_holds').innerJoin('ledger_transactions', 'ledger_transactions.id', 'ledger_holds.hold_transaction_id')
        .selectAll('ledger_holds').where('ledger_transactions.idempotency_key', '=', input.idempotencyKey).executeTakeFirst()
      const transaction: TransactionInput = {
        idempotencyKey: input.idempotencyKey,
        kind: 'hold',
        cause: input.cause,
        postings: [
          { account: LedgerAccounts.available(input.customerId), amount: -input.amount },
          { account: LedgerAccounts.held(input.customerId), amount: input.amount }
        ]
      }
      if (existing !== undefined) {
        // the replay check compares the inputs
        await this.#replay(trx, transaction)
        return toHold(existing)
      }
      const posted = await this.#post(trx, transaction)
      const row = {
        id: posted.id,
        customer_id: input.customerId,
        amount: input.amount.toString(),
        revenue_account: input.revenueAccount,
        status: 'pending',
        used: '0',
        owner: input.owner,
        hold_transaction_id: posted.id,
        final_transaction_id: null,
        cause: JSON.stringify(input.cause),
        lane: input.lane ?? null,
        bucket: input.bucket ?? null,
        bytes: 0,
        created_ms: posted.createdAt.getTime(),
        created_at: posted.createdAt.toISOString()
      }
      await trx.insertInto('ledger_holds').values(row).execute()
      return toHold({ ...row, created_at: posted.createdAt })
    })
  }

  async checkpointHold (id: string, used: bigint, bytes = 0): Promise<void> {
    if (used < 0n) throw new AtlasError('InvalidAmount', 'Use recorded on a hold cannot be negative')
    await this.#run(async trx => {
      const hold = await this.#lockHold(trx, id)
      if (hold.status !== 'pending') return
      const capped = used > hold.amount ? hold.amount : used
      if (capped < hold.used || (capped === hold.used && bytes <= hold.bytes)) return
      await trx.updateTable('ledger_holds').set({ used: capped.toString(), bytes: Math.max(bytes, hold.bytes) }).where('id', '=', id).execute()
    })
  }

  async settleHold (id: string, used: bigint, bytes?: number, responses?: number): Promise<Hold> {
    if (used < 0n) throw new AtlasError('InvalidAmount', 'A hold cannot be settled for a negative amount')
    return await this.#finish(id, used, 'settled', bytes, responses)
  }

  async voidHold (id: string): Promise<Hold> {
    return await this.#finish(id, 0n, 'voided', 0)
  }

  async hold (id: string): Promise<Hold | null> {
    const row = await this.#db.selectFrom('ledger_holds').selectAll().where('id', '=', id).executeTakeFirst()
    return row === undefined ? null : toHold(row)
  }

  async pendingHolds (owner: string): Promise<Hold[]> {
    const rows = await this.#db.selectFrom('ledger_holds').selectAll().where('owner', '=', owner).where('status', '=', 'pending').orderBy('id').execute()
    return rows.map(toHold)
  }

  async trialBalance (): Promise<bigint> {
    let total = 0n
    const rows = await this.#db.selectFrom('ledger_postings').select('amount').execute()
    for (const row of rows) total += BigInt(row.amount)
    return total
  }

  async #finish (id: string, used: bigint, status: Exclude<HoldStatus, 'pending'>, bytes: number | undefined, responses?: number): Promise<Hold> {
    return await this.#run(async trx => {
      const hold = await this.#lockHold(trx, id)
      if (hold.status !== 'pending') return hold
      const charged = used > hold.amount ? hold.amount : used
      const released = hold.amount - charged
      const postings: PostingInput[] = [{ account: LedgerAccounts.held(hold.customerId), amount: -hold.amount }]
      if (charged > 0n) postings.push({ account: hold.revenueAccount, amount: charged })
      if (released > 0n) postings.push({ account: LedgerAccounts.available(hold.customerId), amount: released })
      const kind: TransactionKind = status === 'settled' ? 'settle' : 'void'
      const posted = await this.#post(trx, {
        idempotencyKey: `hold:${id}:final`,
        kind,
        cause: { ...hold.cause, bytes: String(bytes ?? hold.bytes) },
        postings
      })
      const finalStatus: HoldStatus = charged > 0n ? 'settled' : status
      const sent = bytes ?? hold.bytes
      await trx.updateTable('ledger_holds')
        .set({ status: finalStatus, used: charged.toString(), bytes: sent, final_transaction_id: posted.id, ...(responses === undefined ? {} : { responses }) })
        .where('id', '=', id).execute()
      return { ...hold, status: finalStatus, used: charged, bytes: sent }
    })
  }

  async #lockHold (trx: Trx, id: string): Promise<Hold> {
    let query = trx.selectFrom('ledger_holds').selectAll().where('id', '=', id)
    if (this.#pg) query = query.forUpdate()
    const row = await query.executeTakeFirst()
    if (row === undefined) throw new AtlasError('NotFound', `No hold ${id}`)
    return toHold(row)
  }

  /** The transaction already posted under the input's key, or null; a conflict if inputs differ. */
  async #replay (trx: Trx | Kysely<Database>, input: TransactionInput, reverses?: string): Promise<LedgerTransaction | null> {
    const row = await trx.selectFrom('ledger_transactions').select(['id', 'input_hash']).where('idempotency_key', '=', input.idempotencyKey).executeTakeFirst()
    if (row === undefined) return null
    if (row.input_hash !== inputHash(input, reverses)) {
      throw new AtlasError('IdempotencyConflict', `Idempotency key ${input.idempotencyKey} was used for another transaction`)
    }
    return await this.#load(trx, row.id)
  }

  async #post (trx: Trx, input: TransactionInput, reverses?: string): Promise<LedgerTransaction> {
    const replay = await this.#replay(trx, input, reverses)
    if (replay !== null) return replay
    const accounts = [...new Set(input.postings.map(p => p.account))].sort()
    await this.#ensureAccounts(trx, accounts)
    // running-balance accounts: lock (PostgreSQL), read, check
    const tracked = accounts.filter(a => isTracked(a))
    if (this.#pg && tracked.length > 0) {
      await trx.selectFrom('ledger_accounts').select('id').where('id', 'in', tracked).orderBy('id').forUpdate().execute()
    }
    const heads = new Map<string, { balance: bigint, seq: number }>()
    for (const account of tracked) heads.set(account, await this.#head(trx, account))
    const now = this.#now()
    const { id } = this.#ids.next(now)
    const createdAt = new Date(now).toISOString()
    const postings: Posting[] = []
    const rows = input.postings.map((posting, seq) => {
      const head = heads.get(posting.account)
      let balanceAfter: bigint | undefined
      let accountSeq: number | null = null
      if (head !== undefined) {
        balanceAfter = head.balance + posting.amount
        if (balanceAfter < 0n && isNonNegative(posting.account)) {
          const { kind, customerId } = accountKind(posting.account)
          throw new AtlasError('InsufficientFunds', kind === 'held'
            ? `The held balance of account ${customerId} cannot cover ${-posting.amount} units`
            : `Account ${customerId} has ${head.balance} units available; this needs ${-posting.amount}`, {
            details: { balance: head.balance.toString(), required: (-posting.amount).toString() }
          })
        }
        if (balanceAfter > 0n && isNonPositive(posting.account)) {
          // two payments of one debt (two credits at once) must not both go through
          const { customerId } = accountKind(posting.account)
          throw new AtlasError('Conflict', `Account ${customerId} owes ${-head.balance} units; a payment of ${posting.amount} would pay more than that`, {
            details: { owed: (-head.balance).toString(), payment: posting.amount.toString() }
          })
        }
        head.balance = balanceAfter
        head.seq += 1
        accountSeq = head.seq
      }
      postings.push({ account: posting.account, amount: posting.amount, ...(balanceAfter === undefined ? {} : { balanceAfter }) })
      return {
        transaction_id: id,
        seq,
        account_id: posting.account,
        amount: posting.amount.toString(),
        balance_after: balanceAfter === undefined ? null : balanceAfter.toString(),
        account_seq: accountSeq,
        created_at: createdAt
      }
    })
    await trx.insertInto('ledger_transactions').values({
      id,
      idempotency_key: input.idempotencyKey,
      input_hash: inputHash(input, reverses),
      kind: input.kind,
      cause: JSON.stringify(input.cause),
      reverses: reverses ?? null,
      created_at: createdAt
    }).execute()
    await trx.insertInto('ledger_postings').values(rows).execute()
    return { id, idempotencyKey: input.idempotencyKey, kind: input.kind, cause: input.cause, ...(reverses === undefined ? {} : { reverses }), postings, createdAt: new Date(now) }
  }

  async #ensureAccounts (trx: Trx, accounts: string[]): Promise<void> {
    const missing = accounts.filter(a => !this.#known.has(a))
    if (missing.length === 0) return
    const createdAt = new Date(this.#now()).toISOString()
    for (const account of missing) {
      const { kind, customerId } = accountKind(account)
      if (customerId !== undefined) {
        const customer = await trx.selectFrom('accounts').select('id').where('id', '=', customerId).executeTakeFirst()
        if (customer === undefined) throw new AtlasError('NoSuchAccount', `No account ${customerId}`)
      }
      await trx.insertInto('ledger_accounts')
        .values({ id: account, kind, customer_id: customerId ?? null, non_negative: isNonNegative(account) ? 1 : 0, created_at: createdAt })
        .onConflict(oc => oc.column('id').doNothing())
        .execute()
    }
    // remembered only once committed: see #run
    this.#pendingKnown.push(...missing)
  }

  async #head (db: Kysely<Database> | Trx, account: string): Promise<{ balance: bigint, seq: number }> {
    const row = await db.selectFrom('ledger_postings')
      .select(['balance_after', 'account_seq'])
      .where('account_id', '=', account)
      .where('account_seq', 'is not', null)
      .orderBy('account_seq', 'desc')
      .limit(1)
      .executeTakeFirst()
    if (row === undefined) return { balance: 0n, seq: 0 }
    return { balance: BigInt(row.balance_after ?? '0'), seq: Number(row.account_seq) }
  }

  async #runningBalance (db: Kysely<Database> | Trx, account: string): Promise<bigint> {
    return (await this.#head(db, account)).balance
  }

  async #load (db: Kysely<Database> | Trx, id: string): Promise<LedgerTransaction | null> {
    return (await this.#loadMany(db, [id]))[0] ?? null
  }

  /** The transactions `ids` (those that exist), in the order given: two queries whatever their number. */
  async #loadMany (db: Kysely<Database> | Trx, ids: string[]): Promise<LedgerTransaction[]> {
    if (ids.length === 0) return []
    const rows = await db.selectFrom('ledger_transactions').selectAll().where('id', 'in', ids).execute()
    const postings = await db.selectFrom('ledger_postings').selectAll().where('transaction_id', 'in', ids).orderBy('transaction_id').orderBy('seq').execute()
    const byTransaction = new Map<string, Posting[]>()
    for (const p of postings) {
      let list = byTransaction.get(p.transaction_id)
      if (list === undefined) byTransaction.set(p.transaction_id, list = [])
      list.push({ account: p.account_id, amount: BigInt(p.amount), ...(p.balance_after === null ? {} : { balanceAfter: BigInt(p.balance_after) }) })
    }
    const byId = new Map(rows.map(row => [row.id, row]))
    const out: LedgerTransaction[] = []
    for (const id of ids) {
      const row = byId.get(id)
      if (row === undefined) continue
      out.push({
        id: row.id,
        idempotencyKey: row.idempotency_key,
        kind: row.kind as TransactionKind,
        cause: JSON.parse(row.cause) as Cause,
        ...(row.reverses === null ? {} : { reverses: row.reverses }),
        postings: byTransaction.get(id) ?? [],
        createdAt: row.created_at instanceof Date ? row.created_at : new Date(row.created_at)
      })
    }
    return out
  }

  /**
   * Run `fn` in a database transaction, again when it collides with another writer (deadlock,
   * busy database, a unique index that another writer won). `fn` is therefore repeatable.
   */
  async #run<T> (fn: (trx: Trx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      this.#pendingKnown = []
      try {
        const result = await this.#db.transaction().execute(fn)
        for (const account of this.#pendingKnown) this.#known.add(account)
        return result
      } catch (err) {
        const retry = isDbError(err, 'retry') || isDbError(err, 'unique')
        if (!retry || attempt >= MAX_ATTEMPTS) throw err
        await sleep(Math.random() * 4 * attempt)
      }
    }
  }
}

/** Accounts that keep a running balance (and lock): a customer's. */
function isTracked (account: string): boolean {
  return account.startsWith('customer:')
}

/** Accounts whose balance may never go above zero: what a customer owes (its receivable). */
function isNonPositive (account: string): boolean {
  return account.startsWith('customer:') && account.endsWith(':receivable')
}

/** Accounts whose balance may never go below zero: a customer's available and held. */
function isNonNegative (account: string): boolean {
  return account.startsWith('customer:') && !account.endsWith(':receivable')
}

function checkTransaction (input: TransactionInput): void {
  if (input.idempotencyKey.length === 0 || input.idempotencyKey.length > 200) {
    throw new AtlasError('InvalidArgument', 'An idempotency key has 1 to 200 characters')
  }
  if (input.postings.length < 2) throw new AtlasError('InvalidAmount', 'A transaction has at least two postings')
  let sum = 0n
  for (const posting of input.postings) {
    if (typeof posting.amount !== 'bigint' || posting.amount === 0n) {
      throw new AtlasError('InvalidAmount', `A posting to ${posting.account} must move a non-zero whole number of units`)
    }
    accountKind(posting.account)
    sum += posting.amount
  }
  if (sum !== 0n) throw new AtlasError('InvalidAmount', `The postings sum to ${sum}, not zero`)
}

function inputHash (input: TransactionInput, reverses?: string): string {
  const canonical = JSON.stringify({
    kind: input.kind,
    cause: Object.fromEntries(Object.entries(input.cause).filter(([, v]) => v !== undefined).sort(([a], [b]) => a < b ? -1 : 1)),
    postings: input.postings.map(p => [p.account, p.amount.toString()]),
    reverses: reverses ?? null
  })
  return createHash('sha256').update(canonical).digest('hex')
}

interface HoldRow {
  id: string
  customer_id: string
  amount: string
  revenue_account: string
  status: string
  used: string
  owner: string
  cause: string
  bytes: number | bigint | string
  created_at: Date | string
}

function toHold (row: HoldRow): Hold {
  return {
    id: row.id,
    customerId: row.customer_id,
    amount: BigInt(row.amount),
    used: BigInt(row.used),
    status: row.status as HoldStatus,
    revenueAccount: row.revenue_account,
    owner: row.owner,
    cause: JSON.parse(row.cause) as Cause,
    bytes: Number(row.bytes),
    createdAt: row.created_at instanceof Date ? row.created_at : new Date(row.created_at)
  }
}
