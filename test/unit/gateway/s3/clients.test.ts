/**
 * Requests recorded from other S3 clients (aws cli on botocore, s3cmd, rclone on aws-sdk-go),
 * sent to a capturing server with the AWS example credentials, replayed through the verifier.
 * fixtures/client-requests.json holds the raw request line, Node's headers and the body (gzip).
 */
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { AtlasError } from '../../../../src/core/errors.ts'
import { verifiedPayload } from '../../../../src/gateway/s3/auth/payload.ts'
import { parseAmzDate, verifySigV4, type SigV4Request } from '../../../../src/gateway/s3/auth/sigv4.ts'
import { collectAll, fromChunks, lookup } from './signing.ts'

interface Recorded {
  client: string
  method: string
  url: string
  headers: Record<string, string>
  bodyGzipBase64: string
}

const recorded = JSON.parse(readFileSync(new URL('./fixtures/client-requests.json', import.meta.url), 'utf8')) as Recorded[]

function request (r: Recorded): SigV4Request {
  const q = r.url.indexOf('?')
  return { method: r.method, rawPath: q === -1 ? r.url : r.url.slice(0, q), rawQuery: q === -1 ? '' : r.url.slice(q + 1), headers: r.headers }
}

/** The moment the client signed: the clock of the recording, not today's. */
function signedAt (r: Recorded): Date {
  const date = r.headers['x-amz-date'] ?? /X-Amz-Date=(\d{8}T\d{6}Z)/.exec(r.url)?.[1]
  return new Date(parseAmzDate(date ?? '') ?? Date.now())
}

const body = (r: Recorded): Buffer => r.bodyGzipBase64 === '' ? Buffer.alloc(0) : gunzipSync(Buffer.from(r.bodyGzipBase64, 'base64'))
const BIG = Buffer.from('Atlas aws-chunked fixture line; '.repeat(10000)).subarray(0, 300000)
const UPLOADS = [Buffer.from('hello world\n'), BIG, Buffer.from('presigned put body')]

describe('requests recorded from other clients', () => {
  const sigv4 = recorded.filter((r) => !r.url.includes('AWSAccessKeyId='))

  it('covers the clients and payload modes it claims to', () => {
    const clients = new Set(recorded.map((r) => r.client.split(' ')[0]))
    expect([...clients].sort()).toEqual(['aws-cli', 'rclone', 's3cmd'])
    const modes = new Set(sigv4.map((r) => r.headers['x-amz-content-sha256'] ?? 'presigned'))
    for (const mode of ['STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'UNSIGNED-PAYLOAD', 'presigned']) expect(modes).toContain(mode)
  })

  for (const r of sigv4) {
    it(`${r.client}: ${r.method} ${decodeURIComponent(r.url.split('?')[0] as string)}${r.url.includes('?') ? ' ?…' : ''}`, async () => {
      const auth = await verifySigV4(request(r), lookup, { now: signedAt(r) })
      expect(auth?.accessKeyId).toBe('AKIAIOSFODNN7EXAMPLE')
      const wire = body(r)
      const pieces: Buffer[] = []
      for (let at = 0; at < wire.length; at += 4096) pieces.push(wire.subarray(at, at + 4096))
      const verified = verifiedPayload(fromChunks(pieces), auth, r.headers)
      const data = await collectAll(verified.body)
      if (r.method === 'PUT' && r.url !== '/bkt') expect(UPLOADS.some((u) => u.equals(data))).toBe(true)
      const trailer = r.headers['x-amz-trailer']
      if (trailer !== undefined) expect(Object.keys(verified.checksums.values)).toEqual([trailer.slice('x-amz-checksum-'.length).toUpperCase()])

      // the same request with its signature altered is refused: this test can fail
      const tampered = request(r)
      if (typeof tampered.headers.authorization === 'string') {
        tampered.headers = { ...tampered.headers, authorization: tampered.headers.authorization.replace(/Signature=([0-9a-f])/, (_m, c: string) => `Signature=${c === '0' ? '1' : '0'}`) }
      } else {
        tampered.rawQuery = tampered.rawQuery.replace(/X-Amz-Signature=([0-9a-f])/, (_m, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`)
      }
      await expect(verifySigV4(tampered, lookup, { now: signedAt(r) })).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' })
    })
  }

  it('aws cli\'s default (SigV2) presigned URL is refused with a pointer to SigV4', async () => {
    const v2 = recorded.filter((r) => r.url.includes('AWSAccessKeyId='))
    expect(v2.length).toBe(1)
    const err = await verifySigV4(request(v2[0] as Recorded), lookup, {}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AtlasError)
    expect(err).toMatchObject({ code: 'InvalidRequest', message: expect.stringMatching(/Please use AWS4-HMAC-SHA256/) })
  })
})
