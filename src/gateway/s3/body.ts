/**
 * Request bodies on the S3 API: the raw stream, decoded from aws-chunked framing where the client
 * used it and checked against the payload signature and checksums as it passes; small XML
 * documents are read through the same verification, with a size limit.
 */
import { AtlasError } from '../../core/errors.ts'
import { collect } from '../../core/streams.ts'
import { declaredLength, requestBody } from '../http.ts'
import { verifiedPayload, type ChecksumResult } from './auth/payload.ts'
import type { S3Context } from './context.ts'
import { parseXml } from './xml.ts'

/** Largest XML request document (DeleteObjects of 1000 long keys fits) */
export const MAX_XML_BODY = 2 * 1024 * 1024

export interface S3Body {
  body: AsyncIterable<Uint8Array>
  /** Length of the object bytes (decoded length for aws-chunked), when announced */
  length: number | undefined
  /** Filled once the body has been consumed */
  checksums: ChecksumResult
}

export function s3Body (ctx: S3Context): S3Body {
  const verified = verifiedPayload(requestBody(ctx.request), ctx.auth, ctx.request.headers, {})
  const length = verified.decodedLength ?? declaredLength(ctx.request)
  return { body: verified.body, length, checksums: verified.checksums }
}

/** Read and parse an XML request document whose root element is `root`. */
export async function readXmlBody (ctx: S3Context, root: string, options: { optional?: boolean } = {}): Promise<Record<string, unknown> | undefined> {
  const { body, length } = s3Body(ctx)
  if (length !== undefined && length > MAX_XML_BODY) throw new AtlasError('MalformedXML', `XML documents are limited to ${MAX_XML_BODY} bytes`)
  let bytes: Uint8Array
  try {
    bytes = await collect(body, MAX_XML_BODY)
  } catch (err) {
    if (err instanceof RangeError) throw new AtlasError('MalformedXML', `XML documents are limited to ${MAX_XML_BODY} bytes`)
    throw err
  }
  if (bytes.byteLength === 0) {
    if (options.optional === true) return undefined
    throw new AtlasError('MalformedXML', 'The request needs an XML document')
  }
  return parseXml(Buffer.from(bytes).toString('utf8'), root)
}
