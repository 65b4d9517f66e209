import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { canonicalIdFromSha256, parseAddress, sha256HexFromCanonicalId } from '../../../src/core/content-id.ts'

describe('canonical content id', () => {
  it('is the CIDv1 raw of the SHA-256, as multiformats computes it', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
      const expected = CID.createV1(raw.code, await sha256.digest(bytes)).toString()
      const digest = createHash('sha256').update(bytes).digest()
      expect(canonicalIdFromSha256(digest)).toBe(expected)
      expect(sha256HexFromCanonicalId(expected)).toBe(digest.toString('hex'))
    }))
  })

  it('has the well-known id for empty bytes', () => {
    expect(canonicalIdFromSha256(createHash('sha256').digest())).toBe('bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku')
  })

  it('refuses digests of the wrong length', () => {
    expect(() => canonicalIdFromSha256(new Uint8Array(20))).toThrow()
  })
})

describe('parseAddress', () => {
  const digest = createHash('sha256').update('hello').digest()
  const id = canonicalIdFromSha256(digest)

  it('recognises canonical ids in any base and sha256:<hex>', () => {
    expect(parseAddress(id)).toEqual({ kind: 'canonical', id })
    expect(parseAddress(CID.parse(id).toString(base58btc))).toEqual({ kind: 'canonical', id })
    expect(parseAddress(`sha256:${digest.toString('hex')}`)).toEqual({ kind: 'canonical', id })
    expect(parseAddress(`SHA256:${digest.toString('hex').toUpperCase()}`)).toEqual({ kind: 'canonical', id })
    expect(parseAddress(`/ipfs/${id}`)).toEqual({ kind: 'canonical', id })
  })

  it('recognises UnixFS CIDs, v0 included, as ipfs addresses in v1 form', () => {
    const v0 = 'QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn'
    expect(parseAddress(v0)).toEqual({ kind: 'ipfs', cid: CID.parse(v0).toV1().toString() })
  })

  it('recognises infohashes and magnet links', () => {
    const hex = 'c9e15763f722f23e98a29decdfae341b98d53056'
    expect(parseAddress(hex)).toEqual({ kind: 'btih', infohash: hex })
    expect(parseAddress(hex.toUpperCase())).toEqual({ kind: 'btih', infohash: hex })
    expect(parseAddress(`magnet:?xt=urn:btih:${hex}&dn=x&tr=http%3A%2F%2Fa`)).toEqual({ kind: 'btih', infohash: hex })
    // base32 form of the same infohash
    const b32 = 'ZHQVOY7XELZD5GFCTXWN7LRUDOMNKMCW'
    expect(parseAddress(`magnet:?xt=urn:btih:${b32}`)).toEqual({ kind: 'btih', infohash: hex })
    const v2 = 'ab'.repeat(32)
    expect(parseAddress(`magnet:?xt=urn:btmh:1220${v2}`)).toEqual({ kind: 'btmh', infohash: v2 })
  })

  it('refuses everything else with InvalidAddress', () => {
    for (const bad of ['', 'hello', 'sha256:xyz', `sha256:${'a'.repeat(63)}`, 'magnet:?dn=nothing', 'btih:123', 'x'.repeat(5000)]) {
      expect(() => parseAddress(bad), bad).toThrow(expect.objectContaining({ code: 'InvalidAddress' }))
    }
  })
})
