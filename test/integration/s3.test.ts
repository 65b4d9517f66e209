import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateBucketCommand,
  CreateMultipartUploadCommand, DeleteBucketCommand, DeleteObjectCommand, DeleteObjectsCommand,
  DeleteObjectTaggingCommand, GetBucketAclCommand, GetBucketLocationCommand, GetObjectCommand,
  GetObjectTaggingCommand, HeadBucketCommand, HeadObjectCommand, ListBucketsCommand,
  ListMultipartUploadsCommand, ListObjectsCommand, ListObjectsV2Command, ListPartsCommand,
  PutObjectCommand, PutObjectTaggingCommand, S3Client, S3ServiceException, UploadPartCommand,
  UploadPartCopyCommand
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAccount } from '../../src/accounts/credentials.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { rawRequest } from '../fixtures/http.ts'
import { s3Client, signedFetch } from '../fixtures/s3.ts'

const MiB = 1024 * 1024
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const md5b64 = (b: Uint8Array | string): string => createHash('md5').update(b).digest('base64')

/** Run `fn` and return the S3 error it must throw (its code, status and body). */
async function s3Error (fn: () => Promise<unknown>): Promise<{ name: string, status: number | undefined, message: string }> {
  try {
    await fn()
  } catch (err) {
    if (err instanceof S3ServiceException) return { name: err.name, status: err.$metadata.httpStatusCode, message: err.message }
    throw err
  }
  throw new Error('expected an S3 error')
}

async function bodyBytes (body: unknown): Promise<Buffer> {
  return Buffer.from(await (body as { transformToByteArray: () => Promise<Uint8Array> }).transformToByteArray())
}

