/**
 * What an account sees of its billing (`GET /v1/account`, `/v1/account/usage`, the CLI's
 * `accounts balance`): balances and runway, and usage over a time range with its cost.
 *
 * Usage is computed from the rows metering writes, not from the ledger's postings, because the
 * postings do not say which bucket or lane they were for in a form that adds up by range:
 * - storage from `storage_intervals` (one row per object version, from its creation to its
 *   deletion): the byte-milliseconds of each interval's overlap with the range, priced at the
 *   current storage rates of the backends the interval was stored on;
 * - egress from `ledger_holds` that are final (settled or voided): the bytes each response sent
 *   and the units it was charged, by lane. Responses still in flight are not counted yet, and a
 *   response whose price is zero places no hold and is not listed.
 *
 * Rows are read in pages of {@link USAGE_PAGE_ROWS} in index order (keyset pagination), so a
 * report over an account with millions of objects or responses holds one page at a time.
 * Amounts stay `bigint` throughout; JSON carries them as strings ({@link amountJson}).
 */
import type { Kysely } from 'kysely'
import type { BackendName } from '../backends/backend.ts'
import type { Database } from '../metadata/schema.ts'
import { formatBtt } from './amount.ts'
import { LedgerAccounts } from './ledger.ts'
import type { AccountStatus, Billing } from './billing.ts'
import { LANES, STORAGE_DENOMINATOR, type Lane, type Pricing } from './pricing.ts'

/** Rows read per round trip while a report pages through intervals or holds */
export const USAGE_PAGE_ROWS = 1000

/** Milliseconds in an hour, for byte-hours */
const HOUR_MS = 3_600_000n

/** An amount as JSON carries it: base units (exact, beyond 2^53) and the same in decimal BTT. */
export interface AmountJson {
  units: string
  btt: string
}

/** The JSON form of an amount of base units. */
export function amountJson (units: bigint): AmountJson {
  return { units: units.toString(), btt: formatBtt(units) }
}

/** An account's money and standing now. */
export interface AccountSummary {
  /** What the account can spend */
  available: bigint
  /** Reserved for responses in flight */
  held: bigint
  /** Storage charged while the balance could not pay it (zero or positive) */
  owed: bigint
  status: AccountStatus
  /** Cost of one day of what the account stores now, rounded up */
  dailyStorageCost: bigint
  /**
   * Days the available balance pays for what is stored now, rounded down to 1/100 day; null when
   * storage costs nothing (nothing stored, or free storage). Egress is not in it: it depends on
   * downloads to come.
   */
  runwayDays: number | null
}

/** Balances, status and runway of `customerId`. */
export async function accountSummary (billing: Billing, customerId: string): Promise<AccountSummary> {
  const balances = await billing.ledger.customerBalances(customerId)
  const status = await billing.status(customerId)
  const dailyStorageCost = await billing.dailyStorageCost(customerId)
  const owed = -balances.receivable
  // hundredths of a day in bigint, then a number: the ratio of two amounts beyond 2^53 stays exact
  // up to the rounding, and a runway needs no more than two decimals
  const runwayDays = dailyStorageCost === 0n ? null : Number(balances.available * 100n / dailyStorageCost) / 100
  return { available: balances.available, held: balances.held, owed, status, dailyStorageCost, runwayDays }
}

/** A time range of a usage report, `[from, to)` in epoch milliseconds, optionally one bucket. */
export interface UsageRange {
  from: number
  to: number
  bucket?: string
}

export interface StorageUsageLine {
  bucket: string
  /** Bytes times milliseconds stored within the range (all backends of the bucket count once) */
  byteMs: bigint
  /** Cost at the current prices, rounded down to the unit */
  cost: bigint
}

export interface StorageUsage {
  byteMs: bigint
  /**
   * Cost of all buckets together, rounded down once: it may exceed the sum of the buckets' costs
   * by less than one unit per bucket
   */
  cost: bigint
  /** By bucket, in name order */
  buckets: StorageUsageLine[]
}

export interface EgressUsageLine {
  /** Bytes that left */
  bytes: bigint
  /** Responses metered */
  responses: number
  /** Units charged */
  cost: bigint
}

export interface EgressUsage extends EgressUsageLine {
  /** By lane; every lane is present, with zeros when unused */
  lanes: Record<Lane, EgressUsageLine>
}

export interface UsageReport {
  storage: StorageUsage
  egress: EgressUsage
  /** Storage plus egress */
  total: bigint
}

/** Byte-milliseconds as whole byte-hours (rounded down). */
export function byteHours (byteMs: bigint): bigint {
  return byteMs / HOUR_MS
}

/**
 * The usage of `customerId` over `range`: storage from its intervals (the bucket owner pays),
 * egress from its final holds (the payer of each response).
 *
 * @param now the current time: intervals still open accrue up to it, not up to `range.to`
 */
