/**
 * The billing service: what the gateway asks of billing, over the ledger.
 *
 * - Deliveries (egress): {@link Billing.beginDelivery} places a hold for the whole response at
 *   the lane's price before the first byte; the {@link Delivery} counts the bytes that leave,
 *   records a checkpoint of the cost so far every {@link CHECKPOINT_BYTES}, and is settled to the
 *   bytes sent when the response ends (aborted or not). After a crash, {@link Billing.start}
 *   settles the holds this process instance left pending at their last checkpoint, so a killed
 *   download pays for what was sent up to the last checkpoint and the rest is released.
 * - Uploads need a storage runway: the account must be able to pay `uploadRunwayDays` of storage
 *   for everything it stores plus the new object.
 * - Storage accrues per byte-millisecond between an object's creation and deletion (intervals
 *   written in the object's own transaction) and is charged per account and period by
 *   {@link Billing.meterStorage}, exactly once: the period's row and the ledger's idempotency key
 *   both guard it, across crashes and across processes running the job at once.
 * - Running dry: a storage charge the balance cannot cover is charged as far as it goes, the rest
 *   is recorded as owed (the receivable account), and the account enters its grace period
 *   (status `grace`): its data stays, its uploads and downloads are refused until it tops up.
 *   After `graceDays` it is `suspended`: content that no paying account references is released
 *   from the backends (unpinned, no longer seeded) and its storage stops accruing; its metadata
 *   stays for recovery. A credit pays what is owed first and returns the account to `active`.
 *   Every step is an event in the account's status history.
 */
import { randomUUID } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Kysely } from 'kysely'
import type { BackendName } from '../backends/backend.ts'
import type { AtlasConfig } from '../config.ts'
import { AtlasError } from '../core/errors.ts'
import type { Database } from '../metadata/schema.ts'
import { UploadIdGenerator } from '../metadata/upload-id.ts'
import { MAX_AMOUNT, ceilDiv, formatBtt } from './amount.ts'
import { LedgerAccounts } from './ledger.ts'
import type { Cause, Ledger } from './ledger.ts'
import { Pricing, STORAGE_DENOMINATOR, type Lane } from './pricing.ts'
import { POOL_RESPONSE_MAX_BYTES, SpendPool } from './spend-pool.ts'

/** Bytes of a delivery between two checkpoints of its hold */
export const CHECKPOINT_BYTES = 1024 * 1024

/**
 * How long a payer's billing status is taken as read: a status changes rarely (a dry account
 * entering grace), and reading it on every GET would cost more than the GET. Another process's
 * change is seen within this time.
 */
const STATUS_CACHE_MS = 1000

/** Statuses cached at most (the cache is cleared when full) */
const STATUS_CACHE_ENTRIES = 10_000

/** How often the storage meter looks for periods to charge, at most */
const STORAGE_TICK_MS = 60_000

/**
 * Ids of status events: they sort in the order the events were made in this process, which
 * orders two events of one millisecond (a meter's `grace` and the credit that follows it). One
 * generator per process, not per Billing, since several may write one account's events.
 */
const statusEventIds = new UploadIdGenerator()

/** Attempts of a storage charge, or a payment of what is owed, that the balances moved under */
const MAX_CHARGE_ATTEMPTS = 5

export type AccountStatusName = 'active' | 'grace' | 'suspended'

export interface StatusEvent {
  status: AccountStatusName
  reason: string
  at: Date
}

export interface AccountStatus {
  status: AccountStatusName
  /** When the grace period ends (status grace) */
  graceEndsAt?: Date
  /** Every step, oldest first */
  history: StatusEvent[]
}

export interface BillingLogger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export interface BillingInit {
  ledger: Ledger
  db: Kysely<Database>
  config: AtlasConfig['billing']
  /** Identifies this process instance across its restarts (it settles its own holds) */
  owner: string
  logger: BillingLogger
  /**
   * Release the given contents from the backends (unpin, stop seeding), keeping their metadata:
   * the object store does it for the content of a suspended account.
   */
  releaseContents?: (contentIds: string[]) => Promise<number>
  /** The clock, injectable for tests. @default Date.now */
  now?: () => number
}

