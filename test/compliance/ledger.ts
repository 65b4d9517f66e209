/**
 * The Ledger compliance suite: what every ledger implementation (each metadata dialect) must
 * show, including property tests of its invariants (fast-check) and concurrent spending.
 */
import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { AtlasError } from '../../src/core/errors.ts'
import { LedgerAccounts } from '../../src/billing/ledger.ts'
import type { Ledger, TransactionInput } from '../../src/billing/ledger.ts'

export interface LedgerFixture {
  ledger: Ledger
  /** A second ledger over the same database (another process), where the dialect allows one */
  second?: Ledger
  /** Create a customer account (the ledger refuses unknown customers) */
  createCustomer: (id: string) => Promise<void>
  teardown: () => Promise<void>
}

export interface LedgerTestOptions {
  setup: () => Promise<LedgerFixture>
}

const { available } = LedgerAccounts
const ADMIN = LedgerAccounts.funding.admin
const EGRESS = LedgerAccounts.revenue.egress

let keys = 0
const key = (label = 'k'): string => `${label}-${process.pid}-${++keys}-${Math.random().toString(36).slice(2)}`

function credit (customer: string, amount: bigint, idempotencyKey = key('credit')): TransactionInput {
  return { idempotencyKey, kind: 'admin-credit', cause: { reason: 'test' }, postings: [{ account: ADMIN, amount: -amount }, { account: available(customer), amount }] }
}

async function code (promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
    return undefined
  } catch (err) {
    if (err instanceof AtlasError) return err.code
    throw err
  }
}

