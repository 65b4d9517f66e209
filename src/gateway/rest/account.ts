/**
 * REST API v1: the caller's account and the price list.
 *
 * - `GET /v1/pricing` (public): the configured prices, also when billing is off (with
 *   `enabled: false`), so that a client can show what a gateway would charge.
 * - `GET /v1/account`: who the token belongs to and, with billing on, its balances, runway and
 *   status history. With billing off it still answers (`billing: "disabled"`, no money fields):
 *   the account exists either way, and a client can tell the two gateways apart without a 404.
 * - `GET /v1/account/usage` and `GET /v1/account/ledger`: 404 problem documents with billing off
 *   (nothing is metered or posted then).
 *
 * Amounts are strings of base units with their decimal BTT beside them (`{ units, btt }`): base
 * units pass 2^53 at 0.009 BTT, beyond what a JSON number carries exactly.
 */
import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import { MAX_ENTRIES_PAGE } from '../../billing/kysely-ledger.ts'
import { accountKind, type LedgerTransaction } from '../../billing/ledger.ts'
import { Pricing } from '../../billing/pricing.ts'
import { accountSummary, amountJson, byteHours, usageReport, type EgressUsageLine } from '../../billing/usage.ts'
import { AtlasError } from '../../core/errors.ts'
import { assertBucketName } from '../../core/names.ts'
import { KyselyMetadataStore } from '../../metadata/kysely-store.ts'
import type { Database } from '../../metadata/schema.ts'
import { requirePrincipal } from '../auth.ts'
import type { GatewayDeps } from '../server.ts'

const DAY_MS = 86_400_000

/** Range of a usage report when the query gives none: the last 30 days */
export const DEFAULT_USAGE_DAYS = 30

/** Longest range one usage report covers: a little over a year, so that year-on-year fits */
export const MAX_USAGE_DAYS = 400

/** Entries of a ledger page when the query gives no limit */
export const DEFAULT_LEDGER_LIMIT = 100

type Query = Record<string, string | string[] | undefined>

export async function accountRoutes (app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  const { billing, config, metadata } = deps
  const pricing = billing?.pricing ?? new Pricing(config.billing)

  // with the chain running, where to send BTT: a caller learns it before it has an account
  const chain = deps.chain === undefined ? undefined : { mode: deps.chain.mode, tokenContract: deps.chain.client.tokenContract, depositAddress: deps.chain.client.depositAddress }
  app.get('/v1/pricing', async () => ({ enabled: billing !== undefined, ...pricing.toJSON(), ...(chain === undefined ? {} : { chain }) }))

  app.get('/v1/account', async (request) => {
    const principal = requirePrincipal(request)
    const account = await metadata.getAccount(principal.accountId)
    if (account === null) throw new AtlasError('NoSuchAccount', `No account ${principal.accountId}`)
    const defaultLane = principal.defaultLane ?? config.billing.defaultLane
    if (billing === undefined) return { id: account.id, name: account.name, billing: 'disabled', defaultLane }
    const summary = await accountSummary(billing, account.id)
    return {
      id: account.id,
      name: account.name,
      billing: 'enabled',
      status: summary.status.status,
      ...(summary.status.graceEndsAt === undefined ? {} : { graceEndsAt: summary.status.graceEndsAt.toISOString() }),
      statusHistory: summary.status.history.map(e => ({ status: e.status, reason: e.reason, at: e.at.toISOString() })),
      balance: {
        available: amountJson(summary.available),
        held: amountJson(summary.held),
        owed: amountJson(summary.owed)
      },
      dailyStorageCost: amountJson(summary.dailyStorageCost),
      runwayDays: summary.runwayDays,
      defaultLane
    }
  })

  app.get<{ Querystring: Query }>('/v1/account/usage', async (request) => {
    const principal = requirePrincipal(request)
    const db = billingDb()
    const q = request.query
    const now = Date.now()
    const toText = single(q, 'to')
    const fromText = single(q, 'from')
    const to = toText === undefined ? now : parseInstant(toText, 'to')
    const from = fromText === undefined ? to - DEFAULT_USAGE_DAYS * DAY_MS : parseInstant(fromText, 'from')
    if (to <= from) throw new AtlasError('InvalidArgument', `to (${new Date(to).toISOString()}) must be after from (${new Date(from).toISOString()})`)
    if (to - from > MAX_USAGE_DAYS * DAY_MS) throw new AtlasError('InvalidArgument', `A usage report covers at most ${MAX_USAGE_DAYS} days; ask for several ranges`)
    const bucket = single(q, 'bucket')
    if (bucket !== undefined) assertBucketName(bucket)
    const report = await usageReport(db, pricing, principal.accountId, { from, to, ...(bucket === undefined ? {} : { bucket }) }, now)
    const egressLine = (line: EgressUsageLine): Record<string, unknown> => ({ bytes: line.bytes.toString(), responses: line.responses, cost: amountJson(line.cost) })
    return {
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      ...(bucket === undefined ? {} : { bucket }),
      storage: {
        byteMs: report.storage.byteMs.toString(),
        byteHours: byteHours(report.storage.byteMs).toString(),
        cost: amountJson(report.storage.cost),
        buckets: report.storage.buckets.map(b => ({ bucket: b.bucket, byteMs: b.byteMs.toString(), byteHours: byteHours(b.byteMs).toString(), cost: amountJson(b.cost) }))
      },
      egress: {
        ...egressLine(report.egress),
        lanes: Object.fromEntries(Object.entries(report.egress.lanes).map(([lane, line]) => [lane, egressLine(line)]))
      },
      total: amountJson(report.total)
    }
  })

  app.get<{ Querystring: Query }>('/v1/account/ledger', async (request) => {
    const principal = requirePrincipal(request)
    if (billing === undefined) throw billingOff()
    const q = request.query
    const limitText = single(q, 'limit')
    const limit = limitText === undefined ? DEFAULT_LEDGER_LIMIT : Number(limitText)
    if (limitText?.trim() === '' || !Number.isInteger(limit) || limit < 1 || limit > MAX_ENTRIES_PAGE) {
      throw new AtlasError('InvalidArgument', `limit must be an integer from 1 to ${MAX_ENTRIES_PAGE}`)
    }
    const cursor = single(q, 'cursor')
    // a cursor is the id of the last entry of the previous page (ledger ids are lowercase base32)
    if (cursor !== undefined && !/^[0-9a-z]{1,64}$/.test(cursor)) throw new AtlasError('InvalidArgument', 'cursor must be the nextCursor of a previous page')
    const page = await billing.ledger.entries(principal.accountId, { limit, ...(cursor === undefined ? {} : { before: cursor }) })
    return {
      entries: page.entries.map(entry => entryView(entry, principal.accountId)),
      ...(page.next === undefined ? {} : { nextCursor: page.next })
    }
  })

  /** The database usage reports read; only there when billing is on (main requires the SQL store then). */
  function billingDb (): Kysely<Database> {
    if (billing === undefined || !(metadata instanceof KyselyMetadataStore)) throw billingOff()
    return metadata.db
  }
}

