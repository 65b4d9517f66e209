/**
 * S3's XML: responses built with fast-xml-parser's builder (which escapes text), request bodies
 * validated and parsed with its parser. Values stay strings (a key "0123" is not a number) and
 * keep their white space (keys may start or end with spaces).
 */
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser'
import { AtlasError } from '../../core/errors.ts'

export const S3_XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/'

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: false, processEntities: true })

/** Elements that may repeat in request bodies, always parsed as arrays */
const REPEATED = new Set(['Part', 'Object', 'Tag'])

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: false,
  removeNSPrefix: true,
  processEntities: true,
  ignoreDeclaration: true,
  // numeric character references (&#34; for quotes in ETags, as Go clients write them)
  htmlEntities: true,
  isArray: (name) => REPEATED.has(name)
})

/** Render `{ Root: {...} }` as an S3 XML document with the S3 namespace on the root. */
export function renderXml (root: string, body: Record<string, unknown>): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${builder.build({ [root]: { '@_xmlns': S3_XMLNS, ...body } }) as string}`
}

/**
 * Parse a request body, which must have `root` as its root element.
 * @throws AtlasError MalformedXML
 */
export function parseXml (text: string, root: string): Record<string, unknown> {
  if (text.trim().length === 0) throw new AtlasError('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema')
  const valid = XMLValidator.validate(text)
  if (valid !== true) throw new AtlasError('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema')
  const doc = parser.parse(text) as Record<string, unknown>
  const node = doc[root]
  if (typeof node !== 'object' || node === null) {
    if (node === '' || (typeof node === 'string' && node.trim() === '')) return {}
    throw new AtlasError('MalformedXML', `The XML you provided must have ${root} as its root element`)
  }
  return node as Record<string, unknown>
}

/** The text of a child element, trimmed of surrounding white space where the value is not a key */
export function text (node: unknown): string | undefined {
  if (typeof node === 'string') return node
  if (typeof node === 'number' || typeof node === 'boolean') return String(node)
  return undefined
}
