/**
 * BTT amounts. BTT on TRON is an 18-decimal TRC-20 token: one BTT is 10^18 base units. Atlas
 * keeps every amount as a `bigint` of base units, end to end (config, ledger, API, database),
 * and converts to and from decimal BTT text only at the edges. No float ever holds money.
 */
import { AtlasError } from '../core/errors.ts'

/** Decimals of BTT (TRC-20) */
export const BTT_DECIMALS = 18

/** Base units in one BTT */
export const UNITS_PER_BTT = 10n ** BigInt(BTT_DECIMALS)

/** Largest amount Atlas accepts anywhere: 10^48 units (far beyond BTT's total supply) */
export const MAX_AMOUNT = 10n ** 48n

const DECIMAL = /^(\d+)(?:\.(\d+))?$/
const INTEGER = /^\d+$/

/**
 * Decimal BTT text (`12.5`, `0.000000000000000001`, `7`) to base units, exactly.
 *
 * @throws AtlasError `InvalidAmount` for negative, non-numeric or empty text, exponent notation,
 * more than 18 decimals (a fraction of a unit) and amounts above {@link MAX_AMOUNT}
 */
export function parseBtt (text: string): bigint {
  const value = text.trim()
  const match = DECIMAL.exec(value)
  if (match === null) {
    const why = value.startsWith('-') ? 'is negative' : 'is not a decimal number of BTT'
    throw new AtlasError('InvalidAmount', `Amount ${quote(value)} ${why}`)
  }
  const whole = match[1] as string
  const fraction = match[2] ?? ''
  if (fraction.length > BTT_DECIMALS) {
    throw new AtlasError('InvalidAmount', `Amount ${quote(value)} has more than ${BTT_DECIMALS} decimals: BTT cannot be split below one base unit (10^-18 BTT)`)
  }
  return checkRange(BigInt(whole) * UNITS_PER_BTT + BigInt(fraction.padEnd(BTT_DECIMALS, '0') || '0'), value)
}

/**
 * A count of base units as decimal integer text (how the API and the database carry amounts).
 *
 * @throws AtlasError `InvalidAmount` for anything but a non-negative integer within range
 */
export function parseUnits (text: string): bigint {
  const value = text.trim()
  if (!INTEGER.test(value)) {
    const why = value.startsWith('-') ? 'is negative' : 'is not a whole number of base units'
    throw new AtlasError('InvalidAmount', `Amount ${quote(value)} ${why}`)
  }
  return checkRange(BigInt(value), value)
}

/** Base units as decimal BTT text, without trailing zeros (`12500000000000000000n` → `12.5`). */
export function formatBtt (units: bigint): string {
  const negative = units < 0n
  const abs = negative ? -units : units
  const whole = abs / UNITS_PER_BTT
  const fraction = (abs % UNITS_PER_BTT).toString().padStart(BTT_DECIMALS, '0').replace(/0+$/, '')
  return `${negative ? '-' : ''}${whole}${fraction === '' ? '' : `.${fraction}`}`
}

/** `numerator / denominator`, rounded up (both positive or zero numerator). */
export function ceilDiv (numerator: bigint, denominator: bigint): bigint {
  if (denominator <= 0n) throw new RangeError('The denominator must be positive')
  if (numerator <= 0n) return numerator / denominator
  return (numerator + denominator - 1n) / denominator
}

function checkRange (units: bigint, text: string): bigint {
  if (units > MAX_AMOUNT) throw new AtlasError('InvalidAmount', `Amount ${quote(text)} is too large`)
  return units
}

function quote (text: string): string {
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text)
}
