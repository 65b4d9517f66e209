import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Crc32, Crc32c, Crc64Nvme } from '@aws-sdk/checksums/crc'
import { Sha1, Sha256 } from '@aws-sdk/checksums/sha'
import { getAwsChunkedEncodingStream } from '@smithy/core/serde'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { AtlasError, type ErrorCode } from '../../../../src/core/errors.ts'
import { createChecksummer, type ChecksumAlgorithm } from '../../../../src/gateway/s3/auth/checksums.ts'
import { parseContentMd5, verifiedPayload } from '../../../../src/gateway/s3/auth/payload.ts'
import { verifySigV4, type VerifiedAuth } from '../../../../src/gateway/s3/auth/sigv4.ts'
import { collectAll, encodeChunked, fromChunks, lookup, sha256Hex, signer, signHeaderForm, SIGNING_DATE, splitAt } from './signing.ts'

const now = SIGNING_DATE

async function rejection (promise: Promise<unknown>): Promise<AtlasError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof AtlasError) return err
    throw err
  }
  throw new Error('expected a rejection')
}

async function expectCode (promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  const err = await rejection(promise)
  expect(err.code).toBe(code)
  if (message !== undefined) expect(err.message).toMatch(message)
}

function bytes (n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n)
  let x = seed
  for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; out[i] = x >>> 24 }
  return out
}

/** Cut `data` into chunks of the given sizes (the rest in a last chunk). */
function chunksOf (data: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let at = 0
  for (const size of sizes) {
    if (at >= data.length) break
    out.push(data.subarray(at, Math.min(data.length, at + size)))
    at += size
  }
  if (at < data.length) out.push(data.subarray(at))
  return out.filter((c) => c.length > 0)
}

/** A signed request announcing an aws-chunked body; returns its verified auth and headers. */
async function streamingAuth (mode: string, headers: Record<string, string> = {}): Promise<{ auth: VerifiedAuth, headers: Record<string, string | string[] | undefined> }> {
  const request = await signHeaderForm({ method: 'PUT', path: '/b/k', headers: { 'x-amz-content-sha256': mode, 'content-encoding': 'aws-chunked', ...headers } })
  const auth = await verifySigV4(request, lookup, { now })
  if (auth === null) throw new Error('unsigned')
  return { auth, headers: request.headers }
}

const crcTrailerValue = async (Ctor: new () => { update: (b: Uint8Array) => void, digest: () => Promise<Uint8Array> }, data: Uint8Array): Promise<string> => {
  const c = new Ctor()
  c.update(data)
  return Buffer.from(await c.digest()).toString('base64')
}

const REFERENCE: Record<ChecksumAlgorithm, new () => { update: (b: Uint8Array) => void, digest: () => Promise<Uint8Array> }> = {
  CRC32: Crc32, CRC32C: Crc32c, CRC64NVME: Crc64Nvme, SHA1: Sha1, SHA256: Sha256
}

describe('aws-chunked: the AWS documentation example', () => {
  // https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
  const headers = {
    'x-amz-date': '20130524T000000Z',
    host: 's3.amazonaws.com',
    'x-amz-storage-class': 'REDUCED_REDUNDANCY',
    'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
    'content-encoding': 'aws-chunked',
    'x-amz-decoded-content-length': '66560',
    'content-length': '66824',
    authorization: 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9'
  }
  const wire = (sig1 = 'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648'): Buffer => Buffer.concat([
    Buffer.from(`10000;chunk-signature=${sig1}\r\n`), Buffer.alloc(65536, 'a'), Buffer.from('\r\n'),
    Buffer.from('400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n'), Buffer.alloc(1024, 'a'), Buffer.from('\r\n'),
    Buffer.from('0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n')
  ])

  it('decodes and verifies every chunk signature', async () => {
    const auth = await verifySigV4({ method: 'PUT', rawPath: '/examplebucket/chunkObject.txt', rawQuery: '', headers }, lookup, { now: new Date('2013-05-24T00:00:00Z') })
    expect(wire().length).toBe(66824)
    const verified = verifiedPayload(fromChunks([wire()]), auth, headers)
    expect(verified.decodedLength).toBe(66560)
    expect(await collectAll(verified.body)).toEqual(Buffer.alloc(66560, 'a'))
  })

  it('refuses a wrong chunk signature', async () => {
    const auth = await verifySigV4({ method: 'PUT', rawPath: '/examplebucket/chunkObject.txt', rawQuery: '', headers }, lookup, { now: new Date('2013-05-24T00:00:00Z') })
    const verified = verifiedPayload(fromChunks([wire('bd80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648')]), auth, headers)
    await expectCode(collectAll(verified.body), 'SignatureDoesNotMatch')
  })
})

