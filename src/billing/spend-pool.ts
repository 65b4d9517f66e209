/**
 * Pooled holds for small responses.
 *
 * A hold per response costs two ledger transactions (place, settle), about 0.8 ms of database
 * work on SQLite, which would more than double the cost of serving a 4 KiB object. Small
 * responses (at most {@link POOL_RESPONSE_MAX_BYTES}) therefore draw on a lease: one ordinary
 * hold, placed in the database with the same non-negative check as any hold, sized for about
 * {@link LEASE_RESPONSES} responses like the one that asked for it (never more than the balance).
 * Each response reserves its full cost from the lease in memory before its first byte, and adds
 * the cost of the bytes it actually sent when it ends. A lease is retired after
 * {@link LEASE_MS} (or when it cannot cover the next response) and settled, once the responses
 * on it have ended, to the sum of their costs; the rest goes back to the available balance.
 *
 * What this keeps: the payer can never spend more than the ledger let it hold (a lease is a
 * hold), so concurrent requests and several processes cannot overdraw an account; each response
 * pays the cost of its own bytes, rounded up as a per-response hold would be; the settlement is
 * an ordinary idempotent ledger transaction whose cause counts the responses it covers.
 *
 * What it trades: a process killed while a lease is open loses the costs recorded on that lease
 * since it was placed (at most {@link LEASE_MS} of small responses, each at most one checkpoint
 * of bytes: the same bound a large response's checkpoints give); the restart settles the lease
 * at its last checkpoint (zero) and releases it. Funds in a lease are held for up to
 * {@link LEASE_MS}, so another process may see them as held briefly.
 */
import { AtlasError } from '../core/errors.ts'
import { formatBtt } from './amount.ts'
import { LedgerAccounts } from './ledger.ts'
import type { Cause, Hold, Ledger } from './ledger.ts'

/** Responses up to this size draw on a lease instead of a hold of their own */
export const POOL_RESPONSE_MAX_BYTES = 1024 * 1024

/** A lease is sized for this many responses like the one that opened it */
export const LEASE_RESPONSES = 64

/** A lease takes new responses for this long, then is settled once its responses end */
export const LEASE_MS = 250

export interface PoolKey {
  payer: string
  lane: string
  bucket?: string
}

interface Lease {
  holdId: string
  amount: bigint
  /** Costs reserved by responses in flight */
  reserved: bigint
  /** Costs of responses that ended */
  used: bigint
  bytes: number
  responses: number
  retired: boolean
  settled: boolean
}

export interface PoolLogger {
  error(obj: object, msg?: string): void
}

/** One response's claim on a lease: end it exactly once with the cost of what it sent. */
export interface PoolClaim {
  end(cost: bigint, bytes: number): void
}

export class SpendPool {
  readonly #ledger: Ledger
  readonly #owner: string
  readonly #log: PoolLogger
  /** The open lease of each payer, lane and bucket (usage is reported per bucket and lane) */
  readonly #open = new Map<string, Lease>()
  /** Refills in flight, one per payer and lane */
  readonly #refilling = new Map<string, Promise<Lease>>()
  /** Settlements in flight */
  readonly #settling = new Set<Promise<void>>()
  readonly #leases = new Set<Lease>()
  #sequence = 0

  constructor (ledger: Ledger, owner: string, log: PoolLogger) {
    this.#ledger = ledger
    this.#owner = owner
    this.#log = log
  }

  /**
   * Reserve `cost` for one response on the payer's lease, placing a new lease when the open one
   * cannot cover it.
   *
   * @throws AtlasError `InsufficientFunds` when the account cannot cover even this response
   */
  async claim (key: PoolKey, cost: bigint, cause: Cause): Promise<PoolClaim> {
    const name = `${key.payer}\u0000${key.lane}\u0000${key.bucket ?? ''}`
    for (;;) {
      const lease = this.#open.get(name)
      if (lease !== undefined && !lease.retired && lease.amount - lease.reserved - lease.used >= cost) {
        lease.reserved += cost
        let ended = false
        return {
          end: (spent: bigint, bytes: number) => {
            if (ended) return
            ended = true
            lease.reserved -= cost
            lease.used += spent < cost ? spent : cost
            lease.bytes += bytes
            lease.responses++
            if (lease.retired && lease.reserved === 0n) this.#settle(lease)
          }
        }
      }
      if (lease !== undefined && !lease.retired) this.#retire(name, lease)
      let refill = this.#refilling.get(name)
      if (refill === undefined) {
        refill = this.#place(name, key, cost, cause).finally(() => { this.#refilling.delete(name) })
        this.#refilling.set(name, refill)
      }
      await refill
    }
  }

  /** Retire every lease and wait until those without responses in flight are settled. */
  async close (): Promise<void> {
    for (const [name, lease] of this.#open) this.#retire(name, lease)
    await Promise.allSettled([...this.#refilling.values()])
    for (const lease of this.#leases) if (!lease.settled && lease.reserved === 0n) this.#settle(lease)
    await Promise.allSettled([...this.#settling])
  }

  async #place (name: string, key: PoolKey, cost: bigint, cause: Cause): Promise<Lease> {
    const available = await this.#ledger.balance(LedgerAccounts.available(key.payer))
    const wanted = cost * BigInt(LEASE_RESPONSES)
    const amount = wanted < available ? wanted : available
    if (amount < cost) {
      throw new AtlasError('InsufficientFunds', `Account ${key.payer} has ${formatBtt(available)} BTT available; this response costs ${formatBtt(cost)} BTT`, {
        details: { balance: available.toString(), required: cost.toString() }
      })
    }
    // every attempt has its own key: a retry is another hold, not a replay
    const place = async (held: bigint): Promise<Hold> => await this.#ledger.placeHold({
      idempotencyKey: `lease:${this.#owner}:${Date.now().toString(36)}:${++this.#sequence}`,
      customerId: key.payer,
      amount: held,
      revenueAccount: LedgerAccounts.revenue.egress,
      owner: this.#owner,
      cause: { ...cause, reason: 'egress lease for small responses' },
      lane: key.lane,
      ...(key.bucket === undefined ? {} : { bucket: key.bucket })
    })
    let hold: Hold
    try {
      hold = await place(amount)
    } catch (err) {
      // the balance moved since it was read (another process spent it): lease one response's worth
      if (!(err instanceof AtlasError) || err.code !== 'InsufficientFunds' || amount === cost) throw err
      hold = await place(cost)
    }
    const lease: Lease = { holdId: hold.id, amount: hold.amount, reserved: 0n, used: 0n, bytes: 0, responses: 0, retired: false, settled: false }
    this.#leases.add(lease)
    this.#open.set(name, lease)
    setTimeout(() => { this.#retire(name, lease) }, LEASE_MS).unref()
    return lease
  }

  #retire (name: string, lease: Lease): void {
    if (lease.retired) return
    lease.retired = true
    if (this.#open.get(name) === lease) this.#open.delete(name)
    if (lease.reserved === 0n) this.#settle(lease)
  }

  #settle (lease: Lease): void {
    if (lease.settled) return
    lease.settled = true
    this.#leases.delete(lease)
    const work = this.#ledger.settleHold(lease.holdId, lease.used, lease.bytes, lease.responses)
      .then(() => {}, (err: unknown) => {
        // the lease stays pending and is settled at its checkpoint at the next start
        this.#log.error({ err, hold: lease.holdId, used: lease.used.toString() }, 'billing: could not settle an egress lease')
      })
      .finally(() => { this.#settling.delete(work) })
    this.#settling.add(work)
  }
}