export interface DeliveryInput {
  /** Who pays: the caller's account, or the bucket owner's for an anonymous public read */
  payer: string
  /** Bytes the response will carry */
  bytes: number
  lane: Lane
  requestId: string
  bucket?: string
  key?: string
}

/** A response being metered: count what leaves, then end it (once). */
export interface Delivery {
  readonly lane: Lane
  count(bytes: number): void
  /** Settle to the bytes counted. Safe to call more than once. */
  end(): Promise<void>
}

const FREE_DELIVERY: Delivery = { lane: 'fast', count () {}, async end () {} }

/** A per-process instance id kept in the data dir: the owner of the holds this process places. */
export async function loadOrCreateInstanceId (dataDir: string): Promise<string> {
  const path = join(dataDir, 'instance-id')
  try {
    const id = (await readFile(path, 'utf8')).trim()
    if (/^[0-9a-f-]{36}$/.test(id)) return id
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const id = randomUUID()
  await mkdir(dataDir, { recursive: true })
  await writeFile(path, `${id}\n`, { flag: 'w' })
  return id
}

export class Billing {
  readonly pricing: Pricing
  readonly ledger: Ledger
  readonly #db: Kysely<Database>
  readonly #config: AtlasConfig['billing']
  readonly #owner: string
  readonly #log: BillingLogger
  readonly #releaseContents: ((contentIds: string[]) => Promise<number>) | undefined
  readonly #now: () => number
  #timer: NodeJS.Timeout | undefined
  #metering: Promise<void> | undefined
  readonly #pool: SpendPool
  /** Recently read statuses of payers: a status changes rarely, a GET must not read it each time */
  readonly #statusCache = new Map<string, { status: { status: AccountStatusName, reason: string, atMs: number } | undefined, until: number }>()
  /** Deliveries in flight, settled by stop() */
  readonly #open = new Set<Delivery>()

  constructor (init: BillingInit) {
    this.ledger = init.ledger
    this.#db = init.db
    this.#config = init.config
    this.pricing = new Pricing(init.config)
    this.#owner = init.owner
    this.#log = init.logger
    this.#releaseContents = init.releaseContents
    this.#now = init.now ?? Date.now
    this.#pool = new SpendPool(this.ledger, this.#owner, this.#log)
  }

  /** Settle what a previous run of this instance left pending, then meter storage periodically. */
  async start (options: { meterStorage?: boolean } = {}): Promise<void> {
    const recovered = await this.recoverHolds()
    if (recovered > 0) this.#log.info({ holds: recovered }, 'billing: settled holds left pending by the previous run')
    if (options.meterStorage !== false) {
      const tick = Math.min(this.#config.periodSeconds * 1000, STORAGE_TICK_MS)
      this.#timer = setInterval(() => { this.#meterInBackground() }, tick)
      this.#timer.unref()
      this.#meterInBackground()
    }
  }

  async stop (): Promise<void> {
    clearInterval(this.#timer)
    await Promise.allSettled([...this.#open].map(async d => { await d.end() }))
    await this.#pool.close()
    await this.#metering
  }

  /** Settle every pending hold of this instance at its last checkpoint. */
  async recoverHolds (): Promise<number> {
    const pending = await this.ledger.pendingHolds(this.#owner)
    for (const hold of pending) await this.ledger.settleHold(hold.id, hold.used, hold.bytes)
    return pending.length
  }

  /**
   * Start metering a response: check the payer's status, charge the request fee, and hold the
   * full response's cost at the lane's price.
   *
   * @throws AtlasError `AccountSuspended` (grace or suspended), `InsufficientFunds`
   */
  async beginDelivery (input: DeliveryInput): Promise<Delivery> {
    await this.assertActive(input.payer)
    const cause: Cause = { requestId: input.requestId, lane: input.lane, ...(input.bucket === undefined ? {} : { bucket: input.bucket }), ...(input.key === undefined ? {} : { key: input.key }) }
    // request ids are unique within one process only (several replicas share the ledger, and a
    // restarted process counts again): the instance id makes the keys unique across them
    const requestKey = `${this.#owner}:${input.requestId}`
    const delivery = await this.#reserveEgress(input, cause, requestKey)
    if (this.pricing.requestFee > 0n) {
      // after the egress reservation, so that a request refused for lack of funds pays nothing
      try {
        await this.ledger.post({
          idempotencyKey: `request:${requestKey}`,
          kind: 'request',
          cause,
          postings: [{ account: LedgerAccounts.available(input.payer), amount: -this.pricing.requestFee }, { account: LedgerAccounts.revenue.requests, amount: this.pricing.requestFee }]
        })
      } catch (err) {
        // nothing was sent: ending the delivery now releases its reservation in full
        await delivery.end()
        throw err
      }
    }
    return delivery
  }

  async #reserveEgress (input: DeliveryInput, cause: Cause, requestKey: string): Promise<Delivery> {
    const amount = this.pricing.egressCost(BigInt(input.bytes), input.lane)
    if (amount === 0n) return input.lane === 'fast' ? FREE_DELIVERY : { ...FREE_DELIVERY, lane: input.lane }
    if (input.bytes <= POOL_RESPONSE_MAX_BYTES) {
      // small responses draw on a pooled lease (spend-pool.ts): no ledger write per response
      const claim = await this.#pool.claim({ payer: input.payer, lane: input.lane, ...(input.bucket === undefined ? {} : { bucket: input.bucket }) }, amount, cause)
      const pricing = this.pricing
      let sent = 0
      return {
        lane: input.lane,
        count (bytes: number): void { sent += bytes },
        async end (): Promise<void> {
          const bytes = Math.min(sent, input.bytes)
          claim.end(pricing.egressCost(BigInt(bytes), input.lane), bytes)
        }
      }
    }
    const hold = await this.ledger.placeHold({
      idempotencyKey: `egress:${requestKey}`,
      customerId: input.payer,
      amount,
      revenueAccount: LedgerAccounts.revenue.egress,
      owner: this.#owner,
      cause,
      lane: input.lane,
      ...(input.bucket === undefined ? {} : { bucket: input.bucket })
    })
    const ledger = this.ledger
    const pricing = this.pricing
    const log = this.#log
    const open = this.#open
    let sent = 0
    let nextCheckpoint = CHECKPOINT_BYTES
    let chain: Promise<void> = Promise.resolve()
    let ended: Promise<void> | undefined
    const delivery: Delivery = {
      lane: input.lane,
      count (bytes: number): void {
        sent += bytes
        if (sent >= nextCheckpoint && ended === undefined) {
          nextCheckpoint = sent + CHECKPOINT_BYTES
          const at = sent
          chain = chain.then(async () => { await ledger.checkpointHold(hold.id, pricing.egressCost(BigInt(at), input.lane), at) })
            .catch((err: unknown) => { log.error({ err, hold: hold.id }, 'billing: could not record a delivery checkpoint') })
        }
      },
      async end (): Promise<void> {
        ended ??= (async () => {
          await chain
          const bytes = Math.min(sent, input.bytes)
          try {
            await ledger.settleHold(hold.id, pricing.egressCost(BigInt(bytes), input.lane), bytes)
          } catch (err) {
            // the hold stays pending and is settled at its checkpoint at the next start
            log.error({ err, hold: hold.id }, 'billing: could not settle a delivery')
          } finally {
            open.delete(delivery)
          }
        })()
        await ended
      }
    }
    open.add(delivery)
    return delivery
  }

  /** @throws AtlasError `AccountSuspended` when the account is in its grace period or suspended */
  async assertActive (customerId: string): Promise<void> {
    const now = Date.now()
    let cached = this.#statusCache.get(customerId)
    if (cached === undefined || cached.until < now) {
      if (this.#statusCache.size >= STATUS_CACHE_ENTRIES) this.#statusCache.clear()
      cached = { status: await this.#latestStatus(customerId), until: now + STATUS_CACHE_MS }
      this.#statusCache.set(customerId, cached)
    }
    const status = cached.status
    if (status === undefined || status.status === 'active') return
    const balances = await this.ledger.customerBalances(customerId)
    throw new AtlasError('AccountSuspended', status.status === 'grace'
      ? `Account ${customerId} ran out of funds (${status.reason}); its data is kept, but uploads and downloads are refused until it tops up`
      : `Account ${customerId} is suspended for lack of funds (${status.reason}); top up to use it again`, {
      // not `status`: problem+json reserves that member for the HTTP status code
      details: { accountStatus: status.status, since: new Date(status.atMs).toISOString(), available: balances.available.toString(), owed: (-balances.receivable).toString() }
    })
  }

  /**
   * An upload of `size` bytes into a bucket on `backends` needs the account to be able to pay
   * `uploadRunwayDays` of storage for all it stores plus the new object.
   *
   * @throws AtlasError `AccountSuspended`, `InsufficientFunds` (details: balance, required)
   */
  async assertCanUpload (customerId: string, size: number, backends: readonly BackendName[]): Promise<void> {
    await this.assertActive(customerId)
    const days = this.#config.uploadRunwayDays
    if (days === 0) return
    const ms = BigInt(Math.ceil(days * 86_400_000))
    const numerator = await this.#storedNumerator(customerId, ms) + this.pricing.storageNumerator(BigInt(size), ms, this.pricing.storageRate(backends))
    const required = ceilDiv(numerator, STORAGE_DENOMINATOR)
    if (required === 0n) return
    const available = await this.ledger.balance(LedgerAccounts.available(customerId))
    if (available < required) {
      throw new AtlasError('InsufficientFunds', `Account ${customerId} has ${formatBtt(available)} BTT; storing this upload needs ${formatBtt(required)} BTT available (${days} days of storage for everything the account stores)`, {
        details: { balance: available.toString(), required: required.toString() }
      })
    }
  }

  /**
   * An admin credit, recorded as such; it pays what the account owes first and brings an
   * account out of grace or suspension.
   */
  async credit (customerId: string, amount: bigint, reason: string, idempotencyKey = `admin-credit:${randomUUID()}`): Promise<string> {
    // callers parse text with parseBtt/parseUnits; a number (a float, NaN) never stands for money
    if (typeof amount !== 'bigint') throw new AtlasError('InvalidAmount', 'A credit is a whole number of base units (a bigint), not a number')
    if (amount <= 0n) throw new AtlasError('InvalidAmount', 'A credit must be a positive amount')
    if (amount > MAX_AMOUNT) throw new AtlasError('InvalidAmount', `A credit of ${amount} units is too large`)
    if (reason.trim() === '') throw new AtlasError('InvalidArgument', 'A credit needs a reason')
    // the ledger knows no account without an id (and would take it for a programming error)
    if (customerId === '') throw new AtlasError('NoSuchAccount', 'No account with an empty id')
    const tx = await this.ledger.post({
      idempotencyKey,
      kind: 'admin-credit',
      cause: { reason },
      postings: [{ account: LedgerAccounts.funding.admin, amount: -amount }, { account: LedgerAccounts.available(customerId), amount }]
    })
    await this.settleOwed(customerId)
    return tx.id
  }

  /** Pay what the account owes from its available balance; back to active when nothing is owed. */
  async settleOwed (customerId: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const { available, receivable } = await this.ledger.customerBalances(customerId)
      const owed = -receivable
      if (owed <= 0n || available <= 0n) break
      const paid = owed < available ? owed : available
      try {
        await this.ledger.post({
          idempotencyKey: `collect:${customerId}:${receivable}:${randomUUID()}`,
          kind: 'storage',
          cause: { reason: 'storage owed from a dry period' },
          postings: [{ account: LedgerAccounts.available(customerId), amount: -paid }, { account: LedgerAccounts.receivable(customerId), amount: paid }]
        })
        break
      } catch (err) {
        // the balances moved since they were read: another credit paid (some of) the debt (the
        // ledger refuses to pay more than is owed), or a hold took the funds; read them again
        if (err instanceof AtlasError && (err.code === 'Conflict' || err.code === 'InsufficientFunds') && attempt < MAX_CHARGE_ATTEMPTS) continue
        throw err
      }
    }
    const after = await this.ledger.customerBalances(customerId)
    const status = await this.#latestStatus(customerId)
    // nothing owed is enough: an account left in grace with nothing owed would be suspended when
    // its grace period ran out, for a debt it had paid
    if (status !== undefined && status.status !== 'active' && after.receivable === 0n) {
      await this.#recordStatus(customerId, 'active', 'topped up')
    }
  }

  /** The account's billing status and its history. */
  async status (customerId: string): Promise<AccountStatus> {
    const rows = await this.#db.selectFrom('billing_status_events').selectAll().where('customer_id', '=', customerId).orderBy('at_ms').orderBy('id').execute()
    const history = rows.map(r => ({ status: r.status as AccountStatusName, reason: r.reason, at: new Date(Number(r.at_ms)) }))
    const last = history[history.length - 1]
    const status = last?.status ?? 'active'
    return {
      status,
      ...(status === 'grace' && last !== undefined ? { graceEndsAt: new Date(last.at.getTime() + this.#config.graceDays * 86_400_000) } : {}),
      history
    }
  }

  /** Cost per day of what the account stores now, in base units (rounded up). */
  async dailyStorageCost (customerId: string): Promise<bigint> {
    const numerator = await this.#storedNumerator(customerId, 86_400_000n)
    return ceilDiv(numerator, STORAGE_DENOMINATOR)
  }

  /**
   * Cost numerator (over STORAGE_DENOMINATOR) of keeping everything the account stores now for
   * `ms` more milliseconds. Summed in the database per set of backends: an upload's runway check
   * reads a few rows, not one per object the account holds.
   */
  async #storedNumerator (customerId: string, ms: bigint): Promise<bigint> {
    const rows = await this.#db.selectFrom('storage_intervals')
      .select(eb => ['backends', eb.fn.sum<number | bigint | string>('size').as('bytes')])
      .where('customer_id', '=', customerId).where('ended_ms', 'is', null)
      .groupBy('backends')
      .execute()
    let numerator = 0n
    for (const row of rows) numerator += this.pricing.storageNumerator(BigInt(row.bytes), ms, this.pricing.storageRate(JSON.parse(row.backends) as BackendName[]))
    return numerator
  }

  /**
   * Charge every storage period that has ended and is not charged yet, for every account, then
   * move accounts through grace and suspension. Safe to run from several processes at once.
   *
   * @returns the number of periods charged by this call
   */
  async meterStorage (): Promise<number> {
    const now = this.#now()
    const periodMs = this.#config.periodSeconds * 1000
    const customers = await this.#db.selectFrom('storage_intervals').select('customer_id').distinct().execute()
    let charged = 0
    for (const { customer_id: customerId } of customers) {
      charged += await this.#meterCustomer(customerId, now, periodMs)
      await this.#advanceStatus(customerId, now)
    }
    return charged
  }

  #meterInBackground (): void {
    if (this.#metering !== undefined) return
    this.#metering = this.meterStorage()
      .then(() => {}, (err: unknown) => { this.#log.error({ err }, 'billing: storage metering failed') })
      .finally(() => { this.#metering = undefined })
  }

  async #meterCustomer (customerId: string, now: number, periodMs: number): Promise<number> {
    const last = await this.#db.selectFrom('storage_periods').select(['period_start_ms', 'cost_numerator'])
      .where('customer_id', '=', customerId).orderBy('period_start_ms', 'desc').limit(1).executeTakeFirst()
    let start: number
    if (last !== undefined) {
      start = Number(last.period_start_ms) + periodMs
    } else {
      const first = await this.#db.selectFrom('storage_intervals').select(s => s.fn.min('started_ms').as('first')).where('customer_id', '=', customerId).executeTakeFirst()
      if (first?.first === null || first?.first === undefined) return 0
      start = Math.floor(Number(first.first) / periodMs) * periodMs
    }
    let cumulative = last === undefined ? 0n : BigInt(last.cost_numerator)
    let charged = 0
    while (start + periodMs <= now) {
      const end = start + periodMs
      const intervals = await this.#db.selectFrom('storage_intervals').select(['size', 'backends', 'started_ms', 'ended_ms'])
        .where('customer_id', '=', customerId)
        .where('started_ms', '<', end)
        .where(eb => eb.or([eb('ended_ms', 'is', null), eb('ended_ms', '>', start)]))
        .execute()
      if (intervals.length === 0) {
        // nothing stored in this period: skip ahead to the next interval, if any
        const next = await this.#db.selectFrom('storage_intervals').select(s => s.fn.min('started_ms').as('next'))
          .where('customer_id', '=', customerId).where('started_ms', '>=', end).executeTakeFirst()
        if (next?.next === null || next?.next === undefined) break
        start = Math.floor(Number(next.next) / periodMs) * periodMs
        continue
      }
      let byteMs = 0n
      let numerator = 0n
      for (const row of intervals) {
        const from = Math.max(Number(row.started_ms), start)
        const to = row.ended_ms === null ? end : Math.min(Number(row.ended_ms), end)
        if (to <= from) continue
        const ms = BigInt(to - from)
        byteMs += BigInt(row.size) * ms
        numerator += this.pricing.storageNumerator(BigInt(row.size), ms, this.pricing.storageRate(JSON.parse(row.backends) as BackendName[]))
      }
      const next = cumulative + numerator
      const amount = next / STORAGE_DENOMINATOR - cumulative / STORAGE_DENOMINATOR
      const transactionId = amount > 0n ? await this.#chargeStorage(customerId, start, end, amount) : null
      const inserted = await this.#db.insertInto('storage_periods').values({
        customer_id: customerId,
        period_start_ms: start,
        period_end_ms: end,
        byte_ms: byteMs.toString(),
        cost_numerator: next.toString(),
        amount: amount.toString(),
        transaction_id: transactionId
      }).onConflict(oc => oc.columns(['customer_id', 'period_start_ms']).doNothing()).executeTakeFirst()
      if ((inserted.numInsertedOrUpdatedRows ?? 0n) > 0n) charged++
      cumulative = next
      start = end
    }
    return charged
  }

  /**
   * Post one period's storage charge, idempotently by (customer, period): what the available
   * balance covers is paid, the rest is owed. A replay after a crash finds the posted charge.
   */
  async #chargeStorage (customerId: string, start: number, end: number, amount: bigint): Promise<string> {
    const idempotencyKey = `storage:${customerId}:${start}`
    const period = `${new Date(start).toISOString()}/${new Date(end).toISOString()}`
    for (let attempt = 1; ; attempt++) {
      const { available } = await this.ledger.customerBalances(customerId)
      const paid = available < amount ? available : amount
      const owed = amount - paid
      const postings: Array<{ account: string, amount: bigint }> = [{ account: LedgerAccounts.revenue.storage, amount }]
      if (paid > 0n) postings.push({ account: LedgerAccounts.available(customerId), amount: -paid })
      if (owed > 0n) postings.push({ account: LedgerAccounts.receivable(customerId), amount: -owed })
      try {
        const tx = await this.ledger.post({ idempotencyKey, kind: 'storage', cause: { period }, postings })
        if (owed > 0n) this.#log.warn({ customerId, period, owed: owed.toString() }, 'billing: storage charge not covered by the balance')
        return tx.id
      } catch (err) {
        // posted already (a crash between the charge and its period row, or another process)
        // with other inputs because the balance moved since: the posted charge stands
        if (err instanceof AtlasError && (err.code === 'IdempotencyConflict' || err.code === 'InsufficientFunds')) {
          const existing = await this.#db.selectFrom('ledger_transactions').select('id').where('idempotency_key', '=', idempotencyKey).executeTakeFirst()
          if (existing !== undefined) return existing.id
          // not posted: the balance fell between its read and the post (a download's hold, say);
          // split the charge again on the new balance rather than fail the whole metering run
          if (err.code === 'InsufficientFunds' && attempt < MAX_CHARGE_ATTEMPTS) continue
        }
        throw err
      }
    }
  }

  /** Dry accounts enter grace; accounts past their grace are suspended and their unpaid content released. */
  async #advanceStatus (customerId: string, now: number): Promise<void> {
    const { receivable } = await this.ledger.customerBalances(customerId)
    const status = await this.#latestStatus(customerId)
    const current = status?.status ?? 'active'
    if (receivable < 0n && current === 'active') {
      await this.#recordStatus(customerId, 'grace', `storage of ${formatBtt(-receivable)} BTT could not be paid`, now)
      return
    }
    if (current === 'grace' && status !== undefined && now - status.atMs >= this.#config.graceDays * 86_400_000) {
      await this.#recordStatus(customerId, 'suspended', `the ${this.#config.graceDays}-day grace period ended unpaid`, now)
      if (this.#releaseContents === undefined) return
      const unpaid = await this.unpaidContents(customerId)
      const released = await this.#releaseContents(unpaid)
      await this.#endStorage(customerId, unpaid, now)
      this.#log.warn({ customerId, released }, 'billing: account suspended; released content no paying account references')
    }
  }

  /**
   * Released content is no longer stored: the storage of the account's objects that refer to it
   * stops accruing at `at` (their metadata stays; a new upload of the key starts a new interval).
   */
  async #endStorage (customerId: string, contentIds: string[], at: number): Promise<void> {
    if (contentIds.length === 0) return
    const objects = await this.#db.selectFrom('objects')
      .innerJoin('buckets', 'buckets.name', 'objects.bucket')
      .select(['objects.bucket', 'objects.key'])
      .where('buckets.owner_id', '=', customerId)
      .where('objects.content_id', 'in', contentIds)
      .execute()
    for (const object of objects) {
      await this.#db.updateTable('storage_intervals').set({ ended_ms: at })
        .where('customer_id', '=', customerId).where('bucket', '=', object.bucket).where('key', '=', object.key).where('ended_ms', 'is', null)
        .execute()
    }
  }

  /** Contents the account's objects reference and no other account's objects do. */
  async unpaidContents (customerId: string): Promise<string[]> {
    const rows = await this.#db.selectFrom('objects')
      .innerJoin('buckets', 'buckets.name', 'objects.bucket')
      .select('objects.content_id')
      .distinct()
      .where('buckets.owner_id', '=', customerId)
      .where(eb => eb.not(eb.exists(eb.selectFrom('objects as other')
        .innerJoin('buckets as other_bucket', 'other_bucket.name', 'other.bucket')
        .select('other.content_id')
        .whereRef('other.content_id', '=', 'objects.content_id')
        .where('other_bucket.owner_id', '<>', customerId))))
      .execute()
    return rows.map(r => r.content_id)
  }

  async #latestStatus (customerId: string): Promise<{ status: AccountStatusName, reason: string, atMs: number } | undefined> {
    const row = await this.#db.selectFrom('billing_status_events').select(['status', 'reason', 'at_ms'])
      .where('customer_id', '=', customerId).orderBy('at_ms', 'desc').orderBy('id', 'desc').limit(1).executeTakeFirst()
    return row === undefined ? undefined : { status: row.status as AccountStatusName, reason: row.reason, atMs: Number(row.at_ms) }
  }

  async #recordStatus (customerId: string, status: AccountStatusName, reason: string, at = this.#now()): Promise<void> {
    this.#statusCache.delete(customerId)
    await this.#db.insertInto('billing_status_events').values({ id: statusEventIds.next(at).id, customer_id: customerId, status, reason, at_ms: at }).execute()
    this.#log.info({ customerId, status, reason }, 'billing: account status changed')
  }
}
