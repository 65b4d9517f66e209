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
  /** The delivery lane of this key's requests that name none; absent: the gateway default */
  defaultLane?: string
}

export interface NewAccessKey {
  accessKeyId: string
  accountId: string
  secretAccessKey: string
  /** SHA-256 (hex) of the bearer token issued with this key; the token itself is never stored */
  tokenHash: string
  defaultLane?: string
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
  /** S3 object tags, key → value; `{}` when the object has none */
  tags: Record<string, string>
  /** Checksums of the bytes, algorithm → base64 (`{ CRC32: '…', SHA256: '…' }`); `{}` when none */
  checksums: Record<string, string>
  createdAt: Date
}

/**
 * Tags as a caller hands them over: a map, or key–value pairs in the order a client sent them
 * (`[...new URLSearchParams(xAmzTagging)]`, a parsed `<TagSet>`), so that the store can refuse a
 * key that appears twice rather than keep the last one.
 *
 * The store enforces S3's limits (see {@link MAX_OBJECT_TAGS}) and throws AtlasError `InvalidTag`
 * otherwise: at most 10 tags, keys 1 to 128 UTF-16 code units, values 0 to 256, no key twice,
 * well-formed text without NUL.
 */
export type TagsInput = Readonly<Record<string, string>> | ReadonlyArray<readonly [key: string, value: string]>

/** Most tags an object may carry (S3's limit) */
export const MAX_OBJECT_TAGS = 10
/** Longest tag key, in UTF-16 code units */
export const MAX_TAG_KEY_LENGTH = 128
/** Longest tag value, in UTF-16 code units */
export const MAX_TAG_VALUE_LENGTH = 256

export interface PutObjectInput {
  bucket: string
  key: string
  /** The content; inserted when new, otherwise its locations are merged */
  content: { id: string, size: number, locations: ContentLocation[] }
  etag: string
  contentType: string
  metadata: Record<string, string>
  /**
   * The new object's tags (x-amz-tagging, or what CopyObject carries over). A put replaces the
   * whole object, tags included.
   * @default {}
   */
  tags?: TagsInput
  /**
   * Checksums of the bytes, algorithm → base64.
   * @default {}
   */
  checksums?: Record<string, string>
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

/** Lowest and highest part numbers S3 allows */
export const MIN_PART_NUMBER = 1
export const MAX_PART_NUMBER = 10_000

/** A multipart upload in progress. */
export interface MultipartUpload {
  /**
   * Opaque and URL-safe (lowercase Crockford base32). Ids sort bytewise in the order the uploads
   * were created, which is how S3's `upload-id-marker` and its per-key order agree.
   */
  uploadId: string
  bucket: string
  key: string
  /** The account that initiated the upload */
  initiatorId: string
  /** The Content-Type the object will get */
  contentType: string
  /** The metadata the object will get, as {@link ObjectRecord.metadata} */
  metadata: Record<string, string>
  /** The tags the object will get (x-amz-tagging at CreateMultipartUpload) */
  tags: Record<string, string>
  /** x-amz-checksum-algorithm named at creation (`CRC32`, `SHA256` …), or null */
  checksumAlgorithm: string | null
  /** x-amz-checksum-type named at creation (`COMPOSITE`, `FULL_OBJECT`), or null */
  checksumType: string | null
  /** When the upload was initiated (S3's `Initiated`) */
  createdAt: Date
}

export interface CreateMultipartUploadInput {
  bucket: string
  key: string
  initiatorId: string
  contentType: string
  metadata: Record<string, string>
  /** @default {} */
  tags?: TagsInput
  /** @default null */
  checksumAlgorithm?: string | null
  /** @default null */
  checksumType?: string | null
}

/** One uploaded part of a multipart upload. */
export interface Part {
  uploadId: string
  /** 1 to 10,000 */
  partNumber: number
  size: number
  /** Hex MD5 of the part's bytes */
  etag: string
  /** Checksums of the part's bytes, algorithm → base64 */
  checksums: Record<string, string>
  /** Where the gateway staged the bytes; the store only records it */
  stagingPath: string
  /** When this version of the part was uploaded (S3's `LastModified` of a part) */
  createdAt: Date
}

export interface PutPartInput {
  uploadId: string
  /** 1 to 10,000; anything else is AtlasError `InvalidArgument` */
  partNumber: number
  size: number
  etag: string
  /** @default {} */
  checksums?: Record<string, string>
  stagingPath: string
}

export interface ListPartsOptions {
  /** Return parts with numbers strictly above this one (S3's `part-number-marker`) */
  after?: number
  /** @default 1000 */
  limit?: number
}

export interface ListPartsResult {
  /** In part-number order */
  parts: Part[]
  /** True when more parts follow the last one returned */
  truncated: boolean
  /** The part number to pass as `after` to continue, when truncated */
  next?: number
}

export interface ListMultipartUploadsOptions {
  prefix?: string
  delimiter?: string
  /** S3's `key-marker`: start after this key (or after every key under it, when it is a common prefix) */
  keyMarker?: string
  /**
   * S3's `upload-id-marker`: with `keyMarker`, uploads of that very key whose ids sort after this
   * one are listed too. Ignored without `keyMarker`, as S3 does.
   */
  uploadIdMarker?: string
  /** @default 1000 */
  limit?: number
}

export interface ListMultipartUploadsResult {
  /** By key (bytewise), then by creation (upload id) */
  uploads: MultipartUpload[]
  commonPrefixes: string[]
  /** True when more entries follow the last one returned */
  truncated: boolean
  /** When truncated: the key of the last upload, or the last common prefix */
  nextKeyMarker?: string
  /** When truncated and the last entry is an upload: its id */
  nextUploadIdMarker?: string
}

export interface CompleteMultipartUploadInput {
  uploadId: string
  /** The object to write, as {@link MetadataStore.putObject} takes it; bucket and key must be the upload's */
  object: PutObjectInput
  /**
   * The parts the object was assembled from, as the client listed them. When given, each must
   * still be stored with that etag when the upload row is locked, otherwise AtlasError
   * `InvalidPart` and nothing changes (a part replaced concurrently is not silently dropped).
   * Stored parts left out of the list are deleted like the others, as S3 discards them.
   */
  parts?: ReadonlyArray<{ partNumber: number, etag: string }>
}

export interface CompleteMultipartUploadResult extends PutObjectResult {
  /** Every part row the completion deleted: their staging files can go */
  parts: Part[]
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
  /**
   * Delete an empty bucket. Multipart uploads in progress do not keep it alive (S3 refuses only
   * for objects): they are aborted in the same transaction, and their parts returned so that
   * the caller removes the staged bytes.
   *
   * @throws AtlasError NoSuchBucket, BucketNotEmpty (then nothing is aborted)
   */
  deleteBucket(name: string): Promise<{ abortedParts: Part[] }>

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
  /**
   * Replace the object's whole tag set; `{}` removes every tag (DeleteObjectTagging). The object
   * keeps its Last-Modified time and ETag, as in S3.
   *
   * @returns the object with its new tags
   * @throws AtlasError InvalidTag, NoSuchBucket, NoSuchKey
   */
  putObjectTags(bucket: string, key: string, tags: TagsInput): Promise<ObjectRecord>

