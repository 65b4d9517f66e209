/**
 * The S3 operation table: which request is which operation. An entry names the HTTP method, the
 * target (service, bucket or object), the query markers that must be present (`name` or
 * `name=value`) and, where two operations share all of those, a header that tells them apart.
 * The most specific matching entry wins. Operation names are the AWS API's.
 */

export type S3Target = 'service' | 'bucket' | 'object'

export interface OperationSpec {
  name: string
  method: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'HEAD'
  target: S3Target
  query?: string[]
  header?: string
}

export const OPERATIONS: readonly OperationSpec[] = [
  { name: 'ListBuckets', method: 'GET', target: 'service' },
  { name: 'CreateBucket', method: 'PUT', target: 'bucket' },
  { name: 'HeadBucket', method: 'HEAD', target: 'bucket' },
  { name: 'DeleteBucket', method: 'DELETE', target: 'bucket' },
  { name: 'GetBucketLocation', method: 'GET', target: 'bucket', query: ['location'] },
  { name: 'ListObjects', method: 'GET', target: 'bucket' },
  { name: 'ListObjectsV2', method: 'GET', target: 'bucket', query: ['list-type=2'] },
  { name: 'ListMultipartUploads', method: 'GET', target: 'bucket', query: ['uploads'] },
  { name: 'DeleteObjects', method: 'POST', target: 'bucket', query: ['delete'] },
  { name: 'PutObject', method: 'PUT', target: 'object' },
  { name: 'CopyObject', method: 'PUT', target: 'object', header: 'x-amz-copy-source' },
  { name: 'GetObject', method: 'GET', target: 'object' },
  { name: 'HeadObject', method: 'HEAD', target: 'object' },
  { name: 'DeleteObject', method: 'DELETE', target: 'object' },
  { name: 'CreateMultipartUpload', method: 'POST', target: 'object', query: ['uploads'] },
  { name: 'UploadPart', method: 'PUT', target: 'object', query: ['partNumber', 'uploadId'] },
  { name: 'UploadPartCopy', method: 'PUT', target: 'object', query: ['partNumber', 'uploadId'], header: 'x-amz-copy-source' },
  { name: 'CompleteMultipartUpload', method: 'POST', target: 'object', query: ['uploadId'] },
  { name: 'AbortMultipartUpload', method: 'DELETE', target: 'object', query: ['uploadId'] },
  { name: 'ListParts', method: 'GET', target: 'object', query: ['uploadId'] },
  { name: 'GetObjectTagging', method: 'GET', target: 'object', query: ['tagging'] },
  { name: 'PutObjectTagging', method: 'PUT', target: 'object', query: ['tagging'] },
  { name: 'DeleteObjectTagging', method: 'DELETE', target: 'object', query: ['tagging'] }
]

/**
 * Query parameters that select an S3 sub-resource. A request that names one the matched entry
 * does not consume is an operation Atlas does not implement (GetBucketAcl, PutBucketPolicy …),
 * never silently another one.
 */
export const SUBRESOURCES: ReadonlySet<string> = new Set([
  'accelerate', 'acl', 'analytics', 'attributes', 'cors', 'delete', 'encryption', 'intelligent-tiering',
  'inventory', 'legal-hold', 'lifecycle', 'location', 'logging', 'metadataConfiguration', 'metrics',
  'notification', 'object-lock', 'ownershipControls', 'partNumber', 'policy', 'policyStatus',
  'publicAccessBlock', 'renameObject', 'replication', 'requestPayment', 'restore', 'retention', 'select',
  'session', 'tagging', 'torrent', 'uploadId', 'uploads', 'versioning', 'versionId', 'versions', 'website'
])

export interface MatchInput {
  method: string
  target: S3Target
  query: URLSearchParams
  headers: Record<string, string | string[] | undefined>
}

export type MatchResult =
  | { kind: 'operation', spec: OperationSpec }
  | { kind: 'not-implemented', subresource: string }
  | { kind: 'method-not-allowed' }

function markerPresent (marker: string, query: URLSearchParams): boolean {
  const eq = marker.indexOf('=')
  if (eq === -1) return query.has(marker)
  return query.get(marker.slice(0, eq)) === marker.slice(eq + 1)
}

/** Find the operation a request asks for. */
export function matchOperation (input: MatchInput): MatchResult {
  let best: OperationSpec | undefined
  let bestScore = -1
  for (const spec of OPERATIONS) {
    if (spec.method !== input.method || spec.target !== input.target) continue
    if (!(spec.query ?? []).every((m) => markerPresent(m, input.query))) continue
    if (spec.header !== undefined && input.headers[spec.header] === undefined) continue
    const score = (spec.query?.length ?? 0) * 2 + (spec.header === undefined ? 0 : 1)
    if (score > bestScore) {
      best = spec
      bestScore = score
    }
  }
  if (best === undefined) {
    const sub = [...input.query.keys()].find((k) => SUBRESOURCES.has(k))
    return sub === undefined ? { kind: 'method-not-allowed' } : { kind: 'not-implemented', subresource: sub }
  }
  const consumed = new Set((best.query ?? []).map((m) => m.split('=')[0]))
  const extra = [...input.query.keys()].find((k) => SUBRESOURCES.has(k) && !consumed.has(k))
  if (extra !== undefined) return { kind: 'not-implemented', subresource: extra }
  return { kind: 'operation', spec: best }
}
