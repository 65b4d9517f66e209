/**
 * An incremental decoder of S3's aws-chunked body encoding, for the three streaming payload modes:
 *
 * ```
 * STREAMING-AWS4-HMAC-SHA256-PAYLOAD          <hex-size>;chunk-signature=<sig>\r\n<data>\r\n ...
 *                                             0;chunk-signature=<sig>\r\n\r\n
 * STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER  ... 0;chunk-signature=<sig>\r\n
 *                                             <name>:<value>\r\n ... x-amz-trailer-signature:<sig>\r\n\r\n
 * STREAMING-UNSIGNED-PAYLOAD-TRAILER          <hex-size>\r\n<data>\r\n ... 0\r\n<name>:<value>\r\n ... \r\n
 * ```
 *
 * Chunk signatures chain from the request's seed signature: each signs
 * `AWS4-HMAC-SHA256-PAYLOAD\n<amz-date>\n<scope>\n<previous signature>\n<sha256("")>\n<sha256(data)>`,
 * and the trailer signature signs
 * `AWS4-HMAC-SHA256-TRAILER\n<amz-date>\n<scope>\n<final chunk signature>\n<sha256(trailers)>` where
 * the trailers are `name:value\n` sorted by name.
 *
 * Chunk data is passed on as it arrives (views of the input, never copied or buffered); a chunk's
 * signature is checked when its last byte has passed, before anything after it. A bad chunk
 * therefore fails the body after some of its bytes went downstream, which is safe because the
 * ingest pipeline stores nothing from a body that throws. Only a header or trailer line is ever
 * buffered, and lines are capped.
 */
import { createHash, createHmac, type Hash } from 'node:crypto'
import { AtlasError } from '../../../core/errors.ts'
import { EMPTY_SHA256, hmacKey, signatureMatches } from './sigv4.ts'

/** Longest chunk header or trailer line, CRLF included. */
export const MAX_CHUNK_LINE = 4096

/** Largest trailer section (all trailer lines together). */
export const MAX_TRAILER_BYTES = 16 * 1024

/** What a signed stream needs to check its chunk signatures. */
export interface ChunkSigning {
  signingKey: Uint8Array
  amzDate: string
  /** `<date>/<region>/<service>/aws4_request` */
  scope: string
  /** The request's signature */
  seedSignature: string
}

export interface AwsChunkedDecoderInit {
  /** Present for the signed modes; absent for STREAMING-UNSIGNED-PAYLOAD-TRAILER */
  signing?: ChunkSigning
  /** True when trailers may follow the final chunk (the two -TRAILER modes) */
  trailer: boolean
  /** Trailer names announced in x-amz-trailer (lowercase); others are refused */
  declaredTrailers: ReadonlySet<string>
  /** Largest accepted chunk */
  maxChunkSize: number
}

type State = 'header' | 'data' | 'data-cr' | 'data-lf' | 'trailer' | 'done'

const SIGNED_CHUNK_HEADER = /^([0-9a-fA-F]{1,16});chunk-signature=([0-9a-f]{64})$/
const UNSIGNED_CHUNK_HEADER = /^([0-9a-fA-F]{1,16})(?:;[^\r\n]*)?$/
const TRAILER_SIGNATURE = 'x-amz-trailer-signature'

function malformed (why: string): AtlasError {
  return new AtlasError('InvalidRequest', `Malformed aws-chunked body: ${why}`)
}

function badSignature (): AtlasError {
  return new AtlasError('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.')
}

/**
 * Push the wire bytes in with {@link AwsChunkedDecoder.push} (in pieces of any size, split
 * anywhere) and take the decoded data out of the generator it returns; call
 * {@link AwsChunkedDecoder.finish} at the end of the input to get the trailers.
 */