export function ledgerTests (name: string, options: LedgerTestOptions): void {
  describe(`${name} ledger compliance`, () => {
    let fx: LedgerFixture
    let ledger: Ledger
    let customer: string

    beforeEach(async () => {
      fx = await options.setup()
      ledger = fx.ledger
      customer = `cust-${++keys}`
      await fx.createCustomer(customer)
    })

    afterEach(async () => {
      await fx.teardown()
    })

    describe('postings', () => {
      it('credits a customer and keeps every transaction balanced', async () => {
        const tx = await ledger.post(credit(customer, 12_500_000_000_000_000_000n))
        expect(tx.postings.reduce((sum, p) => sum + p.amount, 0n)).toBe(0n)
        expect(await ledger.customerBalances(customer)).toMatchObject({ available: 12_500_000_000_000_000_000n, held: 0n })
        expect(await ledger.balance(ADMIN)).toBe(-12_500_000_000_000_000_000n)
        expect(await ledger.trialBalance()).toBe(0n)
        expect((await ledger.transaction(tx.id))?.postings).toEqual(tx.postings)
      })

      it('holds amounts far beyond 64 bits exactly', async () => {
        const huge = 10n ** 40n + 7n
        await ledger.post(credit(customer, huge))
        await ledger.post(credit(customer, 1n))
        expect((await ledger.customerBalances(customer)).available).toBe(huge + 1n)
      })

      it('refuses unbalanced, zero-amount and one-sided transactions, changing nothing', async () => {
        await ledger.post(credit(customer, 100n))
        const bad: TransactionInput[] = [
          { idempotencyKey: key(), kind: 'admin-credit', cause: {}, postings: [{ account: ADMIN, amount: -5n }, { account: available(customer), amount: 6n }] },
          { idempotencyKey: key(), kind: 'admin-credit', cause: {}, postings: [{ account: ADMIN, amount: 0n }, { account: available(customer), amount: 0n }] },
          { idempotencyKey: key(), kind: 'admin-credit', cause: {}, postings: [{ account: available(customer), amount: 5n }] },
          { idempotencyKey: key(), kind: 'admin-credit', cause: {}, postings: [{ account: 'nonsense', amount: -5n }, { account: available(customer), amount: 5n }] }
        ]
        for (const input of bad) await expect(ledger.post(input)).rejects.toThrow()
        expect(await ledger.customerBalances(customer)).toMatchObject({ available: 100n, held: 0n })
        expect(await ledger.trialBalance()).toBe(0n)
      })

      it('refuses a credit to an unknown customer', async () => {
        expect(await code(ledger.post(credit('no-such-customer', 5n)))).toBe('NoSuchAccount')
        expect(await ledger.trialBalance()).toBe(0n)
      })

      it('never lets a customer balance go below zero', async () => {
        await ledger.post(credit(customer, 100n))
        const spend: TransactionInput = { idempotencyKey: key(), kind: 'request', cause: { requestId: 'r1' }, postings: [{ account: available(customer), amount: -101n }, { account: LedgerAccounts.revenue.requests, amount: 101n }] }
        const error = await ledger.post(spend).catch((err: unknown) => err)
        expect(error).toBeInstanceOf(AtlasError)
        expect((error as AtlasError).code).toBe('InsufficientFunds')
        expect((error as AtlasError).details).toEqual({ balance: '100', required: '101' })
        expect((await ledger.customerBalances(customer)).available).toBe(100n)
      })

      it('posts a replayed idempotency key once, and refuses the key with other inputs', async () => {
        const input = credit(customer, 40n, key('same'))
        const first = await ledger.post(input)
        const again = await ledger.post(input)
        expect(again.id).toBe(first.id)
        expect((await ledger.customerBalances(customer)).available).toBe(40n)
        expect(await code(ledger.post({ ...input, postings: [{ account: ADMIN, amount: -41n }, { account: available(customer), amount: 41n }] }))).toBe('IdempotencyConflict')
        expect(await code(ledger.post({ ...input, cause: { reason: 'another' } }))).toBe('IdempotencyConflict')
        expect((await ledger.customerBalances(customer)).available).toBe(40n)
      })

      it('posts the same key from concurrent callers exactly once', async () => {
        const input = credit(customer, 7n, key('race'))
        const results = await Promise.all(Array.from({ length: 10 }, async () => await ledger.post(input)))
        expect(new Set(results.map(r => r.id)).size).toBe(1)
        expect((await ledger.customerBalances(customer)).available).toBe(7n)
      })

      it('corrects with a reversing transaction, once', async () => {
        const tx = await ledger.post(credit(customer, 30n))
        const reversal = await ledger.reverse(tx.id, { idempotencyKey: key('rev'), reason: 'credited by mistake' })
        expect(reversal.reverses).toBe(tx.id)
        expect(reversal.postings.map(p => p.amount)).toEqual(tx.postings.map(p => -p.amount))
        expect((await ledger.customerBalances(customer)).available).toBe(0n)
        expect(await code(ledger.reverse(tx.id, { idempotencyKey: key('rev'), reason: 'again' }))).toBe('Conflict')
        // the original stays as it was: append-only
        expect((await ledger.transaction(tx.id))?.postings).toEqual(tx.postings)
        expect(await ledger.trialBalance()).toBe(0n)
      })

      it('refuses to reverse a credit that was spent', async () => {
        const tx = await ledger.post(credit(customer, 30n))
        await ledger.placeHold({ idempotencyKey: key(), customerId: customer, amount: 20n, revenueAccount: EGRESS, owner: 'p1', cause: {} })
        expect(await code(ledger.reverse(tx.id, { idempotencyKey: key(), reason: 'x' }))).toBe('InsufficientFunds')
      })

      it('pages through a customer\'s entries, newest first', async () => {
        const ids: string[] = []
        for (let i = 0; i < 5; i++) ids.push((await ledger.post(credit(customer, BigInt(i + 1)))).id)
        const first = await ledger.entries(customer, { limit: 2 })
        expect(first.entries.map(e => e.id)).toEqual([ids[4], ids[3]])
        const second = await ledger.entries(customer, { limit: 2, before: first.next })
        expect(second.entries.map(e => e.id)).toEqual([ids[2], ids[1]])
        const third = await ledger.entries(customer, { limit: 2, before: second.next })
        expect(third.entries.map(e => e.id)).toEqual([ids[0]])
        expect(third.next).toBeUndefined()
      })
    })

    describe('holds', () => {
      it('moves a hold to held, then settles what was used and releases the rest', async () => {
        await ledger.post(credit(customer, 1000n))
        const hold = await ledger.placeHold({ idempotencyKey: key(), customerId: customer, amount: 300n, revenueAccount: EGRESS, owner: 'p1', cause: { requestId: 'r' } })
        expect(hold.status).toBe('pending')
        expect(await ledger.customerBalances(customer)).toMatchObject({ available: 700n, held: 300n })
        const egressBefore = await ledger.balance(EGRESS)
        const settled = await ledger.settleHold(hold.id, 120n)
        expect(settled).toMatchObject({ status: 'settled', used: 120n })
        expect(await ledger.customerBalances(customer)).toMatchObject({ available: 880n, held: 0n })
        expect(await ledger.balance(EGRESS) - egressBefore).toBe(120n)
        // settling again changes nothing
        expect(await ledger.settleHold(hold.id, 300n)).toMatchObject({ status: 'settled', used: 120n })
        expect(await ledger.voidHold(hold.id)).toMatchObject({ status: 'settled' })
        expect(await ledger.customerBalances(customer)).toMatchObject({ available: 880n, held: 0n })
        expect(await ledger.trialBalance()).toBe(0n)
      })

      it('voids a hold in full and caps a settlement at the hold', async () => {
        await ledger.post(credit(customer, 100n))
        const a = await ledger.placeHold({ idempotencyKey: key(), customerId: customer, amount: 40n, revenueAccount: EGRESS, owner: 'p1', cause: {} })
        const b = await ledger.placeHold({ idempotencyKey: key(), customerId: customer, amount: 40n, revenueAccount: EGRESS, owner: 'p1', cause: {} })
        expect((await ledger.voidHold(a.id)).status).toBe('voided')
        expect((await ledger.settleHold(b.id, 1000n)).used).toBe(40n)
        expect(await ledger.customerBalances(customer)).toMatchObject({ available: 60n, held: 0n })
      })

      it('refuses a hold beyond the available balance', async () => {
        await ledger.post(credit(customer, 50n))
        const error = await ledger.placeHold({ idempotencyKey: key(), customerId: customer, amount: 51n, revenueAccount: EGRESS, owner: 'p1', cause: {} }).catch((err: unknown) => err)
        expect((error as AtlasError).code).toBe('InsufficientFunds')
        expect((error as AtlasError).details).toEqual({ balance: '50', required: '51' })
        expect(await ledger.customerBalances(customer)).toMatchObject({ available: 50n, held: 0n })
        expect(await code(ledger.placeHold({ idempotencyKey: key(), customerId: customer, amount: 0n, revenueAccount: EGRESS, owner: 'p1', cause: {} }))).toBe('InvalidAmount')
      })

      it('returns the same hold for a replayed key', async () => {
        await ledger.post(credit(customer, 50n))
        const input = { idempotencyKey: key(), customerId: customer, amount: 10n, revenueAccount: EGRESS, owner: 'p1', cause: {} }
        const first = await ledger.placeHold(input)
        expect((await ledger.placeHold(input)).id).toBe(first.id)
        expect((await ledger.customerBalances(customer)).held).toBe(10n)
        expect(await code(ledger.placeHold({ ...input, amount: 11n }))).toBe('IdempotencyConflict')
      })

      it('records checkpoints that only grow, lists pending holds by owner, and settles them at the checkpoint', async () => {
        await ledger.post(credit(customer, 100n))
        const hold = await ledger.placeHold({ idempotencyKey: key(), customerId: customer, amount: 60n, revenueAccount: EGRESS, owner: 'proc-a', cause: {} })
        await ledger.placeHold({ idempotencyKey: key(), customerId: customer, amount: 5n, revenueAccount: EGRESS, owner: 'proc-b', cause: {} })
        await ledger.checkpointHold(hold.id, 20n)
        await ledger.checkpointHold(hold.id, 10n)
        await ledger.checkpointHold(hold.id, 999n)
        const pending = await ledger.pendingHolds('proc-a')
        expect(pending.map(h => [h.id, h.used])).toEqual([[hold.id, 60n]])
        await ledger.settleHold(hold.id, (pending[0] as { used: bigint }).used)
        expect(await ledger.pendingHolds('proc-a')).toEqual([])
        expect(await ledger.customerBalances(customer)).toMatchObject({ available: 35n, held: 5n })
      })

      it('lets exactly as many concurrent holds through as the balance covers', async () => {
        await ledger.post(credit(customer, 20n * 7n))
        const ledgers = [ledger, fx.second ?? ledger]
        const results = await Promise.allSettled(Array.from({ length: 50 }, async (_, i) =>
          await (ledgers[i % 2] as Ledger).placeHold({ idempotencyKey: key(), customerId: customer, amount: 7n, revenueAccount: EGRESS, owner: 'p', cause: {} })))
        const placed = results.filter(r => r.status === 'fulfilled').length
        expect(placed).toBe(20)
        for (const r of results) {
          if (r.status === 'rejected') expect((r.reason as AtlasError).code).toBe('InsufficientFunds')
        }
        expect(await ledger.customerBalances(customer)).toMatchObject({ available: 0n, held: 140n })
        expect(await ledger.trialBalance()).toBe(0n)
      }, 60_000)
    })

    describe('invariants (property tests)', () => {
      type Op =
        | { op: 'credit', amount: bigint }
        | { op: 'spend', amount: bigint }
        | { op: 'hold', amount: bigint }
        | { op: 'settle', which: number, used: bigint }
        | { op: 'void', which: number }
        | { op: 'replay', which: number }
      const amount = fc.bigInt({ min: 1n, max: 10n ** 21n })
      const opArb: fc.Arbitrary<Op> = fc.oneof(
        fc.record({ op: fc.constant('credit' as const), amount }),
        fc.record({ op: fc.constant('spend' as const), amount }),
        fc.record({ op: fc.constant('hold' as const), amount }),
        fc.record({ op: fc.constant('settle' as const), which: fc.nat(20), used: fc.bigInt({ min: 0n, max: 10n ** 21n }) }),
        fc.record({ op: fc.constant('void' as const), which: fc.nat(20) }),
        fc.record({ op: fc.constant('replay' as const), which: fc.nat(20) })
      )

      it('keeps balances equal to a model, never negative, and every transaction summing to zero', async () => {
        await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
          const c = `prop-${++keys}`
          await fx.createCustomer(c)
          let avail = 0n
          let hold = 0n
          const holds: Array<{ id: string, amount: bigint, open: boolean }> = []
          const posted: TransactionInput[] = []
          for (const step of ops) {
            switch (step.op) {
              case 'credit': {
                const input = credit(c, step.amount)
                posted.push(input)
                await ledger.post(input)
                avail += step.amount
                break
              }
              case 'spend': {
                const input: TransactionInput = { idempotencyKey: key(), kind: 'request', cause: {}, postings: [{ account: available(c), amount: -step.amount }, { account: LedgerAccounts.revenue.requests, amount: step.amount }] }
                const outcome = await code(ledger.post(input))
                if (step.amount <= avail) {
                  expect(outcome).toBeUndefined()
                  avail -= step.amount
                  posted.push(input)
                } else {
                  expect(outcome).toBe('InsufficientFunds')
                }
                break
              }
              case 'hold': {
                try {
                  const h = await ledger.placeHold({ idempotencyKey: key(), customerId: c, amount: step.amount, revenueAccount: EGRESS, owner: 'prop', cause: {} })
                  expect(step.amount <= avail).toBe(true)
                  avail -= step.amount
                  hold += step.amount
                  holds.push({ id: h.id, amount: step.amount, open: true })
                } catch (err) {
                  expect((err as AtlasError).code).toBe('InsufficientFunds')
                  expect(step.amount > avail).toBe(true)
                }
                break
              }
              case 'settle':
              case 'void': {
                const h = holds[step.which % Math.max(holds.length, 1)]
                if (h === undefined) break
                const used = step.op === 'settle' ? step.used : 0n
                if (step.op === 'settle') await ledger.settleHold(h.id, used)
                else await ledger.voidHold(h.id)
                if (h.open) {
                  const charged = used > h.amount ? h.amount : used
                  hold -= h.amount
                  avail += h.amount - charged
                  h.open = false
                }
                break
              }
              case 'replay': {
                const input = posted[step.which % Math.max(posted.length, 1)]
                if (input !== undefined) await ledger.post(input)
                break
              }
            }
            const balances = await ledger.customerBalances(c)
            expect(balances).toMatchObject({ available: avail, held: hold })
            expect(balances.available >= 0n && balances.held >= 0n).toBe(true)
          }
          expect(await ledger.trialBalance()).toBe(0n)
          const page = await ledger.entries(c, { limit: 1000 })
          for (const entry of page.entries) expect(entry.postings.reduce((s, p) => s + p.amount, 0n)).toBe(0n)
        }), { numRuns: 25 })
      }, 120_000)
    })
  })
}
