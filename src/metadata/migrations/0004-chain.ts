/**
 * BTT on TRON (src/billing/chain/): linked wallets and their challenges, deposits found on chain
 * with the scan cursor that found them, and withdrawals with the signed transaction each one
 * broadcasts.
 *
 * Money columns follow 0003 (numeric(78, 0) on PostgreSQL, decimal text on SQLite: a uint256
 * fits). Times are epoch milliseconds in `bigint` columns. Addresses are base58check text (`T…`),
 * transaction ids 64 lowercase hex digits.
 */
import { sql } from 'kysely'
import type { Kysely } from 'kysely'
import type { DialectName } from '../schema.ts'

export async function up (db: Kysely<any>, dialect: DialectName): Promise<void> {
  const pg = dialect === 'postgres'
  const bytewise = pg ? sql`text collate "C"` : sql`text`
  const money = pg ? sql`numeric(78, 0)` : sql`text`

  // Where a deposit scan goes on from: one row per (token contract, deposit address), written in
  // the same transaction as the deposits of the blocks it moved past
  await db.schema.createTable('chain_cursors')
    .addColumn('name', bytewise, col => col.notNull())
    /** The chain's genesis block id: a database pointed at another chain (or a restarted dev chain) is told apart */
    .addColumn('genesis_id', 'text', col => col.notNull())
    /** The next solidified block to scan */
    .addColumn('next_block', 'bigint', col => col.notNull())
    .addColumn('updated_ms', 'bigint', col => col.notNull())
    .addPrimaryKeyConstraint('chain_cursors_pkey', ['name'])
    .execute()

  // A TRON address belongs to one account at most
  await db.schema.createTable('chain_wallets')
    .addColumn('address', bytewise, col => col.notNull())
    .addColumn('account_id', 'text', col => col.notNull())
    .addColumn('linked_ms', 'bigint', col => col.notNull())
    .addPrimaryKeyConstraint('chain_wallets_pkey', ['address'])
    .addForeignKeyConstraint('chain_wallets_account_id_fkey', ['account_id'], 'accounts', ['id'])
    .execute()
  await db.schema.createIndex('chain_wallets_account_idx').on('chain_wallets').columns(['account_id', 'linked_ms']).execute()

  // Challenges to sign: single use (deleted when used), expiring
  await db.schema.createTable('chain_challenges')
    .addColumn('nonce', bytewise, col => col.notNull())
    .addColumn('account_id', 'text', col => col.notNull())
    .addColumn('created_ms', 'bigint', col => col.notNull())
    .addColumn('expires_ms', 'bigint', col => col.notNull())
    .addPrimaryKeyConstraint('chain_challenges_pkey', ['nonce'])
    .addForeignKeyConstraint('chain_challenges_account_id_fkey', ['account_id'], 'accounts', ['id'])
    .execute()
  await db.schema.createIndex('chain_challenges_account_idx').on('chain_challenges').columns(['account_id', 'expires_ms']).execute()

  // Transfers of the token to the deposit address, found in solidified blocks; credited once
  await db.schema.createTable('chain_deposits')
    .addColumn('tx_id', bytewise, col => col.notNull())
    .addColumn('log_index', 'integer', col => col.notNull())
    .addColumn('block_number', 'bigint', col => col.notNull())
    .addColumn('token_contract', 'text', col => col.notNull())
    .addColumn('from_address', bytewise, col => col.notNull())
    .addColumn('to_address', 'text', col => col.notNull())
    .addColumn('amount', money, col => col.notNull())
    /** The account whose linked wallet sent it; null while the sender is unknown (unattributed) */
    .addColumn('account_id', 'text')
    /** solidified (recorded, not credited yet) or credited */
    .addColumn('state', 'text', col => col.notNull())
    /** The ledger transaction that credited it */
    .addColumn('transaction_id', bytewise)
    .addColumn('recorded_ms', 'bigint', col => col.notNull())
    .addColumn('credited_ms', 'bigint')
    .addPrimaryKeyConstraint('chain_deposits_pkey', ['tx_id', 'log_index'])
    .addForeignKeyConstraint('chain_deposits_account_id_fkey', ['account_id'], 'accounts', ['id'])
    .execute()
  await db.schema.createIndex('chain_deposits_account_idx').on('chain_deposits').columns(['account_id', 'block_number']).execute()
  await db.schema.createIndex('chain_deposits_from_idx').on('chain_deposits').columns(['from_address', 'state']).execute()
  await db.schema.createIndex('chain_deposits_state_idx').on('chain_deposits').columns(['state', 'account_id']).execute()

  // Withdrawals: the hold first, then the signed transaction recorded before its broadcast
  await db.schema.createTable('chain_withdrawals')
    .addColumn('id', bytewise, col => col.notNull())
    .addColumn('account_id', 'text', col => col.notNull())
    .addColumn('to_address', 'text', col => col.notNull())
    .addColumn('amount', money, col => col.notNull())
    /** held, signed, broadcast, confirmed, failed, expired */
    .addColumn('state', 'text', col => col.notNull())
    /** The ledger hold that reserves the amount (its id) */
    .addColumn('hold_id', bytewise)
    .addColumn('tx_id', bytewise)
    /** The whole signed transaction (JSON): what a restart broadcasts again */
    .addColumn('signed_tx', 'text')
    /** The transaction's expiration, chain time (ms) */
    .addColumn('expiration_ms', 'bigint')
    .addColumn('block_number', 'bigint')
    /** The receipt result (SUCCESS, REVERT, …) */
    .addColumn('result', 'text')
    /** Why it failed or expired, or the last broadcast refusal */
    .addColumn('error', 'text')
    .addColumn('broadcasts', 'integer', col => col.notNull().defaultTo(0))
    .addColumn('created_ms', 'bigint', col => col.notNull())
    .addColumn('updated_ms', 'bigint', col => col.notNull())
    .addPrimaryKeyConstraint('chain_withdrawals_pkey', ['id'])
    .addUniqueConstraint('chain_withdrawals_tx_id_key', ['tx_id'])
    .addForeignKeyConstraint('chain_withdrawals_account_id_fkey', ['account_id'], 'accounts', ['id'])
    .execute()
  await db.schema.createIndex('chain_withdrawals_account_idx').on('chain_withdrawals').columns(['account_id', 'created_ms']).execute()
  await db.schema.createIndex('chain_withdrawals_state_idx').on('chain_withdrawals').column('state').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  for (const table of ['chain_withdrawals', 'chain_deposits', 'chain_challenges', 'chain_wallets', 'chain_cursors']) {
    await db.schema.dropTable(table).execute()
  }
}
