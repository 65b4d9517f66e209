/**
 * Storage metering over a simulated month (issue #5, "Done means"): objects are stored through
 * the gateway (their storage intervals start at real time), and the meter runs on an injected
 * clock. Every hourly period is charged exactly once, across a crash in the middle of the job and
 * with two meters running at once, and the month costs size x time x price to the unit. Then an
 * account that runs dry: grace, refusals, top-up, suspension and the release of its content.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Billing, type BillingInit } from '../../src/billing/billing.ts'
import { KyselyLedger } from '../../src/billing/kysely-ledger.ts'
import { LedgerAccounts, type Ledger, type TransactionInput } from '../../src/billing/ledger.ts'
import { STORAGE_DENOMINATOR } from '../../src/billing/pricing.ts'
import type { BackendName } from '../../src/backends/backend.ts'
import { UNITS_PER_BTT } from '../../src/billing/amount.ts'
import { createMetadataStore, KyselyMetadataStore, loadOrCreateSecretKey } from '../../src/metadata/index.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { quietLogger } from '../fixtures/ledger.ts'
import { s3Client, signedFetch } from '../fixtures/s3.ts'

const HOUR_MS = 3600_000
const DAY_MS = 24 * HOUR_MS
const GRACE_DAYS = 14


/**
 * An Atlas with billing on. Its own storage meter runs on the real clock with a period of ten
 * years, so that it never charges a period during the test: the meters under test are Billing
 * instances on an injected clock, with hourly periods.
 */
async function startBilledAtlas (): Promise<TestAtlas> {
  return await startTestAtlas({ config: { billing: { enabled: true, periodSeconds: 10 * 365 * 86_400, graceDays: GRACE_DAYS } } })
}

/** A Billing over the Atlas's database (or another connection to it), on the clock `now`. */
function meter (t: TestAtlas, now: () => number, options: { db?: KyselyMetadataStore, ledger?: Ledger } = {}): Billing {
  const store = options.db ?? t.atlas.metadata as KyselyMetadataStore
  const init: BillingInit = {
    ledger: options.ledger ?? new KyselyLedger({ db: store.db, dialect: store.dialect }),
    db: store.db,
    config: { ...t.atlas.config.billing, periodSeconds: HOUR_MS / 1000 },
    owner: 'storage-meter',
    logger: quietLogger,
    releaseContents: async (ids) => await t.atlas.objects.releaseContents(ids),
    now
  }
  return new Billing(init)
}

function serverBilling (t: TestAtlas): Billing {
  if (t.atlas.billing === undefined) throw new Error('billing is off')
  return t.atlas.billing
}

function db (t: TestAtlas): KyselyMetadataStore['db'] {
  return (t.atlas.metadata as KyselyMetadataStore).db
}

