/**
 * The operation table against request examples from the Amazon S3 API reference (method, path,
 * query and the header that tells CopyObject and UploadPartCopy apart), and the bucket/key
 * addressing rules.
 */
import { describe, expect, it } from 'vitest'
import { matchOperation, OPERATIONS, type S3Target } from '../../../../src/gateway/s3/operations.ts'
import { addressOf, isReservedPath } from '../../../../src/gateway/s3/router.ts'

interface Example {
  request: string
  headers?: Record<string, string>
  expect: string
}

const EXAMPLES: Example[] = [
  { request: 'GET /', expect: 'ListBuckets' },
  { request: 'PUT /amzn-s3-demo-bucket', expect: 'CreateBucket' },
  { request: 'HEAD /amzn-s3-demo-bucket', expect: 'HeadBucket' },
  { request: 'DELETE /amzn-s3-demo-bucket', expect: 'DeleteBucket' },
  { request: 'GET /amzn-s3-demo-bucket?location', expect: 'GetBucketLocation' },
  { request: 'GET /amzn-s3-demo-bucket?list-type=2&prefix=photos/2006/&delimiter=/', expect: 'ListObjectsV2' },
  { request: 'GET /amzn-s3-demo-bucket?list-type=2&max-keys=3&prefix=E&start-after=ExampleGuide.pdf', expect: 'ListObjectsV2' },
  { request: 'GET /amzn-s3-demo-bucket?list-type=2&continuation-token=1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=', expect: 'ListObjectsV2' },
  { request: 'GET /amzn-s3-demo-bucket?prefix=N&marker=Ned&max-keys=40', expect: 'ListObjects' },
  { request: 'GET /amzn-s3-demo-bucket?uploads&max-uploads=3', expect: 'ListMultipartUploads' },
  { request: 'GET /amzn-s3-demo-bucket?uploads&delimiter=/&prefix=photos/2006/', expect: 'ListMultipartUploads' },
  { request: 'POST /amzn-s3-demo-bucket?delete', expect: 'DeleteObjects' },
  { request: 'PUT /amzn-s3-demo-bucket/my-image.jpg', expect: 'PutObject' },
  { request: 'PUT /amzn-s3-demo-bucket/my-second-image.jpg', headers: { 'x-amz-copy-source': '/amzn-s3-demo-bucket/my-image.jpg' }, expect: 'CopyObject' },
  { request: 'GET /amzn-s3-demo-bucket/my-image.jpg', expect: 'GetObject' },
  { request: 'GET /amzn-s3-demo-bucket/my-image.jpg?response-content-type=text/plain&response-content-disposition=attachment', expect: 'GetObject' },
  { request: 'HEAD /amzn-s3-demo-bucket/my-image.jpg', expect: 'HeadObject' },
  { request: 'DELETE /amzn-s3-demo-bucket/my-second-image.jpg', expect: 'DeleteObject' },
  { request: 'POST /amzn-s3-demo-bucket/example-object?uploads', expect: 'CreateMultipartUpload' },
  { request: 'PUT /amzn-s3-demo-bucket/my-movie.m2ts?partNumber=1&uploadId=VCVsb2FkIElEIGZvciBlbZZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZR', expect: 'UploadPart' },
  { request: 'PUT /amzn-s3-demo-bucket/newobject?partNumber=2&uploadId=VCVsb2FkIElEIGZvciBlbZZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZR', headers: { 'x-amz-copy-source': '/source-bucket/sourceobject', 'x-amz-copy-source-range': 'bytes=500-6291456' }, expect: 'UploadPartCopy' },
  { request: 'POST /amzn-s3-demo-bucket/example-object?uploadId=AAAsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZR', expect: 'CompleteMultipartUpload' },
  { request: 'DELETE /amzn-s3-demo-bucket/example-object?uploadId=VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZ', expect: 'AbortMultipartUpload' },
  { request: 'GET /amzn-s3-demo-bucket/example-object?uploadId=XXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA&max-parts=2&part-number-marker=1', expect: 'ListParts' },
  { request: 'GET /amzn-s3-demo-bucket/example-object?tagging', expect: 'GetObjectTagging' },
  { request: 'PUT /amzn-s3-demo-bucket/example-object?tagging', expect: 'PutObjectTagging' },
  { request: 'DELETE /amzn-s3-demo-bucket/example-object?tagging', expect: 'DeleteObjectTagging' }
]

