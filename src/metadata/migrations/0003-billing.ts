/**
 * Billing (src/billing/): the double-entry ledger, holds, storage intervals and periods, and the
 * steps of each account's billing status.
 *
 * Money columns hold base units of BTT (10^-18 BTT), which overflow 64 bits after 9.2 BTT:
 * PostgreSQL stores them as `numeric(78, 0)` (exact, and pg hands them back as text); SQLite,
 * which has no exact type that wide, as decimal text. Arithmetic never happens in SQL: the ledger
 * reads the text and computes with `bigint`.
 *
 * The ledger is append-only: postings are inserted, never updated or deleted. A customer's
 * accounts (available and held, which must not go below zero, and receivable) carry their running balance
 * on each of its postings (`balance_after`, with `account_seq` numbering them), so reading a
 * balance is one indexed row and checking it inside the posting transaction is cheap; the
 * unique (account_id, account_seq) index makes two writers that both read the same last posting
 * collide instead of both succeeding. Other accounts (revenue, funding) leave both null and take
 * no lock, so that every customer's charges do not queue on one revenue row.
 *
 * Times used in billing arithmetic (intervals, periods) are epoch milliseconds in `bigint`
 * columns, exact on both dialects; display timestamps follow 0001's conventions.
 */
import { sql } from 'kysely'
import type { Kysely } from 'kysely'
import type { DialectName } from '../schema.ts'