type Mode = 'signed' | 'signed-trailer' | 'unsigned-trailer'
const MODES: Record<Mode, string> = {
  signed: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  'signed-trailer': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
  'unsigned-trailer': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER'
}

/** A complete request for `mode`: its auth, headers and wire body. */
async function chunkedRequest (mode: Mode, data: Uint8Array, sizes: number[], options: { trailer?: ChecksumAlgorithm, decodedLength?: number | null } = {}) {
  const trailerName = options.trailer === undefined ? undefined : `x-amz-checksum-${options.trailer.toLowerCase()}`
  const extra: Record<string, string> = {}
  if (options.decodedLength !== null) extra['x-amz-decoded-content-length'] = String(options.decodedLength ?? data.length)
  if (trailerName !== undefined) extra['x-amz-trailer'] = trailerName
  const { auth, headers } = await streamingAuth(MODES[mode], extra)
  const trailers = trailerName === undefined ? undefined : { [trailerName]: await crcTrailerValue(REFERENCE[options.trailer as ChecksumAlgorithm], data) }
  const wire = await encodeChunked({
    chunks: chunksOf(data, sizes),
    seedSignature: mode === 'unsigned-trailer' ? undefined : auth.signature,
    trailers,
    signTrailers: mode === 'signed-trailer'
  })
  return { auth: mode === 'unsigned-trailer' ? { ...auth } : auth, headers, wire }
}