export class AwsChunkedDecoder {
  private readonly signing: ChunkSigning | undefined
  private readonly trailer: boolean
  private readonly declared: ReadonlySet<string>
  private readonly maxChunkSize: number
  private state: State = 'header'
  private line: Uint8Array[] = []
  private lineLength = 0
  private remaining = 0
  private chunkSignature = ''
  private chunkHash: Hash | undefined
  private previousSignature: string
  private trailerBytes = 0
  private readonly trailers = new Map<string, string>()
  private trailerSigned = false

  constructor (init: AwsChunkedDecoderInit) {
    this.signing = init.signing
    this.trailer = init.trailer
    this.declared = init.declaredTrailers
    this.maxChunkSize = init.maxChunkSize
    this.previousSignature = init.signing?.seedSignature ?? ''
  }

  /** Decode one piece of the wire bytes; yields views of `piece` holding chunk data. */
  * push (piece: Uint8Array): Generator<Uint8Array, void, undefined> {
    let pos = 0
    while (pos < piece.length) {
      switch (this.state) {
        case 'header':
        case 'trailer': {
          const lf = piece.indexOf(0x0a, pos)
          const end = lf === -1 ? piece.length : lf
          this.appendLine(piece.subarray(pos, end))
          if (lf === -1) return
          pos = lf + 1
          const line = this.takeLine()
          if (this.state === 'header') this.onChunkHeader(line)
          else this.onTrailerLine(line)
          break
        }
        case 'data': {
          const n = Math.min(this.remaining, piece.length - pos)
          const data = piece.subarray(pos, pos + n)
          pos += n
          this.remaining -= n
          this.chunkHash?.update(data)
          yield data
          if (this.remaining === 0) {
            this.verifyChunk(this.chunkHash?.digest('hex'))
            this.state = 'data-cr'
          }
          break
        }
        case 'data-cr':
        case 'data-lf': {
          const expected = this.state === 'data-cr' ? 0x0d : 0x0a
          if (piece[pos] !== expected) throw malformed('chunk data is not followed by CRLF (the chunk is longer than its declared size)')
          pos++
          this.state = this.state === 'data-cr' ? 'data-lf' : 'header'
          break
        }
        case 'done':
          throw malformed('data after the end of the body')
      }
    }
  }

  /**
   * The end of the input: checks that the body was complete and returns its trailers (lowercase
   * names, trimmed values). An input that stops at a line boundary after the final chunk is
   * accepted without the closing empty line, which some encoders leave out (the final chunk,
   * signed or not, already marks the end of the data).
   *
   * @throws AtlasError IncompleteBody when the body stopped early or a declared trailer is missing
   */
  finish (): Map<string, string> {
    const atLineBoundary = this.state === 'trailer' && this.lineLength === 0
    if (this.state !== 'done' && !atLineBoundary) {
      throw new AtlasError('IncompleteBody', 'The aws-chunked request body ended before its final chunk.')
    }
    if (this.signing !== undefined && this.trailer && this.trailers.size > 0 && !this.trailerSigned) {
      throw new AtlasError('IncompleteBody', 'The aws-chunked request body ended before its x-amz-trailer-signature.')
    }
    for (const name of this.declared) {
      if (!this.trailers.has(name)) throw new AtlasError('IncompleteBody', `The trailer ${name} announced in x-amz-trailer was not sent.`)
    }
    this.state = 'done'
    return this.trailers
  }

  private appendLine (bytes: Uint8Array): void {
    if (bytes.length === 0) return
    this.lineLength += bytes.length
    if (this.lineLength > MAX_CHUNK_LINE) throw malformed(`a chunk header or trailer line is longer than ${MAX_CHUNK_LINE} bytes`)
    if (this.state === 'trailer') {
      this.trailerBytes += bytes.length
      if (this.trailerBytes > MAX_TRAILER_BYTES) throw malformed(`the trailers are longer than ${MAX_TRAILER_BYTES} bytes`)
    }
    // copied: the piece it came from may be reused by the source once we move on
    this.line.push(Uint8Array.from(bytes))
  }

