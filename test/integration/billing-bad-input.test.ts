/**
 * Bad input to billing (issue #5, "Done means"): negative, fractional-unit and non-numeric
 * amounts, and credits to accounts that do not exist, fail with clear AtlasError codes and leave
 * the ledger exactly as it was. (Unknown lanes: billing-lanes.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseBtt, parseUnits, UNITS_PER_BTT } from '../../src/billing/amount.ts'
import type { Billing } from '../../src/billing/billing.ts'
import { AtlasError, type ErrorCode } from '../../src/core/errors.ts'
import type { KyselyMetadataStore } from '../../src/metadata/index.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'

describe('billing: bad input', () => {
  let t: TestAtlas
  let billing: Billing

  beforeAll(async () => {
    t = await startTestAtlas({ config: { billing: { enabled: true } } })
    if (t.atlas.billing === undefined) throw new Error('billing is off')
    billing = t.atlas.billing
    // something in the ledger already, so that "unchanged" compares non-trivial state
    await billing.credit(t.account.id, parseBtt('12.5'), 'opening balance', 'opening-balance')
  })
  afterAll(async () => { await t?.stop() })

  /** Everything the ledger and the account status consist of. */
  async function snapshot (): Promise<unknown> {
    const db = (t.atlas.metadata as KyselyMetadataStore).db
    return {
      transactions: await db.selectFrom('ledger_transactions').selectAll().orderBy('id').execute(),
      postings: await db.selectFrom('ledger_postings').selectAll().orderBy('transaction_id').orderBy('seq').execute(),
      accounts: await db.selectFrom('ledger_accounts').selectAll().orderBy('id').execute(),
      holds: await db.selectFrom('ledger_holds').selectAll().orderBy('id').execute(),
      status: await db.selectFrom('billing_status_events').selectAll().orderBy('id').execute(),
      balances: await billing.ledger.customerBalances(t.account.id),
      trial: await billing.ledger.trialBalance()
    }
  }

  /** `fn` fails with an AtlasError of `code` whose message says what is wrong, and changes nothing. */
  async function refused (fn: () => Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
    const before = await snapshot()
    let error: unknown
    try {
      await fn()
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(AtlasError)
    expect((error as AtlasError).code).toBe(code)
    expect((error as AtlasError).message).toMatch(message)
    expect(await snapshot()).toEqual(before)
  }

  it('starts from the opening balance', async () => {
    expect((await billing.ledger.customerBalances(t.account.id)).available).toBe(125n * UNITS_PER_BTT / 10n)
  })

  it('refuses negative amounts', async () => {
    await refused(async () => await billing.credit(t.account.id, parseBtt('-5'), 'negative'), 'InvalidAmount', /negative/)
    await refused(async () => await billing.credit(t.account.id, parseUnits('-1'), 'negative'), 'InvalidAmount', /negative/)
    await refused(async () => await billing.credit(t.account.id, -1n, 'negative'), 'InvalidAmount', /positive/)
    await refused(async () => await billing.credit(t.account.id, 0n, 'zero'), 'InvalidAmount', /positive/)
  })

  it('refuses fractions of a base unit', async () => {
    // 19 decimals: a tenth of a unit
    await refused(async () => await billing.credit(t.account.id, parseBtt('1.0000000000000000001'), 'fraction'), 'InvalidAmount', /more than 18 decimals/)
    await refused(async () => await billing.credit(t.account.id, parseUnits('1.5'), 'fraction'), 'InvalidAmount', /not a whole number of base units/)
    // a JavaScript number is never money, whole or not
    await refused(async () => await billing.credit(t.account.id, 1.5 as unknown as bigint, 'float'), 'InvalidAmount', /not a number/)
    await refused(async () => await billing.credit(t.account.id, 1 as unknown as bigint, 'number'), 'InvalidAmount', /not a number/)
  })

  it('refuses non-numeric amounts', async () => {
    for (const text of ['abc', '', '  ', '1e18', '0x10', '1,5', '1.', '.5', '+1', 'Infinity', 'NaN', '١٢']) {
      await refused(async () => await billing.credit(t.account.id, parseBtt(text), 'not a number'), 'InvalidAmount', /not a decimal number of BTT/)
    }
    await refused(async () => await billing.credit(t.account.id, parseUnits('12 BTT'), 'not a number'), 'InvalidAmount', /not a whole number/)
    await refused(async () => await billing.credit(t.account.id, Number.NaN as unknown as bigint, 'NaN'), 'InvalidAmount', /not a number/)
    // beyond any real supply
    await refused(async () => await billing.credit(t.account.id, parseBtt('1' + '0'.repeat(40)), 'too much'), 'InvalidAmount', /too large/)
    await refused(async () => await billing.credit(t.account.id, 10n ** 60n, 'too much'), 'InvalidAmount', /too large/)
  })

  it('refuses credits to unknown accounts', async () => {
    await refused(async () => await billing.credit('acc_doesnotexist', UNITS_PER_BTT, 'nobody'), 'NoSuchAccount', /acc_doesnotexist/)
    await refused(async () => await billing.credit('', UNITS_PER_BTT, 'nobody'), 'NoSuchAccount', /No account/)
    await refused(async () => await billing.credit(`${t.account.id}:held`, UNITS_PER_BTT, 'a ledger account name is no account id'), 'NoSuchAccount', /No account/)
  })

  it('refuses a credit without a reason, and a replayed key with another amount', async () => {
    await refused(async () => await billing.credit(t.account.id, UNITS_PER_BTT, '   '), 'InvalidArgument', /reason/)
    await refused(async () => await billing.credit(t.account.id, UNITS_PER_BTT, 'opening balance', 'opening-balance'), 'IdempotencyConflict', /opening-balance/)
    // the same key with the same inputs is the same credit, not a second one
    const before = await snapshot()
    await billing.credit(t.account.id, parseBtt('12.5'), 'opening balance', 'opening-balance')
    expect(await snapshot()).toEqual(before)
  })
})