describe('S3 API with the AWS SDK v3', () => {
  let t: TestAtlas
  let s3: S3Client

  beforeAll(async () => {
    t = await startTestAtlas({ config: { limits: { maxObjectSize: 64 * MiB } } })
    s3 = s3Client(t)
  })
  afterAll(async () => { await t?.stop() })

  describe('buckets', () => {
    it('creates, heads, lists, locates and deletes buckets', async () => {
      await s3.send(new CreateBucketCommand({ Bucket: 'sdk-bucket' }))
      await s3.send(new HeadBucketCommand({ Bucket: 'sdk-bucket' }))
      const list = await s3.send(new ListBucketsCommand({}))
      expect(list.Buckets?.map((b) => b.Name)).toContain('sdk-bucket')
      expect(list.Owner?.ID).toBe(t.account.id)
      const location = await s3.send(new GetBucketLocationCommand({ Bucket: 'sdk-bucket' }))
      expect(location.LocationConstraint).toBe('ipfs')
      await s3.send(new DeleteBucketCommand({ Bucket: 'sdk-bucket' }))
      expect(await s3Error(() => s3.send(new HeadBucketCommand({ Bucket: 'sdk-bucket' })))).toMatchObject({ status: 404 })
    })

    it('takes the backend from LocationConstraint, a region name or x-atlas-backends', async () => {
      await s3.send(new CreateBucketCommand({ Bucket: 'loc-ipfs', CreateBucketConfiguration: { LocationConstraint: 'ipfs' as never } }))
      await s3.send(new CreateBucketCommand({ Bucket: 'loc-region', CreateBucketConfiguration: { LocationConstraint: 'eu-west-1' } }))
      expect((await s3.send(new GetBucketLocationCommand({ Bucket: 'loc-region' }))).LocationConstraint).toBe('ipfs')
      const bad = await s3Error(() => s3.send(new CreateBucketCommand({ Bucket: 'loc-bad', CreateBucketConfiguration: { LocationConstraint: 'mars' as never } })))
      expect(bad).toMatchObject({ name: 'InvalidLocationConstraint', status: 400 })
      await s3.send(new CreateBucketCommand({ Bucket: 'loc-both', CreateBucketConfiguration: { LocationConstraint: 'ipfs+bittorrent' as never } }))
      expect((await s3.send(new GetBucketLocationCommand({ Bucket: 'loc-both' }))).LocationConstraint).toBe('ipfs+bittorrent')
      const header = await signedFetch(t, { method: 'PUT', path: '/loc-header', headers: { 'x-atlas-backends': 'bittorrent' } })
      expect(header.status).toBe(200)
      expect((await s3.send(new GetBucketLocationCommand({ Bucket: 'loc-header' }))).LocationConstraint).toBe('bittorrent')
      const stored = await s3.send(new PutObjectCommand({ Bucket: 'loc-both', Key: 'both.bin', Body: randomBytes(300_000) }))
      expect(stored.$metadata.httpStatusCode).toBe(200)
      const head = await signedFetch(t, { method: 'HEAD', path: '/loc-both/both.bin' })
      expect(head.headers.get('x-atlas-btih')).toMatch(/^[0-9a-f]{40}$/)
      expect(head.headers.get('x-amz-meta-cid')).toMatch(/^bafk/)
    })

    it('reports bucket errors as S3 does', async () => {
      await s3.send(new CreateBucketCommand({ Bucket: 'taken-bucket' }))
      expect(await s3Error(() => s3.send(new CreateBucketCommand({ Bucket: 'taken-bucket' })))).toMatchObject({ name: 'BucketAlreadyOwnedByYou', status: 409 })
      const other = await createAccount(t.atlas.metadata, 'other-s3')
      const theirs = s3Client(t, other)
      expect(await s3Error(() => theirs.send(new CreateBucketCommand({ Bucket: 'taken-bucket' })))).toMatchObject({ name: 'BucketAlreadyExists', status: 409 })
      expect(await s3Error(() => theirs.send(new ListObjectsV2Command({ Bucket: 'taken-bucket' })))).toMatchObject({ name: 'AccessDenied', status: 403 })
      expect(await s3Error(() => theirs.send(new PutObjectCommand({ Bucket: 'taken-bucket', Key: 'x', Body: 'x' })))).toMatchObject({ name: 'AccessDenied', status: 403 })
      expect((await theirs.send(new ListBucketsCommand({}))).Buckets ?? []).toEqual([])
      expect(await s3Error(() => s3.send(new ListObjectsV2Command({ Bucket: 'no-such-bucket' })))).toMatchObject({ name: 'NoSuchBucket', status: 404 })
      const invalid = await signedFetch(t, { method: 'PUT', path: '/Invalid_Bucket' })
      expect(invalid.status).toBe(400)
      expect(await invalid.text()).toContain('<Code>InvalidBucketName</Code>')
      await s3.send(new PutObjectCommand({ Bucket: 'taken-bucket', Key: 'keep', Body: 'x' }))
      expect(await s3Error(() => s3.send(new DeleteBucketCommand({ Bucket: 'taken-bucket' })))).toMatchObject({ name: 'BucketNotEmpty', status: 409 })
    })
  })

  describe('objects', () => {
    beforeAll(async () => { await s3.send(new CreateBucketCommand({ Bucket: 'objects' })) })

    it('puts and gets with metadata, headers, checksums and addresses', async () => {
      const body = randomBytes(200_000)
      const put = await s3.send(new PutObjectCommand({
        Bucket: 'objects',
        Key: 'docs/a file+name=é.bin',
        Body: body,
        ContentType: 'application/x-test',
        CacheControl: 'max-age=300',
        ContentDisposition: 'attachment; filename="x.bin"',
        ContentEncoding: 'identity',
        Metadata: { colour: 'blue', 'Mixed-Case': 'yes' },
        ChecksumAlgorithm: 'SHA256'
      }))
      expect(put.ETag).toBe(`"${createHash('md5').update(body).digest('hex')}"`)
      expect(put.ChecksumSHA256).toBe(createHash('sha256').update(body).digest('base64'))
      const got = await s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'docs/a file+name=é.bin', ChecksumMode: 'ENABLED' }))
      expect(sha256(await bodyBytes(got.Body))).toBe(sha256(body))
      expect(got).toMatchObject({ ContentType: 'application/x-test', CacheControl: 'max-age=300', ContentDisposition: 'attachment; filename="x.bin"', ContentEncoding: 'identity', ContentLength: body.length, ETag: put.ETag })
      expect(got.Metadata).toMatchObject({ colour: 'blue', 'mixed-case': 'yes' })
      expect(got.Metadata?.cid).toMatch(/^bafk/)
      expect(got.ChecksumSHA256).toBe(put.ChecksumSHA256)
      const head = await s3.send(new HeadObjectCommand({ Bucket: 'objects', Key: 'docs/a file+name=é.bin' }))
      expect(head.ContentLength).toBe(body.length)
      expect(head.Metadata?.cid).toBe(got.Metadata?.cid)
      expect(head.$metadata.httpStatusCode).toBe(200)
    })

    it('streams a body of unknown length with the SDK default checksum trailer', async () => {
      const body = randomBytes(3 * MiB + 11)
      await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'streamed', Body: Readable.from([body.subarray(0, MiB), body.subarray(MiB)]), ContentLength: body.length }))
      const got = await s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'streamed' }))
      expect(sha256(await bodyBytes(got.Body))).toBe(sha256(body))
    })

    it('answers ranges and conditions', async () => {
      const body = randomBytes(5000)
      const { ETag } = await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'ranged', Body: body }))
      const range = await s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'ranged', Range: 'bytes=100-199' }))
      expect(range.ContentRange).toBe('bytes 100-199/5000')
      expect(await bodyBytes(range.Body)).toEqual(body.subarray(100, 200))
      expect(await s3Error(() => s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'ranged', Range: 'bytes=6000-' })))).toMatchObject({ name: 'InvalidRange', status: 416 })
      expect(await s3Error(() => s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'ranged', IfMatch: '"nope"' })))).toMatchObject({ name: 'PreconditionFailed', status: 412 })
      expect((await s3Error(() => s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'ranged', IfNoneMatch: ETag })))).status).toBe(304)
      const later = new Date(Date.now() + 3_600_000)
      expect((await s3Error(() => s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'ranged', IfModifiedSince: later })))).status).toBe(304)
      expect(await s3Error(() => s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'ranged', IfUnmodifiedSince: new Date(Date.now() - 3_600_000) })))).toMatchObject({ status: 412 })
      const ok = await s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'ranged', IfMatch: ETag, ResponseContentType: 'text/x-override', ResponseContentDisposition: 'inline' }))
      expect(ok.ContentType).toBe('text/x-override')
      expect(ok.ContentDisposition).toBe('inline')
      await bodyBytes(ok.Body)
    })

    it('reports missing keys, with x-amz-error-code on HEAD', async () => {
      expect(await s3Error(() => s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'missing' })))).toMatchObject({ name: 'NoSuchKey', status: 404 })
      const head = await signedFetch(t, { method: 'HEAD', path: '/objects/missing' })
      expect(head.status).toBe(404)
      expect(head.headers.get('x-amz-error-code')).toBe('NoSuchKey')
      expect(head.headers.get('x-amz-request-id')).toBeTruthy()
    })

    it('copies without moving bytes, with COPY and REPLACE directives', async () => {
      await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'original', Body: 'copy me', ContentType: 'text/plain', Metadata: { a: '1' }, Tagging: 'tag=one' }))
      const copy = await s3.send(new CopyObjectCommand({ Bucket: 'objects', Key: 'copy/one', CopySource: 'objects/original' }))
      expect(copy.CopyObjectResult?.ETag).toBe(`"${createHash('md5').update('copy me').digest('hex')}"`)
      const same = await s3.send(new HeadObjectCommand({ Bucket: 'objects', Key: 'copy/one' }))
      expect(same).toMatchObject({ ContentType: 'text/plain', Metadata: expect.objectContaining({ a: '1' }) })
      expect((await s3.send(new GetObjectTaggingCommand({ Bucket: 'objects', Key: 'copy/one' }))).TagSet).toEqual([{ Key: 'tag', Value: 'one' }])
      await s3.send(new CopyObjectCommand({ Bucket: 'objects', Key: 'copy/two', CopySource: encodeURIComponent('objects/original'), MetadataDirective: 'REPLACE', ContentType: 'text/x-new', Metadata: { b: '2' } }))
      const replaced = await s3.send(new HeadObjectCommand({ Bucket: 'objects', Key: 'copy/two' }))
      expect(replaced.ContentType).toBe('text/x-new')
      expect(replaced.Metadata).toMatchObject({ b: '2' })
      expect(replaced.Metadata?.a).toBeUndefined()
      // one content, three objects
      const content = await t.atlas.objects.resolve(`sha256:${sha256(Buffer.from('copy me'))}`)
      expect(content.refCount).toBe(3)
      expect(await s3Error(() => s3.send(new CopyObjectCommand({ Bucket: 'objects', Key: 'copy/x', CopySource: 'objects/missing' })))).toMatchObject({ name: 'NoSuchKey' })
      expect(await s3Error(() => s3.send(new CopyObjectCommand({ Bucket: 'objects', Key: 'copy/x', CopySource: 'objects/original', CopySourceIfMatch: '"other"' })))).toMatchObject({ name: 'PreconditionFailed', status: 412 })
    })

    it('deletes one and many objects, quiet and verbose', async () => {
      for (const k of ['del/1', 'del/2', 'del/3']) await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: k, Body: k }))
      await s3.send(new DeleteObjectCommand({ Bucket: 'objects', Key: 'del/1' }))
      await s3.send(new DeleteObjectCommand({ Bucket: 'objects', Key: 'del/never-existed' }))
      const verbose = await s3.send(new DeleteObjectsCommand({ Bucket: 'objects', Delete: { Objects: [{ Key: 'del/2' }, { Key: 'del/none' }] } }))
      expect(verbose.Deleted?.map((d) => d.Key).sort()).toEqual(['del/2', 'del/none'])
      const quiet = await s3.send(new DeleteObjectsCommand({ Bucket: 'objects', Delete: { Objects: [{ Key: 'del/3' }], Quiet: true } }))
      expect(quiet.Deleted ?? []).toEqual([])
      expect((await s3.send(new ListObjectsV2Command({ Bucket: 'objects', Prefix: 'del/' }))).KeyCount).toBe(0)
      const malformed = await signedFetch(t, { method: 'POST', path: '/objects?delete', body: '<Delete><Object><Key>x</Key></Objec></Delete>', headers: { 'content-md5': md5b64('<Delete><Object><Key>x</Key></Objec></Delete>') } })
      expect(malformed.status).toBe(400)
      expect(await malformed.text()).toContain('<Code>MalformedXML</Code>')
    })

    it('tags objects', async () => {
      await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'tagged', Body: 'x' }))
      await s3.send(new PutObjectTaggingCommand({ Bucket: 'objects', Key: 'tagged', Tagging: { TagSet: [{ Key: 'env', Value: 'prod' }, { Key: 'team', Value: 'atlas' }] } }))
      const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: 'objects', Key: 'tagged' }))
      expect(tags.TagSet).toEqual([{ Key: 'env', Value: 'prod' }, { Key: 'team', Value: 'atlas' }])
      const head = await s3.send(new HeadObjectCommand({ Bucket: 'objects', Key: 'tagged' }))
      expect(head.$metadata.httpStatusCode).toBe(200)
      await s3.send(new DeleteObjectTaggingCommand({ Bucket: 'objects', Key: 'tagged' }))
      expect((await s3.send(new GetObjectTaggingCommand({ Bucket: 'objects', Key: 'tagged' }))).TagSet).toEqual([])
      const tooMany = Array.from({ length: 11 }, (_, i) => ({ Key: `k${i}`, Value: 'v' }))
      expect(await s3Error(() => s3.send(new PutObjectTaggingCommand({ Bucket: 'objects', Key: 'tagged', Tagging: { TagSet: tooMany } })))).toMatchObject({ name: 'InvalidTag', status: 400 })
    })

    it('lists with prefix, delimiter, pagination, start-after and url encoding (v1 and v2)', async () => {
      await s3.send(new CreateBucketCommand({ Bucket: 'listing' }))
      const keys = ['a/1', 'a/2', 'a/b/3', 'b', 'c d/1', 'e+f', 'z']
      for (const k of keys) await s3.send(new PutObjectCommand({ Bucket: 'listing', Key: k, Body: k }))
      const all = await s3.send(new ListObjectsV2Command({ Bucket: 'listing' }))
      expect(all.Contents?.map((c) => c.Key)).toEqual(keys)
      expect(all.KeyCount).toBe(keys.length)
      const rolled = await s3.send(new ListObjectsV2Command({ Bucket: 'listing', Delimiter: '/' }))
      expect(rolled.Contents?.map((c) => c.Key)).toEqual(['b', 'e+f', 'z'])
      expect(rolled.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['a/', 'c d/'])
      const seen: string[] = []
      let token: string | undefined
      do {
        const page = await s3.send(new ListObjectsV2Command({ Bucket: 'listing', Delimiter: '/', MaxKeys: 2, ContinuationToken: token }))
        seen.push(...(page.Contents ?? []).map((c) => c.Key as string), ...(page.CommonPrefixes ?? []).map((p) => p.Prefix as string))
        token = page.NextContinuationToken
        expect(page.IsTruncated).toBe(token !== undefined)
      } while (token !== undefined)
      expect(seen.sort()).toEqual(['a/', 'b', 'c d/', 'e+f', 'z'])
      const after = await s3.send(new ListObjectsV2Command({ Bucket: 'listing', StartAfter: 'b' }))
      expect(after.Contents?.[0]?.Key).toBe('c d/1')
      // with encoding-type=url keys come back percent-encoded (the JS SDK leaves them so)
      const encoded = await s3.send(new ListObjectsV2Command({ Bucket: 'listing', EncodingType: 'url', Prefix: 'c d/' }))
      expect(encoded.Contents?.map((c) => c.Key)).toEqual(['c%20d/1'])
      expect(encoded.Prefix).toBe('c%20d/')
      expect(encoded.Contents?.map((c) => decodeURIComponent(c.Key as string))).toEqual(['c d/1'])
      const v1 = await s3.send(new ListObjectsCommand({ Bucket: 'listing', Delimiter: '/', MaxKeys: 2 }))
      expect(v1.IsTruncated).toBe(true)
      const v1next = await s3.send(new ListObjectsCommand({ Bucket: 'listing', Delimiter: '/', Marker: v1.NextMarker }))
      expect([...(v1.Contents ?? []), ...(v1next.Contents ?? [])].map((c) => c.Key)).toEqual(['b', 'e+f', 'z'])
      const bad = await signedFetch(t, { method: 'GET', path: '/listing?list-type=2&max-keys=abc' })
      expect(bad.status).toBe(400)
      expect(await bad.text()).toContain('<Code>InvalidArgument</Code>')
    })
  })

  describe('multipart uploads', () => {
    beforeAll(async () => { await s3.send(new CreateBucketCommand({ Bucket: 'multi' })) })

    it('uploads 100 MiB through lib-storage and reads it back', async () => {
      const seed = randomBytes(32)
      const chunk = (i: number): Buffer => createHash('sha512').update(seed).update(String(i)).digest()
      const total = 100 * MiB
      const whole = createHash('sha256')
      async function * source (): AsyncGenerator<Buffer> {
        const block = Buffer.alloc(MiB)
        for (let i = 0; i < total / MiB; i++) {
          for (let j = 0; j < MiB; j += 64) chunk(i * 100_000 + j).copy(block, j)
          whole.update(block)
          yield Buffer.from(block)
        }
      }
      const upload = new Upload({ client: s3, params: { Bucket: 'multi', Key: 'big/100mib.bin', Body: Readable.from(source()) }, partSize: 8 * MiB, queueSize: 4 })
      const done = await upload.done()
      expect(done.ETag).toMatch(/^"[0-9a-f]{32}-13"$/)
      const got = await s3.send(new GetObjectCommand({ Bucket: 'multi', Key: 'big/100mib.bin' }))
      expect(got.ContentLength).toBe(total)
      const readBack = createHash('sha256')
      for await (const piece of got.Body as AsyncIterable<Uint8Array>) readBack.update(piece)
      expect(readBack.digest('hex')).toBe(whole.digest('hex'))
      expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: 'multi' }))).Uploads ?? []).toEqual([])
    }, 120_000)

    it('runs every multipart operation and its errors', async () => {
      const a = randomBytes(5 * MiB)
      const b = randomBytes(1234)
      const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'multi', Key: 'parts.bin', ContentType: 'application/x-parts', Metadata: { m: 'v' } }))
      const UploadId = created.UploadId as string
      const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'multi' }))
      expect(listed.Uploads?.map((u) => u.UploadId)).toContain(UploadId)
      const p1 = await s3.send(new UploadPartCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId, PartNumber: 1, Body: a }))
      const p2 = await s3.send(new UploadPartCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId, PartNumber: 2, Body: b }))
      await s3.send(new PutObjectCommand({ Bucket: 'multi', Key: 'copy-source', Body: randomBytes(MiB) }))
      const p3 = await s3.send(new UploadPartCopyCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId, PartNumber: 3, CopySource: 'multi/copy-source', CopySourceRange: 'bytes=0-99' }))
      const parts = await s3.send(new ListPartsCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId }))
      expect(parts.Parts?.map((p) => [p.PartNumber, p.Size])).toEqual([[1, 5 * MiB], [2, 1234], [3, 100]])
      const paged = await s3.send(new ListPartsCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId, MaxParts: 2 }))
      expect(paged.IsTruncated).toBe(true)
      expect(paged.NextPartNumberMarker).toBe('2')

      const complete = (Parts: Array<{ PartNumber: number, ETag?: string }>): Promise<unknown> =>
        s3.send(new CompleteMultipartUploadCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId, MultipartUpload: { Parts } }))
      expect(await s3Error(() => complete([{ PartNumber: 2, ETag: p2.ETag }, { PartNumber: 1, ETag: p1.ETag }]))).toMatchObject({ name: 'InvalidPartOrder', status: 400 })
      expect(await s3Error(() => complete([{ PartNumber: 1, ETag: '"00000000000000000000000000000000"' }]))).toMatchObject({ name: 'InvalidPart', status: 400 })
      expect(await s3Error(() => complete([{ PartNumber: 2, ETag: p2.ETag }, { PartNumber: 3, ETag: p3.CopyPartResult?.ETag }]))).toMatchObject({ name: 'EntityTooSmall', status: 400 })
      const malformed = await signedFetch(t, { method: 'POST', path: `/multi/parts.bin?uploadId=${UploadId}`, body: '<CompleteMultipartUpload><Part>' })
      expect(await malformed.text()).toContain('<Code>MalformedXML</Code>')

      const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] } }))
      const expectedEtag = createHash('md5').update(Buffer.concat([createHash('md5').update(a).digest(), createHash('md5').update(b).digest()])).digest('hex') + '-2'
      expect(done.ETag).toBe(`"${expectedEtag}"`)
      const got = await s3.send(new GetObjectCommand({ Bucket: 'multi', Key: 'parts.bin' }))
      expect(got.ContentType).toBe('application/x-parts')
      expect(got.Metadata).toMatchObject({ m: 'v' })
      expect(sha256(await bodyBytes(got.Body))).toBe(sha256(Buffer.concat([a, b])))
      // the upload is gone, and its staged parts with it
      expect(await s3Error(() => s3.send(new UploadPartCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId, PartNumber: 4, Body: 'x' })))).toMatchObject({ name: 'NoSuchUpload', status: 404 })
      expect(await s3Error(() => s3.send(new AbortMultipartUploadCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId })))).toMatchObject({ name: 'NoSuchUpload' })
      expect(await s3Error(() => s3.send(new UploadPartCommand({ Bucket: 'multi', Key: 'parts.bin', UploadId: 'x', PartNumber: 0, Body: 'x' })))).toMatchObject({ status: 400 })

      const aborted = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'multi', Key: 'aborted.bin' }))
      await s3.send(new UploadPartCommand({ Bucket: 'multi', Key: 'aborted.bin', UploadId: aborted.UploadId, PartNumber: 1, Body: randomBytes(1000) }))
      await s3.send(new AbortMultipartUploadCommand({ Bucket: 'multi', Key: 'aborted.bin', UploadId: aborted.UploadId }))
      expect(await s3Error(() => s3.send(new HeadObjectCommand({ Bucket: 'multi', Key: 'aborted.bin' })))).toMatchObject({ status: 404 })
      const { readdir } = await import('node:fs/promises')
      const staged = await readdir(`${t.dataDir}/staging/parts`).catch(() => [])
      expect(staged).toEqual([])
    })

    it('expires abandoned uploads and their staged parts', async () => {
      const { readdir } = await import('node:fs/promises')
      const abandoned = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'multi', Key: 'abandoned.bin' }))
      await s3.send(new UploadPartCommand({ Bucket: 'multi', Key: 'abandoned.bin', UploadId: abandoned.UploadId, PartNumber: 1, Body: randomBytes(2000) }))
      expect(await readdir(`${t.dataDir}/staging/parts`)).toEqual([abandoned.UploadId])
      // nothing is old enough yet
      expect(await t.atlas.multipart.expire()).toBe(0)
      // eight days on, past the default expiry of seven
      expect(await t.atlas.multipart.expire(new Date(Date.now() + 8 * 24 * 3600_000))).toBe(1)
      expect(await s3Error(() => s3.send(new ListPartsCommand({ Bucket: 'multi', Key: 'abandoned.bin', UploadId: abandoned.UploadId })))).toMatchObject({ name: 'NoSuchUpload' })
      expect(await readdir(`${t.dataDir}/staging/parts`)).toEqual([])
    })
  })

  describe('presigned URLs', () => {
    it('GETs and PUTs through presigned URLs, and refuses expired or altered ones', async () => {
      await s3.send(new CreateBucketCommand({ Bucket: 'presign' }))
      const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: 'presign', Key: 'via-url.txt' }), { expiresIn: 300 })
      expect((await fetch(putUrl, { method: 'PUT', body: 'presigned body' })).status).toBe(200)
      const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'presign', Key: 'via-url.txt' }), { expiresIn: 300 })
      const got = await fetch(getUrl)
      expect(got.status).toBe(200)
      expect(await got.text()).toBe('presigned body')

      const expired = await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'presign', Key: 'via-url.txt' }), { expiresIn: 1, signingDate: new Date(Date.now() - 60_000) })
      const expiredRes = await fetch(expired)
      expect(expiredRes.status).toBe(403)
      expect(await expiredRes.text()).toMatch(/<Code>AccessDenied<\/Code>.*expired/s)
      const tooLong = new URL(getUrl)
      tooLong.searchParams.set('X-Amz-Expires', '604801')
      const tooLongRes = await fetch(tooLong)
      expect(tooLongRes.status).toBe(400)
      expect(await tooLongRes.text()).toContain('<Code>AuthorizationQueryParametersError</Code>')
      const tampered = new URL(getUrl.replace('via-url.txt', 'via-url.txx'))
      expect((await fetch(tampered)).status).toBe(403)
      expect((await fetch(putUrl, { method: 'PUT', body: 'second' })).status).toBe(200)
    })
  })

  describe('authentication and integrity errors', () => {
    it('refuses unknown keys, wrong secrets and skewed clocks', async () => {
      await s3.send(new CreateBucketCommand({ Bucket: 'auth-checks' }))
      const unknown = s3Client(t, { accessKeyId: 'ATUNKNOWNKEY00000000', secretAccessKey: 'x' })
      expect(await s3Error(() => unknown.send(new ListBucketsCommand({})))).toMatchObject({ name: 'InvalidAccessKeyId', status: 403 })
      const wrong = s3Client(t, { accessKeyId: t.account.accessKeyId, secretAccessKey: 'wrong-secret' })
      expect(await s3Error(() => wrong.send(new PutObjectCommand({ Bucket: 'auth-checks', Key: 'x', Body: 'x' })))).toMatchObject({ name: 'SignatureDoesNotMatch', status: 403 })
      const skewed = await signedFetch(t, { method: 'GET', path: '/auth-checks', signingDate: new Date(Date.now() - 20 * 60_000) })
      expect(skewed.status).toBe(403)
      expect(await skewed.text()).toContain('<Code>RequestTimeTooSkewed</Code>')
      const anonymous = await fetch(`${t.url}/auth-checks?list-type=2`)
      expect(anonymous.status).toBe(403)
      expect(await anonymous.text()).toContain('<Code>AccessDenied</Code>')
      expect((await s3.send(new ListObjectsV2Command({ Bucket: 'auth-checks' }))).KeyCount).toBe(0)
    })

    it('refuses bodies that do not match their digests, and stores nothing', async () => {
      const body = 'the real body'
      const wrongHash = await signedFetch(t, { method: 'PUT', path: '/auth-checks/hash', body, payloadHash: sha256(Buffer.from('another body')) })
      expect(wrongHash.status).toBe(400)
      expect(await wrongHash.text()).toContain('<Code>XAmzContentSHA256Mismatch</Code>')
      const badMd5 = await s3Error(() => s3.send(new PutObjectCommand({ Bucket: 'auth-checks', Key: 'md5', Body: body, ContentMD5: md5b64('other') })))
      expect(badMd5).toMatchObject({ name: 'BadDigest', status: 400 })
      const invalidMd5 = await signedFetch(t, { method: 'PUT', path: '/auth-checks/md5-invalid', body, headers: { 'content-md5': 'not-base64!' } })
      expect(invalidMd5.status).toBe(400)
      expect(await invalidMd5.text()).toContain('<Code>InvalidDigest</Code>')
      const badChecksum = await signedFetch(t, { method: 'PUT', path: '/auth-checks/crc', body, headers: { 'x-amz-checksum-crc32': 'AAAAAA==' } })
      expect(badChecksum.status).toBe(400)
      expect(await badChecksum.text()).toContain('<Code>BadDigest</Code>')
      const keys = (await s3.send(new ListObjectsV2Command({ Bucket: 'auth-checks' }))).Contents ?? []
      expect(keys).toEqual([])
    })

    it('refuses a truncated body and an oversized one', async () => {
      // announce 64 bytes of aws-chunked data, send fewer and end the request
      const truncated = await signedFetch(t, {
        method: 'PUT',
        path: '/auth-checks/truncated',
        payloadHash: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
        headers: { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': '64' },
        body: '20\r\n' + 'x'.repeat(32) + '\r\n0\r\n\r\n'
      })
      expect(truncated.status).toBe(400)
      expect(await truncated.text()).toContain('<Code>IncompleteBody</Code>')
      const head = `PUT /auth-checks/huge HTTP/1.1\nHost: x\nContent-Length: ${65 * MiB}\nx-amz-content-sha256: UNSIGNED-PAYLOAD\nConnection: close\n`
      const huge = await rawRequest(t.url, head, Buffer.alloc(10))
      // unsigned requests are refused before the size, but a signed one gets EntityTooLarge
      expect(huge?.status).toBe(403)
      const tooLarge = await signedFetch(t, { method: 'PUT', path: '/auth-checks/huge', payloadHash: 'UNSIGNED-PAYLOAD', body: Buffer.alloc(64 * MiB + 1) })
      expect(tooLarge.status).toBe(400)
      expect(await tooLarge.text()).toContain('<Code>EntityTooLarge</Code>')
      expect((await s3.send(new ListObjectsV2Command({ Bucket: 'auth-checks' }))).KeyCount).toBe(0)
    })

    it('checks every aws-chunked chunk signature, and stores nothing when one was tampered with', async () => {
      const { SignatureV4 } = await import('@smithy/signature-v4')
      const { Sha256 } = await import('@aws-crypto/sha256-js')
      const signer = new SignatureV4({ service: 's3', region: 'us-east-1', credentials: t.account, sha256: Sha256, uriEscapePath: false })
      const chunks = [randomBytes(64 * 1024), randomBytes(64 * 1024), randomBytes(1000)]
      const decoded = chunks.reduce((n, c) => n + c.length, 0)
      const send = async (key: string, tamper: number | undefined): Promise<Response> => {
        const url = new URL(`/auth-checks/${key}`, t.url)
        const signingDate = new Date()
        // the encoded length is known in advance: every chunk header carries a 64-hex signature
        const encodedLength = [...chunks, Buffer.alloc(0)].reduce((n, c) => n + c.length.toString(16).length + ';chunk-signature='.length + 64 + 2 + (c.length > 0 ? c.length + 2 : 0), 0) + 2
        const headers: Record<string, string> = {
          host: url.host,
          'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
          'content-encoding': 'aws-chunked',
          'x-amz-decoded-content-length': String(decoded),
          'content-length': String(encodedLength)
        }
        const seed = await signer.sign({ method: 'PUT', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: url.pathname, query: {}, headers }, { signingDate })
        const authorization = String(seed.headers.authorization)
        let previous = /Signature=([0-9a-f]{64})/.exec(authorization)?.[1] as string
        const amzDate = String(seed.headers['x-amz-date'])
        const scope = `${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request`
        const parts: Buffer[] = []
        for (const [i, data] of [...chunks, Buffer.alloc(0)].entries()) {
          const stringToSign = ['AWS4-HMAC-SHA256-PAYLOAD', amzDate, scope, previous, sha256(Buffer.alloc(0)), sha256(data)].join('\n')
          previous = await signer.sign(stringToSign, { signingDate })
          const written = i === tamper ? previous.replace(/^./, (c) => (c === '0' ? '1' : '0')) : previous
          parts.push(Buffer.from(`${data.length.toString(16)};chunk-signature=${written}\r\n`))
          if (data.length > 0) parts.push(data, Buffer.from('\r\n'))
        }
        parts.push(Buffer.from('\r\n'))
        const body = Buffer.concat(parts)
        expect(body.length).toBe(encodedLength)
        const sendHeaders = { ...seed.headers } as Record<string, string>
        delete sendHeaders.host
        return await fetch(url, { method: 'PUT', headers: sendHeaders, body })
      }
      const good = await send('chunked-good', undefined)
      expect(good.status).toBe(200)
      const got = await s3.send(new GetObjectCommand({ Bucket: 'auth-checks', Key: 'chunked-good' }))
      expect(sha256(await bodyBytes(got.Body))).toBe(sha256(Buffer.concat(chunks)))
      const bad = await send('chunked-tampered', 1)
      expect(bad.status).toBe(403)
      expect(await bad.text()).toContain('<Code>SignatureDoesNotMatch</Code>')
      const keys = ((await s3.send(new ListObjectsV2Command({ Bucket: 'auth-checks' }))).Contents ?? []).map((c) => c.Key)
      expect(keys).toEqual(['chunked-good'])
      await s3.send(new DeleteObjectCommand({ Bucket: 'auth-checks', Key: 'chunked-good' }))
    })

    it('says NotImplemented for operations Atlas does not have, and MethodNotAllowed for nonsense', async () => {
      expect(await s3Error(() => s3.send(new GetBucketAclCommand({ Bucket: 'auth-checks' })))).toMatchObject({ name: 'NotImplemented', status: 501 })
      const patch = await fetch(`${t.url}/auth-checks`, { method: 'PATCH' })
      expect(patch.status).toBe(405)
      expect(await patch.text()).toContain('<Code>MethodNotAllowed</Code>')
    })

    it('renders internal errors as S3 XML without internals', async () => {
      const broken = await startTestAtlas()
      const client = s3Client(broken)
      await client.send(new CreateBucketCommand({ Bucket: 'broken' }))
      const original = broken.atlas.metadata.listObjects.bind(broken.atlas.metadata)
      broken.atlas.metadata.listObjects = async () => { throw new Error('database exploded at /secret/path') }
      const res = await signedFetch(broken, { method: 'GET', path: '/broken?list-type=2', keys: broken.account })
      const text = await res.text()
      expect(res.status).toBe(500)
      expect(text).toContain('<Code>InternalError</Code>')
      expect(text).not.toContain('exploded')
      expect(text).not.toContain('/secret/path')
      broken.atlas.metadata.listObjects = original
      await broken.stop()
    })
  })
})
