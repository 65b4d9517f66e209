import { describe, expect, it } from 'vitest'
import { parseXml, renderXml } from '../../../../src/gateway/s3/xml.ts'

describe('S3 XML', () => {
  it('escapes what it renders and keeps values as strings', () => {
    const xml = renderXml('ListBucketResult', { Name: 'a<b&c"', Contents: [{ Key: '0123' }, { Key: ' spaced ' }] })
    expect(xml).toContain('<Name>a&lt;b&amp;c&quot;</Name>')
    const back = parseXml(xml, 'ListBucketResult')
    expect(back.Name).toBe('a<b&c"')
  })

  it('parses named and numeric entities, keeps white space and repeats', () => {
    const doc = parseXml('<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>&#34;abc&#34;</ETag><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>', 'CompleteMultipartUpload')
    expect(doc.Part).toEqual([{ ETag: '"abc"', PartNumber: '1' }])
    const del = parseXml('<Delete><Object><Key> k &amp; 007 </Key></Object></Delete>', 'Delete')
    expect(del.Object).toEqual([{ Key: ' k & 007 ' }])
  })

  it('refuses malformed documents and the wrong root', () => {
    for (const bad of ['', '<Delete><Object></Delete>', 'not xml at all <', '<Other/>']) {
      expect(() => parseXml(bad, 'Delete'), bad).toThrow(expect.objectContaining({ code: 'MalformedXML' }))
    }
  })
})
