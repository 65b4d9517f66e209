/**
 * The metadata store over Kysely, one implementation for SQLite and PostgreSQL.
 *
 * Reference counts and concurrency. Every write that adds, replaces or removes an object adjusts
 * the counts of the contents involved in the same transaction, with `ref_count = ref_count ± 1`
 * updates (never read-modify-write in JavaScript). On PostgreSQL several processes write at once,
 * so each such transaction takes its locks in one fixed order, which rules out deadlocks between
 * them:
 *
 * 1. the bucket row, `FOR KEY SHARE` (keeps `deleteBucket` out until commit, lets puts share it);
 * 2. the new content row, inserted if missing (`ON CONFLICT DO NOTHING` takes no lock on a row
 *    that exists);
 * 3. the object row (bucket, key), `FOR UPDATE`, or inserted when absent;
 * 4. the content rows whose counts change, in ascending id order;
 * 5. the new content's location rows, in backend order.
 *
 * Multipart uploads slot into the same order. The upload row comes right after the bucket row:
 * completing an upload takes the bucket `FOR KEY SHARE`, then the upload `FOR UPDATE`, then
 * steps 2 to 5 as a put, then deletes the part rows and the upload. Aborting takes the upload
 * `FOR UPDATE`, then deletes its parts; `deleteBucket` takes the bucket `FOR UPDATE`, then its
 * uploads `FOR UPDATE` in id order, then their parts. Recording a part takes the upload
 * `FOR KEY SHARE`, then the part row `FOR UPDATE` (or inserts it), so it waits for a completion
 * or abort under way and then finds the upload gone; and because those lock the upload before
 * they read or delete its parts, the parts they return are all the parts there were.
 *
 * Garbage collection (`deleteContentIfOrphaned`) deletes a content only while its count is zero;
 * should it delete a content between steps 2 and 3 of a put, the put's foreign-key check fails and
 * the whole transaction is retried (it then inserts the content afresh). Deadlocks and
 * serialization failures are retried too, as a last line of defence.
 *
 * On SQLite all transactions of a process run one at a time on one connection (see
 * `sqlite-dialect.ts`), so the row locks are left out (SQLite has no `FOR UPDATE`).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import type { Kysely, Selectable, Transaction } from 'kysely'
import type { BackendName } from '../backends/backend.ts'
import { AtlasError } from '../core/errors.ts'
import { classifyDbError, isDbError } from './db-errors.ts'
import { compareKeys, isStorableText, prefixUpperBound } from './keys.ts'
import { migrateToLatest } from './migrations/index.ts'
import type {
  AccessKeysTable,
  BucketsTable,
  ContentLocationsTable,
  ContentsTable,
  Database,
  DialectName,
  MultipartPartsTable,
  MultipartUploadsTable,
  ObjectsTable
} from './schema.ts'
import type { SecretBox } from './secret-box.ts'
import { MAX_OBJECT_TAGS, MAX_PART_NUMBER, MAX_TAG_KEY_LENGTH, MAX_TAG_VALUE_LENGTH, MIN_PART_NUMBER } from './store.ts'
import type {
  AccessKey,
  Account,
  Bucket,
  CompleteMultipartUploadInput,
  CompleteMultipartUploadResult,
  Content,
  ContentLocation,
  CreateMultipartUploadInput,
  ListMultipartUploadsOptions,
  ListMultipartUploadsResult,
  ListObjectsInput,
  ListObjectsResult,
  ListPartsOptions,
  ListPartsResult,
  MetadataStore,
  MultipartUpload,
  NewAccessKey,
  ObjectRecord,
  Part,
  PutObjectInput,
  PutObjectResult,
  PutPartInput,
  TagsInput
} from './store.ts'
import { UploadIdGenerator } from './upload-id.ts'

/** Entries a listing returns when the caller gives no limit */
export const DEFAULT_LIST_LIMIT = 1000

/** What a put needs of its bucket's row: who pays for the object's storage, and where it is kept */
interface BucketOwner {
  owner_id: string
  /** JSON array of backend names */
  backends: string
}

/** Rows fetched per round trip while a listing pages through the objects table */
const LIST_PAGE_ROWS = 1000

/** Attempts of a write transaction that fails with a retryable error */
const MAX_TRANSACTION_ATTEMPTS = 8

export interface KyselyMetadataStoreInit {
  /** A Kysely instance over `dialect`; the store owns it and destroys it on `close()` */
  db: Kysely<Database>
  dialect: DialectName
  /** Seals access-key secrets */
  secretBox: SecretBox
  logger?: { warn(...args: unknown[]): void }
}

/** {@link MetadataStore} over Kysely, for SQLite and PostgreSQL. */
export class KyselyMetadataStore implements MetadataStore {
  readonly dialect: DialectName
  /** The Kysely instance, for tests and tools that inspect rows as stored */
  readonly db: Kysely<Database>
  readonly #box: SecretBox
  readonly #logger: { warn(...args: unknown[]): void } | undefined
  readonly #pg: boolean
  readonly #uploadIds = new UploadIdGenerator()

  constructor (init: KyselyMetadataStoreInit) {
    this.db = init.db
    this.dialect = init.dialect
    this.#box = init.secretBox
    this.#logger = init.logger
    this.#pg = init.dialect === 'postgres'
  }

  async migrate (): Promise<void> {
    if (this.#pg) {
      // Text columns collate "C" for bytewise order, which is UTF-8 order only in a UTF-8 database
      const { rows } = await sql<{ server_encoding: string }>`show server_encoding`.execute(this.db)
      const encoding = rows[0]?.server_encoding
      if (encoding !== 'UTF8') throw new Error(`The PostgreSQL database must use UTF8 encoding, not ${String(encoding)}`)
    }
    await migrateToLatest(this.db, this.dialect)
  }

  async close (): Promise<void> {
    await this.db.destroy()
  }

  // Accounts

  async createAccount (input: { id: string, name: string }): Promise<Account> {
    requireText(input.id, 'account id')
    requireText(input.name, 'account name')
    const createdAt = new Date()
    try {
      await this.db.insertInto('accounts')
        .values({ id: input.id, name: input.name, created_at: createdAt.toISOString() })
        .execute()
    } catch (err) {
      if (isDbError(err, 'unique')) throw new AtlasError('Conflict', `Account ${input.id} already exists`, { cause: err })
      throw err
    }
    return { id: input.id, name: input.name, createdAt }
  }

  async getAccount (id: string): Promise<Account | null> {
    const row = await this.db.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirst()
    return row === undefined ? null : { id: row.id, name: row.name, createdAt: toDate(row.created_at) }
  }