export async function usageReport (db: Kysely<Database>, pricing: Pricing, customerId: string, range: UsageRange, now: number): Promise<UsageReport> {
  const storage = await storageUsage(db, pricing, customerId, range, now)
  const egress = await egressUsage(db, customerId, range)
  return { storage, egress, total: storage.cost + egress.cost }
}

/** Storage byte-time and its cost, per bucket and in all, within `range`. */
export async function storageUsage (db: Kysely<Database>, pricing: Pricing, customerId: string, range: UsageRange, now: number): Promise<StorageUsage> {
  const from = BigInt(range.from)
  const to = BigInt(range.to)
  const openEnd = BigInt(Math.min(range.to, now))
  const perBucket = new Map<string, { byteMs: bigint, numerator: bigint }>()
  let after: { started: number | bigint, id: string } | undefined
  for (;;) {
    const cursor = after
    const rows = await db.selectFrom('storage_intervals')
      .select(['id', 'bucket', 'size', 'backends', 'started_ms', 'ended_ms'])
      .where('customer_id', '=', customerId)
      .where('started_ms', '<', range.to)
      .where(eb => eb.or([eb('ended_ms', 'is', null), eb('ended_ms', '>', range.from)]))
      .$if(range.bucket !== undefined, qb => qb.where('bucket', '=', range.bucket as string))
      .$if(cursor !== undefined, qb => qb.where(eb => eb.or([
        eb('started_ms', '>', cursor?.started as number),
        eb.and([eb('started_ms', '=', cursor?.started as number), eb('id', '>', cursor?.id as string)])
      ])))
      .orderBy('started_ms').orderBy('id')
      .limit(USAGE_PAGE_ROWS)
      .execute()
    for (const row of rows) {
      const started = BigInt(row.started_ms)
      const ended = row.ended_ms === null ? openEnd : BigInt(row.ended_ms)
      const start = started > from ? started : from
      const end = ended < to ? ended : to
      if (end <= start) continue
      const size = BigInt(row.size)
      const ms = end - start
      const line = perBucket.get(row.bucket) ?? { byteMs: 0n, numerator: 0n }
      line.byteMs += size * ms
      line.numerator += pricing.storageNumerator(size, ms, pricing.storageRate(JSON.parse(row.backends) as BackendName[]))
      perBucket.set(row.bucket, line)
    }
    const last = rows[rows.length - 1]
    if (rows.length < USAGE_PAGE_ROWS || last === undefined) break
    after = { started: last.started_ms, id: last.id }
  }
  let byteMs = 0n
  let numerator = 0n
  const buckets: StorageUsageLine[] = []
  for (const [bucket, line] of [...perBucket].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    byteMs += line.byteMs
    numerator += line.numerator
    buckets.push({ bucket, byteMs: line.byteMs, cost: line.numerator / STORAGE_DENOMINATOR })
  }
  return { byteMs, cost: numerator / STORAGE_DENOMINATOR, buckets }
}

/** Bytes sent and units charged by the final holds of `customerId` placed within `range`, by lane. */
export async function egressUsage (db: Kysely<Database>, customerId: string, range: UsageRange): Promise<EgressUsage> {
  const zero = (): EgressUsageLine => ({ bytes: 0n, responses: 0, cost: 0n })
  const lanes = Object.fromEntries(LANES.map(lane => [lane, zero()])) as Record<Lane, EgressUsageLine>
  const total = zero()
  let after: { created: number | bigint, id: string } | undefined
  for (;;) {
    const cursor = after
    const rows = await db.selectFrom('ledger_holds')
      .select(['id', 'lane', 'bytes', 'used', 'responses', 'created_ms'])
      .where('customer_id', '=', customerId)
      // egress only: withdrawals are holds too
      .where('revenue_account', '=', LedgerAccounts.revenue.egress)
      .where('created_ms', '>=', range.from)
      .where('created_ms', '<', range.to)
      .where('status', 'in', ['settled', 'voided'])
      .$if(range.bucket !== undefined, qb => qb.where('bucket', '=', range.bucket as string))
      .$if(cursor !== undefined, qb => qb.where(eb => eb.or([
        eb('created_ms', '>', cursor?.created as number),
        eb.and([eb('created_ms', '=', cursor?.created as number), eb('id', '>', cursor?.id as string)])
      ])))
      .orderBy('created_ms').orderBy('id')
      .limit(USAGE_PAGE_ROWS)
      .execute()
    for (const row of rows) {
      const bytes = BigInt(row.bytes)
      const cost = BigInt(row.used)
      const lines = [total]
      // holds are placed with their lane; one without (none today) still counts in the total
      if (row.lane !== null && (LANES as readonly string[]).includes(row.lane)) lines.push(lanes[row.lane as Lane])
      for (const line of lines) {
        line.bytes += bytes
        line.responses += Number(row.responses)
        line.cost += cost
      }
    }
    const last = rows[rows.length - 1]
    if (rows.length < USAGE_PAGE_ROWS || last === undefined) break
    after = { created: last.created_ms, id: last.id }
  }
  return { ...total, lanes }
}
