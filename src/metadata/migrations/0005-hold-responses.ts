/**
 * `ledger_holds.responses`: how many responses a hold paid for. A hold of its own pays for one;
 * a pooled egress lease (src/billing/spend-pool.ts) for every small response it covered, so
 * that usage reports count responses, not holds. Existing rows count one each.
 */
import type { Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('ledger_holds').addColumn('responses', 'integer', col => col.notNull().defaultTo(1)).execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('ledger_holds').dropColumn('responses').execute()
}
