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
  /** The delivery lane of requests that name none (migration 0003); null: the gateway default */
  default_lane: ColumnType<string | null, string | null | undefined, string | null>
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
  /** JSON object of the object's tags (migration 0002; `{}` for rows written before it) */
  tags: ColumnType<string, string | undefined, string>
  /** JSON object of checksums, algorithm → base64 (migration 0002; `{}` for older rows) */
  checksums: ColumnType<string, string | undefined, string>
}

/** A multipart upload in progress (migration 0002). */
export interface MultipartUploadsTable {
  /** Opaque, URL-safe, and sorting in the order the uploads were created (see `upload-id.ts`) */
  upload_id: string
  bucket: string
  key: string
  /** The account that initiated the upload */
  initiator_id: string
  content_type: string
  /** JSON object of user metadata, as `objects.metadata` */
  metadata: string
  /** JSON object of the tags the object will get */
  tags: string
  /** The checksum algorithm named at creation (`x-amz-checksum-algorithm`), if any */
  checksum_algorithm: string | null
  /** `COMPOSITE` or `FULL_OBJECT` (`x-amz-checksum-type`), if named */
  checksum_type: string | null
  created_at: Timestamp
}

/** A part of a multipart upload (migration 0002). */
export interface MultipartPartsTable {
  upload_id: string
  /** 1 to 10,000 */
  part_number: number
  size: Int64
  /** Hex MD5 of the part's bytes */
  etag: string
  /** JSON object of checksums, algorithm → base64 */
  checksums: string
  /** Where the gateway staged the part's bytes; the store only records it */
  staging_path: string
  /** When this version of the part was uploaded (rewritten when the part is replaced) */
  created_at: MutableTimestamp
}

/** Money: base units of BTT as decimal text (numeric on PostgreSQL, text on SQLite). */
export type Money = ColumnType<string, string, never>

/** A ledger account (migration 0003). */
export interface LedgerAccountsTable {
  id: string
  kind: string
  customer_id: string | null
  non_negative: number
  created_at: Timestamp
}

/** A ledger transaction: append-only (migration 0003). */
export interface LedgerTransactionsTable {
  id: string
  idempotency_key: string
  input_hash: string
  kind: string
  cause: string
  reverses: string | null
  created_at: Timestamp
}

/** One posting of a transaction: append-only (migration 0003). */
export interface LedgerPostingsTable {
  transaction_id: string
  seq: number
  account_id: string
  amount: Money
  balance_after: ColumnType<string | null, string | null, never>
  account_seq: ColumnType<number | bigint | string | null, number | null, never>
  created_at: Timestamp
}

/** A hold: a two-phase charge, pending until settled or voided (migration 0003). */
export interface LedgerHoldsTable {
  id: string
  customer_id: string
  amount: Money
  revenue_account: string
  status: ColumnType<string, string, string>
  used: ColumnType<string, string, string>
  owner: string
  hold_transaction_id: string
  final_transaction_id: ColumnType<string | null, string | null, string | null>
  cause: string
  lane: string | null
  bucket: string | null
  bytes: ColumnType<number | bigint | string, number, number>
  /** Responses the hold paid for (migration 0005): one, or a pooled lease's count */
  responses: ColumnType<number, number | undefined, number>
  created_ms: Int64
  created_at: Timestamp
}

/** An object's storage from creation to deletion (migration 0003). */
export interface StorageIntervalsTable {
  id: string
  customer_id: string
  bucket: string
  key: string
  size: Int64
  backends: string
  started_ms: Int64
  ended_ms: ColumnType<number | bigint | string | null, number | null, number | null>
}

/** A billed storage period of one customer (migration 0003). */
export interface StoragePeriodsTable {
  customer_id: string
  period_start_ms: Int64
  period_end_ms: Int64
  byte_ms: Money
  cost_numerator: Money
  amount: Money
  transaction_id: string | null
}

/** A step of a customer's billing status (migration 0003). */
export interface BillingStatusEventsTable {
  id: string
  customer_id: string
  status: string
  reason: string
  at_ms: Int64
}

/** A deposit scan's position (migration 0004). */
export interface ChainCursorsTable {
  name: string
  genesis_id: ColumnType<string, string, string>
  next_block: ColumnType<number | bigint | string, number, number>
  updated_ms: ColumnType<number | bigint | string, number, number>
}

/** A TRON address linked to an account (migration 0004). */
export interface ChainWalletsTable {
  address: string
  account_id: string
  linked_ms: Int64
}

/** A wallet-link challenge, single use (migration 0004). */
export interface ChainChallengesTable {
  nonce: string
  account_id: string
  created_ms: Int64
  expires_ms: Int64
}

/** A token transfer to the deposit address (migration 0004). */
export interface ChainDepositsTable {
  tx_id: string
  log_index: number
  block_number: Int64
  token_contract: string
  from_address: string
  to_address: string
  amount: Money
  account_id: ColumnType<string | null, string | null, string | null>
  state: ColumnType<string, string, string>
  transaction_id: ColumnType<string | null, string | null, string | null>
  recorded_ms: Int64
  credited_ms: ColumnType<number | bigint | string | null, number | null, number | null>
}

/** A withdrawal to a linked wallet (migration 0004). */
export interface ChainWithdrawalsTable {
  id: string
  account_id: string
  to_address: string
  amount: Money
  state: ColumnType<string, string, string>
  hold_id: ColumnType<string | null, string | null, string | null>
  tx_id: ColumnType<string | null, string | null, string | null>
  signed_tx: ColumnType<string | null, string | null, string | null>
  expiration_ms: ColumnType<number | bigint | string | null, number | null, number | null>
  block_number: ColumnType<number | bigint | string | null, number | null, number | null>
  result: ColumnType<string | null, string | null, string | null>
  error: ColumnType<string | null, string | null, string | null>
  broadcasts: ColumnType<number, number | undefined, number>
  created_ms: Int64
  updated_ms: ColumnType<number | bigint | string, number, number>
}

/** Every table of the metadata database, keyed by table name. */
export interface Database {
  accounts: AccountsTable
  access_keys: AccessKeysTable
  buckets: BucketsTable
  contents: ContentsTable
  content_locations: ContentLocationsTable
  objects: ObjectsTable
  multipart_uploads: MultipartUploadsTable
  multipart_parts: MultipartPartsTable
  ledger_accounts: LedgerAccountsTable
  ledger_transactions: LedgerTransactionsTable
  ledger_postings: LedgerPostingsTable
  ledger_holds: LedgerHoldsTable
  storage_intervals: StorageIntervalsTable
  storage_periods: StoragePeriodsTable
  billing_status_events: BillingStatusEventsTable
  chain_cursors: ChainCursorsTable
  chain_wallets: ChainWalletsTable
  chain_challenges: ChainChallengesTable
  chain_deposits: ChainDepositsTable
  chain_withdrawals: ChainWithdrawalsTable
}

/** The SQL dialects the store runs on. */
export type DialectName = 'sqlite' | 'postgres'
