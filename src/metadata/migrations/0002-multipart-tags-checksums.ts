/**
 * What the S3 API needs beyond plain objects:
 * - `objects.tags` and `objects.checksums`, JSON text like `objects.metadata`. Rows written before
 *   this migration get `{}` for both (a constant default, so neither dialect rewrites the table).
 * - `multipart_uploads`, one row per upload in progress, and `multipart_parts`, one row per part.
 *
 * The conventions of 0001 hold: keys, bucket names and upload ids compare bytewise (`COLLATE "C"`
 * on PostgreSQL), timestamps are `timestamptz` / ISO-8601 text, JSON is text, and constraints
 * carry names because the store tells PostgreSQL's violations apart by them.
 *
 * SQLite's ALTER TABLE adds one column per statement, hence one statement per column.
 */
import { sql } from 'kysely'
import type { Kysely } from 'kysely'
import type { DialectName } from '../schema.ts'

export async function up (db: Kysely<any>, dialect: DialectName): Promise<void> {
  const pg = dialect === 'postgres'
  const timestamp = pg ? sql`timestamptz` : sql`text`
  const bytewise = pg ? sql`text collate "C"` : sql`text`

  await db.schema.alterTable('objects').addColumn('tags', 'text', col => col.notNull().defaultTo('{}')).execute()
  await db.schema.alterTable('objects').addColumn('checksums', 'text', col => col.notNull().defaultTo('{}')).execute()

  await db.schema.createTable('multipart_uploads')
    .addColumn('upload_id', bytewise, col => col.notNull())
    .addColumn('bucket', bytewise, col => col.notNull())
    .addColumn('key', bytewise, col => col.notNull())
    .addColumn('initiator_id', 'text', col => col.notNull())
    .addColumn('content_type', 'text', col => col.notNull())
    .addColumn('metadata', 'text', col => col.notNull())
    .addColumn('tags', 'text', col => col.notNull().defaultTo('{}'))
    .addColumn('checksum_algorithm', 'text')
    .addColumn('checksum_type', 'text')
    .addColumn('created_at', timestamp, col => col.notNull())
    .addPrimaryKeyConstraint('multipart_uploads_pkey', ['upload_id'])
    // A bucket with uploads in progress cannot simply vanish: deleteBucket aborts them first
    .addForeignKeyConstraint('multipart_uploads_bucket_fkey', ['bucket'], 'buckets', ['name'], fk => fk.onDelete('restrict'))
    .addForeignKeyConstraint('multipart_uploads_initiator_id_fkey', ['initiator_id'], 'accounts', ['id'])
    .execute()
  // The listing order (bytewise key, then creation order, which upload ids sort in); it also
  // serves the foreign key when a bucket is deleted
  await db.schema.createIndex('multipart_uploads_bucket_key_idx').on('multipart_uploads').columns(['bucket', 'key', 'upload_id']).execute()
  // The expiry sweeper reads the oldest uploads first
  await db.schema.createIndex('multipart_uploads_created_at_idx').on('multipart_uploads').columns(['created_at', 'upload_id']).execute()

  await db.schema.createTable('multipart_parts')
    .addColumn('upload_id', bytewise, col => col.notNull())
    .addColumn('part_number', 'integer', col => col.notNull())
    .addColumn('size', 'bigint', col => col.notNull())
    .addColumn('etag', 'text', col => col.notNull())
    .addColumn('checksums', 'text', col => col.notNull().defaultTo('{}'))
    .addColumn('staging_path', 'text', col => col.notNull())
    .addColumn('created_at', timestamp, col => col.notNull())
    // The primary key's index is also the listing index: parts in number order
    .addPrimaryKeyConstraint('multipart_parts_pkey', ['upload_id', 'part_number'])
    .addForeignKeyConstraint('multipart_parts_upload_id_fkey', ['upload_id'], 'multipart_uploads', ['upload_id'], fk => fk.onDelete('cascade'))
    .addCheckConstraint('multipart_parts_part_number_check', sql`part_number between 1 and 10000`)
    .addCheckConstraint('multipart_parts_size_check', sql`size >= 0`)
    .execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('multipart_parts').execute()
  await db.schema.dropTable('multipart_uploads').execute()
  await db.schema.alterTable('objects').dropColumn('checksums').execute()
  await db.schema.alterTable('objects').dropColumn('tags').execute()
}
