/**
 * Delivery lanes through the gateway (issue #5): which lane a response goes out in, and what it
 * costs. A lane comes from the `x-atlas-lane` header, else the `lane` query parameter, else the
 * key's default, else the gateway's; an unknown lane is refused before anything is held or sent.
 * The lane is checked where it is recorded (the hold) and priced; throughput under each cap is
 * measured by bench/lanes.ts, not here (no timed assertions in tests).
 */
import { createHash, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { issueAccessKey, type IssuedCredentials } from '../../src/accounts/credentials.ts'
import { UNITS_PER_BTT } from '../../src/billing/amount.ts'
import type { Lane } from '../../src/billing/pricing.ts'
import { POOL_RESPONSE_MAX_BYTES } from '../../src/billing/spend-pool.ts'
import type { KyselyMetadataStore } from '../../src/metadata/index.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { signedFetch } from '../fixtures/s3.ts'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** Above the size whose responses draw on pooled leases: each response here has a hold of its own */
const SIZE = POOL_RESPONSE_MAX_BYTES + 7
/** A response that draws on a pooled lease */
const SMALL = 30_011
const CREDIT = 1_000_000n * UNITS_PER_BTT

describe('billing: delivery lanes through the gateway', () => {
  let t: TestAtlas
  let body: Uint8Array
  let slowKey: IssuedCredentials
  let cid: string

  beforeAll(async () => {
    // storage is free: no storage period can move the balance the assertions below read; the
    // caps are high so that the throttled lanes do not slow the test down (their pace: bench/)
    t = await startTestAtlas({ config: { billing: { enabled: true, storagePerGiBMonth: { ipfs: '0', bittorrent: '0' }, lanes: { slow: 64 * 1024 * 1024, medium: 128 * 1024 * 1024 } } } })
    await t.atlas.billing?.credit(t.account.id, CREDIT, 'lanes')
    body = randomBytes(SIZE)
    expect((await t.api('/v1/buckets/lanes', { method: 'PUT' })).status).toBe(201)
    const put = await t.api('/v1/buckets/lanes/objects/blob.bin', { method: 'PUT', body })
    expect(put.status).toBe(200)
    cid = (await put.json() as { cid?: string, addresses?: { ipfs?: string } }).addresses?.ipfs ?? ''
    // a second key of the same account whose requests default to the slow lane
    slowKey = await issueAccessKey(t.atlas.metadata, t.account.id, { defaultLane: 'slow' })
  })
  afterAll(async () => { await t?.stop() })

  const db = (): KyselyMetadataStore['db'] => (t.atlas.metadata as KyselyMetadataStore).db
  const ledgerSize = async (): Promise<number> => (await db().selectFrom('ledger_transactions').select('id').execute()).length

  /** The hold the last download placed, once it is final. */
  async function lastHold (): Promise<{ lane: string | null, amount: bigint, used: bigint, status: string, bucket: string | null }> {
    const deadline = Date.now() + 10_000
    for (;;) {
      const row = await db().selectFrom('ledger_holds').selectAll().where('customer_id', '=', t.account.id).orderBy('id', 'desc').limit(1).executeTakeFirstOrThrow()
      if (row.status !== 'pending') return { lane: row.lane, amount: BigInt(row.amount), used: BigInt(row.used), status: row.status, bucket: row.bucket }
      if (Date.now() > deadline) throw new Error('the hold stayed pending')
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  /** GET the object through REST or S3 and return the lane its hold was placed at, checking the price. */
  async function laneOf (api: 'rest' | 's3', options: { header?: string, query?: string, token?: string, keys?: IssuedCredentials } = {}): Promise<Lane> {
    const query = options.query === undefined ? '' : `?lane=${options.query}`
    const headers: Record<string, string> = options.header === undefined ? {} : { 'x-atlas-lane': options.header }
    const holds = (await db().selectFrom('ledger_holds').select('id').execute()).length
    const res = api === 'rest'
      ? await t.api(`/v1/buckets/lanes/objects/blob.bin${query}`, { headers, ...(options.token === undefined ? {} : { auth: options.token }) })
      : await signedFetch(t, { method: 'GET', path: `/lanes/blob.bin${query}`, headers, ...(options.keys === undefined ? {} : { keys: options.keys }) })
    expect(res.status).toBe(200)
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(body))
    expect((await db().selectFrom('ledger_holds').select('id').execute()).length).toBe(holds + 1)
    const hold = await lastHold()
    const lane = hold.lane as Lane
    const price = t.atlas.billing?.pricing.egressCost(BigInt(SIZE), lane)
    // placed at the lane's price for the whole response, and charged that for the whole response
    expect(hold).toMatchObject({ status: 'settled', amount: price, used: price, bucket: 'lanes' })
    return lane
  }

  it('prices the lanes differently (so that the checks below tell them apart)', () => {
    const pricing = t.atlas.billing?.pricing
    const prices = (['slow', 'medium', 'fast'] as const).map((lane) => pricing?.egressCost(BigInt(SIZE), lane))
    expect(new Set(prices).size).toBe(3)
  })

  it('takes the lane from the header, then the query, then the key, then the configuration', async () => {
    // the configuration's default is fast
    expect(t.atlas.config.billing.defaultLane).toBe('fast')
    expect(await laneOf('rest')).toBe('fast')
    expect(await laneOf('s3')).toBe('fast')
    expect(await laneOf('rest', { query: 'medium' })).toBe('medium')
    expect(await laneOf('s3', { query: 'medium' })).toBe('medium')
    expect(await laneOf('rest', { header: 'medium' })).toBe('medium')
    expect(await laneOf('s3', { header: 'medium' })).toBe('medium')
    // the header wins over the query
    expect(await laneOf('rest', { header: 'slow', query: 'medium' })).toBe('slow')
    // a key's default applies when the request names no lane
    expect(await laneOf('rest', { token: slowKey.token })).toBe('slow')
    expect(await laneOf('s3', { keys: slowKey })).toBe('slow')
    expect(await laneOf('rest', { token: slowKey.token, query: 'fast' })).toBe('fast')
    expect(await laneOf('s3', { keys: slowKey, header: 'medium' })).toBe('medium')
    // lane names ignore ASCII case
    expect(await laneOf('rest', { header: 'Medium' })).toBe('medium')
  })

  it('records the lane of small responses on their pooled lease, at that lane\'s price', async () => {
    const small = randomBytes(SMALL)
    expect((await t.api('/v1/buckets/lanes/objects/small.bin', { method: 'PUT', body: small })).status).toBe(200)
    const before = new Set((await db().selectFrom('ledger_holds').select('id').execute()).map((h) => h.id))
    const res = await t.api('/v1/buckets/lanes/objects/small.bin?lane=medium')
    expect(res.status).toBe(200)
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(small))
    // the lease is settled once it is retired: to the cost of the one response it served
    const deadline = Date.now() + 10_000
    for (;;) {
      const leases = (await db().selectFrom('ledger_holds').selectAll().where('customer_id', '=', t.account.id).execute()).filter((h) => !before.has(h.id))
      expect(leases).toHaveLength(1)
      const lease = leases[0]
      if (lease !== undefined && lease.status !== 'pending') {
        expect(lease.lane).toBe('medium')
        expect(BigInt(lease.used)).toBe(t.atlas.billing?.pricing.egressCost(BigInt(SMALL), 'medium'))
        expect(Number(lease.bytes)).toBe(SMALL)
        break
      }
      if (Date.now() > deadline) throw new Error('the lease stayed pending')
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  })

  it('refuses an unknown lane before anything is held or sent', async () => {
    const before = await ledgerSize()
    for (const [name, init] of [['header', { headers: { 'x-atlas-lane': 'turbo' } }], ['query', {}]] as const) {
      const res = await t.api(`/v1/buckets/lanes/objects/blob.bin${name === 'query' ? '?lane=turbo' : ''}`, init)
      expect(res.status, name).toBe(400)
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(await res.json()).toMatchObject({ type: 'https://atlas.dev/problems/invalid-lane', code: 'InvalidLane', lane: 'turbo', lanes: ['slow', 'medium', 'fast'] })
    }
    for (const request of [{ path: '/lanes/blob.bin', headers: { 'x-atlas-lane': 'turbo' } }, { path: '/lanes/blob.bin?lane=turbo' }, { path: '/lanes/blob.bin?lane=fast,slow' }]) {
      const res = await signedFetch(t, { method: 'GET', ...request })
      expect(res.status, request.path).toBe(400)
      const text = await res.text()
      expect(text).toContain('<Code>InvalidArgument</Code>')
      expect(text).toMatch(/delivery lane/)
    }
    // the content routes too
    expect(cid).not.toBe('')
    const ipfs = await t.api(`/ipfs/${cid}?lane=warp`)
    expect(ipfs.status).toBe(400)
    expect((await ipfs.json() as { code: string }).code).toBe('InvalidLane')
    // an empty lane, or two, are no lane name either
    expect((await t.api('/v1/buckets/lanes/objects/blob.bin?lane=')).status).toBe(400)
    expect((await t.api('/v1/buckets/lanes/objects/blob.bin?lane=fast&lane=slow')).status).toBe(400)
    expect(await ledgerSize()).toBe(before)
  })
})
