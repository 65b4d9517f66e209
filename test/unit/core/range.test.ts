import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseRange } from '../../../src/core/range.ts'

describe('parseRange', () => {
  it('resolves single ranges', () => {
    expect(parseRange(undefined, 100)).toBeUndefined()
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 })
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 })
    expect(parseRange('bytes=90-1000', 100)).toEqual({ start: 90, end: 99 })
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 })
    expect(parseRange('bytes=-1000', 100)).toEqual({ start: 0, end: 99 })
    expect(parseRange('BYTES = 5-5', 100)).toEqual({ start: 5, end: 5 })
  })
  it('ignores what it may ignore: other units, several ranges, invalid syntax', () => {
    for (const h of ['items=0-1', 'bytes=0-1,5-6', 'bytes=abc', 'bytes=9-3', 'bytes=-', 'bytes=']) expect(parseRange(h, 100), h).toBeUndefined()
  })
  it('throws InvalidRange for unsatisfiable ranges', () => {
    for (const [h, size] of [['bytes=100-', 100], ['bytes=100-200', 100], ['bytes=-0', 100], ['bytes=0-', 0]] as const) {
      expect(() => parseRange(h, size), h).toThrow(expect.objectContaining({ code: 'InvalidRange' }))
    }
  })
  it('always returns a range inside the representation', () => {
    fc.assert(fc.property(fc.nat(10_000), fc.nat(20_000), fc.option(fc.nat(20_000)), (size, a, b) => {
      const header = `bytes=${a}-${b ?? ''}`
      try {
        const r = parseRange(header, size)
        if (r !== undefined) {
          expect(r.start).toBeGreaterThanOrEqual(0)
          expect(r.end).toBeLessThan(size)
          expect(r.start).toBeLessThanOrEqual(r.end)
        }
      } catch (err) {
        expect((err as { code: string }).code).toBe('InvalidRange')
        expect(a).toBeGreaterThanOrEqual(size)
      }
    }))
  })
})
