/**
 * The metadata store: accounts, access keys, buckets, objects and contents. One interface, two
 * dialects (SQLite through node:sqlite, PostgreSQL through pg), both behind Kysely; the shared
 * suite in test/compliance/metadata-store.ts runs against each.
 *
 * Reference counting lives here: an object row points at a content row, and every write that
 * adds, replaces or deletes an object adjusts the counts in the same transaction.
 */
import type { BackendName } from '../backends/backend.ts'

export interface Account {
  id: string
  name: string
  createdAt: Date
}

export interface AccessKey {
  accessKeyId: string
  accountId: string
  /** Decrypted secret, present only where the caller asked for it (SigV4 verification) */
  secretAccessKey?: string
  createdAt: Date
  revokedAt: Date | null
}

export interface NewAccessKey {
  accessKeyId: string
  accountId: string
  secretAccessKey: string
  /** SHA-256 (hex) of the bearer token issued with this key; the token itself is never stored */
  tokenHash: string
}

export interface Bucket {
  name: string
  ownerId: string
  backends: BackendName[]
  public: boolean
  createdAt: Date
}

/** Where a content lives on one backend, and in what state. */
export interface ContentLocation {
  backend: BackendName
  /** The backend's native address (UnixFS CID, v1 infohash) */
  address: string
  /** Further native addresses, such as `magnet` or `btmh` */
  extra: Record<string, string>
}

export interface Content {
  /** Canonical id: CIDv1 raw over SHA-256 of the bytes */
  id: string
  size: number
  /** Objects that refer to this content */
  refCount: number
  locations: ContentLocation[]
  createdAt: Date
}

export interface ObjectRecord {
  bucket: string
  key: string
  contentId: string
  size: number
  /** Hex MD5 of the bytes, the S3 ETag without quotes (multipart uploads use their own form) */
  etag: string
  contentType: string
  /** User metadata (x-amz-meta-*) and stored response headers (cache-control …) */
  metadata: Record<string, string>
  createdAt: Date
}

export interface PutObjectInput {
  bucket: string
  key: string
  /** The content; inserted when new, otherwise its locations are merged */
  content: { id: string, size: number, locations: ContentLocation[] }
  etag: string
  contentType: string
  metadata: Record<string, string>
}

export interface PutObjectResult {
  object: ObjectRecord
  /** Content the write replaced and whose count dropped to zero: its backend data can go */
  orphaned: Content | null
}

export interface ListObjectsInput {
  bucket: string
  prefix?: string
  delimiter?: string
  /** Return keys strictly after this one (a cursor, a marker or start-after) */
  after?: string
  /** @default 1000 */
  limit?: number
}

export interface ListObjectsResult {
  objects: ObjectRecord[]
  commonPrefixes: string[]
  /** True when more entries follow the last one returned */
  truncated: boolean
  /** The key or common prefix to pass as `after` to continue, when truncated */
  next?: string
}

export interface MetadataStore {
  readonly dialect: 'sqlite' | 'postgres'

  /** Run pending migrations; safe to call on every start and from several processes. */
  migrate(): Promise<void>
  close(): Promise<void>

  createAccount(input: { id: string, name: string }): Promise<Account>
  getAccount(id: string): Promise<Account | null>
  listAccounts(): Promise<Account[]>

  createAccessKey(input: NewAccessKey): Promise<AccessKey>
  /** With the decrypted secret; null for unknown or revoked keys unless `includeRevoked` */
  getAccessKey(accessKeyId: string, options?: { includeRevoked?: boolean }): Promise<AccessKey | null>
  /** The active key whose bearer token hashes to `tokenHash` */
  getAccessKeyByTokenHash(tokenHash: string): Promise<AccessKey | null>
  listAccessKeys(accountId: string): Promise<AccessKey[]>
  /** @returns false when no active key had that id */
  revokeAccessKey(accessKeyId: string): Promise<boolean>

  /** @throws AtlasError BucketAlreadyOwnedByYou / BucketAlreadyExists */
  createBucket(input: Omit<Bucket, 'createdAt'>): Promise<Bucket>
  getBucket(name: string): Promise<Bucket | null>
  listBuckets(ownerId: string): Promise<Bucket[]>
  /** @throws AtlasError NoSuchBucket, BucketNotEmpty */
  deleteBucket(name: string): Promise<void>

  /**
   * Create or replace the object at (bucket, key) and take a reference on its content, in one
   * transaction. A replaced object's content loses a reference.
   *
   * @throws AtlasError NoSuchBucket when the bucket is gone
   */
  putObject(input: PutObjectInput): Promise<PutObjectResult>
  getObject(bucket: string, key: string): Promise<ObjectRecord | null>
  /** @returns the deleted object and its content when that lost its last reference */
  deleteObject(bucket: string, key: string): Promise<{ object: ObjectRecord, orphaned: Content | null } | null>
  listObjects(input: ListObjectsInput): Promise<ListObjectsResult>

  getContent(id: string): Promise<Content | null>
  /** The content that has `address` as a native address on some backend */
  getContentByAddress(address: string): Promise<Content | null>
  /** Buckets (with their visibility) whose objects refer to the content */
  listContentBuckets(contentId: string): Promise<Bucket[]>
  /** Contents whose count is zero: candidates for removal from the backends */
  listOrphanedContents(limit: number): Promise<Content[]>
  /**
   * Delete the content row if, and only if, its count is still zero.
   * @returns true when deleted
   */
  deleteContentIfOrphaned(id: string): Promise<boolean>
}