  async listAccounts (): Promise<Account[]> {
    const rows = await this.db.selectFrom('accounts').selectAll().orderBy('id').execute()
    return rows.map(row => ({ id: row.id, name: row.name, createdAt: toDate(row.created_at) }))
  }

  // Access keys

  /** Stores the secret sealed; the returned key leaves the secret out (the caller has it). */
  async createAccessKey (input: NewAccessKey): Promise<AccessKey> {
    requireText(input.accessKeyId, 'access key id')
    requireText(input.tokenHash, 'token hash')
    const createdAt = new Date()
    try {
      await this.db.insertInto('access_keys')
        .values({
          access_key_id: input.accessKeyId,
          account_id: input.accountId,
          secret_enc: this.#box.seal(input.secretAccessKey, input.accessKeyId),
          token_hash: input.tokenHash,
          created_at: createdAt.toISOString(),
          revoked_at: null,
          default_lane: input.defaultLane ?? null
        })
        .execute()
    } catch (err) {
      const info = classifyDbError(err)
      if (info?.kind === 'unique') throw new AtlasError('Conflict', `Access key ${input.accessKeyId} or its token already exists`, { cause: err })
      if (info?.kind === 'foreign-key') throw new AtlasError('NoSuchAccount', `No account ${input.accountId}`, { cause: err })
      throw err
    }
    return { accessKeyId: input.accessKeyId, accountId: input.accountId, createdAt, revokedAt: null, ...(input.defaultLane === undefined ? {} : { defaultLane: input.defaultLane }) }
  }

  async getAccessKey (accessKeyId: string, options: { includeRevoked?: boolean } = {}): Promise<AccessKey | null> {
    const row = await this.db.selectFrom('access_keys').selectAll().where('access_key_id', '=', accessKeyId).executeTakeFirst()
    if (row === undefined) return null
    if (row.revoked_at !== null && options.includeRevoked !== true) return null
    return { ...toAccessKey(row), secretAccessKey: this.#box.open(row.secret_enc, row.access_key_id) }
  }

  async getAccessKeyByTokenHash (tokenHash: string): Promise<AccessKey | null> {
    const row = await this.db.selectFrom('access_keys').selectAll()
      .where('token_hash', '=', tokenHash)
      .where('revoked_at', 'is', null)
      .executeTakeFirst()
    return row === undefined ? null : toAccessKey(row)
  }

  /** Every key of the account, revoked ones included, oldest first, without secrets. */
  async listAccessKeys (accountId: string): Promise<AccessKey[]> {
    const rows = await this.db.selectFrom('access_keys').selectAll()
      .where('account_id', '=', accountId)
      .orderBy('created_at').orderBy('access_key_id')
      .execute()
    return rows.map(toAccessKey)
  }

  async revokeAccessKey (accessKeyId: string): Promise<boolean> {
    const result = await this.db.updateTable('access_keys')
      .set({ revoked_at: new Date().toISOString() })
      .where('access_key_id', '=', accessKeyId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst()
    return result.numUpdatedRows > 0n
  }

  // Buckets

  async createBucket (input: Omit<Bucket, 'createdAt'>): Promise<Bucket> {
    requireText(input.name, 'bucket name', 'InvalidBucketName')
    const createdAt = new Date()
    // A unique violation means the name is taken, by us or by someone else; the owner is read
    // after the fact. Should that row vanish in between (deleted concurrently), try again.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.db.insertInto('buckets')
          .values({
            name: input.name,
            owner_id: input.ownerId,
            backends: JSON.stringify(input.backends),
            public: input.public,
            created_at: createdAt.toISOString()
          })
          .execute()
        return { name: input.name, ownerId: input.ownerId, backends: [...input.backends], public: input.public, createdAt }
      } catch (err) {
        const info = classifyDbError(err)
        if (info?.kind === 'foreign-key') throw new AtlasError('NoSuchAccount', `No account ${input.ownerId}`, { cause: err })
        if (info?.kind !== 'unique') throw err
        const existing = await this.db.selectFrom('buckets').select('owner_id').where('name', '=', input.name).executeTakeFirst()
        if (existing === undefined && attempt < MAX_TRANSACTION_ATTEMPTS) continue
        if (existing?.owner_id === input.ownerId) {
          throw new AtlasError('BucketAlreadyOwnedByYou', `You already own bucket ${input.name}`, { cause: err })
        }
        throw new AtlasError('BucketAlreadyExists', `Bucket ${input.name} already exists`, { cause: err })
      }
    }
  }

  async getBucket (name: string): Promise<Bucket | null> {
    if (!isStorableText(name)) return null
    const row = await this.db.selectFrom('buckets').selectAll().where('name', '=', name).executeTakeFirst()
    return row === undefined ? null : toBucket(row)
  }

  async listBuckets (ownerId: string): Promise<Bucket[]> {
    const rows = await this.db.selectFrom('buckets').selectAll().where('owner_id', '=', ownerId).orderBy('name').execute()
    return rows.map(toBucket)
  }

  async deleteBucket (name: string): Promise<{ abortedParts: Part[] }> {
    requireBucketName(name)
    try {
      return await this.#transaction(async trx => {
        // FOR UPDATE waits for puts and new uploads in flight (they hold FOR KEY SHARE) and keeps
        // new ones out
        const bucket = await trx.selectFrom('buckets').select('name').where('name', '=', name)
          .$if(this.#pg, qb => qb.forUpdate())
          .executeTakeFirst()
        if (bucket === undefined) throw new AtlasError('NoSuchBucket', `No bucket ${name}`)
        const object = await trx.selectFrom('objects').select('key').where('bucket', '=', name).limit(1).executeTakeFirst()
        if (object !== undefined) throw new AtlasError('BucketNotEmpty', `Bucket ${name} is not empty`)
        // Uploads in progress are aborted, not a reason to refuse (S3 counts only objects). Their
        // rows are locked before their parts are read, so a part being recorded is either waited
        // for and returned, or refused with NoSuchUpload.
        const uploads = await trx.selectFrom('multipart_uploads').select('upload_id').where('bucket', '=', name)
          .orderBy('upload_id')
          .$if(this.#pg, qb => qb.forUpdate())
          .execute()
        let abortedParts: Part[] = []
        if (uploads.length > 0) {
          const rows = await trx.deleteFrom('multipart_parts')
            .where('upload_id', 'in', eb => eb.selectFrom('multipart_uploads').select('upload_id').where('bucket', '=', name))
            .returningAll()
            .execute()
          abortedParts = sortParts(rows.map(toPart))
          await trx.deleteFrom('multipart_uploads').where('bucket', '=', name).execute()
        }
        await trx.deleteFrom('buckets').where('name', '=', name).execute()
        return { abortedParts }
      })
    } catch (err) {
      // The foreign key from objects is the final word should a put slip in regardless
      if (isDbError(err, 'foreign-key')) throw new AtlasError('BucketNotEmpty', `Bucket ${name} is not empty`, { cause: err })
      throw err
    }
  }

