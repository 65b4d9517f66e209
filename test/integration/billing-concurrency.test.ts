/**
 * Concurrent downloads cannot overdraw an account (issue #5, "Done means"): an account funded for
 * exactly 100 downloads of an object fires 200 GETs at once, through S3 and REST mixed. A hold
 * for the whole response (its own, or its share of a pooled lease) is placed before the first
 * byte, so at most 100 get the object; the others are refused with 402 (REST) or 403
 * AccountProblem (S3), and afterwards the ledger adds up to the unit. Once on SQLite in one process, once on PostgreSQL with two Atlas processes
 * sharing the database.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Kysely } from 'kysely'
import { afterAll, describe, expect, it } from 'vitest'
import { createAccount, type CreatedAccount } from '../../src/accounts/credentials.ts'
import { Billing } from '../../src/billing/billing.ts'
import { KyselyLedger } from '../../src/billing/kysely-ledger.ts'
import { LedgerAccounts, type Ledger } from '../../src/billing/ledger.ts'
import { Pricing } from '../../src/billing/pricing.ts'
import { POOL_RESPONSE_MAX_BYTES } from '../../src/billing/spend-pool.ts'
import { loadConfig } from '../../src/config.ts'
import { createMetadataStore, KyselyMetadataStore } from '../../src/metadata/index.ts'
import type { Database } from '../../src/metadata/schema.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { postgresForFile } from '../fixtures/postgres-suite.ts'
import { signedFetch } from '../fixtures/s3.ts'
import { startServerProcess, type ServerProcess } from '../fixtures/server-process.ts'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** Downloads the account is funded for, and requests fired at once (twice as many) */
const FUNDED = 100
const REQUESTS = 2 * FUNDED
interface Size {
  name: string
  bytes: number
  /** Responses of this size draw on pooled leases (spend-pool.ts) rather than a hold each */
  pooled: boolean
}

/**
 * Both ways a response is held for: small ones on a pooled lease, larger ones on a hold of their
 * own. Neither is a round number of bytes, so that the per-response rounding of the price counts.
 */
const SIZES: Size[] = [
  { name: 'small objects (pooled leases)', bytes: 100_003, pooled: true },
  { name: 'large objects (a hold per response)', bytes: POOL_RESPONSE_MAX_BYTES + 3, pooled: false }
]

/** Storage is free here so that no storage period (an hour boundary crossed mid-test) moves the balance */
const BILLING = { enabled: true, storagePerGiBMonth: { ipfs: '0', bittorrent: '0' }, uploadRunwayDays: 0 }

const quietLogger = { info () {}, warn () {}, error () {} }

// PostgreSQL: fails on CI with the reason when it cannot be started, skipped elsewhere
const postgres = await postgresForFile('the two-process billing test')

/** A server to send GETs to: its URL and the account's credentials there. */
interface Target {
  url: string
  bucket: string
  key: string
}

type Outcome = { kind: 'complete' } | { kind: 'refused', api: 'rest' | 's3' }

/**
 * GET the object through REST (bearer token) or S3 (SigV4), read the whole body, and classify the
 * answer: the full object, or a refusal for lack of funds (checked in full here). Anything else
 * fails the test.
 */
async function download (target: Target, account: CreatedAccount, api: 'rest' | 's3', body: Uint8Array, hold: bigint): Promise<Outcome> {
  const res = api === 'rest'
    ? await fetch(`${target.url}/v1/buckets/${target.bucket}/objects/${target.key}`, { headers: { authorization: `Bearer ${account.token}` } })
    : await signedFetch({ url: target.url } as TestAtlas, { method: 'GET', path: `/${target.bucket}/${target.key}`, keys: account })
  const bytes = new Uint8Array(await res.arrayBuffer())
  if (res.status === 200) {
    expect(bytes.byteLength).toBe(body.byteLength)
    expect(sha256(bytes)).toBe(sha256(body))
    return { kind: 'complete' }
  }
  const text = new TextDecoder().decode(bytes)
  if (api === 'rest') {
    expect(res.status, text).toBe(402)
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    const problem = JSON.parse(text) as Record<string, unknown>
    expect(problem).toMatchObject({ type: 'https://atlas.dev/problems/insufficient-funds', status: 402, code: 'InsufficientFunds', required: hold.toString() })
    expect(typeof problem.balance).toBe('string')
    expect(BigInt(problem.balance as string)).toBeGreaterThanOrEqual(0n)
    expect(BigInt(problem.balance as string)).toBeLessThan(hold)
  } else {
    expect(res.status, text).toBe(403)
    expect(text).toContain('<Code>AccountProblem</Code>')
    expect(text).toMatch(/<Message>[^<]*\S[^<]*<\/Message>/)
  }
  return { kind: 'refused', api }
}