function match (request: string, headers: Record<string, string> = {}): ReturnType<typeof matchOperation> {
  const [method = '', target = ''] = request.split(' ')
  const [path = '', query = ''] = target.split('?')
  const { bucket, key } = addressOf(path, 'localhost', undefined)
  const kind: S3Target = bucket === undefined ? 'service' : key === undefined ? 'bucket' : 'object'
  return matchOperation({ method, target: kind, query: new URLSearchParams(query), headers })
}

describe('S3 operation table', () => {
  it.each(EXAMPLES)('$request → $expect', ({ request, headers, expect: name }) => {
    expect(match(request, headers)).toEqual({ kind: 'operation', spec: expect.objectContaining({ name }) })
  })

  it('covers every operation of the table with an example', () => {
    const exampled = new Set(EXAMPLES.map((e) => e.expect))
    expect(OPERATIONS.map((o) => o.name).filter((n) => !exampled.has(n))).toEqual([])
  })

  it('never mistakes an unimplemented sub-resource for another operation', () => {
    for (const request of ['GET /amzn-s3-demo-bucket?acl', 'PUT /amzn-s3-demo-bucket?versioning', 'GET /amzn-s3-demo-bucket?versions', 'PUT /amzn-s3-demo-bucket?policy', 'GET /amzn-s3-demo-bucket/photo.jpg?torrent', 'PUT /amzn-s3-demo-bucket/photo.jpg?acl', 'POST /amzn-s3-demo-bucket/photo.jpg?restore', 'GET /amzn-s3-demo-bucket?tagging', 'GET /amzn-s3-demo-bucket/photo.jpg?partNumber=2']) {
      expect(match(request).kind, request).toBe('not-implemented')
    }
  })

  it('refuses methods no operation has', () => {
    expect(match('POST /amzn-s3-demo-bucket/photo.jpg')).toEqual({ kind: 'method-not-allowed' })
    expect(match('DELETE /')).toEqual({ kind: 'method-not-allowed' })
    expect(match('PUT /')).toEqual({ kind: 'method-not-allowed' })
  })
})

describe('S3 addressing', () => {
  it('reads path-style bucket and key, decoding the key once', () => {
    expect(addressOf('/', 'h', undefined)).toEqual({ bucket: undefined, key: undefined })
    expect(addressOf('/bucket', 'h', undefined)).toEqual({ bucket: 'bucket', key: undefined })
    expect(addressOf('/bucket/', 'h', undefined)).toEqual({ bucket: 'bucket', key: undefined })
    expect(addressOf('/bucket/a/b%20c%2Bd', 'h', undefined)).toEqual({ bucket: 'bucket', key: 'a/b c+d' })
    expect(addressOf('/bucket/a+b', 'h', undefined)).toEqual({ bucket: 'bucket', key: 'a+b' })
  })

  it('reads virtual-hosted-style requests under the configured domain', () => {
    expect(addressOf('/photos/x.jpg', 'my-bucket.s3.example.org:8080', 's3.example.org')).toEqual({ bucket: 'my-bucket', key: 'photos/x.jpg' })
    expect(addressOf('/', 'my-bucket.s3.example.org', 's3.example.org')).toEqual({ bucket: 'my-bucket', key: undefined })
    // the bare domain is path style
    expect(addressOf('/b/k', 's3.example.org', 's3.example.org')).toEqual({ bucket: 'b', key: 'k' })
  })

  it('leaves the gateway\'s own prefixes to their APIs', () => {
    for (const p of ['/v1/buckets', '/ipfs/bafy', '/bt/abc', '/announce', '/healthz', '/metrics']) expect(isReservedPath(p), p).toBe(true)
    for (const p of ['/v1bucket', '/ipfs-archive/x', '/bucket/v1']) expect(isReservedPath(p), p).toBe(false)
  })

  it('refuses undecodable paths', () => {
    expect(() => addressOf('/bucket/%E0%A4%A', 'h', undefined)).toThrow(expect.objectContaining({ code: 'InvalidArgument' }))
  })
})
