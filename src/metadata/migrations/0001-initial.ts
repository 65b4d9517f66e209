/**
 * The first schema: accounts, access keys, buckets, contents and their locations, objects.
 *
 * Dialect differences are kept to what each engine needs:
 * - Keys and bucket names compare bytewise, as S3 orders them. SQLite's default BINARY collation
 *   already does; on PostgreSQL the columns take `COLLATE "C"`, whatever the database's default.
 * - Timestamps are `timestamptz` on PostgreSQL and ISO-8601 text on SQLite (which sorts right).
 * - JSON values are text on both, so that both hand back exactly what was written.
 *
 * Constraints carry explicit names because the store tells PostgreSQL's violations apart by them.
 */
import { sql } from 'kysely'
import type { Kysely } from 'kysely'
import type { DialectName } from '../schema.ts'

export async function up (db: Kysely<any>, dialect: DialectName): Promise<void> {
  const pg = dialect === 'postgres'
  const timestamp = pg ? sql`timestamptz` : sql`text`
  const bytewise = pg ? sql`text collate "C"` : sql`text`

  await db.schema.createTable('accounts')
    .addColumn('id', 'text', col => col.notNull())
    .addColumn('name', 'text', col => col.notNull())
    .addColumn('created_at', timestamp, col => col.notNull())
    .addPrimaryKeyConstraint('accounts_pkey', ['id'])
    .execute()

  await db.schema.createTable('access_keys')
    .addColumn('access_key_id', 'text', col => col.notNull())
    .addColumn('account_id', 'text', col => col.notNull())
    .addColumn('secret_enc', 'text', col => col.notNull())
    .addColumn('token_hash', 'text', col => col.notNull())
    .addColumn('created_at', timestamp, col => col.notNull())
    .addColumn('revoked_at', timestamp)
    .addPrimaryKeyConstraint('access_keys_pkey', ['access_key_id'])
    .addUniqueConstraint('access_keys_token_hash_key', ['token_hash'])
    .addForeignKeyConstraint('access_keys_account_id_fkey', ['account_id'], 'accounts', ['id'])
    .execute()
  await db.schema.createIndex('access_keys_account_id_idx').on('access_keys').column('account_id').execute()

  await db.schema.createTable('buckets')
    .addColumn('name', bytewise, col => col.notNull())
    .addColumn('owner_id', 'text', col => col.notNull())
    .addColumn('backends', 'text', col => col.notNull())
    .addColumn('public', 'boolean', col => col.notNull().defaultTo(false))
    .addColumn('created_at', timestamp, col => col.notNull())
    .addPrimaryKeyConstraint('buckets_pkey', ['name'])
    .addForeignKeyConstraint('buckets_owner_id_fkey', ['owner_id'], 'accounts', ['id'])
    .execute()
  await db.schema.createIndex('buckets_owner_id_idx').on('buckets').columns(['owner_id', 'name']).execute()

  await db.schema.createTable('contents')
    .addColumn('id', 'text', col => col.notNull())
    .addColumn('size', 'bigint', col => col.notNull())
    .addColumn('ref_count', 'bigint', col => col.notNull().defaultTo(0))
    .addColumn('created_at', timestamp, col => col.notNull())
    .addPrimaryKeyConstraint('contents_pkey', ['id'])
    .addCheckConstraint('contents_size_check', sql`size >= 0`)
    // A count below zero is a bookkeeping bug: fail the transaction rather than store it
    .addCheckConstraint('contents_ref_count_check', sql`ref_count >= 0`)
    .execute()
  // Garbage collection reads the orphans oldest first; the index holds only those
  await db.schema.createIndex('contents_orphaned_idx').on('contents').columns(['created_at', 'id'])
    .where(sql<boolean>`ref_count = 0`)
    .execute()

  await db.schema.createTable('content_locations')
    .addColumn('content_id', 'text', col => col.notNull())
    .addColumn('backend', 'text', col => col.notNull())
    .addColumn('address', 'text', col => col.notNull())
    .addColumn('extra', 'text', col => col.notNull().defaultTo('{}'))
    .addPrimaryKeyConstraint('content_locations_pkey', ['content_id', 'backend'])
    // A location lives and dies with its content row
    .addForeignKeyConstraint('content_locations_content_id_fkey', ['content_id'], 'contents', ['id'], fk => fk.onDelete('cascade'))
    .execute()
  await db.schema.createIndex('content_locations_address_idx').on('content_locations').column('address').execute()

  await db.schema.createTable('objects')
    .addColumn('bucket', bytewise, col => col.notNull())
    .addColumn('key', bytewise, col => col.notNull())
    .addColumn('content_id', 'text', col => col.notNull())
    .addColumn('size', 'bigint', col => col.notNull())
    .addColumn('etag', 'text', col => col.notNull())
    .addColumn('content_type', 'text', col => col.notNull())
    .addColumn('metadata', 'text', col => col.notNull())
    .addColumn('created_at', timestamp, col => col.notNull())
    // The primary key's index is also the listing index: (bucket, key) in bytewise order
    .addPrimaryKeyConstraint('objects_pkey', ['bucket', 'key'])
    .addForeignKeyConstraint('objects_bucket_fkey', ['bucket'], 'buckets', ['name'])
    .addForeignKeyConstraint('objects_content_id_fkey', ['content_id'], 'contents', ['id'])
    .execute()
  // Serves the foreign key (deleting a content) and listContentBuckets
  await db.schema.createIndex('objects_content_id_idx').on('objects').columns(['content_id', 'bucket']).execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  for (const table of ['objects', 'content_locations', 'contents', 'buckets', 'access_keys', 'accounts']) {
    await db.schema.dropTable(table).execute()
  }
}
