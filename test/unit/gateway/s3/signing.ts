/**
 * Test helpers: requests signed by the independent reference signer (@smithy/signature-v4, the
 * one inside @aws-sdk/client-s3) and aws-chunked bodies built from the AWS specification, chunk
 * signatures included, with the reference signer signing each string to sign.
 */
import { createHash } from 'node:crypto'
import { Sha256 } from '@aws-crypto/sha256-js'
import { SignatureV4 } from '@smithy/signature-v4'
import type { HttpRequest } from '@smithy/types'
import type { SigV4Request } from '../../../../src/gateway/s3/auth/sigv4.ts'

export const ACCESS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE'
export const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
export const ACCOUNT_ID = 'acct-1'
export const HOST = 'bucket.s3.example.test'
export const SIGNING_DATE = new Date('2024-03-05T12:34:56Z')
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

export const lookup = async (id: string): Promise<{ secretAccessKey: string, accountId: string } | null> =>
  id === ACCESS_KEY_ID ? { secretAccessKey: SECRET, accountId: ACCOUNT_ID } : null

export function signer (region = 'us-east-1', secretAccessKey = SECRET): SignatureV4 {
  // uriEscapePath: false is how the SDK's S3 client signs: the path is signed as sent
  return new SignatureV4({ service: 's3', region, credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey }, sha256: Sha256, uriEscapePath: false, applyChecksum: false })
}

/**
 * Percent-encode with the SigV4 rules (what the SDK's `extendedEncodeURIComponent` and botocore's
 * `quote(safe='~')` produce): written from the rules, not taken from the code under test.
 */
export function awsEncode (text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** An object key as a path: segments encoded, '/' kept. */
export function awsEncodePath (key: string): string {
  return key.split('/').map(awsEncode).join('/')
}

export function queryString (query: Record<string, string | string[]>, encode: (s: string) => string = awsEncode): string {
  const parts: string[] = []
  for (const [name, value] of Object.entries(query)) {
    for (const v of Array.isArray(value) ? value : [value]) parts.push(`${encode(name)}=${encode(v)}`)
  }
  return parts.join('&')
}

export interface SignInput {
  method?: string
  path: string
  query?: Record<string, string | string[]>
  headers?: Record<string, string>
  region?: string
  date?: Date
}

/** Sign with the reference signer (header form); returns the request as the server receives it. */
export async function signHeaderForm (input: SignInput): Promise<SigV4Request> {
  const request: HttpRequest = {
    method: input.method ?? 'GET',
    protocol: 'https:',
    hostname: HOST,
    path: input.path,
    query: input.query ?? {},
    headers: { host: HOST, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...input.headers }
  }
  const signed = await signer(input.region).sign(request, { signingDate: input.date ?? SIGNING_DATE }) as HttpRequest
  return toWire(signed)
}

/**
 * Presign with the reference signer, as @aws-sdk/s3-request-presigner does: an
 * x-amz-content-sha256 of UNSIGNED-PAYLOAD, hoisted into the query. Returns the request as the
 * server receives it.
 */
export async function signPresigned (input: SignInput & { expiresIn?: number }): Promise<SigV4Request> {
  const request: HttpRequest = {
    method: input.method ?? 'GET',
    protocol: 'https:',
    hostname: HOST,
    path: input.path,
    query: input.query ?? {},
    headers: { host: HOST, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...input.headers }
  }
  const signed = await signer(input.region).presign(request, { signingDate: input.date ?? SIGNING_DATE, expiresIn: input.expiresIn ?? 900 })
  return toWire(signed)
}

function toWire (signed: HttpRequest): SigV4Request {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(signed.headers)) headers[name.toLowerCase()] = value
  return {
    method: signed.method,
    rawPath: signed.path,
    rawQuery: queryString(signed.query as Record<string, string | string[]>),
    headers
  }
}

export function sha256Hex (data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

export interface ChunkedBodyOptions {
  /** Data of each chunk, in order (the empty final chunk is added) */
  chunks: Uint8Array[]
  /** Signed modes: the seed signature and the signer; absent for unsigned trailers */
  seedSignature?: string
  region?: string
  date?: Date
  /** Trailers to send after the final chunk (name → value) */
  trailers?: Record<string, string>
  /** Sign the trailers (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER) */
  signTrailers?: boolean
}

export const AMZ_DATE = '20240305T123456Z'

/**
 * Encode an aws-chunked body following the AWS docs: each chunk signature signs
 * `AWS4-HMAC-SHA256-PAYLOAD\n<date>\n<scope>\n<previous>\n<sha256("")>\n<sha256(data)>`, the
 * trailer signature `AWS4-HMAC-SHA256-TRAILER\n<date>\n<scope>\n<previous>\n<sha256(trailers)>`.
 */
export async function encodeChunked (options: ChunkedBodyOptions): Promise<Uint8Array> {
  const date = options.date ?? SIGNING_DATE
  const amzDate = date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
  const region = options.region ?? 'us-east-1'
  const scope = `${amzDate.slice(0, 8)}/${region}/s3/aws4_request`
  const s = signer(region)
  const parts: Uint8Array[] = []
  let previous = options.seedSignature
  for (const data of [...options.chunks, new Uint8Array(0)]) {
    let header = data.length.toString(16)
    if (previous !== undefined) {
      const stringToSign = ['AWS4-HMAC-SHA256-PAYLOAD', amzDate, scope, previous, EMPTY_SHA256, sha256Hex(data)].join('\n')
      previous = await s.sign(stringToSign, { signingDate: date })
      header += `;chunk-signature=${previous}`
    }
    parts.push(Buffer.from(`${header}\r\n`))
    if (data.length > 0) parts.push(data, Buffer.from('\r\n'))
  }
  const trailers = Object.entries(options.trailers ?? {})
  for (const [name, value] of trailers) parts.push(Buffer.from(`${name}:${value}\r\n`))
  if (options.signTrailers === true && previous !== undefined) {
    const canonical = trailers.sort(([a], [b]) => a.localeCompare(b)).map(([n, v]) => `${n}:${v}\n`).join('')
    const stringToSign = ['AWS4-HMAC-SHA256-TRAILER', amzDate, scope, previous, sha256Hex(canonical)].join('\n')
    parts.push(Buffer.from(`x-amz-trailer-signature:${await s.sign(stringToSign, { signingDate: date })}\r\n`))
  }
  parts.push(Buffer.from('\r\n'))
  return Buffer.concat(parts)
}

/** Split `bytes` at the given offsets (sorted, deduplicated, in range). */
export function splitAt (bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => Math.max(0, Math.min(bytes.length, c))))].sort((a, b) => a - b)
  const out: Uint8Array[] = []
  let start = 0
  for (const p of points) {
    out.push(Uint8Array.from(bytes.subarray(start, p)))
    start = p
  }
  out.push(Uint8Array.from(bytes.subarray(start)))
  return out
}

export async function * fromChunks (chunks: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield c
}

export async function collectAll (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const c of source) parts.push(c)
  return Buffer.concat(parts)
}