  // Objects

  async putObject (input: PutObjectInput): Promise<PutObjectResult> {
    const object = prepareObject(input)
    return await this.#transaction(async trx => {
      const owner = await this.#shareBucket(trx, object.bucket)
      return await this.#writeObject(trx, object, owner)
    }, isCollectedContent)
  }

  /**
   * Step 1 of a put: the bucket row, `FOR KEY SHARE` on PostgreSQL; returns its owner and
   * backends (what the object's storage interval records).
   * @throws AtlasError NoSuchBucket
   */
  async #shareBucket (trx: Transaction<Database>, bucket: string): Promise<BucketOwner> {
    const found = await trx.selectFrom('buckets').select(['owner_id', 'backends']).where('name', '=', bucket)
      .$if(this.#pg, qb => qb.forKeyShare())
      .executeTakeFirst()
    if (found === undefined) throw new AtlasError('NoSuchBucket', `No bucket ${bucket}`)
    return found
  }

  /**
   * Steps 2 to 5 of a put (see the module comment), inside `trx`, which holds the bucket row
   * already: write the object row and move the references. Shared by `putObject` and
   * `completeMultipartUpload`, so that both count alike.
   */
  async #writeObject (trx: Transaction<Database>, input: PreparedObject, owner: BucketOwner): Promise<PutObjectResult> {
    const { bucket, key, content, locations } = input
    const createdAt = new Date()
    const now = createdAt.toISOString()

    // 2. The content row, with no reference yet when it is new
    await trx.insertInto('contents')
      .values({ id: content.id, size: content.size, ref_count: 0, created_at: now })
      .onConflict(oc => oc.column('id').doNothing())
      .execute()

    // 3. The object row: lock the one in place, or insert it. An insert that meets a row
    // committed meanwhile by a concurrent put inserts nothing, and the loop locks that row.
    const row = {
      content_id: content.id,
      size: content.size,
      etag: input.etag,
      content_type: input.contentType,
      metadata: JSON.stringify(input.metadata),
      tags: JSON.stringify(input.tags),
      checksums: JSON.stringify(input.checksums),
      created_at: now
    }
    let previous: string | undefined
    for (let attempt = 1; ; attempt++) {
      // Each turn means another put created the row and a delete removed it again in between;
      // a few turns settle any real contention
      if (attempt > MAX_TRANSACTION_ATTEMPTS) throw new AtlasError('Conflict', `Too many concurrent writes to ${bucket}/${key}`)
      const existing = await trx.selectFrom('objects').select('content_id')
        .where('bucket', '=', bucket).where('key', '=', key)
        .$if(this.#pg, qb => qb.forUpdate())
        .executeTakeFirst()
      if (existing !== undefined) {
        previous = existing.content_id
        await trx.updateTable('objects').set(row).where('bucket', '=', bucket).where('key', '=', key).execute()
        break
      }
      const inserted = await trx.insertInto('objects')
        .values({ bucket, key, ...row })
        .onConflict(oc => oc.columns(['bucket', 'key']).doNothing())
        .returning('key')
        .executeTakeFirst()
      if (inserted !== undefined) break
    }

    // Storage accounting (billing): the object's previous version stops accruing, this one starts
    await this.#closeStorageInterval(trx, bucket, key, createdAt.getTime())
    await trx.insertInto('storage_intervals').values({
      id: this.#uploadIds.next(createdAt.getTime()).id,
      customer_id: owner.owner_id,
      bucket,
      key,
      size: content.size,
      backends: owner.backends,
      started_ms: createdAt.getTime(),
      ended_ms: null
    }).execute()

    // 4. The counts, in id order. Replacing an object by the same content changes nothing.
    const deltas = new Map<string, number>()
    if (previous !== content.id) {
      deltas.set(content.id, 1)
      if (previous !== undefined) deltas.set(previous, -1)
    }
    let orphanedId: string | undefined
    for (const id of [...deltas.keys()].sort()) {
      const delta = deltas.get(id) ?? 0
      const updated = await trx.updateTable('contents')
        .set({ ref_count: sql<number>`ref_count + ${delta}` })
        .where('id', '=', id)
        .returning(['ref_count', 'size'])
        .executeTakeFirst()
      if (updated === undefined) throw new AtlasError('InternalError', `Content ${id} vanished during a put`)
      if (id === content.id && toSafeNumber(updated.size) !== content.size) {
        throw new AtlasError('InternalError', `Content ${id} is already stored with size ${String(updated.size)}, not ${content.size}`)
      }
      if (delta < 0 && toSafeNumber(updated.ref_count) === 0) orphanedId = id
    }

    // 5. The locations: a backend's entry is replaced by the newest report of it
    for (const location of locations) {
      await trx.insertInto('content_locations')
        .values({ content_id: content.id, backend: location.backend, address: location.address, extra: JSON.stringify(location.extra) })
        .onConflict(oc => oc.columns(['content_id', 'backend']).doUpdateSet(eb => ({
          address: eb.ref('excluded.address'),
          extra: eb.ref('excluded.extra')
        })))
        .execute()
    }

    const orphaned = orphanedId === undefined ? null : await loadContent(trx, orphanedId)
    const object: ObjectRecord = {
      bucket,
      key,
      contentId: content.id,
      size: content.size,
      etag: input.etag,
      contentType: input.contentType,
      metadata: { ...input.metadata },
      tags: { ...input.tags },
      checksums: { ...input.checksums },
      createdAt
    }
    return { object, orphaned }
  }

  /** End the storage interval of the object at (bucket, key), if one is open. */
  async #closeStorageInterval (trx: Transaction<Database>, bucket: string, key: string, endedMs: number): Promise<void> {
    await trx.updateTable('storage_intervals').set({ ended_ms: endedMs })
      .where('bucket', '=', bucket).where('key', '=', key).where('ended_ms', 'is', null)
      .execute()
  }

  async getObject (bucket: string, key: string): Promise<ObjectRecord | null> {
    if (!isStorableText(bucket) || !isStorableText(key)) return null
    const row = await this.db.selectFrom('objects').selectAll().where('bucket', '=', bucket).where('key', '=', key).executeTakeFirst()
    return row === undefined ? null : toObject(row)
  }

  /** Deleting an object that does not exist (or a bucket that does not) returns null. */
  async deleteObject (bucket: string, key: string): Promise<{ object: ObjectRecord, orphaned: Content | null } | null> {
    if (!isStorableText(bucket) || !isStorableText(key)) return null
    return await this.#transaction(async trx => {
      const row = await trx.deleteFrom('objects').where('bucket', '=', bucket).where('key', '=', key).returningAll().executeTakeFirst()
      if (row === undefined) return null
      await this.#closeStorageInterval(trx, bucket, key, Date.now())
      const updated = await trx.updateTable('contents')
        .set({ ref_count: sql<number>`ref_count - 1` })
        .where('id', '=', row.content_id)
        .returning('ref_count')
        .executeTakeFirst()
      if (updated === undefined) throw new AtlasError('InternalError', `Content ${row.content_id} of ${bucket}/${key} is missing`)
      const orphaned = toSafeNumber(updated.ref_count) === 0 ? await loadContent(trx, row.content_id) : null
      return { object: toObject(row), orphaned }
    })
  }

  /**
   * Keys in bytewise (UTF-8) order, as S3 lists them.
   *
   * With a delimiter, keys that contain it after the prefix roll up into one common prefix, which
   * counts as one entry toward `limit`. `next` is the last key or common prefix returned; passed
   * back as `after`, a common prefix skips every key under it (any other `after` is a plain key:
   * one inside a rolled-up prefix yields that prefix again). The objects table is read in pages,
   * and past a common prefix the scan seeks to the least key above it instead of reading the keys
   * it holds, so memory and round trips stay bounded by the page size and the entries returned.
   *
   * A `limit` of 0 returns nothing and is not truncated.
   *
   * @throws AtlasError NoSuchBucket, InvalidArgument
   */
  async listObjects (input: ListObjectsInput): Promise<ListObjectsResult> {
    const limit = input.limit ?? DEFAULT_LIST_LIMIT
    if (!Number.isSafeInteger(limit) || limit < 0) throw new AtlasError('InvalidArgument', `Invalid limit ${limit}`)
    const prefix = input.prefix ?? ''
    const delimiter = input.delimiter === undefined || input.delimiter === '' ? undefined : input.delimiter
    for (const [name, value] of [['prefix', prefix], ['delimiter', delimiter], ['marker', input.after]] as const) {
      if (value !== undefined && !isStorableText(value)) throw new AtlasError('InvalidArgument', `Invalid ${name}`)
    }
    requireBucketName(input.bucket)
    const bucket = await this.db.selectFrom('buckets').select('name').where('name', '=', input.bucket).executeTakeFirst()
    if (bucket === undefined) throw new AtlasError('NoSuchBucket', `No bucket ${input.bucket}`)
    if (limit === 0) return { objects: [], commonPrefixes: [], truncated: false }

    const rollUp = (key: string): string | undefined => {
      if (delimiter === undefined) return undefined
      const at = key.indexOf(delimiter, prefix.length)
      return at < 0 ? undefined : key.slice(0, at + delimiter.length)
    }
    // Everything under the prefix is below `upper`; undefined means no upper bound
    const upper = prefixUpperBound(prefix)

    // The scan position: keys >= lower.key (or > when exclusive); undefined when nothing is left.
    // A key after the prefix that does not start with it lies above every key under the prefix.
    // A common prefix as `after` (as `next` hands it out) skips every key under it.
    const after = input.after
    let lower: { key: string, exclusive: boolean } | undefined = { key: prefix, exclusive: false }
    if (after !== undefined && after.startsWith(prefix)) {
      if (rollUp(after) === after) {
        const past = prefixUpperBound(after)
        lower = past === undefined ? undefined : { key: past, exclusive: false }
      } else {
        lower = { key: after, exclusive: true }
      }
    } else if (after !== undefined && compareKeys(after, prefix) > 0) {
      lower = undefined
    }

    type Entry = { prefix: string } | { object: Selectable<ObjectsTable> }
    const entries: Entry[] = []
    const wanted = limit + 1 // one more than asked tells whether the listing is truncated
    const pageRows = Math.min(wanted, LIST_PAGE_ROWS)

    scan: while (lower !== undefined) {
      const from = lower
      const rows = await this.db.selectFrom('objects').selectAll()
        .where('bucket', '=', input.bucket)
        .where('key', from.exclusive ? '>' : '>=', from.key)
        .$if(upper !== undefined, qb => qb.where('key', '<', upper as string))
        .orderBy('key')
        .limit(pageRows)
        .execute()
      const last = rows.at(-1)
      lower = rows.length < pageRows || last === undefined ? undefined : { key: last.key, exclusive: true }

      for (let i = 0; i < rows.length; i++) {
        const row = rows[i] as Selectable<ObjectsTable>
        const common = rollUp(row.key)
        if (common === undefined) {
          entries.push({ object: row })
          if (entries.length === wanted) break scan
          continue
        }
        entries.push({ prefix: common })
        if (entries.length === wanted) break scan
        // Skip the rest of this common prefix: within the page, or by seeking past it
        while (i + 1 < rows.length && (rows[i + 1] as Selectable<ObjectsTable>).key.startsWith(common)) i++
        if (i + 1 === rows.length && lower !== undefined) {
          const past = prefixUpperBound(common)
          lower = past === undefined ? undefined : { key: past, exclusive: false }
        }
      }
    }

    const truncated = entries.length > limit
    if (truncated) entries.length = limit
    const result: ListObjectsResult = { objects: [], commonPrefixes: [], truncated }
    for (const entry of entries) {
      if ('prefix' in entry) result.commonPrefixes.push(entry.prefix)
      else result.objects.push(toObject(entry.object))
    }
    const final = entries.at(-1)
    if (truncated && final !== undefined) result.next = 'prefix' in final ? final.prefix : final.object.key
    return result
  }

  /** Only the tags change: Last-Modified and the ETag stay, as in S3. */
  async putObjectTags (bucket: string, key: string, tags: TagsInput): Promise<ObjectRecord> {
    const normalised = normaliseTags(tags)
    requireBucketName(bucket)
    if (isStorableText(key)) {
      const row = await this.db.updateTable('objects')
        .set({ tags: JSON.stringify(normalised) })
        .where('bucket', '=', bucket).where('key', '=', key)
        .returningAll()
        .executeTakeFirst()
      if (row !== undefined) return toObject(row)
    }
    const found = await this.db.selectFrom('buckets').select('name').where('name', '=', bucket).executeTakeFirst()
    if (found === undefined) throw new AtlasError('NoSuchBucket', `No bucket ${bucket}`)
    throw new AtlasError('NoSuchKey', `No object ${key} in ${bucket}`)
  }

  // Multipart uploads

  async createMultipartUpload (input: CreateMultipartUploadInput): Promise<MultipartUpload> {
    requireBucketName(input.bucket)
    requireText(input.key, 'object key', 'InvalidObjectKey')
    requireText(input.initiatorId, 'initiator id')
    if (typeof input.contentType !== 'string' || !isStorableText(input.contentType)) throw new AtlasError('InvalidArgument', 'Invalid content type')
    const tags = normaliseTags(input.tags)
    const checksumAlgorithm = optionalText(input.checksumAlgorithm, 'checksum algorithm')
    const checksumType = optionalText(input.checksumType, 'checksum type')
    const { id, time } = this.#uploadIds.next()
    const upload: MultipartUpload = {
      uploadId: id,
      bucket: input.bucket,
      key: input.key,
      initiatorId: input.initiatorId,
      contentType: input.contentType,
      metadata: { ...input.metadata },
      tags,
      checksumAlgorithm,
      checksumType,
      createdAt: time
    }
    try {
      await this.#transaction(async trx => {
        // The bucket row held FOR KEY SHARE keeps deleteBucket out until commit
        await this.#shareBucket(trx, upload.bucket)
        await trx.insertInto('multipart_uploads')
          .values({
            upload_id: upload.uploadId,
            bucket: upload.bucket,
            key: upload.key,
            initiator_id: upload.initiatorId,
            content_type: upload.contentType,
            metadata: JSON.stringify(upload.metadata),
            tags: JSON.stringify(upload.tags),
            checksum_algorithm: upload.checksumAlgorithm,
            checksum_type: upload.checksumType,
            created_at: upload.createdAt.toISOString()
          })
          .execute()
      })
    } catch (err) {
      // The bucket is held, so a foreign key that fails is the initiator's
      if (isDbError(err, 'foreign-key')) throw new AtlasError('NoSuchAccount', `No account ${input.initiatorId}`, { cause: err })
      throw err
    }
    return upload
  }

  async getMultipartUpload (uploadId: string): Promise<MultipartUpload | null> {
    if (!isStorableText(uploadId)) return null
    const row = await this.db.selectFrom('multipart_uploads').selectAll().where('upload_id', '=', uploadId).executeTakeFirst()
    return row === undefined ? null : toUpload(row)
  }

  async putPart (input: PutPartInput): Promise<{ replaced: Part | null }> {
    requirePartNumber(input.partNumber)
    if (!Number.isSafeInteger(input.size) || input.size < 0) throw new AtlasError('InvalidArgument', `Invalid part size ${input.size}`)
    requireText(input.etag, 'part etag')
    requireText(input.stagingPath, 'staging path')
    const checksums = stringMap(input.checksums ?? {}, 'checksums')
    const { uploadId, partNumber } = input
    if (!isStorableText(uploadId)) throw new AtlasError('NoSuchUpload', 'No such upload')

    return await this.#transaction(async trx => {
      // FOR KEY SHARE: parts of one upload are recorded side by side, but a completion or an
      // abort (FOR UPDATE) under way is waited for, and then the row is gone
      const upload = await trx.selectFrom('multipart_uploads').select('upload_id').where('upload_id', '=', uploadId)
        .$if(this.#pg, qb => qb.forKeyShare())
        .executeTakeFirst()
      if (upload === undefined) throw new AtlasError('NoSuchUpload', `No upload ${uploadId}`)

      const row = {
        size: input.size,
        etag: input.etag,
        checksums: JSON.stringify(checksums),
        staging_path: input.stagingPath,
        created_at: new Date().toISOString()
      }
      // Lock the part in place and replace it, or insert it. Parts are deleted only under the
      // upload's FOR UPDATE, which our share excludes, so an insert that loses to a concurrent one
      // finds that row on the next turn.
      for (let attempt = 1; attempt <= MAX_TRANSACTION_ATTEMPTS; attempt++) {
        const existing = await trx.selectFrom('multipart_parts').selectAll()
          .where('upload_id', '=', uploadId).where('part_number', '=', partNumber)
          .$if(this.#pg, qb => qb.forUpdate())
          .executeTakeFirst()
        if (existing !== undefined) {
          await trx.updateTable('multipart_parts').set(row).where('upload_id', '=', uploadId).where('part_number', '=', partNumber).execute()
          return { replaced: toPart(existing) }
        }
        const inserted = await trx.insertInto('multipart_parts')
          .values({ upload_id: uploadId, part_number: partNumber, ...row })
          .onConflict(oc => oc.columns(['upload_id', 'part_number']).doNothing())
          .returning('part_number')
          .executeTakeFirst()
        if (inserted !== undefined) return { replaced: null }
      }
      throw new AtlasError('Conflict', `Too many concurrent writes to part ${partNumber} of upload ${uploadId}`)
    })
  }

  /** A `limit` of 0 returns no parts and is not truncated. */
  async listParts (uploadId: string, options: ListPartsOptions = {}): Promise<ListPartsResult> {
    const limit = options.limit ?? DEFAULT_LIST_LIMIT
    if (!Number.isSafeInteger(limit) || limit < 0) throw new AtlasError('InvalidArgument', `Invalid limit ${limit}`)
    const after = options.after ?? 0
    if (!Number.isSafeInteger(after) || after < 0) throw new AtlasError('InvalidArgument', `Invalid part number marker ${after}`)
    if (await this.getMultipartUpload(uploadId) === null) throw new AtlasError('NoSuchUpload', `No upload ${uploadId}`)
    if (limit === 0) return { parts: [], truncated: false }
    const rows = await this.db.selectFrom('multipart_parts').selectAll()
      .where('upload_id', '=', uploadId)
      .where('part_number', '>', after)
      .orderBy('part_number')
      .limit(limit + 1)
      .execute()
    const truncated = rows.length > limit
    const parts = rows.slice(0, limit).map(toPart)
    const last = parts.at(-1)
    return truncated && last !== undefined ? { parts, truncated, next: last.partNumber } : { parts, truncated }
  }

  /**
   * S3's ListMultipartUploads. Uploads of one key come in creation order, which is upload-id
   * order (see `upload-id.ts`). Continuation follows S3: after `keyMarker` alone, the listing
   * resumes with the next key; with `uploadIdMarker` as well, with the uploads of that key whose
   * ids sort after it. A `keyMarker` that is a common prefix (as `nextKeyMarker` hands one out)
   * skips every key under it. Like `listObjects`, the table is read in pages and the scan seeks
   * past a rolled-up prefix.
   *
   * A `limit` of 0 returns nothing and is not truncated.
   */
  async listMultipartUploads (bucket: string, options: ListMultipartUploadsOptions = {}): Promise<ListMultipartUploadsResult> {
    const limit = options.limit ?? DEFAULT_LIST_LIMIT
    if (!Number.isSafeInteger(limit) || limit < 0) throw new AtlasError('InvalidArgument', `Invalid limit ${limit}`)
    const prefix = options.prefix ?? ''
    const delimiter = options.delimiter === undefined || options.delimiter === '' ? undefined : options.delimiter
    const keyMarker = options.keyMarker
    const uploadIdMarker = options.uploadIdMarker === '' ? undefined : options.uploadIdMarker
    for (const [name, value] of [['prefix', prefix], ['delimiter', delimiter], ['key marker', keyMarker], ['upload id marker', uploadIdMarker]] as const) {
      if (value !== undefined && !isStorableText(value)) throw new AtlasError('InvalidArgument', `Invalid ${name}`)
    }
    requireBucketName(bucket)
    const found = await this.db.selectFrom('buckets').select('name').where('name', '=', bucket).executeTakeFirst()
    if (found === undefined) throw new AtlasError('NoSuchBucket', `No bucket ${bucket}`)
    if (limit === 0) return { uploads: [], commonPrefixes: [], truncated: false }

    const rollUp = (key: string): string | undefined => {
      if (delimiter === undefined) return undefined
      const at = key.indexOf(delimiter, prefix.length)
      return at < 0 ? undefined : key.slice(0, at + delimiter.length)
    }
    const upper = prefixUpperBound(prefix)

    // The scan position: rows at or after `key` (strictly after when exclusive), or, with an
    // upload id, rows after (key, uploadId); undefined when nothing is left
    type Position = { key: string, exclusive: boolean, uploadId?: string }
    let lower: Position | undefined = { key: prefix, exclusive: false }
    if (keyMarker !== undefined && keyMarker.startsWith(prefix)) {
      if (rollUp(keyMarker) === keyMarker) {
        const past = prefixUpperBound(keyMarker)
        lower = past === undefined ? undefined : { key: past, exclusive: false }
      } else {
        lower = uploadIdMarker === undefined ? { key: keyMarker, exclusive: true } : { key: keyMarker, exclusive: true, uploadId: uploadIdMarker }
      }
    } else if (keyMarker !== undefined && compareKeys(keyMarker, prefix) > 0) {
      lower = undefined
    }

    type Row = Selectable<MultipartUploadsTable>
    type Entry = { prefix: string } | { upload: Row }
    const entries: Entry[] = []
    const wanted = limit + 1 // one more than asked tells whether the listing is truncated
    const pageRows = Math.min(wanted, LIST_PAGE_ROWS)

    scan: while (lower !== undefined) {
      const from: Position = lower
      const rows = await this.db.selectFrom('multipart_uploads').selectAll()
        .where('bucket', '=', bucket)
        .where(eb => from.uploadId === undefined
          ? eb('key', from.exclusive ? '>' : '>=', from.key)
          : eb(eb.refTuple('key', 'upload_id'), '>', eb.tuple(from.key, from.uploadId)))
        .$if(upper !== undefined, qb => qb.where('key', '<', upper as string))
        .orderBy('key').orderBy('upload_id')
        .limit(pageRows)
        .execute()
      const last = rows.at(-1)
      lower = rows.length < pageRows || last === undefined ? undefined : { key: last.key, exclusive: true, uploadId: last.upload_id }

      for (let i = 0; i < rows.length; i++) {
        const row = rows[i] as Row
        const common = rollUp(row.key)
        if (common === undefined) {
          entries.push({ upload: row })
          if (entries.length === wanted) break scan
          continue
        }
        entries.push({ prefix: common })
        if (entries.length === wanted) break scan
        // Skip the rest of this common prefix: within the page, or by seeking past it
        while (i + 1 < rows.length && (rows[i + 1] as Row).key.startsWith(common)) i++
        if (i + 1 === rows.length && lower !== undefined) {
          const past = prefixUpperBound(common)
          lower = past === undefined ? undefined : { key: past, exclusive: false }
        }
      }
    }

    const truncated = entries.length > limit
    if (truncated) entries.length = limit
    const result: ListMultipartUploadsResult = { uploads: [], commonPrefixes: [], truncated }
    for (const entry of entries) {
      if ('prefix' in entry) result.commonPrefixes.push(entry.prefix)
      else result.uploads.push(toUpload(entry.upload))
    }
    const final = entries.at(-1)
    if (truncated && final !== undefined) {
      if ('prefix' in final) {
        result.nextKeyMarker = final.prefix
      } else {
        result.nextKeyMarker = final.upload.key
        result.nextUploadIdMarker = final.upload.upload_id
      }
    }
    return result
  }

  async completeMultipartUpload (input: CompleteMultipartUploadInput): Promise<CompleteMultipartUploadResult> {
    const object = prepareObject(input.object)
    const { uploadId } = input
    const expected = input.parts === undefined ? undefined : new Map<number, string>()
    for (const part of input.parts ?? []) {
      requirePartNumber(part.partNumber)
      if (expected?.has(part.partNumber) === true) throw new AtlasError('InvalidPartOrder', `Part ${part.partNumber} is listed twice`)
      expected?.set(part.partNumber, part.etag)
    }
    if (!isStorableText(uploadId)) throw new AtlasError('NoSuchUpload', 'No such upload')

    return await this.#transaction(async trx => {
      // 1. The bucket, then the upload row FOR UPDATE: a second completion or an abort waits
      // here and then finds the row gone; parts being recorded are waited for
      const owner = await this.#shareBucket(trx, object.bucket)
      const upload = await trx.selectFrom('multipart_uploads').select(['bucket', 'key']).where('upload_id', '=', uploadId)
        .$if(this.#pg, qb => qb.forUpdate())
        .executeTakeFirst()
      // An upload belongs to its bucket and key: completing it as another object is not finding it
      if (upload === undefined || upload.bucket !== object.bucket || upload.key !== object.key) {
        throw new AtlasError('NoSuchUpload', `No upload ${uploadId} for ${object.bucket}/${object.key}`)
      }
      if (expected !== undefined) {
        const stored = await trx.selectFrom('multipart_parts').select(['part_number', 'etag']).where('upload_id', '=', uploadId).execute()
        const etags = new Map(stored.map(p => [p.part_number, p.etag]))
        for (const [partNumber, etag] of expected) {
          if (etags.get(partNumber) !== etag) throw new AtlasError('InvalidPart', `Part ${partNumber} of upload ${uploadId} is not stored with etag ${etag}`)
        }
      }

      // 2 to 5. The object, exactly as a put writes it
      const result = await this.#writeObject(trx, object, owner)

      // Then the parts and the upload
      const parts = await trx.deleteFrom('multipart_parts').where('upload_id', '=', uploadId).returningAll().execute()
      await trx.deleteFrom('multipart_uploads').where('upload_id', '=', uploadId).execute()
      return { ...result, parts: sortParts(parts.map(toPart)) }
    }, isCollectedContent)
  }

  async abortMultipartUpload (uploadId: string): Promise<Part[] | null> {
    if (!isStorableText(uploadId)) return null
    return await this.#transaction(async trx => {
      // Locked before the parts are read, so that a part being recorded is waited for and returned
      const upload = await trx.selectFrom('multipart_uploads').select('upload_id').where('upload_id', '=', uploadId)
        .$if(this.#pg, qb => qb.forUpdate())
        .executeTakeFirst()
      if (upload === undefined) return null
      const parts = await trx.deleteFrom('multipart_parts').where('upload_id', '=', uploadId).returningAll().execute()
      await trx.deleteFrom('multipart_uploads').where('upload_id', '=', uploadId).execute()
      return sortParts(parts.map(toPart))
    })
  }

  /** Oldest first; ties in creation time in id order. */
  async listStaleMultipartUploads (olderThan: Date, limit: number): Promise<MultipartUpload[]> {
    if (!(olderThan instanceof Date) || Number.isNaN(olderThan.getTime())) throw new AtlasError('InvalidArgument', 'Invalid date')
    if (!Number.isSafeInteger(limit) || limit < 0) throw new AtlasError('InvalidArgument', `Invalid limit ${limit}`)
    if (limit === 0) return []
    const rows = await this.db.selectFrom('multipart_uploads').selectAll()
      .where('created_at', '<', olderThan.toISOString())
      .orderBy('created_at').orderBy('upload_id')
      .limit(limit)
      .execute()
    return rows.map(toUpload)
  }

  // Contents

  async getContent (id: string): Promise<Content | null> {
    return await loadContent(this.db, id)
  }

  async getContentByAddress (address: string): Promise<Content | null> {
    const row = await this.db.selectFrom('content_locations').select('content_id')
      .where('address', '=', address)
      .orderBy('content_id')
      .limit(1)
      .executeTakeFirst()
    return row === undefined ? null : await loadContent(this.db, row.content_id)
  }

  async listContentBuckets (contentId: string): Promise<Bucket[]> {
    const rows = await this.db.selectFrom('buckets').selectAll()
      .where(eb => eb.exists(eb.selectFrom('objects').select('key')
        .whereRef('objects.bucket', '=', 'buckets.name')
        .where('objects.content_id', '=', contentId)))
      .orderBy('name')
      .execute()
    return rows.map(toBucket)
  }

  /** Oldest first. */
  async listOrphanedContents (limit: number): Promise<Content[]> {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new AtlasError('InvalidArgument', `Invalid limit ${limit}`)
    if (limit === 0) return []
    const rows = await this.db.selectFrom('contents').selectAll()
      .where('ref_count', '=', 0)
      .orderBy('created_at').orderBy('id')
      .limit(limit)
      .execute()
    if (rows.length === 0) return []
    const locations = await this.db.selectFrom('content_locations').selectAll()
      .where('content_id', 'in', rows.map(r => r.id))
      .orderBy('content_id').orderBy('backend')
      .execute()
    return rows.map(row => toContent(row, locations.filter(l => l.content_id === row.id)))
  }

  async deleteContentIfOrphaned (id: string): Promise<boolean> {
    // The condition is evaluated on the row as it is when the delete takes its lock, so a put
    // that took a reference meanwhile wins. The locations go with it (ON DELETE CASCADE).
    const result = await this.db.deleteFrom('contents').where('id', '=', id).where('ref_count', '=', 0).executeTakeFirst()
    return result.numDeletedRows > 0n
  }

  /**
   * Run `fn` in a transaction, again when it fails with a deadlock, a serialization failure, a
   * busy database or what `retryable` accepts. Work inside `fn` must therefore be repeatable.
   */
  async #transaction<T> (fn: (trx: Transaction<Database>) => Promise<T>, retryable?: (err: unknown) => boolean): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction().execute(fn)
      } catch (err) {
        const retry = isDbError(err, 'retry') || (retryable?.(err) ?? false)
        if (!retry || attempt >= MAX_TRANSACTION_ATTEMPTS) throw err
        this.#logger?.warn({ attempt, code: (err as { code?: unknown }).code }, 'retrying a metadata transaction')
        // Jittered backoff, so that the transactions that collided do not collide again
        await sleep(Math.random() * 5 * attempt)
      }
    }
  }
}

