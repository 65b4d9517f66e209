import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  DEFAULT_LANE_CAPS, LANE_NAMES, MIN_BURST_BYTES, TokenBucket, defaultBurstBytes, parseLane, throttle,
  type ThrottleClock
} from '../../../src/billing/lanes.ts'
import { AbortedError, AtlasError, ERROR_TABLE } from '../../../src/core/errors.ts'
import { collect } from '../../../src/core/streams.ts'

/** Time moves only when the throttle sleeps, by exactly what it asked for. */
class FakeClock implements ThrottleClock {
  time = 0
  readonly sleeps: number[] = []
  now = (): number => this.time
  sleep = async (ms: number, signal?: AbortSignal): Promise<void> => {
    signal?.throwIfAborted()
    this.sleeps.push(ms)
    this.time += ms
  }
}

/** A clock whose sleeps never end on their own: only an abort ends them. */
class StuckClock implements ThrottleClock {
  sleeping = 0
  private wake: (() => void) | undefined
  now = (): number => 0
  sleep = async (_ms: number, signal?: AbortSignal): Promise<void> => {
    this.sleeping++
    this.wake?.()
    await new Promise<void>((_resolve, reject) => {
      signal?.addEventListener('abort', () => { reject(new Error('sleep aborted')) }, { once: true })
    })
  }

  /** Resolves once the throttle is asleep. */
  async asleep (): Promise<void> {
    if (this.sleeping > 0) return
    await new Promise<void>((resolve) => { this.wake = resolve })
  }
}

/** Chunks of the given sizes, with running byte values, counting what has been pulled. */
function source (sizes: number[]): { iterable: AsyncIterable<Uint8Array>, pulled: { chunks: number, bytes: number }, closed: () => boolean } {
  const pulled = { chunks: 0, bytes: 0 }
  let closed = false
  async function * gen (): AsyncGenerator<Uint8Array> {
    try {
      let n = 0
      for (const size of sizes) {
        pulled.chunks++
        pulled.bytes += size
        yield new Uint8Array(size).map((_, j) => (n + j) & 0xff)
        n += size
      }
    } finally {
      closed = true
    }
  }
  return { iterable: gen(), pulled, closed: () => closed }
}

const sizesArb = fc.array(fc.integer({ min: 0, max: 5000 }), { maxLength: 30 })

