/**
 * The optional per-request fee: charged to the payer of each content response that is served,
 * and never to a request refused for lack of funds (the fee is posted only once the response's
 * egress is reserved).
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { UNITS_PER_BTT } from '../../src/billing/amount.ts'
import { LedgerAccounts } from '../../src/billing/ledger.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'

const FEE = UNITS_PER_BTT / 1000n

describe('billing: per-request fee', () => {
  let t: TestAtlas
  beforeAll(async () => {
    t = await startTestAtlas({ config: { billing: { enabled: true, requestFee: '0.001', uploadRunwayDays: 0, storagePerGiBMonth: { ipfs: '0', bittorrent: '0' } } } })
    expect((await t.api('/v1/buckets/fees', { method: 'PUT' })).status).toBe(201)
    expect((await t.api('/v1/buckets/fees/objects/a.bin', { method: 'PUT', body: randomBytes(4096) })).status).toBe(200)
  })
  afterAll(async () => { await t?.stop() })

  it('charges nothing to a request refused for lack of funds', async () => {
    // enough for the fee, not for the response's egress (4 KiB at 10000 BTT/GiB is about 0.04 BTT)
    await t.atlas.billing?.credit(t.account.id, 2n * FEE, 'fee only')
    const res = await t.api('/v1/buckets/fees/objects/a.bin')
    expect(res.status).toBe(402)
    expect(await t.atlas.billing?.ledger.balance(LedgerAccounts.revenue.requests)).toBe(0n)
    expect((await t.atlas.billing?.ledger.customerBalances(t.account.id))?.available).toBe(2n * FEE)
    expect(await t.atlas.billing?.ledger.trialBalance()).toBe(0n)
  })

  it('charges the fee once per served response', async () => {
    await t.atlas.billing?.credit(t.account.id, 10n * UNITS_PER_BTT, 'fees')
    for (let i = 0; i < 3; i++) {
      const res = await t.api('/v1/buckets/fees/objects/a.bin')
      expect(res.status).toBe(200)
      await res.arrayBuffer()
    }
    expect(await t.atlas.billing?.ledger.balance(LedgerAccounts.revenue.requests)).toBe(3n * FEE)
  })
})