async function loadContent (db: Kysely<Database>, id: string): Promise<Content | null> {
  const row = await db.selectFrom('contents').selectAll().where('id', '=', id).executeTakeFirst()
  if (row === undefined) return null
  const locations = await db.selectFrom('content_locations').selectAll().where('content_id', '=', id).orderBy('backend').execute()
  return toContent(row, locations)
}

function toContent (row: Selectable<ContentsTable>, locations: Array<Selectable<ContentLocationsTable>>): Content {
  return {
    id: row.id,
    size: toSafeNumber(row.size),
    refCount: toSafeNumber(row.ref_count),
    locations: locations.map(toLocation),
    createdAt: toDate(row.created_at)
  }
}

function toLocation (row: Selectable<ContentLocationsTable>): ContentLocation {
  return { backend: row.backend as BackendName, address: row.address, extra: JSON.parse(row.extra) as Record<string, string> }
}

function toBucket (row: Selectable<BucketsTable>): Bucket {
  return {
    name: row.name,
    ownerId: row.owner_id,
    backends: JSON.parse(row.backends) as BackendName[],
    public: row.public === true || row.public === 1,
    createdAt: toDate(row.created_at)
  }
}

function toObject (row: Selectable<ObjectsTable>): ObjectRecord {
  return {
    bucket: row.bucket,
    key: row.key,
    contentId: row.content_id,
    size: toSafeNumber(row.size),
    etag: row.etag,
    contentType: row.content_type,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    tags: JSON.parse(row.tags) as Record<string, string>,
    checksums: JSON.parse(row.checksums) as Record<string, string>,
    createdAt: toDate(row.created_at)
  }
}

