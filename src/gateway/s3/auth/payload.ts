/**
 * Payload verification for S3 uploads: the body checked against what the signature promised
 * (x-amz-content-sha256, chunk signatures) and against the checksums the client sent (headers or
 * aws-chunked trailers), as it streams. Every check that can only run at the end runs before the
 * stream reports its end: a body that fails throws instead of finishing, so the ingest pipeline
 * never sees a clean end of a bad body and stores nothing.
 */
import { createHash } from 'node:crypto'
import { AtlasError } from '../../../core/errors.ts'
import { AwsChunkedDecoder } from './aws-chunked.ts'
import {
  algorithmOfHeader, CHECKSUM_ALGORITHMS, CHECKSUM_LENGTHS, checksumHeaderName, createChecksummer, decodeBase64Exact,
  parseChecksumAlgorithm, type ChecksumAlgorithm, type Checksummer
} from './checksums.ts'
import { headerValues, lowercaseHeaders, singleHeader, type RequestHeaders } from './headers.ts'
import { payloadModeFromHash, scopeString, type PayloadMode, type VerifiedAuth } from './sigv4.ts'

export type { ChecksumAlgorithm } from './checksums.ts'

/** Largest aws-chunked chunk accepted. Clients use 64 KiB to 8 MiB. @default 16 MiB */
export const DEFAULT_MAX_CHUNK_SIZE = 16 * 1024 * 1024

/** Per-call options of {@link verifiedPayload}. */
export interface VerifiedPayloadOptions {
  /** Largest aws-chunked chunk accepted. @default DEFAULT_MAX_CHUNK_SIZE */
  maxChunkSize?: number
}

/**
 * The checksums of a body, filled in once the body has been read to its end and every check
 * passed (`complete` then turns true). `values` holds each computed algorithm's digest, base64,
 * as S3 returns it in x-amz-checksum-* headers: the algorithm of a checksum header or trailer the
 * client sent (then also verified), and those named by x-amz-sdk-checksum-algorithm or
 * x-amz-checksum-algorithm.
 */
export interface ChecksumResult {
  values: Partial<Record<ChecksumAlgorithm, string>>
  complete: boolean
}

/** A body to hand to the ingest pipeline. */
export interface VerifiedPayload {
  /** The object bytes (aws-chunked framing removed), verified as they pass */
  body: AsyncIterable<Uint8Array>
  /**
   * Length of the object bytes when announced: x-amz-decoded-content-length for aws-chunked
   * bodies (undefined when the client streams without it), Content-Length otherwise.
   */
  decodedLength: number | undefined
  /** Filled when `body` has been fully consumed */
  checksums: ChecksumResult
}

/**
 * Wrap a request body so that it verifies itself against `auth` and the request's checksum
 * headers while it is read. Header problems are reported at once, before any byte is read.
 *
 * @param auth - the result of verifySigV4 (null for an anonymous request, whose
 * x-amz-content-sha256, if any, is still honoured)
 * @throws AtlasError (synchronously) InvalidRequest for a malformed or contradictory checksum
 * header, x-amz-trailer or x-amz-sdk-checksum-algorithm, a signed streaming payload without a
 * signature; InvalidArgument for a malformed x-amz-decoded-content-length or
 * x-amz-content-sha256; MissingContentLength for aws-chunked with Content-Length but without
 * x-amz-decoded-content-length.
 * The returned body throws XAmzContentSHA256Mismatch, SignatureDoesNotMatch (chunk or trailer
 * signature), IncompleteBody (truncated framing, decoded length mismatch, missing trailer),
 * InvalidRequest (malformed framing or trailer value) or BadDigest (checksum mismatch).
 */