describe('aws-chunked: decoding', () => {
  for (const mode of Object.keys(MODES) as Mode[]) {
    it(`decodes a ${mode} body cut anywhere on the wire`, async () => {
      await fc.assert(fc.asyncProperty(
        fc.integer({ min: 0, max: 3000 }),
        fc.array(fc.integer({ min: 1, max: 1200 }), { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.constantFrom<ChecksumAlgorithm | undefined>(undefined, 'CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'),
        async (length, sizes, cuts, trailer) => {
          fc.pre(mode !== 'signed' || trailer === undefined)
          const data = bytes(length, length + 7)
          const { auth, headers, wire } = await chunkedRequest(mode, data, sizes, { trailer })
          const pieces = splitAt(wire, cuts.map((c) => c % (wire.length + 1)))
          const verified = verifiedPayload(fromChunks(pieces), auth, headers)
          expect(await collectAll(verified.body)).toEqual(Buffer.from(data))
          expect(verified.checksums.complete).toBe(true)
          if (trailer !== undefined) {
            expect(verified.checksums.values[trailer]).toBe(await crcTrailerValue(REFERENCE[trailer], data))
          }
        }), { numRuns: 80 })
    })

    it(`reports a ${mode} body cut short as IncompleteBody, wherever it stops`, async () => {
      const data = bytes(700)
      const { auth, headers, wire } = await chunkedRequest(mode, data, [300, 300], { trailer: mode === 'signed' ? undefined : 'CRC32C', decodedLength: null })
      for (let end = 0; end < wire.length; end++) {
        // stopping right before the closing empty line loses nothing: tolerated (see finish())
        if (end === wire.length - 2) continue
        const verified = verifiedPayload(fromChunks([wire.subarray(0, end)]), auth, headers)
        const err = await rejection(collectAll(verified.body))
        expect([err.code, end]).toEqual(['IncompleteBody', end])
      }
      const tolerated = verifiedPayload(fromChunks([wire.subarray(0, wire.length - 2)]), auth, headers)
      expect(await collectAll(tolerated.body)).toEqual(Buffer.from(data))
    })
  }

  it('refuses any wrong chunk signature', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 2000 }), fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 4 }), fc.nat(), fc.nat(), async (length, sizes, which, digit) => {
      const { auth, headers, wire } = await chunkedRequest('signed', bytes(length), sizes)
      const text = Buffer.from(wire).toString('latin1')
      const positions = [...text.matchAll(/chunk-signature=/g)].map((m) => (m.index) + 'chunk-signature='.length)
      const at = (positions[which % positions.length] as number) + (digit % 64)
      const replacement = '0123456789abcdef'.replace(text[at] as string, '')[digit % 15] as string
      const tampered = Buffer.from(text.slice(0, at) + replacement + text.slice(at + 1), 'latin1')
      await expectCode(collectAll(verifiedPayload(fromChunks([tampered]), auth, headers).body), 'SignatureDoesNotMatch')
    }), { numRuns: 60 })
  })

  it('refuses any changed data byte of a signed body', async () => {
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 2000 }), fc.nat(), async (length, pick) => {
      const data = bytes(length)
      const { auth, headers, wire } = await chunkedRequest('signed', data, Array.from({ length: Math.ceil(length / 512) }, () => 512))
      const text = Buffer.from(wire)
      // where the byte sits on the wire: after the framing of the chunks before it
      const index = pick % length
      const chunk = Math.floor(index / 512)
      const headerLength = (size: number): number => `${size.toString(16)};chunk-signature=`.length + 64 + 2
      let offset = 0
      for (let c = 0; c < chunk; c++) offset += headerLength(512) + 512 + 2
      offset += headerLength(Math.min(512, length - chunk * 512)) + (index % 512)
      expect(text[offset]).toBe(data[index])
      text[offset] = (text[offset] as number) ^ 0x01
      await expectCode(collectAll(verifiedPayload(fromChunks([text]), auth, headers).body), 'SignatureDoesNotMatch')
    }), { numRuns: 40 })
  })

  it('refuses a chunk signature replayed from another request (the chain is bound to the seed)', async () => {
    const data = bytes(100)
    const first = await chunkedRequest('signed', data, [100])
    const second = await streamingAuth(MODES.signed, { 'x-amz-decoded-content-length': '100', 'x-amz-meta-other': '1' })
    expect(second.auth.signature).not.toBe(first.auth.signature)
    await expectCode(collectAll(verifiedPayload(fromChunks([first.wire]), second.auth, second.headers).body), 'SignatureDoesNotMatch')
  })

  it('checks x-amz-decoded-content-length', async () => {
    const data = bytes(1000)
    for (const announced of [999, 1001, 0]) {
      const { auth, headers, wire } = await chunkedRequest('unsigned-trailer', data, [400], { decodedLength: announced })
      await expectCode(collectAll(verifiedPayload(fromChunks([wire]), auth, headers).body), 'IncompleteBody')
    }
    const { auth, headers } = await streamingAuth(MODES.signed, { 'x-amz-decoded-content-length': '12x' })
    expect(() => verifiedPayload(fromChunks([]), auth, headers)).toThrow(expect.objectContaining({ code: 'InvalidArgument' }))
  })

  it('needs x-amz-decoded-content-length when Content-Length is sent (that one counts the framing)', async () => {
    const { auth, headers } = await streamingAuth(MODES['unsigned-trailer'], { 'content-length': '500' })
    expect(() => verifiedPayload(fromChunks([]), auth, headers)).toThrow(expect.objectContaining({ code: 'MissingContentLength' }))
    const streamed = await streamingAuth(MODES['unsigned-trailer'])
    expect(verifiedPayload(fromChunks([]), streamed.auth, streamed.headers).decodedLength).toBeUndefined()
  })

  it('refuses malformed framing', async () => {
    const unsigned = await streamingAuth(MODES['unsigned-trailer'])
    const cases: Array<[string, ErrorCode]> = [
      ['zz\r\nabc\r\n0\r\n\r\n', 'InvalidRequest'], // not a hex size
      ['3\nabc\r\n0\r\n\r\n', 'InvalidRequest'], // header without CR
      ['3\r\nabcd\r\n0\r\n\r\n', 'InvalidRequest'], // longer than declared
      ['5\r\nabc\r\n0\r\n\r\n', 'InvalidRequest'], // shorter than declared: the framing runs into data
      ['3\r\nabc\r\n0\r\n\r\nextra', 'InvalidRequest'], // data after the end
      ['3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n', 'InvalidRequest'], // trailer not announced
      ['3\r\nabc\r\n0\r\nnot a trailer\r\n\r\n', 'InvalidRequest'],
      [`${'0'.repeat(5000)}3\r\nabc\r\n0\r\n\r\n`, 'InvalidRequest'], // endless header line
      ['1000001\r\n', 'InvalidRequest'], // a chunk over the limit
      ['3\r\nab', 'IncompleteBody']
    ]
    for (const [body, code] of cases) {
      const verified = verifiedPayload(fromChunks([Buffer.from(body)]), unsigned.auth, unsigned.headers, { maxChunkSize: 16 * 1024 * 1024 })
      const err = await rejection(collectAll(verified.body))
      expect([body.slice(0, 40), err.code]).toEqual([body.slice(0, 40), code])
    }
    const ok = verifiedPayload(fromChunks([Buffer.from('3;ext=1\r\nabc\r\n0\r\n\r\n')]), unsigned.auth, unsigned.headers)
    expect((await collectAll(ok.body)).toString()).toBe('abc')

    const signed = await streamingAuth(MODES.signed)
    await expectCode(collectAll(verifiedPayload(fromChunks([Buffer.from('3\r\nabc\r\n0\r\n\r\n')]), signed.auth, signed.headers).body), 'InvalidRequest')
    await expectCode(collectAll(verifiedPayload(fromChunks([Buffer.from(`3;chunk-signature=${'A'.repeat(64)}\r\nabc\r\n`)]), signed.auth, signed.headers).body), 'InvalidRequest')
  })

  it('honours maxChunkSize', async () => {
    const { auth, headers, wire } = await chunkedRequest('unsigned-trailer', bytes(2048), [2048])
    await expectCode(collectAll(verifiedPayload(fromChunks([wire]), auth, headers, { maxChunkSize: 1024 }).body), 'InvalidRequest', /exceeds the limit/)
    expect((await collectAll(verifiedPayload(fromChunks([wire]), auth, headers, { maxChunkSize: 2048 }).body)).length).toBe(2048)
  })

  it('refuses a signed streaming payload on a request that was not signed', () => {
    expect(() => verifiedPayload(fromChunks([]), null, { 'x-amz-content-sha256': MODES.signed })).toThrow(expect.objectContaining({ code: 'InvalidRequest' }))
  })
})

