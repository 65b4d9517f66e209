/**
 * The account-facing surface of billing: GET /v1/pricing, /v1/account, /v1/account/usage and
 * /v1/account/ledger against a real server with billing on.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAccount, issueAccessKey } from '../../src/accounts/credentials.ts'
import { UNITS_PER_BTT, parseBtt } from '../../src/billing/amount.ts'
import type { Billing } from '../../src/billing/billing.ts'
import { GiB, STORAGE_DENOMINATOR } from '../../src/billing/pricing.ts'
import { USAGE_PAGE_ROWS } from '../../src/billing/usage.ts'
import type { KyselyMetadataStore } from '../../src/metadata/kysely-store.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'

const DAY_MS = 86_400_000

interface Amount { units: string, btt: string }
interface EgressLine { bytes: string, responses: number, cost: Amount }
interface Usage {
  from: string
  to: string
  bucket?: string
  storage: { byteMs: string, byteHours: string, cost: Amount, buckets: Array<{ bucket: string, byteMs: string, byteHours: string, cost: Amount }> }
  egress: EgressLine & { lanes: Record<string, EgressLine> }
  total: Amount
}
interface Entry {
  id: string
  kind: string
  createdAt: string
  cause: Record<string, string>
  postings: Array<{ account: string, amount: Amount, balanceAfter?: Amount }>
}

async function problem (res: Response): Promise<Record<string, unknown>> {
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  return await res.json() as Record<string, unknown>
}

describe('billing: the account API', () => {
  let t: TestAtlas
  let billing: Billing
  let db: KyselyMetadataStore['db']

  beforeAll(async () => {
    t = await startTestAtlas({ config: { billing: { enabled: true } } })
    billing = t.atlas.billing as Billing
    db = (t.atlas.metadata as KyselyMetadataStore).db
  })
  afterAll(async () => { await t?.stop() })

  const json = async <T>(path: string, init?: RequestInit & { auth?: boolean | string }): Promise<T> => {
    const res = await t.api(path, init)
    expect(res.status, `${path}: ${res.status}`).toBe(200)
    return await res.json() as T
  }

  it('publishes the price list without credentials', async () => {
    const pricing = await json<Record<string, any>>('/v1/pricing', { auth: false })
    expect(pricing.enabled).toBe(true)
    expect(pricing.currency).toBe('BTT')
    expect(pricing.storagePerGiBMonth.ipfs).toEqual({ units: (5000n * UNITS_PER_BTT).toString(), btt: '5000' })
    expect(pricing.egressPerGiB.medium).toEqual({ units: (5000n * UNITS_PER_BTT).toString(), btt: '5000' })
    expect(pricing.lanes.slow.bytesPerSecond).toBe(1024 * 1024)
    expect(pricing.lanes.fast.bytesPerSecond).toBeNull()
  })

  it('shows a credit in the balance, the runway once something is stored, and the key\'s lane', async () => {
    const before = await json<Record<string, any>>('/v1/account')
    expect(before).toMatchObject({
      id: t.account.id,
      name: 'test',
      billing: 'enabled',
      status: 'active',
      statusHistory: [],
      balance: { available: { units: '0', btt: '0' }, held: { units: '0', btt: '0' }, owed: { units: '0', btt: '0' } },
      dailyStorageCost: { units: '0', btt: '0' },
      runwayDays: null,
      defaultLane: 'fast'
    })

    await billing.credit(t.account.id, parseBtt('1000.5'), 'test funds')
    const after = await json<Record<string, any>>('/v1/account')
    expect(after.balance.available).toEqual({ units: '1000500000000000000000', btt: '1000.5' })

    expect((await t.api('/v1/buckets/runway', { method: 'PUT' })).status).toBe(201)
    const size = 1024 * 1024
    expect((await t.api('/v1/buckets/runway/objects/one', { method: 'PUT', body: randomBytes(size) })).status).toBe(200)
    const stored = await json<Record<string, any>>('/v1/account')
    // 1 MiB on IPFS at 5000 BTT per GiB-month, for one day, rounded up to the unit
    const daily = (BigInt(size) * BigInt(DAY_MS) * 5000n * UNITS_PER_BTT + STORAGE_DENOMINATOR - 1n) / STORAGE_DENOMINATOR
    expect(stored.dailyStorageCost.units).toBe(daily.toString())
    expect(stored.runwayDays).toBe(Number(parseBtt('1000.5') * 100n / daily) / 100)

    const slowKey = await issueAccessKey(t.atlas.metadata, t.account.id, { defaultLane: 'slow' })
    expect((await json<Record<string, any>>('/v1/account', { auth: slowKey.token })).defaultLane).toBe('slow')
  })

  it('needs a token for the account routes', async () => {
    for (const path of ['/v1/account', '/v1/account/usage', '/v1/account/ledger']) {
      const res = await t.api(path, { auth: false })
      expect(res.status, path).toBe(401)
      expect((await problem(res)).code).toBe('Unauthorized')
    }
  })

  it('counts small responses served from one pooled lease one by one in the usage', async () => {
    await billing.credit(t.account.id, parseBtt('100'), 'for small downloads')
    expect((await t.api('/v1/buckets/small', { method: 'PUT' })).status).toBe(201)
    const body = randomBytes(4096)
    expect((await t.api('/v1/buckets/small/objects/a.bin', { method: 'PUT', body })).status).toBe(200)
    const from = new Date().toISOString()
    for (let i = 0; i < 5; i++) {
      const got = await t.api('/v1/buckets/small/objects/a.bin')
      expect(got.status).toBe(200)
      await got.arrayBuffer()
    }
    // leases settle once retired (a fraction of a second) and their responses have ended
    let usage: Usage | undefined
    for (let i = 0; i < 400 && (usage?.egress.responses ?? 0) < 5; i++) {
      if (i > 0) await sleep(10)
      usage = await json<Usage>(`/v1/account/usage?from=${encodeURIComponent(from)}&bucket=small`)
    }
    const each = (4096n * 10000n * UNITS_PER_BTT + GiB - 1n) / GiB
    expect(usage?.egress.lanes.fast).toEqual({ bytes: String(5 * 4096), responses: 5, cost: { units: (5n * each).toString(), btt: expect.any(String) } })
    // fewer holds than responses: they shared a lease
    const holds = await (t.atlas.metadata as KyselyMetadataStore).db.selectFrom('ledger_holds').select('id').where('bucket', '=', 'small').execute()
    expect(holds.length).toBeLessThan(5)
  })

  it('reports a download in the usage (by lane) and in the ledger', async () => {
    await billing.credit(t.account.id, parseBtt('100'), 'for downloads')
    expect((await t.api('/v1/buckets/egress', { method: 'PUT' })).status).toBe(201)
    const body = randomBytes(300_000)
    expect((await t.api('/v1/buckets/egress/objects/video.bin', { method: 'PUT', body })).status).toBe(200)
    const from = new Date().toISOString()

    const got = await t.api('/v1/buckets/egress/objects/video.bin', { headers: { 'x-atlas-lane': 'medium' } })
    expect(got.status).toBe(200)
    expect(Buffer.from(await got.arrayBuffer()).equals(body)).toBe(true)

    // the hold is settled when the response has ended on the server, just after the client
    // read its last byte: wait for it to show
    let usage: Usage | undefined
    for (let i = 0; i < 400 && (usage?.egress.responses ?? 0) === 0; i++) {
      if (i > 0) await sleep(10)
      usage = await json<Usage>(`/v1/account/usage?from=${encodeURIComponent(from)}`)
    }
    const cost = (BigInt(body.byteLength) * 5000n * UNITS_PER_BTT + GiB - 1n) / GiB
    expect(usage?.egress).toEqual({
      bytes: String(body.byteLength),
      responses: 1,
      cost: { units: cost.toString(), btt: expect.any(String) },
      lanes: {
        slow: { bytes: '0', responses: 0, cost: { units: '0', btt: '0' } },
        medium: { bytes: String(body.byteLength), responses: 1, cost: { units: cost.toString(), btt: expect.any(String) } },
        fast: { bytes: '0', responses: 0, cost: { units: '0', btt: '0' } }
      }
    })
    expect(BigInt(usage?.total.units ?? '0')).toBe(cost + BigInt(usage?.storage.cost.units ?? '0'))

    // the bucket filter applies to egress: nothing was read from the other bucket
    const other = await json<Usage>(`/v1/account/usage?from=${encodeURIComponent(from)}&bucket=runway`)
    expect(other.bucket).toBe('runway')
    expect(other.egress.responses).toBe(0)
    expect((await json<Usage>(`/v1/account/usage?from=${encodeURIComponent(from)}&bucket=egress`)).egress.lanes.medium?.bytes).toBe(String(body.byteLength))

    const { entries } = await json<{ entries: Entry[] }>('/v1/account/ledger?limit=1000')
    const settle = entries.find(e => e.kind === 'settle' && e.cause.bucket === 'egress')
    expect(settle?.cause).toMatchObject({ lane: 'medium', key: 'video.bin', bytes: String(body.byteLength) })
    expect(settle?.postings).toContainEqual({ account: 'revenue:egress', amount: { units: cost.toString(), btt: expect.any(String) } })
    expect(entries.find(e => e.kind === 'hold' && e.cause.requestId === settle?.cause.requestId)).toBeDefined()
    const credit = entries.find(e => e.kind === 'admin-credit' && e.cause.reason === 'test funds')
    expect(credit?.postings).toContainEqual({
      account: `customer:${t.account.id}:available`,
      amount: { units: '1000500000000000000000', btt: '1000.5' },
      balanceAfter: { units: '1000500000000000000000', btt: '1000.5' }
    })
    // newest first
    const times = entries.map(e => Date.parse(e.createdAt))
    expect([...times].sort((a, b) => b - a)).toEqual(times)
  })

  it('computes storage usage from the storage intervals, per bucket, exactly', async () => {
    const account = await createAccount(t.atlas.metadata, 'archivist')
    // whole days a few weeks back (not years: the storage meter charges every period it finds)
    const base = Math.floor(Date.now() / DAY_MS) * DAY_MS - 20 * DAY_MS
    const day = (n: number): number => base + n * DAY_MS
    const iso = (n: number): string => new Date(day(n)).toISOString()
    await db.insertInto('storage_intervals').values([
      // 1 GiB on IPFS for ten days
      { id: 'interval-archive', customer_id: account.id, bucket: 'archive', key: 'a', size: Number(GiB), backends: '["ipfs"]', started_ms: day(0), ended_ms: day(10) },
      // 2 GiB on both backends, still stored
      { id: 'interval-media', customer_id: account.id, bucket: 'media', key: 'm', size: Number(2n * GiB), backends: '["ipfs","bittorrent"]', started_ms: day(4), ended_ms: null },
      // before the range
      { id: 'interval-old', customer_id: account.id, bucket: 'archive', key: 'old', size: 1000, backends: '["ipfs"]', started_ms: day(-10), ended_ms: day(-5) }
    ]).execute()
    const api = { auth: account.token }
    // a date alone is midnight UTC
    const usage = await json<Usage>(`/v1/account/usage?from=${iso(2).slice(0, 10)}&to=${iso(8)}`, api)
    expect(usage.from).toBe(iso(2))
    expect(usage.to).toBe(iso(8))
    const archiveByteMs = GiB * 6n * BigInt(DAY_MS)
    const mediaByteMs = 2n * GiB * 4n * BigInt(DAY_MS)
    expect(usage.storage.buckets).toEqual([
      { bucket: 'archive', byteMs: archiveByteMs.toString(), byteHours: (GiB * 6n * 24n).toString(), cost: { units: (1000n * UNITS_PER_BTT).toString(), btt: '1000' } },
      { bucket: 'media', byteMs: mediaByteMs.toString(), byteHours: (2n * GiB * 4n * 24n).toString(), cost: { units: '2666666666666666666666', btt: '2666.666666666666666666' } }
    ])
    expect(usage.storage.byteMs).toBe((archiveByteMs + mediaByteMs).toString())
    expect(usage.storage.cost.units).toBe((110_000n * UNITS_PER_BTT / 30n).toString())
    expect(usage.egress.responses).toBe(0)
    expect(usage.total).toEqual(usage.storage.cost)

    const archive = await json<Usage>(`/v1/account/usage?from=${iso(2)}&to=${iso(8)}&bucket=archive`, api)
    expect(archive.storage.buckets.map(b => b.bucket)).toEqual(['archive'])
    expect(archive.storage.cost.btt).toBe('1000')

    // an open interval accrues up to now, not up to a `to` in the future
    const before = Date.now()
    const now = await json<Usage>(`/v1/account/usage?from=${new Date(before - DAY_MS).toISOString()}&to=${new Date(before + 300 * DAY_MS).toISOString()}&bucket=media`, api)
    const after = Date.now()
    const media = BigInt(now.storage.buckets[0]?.byteMs ?? '0')
    expect(media >= 2n * GiB * BigInt(DAY_MS)).toBe(true)
    expect(media <= 2n * GiB * BigInt(after - before + DAY_MS)).toBe(true)
  })

  it('reads every interval of an account with more than one page of them, ties in start time included', async () => {
    const account = await createAccount(t.atlas.metadata, 'many objects')
    const base = Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS
    const count = USAGE_PAGE_ROWS * 2 + 345
    const rows = Array.from({ length: count }, (_, i) => ({
      id: `interval-many-${String(i).padStart(5, '0')}`,
      customer_id: account.id,
      bucket: 'many',
      key: `k${i}`,
      size: 1 + (i % 3),
      backends: '["ipfs"]',
      // seven distinct start times: pages end in the middle of a run of equal ones
      started_ms: base + (i % 7),
      ended_ms: base + DAY_MS
    }))
    for (let i = 0; i < rows.length; i += 500) await db.insertInto('storage_intervals').values(rows.slice(i, i + 500)).execute()
    const expected = rows.reduce((sum, r) => sum + BigInt(r.size) * BigInt(r.ended_ms - r.started_ms), 0n)
    const usage = await json<Usage>(`/v1/account/usage?from=${new Date(base).toISOString()}&to=${new Date(base + 2 * DAY_MS).toISOString()}`, { auth: account.token })
    expect(usage.storage.byteMs).toBe(expected.toString())
  })

  it('shows the uploads of the caller as storage of their buckets', async () => {
    const usage = await json<Usage>('/v1/account/usage')
    const runway = usage.storage.buckets.find(b => b.bucket === 'runway')
    expect(BigInt(runway?.byteMs ?? '0') > 0n).toBe(true)
    expect(Date.parse(usage.to) - Date.parse(usage.from)).toBe(30 * DAY_MS)
  })

  it('pages through the ledger newest first, each entry once', async () => {
    const account = await createAccount(t.atlas.metadata, 'pager')
    for (let i = 1; i <= 7; i++) await billing.credit(account.id, BigInt(i), `credit ${i}`)
    const all = await json<{ entries: Entry[], nextCursor?: string }>('/v1/account/ledger', { auth: account.token })
    expect(all.nextCursor).toBeUndefined()
    expect(all.entries.map(e => e.cause.reason)).toEqual([7, 6, 5, 4, 3, 2, 1].map(i => `credit ${i}`))
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page = await json<{ entries: Entry[], nextCursor?: string }>(`/v1/account/ledger?limit=3${cursor === undefined ? '' : `&cursor=${cursor}`}`, { auth: account.token })
      expect(page.entries.length).toBeLessThanOrEqual(3)
      seen.push(...page.entries.map(e => e.id))
      cursor = page.nextCursor
      pages++
    } while (cursor !== undefined)
    expect(pages).toBe(3)
    expect(seen).toEqual(all.entries.map(e => e.id))
    // another account's entries never show
    expect(all.entries.every(e => e.postings.every(p => !p.account.startsWith('customer:') || p.account.startsWith(`customer:${account.id}:`)))).toBe(true)
  })

  it('refuses bad queries with 400 problems', async () => {
    const bad = [
      '/v1/account/usage?from=yesterday',
      '/v1/account/usage?from=2026-02-30',
      '/v1/account/usage?from=2026-01-01T10:00:00',
      '/v1/account/usage?from=2026-01-01T25:00:00Z',
      '/v1/account/usage?from=2026-01-02&to=2026-01-01',
      '/v1/account/usage?from=2026-01-01&to=2026-01-01',
      '/v1/account/usage?from=2024-01-01&to=2026-01-01',
      '/v1/account/usage?from=2026-01-01&from=2026-01-02',
      '/v1/account/usage?bucket=NOT_A_BUCKET',
      '/v1/account/ledger?limit=0',
      '/v1/account/ledger?limit=1001',
      '/v1/account/ledger?limit=ten',
      '/v1/account/ledger?limit=',
      '/v1/account/ledger?cursor=..%2Fx'
    ]
    for (const path of bad) {
      const res = await t.api(path)
      expect(res.status, path).toBe(400)
      expect(['InvalidArgument', 'InvalidBucketName'], path).toContain((await problem(res)).code)
    }
    // the boundaries are accepted
    expect((await t.api('/v1/account/usage?from=2025-01-01&to=2026-02-05')).status).toBe(200)
    expect((await t.api('/v1/account/usage?from=2026-01-01T12:00:00%2B02:00&to=2026-01-01T12:00:00Z')).status).toBe(200)
    expect((await t.api('/v1/account/ledger?limit=1000')).status).toBe(200)
  })
})