function toUpload (row: Selectable<MultipartUploadsTable>): MultipartUpload {
  return {
    uploadId: row.upload_id,
    bucket: row.bucket,
    key: row.key,
    initiatorId: row.initiator_id,
    contentType: row.content_type,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    tags: JSON.parse(row.tags) as Record<string, string>,
    checksumAlgorithm: row.checksum_algorithm,
    checksumType: row.checksum_type,
    createdAt: toDate(row.created_at)
  }
}

function toPart (row: Selectable<MultipartPartsTable>): Part {
  return {
    uploadId: row.upload_id,
    partNumber: row.part_number,
    size: toSafeNumber(row.size),
    etag: row.etag,
    checksums: JSON.parse(row.checksums) as Record<string, string>,
    stagingPath: row.staging_path,
    createdAt: toDate(row.created_at)
  }
}

/** By upload id (bytewise: ids are ASCII), then part number; DELETE … RETURNING has no order. */
function sortParts (parts: Part[]): Part[] {
  return parts.sort((a, b) => a.uploadId < b.uploadId ? -1 : a.uploadId > b.uploadId ? 1 : a.partNumber - b.partNumber)
}

function toAccessKey (row: Selectable<AccessKeysTable>): AccessKey {
  return {
    accessKeyId: row.access_key_id,
    accountId: row.account_id,
    createdAt: toDate(row.created_at),
    revokedAt: row.revoked_at === null ? null : toDate(row.revoked_at),
    ...(row.default_lane === null || row.default_lane === undefined ? {} : { defaultLane: row.default_lane })
  }
}