  /** The buffered line without its LF; `crlf` tells whether it ended in CR LF. */
  private takeLine (): { text: string, crlf: boolean } {
    let text = Buffer.concat(this.line, this.lineLength).toString('latin1')
    this.line = []
    this.lineLength = 0
    const crlf = text.endsWith('\r')
    if (crlf) text = text.slice(0, -1)
    return { text, crlf }
  }

  private onChunkHeader ({ text, crlf }: { text: string, crlf: boolean }): void {
    if (!crlf) throw malformed('a chunk header does not end with CRLF')
    const match = (this.signing === undefined ? UNSIGNED_CHUNK_HEADER : SIGNED_CHUNK_HEADER).exec(text)
    if (match === null) {
      throw malformed(this.signing === undefined ? 'a chunk header is not "<hex-size>"' : 'a chunk header is not "<hex-size>;chunk-signature=<signature>"')
    }
    const size = Number.parseInt(match[1] as string, 16)
    if (size > this.maxChunkSize) throw malformed(`a chunk of ${size} bytes exceeds the limit of ${this.maxChunkSize} bytes`)
    this.chunkSignature = match[2] ?? ''
    if (size === 0) {
      this.verifyChunk(EMPTY_SHA256)
      this.state = 'trailer'
      return
    }
    this.remaining = size
    this.chunkHash = this.signing === undefined ? undefined : createHash('sha256')
    this.state = 'data'
  }

  private verifyChunk (dataHash: string | undefined): void {
    const signing = this.signing
    if (signing === undefined || dataHash === undefined) return
    const stringToSign = ['AWS4-HMAC-SHA256-PAYLOAD', signing.amzDate, signing.scope, this.previousSignature, EMPTY_SHA256, dataHash].join('\n')
    const expected = createHmac('sha256', hmacKey(signing.signingKey)).update(stringToSign, 'utf8').digest()
    if (!signatureMatches(this.chunkSignature, expected)) throw badSignature()
    this.previousSignature = this.chunkSignature
  }

  private onTrailerLine ({ text }: { text: string, crlf: boolean }): void {
    if (text === '') {
      // AWS's own example writes "<trailer>\n\r\n" before the trailer signature: an empty line
      // between trailers and their signature is skipped rather than taken as the end
      if (this.signing !== undefined && this.trailer && this.trailers.size > 0 && !this.trailerSigned) return
      this.state = 'done'
      return
    }
    if (!this.trailer) throw malformed('data after the final chunk')
    if (this.trailerSigned) throw malformed('a trailer after x-amz-trailer-signature')
    const colon = text.indexOf(':')
    if (colon <= 0) throw malformed('a trailer line is not "<name>:<value>"')
    const name = text.slice(0, colon).trim().toLowerCase()
    const value = text.slice(colon + 1).trim()
    if (name === TRAILER_SIGNATURE) {
      this.verifyTrailerSignature(value)
      return
    }
    if (!this.declared.has(name)) throw new AtlasError('InvalidRequest', `The trailer ${name} was not announced in x-amz-trailer.`)
    if (this.trailers.has(name)) throw malformed(`the trailer ${name} is repeated`)
    this.trailers.set(name, value)
  }

  private verifyTrailerSignature (signature: string): void {
    const signing = this.signing
    if (signing === undefined || !this.trailer) throw malformed('x-amz-trailer-signature in an unsigned body')
    const canonical = [...this.trailers.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => `${name}:${value}\n`)
      .join('')
    const stringToSign = ['AWS4-HMAC-SHA256-TRAILER', signing.amzDate, signing.scope, this.previousSignature,
      createHash('sha256').update(canonical, 'latin1').digest('hex')].join('\n')
    const expected = createHmac('sha256', hmacKey(signing.signingKey)).update(stringToSign, 'utf8').digest()
    if (!signatureMatches(signature, expected)) throw badSignature()
    this.trailerSigned = true
  }
}