function billingOff (): AtlasError {
  return new AtlasError('NotFound', 'Billing is off on this gateway: nothing is metered or charged')
}

/**
 * One ledger transaction as the account sees it. Postings to another customer's accounts are
 * left out (no transaction touches two customers today; this keeps it so if one ever does).
 */
function entryView (entry: LedgerTransaction, customerId: string): Record<string, unknown> {
  const postings = entry.postings.filter(p => {
    const owner = accountKind(p.account).customerId
    return owner === undefined || owner === customerId
  })
  return {
    id: entry.id,
    kind: entry.kind,
    createdAt: entry.createdAt.toISOString(),
    cause: entry.cause,
    ...(entry.reverses === undefined ? {} : { reverses: entry.reverses }),
    postings: postings.map(p => ({
      account: p.account,
      amount: amountJson(p.amount),
      ...(p.balanceAfter === undefined ? {} : { balanceAfter: amountJson(p.balanceAfter) })
    }))
  }
}

/** A query parameter given at most once. @throws AtlasError InvalidArgument when it repeats */
function single (q: Query, name: string): string | undefined {
  const value = q[name]
  if (Array.isArray(value)) throw new AtlasError('InvalidArgument', `Give ${name} once`)
  return value
}

const INSTANT = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2}))?$/

/**
 * An ISO-8601 date (`2026-03-01`, midnight UTC) or date-time with its offset
 * (`2026-03-01T12:00:00Z`, `2026-03-01T14:00+02:00`), as epoch milliseconds. Stricter than
 * `Date.parse`, which takes `2026-02-30` for March 2nd, reads a date-time without an offset in
 * the server's time zone and accepts formats that are not ISO-8601 at all.
 *
 * @throws AtlasError InvalidArgument
 */
export function parseInstant (text: string, name: string): number {
  const bad = (): AtlasError => new AtlasError('InvalidArgument', `${name} must be an ISO-8601 date (2026-03-01) or date-time with an offset (2026-03-01T12:00:00Z), not ${JSON.stringify(text.slice(0, 64))}`)
  const match = INSTANT.exec(text)
  if (match === null) throw bad()
  const [, year, month, day, hour = '00', minute = '00', second = '00', fraction = '', offset = 'Z'] = match
  const y = Number(year)
  const m = Number(month)
  const d = Number(day)
  const h = Number(hour)
  const min = Number(minute)
  const s = Number(second)
  const utc = Date.UTC(y, m - 1, d, h, min, s, Number(fraction.padEnd(3, '0').slice(0, 3)))
  const check = new Date(Date.UTC(y, m - 1, d))
  // Date.UTC rolls 2026-02-30 over into March; a real date comes back unchanged
  if (y < 1970 || check.getUTCFullYear() !== y || check.getUTCMonth() !== m - 1 || check.getUTCDate() !== d || h > 23 || min > 59 || s > 59) throw bad()
  let offsetMs = 0
  if (offset !== 'Z') {
    const sign = offset.startsWith('-') ? -1 : 1
    const oh = Number(offset.slice(1, 3))
    const om = Number(offset.slice(4, 6))
    if (oh > 23 || om > 59) throw bad()
    offsetMs = sign * (oh * 60 + om) * 60_000
  }
  return utc - offsetMs
}