function toDate (value: Date | string): Date {
  return value instanceof Date ? value : new Date(value)
}

/** A 64-bit column as a number; a value beyond 2^53 is corruption, not something to round. */
function toSafeNumber (value: number | bigint): number {
  if (typeof value === 'number') return value
  const number = Number(value)
  if (!Number.isSafeInteger(number)) throw new AtlasError('InternalError', `Integer ${value} exceeds the safe range`)
  return number
}

/** A name no bucket can have (see `isStorableText`) names no bucket that exists. */
function requireBucketName (name: string): void {
  if (!isStorableText(name)) throw new AtlasError('NoSuchBucket', 'No such bucket')
}

/** Refuse text the two dialects would store differently (see `isStorableText`). */
function requireText (value: string, what: string, code: 'InvalidArgument' | 'InvalidBucketName' | 'InvalidObjectKey' = 'InvalidArgument'): void {
  if (typeof value !== 'string' || value === '' || !isStorableText(value)) {
    throw new AtlasError(code, `Invalid ${what}: it must be non-empty, well-formed Unicode without NUL`)
  }
}

/** A put's input, checked and normalised before any transaction starts. */
interface PreparedObject {
  bucket: string
  key: string
  content: PutObjectInput['content']
  /** The content's locations in backend order (step 5 of the lock order) */
  locations: ContentLocation[]
  etag: string
  contentType: string
  metadata: Record<string, string>
  tags: Record<string, string>
  checksums: Record<string, string>
}

