/**
 * Multipart uploads: parts stream into the staging area as they arrive (each with its MD5 and
 * checksums); CompleteMultipartUpload streams the chosen parts, in order, through the ingest
 * pipeline into the bucket's backends and commits the object and the end of the upload in one
 * transaction. Aborted, completed and expired uploads give their staged files back.
 */
import { createHash } from 'node:crypto'
import { AtlasError } from '../core/errors.ts'
import { checkLength, slice } from '../core/streams.ts'
import type { Bucket, MetadataStore, MultipartUpload, Part, TagsInput } from '../metadata/store.ts'
import type { Logger, ObjectStore, StoredObject } from './object-store.ts'
import type { StagingArea } from './staging.ts'

export interface MultipartInit {
  metadata: MetadataStore
  objects: ObjectStore
  staging: StagingArea
  /** Smallest part except the last */
  minPartSize: number
  /** Largest part */
  maxPartSize: number
  /** Uploads older than this are aborted by the sweeper */
  expiryMs: number
  logger: Logger
  /** How often expired uploads are looked for. @default 10 minutes */
  sweepIntervalMs?: number
}

export interface UploadPartOptions {
  upload: MultipartUpload
  partNumber: number
  body: AsyncIterable<Uint8Array>
  expectedSize?: number
  /** Content-MD5 as hex */
  expectedMd5?: string
  /** Asked for once the body has been consumed and verified */
  checksums?: () => Record<string, string>
  signal?: AbortSignal
}

export interface RequestedPart {
  partNumber: number
  /** As the client sent it, quoted or not */
  etag: string
}

/** S3's ETag of a multipart object: MD5 of the concatenated binary part MD5s, dash, part count */
export function multipartEtag (partMd5s: string[]): string {
  const hash = createHash('md5')
  for (const md5 of partMd5s) hash.update(Buffer.from(md5, 'hex'))
  return `${hash.digest('hex')}-${partMd5s.length}`
}

const EXPIRY_BATCH = 100

export class MultipartUploads {
  private readonly init: MultipartInit
  private timer: NodeJS.Timeout | undefined

  constructor (init: MultipartInit) {
    this.init = init
  }