/** Wait (bounded) until every hold of the account is final: responses settle when they close. */
async function settled (ledger: Ledger, db: Kysely<Database>, customerId: string): Promise<void> {
  const deadline = Date.now() + 20_000
  for (;;) {
    const pending = await db.selectFrom('ledger_holds').select('id').where('customer_id', '=', customerId).where('status', '=', 'pending').execute()
    if (pending.length === 0 && (await ledger.customerBalances(customerId)).held === 0n) return
    if (Date.now() > deadline) throw new Error(`${pending.length} holds still pending`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** The ledger adds up: postings sum to zero, and the balance is the credit minus what was charged. */
async function checkLedger (ledger: Ledger, db: Kysely<Database>, customerId: string, credit: bigint, hold: bigint, size: Size, served: number): Promise<void> {
  expect(await ledger.trialBalance()).toBe(0n)
  const holds = await db.selectFrom('ledger_holds').select(['status', 'used', 'amount', 'bytes']).where('customer_id', '=', customerId).execute()
  let charged = 0n
  let bytes = 0
  for (const h of holds) {
    expect(h.status).not.toBe('pending')
    charged += BigInt(h.used)
    bytes += Number(h.bytes)
  }
  // each download served paid its own full price, and nothing else was charged
  expect(charged).toBe(BigInt(served) * hold)
  expect(bytes).toBe(served * size.bytes)
  if (!size.pooled) {
    // a hold per download served; a refused request leaves none
    expect(holds).toHaveLength(served)
    for (const h of holds) expect([BigInt(h.amount), BigInt(h.used), Number(h.bytes)]).toEqual([hold, hold, size.bytes])
  }
  const balances = await ledger.customerBalances(customerId)
  expect(balances.held).toBe(0n)
  expect(balances.available).toBeGreaterThanOrEqual(0n)
  expect(balances.available).toBe(credit - charged)
  expect(await ledger.balance(LedgerAccounts.revenue.egress)).toBe(charged)
  // every customer posting's running balance stayed at or above zero
  const postings = await db.selectFrom('ledger_postings').select('balance_after')
    .where('account_id', 'in', [LedgerAccounts.available(customerId), LedgerAccounts.held(customerId)]).execute()
  for (const row of postings) expect(BigInt(row.balance_after ?? '0')).toBeGreaterThanOrEqual(0n)
}

function tally (outcomes: Outcome[]): { complete: number, rest: number, s3: number } {
  return {
    complete: outcomes.filter((o) => o.kind === 'complete').length,
    rest: outcomes.filter((o) => o.kind === 'refused' && o.api === 'rest').length,
    s3: outcomes.filter((o) => o.kind === 'refused' && o.api === 's3').length
  }
}

/**
 * The race, then the rest of the funds: 200 GETs at once, of which at most 100 may be served;
 * then (once every hold is final) sequential downloads while the balance still covers one (funds
 * a pooled lease kept out of reach during the race), and finally one refusal through each API.
 * Returns how many downloads were served in all: exactly what the credit pays for.
 */
async function race (targets: Target[], account: CreatedAccount, body: Uint8Array, hold: bigint, ledger: Ledger, db: Kysely<Database>): Promise<number> {
  const outcomes = await Promise.all(Array.from({ length: REQUESTS }, async (_, i) =>
    await download(targets[i % targets.length] as Target, account, (i >> 1) % 2 === 0 ? 'rest' : 's3', body, hold)))
  const counts = tally(outcomes)
  expect(counts.complete).toBeGreaterThan(0)
  expect(counts.complete).toBeLessThanOrEqual(FUNDED)
  expect(counts.complete + counts.rest + counts.s3).toBe(REQUESTS)
  let served = counts.complete
  await settled(ledger, db, account.id)
  for (let i = 0; (await ledger.customerBalances(account.id)).available >= hold; i++) {
    expect(await download(targets[i % targets.length] as Target, account, i % 2 === 0 ? 'rest' : 's3', body, hold)).toEqual({ kind: 'complete' })
    served++
    await settled(ledger, db, account.id)
  }
  // which API's requests lose the race is up to scheduling: once drained, both refuse
  for (const target of targets) {
    for (const api of ['rest', 's3'] as const) expect(await download(target, account, api, body, hold)).toEqual({ kind: 'refused', api })
  }
  await settled(ledger, db, account.id)
  return served
}

describe('billing: concurrent downloads cannot overdraw', () => {
  describe.each(SIZES)('$name', (size) => {
    it('on SQLite: 200 GETs through S3 and REST, funded for 100', async () => {
      const t = await startTestAtlas({ config: { billing: BILLING } })
      try {
        const billing = t.atlas.billing
        if (billing === undefined) throw new Error('billing is off')
        const body = randomBytes(size.bytes)
        expect((await t.api('/v1/buckets/paid', { method: 'PUT' })).status).toBe(201)
        expect((await t.api('/v1/buckets/paid/objects/blob.bin', { method: 'PUT', body })).status).toBe(200)

        // the request fee is 0 by default: a download costs its hold alone (fast lane, the default)
        expect(billing.pricing.requestFee).toBe(0n)
        const hold = billing.pricing.egressCost(BigInt(size.bytes), 'fast')
        expect(hold).toBeGreaterThan(0n)
        const credit = BigInt(FUNDED) * hold
        await billing.credit(t.account.id, credit, 'funds for exactly 100 downloads')

        const db = (t.atlas.metadata as KyselyMetadataStore).db
        const served = await race([{ url: t.url, bucket: 'paid', key: 'blob.bin' }], t.account, body, hold, billing.ledger, db)
        expect(served).toBe(FUNDED)
        await checkLedger(billing.ledger, db, t.account.id, credit, hold, size, served)
        expect((await billing.ledger.customerBalances(t.account.id)).available).toBe(0n)
      } finally {
        await t.stop()
      }
    })

    describe('on PostgreSQL with two Atlas processes', () => {
      const servers: ServerProcess[] = []
      const dirs: string[] = []
      afterAll(async () => {
        for (const server of servers) await server.kill('SIGKILL')
        for (const dir of dirs) await rm(dir, { recursive: true, force: true })
      })

      if (postgres.unavailable !== undefined) return

      it('200 GETs spread over both processes, funded for 100', async () => {
        const databaseUrl = await postgres.createDatabase()
        // one key for both processes: it seals the access keys' secrets, which both need for SigV4
        const secretKey = randomBytes(32)
        const store = await createMetadataStore({ url: databaseUrl, dataDir: await tempDir(dirs), secretKey })
        if (!(store instanceof KyselyMetadataStore)) throw new Error('expected the SQL store')
        try {
          const account = await createAccount(store, 'two-processes')
          const env = (dataDir: string): Record<string, string> => ({
            ATLAS_DATABASE_URL: databaseUrl,
            ATLAS_DATA_DIR: dataDir,
            ATLAS_SECRET_KEY: secretKey.toString('base64'),
            ATLAS_IPFS_OFFLINE: 'true',
            ATLAS_BT_ENABLED: 'false',
            ATLAS_BILLING_ENABLED: 'true',
            ATLAS_PRICE_STORAGE_IPFS: '0',
            ATLAS_PRICE_STORAGE_BITTORRENT: '0',
            ATLAS_BILLING_RUNWAY_DAYS: '0'
          })
          const a = await startServerProcess(env(await tempDir(dirs)))
          servers.push(a)
          const b = await startServerProcess(env(await tempDir(dirs)))
          servers.push(b)

          // each process stores the bytes in its own IPFS repository: one bucket through each
          const body = randomBytes(size.bytes)
          const auth = { authorization: `Bearer ${account.token}` }
          for (const [server, bucket] of [[a, 'paid-a'], [b, 'paid-b']] as const) {
            expect((await fetch(`${server.url}/v1/buckets/${bucket}`, { method: 'PUT', headers: auth })).status).toBe(201)
            expect((await fetch(`${server.url}/v1/buckets/${bucket}/objects/blob.bin`, { method: 'PUT', headers: auth, body })).status).toBe(200)
          }

          const config = loadConfig({ env: {} })
          const pricing = new Pricing(config.billing)
          expect(pricing.requestFee).toBe(0n)
          const hold = pricing.egressCost(BigInt(size.bytes), 'fast')
          const credit = BigInt(FUNDED) * hold
          const ledger = new KyselyLedger({ db: store.db, dialect: 'postgres' })
          const billing = new Billing({ ledger, db: store.db, config: config.billing, owner: 'test', logger: quietLogger })
          await billing.credit(account.id, credit, 'funds for exactly 100 downloads')

          const targets = [{ url: a.url, bucket: 'paid-a', key: 'blob.bin' }, { url: b.url, bucket: 'paid-b', key: 'blob.bin' }]
          const served = await race(targets, account, body, hold, ledger, store.db)
          expect(served).toBe(FUNDED)
          await checkLedger(ledger, store.db, account.id, credit, hold, size, served)
          expect((await ledger.customerBalances(account.id)).available).toBe(0n)
          // with a hold per response, both processes held funds, each under its own instance id
          // (a pooled lease of one process may take the whole balance before the other asks)
          const owners = await store.db.selectFrom('ledger_holds').select('owner').distinct().where('customer_id', '=', account.id).execute()
          if (!size.pooled) expect(owners).toHaveLength(2)
        } finally {
          await store.close()
        }
      })
    })
  })
})

async function tempDir (dirs: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'atlas-billing-'))
  dirs.push(dir)
  return dir
}