describe('aws-chunked: trailers', () => {
  it('decodes the SDK\'s own aws-chunked encoder output (getAwsChunkedEncodingStream) for every algorithm', async () => {
    for (const algorithm of Object.keys(REFERENCE) as ChecksumAlgorithm[]) {
      await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 3000 }), { maxLength: 5 }), fc.array(fc.nat(), { maxLength: 6 }), async (sizes, cuts) => {
        const data = bytes(sizes.reduce((a, b) => a + b, 0), sizes.length)
        const name = `x-amz-checksum-${algorithm.toLowerCase()}`
        const source = Readable.from(chunksOf(data, sizes).map((c) => Buffer.from(c)), { objectMode: false })
        const encoded = getAwsChunkedEncodingStream(source, {
          base64Encoder: (b: Uint8Array) => Buffer.from(b).toString('base64'),
          bodyLengthChecker: (b: Uint8Array) => b.length,
          checksumAlgorithmFn: REFERENCE[algorithm],
          checksumLocationName: name,
          streamHasher: async (Ctor, stream) => await new Promise<Uint8Array>((resolve, reject) => {
            const hash = new (Ctor as new () => { update: (b: Uint8Array) => void, digest: () => Promise<Uint8Array> })()
            ;(stream as Readable).on('data', (d: Buffer) => { hash.update(d) })
            ;(stream as Readable).on('end', () => { hash.digest().then(resolve, reject) })
          })
        })
        const wire = await collectAll(encoded as AsyncIterable<Uint8Array>)
        const headers = { 'x-amz-content-sha256': MODES['unsigned-trailer'], 'x-amz-trailer': name, 'x-amz-decoded-content-length': String(data.length), 'content-encoding': 'aws-chunked' }
        const verified = verifiedPayload(fromChunks(splitAt(wire, cuts.map((c) => c % (wire.length + 1)))), null, headers)
        expect(await collectAll(verified.body)).toEqual(Buffer.from(data))
        expect(verified.checksums.values[algorithm]).toBe(await crcTrailerValue(REFERENCE[algorithm], data))
      }), { numRuns: 15 })
    }
  })

  for (const algorithm of ['CRC32', 'CRC32C', 'SHA1', 'SHA256', 'CRC64NVME'] as ChecksumAlgorithm[]) {
    it(`refuses a wrong or malformed ${algorithm} trailer`, async () => {
      const data = bytes(5000)
      const name = `x-amz-checksum-${algorithm.toLowerCase()}`
      const { auth, headers } = await streamingAuth(MODES['unsigned-trailer'], { 'x-amz-trailer': name, 'x-amz-decoded-content-length': '5000' })
      const good = await crcTrailerValue(REFERENCE[algorithm], data)
      const wrong = await crcTrailerValue(REFERENCE[algorithm], bytes(5000, 99))
      const wire = async (value: string): Promise<Uint8Array> => await encodeChunked({ chunks: [data], trailers: { [name]: value } })
      expect((await collectAll(verifiedPayload(fromChunks([await wire(good)]), auth, headers).body)).length).toBe(5000)
      await expectCode(collectAll(verifiedPayload(fromChunks([await wire(wrong)]), auth, headers).body), 'BadDigest', new RegExp(`^The ${algorithm} you specified did not match the calculated checksum\\.$`))
      for (const malformed of ['', 'not base64!', good.replace(/=+$/, ''), Buffer.from('abc').toString('base64')]) {
        await expectCode(collectAll(verifiedPayload(fromChunks([await wire(malformed)]), auth, headers).body), 'InvalidRequest', /is invalid/)
      }
    })
  }

  it('verifies the trailer signature of a signed-trailer body', async () => {
    const data = bytes(3000)
    const { auth, headers, wire } = await chunkedRequest('signed-trailer', data, [1000], { trailer: 'CRC32' })
    expect(Buffer.from(wire).toString('latin1')).toMatch(/x-amz-checksum-crc32:[^\r]+\r\nx-amz-trailer-signature:[0-9a-f]{64}\r\n\r\n$/)
    expect((await collectAll(verifiedPayload(fromChunks([wire]), auth, headers).body)).length).toBe(3000)

    // a changed trailer value no longer matches its signature
    const text = Buffer.from(wire).toString('latin1')
    const value = /x-amz-checksum-crc32:([^\r]+)/.exec(text)?.[1] as string
    const other = await crcTrailerValue(Crc32, bytes(3000, 5))
    const tampered = Buffer.from(text.replace(value, other), 'latin1')
    await expectCode(collectAll(verifiedPayload(fromChunks([tampered]), auth, headers).body), 'SignatureDoesNotMatch')

    // without its signature line
    const unsignedTrailer = Buffer.from(text.replace(/x-amz-trailer-signature:[0-9a-f]{64}\r\n/, ''), 'latin1')
    await expectCode(collectAll(verifiedPayload(fromChunks([unsignedTrailer]), auth, headers).body), 'IncompleteBody')

    // the layout of AWS's own example: "<trailer>\n\r\n" before the signature line
    const docsLayout = Buffer.from(text.replace(/(x-amz-checksum-crc32:[^\r]+)\r\n/, '$1\n\r\n'), 'latin1')
    expect((await collectAll(verifiedPayload(fromChunks([docsLayout]), auth, headers).body)).length).toBe(3000)
  })

  it('checks the trailer\'s checksum after its signature', async () => {
    // a trailer signed by the client but wrong for the data: signature fine, checksum not
    const data = bytes(2000)
    const { auth, headers } = await streamingAuth(MODES['signed-trailer'], { 'x-amz-trailer': 'x-amz-checksum-sha256', 'x-amz-decoded-content-length': '2000' })
    const wire = await encodeChunked({ chunks: [data], seedSignature: auth.signature, trailers: { 'x-amz-checksum-sha256': createHash('sha256').update('other').digest('base64') }, signTrailers: true })
    await expectCode(collectAll(verifiedPayload(fromChunks([wire]), auth, headers).body), 'BadDigest', /SHA256/)
  })

  it('refuses an announced trailer that never comes, and x-amz-trailer without a trailer mode', async () => {
    const { auth, headers } = await streamingAuth(MODES['unsigned-trailer'], { 'x-amz-trailer': 'x-amz-checksum-crc32' })
    await expectCode(collectAll(verifiedPayload(fromChunks([Buffer.from('3\r\nabc\r\n0\r\n\r\n')]), auth, headers).body), 'IncompleteBody')
    const signed = await streamingAuth(MODES.signed, { 'x-amz-trailer': 'x-amz-checksum-crc32' })
    expect(() => verifiedPayload(fromChunks([]), signed.auth, signed.headers)).toThrow(expect.objectContaining({ code: 'InvalidRequest' }))
    const unsupported = await streamingAuth(MODES['unsigned-trailer'], { 'x-amz-trailer': 'x-amz-meta-foo' })
    expect(() => verifiedPayload(fromChunks([]), unsupported.auth, unsupported.headers)).toThrow(expect.objectContaining({ code: 'InvalidRequest' }))
  })
})