export async function up (db: Kysely<any>, dialect: DialectName): Promise<void> {
  const pg = dialect === 'postgres'
  const timestamp = pg ? sql`timestamptz` : sql`text`
  const bytewise = pg ? sql`text collate "C"` : sql`text`
  const money = pg ? sql`numeric(78, 0)` : sql`text`

  // The delivery lane a key's requests use when they name none
  await db.schema.alterTable('access_keys').addColumn('default_lane', 'text').execute()

  await db.schema.createTable('ledger_accounts')
    .addColumn('id', bytewise, col => col.notNull())
    .addColumn('kind', 'text', col => col.notNull())
    /** The Atlas account it belongs to (customer accounts), else null */
    .addColumn('customer_id', 'text')
    /** 1: its balance may never go below zero (customer accounts keep a running balance) */
    .addColumn('non_negative', 'integer', col => col.notNull())
    .addColumn('created_at', timestamp, col => col.notNull())
    .addPrimaryKeyConstraint('ledger_accounts_pkey', ['id'])
    .addForeignKeyConstraint('ledger_accounts_customer_id_fkey', ['customer_id'], 'accounts', ['id'])
    .execute()

  await db.schema.createTable('ledger_transactions')
    .addColumn('id', bytewise, col => col.notNull())
    .addColumn('idempotency_key', bytewise, col => col.notNull())
    /** SHA-256 of the transaction's inputs: the same key with other inputs is a conflict */
    .addColumn('input_hash', 'text', col => col.notNull())
    .addColumn('kind', 'text', col => col.notNull())
    /** JSON: why it exists (request id, metering period, chain transaction, admin reason) */
    .addColumn('cause', 'text', col => col.notNull())
    /** The transaction this one reverses, if it is a correction */
    .addColumn('reverses', bytewise)
    .addColumn('created_at', timestamp, col => col.notNull())
    .addPrimaryKeyConstraint('ledger_transactions_pkey', ['id'])
    .addUniqueConstraint('ledger_transactions_idempotency_key_key', ['idempotency_key'])
    .addForeignKeyConstraint('ledger_transactions_reverses_fkey', ['reverses'], 'ledger_transactions', ['id'])
    .execute()
  // a transaction is reversed at most once
  await db.schema.createIndex('ledger_transactions_reverses_key').on('ledger_transactions').column('reverses').unique().where(sql.ref('reverses'), 'is not', null).execute()

  await db.schema.createTable('ledger_postings')
    .addColumn('transaction_id', bytewise, col => col.notNull())
    .addColumn('seq', 'integer', col => col.notNull())
    .addColumn('account_id', bytewise, col => col.notNull())
    .addColumn('amount', money, col => col.notNull())
    .addColumn('balance_after', money)
    .addColumn('account_seq', 'bigint')
    .addColumn('created_at', timestamp, col => col.notNull())
    .addPrimaryKeyConstraint('ledger_postings_pkey', ['transaction_id', 'seq'])
    .addForeignKeyConstraint('ledger_postings_transaction_id_fkey', ['transaction_id'], 'ledger_transactions', ['id'])
    .addForeignKeyConstraint('ledger_postings_account_id_fkey', ['account_id'], 'ledger_accounts', ['id'])
    .execute()
  // the latest posting of a running-balance account, and the guard against two writers
  await db.schema.createIndex('ledger_postings_account_seq_key').on('ledger_postings').columns(['account_id', 'account_seq']).unique().execute()
  await db.schema.createIndex('ledger_postings_account_transaction_idx').on('ledger_postings').columns(['account_id', 'transaction_id']).execute()

  await db.schema.createTable('ledger_holds')
    .addColumn('id', bytewise, col => col.notNull())
    .addColumn('customer_id', 'text', col => col.notNull())
    .addColumn('amount', money, col => col.notNull())
    /** What the hold pays for when settled */
    .addColumn('revenue_account', 'text', col => col.notNull())
    /** pending, settled or voided */
    .addColumn('status', 'text', col => col.notNull())
    /** Usage recorded so far (checkpoints while a download runs), in base units */
    .addColumn('used', money, col => col.notNull())
    /** The process instance that placed it: it settles its own holds after a crash */
    .addColumn('owner', 'text', col => col.notNull())
    .addColumn('hold_transaction_id', bytewise, col => col.notNull())
    .addColumn('final_transaction_id', bytewise)
    .addColumn('cause', 'text', col => col.notNull())
    /** Usage reporting: the delivery lane, the bucket (if any) and the bytes sent when final */
    .addColumn('lane', 'text')
    .addColumn('bucket', 'text')
    .addColumn('bytes', 'bigint', col => col.notNull().defaultTo(0))
    .addColumn('created_ms', 'bigint', col => col.notNull())
    .addColumn('created_at', timestamp, col => col.notNull())
    .addPrimaryKeyConstraint('ledger_holds_pkey', ['id'])
    .addForeignKeyConstraint('ledger_holds_hold_transaction_id_fkey', ['hold_transaction_id'], 'ledger_transactions', ['id'])
    .addForeignKeyConstraint('ledger_holds_final_transaction_id_fkey', ['final_transaction_id'], 'ledger_transactions', ['id'])
    .execute()
  await db.schema.createIndex('ledger_holds_pending_idx').on('ledger_holds').columns(['owner', 'status']).execute()
  await db.schema.createIndex('ledger_holds_usage_idx').on('ledger_holds').columns(['customer_id', 'created_ms']).execute()

  // An object's storage, from its creation to its deletion; written in the object's transaction
  await db.schema.createTable('storage_intervals')
    .addColumn('id', bytewise, col => col.notNull())
    .addColumn('customer_id', 'text', col => col.notNull())
    .addColumn('bucket', bytewise, col => col.notNull())
    .addColumn('key', bytewise, col => col.notNull())
    .addColumn('size', 'bigint', col => col.notNull())
    /** JSON array of the backends the object is stored on (each is priced) */
    .addColumn('backends', 'text', col => col.notNull())
    .addColumn('started_ms', 'bigint', col => col.notNull())
    .addColumn('ended_ms', 'bigint')
    .addPrimaryKeyConstraint('storage_intervals_pkey', ['id'])
    .execute()
  await db.schema.createIndex('storage_intervals_open_key').on('storage_intervals').columns(['bucket', 'key']).unique().where(sql.ref('ended_ms'), 'is', null).execute()
  await db.schema.createIndex('storage_intervals_customer_idx').on('storage_intervals').columns(['customer_id', 'started_ms']).execute()

  // One row per customer and billed storage period: the period's charge is posted exactly once
  await db.schema.createTable('storage_periods')
    .addColumn('customer_id', 'text', col => col.notNull())
    .addColumn('period_start_ms', 'bigint', col => col.notNull())
    .addColumn('period_end_ms', 'bigint', col => col.notNull())
    /** Byte-milliseconds stored in the period (all backends) */
    .addColumn('byte_ms', money, col => col.notNull())
    /** Cumulative exact cost up to the period's end, as a numerator over GiB x month-ms */
    .addColumn('cost_numerator', money, col => col.notNull())
    .addColumn('amount', money, col => col.notNull())
    .addColumn('transaction_id', bytewise)
    .addPrimaryKeyConstraint('storage_periods_pkey', ['customer_id', 'period_start_ms'])
    .execute()

  // Every step of an account's billing status (active, grace, suspended), never rewritten
  await db.schema.createTable('billing_status_events')
    .addColumn('id', bytewise, col => col.notNull())
    .addColumn('customer_id', 'text', col => col.notNull())
    .addColumn('status', 'text', col => col.notNull())
    .addColumn('reason', 'text', col => col.notNull())
    .addColumn('at_ms', 'bigint', col => col.notNull())
    .addPrimaryKeyConstraint('billing_status_events_pkey', ['id'])
    .execute()
  await db.schema.createIndex('billing_status_events_customer_idx').on('billing_status_events').columns(['customer_id', 'at_ms']).execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  for (const table of ['billing_status_events', 'storage_periods', 'storage_intervals', 'ledger_holds', 'ledger_postings', 'ledger_transactions', 'ledger_accounts']) {
    await db.schema.dropTable(table).execute()
  }
  await db.schema.alterTable('access_keys').dropColumn('default_lane').execute()
}