  /**
   * Start a multipart upload. The store generates the id.
   *
   * @throws AtlasError NoSuchBucket, NoSuchAccount (initiator), InvalidTag, InvalidObjectKey
   */
  createMultipartUpload(input: CreateMultipartUploadInput): Promise<MultipartUpload>
  /** The upload in progress, or null when unknown, completed or aborted */
  getMultipartUpload(uploadId: string): Promise<MultipartUpload | null>
  /**
   * Record a part, replacing any earlier part with the same number. Waits for, and loses to, a
   * completion or abort of the upload that is under way.
   *
   * @returns the part row it replaced, whose staging file the caller may delete (unless it has
   * the same `stagingPath`), or null
   * @throws AtlasError NoSuchUpload, InvalidArgument (part number, size)
   */
  putPart(input: PutPartInput): Promise<{ replaced: Part | null }>
  /**
   * The upload's parts in number order, a page at a time (S3 ListParts).
   * @throws AtlasError NoSuchUpload, InvalidArgument
   */
  listParts(uploadId: string, options?: ListPartsOptions): Promise<ListPartsResult>
  /**
   * The bucket's uploads in progress, in S3's order: by key (bytewise), then by creation. With a
   * delimiter, keys roll up into common prefixes, each counting as one entry toward `limit`.
   *
   * @throws AtlasError NoSuchBucket, InvalidArgument
   */
  listMultipartUploads(bucket: string, options?: ListMultipartUploadsOptions): Promise<ListMultipartUploadsResult>
  /**
   * Turn the upload into an object, in one transaction: lock the upload, write the object
   * exactly as {@link putObject} does (references included), delete the upload and its parts.
   * Of two completions (or a completion and an abort) of one upload exactly one succeeds.
   *
   * @throws AtlasError NoSuchUpload (also when the object's bucket or key is not the upload's),
   * InvalidPart, NoSuchBucket, and what putObject throws
   */
  completeMultipartUpload(input: CompleteMultipartUploadInput): Promise<CompleteMultipartUploadResult>
  /**
   * Delete the upload and its parts.
   * @returns the deleted parts (their staging files can go), or null when the upload is unknown
   */
  abortMultipartUpload(uploadId: string): Promise<Part[] | null>
  /** Uploads created before `olderThan`, oldest first: for the expiry sweeper, which aborts them */
  listStaleMultipartUploads(olderThan: Date, limit: number): Promise<MultipartUpload[]>

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
