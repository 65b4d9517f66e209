/** Small figures helpers shared by the bench scripts. */
import { MiB } from './bytes.ts'

/** The median (the mean of the two middle values for an even count). */
export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** `n` rounded to `digits` decimals for the JSON report; null when there is no figure. */
export function round (n: number | undefined, digits = 1): number | null {
  return n === undefined || Number.isNaN(n) ? null : Number(n.toFixed(digits))
}

/** MiB per second of `bytes` moved in `ms` milliseconds. */
export function mibps (bytes: number, ms: number): number {
  return bytes / MiB / (ms / 1000)
}
