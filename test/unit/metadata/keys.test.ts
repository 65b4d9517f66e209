import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compareKeys, isStorableText, prefixUpperBound } from '../../../src/metadata/keys.ts'

const utf8 = (s: string): Buffer => Buffer.from(new TextEncoder().encode(s))
const unit = fc.constantFrom('a', 'z', '/', '\u007f', '\u0080', 'é', '\uD7FF', '\uE000', '\uFFFD', '\uFFFF', '\u{10000}', '\u{1F600}', '\u{10FFFF}')
const text = fc.string({ unit, maxLength: 6 })

describe('compareKeys', () => {
  it('orders by UTF-8 bytes, where UTF-16 order differs', () => {
    expect(compareKeys('\uFFFD', '\u{1F600}')).toBeLessThan(0)
    expect('\uFFFD' < '\u{1F600}').toBe(false) // the JavaScript order it corrects
    expect(compareKeys('B', 'a')).toBeLessThan(0)
    expect(compareKeys('a', 'a')).toBe(0)
    expect(compareKeys('a', 'ab')).toBeLessThan(0)
  })

  it('agrees with a byte comparison of the encodings', () => {
    fc.assert(fc.property(text, text, (a, b) => {
      expect(Math.sign(compareKeys(a, b))).toBe(Math.sign(Buffer.compare(utf8(a), utf8(b))))
    }))
  })
})

describe('prefixUpperBound', () => {
  it('increments the last code point, skipping surrogates and carrying past U+10FFFF', () => {
    expect(prefixUpperBound('abc')).toBe('abd')
    expect(prefixUpperBound('a/')).toBe('a0')
    expect(prefixUpperBound('a\uD7FF')).toBe('a\uE000')
    expect(prefixUpperBound('a\uFFFF')).toBe('a\u{10000}')
    expect(prefixUpperBound('a\u{10FFFF}')).toBe('b')
    expect(prefixUpperBound('\u{10FFFF}\u{10FFFF}')).toBeUndefined()
    expect(prefixUpperBound('')).toBeUndefined()
  })

  it('is above every string with the prefix and at or below every other string above the prefix', () => {
    fc.assert(fc.property(text, text, (prefix, other) => {
      const upper = prefixUpperBound(prefix)
      const extended = prefix + other
      if (upper === undefined) {
        // Only a prefix of U+10FFFF (or none) has no bound: nothing above it lacks the prefix
        expect([...prefix].every(c => c === '\u{10FFFF}')).toBe(true)
        return
      }
      expect(compareKeys(extended, upper)).toBeLessThan(0)
      if (!other.startsWith(prefix) && compareKeys(other, prefix) > 0) {
        expect(compareKeys(other, upper)).toBeGreaterThanOrEqual(0)
      }
      expect(upper.isWellFormed()).toBe(true)
    }), { numRuns: 500 })
  })
})

describe('isStorableText', () => {
  it('refuses NUL and lone surrogates only', () => {
    expect(isStorableText('a/b é 😀')).toBe(true)
    expect(isStorableText('a\u0000b')).toBe(false)
    expect(isStorableText('a\uD800')).toBe(false)
    expect(isStorableText('\uDC00a')).toBe(false)
  })
})
