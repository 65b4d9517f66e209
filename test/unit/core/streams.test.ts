import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { collect, fanOut, slice } from '../../../src/core/streams.ts'

async function * chunks (sizes: number[], fail?: number): AsyncGenerator<Uint8Array> {
  let n = 0
  for (const [i, size] of sizes.entries()) {
    if (i === fail) throw new Error('source broke')
    yield new Uint8Array(size).map((_, j) => (n + j) & 0xff)
    n += size
  }
}

describe('fanOut', () => {
  it('gives every consumer every byte in order', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 40 }), fc.integer({ min: 1, max: 4 }), async (sizes, n) => {
      const expected = await collect(chunks(sizes))
      const outs = await Promise.all(fanOut(chunks(sizes), n).map(async (s) => await collect(s)))
      for (const out of outs) expect(Buffer.from(out)).toEqual(Buffer.from(expected))
    }))
  })

  it('reads the source once, at the pace of the slowest consumer', async () => {
    let pulled = 0
    async function * counting (): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 100; i++) { pulled++; yield new Uint8Array(1) }
    }
    const [fast, slow] = fanOut(counting(), 2)
    let slowSeen = 0
    const slowDone = (async () => {
      for await (const _ of slow!) { slowSeen++; await new Promise((r) => setTimeout(r, 1)) }
    })()
    let maxLead = 0
    for await (const _ of fast!) maxLead = Math.max(maxLead, pulled - slowSeen)
    await slowDone
    expect(pulled).toBe(100)
    expect(maxLead).toBeLessThanOrEqual(6)
  })

  it('fails every consumer when the source throws', async () => {
    const outs = fanOut(chunks([10, 10, 10], 2), 3)
    const results = await Promise.allSettled(outs.map(async (s) => await collect(s)))
    expect(results.every((r) => r.status === 'rejected')).toBe(true)
  })

  it('fails the others when one consumer stops early', async () => {
    const [a, b] = fanOut(chunks(Array(50).fill(100)), 2)
    const early = (async () => { for await (const _ of a!) break })()
    await expect(collect(b!)).rejects.toThrow(/stopped/)
    await early
  })

  it('fails every consumer on abort', async () => {
    const controller = new AbortController()
    async function * endless (): AsyncGenerator<Uint8Array> {
      for (;;) { await new Promise((r) => setTimeout(r, 1)); yield new Uint8Array(10) }
    }
    const outs = fanOut(endless(), 2, controller.signal)
    setTimeout(() => { controller.abort() }, 20)
    const results = await Promise.allSettled(outs.map(async (s) => await collect(s)))
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected'])
  })
})

describe('slice', () => {
  it('matches Buffer.subarray for any offset and length', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 20 }), fc.nat(600), fc.nat(600), async (sizes, offset, length) => {
      const whole = Buffer.from(await collect(chunks(sizes)))
      const got = Buffer.from(await collect(slice(chunks(sizes), offset, length)))
      expect(got).toEqual(whole.subarray(offset, offset + length))
    }))
  })
})