describe('whole-body verification', () => {
  it('sha256: passes a matching body and fails a different one instead of ending', async () => {
    const data = bytes(10_000)
    const headers = { 'x-amz-content-sha256': sha256Hex(data) }
    const request = await signHeaderForm({ method: 'PUT', path: '/k', headers })
    const auth = await verifySigV4(request, lookup, { now })
    expect(await collectAll(verifiedPayload(fromChunks(chunksOf(data, [3000, 3000])), auth, request.headers).body)).toEqual(Buffer.from(data))

    const other = Buffer.from(data)
    other[9999] = (other[9999] as number) ^ 1
    const iterator = verifiedPayload(fromChunks(chunksOf(other, [3000, 3000])), auth, request.headers).body[Symbol.asyncIterator]()
    let received = 0
    let error: unknown
    for (;;) {
      let result: IteratorResult<Uint8Array>
      try {
        result = await iterator.next()
      } catch (err) {
        error = err
        break
      }
      // the consumer must never see a clean end of a bad body
      expect(result.done).toBe(false)
      received += (result.value as Uint8Array).length
    }
    expect(received).toBe(10_000)
    expect(error).toMatchObject({ code: 'XAmzContentSHA256Mismatch' })
  })

  it('unsigned: passes the body through untouched', async () => {
    const data = bytes(5000)
    const pieces = chunksOf(data, [1, 999, 4000])
    const verified = verifiedPayload(fromChunks(pieces), null, { 'content-length': '5000' })
    expect(verified.decodedLength).toBe(5000)
    const out: Uint8Array[] = []
    for await (const piece of verified.body) out.push(piece)
    expect(out).toEqual(pieces)
  })

  it('an anonymous request may pin its payload with x-amz-content-sha256', async () => {
    const data = bytes(100)
    const ok = verifiedPayload(fromChunks([data]), null, { 'x-amz-content-sha256': sha256Hex(data) })
    expect((await collectAll(ok.body)).length).toBe(100)
    const bad = verifiedPayload(fromChunks([data]), null, { 'x-amz-content-sha256': sha256Hex('x') })
    await expectCode(collectAll(bad.body), 'XAmzContentSHA256Mismatch')
  })

  for (const algorithm of Object.keys(REFERENCE) as ChecksumAlgorithm[]) {
    it(`x-amz-checksum-${algorithm.toLowerCase()} header: good, wrong and malformed values`, async () => {
      const data = bytes(4321)
      const name = `x-amz-checksum-${algorithm.toLowerCase()}`
      const good = await crcTrailerValue(REFERENCE[algorithm], data)
      const ok = verifiedPayload(fromChunks(chunksOf(data, [100, 1000])), null, { [name]: good })
      expect(ok.checksums.complete).toBe(false)
      expect((await collectAll(ok.body)).length).toBe(4321)
      expect(ok.checksums).toEqual({ complete: true, values: { [algorithm]: good } })

      const wrong = await crcTrailerValue(REFERENCE[algorithm], bytes(4321, 3))
      const bad = verifiedPayload(fromChunks([data]), null, { [name]: wrong })
      await expectCode(collectAll(bad.body), 'BadDigest', new RegExp(`The ${algorithm} you specified did not match the calculated checksum.`))
      expect(bad.checksums.complete).toBe(false)

      for (const malformed of ['###', good.slice(1), Buffer.alloc(40).toString('base64')]) {
        expect(() => verifiedPayload(fromChunks([data]), null, { [name]: malformed })).toThrow(expect.objectContaining({ code: 'InvalidRequest', message: `Value for ${name} header is invalid.` }))
      }
    })
  }

  it('computes the algorithm named by x-amz-sdk-checksum-algorithm or x-amz-checksum-algorithm without a value to check', async () => {
    const data = bytes(777)
    for (const name of ['x-amz-sdk-checksum-algorithm', 'x-amz-checksum-algorithm']) {
      const verified = verifiedPayload(fromChunks([data]), null, { [name]: 'crc32c' })
      await collectAll(verified.body)
      expect(verified.checksums.values).toEqual({ CRC32C: await crcTrailerValue(Crc32c, data) })
    }
    expect(() => verifiedPayload(fromChunks([data]), null, { 'x-amz-sdk-checksum-algorithm': 'MD5' })).toThrow(expect.objectContaining({ code: 'InvalidRequest' }))
  })

  it('refuses more than one checksum value', async () => {
    const data = bytes(10)
    expect(() => verifiedPayload(fromChunks([data]), null, {
      'x-amz-checksum-crc32': 'AAAAAA==',
      'x-amz-checksum-sha1': Buffer.alloc(20).toString('base64')
    })).toThrow(expect.objectContaining({ code: 'InvalidRequest', message: expect.stringMatching(/single x-amz-checksum-/) }))
    expect(() => verifiedPayload(fromChunks([data]), null, {
      'x-amz-content-sha256': MODES['unsigned-trailer'],
      'x-amz-checksum-crc32': 'AAAAAA==',
      'x-amz-trailer': 'x-amz-checksum-crc32c'
    })).toThrow(expect.objectContaining({ code: 'InvalidRequest' }))
  })

  it('ignores the x-amz-checksum-* headers that are not values (type, mode)', async () => {
    const verified = verifiedPayload(fromChunks([bytes(10)]), null, { 'x-amz-checksum-type': 'FULL_OBJECT', 'x-amz-checksum-mode': 'ENABLED' })
    await collectAll(verified.body)
    expect(verified.checksums).toEqual({ complete: true, values: {} })
  })
})

