/**
 * One error hierarchy for Atlas. Every error that can reach a client carries a stable `code`;
 * the table below maps each code to its HTTP status, its S3 error code and its problem type, so
 * that the S3 XML renderer and the problem+json renderer stay in step. Library errors are
 * converted into these at the boundary where they arise; nothing matches on message text.
 */

export interface ErrorSpec {
  /** HTTP status code */
  readonly status: number
  /** The S3 `<Code>` value */
  readonly s3: string
  /** Short human title for problem+json */
  readonly title: string
  /** Where S3 answers with another status than the REST API does */
  readonly s3Status?: number
}

/**
 * The one table. Keys are Atlas's stable error codes; the problem type URI is derived from the
 * key (`https://atlas.dev/problems/<kebab-code>`).
 */
export const ERROR_TABLE = {
  BadRequest: { status: 400, s3: 'InvalidRequest', title: 'Bad request' },
  InvalidArgument: { status: 400, s3: 'InvalidArgument', title: 'Invalid argument' },
  InvalidBucketName: { status: 400, s3: 'InvalidBucketName', title: 'Invalid bucket name' },
  InvalidObjectKey: { status: 400, s3: 'InvalidArgument', title: 'Invalid object key' },
  KeyTooLong: { status: 400, s3: 'KeyTooLongError', title: 'Key too long' },
  InvalidAddress: { status: 400, s3: 'InvalidArgument', title: 'Invalid content address' },
  InvalidBackend: { status: 400, s3: 'InvalidLocationConstraint', title: 'Invalid backend selection' },
  InvalidLane: { status: 400, s3: 'InvalidArgument', title: 'Invalid delivery lane' },
  IncompleteBody: { status: 400, s3: 'IncompleteBody', title: 'Incomplete body' },
  BadDigest: { status: 400, s3: 'BadDigest', title: 'Digest mismatch' },
  MalformedRequest: { status: 400, s3: 'MalformedXML', title: 'Malformed request body' },
  Unauthorized: { status: 401, s3: 'AccessDenied', title: 'Authentication required' },
  InvalidToken: { status: 401, s3: 'InvalidAccessKeyId', title: 'Invalid credentials' },
  AccessDenied: { status: 403, s3: 'AccessDenied', title: 'Access denied' },
  NoSuchBucket: { status: 404, s3: 'NoSuchBucket', title: 'No such bucket' },
  NoSuchKey: { status: 404, s3: 'NoSuchKey', title: 'No such object' },
  NoSuchContent: { status: 404, s3: 'NoSuchKey', title: 'No such content' },
  NoSuchAccount: { status: 404, s3: 'InvalidArgument', title: 'No such account' },
  NoSuchAccessKey: { status: 404, s3: 'InvalidAccessKeyId', title: 'No such access key' },
  NotFound: { status: 404, s3: 'NoSuchKey', title: 'Not found' },
  MethodNotAllowed: { status: 405, s3: 'MethodNotAllowed', title: 'Method not allowed' },
  BucketAlreadyOwnedByYou: { status: 409, s3: 'BucketAlreadyOwnedByYou', title: 'Bucket already owned by you' },
  BucketAlreadyExists: { status: 409, s3: 'BucketAlreadyExists', title: 'Bucket already exists' },
  BucketNotEmpty: { status: 409, s3: 'BucketNotEmpty', title: 'Bucket not empty' },
  Conflict: { status: 409, s3: 'OperationAborted', title: 'Conflict' },
  PreconditionFailed: { status: 412, s3: 'PreconditionFailed', title: 'Precondition failed' },
  EntityTooLarge: { status: 413, s3: 'EntityTooLarge', title: 'Body too large', s3Status: 400 },
  UnsupportedMediaType: { status: 415, s3: 'InvalidArgument', title: 'Unsupported media type' },
  InvalidRange: { status: 416, s3: 'InvalidRange', title: 'Range not satisfiable' },
  ClientClosed: { status: 499, s3: 'RequestTimeout', title: 'Client closed the request' },
  InternalError: { status: 500, s3: 'InternalError', title: 'Internal error' },
  NotImplemented: { status: 501, s3: 'NotImplemented', title: 'Not implemented' },
  ContentUnavailable: { status: 503, s3: 'ServiceUnavailable', title: 'Content unavailable' },
  ServiceUnavailable: { status: 503, s3: 'ServiceUnavailable', title: 'Service unavailable' },
  // S3 authentication and payload integrity (SigV4, aws-chunked, checksums)
  InvalidAccessKeyId: { status: 403, s3: 'InvalidAccessKeyId', title: 'Unknown access key' },
  SignatureDoesNotMatch: { status: 403, s3: 'SignatureDoesNotMatch', title: 'Signature does not match' },
  RequestTimeTooSkewed: { status: 403, s3: 'RequestTimeTooSkewed', title: 'Request time too skewed' },
  ExpiredRequest: { status: 403, s3: 'AccessDenied', title: 'Request has expired' },
  AuthorizationHeaderMalformed: { status: 400, s3: 'AuthorizationHeaderMalformed', title: 'Malformed authorization header' },
  AuthorizationQueryParametersError: { status: 400, s3: 'AuthorizationQueryParametersError', title: 'Malformed presigned query' },
  XAmzContentSHA256Mismatch: { status: 400, s3: 'XAmzContentSHA256Mismatch', title: 'Payload hash mismatch' },
  InvalidDigest: { status: 400, s3: 'InvalidDigest', title: 'Invalid digest' },
  InvalidRequest: { status: 400, s3: 'InvalidRequest', title: 'Invalid request' },
  MissingContentLength: { status: 411, s3: 'MissingContentLength', title: 'Content-Length required' },
  // S3 operations
  NoSuchUpload: { status: 404, s3: 'NoSuchUpload', title: 'No such multipart upload' },
  InvalidPart: { status: 400, s3: 'InvalidPart', title: 'Invalid part' },
  InvalidPartOrder: { status: 400, s3: 'InvalidPartOrder', title: 'Parts out of order' },
  EntityTooSmall: { status: 400, s3: 'EntityTooSmall', title: 'Part too small' },
  MalformedXML: { status: 400, s3: 'MalformedXML', title: 'Malformed XML' },
  InvalidLocationConstraint: { status: 400, s3: 'InvalidLocationConstraint', title: 'Invalid location constraint' },
  InvalidTag: { status: 400, s3: 'InvalidTag', title: 'Invalid tag' },
  NoSuchTagSet: { status: 404, s3: 'NoSuchTagSet', title: 'No tag set' },
  // billing
  InvalidAmount: { status: 400, s3: 'InvalidArgument', title: 'Invalid amount' },
  InsufficientFunds: { status: 402, s3: 'AccountProblem', title: 'Insufficient funds', s3Status: 403 },
  AccountSuspended: { status: 402, s3: 'AccountProblem', title: 'Account suspended', s3Status: 403 },
  IdempotencyConflict: { status: 409, s3: 'OperationAborted', title: 'Idempotency key reused with other inputs' },
  // chain: a wallet-link signature that does not prove control of the address
  InvalidSignature: { status: 400, s3: 'InvalidArgument', title: 'Invalid signature' }
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERROR_TABLE

/** Base URI of problem types; each code gets `${PROBLEM_BASE}/<kebab-code>`. */
export const PROBLEM_BASE = 'https://atlas.dev/problems'

export function problemType (code: ErrorCode): string {
  return `${PROBLEM_BASE}/${code.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()}`
}

export interface AtlasErrorOptions {
  cause?: unknown
  /** Extra members for problem+json (never secrets) */
  details?: Record<string, unknown>
}

export class AtlasError extends Error {
  readonly code: ErrorCode
  readonly details: Record<string, unknown> | undefined

  constructor (code: ErrorCode, message: string, options: AtlasErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'AtlasError'
    this.code = code
    this.details = options.details
  }

  get status (): number {
    return ERROR_TABLE[this.code].status
  }
}

/** Thrown by a backend that does not hold the requested content. */
export class NotFoundError extends AtlasError {
  constructor (message: string, options?: AtlasErrorOptions) {
    super('NoSuchContent', message, options)
    this.name = 'NotFoundError'
  }
}

/** Thrown by a backend that knows the content but cannot deliver it now (network, missing blocks). */
export class ContentUnavailableError extends AtlasError {
  constructor (message: string, options?: AtlasErrorOptions) {
    super('ContentUnavailable', message, options)
    this.name = 'ContentUnavailableError'
  }
}

/** Thrown when work stops because its AbortSignal fired (usually a client that went away). */
export class AbortedError extends AtlasError {
  constructor (message = 'The operation was aborted', options?: AtlasErrorOptions) {
    super('ClientClosed', message, options)
    this.name = 'AbortedError'
  }
}


/** True for errors that mean "the caller aborted", whatever layer raised them. */
export function isAbortError (err: unknown): boolean {
  if (err instanceof AbortedError) return true
  if (typeof err !== 'object' || err === null) return false
  const e = err as { name?: unknown, code?: unknown }
  return e.name === 'AbortError' || e.code === 'ABORT_ERR' || e.code === 'ERR_STREAM_PREMATURE_CLOSE' || e.code === 'ECONNRESET'
}
