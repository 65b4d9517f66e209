/**
 * Delivery lanes: Atlas's slow, medium and fast delivery. A lane is a throughput cap per response
 * plus a price per GiB; this module owns the names, the default caps and the throttle that
 * enforces a cap on a response stream. Prices live with the rest of the pricing.
 *
 * The throttle is a token bucket placed in the pull path of the response: it takes a chunk from
 * its source only when the consumer (the HTTP response, through its own backpressure) asks for
 * more, and hands each piece on only once the bucket holds tokens for it. A throttled download
 * therefore reads its backend at the lane's pace, holds at most one source chunk, and never
 * buffers the object.
 */
import { setTimeout as sleepTimer } from 'node:timers/promises'
import { AbortedError, AtlasError } from '../core/errors.ts'

const KiB = 1024
const MiB = 1024 * KiB

/** The lane names, from the cheapest to the fastest. */
export const LANE_NAMES = ['slow', 'medium', 'fast'] as const

/** One of {@link LANE_NAMES}. */
export type LaneName = typeof LANE_NAMES[number]

/**
 * Default cap of the slow lane, in bytes per second per response: enough to stream audio and
 * standard-definition video, slow enough that bulk transfers choose a faster lane.
 * @default 1048576 (1 MiB/s)
 */
export const DEFAULT_SLOW_LANE_BYTES_PER_SECOND = 1 * MiB

/**
 * Default cap of the medium lane, in bytes per second per response (about 84 Mbit/s: HD video,
 * ordinary downloads).
 * @default 10485760 (10 MiB/s)
 */
export const DEFAULT_MEDIUM_LANE_BYTES_PER_SECOND = 10 * MiB

/**
 * Default cap of each lane in bytes per second per response; `undefined` means unthrottled (the
 * fast lane: the response goes as fast as the backend, the server and the network allow).
 */
export const DEFAULT_LANE_CAPS: Readonly<Record<LaneName, number | undefined>> = Object.freeze({
  slow: DEFAULT_SLOW_LANE_BYTES_PER_SECOND,
  medium: DEFAULT_MEDIUM_LANE_BYTES_PER_SECOND,
  fast: undefined
})

/** Longest input {@link parseLane} echoes back in its error message. */
const ECHO_LIMIT = 64

/**
 * Parse a lane name from a request (the `x-atlas-lane` header, the `lane` query parameter) or a
 * key's settings.
 *
 * Matching ignores ASCII case (`Fast`, `FAST` and `fast` are the same lane): a lane name is a
 * small closed set with no two names that differ only in case, so being lenient costs nothing and
 * spares clients a 400 over capitalisation. Nothing else is tolerated: no surrounding spaces, no
 * aliases, no list (a repeated header or query parameter arrives as an array and is refused
 * rather than resolved by picking one).
 *
 * @throws AtlasError InvalidLane for anything that is not exactly one lane name
 */
export function parseLane (value: unknown): LaneName {
  const known = LANE_NAMES.join(', ')
  if (typeof value !== 'string') {
    throw new AtlasError('InvalidLane', `A delivery lane is one name, one of: ${known}`, { details: { lanes: [...LANE_NAMES] } })
  }
  // ASCII-only lowering: String#toLowerCase would also map non-ASCII letters onto ASCII ones
  // (U+212A KELVIN SIGN becomes "k"), accepting spellings nobody means.
  const lowered = value.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32))
  const lane = LANE_NAMES.find((name) => name === lowered)
  if (lane === undefined) {
    const shown = value.length > ECHO_LIMIT ? `${value.slice(0, ECHO_LIMIT)}…` : value
    throw new AtlasError('InvalidLane', `Unknown delivery lane ${JSON.stringify(shown)}: use one of ${known}`, {
      details: { lane: shown, lanes: [...LANE_NAMES] }
    })
  }
  return lane
}

/**
 * Where the throttle gets its time from. Injected so that tests run on a fake clock; the system
 * clock is the default.
 */