  /** Remove leftovers of a crash from the staging area, then expire old uploads periodically. */
  async start (): Promise<void> {
    await this.init.staging.start()
    const known = new Map<string, Set<string> | null>()
    const removed = await this.init.staging.reconcile(async (path) => {
      const uploadId = path.split(/[\\/]/)[1] ?? ''
      if (!known.has(uploadId)) {
        const upload = await this.init.metadata.getMultipartUpload(uploadId)
        known.set(uploadId, upload === null ? null : new Set((await this.allParts(uploadId)).map((p) => p.stagingPath)))
      }
      return known.get(uploadId)?.has(path) ?? false
    })
    if (removed > 0) this.init.logger.info({ removed }, 'removed stale staged parts')
    this.timer = setInterval(() => {
      void this.expire().catch((err: unknown) => { this.init.logger.error({ err }, 'expiring multipart uploads failed') })
    }, this.init.sweepIntervalMs ?? 600_000)
    this.timer.unref()
    await this.expire()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  /** Abort uploads older than the expiry. @returns how many */
  async expire (now = new Date()): Promise<number> {
    let count = 0
    for (;;) {
      const stale = await this.init.metadata.listStaleMultipartUploads(new Date(now.getTime() - this.init.expiryMs), EXPIRY_BATCH)
      for (const upload of stale) {
        if (await this.abort(upload.uploadId)) count++
      }
      if (stale.length < EXPIRY_BATCH) break
    }
    if (count > 0) this.init.logger.info({ count }, 'aborted expired multipart uploads')
    return count
  }

  async create (input: { bucket: Bucket, key: string, initiatorId: string, contentType: string, metadata: Record<string, string>, tags?: TagsInput, checksumAlgorithm?: string | null }): Promise<MultipartUpload> {
    return await this.init.metadata.createMultipartUpload({
      bucket: input.bucket.name,
      key: input.key,
      initiatorId: input.initiatorId,
      contentType: input.contentType,
      metadata: input.metadata,
      tags: input.tags,
      checksumAlgorithm: input.checksumAlgorithm ?? null
    })
  }

  /**
   * The upload, when it exists and belongs to (bucket, key).
   * @throws AtlasError NoSuchUpload
   */
  async get (bucket: string, key: string, uploadId: string): Promise<MultipartUpload> {
    const upload = await this.init.metadata.getMultipartUpload(uploadId)
    if (upload === null || upload.bucket !== bucket || upload.key !== key) {
      throw new AtlasError('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', { details: { UploadId: uploadId } })
    }
    return upload
  }

  /** Stream a part into the staging area and record it (replacing a part of the same number). */
  async uploadPart (options: UploadPartOptions): Promise<Part> {
    const { upload, partNumber } = options
    const body = checkLength(options.body, options.expectedSize, this.init.maxPartSize)
    const staged = await this.init.staging.writePart(upload.uploadId, partNumber, body, options.signal)
    try {
      if (options.expectedMd5 !== undefined && options.expectedMd5 !== staged.md5) {
        throw new AtlasError('BadDigest', 'The Content-MD5 you specified did not match what was received.')
      }
      return await this.record(upload, partNumber, staged, options.checksums?.() ?? {})
    } catch (err) {
      await this.init.staging.release([staged.path])
      throw err
    }
  }

  /** UploadPartCopy: a part made of (a range of) an existing object. */
  async copyPart (options: { upload: MultipartUpload, partNumber: number, source: StoredObject, range?: { start: number, end: number }, signal?: AbortSignal }): Promise<Part> {
    const { upload, partNumber, source } = options
    const start = options.range?.start ?? 0
    const length = options.range === undefined ? source.content.size : options.range.end - options.range.start + 1
    if (length > this.init.maxPartSize) throw new AtlasError('InvalidRequest', `A part is at most ${this.init.maxPartSize} bytes`)
    const bytes = this.init.objects.read(source.content, { offset: start, length, signal: options.signal })
    const staged = await this.init.staging.writePart(upload.uploadId, partNumber, checkLength(slice(bytes, 0, length), length, length), options.signal)
    try {
      return await this.record(upload, partNumber, staged, {})
    } catch (err) {
      await this.init.staging.release([staged.path])
      throw err
    }
  }

  private async record (upload: MultipartUpload, partNumber: number, staged: { path: string, size: number, md5: string }, checksums: Record<string, string>): Promise<Part> {
    const { replaced } = await this.init.metadata.putPart({
      uploadId: upload.uploadId,
      partNumber,
      size: staged.size,
      etag: staged.md5,
      checksums,
      stagingPath: staged.path
    })
    if (replaced !== null) await this.init.staging.release([replaced.stagingPath])
    return { uploadId: upload.uploadId, partNumber, size: staged.size, etag: staged.md5, checksums, stagingPath: staged.path, createdAt: new Date() }
  }

  /**
   * Assemble the requested parts into the object and end the upload.
   * @throws AtlasError InvalidPartOrder, InvalidPart, EntityTooSmall, NoSuchUpload
   */
  async complete (bucket: Bucket, upload: MultipartUpload, requested: RequestedPart[], signal?: AbortSignal): Promise<StoredObject> {
    if (requested.length === 0) throw new AtlasError('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema')
    for (let i = 1; i < requested.length; i++) {
      if ((requested[i] as RequestedPart).partNumber <= (requested[i - 1] as RequestedPart).partNumber) {
        throw new AtlasError('InvalidPartOrder', 'The list of parts was not in ascending order. Parts must be ordered by part number.')
      }
    }
    const stored = new Map((await this.allParts(upload.uploadId)).map((p) => [p.partNumber, p]))
    const chosen: Part[] = requested.map((r) => {
      const part = stored.get(r.partNumber)
      const etag = r.etag.trim().replace(/^"|"$/g, '').toLowerCase()
      if (part === undefined || part.etag !== etag) {
        throw new AtlasError('InvalidPart', 'One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part\'s entity tag.', { details: { PartNumber: r.partNumber } })
      }
      return part
    })
    chosen.forEach((part, i) => {
      if (i < chosen.length - 1 && part.size < this.init.minPartSize) {
        throw new AtlasError('EntityTooSmall', `Your proposed upload is smaller than the minimum allowed size: part ${part.partNumber} has ${part.size} bytes, every part but the last needs ${this.init.minPartSize}`, { details: { PartNumber: part.partNumber } })
      }
    })
    const staging = this.init.staging
    const body = (async function * () {
      for (const part of chosen) yield * staging.read(part.stagingPath, signal)
    })()
    const size = chosen.reduce((sum, p) => sum + p.size, 0)
    let releasedParts: Part[] = []
    const result = await this.init.objects.putObject({
      bucket,
      key: upload.key,
      body,
      expectedSize: size,
      contentType: upload.contentType,
      metadata: upload.metadata,
      tags: upload.tags,
      etag: multipartEtag(chosen.map((p) => p.etag)),
      // the parts are within limits already; S3's 10,000 parts of 5 GiB bound the whole
      maxSize: Number.MAX_SAFE_INTEGER,
      signal,
      commit: async (object) => {
        // the store re-checks the chosen parts under the upload's lock: a part re-uploaded while
        // the object was assembled makes the complete fail instead of committing stale bytes
        const committed = await this.init.metadata.completeMultipartUpload({ uploadId: upload.uploadId, object, parts: chosen.map((p) => ({ partNumber: p.partNumber, etag: p.etag })) })
        releasedParts = committed.parts
        return committed
      }
    })
    await this.init.staging.release(releasedParts.map((p) => p.stagingPath))
    return result
  }

  /** @returns false when the upload did not exist */
  async abort (uploadId: string): Promise<boolean> {
    const parts = await this.init.metadata.abortMultipartUpload(uploadId)
    if (parts === null) return false
    await this.init.staging.release(parts.map((p) => p.stagingPath))
    return true
  }

  private async allParts (uploadId: string): Promise<Part[]> {
    const out: Part[] = []
    let after: number | undefined
    for (;;) {
      const page = await this.init.metadata.listParts(uploadId, { after, limit: 1000 })
      out.push(...page.parts)
      if (!page.truncated || page.next === undefined) return out
      after = page.next
    }
  }
}