describe('throttle', () => {
  it('passes every byte, in order, split into pieces no larger than the burst', async () => {
    await fc.assert(fc.asyncProperty(sizesArb, fc.integer({ min: 1, max: 3000 }), async (sizes, burst) => {
      const expected = await collect(source(sizes).iterable)
      const pieces: number[] = []
      const out: Uint8Array[] = []
      for await (const piece of throttle(source(sizes).iterable, { bytesPerSecond: 1000, burstBytes: burst, clock: new FakeClock() })) {
        pieces.push(piece.byteLength)
        out.push(piece)
      }
      expect(Buffer.concat(out)).toEqual(Buffer.from(expected))
      expect(pieces.every((n) => n <= burst)).toBe(true)
      // a chunk of c bytes becomes ceil(c / burst) pieces, no more
      expect(pieces.length).toBe(sizes.reduce((sum, c) => sum + Math.ceil(c / burst), 0))
    }))
  })

  it('takes (N - burst) / rate to pass N bytes, to within one millisecond', async () => {
    // bursts of at least 1 ms of the rate (defaults are 100 ms): the lateness of a timer rounded
    // up to whole milliseconds is credited up to one burst
    await fc.assert(fc.asyncProperty(sizesArb, fc.integer({ min: 100, max: 4000 }), fc.integer({ min: 1, max: 100_000 }), async (sizes, burst, rate) => {
      const clock = new FakeClock()
      const total = sizes.reduce((a, b) => a + b, 0)
      await collect(throttle(source(sizes).iterable, { bytesPerSecond: rate, burstBytes: burst, clock }))
      const ideal = Math.max(0, (total - burst) / rate * 1000)
      expect(clock.time).toBeGreaterThanOrEqual(ideal - 1e-6)
      expect(clock.time).toBeLessThanOrEqual(ideal + 1)
    }))
  })

  it('never lets more than burst + rate × t bytes out by time t', async () => {
    await fc.assert(fc.asyncProperty(sizesArb, fc.integer({ min: 1, max: 4000 }), fc.integer({ min: 1, max: 100_000 }), async (sizes, burst, rate) => {
      const clock = new FakeClock()
      let sent = 0
      for await (const piece of throttle(source(sizes).iterable, { bytesPerSecond: rate, burstBytes: burst, clock })) {
        sent += piece.byteLength
        expect(sent).toBeLessThanOrEqual(burst + rate * clock.time / 1000 + 1e-6)
      }
    }))
  })

  it('a 64 MiB response at 1 MiB/s with the default burst takes 63.9 s on the clock', async () => {
    const clock = new FakeClock()
    const MiB = 1024 * 1024
    const rate = DEFAULT_LANE_CAPS.slow as number
    let bytes = 0
    for await (const piece of throttle(source(Array(64).fill(MiB)).iterable, { bytesPerSecond: rate, clock })) bytes += piece.byteLength
    expect(bytes).toBe(64 * MiB)
    expect(clock.time).toBeCloseTo((64 * MiB - defaultBurstBytes(rate)) / rate * 1000, -1)
    // each 1 MiB chunk split into ~100 ms pieces: about ten waits a second
    expect(clock.sleeps.length).toBeLessThanOrEqual(Math.ceil(64 * MiB / defaultBurstBytes(rate)) + 64)
  })

  it('pulls the source lazily: never more than one chunk ahead of what it has yielded', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 5000 }), { maxLength: 30 }), fc.integer({ min: 1, max: 3000 }), async (sizes, burst) => {
      const src = source(sizes)
      let yielded = 0
      let chunksCompleted = 0
      let inChunk = 0
      for await (const piece of throttle(src.iterable, { bytesPerSecond: 500, burstBytes: burst, clock: new FakeClock() })) {
        yielded += piece.byteLength
        // the chunk this piece belongs to is the only one pulled and not yet fully passed on
        expect(src.pulled.chunks).toBe(chunksCompleted + 1)
        expect(src.pulled.bytes - yielded).toBeLessThan(sizes[chunksCompleted] as number)
        inChunk += piece.byteLength
        if (inChunk === sizes[chunksCompleted]) { chunksCompleted++; inChunk = 0 }
      }
      expect(yielded).toBe(src.pulled.bytes)
    }))
  })

  it('closes the source when the consumer stops early', async () => {
    const src = source([100, 100, 100])
    for await (const _ of throttle(src.iterable, { bytesPerSecond: 10, burstBytes: 50, clock: new FakeClock() })) break
    expect(src.closed()).toBe(true)
    expect(src.pulled.chunks).toBe(1)
  })

  it('rejects at once when aborted during a wait, and stops pulling', async () => {
    const clock = new StuckClock()
    const controller = new AbortController()
    const src = source([100, 100, 100])
    const iterator = throttle(src.iterable, { bytesPerSecond: 10, burstBytes: 100, signal: controller.signal, clock })[Symbol.asyncIterator]()
    expect((await iterator.next()).value).toHaveLength(100) // the full bucket lets the first chunk through
    const second = iterator.next()
    await clock.asleep()
    expect(src.pulled.chunks).toBe(2)
    controller.abort(new DOMException('The client closed the connection', 'AbortError'))
    // the stuck clock never wakes by itself: only the abort can settle this
    const err = await second.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(AbortedError)
    expect((err as AbortedError).code).toBe('ClientClosed')
    expect((err as AbortedError).cause).toBe(controller.signal.reason)
    expect(src.closed()).toBe(true)
    expect(src.pulled.chunks).toBe(2)
    expect(await iterator.next()).toEqual({ done: true, value: undefined })
  })

  it('passes an AtlasError abort reason through unchanged', async () => {
    const clock = new StuckClock()
    const controller = new AbortController()
    const reason = new AtlasError('ServiceUnavailable', 'The server is stopping')
    const iterator = throttle(source([10, 10]).iterable, { bytesPerSecond: 1, burstBytes: 10, signal: controller.signal, clock })[Symbol.asyncIterator]()
    await iterator.next()
    const second = iterator.next()
    await clock.asleep()
    controller.abort(reason)
    await expect(second).rejects.toBe(reason)
  })

  it('does not start when the signal has already fired', async () => {
    const src = source([10])
    const controller = new AbortController()
    controller.abort()
    await expect(collect(throttle(src.iterable, { bytesPerSecond: 1, signal: controller.signal, clock: new FakeClock() }))).rejects.toBeInstanceOf(AbortedError)
    expect(src.pulled.chunks).toBe(1)
    expect(src.closed()).toBe(true)
  })

  it('the system clock\'s wait ends on abort (it would otherwise sleep for hours)', async () => {
    const controller = new AbortController()
    const src = source([1000, 1000])
    const iterator = throttle(src.iterable, { bytesPerSecond: 0.1, burstBytes: 1000, signal: controller.signal })[Symbol.asyncIterator]()
    await iterator.next()
    const second = iterator.next()
    setImmediate(() => { controller.abort() })
    await expect(second).rejects.toBeInstanceOf(AbortedError)
    expect(src.closed()).toBe(true)
  })

  it('returns the source itself when unthrottled', () => {
    const src = source([1]).iterable
    expect(throttle(src, { bytesPerSecond: undefined })).toBe(src)
    expect(throttle(src, { bytesPerSecond: Number.POSITIVE_INFINITY })).toBe(src)
    expect(throttle(src, { bytesPerSecond: DEFAULT_LANE_CAPS.fast })).toBe(src)
  })

  it('refuses a cap or burst that is not a positive number', () => {
    for (const bytesPerSecond of [0, -1, Number.NaN]) {
      expect(() => throttle(source([]).iterable, { bytesPerSecond })).toThrow(RangeError)
    }
    for (const burstBytes of [0, -5, 1.5]) {
      expect(() => throttle(source([]).iterable, { bytesPerSecond: 100, burstBytes })).toThrow(RangeError)
    }
  })
})