export interface ThrottleClock {
  /** A monotonic time in milliseconds */
  now: () => number
  /**
   * Resolve after `ms` milliseconds; reject soon after `signal` fires (with any error: the
   * throttle reports the signal's reason, not the sleep's error).
   */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>
}

/** The real clock: `performance.now()` (monotonic, unlike `Date.now()`) and a cancellable timer. */
export const systemClock: ThrottleClock = {
  now: () => performance.now(),
  sleep: async (ms, signal) => { await sleepTimer(ms, undefined, signal === undefined ? undefined : { signal }) }
}

/** Options of a {@link TokenBucket}. */
export interface TokenBucketInit {
  /** Rate at which tokens (bytes) accrue; a positive finite number */
  bytesPerSecond: number
  /** Capacity of the bucket: how many bytes may pass at once after an idle spell */
  burstBytes: number
  /** @default systemClock */
  clock?: ThrottleClock
}

/**
 * A token bucket counted in bytes. It starts full, so the first `burstBytes` of a response go out
 * at once (no added latency to the first byte); after that, bytes pass at `bytesPerSecond`.
 *
 * {@link take} charges the bytes first and then waits until the balance is back to zero, rather
 * than waiting for a full balance and then charging. The two wait equally long, but in the
 * second a timer that fires late finds the bucket already full and the lateness is lost, so a
 * stream of full-burst pieces runs a little under its rate; here the late time is credited (the
 * balance was negative while it accrued) and the long-run rate is the configured one.
 */
export class TokenBucket {
  readonly bytesPerSecond: number
  readonly burstBytes: number
  private readonly clock: ThrottleClock
  private tokens: number
  private updated: number

  constructor (init: TokenBucketInit) {
    if (!Number.isFinite(init.bytesPerSecond) || init.bytesPerSecond <= 0) {
      throw new RangeError(`A token bucket needs a positive finite rate, not ${init.bytesPerSecond}`)
    }
    if (!Number.isSafeInteger(init.burstBytes) || init.burstBytes <= 0) {
      throw new RangeError(`A token bucket needs a positive integer burst, not ${init.burstBytes}`)
    }
    this.bytesPerSecond = init.bytesPerSecond
    this.burstBytes = init.burstBytes
    this.clock = init.clock ?? systemClock
    this.tokens = init.burstBytes
    this.updated = this.clock.now()
  }

  /**
   * Wait until `bytes` may pass, then return. `bytes` may exceed the burst (the wait is then
   * longer than one burst's worth); {@link throttle} splits chunks so that it never does.
   *
   * @throws AbortedError (or the signal's reason, when that is an AtlasError) when `signal`
   * fires before the bytes may pass; the bytes are then not charged.
   */
  async take (bytes: number, signal?: AbortSignal): Promise<void> {
    const early = abortError(signal)
    if (early !== undefined) throw early
    this.refill()
    this.tokens -= bytes
    try {
      while (this.tokens < 0) {
        // ceil: a timer shorter than the deficit would only wake us to sleep again
        await this.clock.sleep(Math.ceil(-this.tokens * 1000 / this.bytesPerSecond), signal)
        // also for a clock whose sleep ignores the signal
        const aborted = abortError(signal)
        if (aborted !== undefined) throw aborted
        this.refill()
      }
    } catch (err) {
      this.tokens += bytes
      throw abortError(signal) ?? err
    }
  }

  private refill (): void {
    const now = this.clock.now()
    const elapsed = now - this.updated
    this.updated = now
    if (elapsed > 0) this.tokens = Math.min(this.burstBytes, this.tokens + elapsed * this.bytesPerSecond / 1000)
  }
}

/**
 * How much of a second's worth of bytes the default burst holds. See {@link defaultBurstBytes}.
 * @default 0.1
 */
export const DEFAULT_BURST_SECONDS = 0.1

/**
 * Smallest default burst: a piece smaller than this is not worth a timer and a socket write.
 * @default 16384 (16 KiB)
 */
export const MIN_BURST_BYTES = 16 * KiB