describe('checksum algorithms', () => {
  const check = new TextEncoder().encode('123456789')
  // the "check" values of the CRC catalogue and the FIPS 180 examples
  const vectors: Array<[ChecksumAlgorithm, Uint8Array, string]> = [
    ['CRC32', check, 'cbf43926'],
    ['CRC32C', check, 'e3069283'],
    ['CRC64NVME', check, 'ae8b14860a799888'],
    ['SHA1', new TextEncoder().encode('abc'), 'a9993e364706816aba3e25717850c26c9cd0d89d'],
    ['SHA256', new TextEncoder().encode('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['CRC32', new Uint8Array(0), '00000000'],
    ['CRC64NVME', new Uint8Array(0), '0000000000000000']
  ]
  for (const [algorithm, input, hex] of vectors) {
    it(`${algorithm}(${input.length === 0 ? '""' : Buffer.from(input).toString()}) = ${hex}`, async () => {
      const c = createChecksummer(algorithm)
      c.update(input)
      expect(Buffer.from(await c.digest()).toString('hex')).toBe(hex)
    })
  }

  it('CRC-64/NVME agrees with a bitwise reference over any input split any way', async () => {
    // CRC-64/NVME: reflected polynomial 0x9A6C9329AC4BC9B5, init and xorout all ones
    const reference = (data: Uint8Array): string => {
      let crc = 0xffffffffffffffffn
      for (const byte of data) {
        crc ^= BigInt(byte)
        for (let k = 0; k < 8; k++) crc = (crc & 1n) === 1n ? (crc >> 1n) ^ 0x9a6c9329ac4bc9b5n : crc >> 1n
      }
      return (crc ^ 0xffffffffffffffffn).toString(16).padStart(16, '0')
    }
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 5 }), async (data, cuts) => {
      const c = createChecksummer('CRC64NVME')
      for (const piece of splitAt(data, cuts.map((x) => x % (data.length + 1)))) c.update(piece)
      expect(Buffer.from(await c.digest()).toString('hex')).toBe(reference(data))
    }))
  })

  it('CRC32 and CRC32C agree with the SDK\'s implementations over any input split any way', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 5 }), async (data, cuts) => {
      for (const algorithm of ['CRC32', 'CRC32C'] as const) {
        const c = createChecksummer(algorithm)
        for (const piece of splitAt(data, cuts.map((x) => x % (data.length + 1)))) c.update(piece)
        expect(Buffer.from(await c.digest()).toString('base64')).toBe(await crcTrailerValue(REFERENCE[algorithm], data))
      }
    }))
  })
})