function prepareObject (input: PutObjectInput): PreparedObject {
  requireBucketName(input.bucket)
  requireText(input.key, 'object key', 'InvalidObjectKey')
  requireText(input.content.id, 'content id')
  if (!Number.isSafeInteger(input.content.size) || input.content.size < 0) {
    throw new AtlasError('InvalidArgument', `Invalid content size ${input.content.size}`)
  }
  return {
    bucket: input.bucket,
    key: input.key,
    content: input.content,
    locations: [...input.content.locations].sort((a, b) => a.backend < b.backend ? -1 : a.backend > b.backend ? 1 : 0),
    etag: input.etag,
    contentType: input.contentType,
    metadata: input.metadata,
    tags: normaliseTags(input.tags),
    checksums: stringMap(input.checksums ?? {}, 'checksums')
  }
}

/** Garbage collection removed a put's content between steps 2 and 3: the put starts over. */
function isCollectedContent (err: unknown): boolean {
  const info = classifyDbError(err)
  return info?.kind === 'foreign-key' && info.constraint === 'objects_content_id_fkey'
}

/**
 * A tag set as stored, after S3's checks (see {@link TagsInput}).
 * @throws AtlasError InvalidTag
 */
export function normaliseTags (input: TagsInput | undefined): Record<string, string> {
  if (input === undefined) return {}
  if (typeof input !== 'object' || input === null) throw new AtlasError('InvalidTag', 'Tags must be a map or a list of pairs')
  const pairs: ReadonlyArray<readonly [unknown, unknown]> = isTagPairs(input) ? input : Object.entries(input)
  if (pairs.length > MAX_OBJECT_TAGS) throw new AtlasError('InvalidTag', `Object tags cannot be greater than ${MAX_OBJECT_TAGS}`)
  const tags = new Map<string, string>()
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2) throw new AtlasError('InvalidTag', 'A tag must be a key and a value')
    const [key, value] = pair as [unknown, unknown]
    if (typeof key !== 'string' || key.length < 1 || key.length > MAX_TAG_KEY_LENGTH || !isStorableText(key)) {
      throw new AtlasError('InvalidTag', `A tag key must be 1 to ${MAX_TAG_KEY_LENGTH} characters of well-formed text`)
    }
    if (typeof value !== 'string' || value.length > MAX_TAG_VALUE_LENGTH || !isStorableText(value)) {
      throw new AtlasError('InvalidTag', `The value of tag ${key} must be at most ${MAX_TAG_VALUE_LENGTH} characters of well-formed text`)
    }
    if (tags.has(key)) throw new AtlasError('InvalidTag', `Cannot provide multiple tags with the key ${key}`)
    tags.set(key, value)
  }
  return Object.fromEntries(tags)
}

function isTagPairs (input: TagsInput): input is ReadonlyArray<readonly [string, string]> {
  return Array.isArray(input)
}

/**
 * A copy of a string → string map (checksums), refusing anything else.
 * @throws AtlasError InvalidArgument
 */
function stringMap (value: Record<string, string>, what: string): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new AtlasError('InvalidArgument', `Invalid ${what}`)
  const copy: Record<string, string> = {}
  for (const [k, v] of Object.entries(value)) {
    if (k === '' || !isStorableText(k) || typeof v !== 'string' || !isStorableText(v)) throw new AtlasError('InvalidArgument', `Invalid ${what}`)
    copy[k] = v
  }
  return copy
}

/** Null, or non-empty storable text. */
function optionalText (value: string | null | undefined, what: string): string | null {
  if (value === undefined || value === null) return null
  requireText(value, what)
  return value
}

function requirePartNumber (partNumber: number): void {
  if (!Number.isSafeInteger(partNumber) || partNumber < MIN_PART_NUMBER || partNumber > MAX_PART_NUMBER) {
    throw new AtlasError('InvalidArgument', `Part number must be an integer from ${MIN_PART_NUMBER} to ${MAX_PART_NUMBER}`)
  }
}
