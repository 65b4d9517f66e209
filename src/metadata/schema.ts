/**
 * The database schema as Kysely sees it: one interface per table, with column types that say
 * what each dialect really returns. Where SQLite and PostgreSQL differ (timestamps, booleans,
 * 64-bit integers) the select type is the union and the store normalises it in one place
 * (`kysely-store.ts`), so no cast pretends a SQLite string is a `Date`.
 */
import type { ColumnType } from 'kysely'

/**
 * `timestamptz` on PostgreSQL (read back as `Date`), ISO-8601 text on SQLite (read back as a
 * string). Written as an ISO-8601 string on both, which PostgreSQL parses, and never updated.
 */
export type Timestamp = ColumnType<Date | string, string, never>

/** A timestamp that is rewritten when the row is (an object's last-modified time). */
export type MutableTimestamp = ColumnType<Date | string, string, string>

/** A nullable timestamp that may be set later (`revoked_at`). */
export type NullableTimestamp = ColumnType<Date | string | null, string | null, string | null>

/**
 * `bigint` on both dialects. PostgreSQL's int8 parser (see `postgres.ts`) yields a number when the
 * value is a safe integer and a `bigint` otherwise; node:sqlite yields a number (and throws on
 * values beyond 2^53, which sizes of real contents never reach).
 */
export type Int64 = ColumnType<number | bigint, number, number>

/** `boolean` on PostgreSQL; SQLite stores 0 / 1 and reads back a number. */
export type Bool = ColumnType<boolean | number, boolean, boolean>

export interface AccountsTable {
  id: string
  name: string
  created_at: Timestamp
}

export interface AccessKeysTable {
  access_key_id: string
  account_id: string
  /** The secret sealed by `SecretBox` (base64 text); the plaintext is never stored */
  secret_enc: string
  /** SHA-256 (hex) of the bearer token issued with the key */
  token_hash: string
  created_at: Timestamp
  revoked_at: NullableTimestamp
}

export interface BucketsTable {
  name: string
  owner_id: string
  /** JSON array of backend names */
  backends: string
  public: Bool
  created_at: Timestamp
}

export interface ContentsTable {
  /** Canonical CID */
  id: string
  size: Int64
  ref_count: Int64
  created_at: Timestamp
}

export interface ContentLocationsTable {
  content_id: string
  backend: string
  address: string
  /** JSON object of further native addresses */
  extra: string
}

export interface ObjectsTable {
  bucket: string
  key: string
  content_id: string
  size: Int64
  etag: string
  content_type: string
  /** JSON object of user metadata */
  metadata: string
  /** When this version of the object was written (S3's Last-Modified) */
  created_at: MutableTimestamp
}

/** Every table of the metadata database, keyed by table name. */
export interface Database {
  accounts: AccountsTable
  access_keys: AccessKeysTable
  buckets: BucketsTable
  contents: ContentsTable
  content_locations: ContentLocationsTable
  objects: ObjectsTable
}

/** The SQL dialects the store runs on. */
export type DialectName = 'sqlite' | 'postgres'