describe('parseContentMd5', () => {
  it('returns the hex digest of a valid Content-MD5', () => {
    const md5 = createHash('md5').update('hello').digest()
    expect(parseContentMd5(md5.toString('base64'))).toBe(md5.toString('hex'))
    expect(parseContentMd5(` ${md5.toString('base64')} `)).toBe(md5.toString('hex'))
  })

  it('throws InvalidDigest for anything but base64 of 16 bytes', () => {
    const md5 = createHash('md5').update('hello').digest()
    for (const bad of ['', 'abc', md5.toString('hex'), md5.toString('base64url'), md5.toString('base64').replace(/==$/, ''), Buffer.alloc(17).toString('base64'), Buffer.alloc(15).toString('base64')]) {
      expect(() => parseContentMd5(bad)).toThrow(expect.objectContaining({ code: 'InvalidDigest' }))
    }
  })
})

describe('memory', () => {
  it('streams a 64 MiB signed aws-chunked body without holding it', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const CHUNK = 1024 * 1024
    const COUNT = 64
    const { auth, headers } = await streamingAuth(MODES.signed, { 'x-amz-decoded-content-length': String(CHUNK * COUNT) })
    const scope = `${auth.scope.date}/${auth.scope.region}/s3/aws4_request`
    const s = signer()

    // the wire bytes, made chunk by chunk and handed over in 64 KiB pieces as a socket would
    async function * wire (): AsyncGenerator<Uint8Array> {
      let previous = auth.signature
      for (let i = 0; i <= COUNT; i++) {
        const data = i < COUNT ? Buffer.alloc(CHUNK, i) : Buffer.alloc(0)
        previous = await s.sign(['AWS4-HMAC-SHA256-PAYLOAD', auth.amzDate, scope, previous, sha256Hex(''), sha256Hex(data)].join('\n'), { signingDate: now })
        const framed = Buffer.concat([Buffer.from(`${data.length.toString(16)};chunk-signature=${previous}\r\n`), data, Buffer.from('\r\n')])
        for (let at = 0; at < framed.length; at += 65536) yield Buffer.from(framed.subarray(at, at + 65536))
      }
    }
    // two collections: one alone leaves freed ArrayBuffers still counted
    const used = (): number => { gc(); gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers }

    const measure = async (consume: (body: AsyncIterable<Uint8Array>) => Promise<number>): Promise<number> => {
      const before = used()
      let peak = 0
      let n = 0
      const verified = verifiedPayload(wire(), auth, headers)
      const sampled = async function * (): AsyncGenerator<Uint8Array> {
        for await (const piece of verified.body) {
          if (++n % 128 === 0) peak = Math.max(peak, used() - before)
          yield piece
        }
        peak = Math.max(peak, used() - before)
      }
      expect(await consume(sampled())).toBe(CHUNK * COUNT)
      return peak
    }

    // streaming through: the growth stays far below the body size
    const streamed = await measure(async (body) => { let total = 0; for await (const piece of body) total += piece.length; return total })
    expect(streamed).toBeLessThan(8 * CHUNK)
    // the same measurement does see a consumer that keeps everything (so the check above can fail)
    const kept: Uint8Array[] = []
    const buffered = await measure(async (body) => { let total = 0; for await (const piece of body) { kept.push(piece); total += piece.length } return total })
    expect(buffered).toBeGreaterThan(48 * CHUNK)
    kept.length = 0
  })
})