/**
 * The burst a throttle uses unless told otherwise: 100 ms of the cap, and at least 16 KiB.
 *
 * The burst sets two things. It is the largest piece the throttle hands to the response at once,
 * so it bounds how many timers and socket writes a response costs: at 100 ms of the cap that is
 * at most about ten waits a second at any rate (more only when the source's own chunks are
 * smaller). And it is how far a response may run ahead of the cap: the bucket starts full, so a
 * response of N bytes takes (N − burst) / cap, and over any window of T seconds the bytes sent
 * stay under cap × T + burst. With 100 ms that overshoot is 0.1 s / T of the cap: 0.16% over a
 * 64 MiB download at 1 MiB/s and 1.6% at 10 MiB/s, well inside the 10% target, while each piece
 * (100 KiB at 1 MiB/s, 1 MiB at 10 MiB/s) still fills the socket's send buffer so that the
 * HTTP pipe never runs dry between two timers. The floor keeps very low caps from trickling out
 * in writes of a few hundred bytes.
 */
export function defaultBurstBytes (bytesPerSecond: number): number {
  return Math.max(MIN_BURST_BYTES, Math.ceil(bytesPerSecond * DEFAULT_BURST_SECONDS))
}

/** Options of {@link throttle}. */
export interface ThrottleOptions {
  /** The cap; `undefined` or `Infinity` means unthrottled */
  bytesPerSecond: number | undefined
  /** @default defaultBurstBytes(bytesPerSecond) */
  burstBytes?: number
  /** Stops a wait for tokens at once (a client that went away) */
  signal?: AbortSignal
  /** @default systemClock */
  clock?: ThrottleClock
}

/**
 * Pass `source` through no faster than `bytesPerSecond` (with the burst allowance of a token
 * bucket). The source is pulled only when the consumer asks for more and the previous chunk has
 * been passed on in full, so at most one source chunk is held; chunks larger than the burst are
 * split into burst-sized views (no copies). Every piece waits for its tokens before it is
 * yielded.
 *
 * When `signal` fires during a wait, iteration rejects at once with an AbortedError (or the
 * signal's reason, when that is an AtlasError) and the source is closed. A source that stalls is
 * not raced against the signal here: sources from backends are already abortable.
 *
 * Unthrottled (`bytesPerSecond` undefined or `Infinity`), the source itself is returned: the fast
 * lane costs nothing.
 *
 * @throws RangeError for a cap or burst that is not a positive number (a configuration error)
 */
export function throttle (source: AsyncIterable<Uint8Array>, options: ThrottleOptions): AsyncIterable<Uint8Array> {
  const rate = options.bytesPerSecond
  if (rate === undefined || rate === Number.POSITIVE_INFINITY) return source
  // Built here, not in the generator, so that a bad cap fails when the response is set up
  const bucket = new TokenBucket({
    bytesPerSecond: rate,
    burstBytes: options.burstBytes ?? defaultBurstBytes(rate),
    clock: options.clock
  })
  return throttled(source, bucket, options.signal)
}

async function * throttled (source: AsyncIterable<Uint8Array>, bucket: TokenBucket, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array, void, undefined> {
  const piece = bucket.burstBytes
  // A throw from take() leaves the for-await early, which closes the source
  for await (const chunk of source) {
    for (let offset = 0; offset < chunk.byteLength; offset += piece) {
      const view = offset === 0 && chunk.byteLength <= piece ? chunk : chunk.subarray(offset, offset + piece)
      await bucket.take(view.byteLength, signal)
      yield view
    }
  }
}

/**
 * The error a wait ends with once its signal has fired: the reason itself when it is already an
 * AtlasError, else an AbortedError caused by it; `undefined` while the signal has not fired. The
 * same mapping as the backends' `abortToAtlasError`, written out here because billing imports
 * from core only.
 */
function abortError (signal: AbortSignal | undefined): AtlasError | undefined {
  if (signal === undefined || !signal.aborted) return undefined
  const reason: unknown = signal.reason
  return reason instanceof AtlasError ? reason : new AbortedError(undefined, { cause: reason })
}