describe('TokenBucket', () => {
  it('starts full, then charges the deficit in time', async () => {
    const clock = new FakeClock()
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 500, clock })
    await bucket.take(500)
    expect(clock.time).toBe(0)
    await bucket.take(250)
    expect(clock.time).toBe(250)
    // more than the burst at once is allowed, it just waits longer
    await bucket.take(2000)
    expect(clock.time).toBe(2250)
  })

  it('does not save up more than the burst while idle', async () => {
    const clock = new FakeClock()
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 500, clock })
    await bucket.take(500)
    clock.time += 60_000
    await bucket.take(500)
    expect(clock.time).toBe(60_000)
    await bucket.take(100)
    expect(clock.time).toBe(60_100)
  })

  it('credits a late timer instead of losing the lateness', async () => {
    // every sleep overshoots by 3 ms, as a busy event loop does
    const clock = new FakeClock()
    clock.sleep = async (ms: number) => { clock.time += ms + 3 }
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 100, clock })
    for (let i = 0; i < 101; i++) await bucket.take(100)
    // 10,000 bytes after the burst at 1000 B/s: 10 s, plus at most one timer's lateness
    expect(clock.time).toBeGreaterThanOrEqual(10_000)
    expect(clock.time).toBeLessThanOrEqual(10_003)
  })

  it('refunds a take that was aborted', async () => {
    const clock = new FakeClock()
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 100, clock })
    const controller = new AbortController()
    controller.abort()
    await expect(bucket.take(100, controller.signal)).rejects.toBeInstanceOf(AbortedError)
    await bucket.take(100)
    expect(clock.time).toBe(0)
  })
})

describe('defaultBurstBytes', () => {
  it('is 100 ms of the cap, at least MIN_BURST_BYTES', () => {
    expect(defaultBurstBytes(10 * 1024 * 1024)).toBe(1024 * 1024)
    expect(defaultBurstBytes(1024 * 1024)).toBe(104_858)
    expect(defaultBurstBytes(1000)).toBe(MIN_BURST_BYTES)
    expect(defaultBurstBytes(1e9)).toBe(1e8)
  })
})

describe('parseLane', () => {
  it('accepts each lane name in any ASCII case', () => {
    for (const name of LANE_NAMES) {
      expect(parseLane(name)).toBe(name)
      expect(parseLane(name.toUpperCase())).toBe(name)
      expect(parseLane(name[0]!.toUpperCase() + name.slice(1))).toBe(name)
    }
  })

  it.each([
    ['turbo'], [''], [' fast'], ['fast '], ['slow,fast'], ['fastest'], ['\u212Aelvin'], ['medİum']
  ])('refuses %j with InvalidLane naming the lanes', (value) => {
    const err = (() => { try { parseLane(value) } catch (e) { return e } })()
    expect(err).toBeInstanceOf(AtlasError)
    expect((err as AtlasError).code).toBe('InvalidLane')
    expect((err as AtlasError).status).toBe(400)
    expect((err as AtlasError).message).toMatch(/slow, medium, fast/)
    expect((err as AtlasError).message).toContain(JSON.stringify(value))
  })

  it('refuses a repeated header or query parameter, and non-strings', () => {
    for (const value of [['fast', 'slow'], ['fast'], undefined, null, 3]) {
      expect(() => parseLane(value)).toThrow(expect.objectContaining({ code: 'InvalidLane' }))
    }
  })

  it('echoes at most 64 characters of a long value', () => {
    expect(() => parseLane('x'.repeat(10_000))).toThrow(expect.objectContaining({ message: expect.stringMatching(/^Unknown delivery lane "x{64}…"/) }))
  })

  it('accepts nothing but the lane names', () => {
    fc.assert(fc.property(fc.oneof(fc.string(), fc.mixedCase(fc.constantFrom(...LANE_NAMES))), (value) => {
      const isLane = (LANE_NAMES as readonly string[]).includes(value.toLowerCase()) && /^[a-z]+$/i.test(value)
      if (isLane) expect(parseLane(value)).toBe(value.toLowerCase())
      else expect(() => parseLane(value)).toThrow(AtlasError)
    }))
  })

  it('maps to 400 and S3 InvalidArgument', () => {
    expect(ERROR_TABLE.InvalidLane).toMatchObject({ status: 400, s3: 'InvalidArgument' })
  })
})
