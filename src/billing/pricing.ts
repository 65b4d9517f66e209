/**
 * Prices (from the configuration) and the arithmetic that turns usage into base units.
 *
 * - Storage: a price per GiB-month per backend; an object stored on several backends pays each.
 *   A month is 30 days. Cost accrues per byte-millisecond: `size x ms x rate / (GiB x month)`,
 *   kept as an exact numerator over that denominator so that periods add up to the unit.
 * - Egress: a price per GiB per lane, rounded up to the next unit per response.
 * - An optional fee per content-delivering request.
 */
import type { BackendName } from '../backends/backend.ts'
import type { AtlasConfig } from '../config.ts'
import { ceilDiv, formatBtt } from './amount.ts'
import { LANE_NAMES, type LaneName } from './lanes.ts'

export const GiB = 1n << 30n

/** A billing month: 30 days, in milliseconds */
export const MONTH_MS = 30n * 24n * 3600n * 1000n

/** Denominator of storage cost numerators: GiB x month-ms */
export const STORAGE_DENOMINATOR = GiB * MONTH_MS

export type Lane = LaneName

export const LANES: readonly Lane[] = LANE_NAMES

export class Pricing {
  readonly #billing: AtlasConfig['billing']

  constructor (billing: AtlasConfig['billing']) {
    this.#billing = billing
  }

  /** Base units per GiB-month of storage on `backends` (the sum of each backend's price). */
  storageRate (backends: readonly BackendName[]): bigint {
    let rate = 0n
    for (const backend of new Set(backends)) rate += this.#billing.storagePerGiBMonth[backend]
    return rate
  }

  /** Exact cost numerator of `size` bytes kept `ms` milliseconds at `rate` (over STORAGE_DENOMINATOR). */
  storageNumerator (size: bigint, ms: bigint, rate: bigint): bigint {
    return size * ms * rate
  }

  /** Cost of keeping `size` bytes on `backends` for `days`, rounded up. */
  storageCost (size: bigint, backends: readonly BackendName[], days: number): bigint {
    const ms = BigInt(Math.ceil(days * 86_400_000))
    const numerator = this.storageNumerator(size, ms, this.storageRate(backends))
    return ceilDiv(numerator, STORAGE_DENOMINATOR)
  }

  /** Cost of sending `bytes` in `lane`, rounded up to the next unit. */
  egressCost (bytes: bigint, lane: Lane): bigint {
    const numerator = bytes * this.#billing.egressPerGiB[lane]
    return ceilDiv(numerator, GiB)
  }

  get requestFee (): bigint {
    return this.#billing.requestFee
  }

  /** Throughput cap of a lane in bytes per second; undefined for fast (unthrottled). */
  laneCap (lane: Lane): number | undefined {
    return laneCap(this.#billing, lane)
  }

  /** The published price list (`GET /v1/pricing`): amounts as base-unit strings and as BTT. */
  toJSON (): Record<string, unknown> {
    const price = (units: bigint): { units: string, btt: string } => ({ units: units.toString(), btt: formatBtt(units) })
    return {
      currency: 'BTT',
      decimals: 18,
      storagePerGiBMonth: {
        ipfs: price(this.#billing.storagePerGiBMonth.ipfs),
        bittorrent: price(this.#billing.storagePerGiBMonth.bittorrent)
      },
      egressPerGiB: Object.fromEntries(LANES.map(lane => [lane, price(this.#billing.egressPerGiB[lane])])),
      lanes: Object.fromEntries(LANES.map(lane => [lane, {
        bytesPerSecond: this.laneCap(lane) ?? null,
        pricePerGiB: price(this.#billing.egressPerGiB[lane])
      }])),
      defaultLane: this.#billing.defaultLane,
      requestFee: price(this.#billing.requestFee),
      storagePeriodSeconds: this.#billing.periodSeconds,
      monthDays: 30,
      uploadRunwayDays: this.#billing.uploadRunwayDays,
      graceDays: this.#billing.graceDays
    }
  }
}

/** Throughput cap of a lane in bytes per second under `billing`; undefined for fast (unthrottled). */
export function laneCap (billing: AtlasConfig['billing'], lane: Lane): number | undefined {
  return lane === 'fast' ? undefined : billing.lanes[lane]
}