export function verifiedPayload (body: AsyncIterable<Uint8Array>, auth: VerifiedAuth | null, headers: RequestHeaders, options: VerifiedPayloadOptions = {}): VerifiedPayload {
  const h = lowercaseHeaders(headers)
  const mode = auth?.payload ?? anonymousMode(h)
  const streaming = mode.kind === 'streaming-signed' || mode.kind === 'streaming-unsigned-trailer'
  const trailerMode = (mode.kind === 'streaming-signed' && mode.trailer) || mode.kind === 'streaming-unsigned-trailer'
  if (mode.kind === 'streaming-signed' && auth === null) {
    throw new AtlasError('InvalidRequest', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD needs a signed request.')
  }
  const plan = checksumPlan(h, trailerMode)
  const decodedLength = streaming ? decodedContentLength(h) : contentLength(h)
  const checksums: ChecksumResult = { values: {}, complete: false }

  let decoder: AwsChunkedDecoder | undefined
  if (streaming) {
    decoder = new AwsChunkedDecoder({
      signing: mode.kind === 'streaming-signed' && auth !== null
        ? { signingKey: auth.signingKey, amzDate: auth.amzDate, scope: scopeString(auth.scope), seedSignature: auth.signature }
        : undefined,
      trailer: trailerMode,
      declaredTrailers: new Set(plan.trailers.keys()),
      maxChunkSize: options.maxChunkSize ?? DEFAULT_MAX_CHUNK_SIZE
    })
  }
  return {
    body: verify(body, { mode, decoder, decodedLength: streaming ? decodedLength : undefined, plan, result: checksums }),
    decodedLength,
    checksums
  }
}

/** A request without a signature may still pin its payload with x-amz-content-sha256. */
function anonymousMode (headers: RequestHeaders): PayloadMode {
  const value = singleHeader(headers, 'x-amz-content-sha256')
  return value === undefined ? { kind: 'unsigned' } : payloadModeFromHash(value)
}

interface ChecksumPlan {
  /** Every algorithm to compute */
  algorithms: Set<ChecksumAlgorithm>
  /** Values the client sent in headers */
  expected: Map<ChecksumAlgorithm, Uint8Array>
  /** Checksum trailers announced in x-amz-trailer: name → algorithm */
  trailers: Map<string, ChecksumAlgorithm>
}

const SINGLE_CHECKSUM = 'Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.'

function checksumPlan (headers: RequestHeaders, trailerMode: boolean): ChecksumPlan {
  const plan: ChecksumPlan = { algorithms: new Set(), expected: new Map(), trailers: new Map() }
  for (const algorithm of CHECKSUM_ALGORITHMS) {
    const name = checksumHeaderName(algorithm)
    const value = singleHeader(headers, name, 'InvalidRequest')
    if (value === undefined) continue
    const bytes = decodeBase64Exact(value.trim(), CHECKSUM_LENGTHS[algorithm])
    if (bytes === undefined) throw new AtlasError('InvalidRequest', `Value for ${name} header is invalid.`)
    plan.expected.set(algorithm, bytes)
    plan.algorithms.add(algorithm)
  }
  const announced = headerValues(headers, 'x-amz-trailer').flatMap((v) => v.split(',')).map((v) => v.trim().toLowerCase()).filter((v) => v !== '')
  for (const name of announced) {
    const algorithm = algorithmOfHeader(name)
    if (algorithm === undefined) throw new AtlasError('InvalidRequest', `The value specified in the x-amz-trailer header is not supported: ${name}`)
    if (!trailerMode) {
      throw new AtlasError('InvalidRequest', 'x-amz-trailer needs an x-amz-content-sha256 of STREAMING-UNSIGNED-PAYLOAD-TRAILER or STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER.')
    }
    plan.trailers.set(name, algorithm)
    plan.algorithms.add(algorithm)
  }
  if (plan.expected.size + plan.trailers.size > 1) throw new AtlasError('InvalidRequest', SINGLE_CHECKSUM)
  // Asked-for algorithms are computed (so that the object can return them) even without a value
  // to check; the SDKs send x-amz-sdk-checksum-algorithm next to the value they computed.
  for (const name of ['x-amz-sdk-checksum-algorithm', 'x-amz-checksum-algorithm']) {
    const value = singleHeader(headers, name, 'InvalidRequest')
    if (value === undefined) continue
    const algorithm = parseChecksumAlgorithm(value)
    if (algorithm === undefined) throw new AtlasError('InvalidRequest', `Value for ${name} header is invalid.`)
    plan.algorithms.add(algorithm)
  }
  return plan
}

function decodedContentLength (headers: RequestHeaders): number | undefined {
  const value = singleHeader(headers, 'x-amz-decoded-content-length')
  if (value === undefined) {
    // With Content-Length but no decoded length, a caller could mistake the encoded length for
    // the object's: S3 requires the header in that case, and so do we.
    if (singleHeader(headers, 'content-length') !== undefined) {
      throw new AtlasError('MissingContentLength', 'An aws-chunked body with a Content-Length needs an x-amz-decoded-content-length header.')
    }
    return undefined
  }
  const n = /^\d{1,16}$/.test(value.trim()) ? Number(value.trim()) : Number.NaN
  if (!Number.isSafeInteger(n)) {
    throw new AtlasError('InvalidArgument', 'x-amz-decoded-content-length must be a non-negative integer.', { details: { argumentName: 'x-amz-decoded-content-length' } })
  }
  return n
}

function contentLength (headers: RequestHeaders): number | undefined {
  const value = singleHeader(headers, 'content-length')
  if (value === undefined) return undefined
  const n = Number(value)
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined
}

interface VerifyInit {
  mode: PayloadMode
  decoder: AwsChunkedDecoder | undefined
  decodedLength: number | undefined
  plan: ChecksumPlan
  result: ChecksumResult
}

async function * verify (source: AsyncIterable<Uint8Array>, init: VerifyInit): AsyncGenerator<Uint8Array, void, undefined> {
  const { mode, decoder, decodedLength, plan } = init
  const sha256 = mode.kind === 'sha256' ? createHash('sha256') : undefined
  const running = new Map<ChecksumAlgorithm, Checksummer>([...plan.algorithms].map((a) => [a, createChecksummer(a)]))
  let size = 0
  const take = (data: Uint8Array): void => {
    size += data.length
    if (decodedLength !== undefined && size > decodedLength) {
      throw new AtlasError('IncompleteBody', `The aws-chunked body holds more than the ${decodedLength} bytes announced in x-amz-decoded-content-length.`)
    }
    sha256?.update(data)
    for (const c of running.values()) c.update(data)
  }

  for await (const piece of source) {
    if (decoder === undefined) {
      take(piece)
      yield piece
      continue
    }
    for (const data of decoder.push(piece)) {
      take(data)
      yield data
    }
  }
  const trailers = decoder?.finish()

  if (sha256 !== undefined && mode.kind === 'sha256') {
    const computed = sha256.digest('hex')
    if (computed !== mode.hex) {
      throw new AtlasError('XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.", {
        details: { clientComputedContentSHA256: mode.hex, s3ComputedContentSHA256: computed }
      })
    }
  }
  if (decodedLength !== undefined && size !== decodedLength) {
    throw new AtlasError('IncompleteBody', `The aws-chunked body holds ${size} of the ${decodedLength} bytes announced in x-amz-decoded-content-length.`)
  }

  const expected = new Map(plan.expected)
  for (const [name, algorithm] of plan.trailers) {
    // finish() has checked that every announced trailer arrived
    const value = trailers?.get(name) ?? ''
    const bytes = decodeBase64Exact(value, CHECKSUM_LENGTHS[algorithm])
    if (bytes === undefined) throw new AtlasError('InvalidRequest', `Value for ${name} trailing header is invalid.`)
    expected.set(algorithm, bytes)
  }
  const values: Partial<Record<ChecksumAlgorithm, string>> = {}
  for (const [algorithm, checksummer] of running) {
    const digest = Buffer.from(await checksummer.digest())
    const want = expected.get(algorithm)
    if (want !== undefined && !digest.equals(want)) {
      throw new AtlasError('BadDigest', `The ${algorithm} you specified did not match the calculated checksum.`)
    }
    values[algorithm] = digest.toString('base64')
  }
  Object.assign(init.result.values, values)
  init.result.complete = true
}

/**
 * The hex MD5 of a Content-MD5 header, for the ingest pipeline to compare.
 *
 * @throws AtlasError InvalidDigest when the value is not canonical base64 of 16 bytes
 */
export function parseContentMd5 (header: string): string {
  const bytes = decodeBase64Exact(header.trim(), 16)
  if (bytes === undefined) throw new AtlasError('InvalidDigest', 'The Content-MD5 you specified is not valid.')
  return Buffer.from(bytes).toString('hex')
}
