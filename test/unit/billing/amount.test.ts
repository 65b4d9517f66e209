import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MAX_AMOUNT, UNITS_PER_BTT, ceilDiv, formatBtt, parseBtt, parseUnits } from '../../../src/billing/amount.ts'
import { AtlasError } from '../../../src/core/errors.ts'

describe('BTT amounts', () => {
  it('converts decimal BTT to base units exactly', () => {
    expect(parseBtt('12.5')).toBe(12_500_000_000_000_000_000n)
    expect(parseBtt('0.000000000000000001')).toBe(1n)
    expect(parseBtt('7')).toBe(7n * UNITS_PER_BTT)
    expect(parseBtt(' 0.1 ')).toBe(100_000_000_000_000_000n)
    expect(parseBtt('0')).toBe(0n)
  })

  it.each([
    ['-1', 'is negative'],
    ['abc', 'is not a decimal'],
    ['', 'is not a decimal'],
    ['1e18', 'is not a decimal'],
    ['1.', 'is not a decimal'],
    ['.5', 'is not a decimal'],
    ['0.0000000000000000001', 'more than 18 decimals'],
    ['1'.padEnd(40, '0'), 'too large']
  ])('refuses %j', (text, why) => {
    const error = (() => { try { parseBtt(text) } catch (err) { return err } })()
    expect(error).toBeInstanceOf(AtlasError)
    expect((error as AtlasError).code).toBe('InvalidAmount')
    expect((error as AtlasError).message).toContain(why)
  })

  it('reads base units as whole numbers only', () => {
    expect(parseUnits('123')).toBe(123n)
    for (const bad of ['-5', '1.5', '1e3', 'x', '']) expect(() => parseUnits(bad)).toThrow(AtlasError)
    expect(() => parseUnits((MAX_AMOUNT + 1n).toString())).toThrow(/too large/)
  })

  it('formats and parses back every amount (property)', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: MAX_AMOUNT }), (units) => {
      expect(parseBtt(formatBtt(units))).toBe(units)
    }))
    expect(formatBtt(12_500_000_000_000_000_000n)).toBe('12.5')
    expect(formatBtt(-1n)).toBe('-0.000000000000000001')
  })

  it('divides rounding up', () => {
    expect(ceilDiv(10n, 3n)).toBe(4n)
    expect(ceilDiv(9n, 3n)).toBe(3n)
    expect(ceilDiv(0n, 3n)).toBe(0n)
  })
})