describe('billing: storage accrual over a simulated month', () => {
  it('charges size x time x price to the unit, each hourly period once, across a crash and two meters at once', async () => {
    const t = await startBilledAtlas()
    let second: KyselyMetadataStore | undefined
    try {
      const billing = serverBilling(t)
      const credit = 1_000_000n * UNITS_PER_BTT
      await billing.credit(t.account.id, credit, 'a month of storage')
      const mk = async (name: string, backends: BackendName[]): Promise<void> => {
        const res = await t.api(`/v1/buckets/${name}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ backends }) })
        expect(res.status).toBe(201)
      }
      await mk('only-ipfs', ['ipfs'])
      await mk('both-backends', ['ipfs', 'bittorrent'])
      const put = async (bucket: string, key: string, size: number): Promise<void> => {
        expect((await t.api(`/v1/buckets/${bucket}/objects/${key}`, { method: 'PUT', body: randomBytes(size) })).status).toBe(200)
      }
      await put('only-ipfs', 'a.bin', 1024 * 1024 + 7)
      await put('both-backends', 'b.bin', 300_001)
      await put('both-backends', 'replaced.bin', 4096)
      // replaced: the first version stops accruing when the second is stored
      await put('both-backends', 'replaced.bin', 70_000)
      await put('both-backends', 'deleted.bin', 500_000)
      await new Promise((resolve) => setTimeout(resolve, 200))
      const beforeDelete = Date.now()
      expect((await t.api('/v1/buckets/both-backends/objects/deleted.bin', { method: 'DELETE' })).status).toBe(204)
      const afterDelete = Date.now()

      const intervals = await db(t).selectFrom('storage_intervals').selectAll().where('customer_id', '=', t.account.id).execute()
      expect(intervals).toHaveLength(5)
      const deleted = intervals.find((i) => i.key === 'deleted.bin')
      expect(deleted?.ended_ms).not.toBeNull()
      expect(Number(deleted?.ended_ms)).toBeGreaterThanOrEqual(beforeDelete)
      expect(Number(deleted?.ended_ms)).toBeLessThanOrEqual(afterDelete)
      expect(intervals.filter((i) => i.key === 'replaced.bin' && i.ended_ms !== null)).toHaveLength(1)

      const start = Date.now()
      const firstPeriod = Math.floor(Math.min(...intervals.map((i) => Number(i.started_ms))) / HOUR_MS) * HOUR_MS

      // days 0-10, then a meter that dies right after posting a charge and before recording
      // its period (the window a crash can hit), then two meters at once up to day 30
      expect(await meter(t, () => start + 10 * DAY_MS).meterStorage()).toBeGreaterThan(200)
      const real = new KyselyLedger({ db: db(t), dialect: 'sqlite' })
      let posts = 0
      const crashing = new Proxy(real, {
        get (target, prop) {
          if (prop === 'post') {
            return async (input: TransactionInput) => {
              const posted = await target.post(input)
              if (input.kind === 'storage' && ++posts === 50) throw new Error('simulated crash after a storage charge was posted')
              return posted
            }
          }
          const value = Reflect.get(target, prop, target) as unknown
          return typeof value === 'function' ? value.bind(target) : value
        }
      })
      await expect(meter(t, () => start + 20 * DAY_MS, { ledger: crashing }).meterStorage()).rejects.toThrow(/simulated crash/)
      const charges = async (): Promise<number> => (await db(t).selectFrom('ledger_transactions').select('id').where('kind', '=', 'storage').execute()).length
      const rows = async (): Promise<number> => (await db(t).selectFrom('storage_periods').select('period_start_ms').where('customer_id', '=', t.account.id).execute()).length
      // the crash left a posted charge without its period row
      expect(await charges()).toBe(await rows() + 1)

      // the second meter is another connection to the database, as another process would be
      second = await createMetadataStore({ dataDir: t.dataDir, secretKey: await loadOrCreateSecretKey(t.dataDir) }) as KyselyMetadataStore
      const end = start + 30 * DAY_MS
      const [x, y] = await Promise.all([meter(t, () => end).meterStorage(), meter(t, () => end, { db: second }).meterStorage()])
      expect(x + y).toBeGreaterThan(0)
      expect(await meter(t, () => end).meterStorage()).toBe(0)

      // every hour from the first object's to the last that ended by day 30, once
      const lastEnd = Math.floor(end / HOUR_MS) * HOUR_MS
      const hours = (lastEnd - firstPeriod) / HOUR_MS
      expect(hours).toBeGreaterThanOrEqual(30 * 24)
      const periods = await db(t).selectFrom('storage_periods').selectAll().where('customer_id', '=', t.account.id).orderBy('period_start_ms').execute()
      expect(periods).toHaveLength(hours)
      periods.forEach((p, i) => {
        expect(Number(p.period_start_ms)).toBe(firstPeriod + i * HOUR_MS)
        expect(Number(p.period_end_ms)).toBe(firstPeriod + (i + 1) * HOUR_MS)
      })
      const transactions = await db(t).selectFrom('ledger_transactions').select(['id', 'cause']).where('kind', '=', 'storage').execute()
      const perPeriod = new Map<string, number>()
      for (const tx of transactions) {
        const period = (JSON.parse(tx.cause) as { period?: string }).period ?? ''
        perPeriod.set(period, (perPeriod.get(period) ?? 0) + 1)
      }
      expect(Math.max(...perPeriod.values())).toBe(1)
      expect(transactions).toHaveLength(periods.filter((p) => BigInt(p.amount) > 0n).length)

      // size x time x price, summed exactly and rounded down once
      let numerator = 0n
      const pricing = billing.pricing
      for (const i of intervals) {
        const to = Math.min(i.ended_ms === null ? lastEnd : Number(i.ended_ms), lastEnd)
        numerator += BigInt(i.size) * BigInt(to - Number(i.started_ms)) * pricing.storageRate(JSON.parse(i.backends) as BackendName[])
      }
      const expected = numerator / STORAGE_DENOMINATOR
      expect(expected).toBeGreaterThan(0n)
      let posted = 0n
      for (const p of periods) posted += BigInt(p.amount)
      expect(posted).toBe(expected)
      expect(await billing.ledger.balance(LedgerAccounts.revenue.storage)).toBe(expected)
      const balances = await billing.ledger.customerBalances(t.account.id)
      expect(balances.available).toBe(credit - expected)
      expect(balances.receivable).toBe(0n)
      expect(await billing.ledger.trialBalance()).toBe(0n)
      expect((await billing.status(t.account.id)).status).toBe('active')
    } finally {
      await second?.close()
      await t.stop()
    }
  })
})

describe('billing: an account that runs out of funds', () => {
  it('goes through grace, refusals, top-up and suspension, and its content is released while its metadata stays', async () => {
    const t = await startBilledAtlas()
    try {
      const billing = serverBilling(t)
      const size = 2 * 1024 * 1024
      const body = randomBytes(size)
      expect((await t.api('/v1/buckets/dry', { method: 'PUT' })).status).toBe(201)
      // exactly the upload's storage runway: the upload is admitted, a second one is not
      const runway = billing.pricing.storageCost(BigInt(size), ['ipfs'], t.atlas.config.billing.uploadRunwayDays)
      await billing.credit(t.account.id, runway, 'the runway of one object')
      expect((await t.api('/v1/buckets/dry/objects/kept.bin', { method: 'PUT', body })).status).toBe(200)
      const refusedUpload = await t.api('/v1/buckets/dry/objects/second.bin', { method: 'PUT', body: randomBytes(1000) })
      expect(refusedUpload.status).toBe(402)
      expect(await refusedUpload.json()).toMatchObject({ type: 'https://atlas.dev/problems/insufficient-funds', required: expect.any(String), balance: runway.toString() })

      // ten days later the runway is spent: what is not paid is owed, and the account is in grace
      const start = Date.now()
      let now = start + 10 * DAY_MS
      const clock = (): number => now
      // status changes from here on happen on the simulated clock, credits included (the status
      // history is ordered by time)
      const clocked = meter(t, clock)
      await meter(t, clock).meterStorage()
      let balances = await billing.ledger.customerBalances(t.account.id)
      expect(balances.available).toBe(0n)
      expect(balances.receivable).toBeLessThan(0n)
      let status = await billing.status(t.account.id)
      expect(status.status).toBe('grace')
      expect(status.history.map((e) => e.status)).toEqual(['grace'])
      expect(status.history[0]?.reason).toMatch(/could not be paid/)
      expect(status.graceEndsAt?.getTime()).toBe(now + GRACE_DAYS * DAY_MS)

      // uploads and downloads are refused, saying why
      const s3 = s3Client(t)
      try {
        const get = await eventually(async () => await t.api('/v1/buckets/dry/objects/kept.bin'), 402, 'AccountSuspended')
        expect(JSON.parse(get.body.toString())).toMatchObject({ type: 'https://atlas.dev/problems/account-suspended', code: 'AccountSuspended', status: 402, accountStatus: 'grace', owed: (-balances.receivable).toString(), available: '0' })
        const put = await t.api('/v1/buckets/dry/objects/new.bin', { method: 'PUT', body: randomBytes(10) })
        expect(put.status).toBe(402)
        expect((await put.json() as { code: string }).code).toBe('AccountSuspended')
        for (const method of ['GET', 'PUT'] as const) {
          const res = await signedFetch(t, { method, path: `/dry/${method === 'GET' ? 'kept.bin' : 'new.bin'}`, ...(method === 'PUT' ? { body: 'x' } : {}) })
          expect(res.status, method).toBe(403)
          const text = await res.text()
          expect(text).toContain('<Code>AccountProblem</Code>')
          expect(text).toMatch(/ran out of funds/)
        }
      } finally {
        s3.destroy()
      }

      // a credit of exactly what is owed pays it and makes the account active again
      const owed = -balances.receivable
      await clocked.credit(t.account.id, owed, 'paying what is owed')
      balances = await billing.ledger.customerBalances(t.account.id)
      expect(balances).toEqual({ available: 0n, held: 0n, receivable: 0n })
      expect((await billing.status(t.account.id)).status).toBe('active')
      // and one download's worth more serves a download
      await clocked.credit(t.account.id, billing.pricing.egressCost(BigInt(size), 'fast'), 'one download')
      const served = await eventually(async () => await t.api('/v1/buckets/dry/objects/kept.bin'), 200)
      expect(served.body.equals(body)).toBe(true)
      await waitFor(async () => (await billing.ledger.customerBalances(t.account.id)).held === 0n)
      expect((await billing.ledger.customerBalances(t.account.id)).available).toBe(0n)

      // dry again an hour later: a new grace period
      now += 2 * HOUR_MS
      await meter(t, clock).meterStorage()
      status = await billing.status(t.account.id)
      expect(status.status).toBe('grace')
      const graceStarted = now
      // not suspended before the grace period ends
      now = graceStarted + GRACE_DAYS * DAY_MS - HOUR_MS
      await meter(t, clock).meterStorage()
      expect((await billing.status(t.account.id)).status).toBe('grace')
      const content = (await t.atlas.objects.getObject('dry', 'kept.bin')).content
      const address = content.locations.find((l) => l.backend === 'ipfs')?.address as string
      expect(await t.atlas.ipfs.has(address)).toBe(true)

      // after it: suspended, and the content no paying account references is released
      now = graceStarted + GRACE_DAYS * DAY_MS
      await meter(t, clock).meterStorage()
      status = await billing.status(t.account.id)
      expect(status.status).toBe('suspended')
      expect(status.history.map((e) => e.status)).toEqual(['grace', 'active', 'grace', 'suspended'])
      expect(await t.atlas.ipfs.has(address)).toBe(false)
      // released content accrues no storage any more: its storage ended at the suspension (the
      // hour up to it is charged at the next run), and nothing accrues after
      const suspendedAt = now
      const open = await db(t).selectFrom('storage_intervals').select(['ended_ms']).where('customer_id', '=', t.account.id).where('key', '=', 'kept.bin').execute()
      expect(open.map((i) => Number(i.ended_ms))).toEqual([suspendedAt])
      now += 10 * DAY_MS
      await meter(t, clock).meterStorage()
      const owedAtSuspension = (await billing.ledger.customerBalances(t.account.id)).receivable
      now += 10 * DAY_MS
      await meter(t, clock).meterStorage()
      expect((await billing.ledger.customerBalances(t.account.id)).receivable).toBe(owedAtSuspension)

      // the metadata stays for recovery
      const listed = await (await t.api('/v1/buckets/dry/objects')).json() as { objects: Array<{ key: string }> }
      expect(listed.objects.map((o) => o.key)).toEqual(['kept.bin'])
      expect(await t.atlas.metadata.getObject('dry', 'kept.bin')).not.toBeNull()

      // a top-up makes it active again; the released content cannot be served
      await clocked.credit(t.account.id, -owedAtSuspension + billing.pricing.egressCost(BigInt(size), 'fast'), 'back')
      status = await billing.status(t.account.id)
      expect(status.status).toBe('active')
      expect(status.history.map((e) => e.status)).toEqual(['grace', 'active', 'grace', 'suspended', 'active'])
      const paid = await billing.ledger.customerBalances(t.account.id)
      const gone = await eventually(async () => await t.api('/v1/buckets/dry/objects/kept.bin'), 503)
      expect((JSON.parse(gone.body.toString()) as { code: string }).code).toBe('ContentUnavailable')
      // and the failed download costs nothing: its hold is released in full
      await waitFor(async () => (await billing.ledger.customerBalances(t.account.id)).held === 0n)
      expect(await billing.ledger.customerBalances(t.account.id)).toEqual(paid)
      expect(await billing.ledger.trialBalance()).toBe(0n)
    } finally {
      await t.stop()
    }
  })
})

describe('billing: two credits at once to an account that owes', () => {
  it('pay the debt once and keep the rest available', async () => {
    const t = await startBilledAtlas()
    try {
      const billing = serverBilling(t)
      const size = 1_000_000
      expect((await t.api('/v1/buckets/owes', { method: 'PUT' })).status).toBe(201)
      await billing.credit(t.account.id, billing.pricing.storageCost(BigInt(size), ['ipfs'], t.atlas.config.billing.uploadRunwayDays), 'runway')
      expect((await t.api('/v1/buckets/owes/objects/a.bin', { method: 'PUT', body: randomBytes(size) })).status).toBe(200)
      const start = Date.now()
      const clocked = meter(t, () => start + 30 * DAY_MS)
      await clocked.meterStorage()
      const before = await billing.ledger.customerBalances(t.account.id)
      const owed = -before.receivable
      expect(owed).toBeGreaterThan(0n)
      expect(before.available).toBe(0n)
      expect((await clocked.status(t.account.id)).status).toBe('grace')

      // each credit alone would pay the whole debt; at once, only one of them may
      await Promise.all([clocked.credit(t.account.id, 2n * owed, 'one'), meter(t, () => start + 30 * DAY_MS).credit(t.account.id, 2n * owed, 'two')])
      expect(await billing.ledger.customerBalances(t.account.id)).toEqual({ available: 3n * owed, held: 0n, receivable: 0n })
      expect((await clocked.status(t.account.id)).status).toBe('active')
      expect(await billing.ledger.trialBalance()).toBe(0n)
    } finally {
      await t.stop()
    }
  })
})

describe('billing: a storage charge the balance moves under', () => {
  it('is split again on the new balance, not lost with the rest of the metering run', async () => {
    const t = await startBilledAtlas()
    try {
      const billing = serverBilling(t)
      const size = 1024 * 1024
      expect((await t.api('/v1/buckets/raced', { method: 'PUT' })).status).toBe(201)
      await billing.credit(t.account.id, billing.pricing.storageCost(BigInt(size), ['ipfs'], t.atlas.config.billing.uploadRunwayDays), 'runway')
      expect((await t.api('/v1/buckets/raced/objects/a.bin', { method: 'PUT', body: randomBytes(size) })).status).toBe(200)

      // a download's hold takes the whole balance right after the meter read it
      const real = new KyselyLedger({ db: db(t), dialect: 'sqlite' })
      let holdId: string | undefined
      const racing = new Proxy(real, {
        get (target, prop) {
          if (prop === 'customerBalances') {
            return async (customerId: string) => {
              const read = await target.customerBalances(customerId)
              if (holdId === undefined && read.available > 0n) {
                holdId = (await target.placeHold({ idempotencyKey: 'racing-download', customerId, amount: read.available, revenueAccount: LedgerAccounts.revenue.egress, owner: 'racing', cause: { requestId: 'racing' } })).id
              }
              return read
            }
          }
          const value = Reflect.get(target, prop, target) as unknown
          return typeof value === 'function' ? value.bind(target) : value
        }
      })
      const start = Date.now()
      expect(await meter(t, () => start + DAY_MS, { ledger: racing }).meterStorage()).toBeGreaterThanOrEqual(24)
      expect(holdId).toBeDefined()
      // the whole day is charged: what the balance could not pay (all of it, held) is owed
      let charged = 0n
      for (const p of await db(t).selectFrom('storage_periods').select('amount').where('customer_id', '=', t.account.id).execute()) charged += BigInt(p.amount)
      expect(charged).toBeGreaterThan(0n)
      expect(await billing.ledger.balance(LedgerAccounts.revenue.storage)).toBe(charged)
      const balances = await billing.ledger.customerBalances(t.account.id)
      expect(balances.receivable).toBe(-charged)
      expect(balances.available).toBe(0n)
      expect(await billing.ledger.trialBalance()).toBe(0n)
    } finally {
      await t.stop()
    }
  })
})

/**
 * The answer to `request` once it has `status` (and, for a problem, `code`). The gateway caches an
 * account's status briefly (billing.ts), and here the status changes through another Billing
 * instance (the one on the simulated clock), so the gateway may answer from its cache for a moment
 * before it sees the change. Each attempt is a real request; one that is refused costs nothing.
 */
async function eventually (request: () => Promise<Response>, status: number, code?: string): Promise<{ status: number, body: Buffer }> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const res = await request()
    const body = Buffer.from(await res.arrayBuffer())
    if (res.status === status && (code === undefined || (JSON.parse(body.toString()) as { code?: string }).code === code)) return { status: res.status, body }
    if (Date.now() > deadline) throw new Error(`expected ${status} ${code ?? ''}, still ${res.status}: ${body.toString().slice(0, 500)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function waitFor (check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!await check()) {
    if (Date.now() > deadline) throw new Error('condition not reached')
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
