import { createHash, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { DIGEST_BATCH, DigestPool, StreamDigester } from '../../../src/objects/digest-pool.ts'

const pool = new DigestPool(2)
afterAll(async () => { await pool.close() })

/** Digest the chunks, and check that the blocks handed on are the same bytes, re-cut to the batch size */
async function digestOf (chunks: Uint8Array[]): Promise<{ md5: string, sha256: string }> {
  const d = new StreamDigester(pool)
  const blocks: Uint8Array[] = []
  for (const c of chunks) blocks.push(...await d.push(c))
  const rest = d.rest()
  const digests = await d.digest()
  if (rest !== undefined) blocks.push(rest)
  expect(blocks.slice(0, -1).every((b) => b.byteLength === DIGEST_BATCH)).toBe(true)
  expect(Buffer.concat(blocks).equals(Buffer.concat(chunks))).toBe(true)
  return digests
}

function expected (chunks: Uint8Array[]): { md5: string, sha256: string } {
  const md5 = createHash('md5')
  const sha256 = createHash('sha256')
  for (const c of chunks) { md5.update(c); sha256.update(c) }
  return { md5: md5.digest('hex'), sha256: sha256.digest('hex') }
}

describe('digest pool', () => {
  it('matches node:crypto at and around the batch boundaries', async () => {
    for (const size of [0, 1, DIGEST_BATCH - 1, DIGEST_BATCH, DIGEST_BATCH + 1, 3 * DIGEST_BATCH + 7, 20 * DIGEST_BATCH]) {
      const bytes = randomBytes(size)
      expect(await digestOf([bytes]), String(size)).toEqual(expected([bytes]))
    }
  })

  it('does not depend on how the stream is chunked', async () => {
    const bytes = randomBytes(3 * DIGEST_BATCH + 12345)
    await fc.assert(fc.asyncProperty(fc.array(fc.nat(bytes.length), { maxLength: 12 }), async (cuts) => {
      const points = [0, ...cuts.sort((a, b) => a - b), bytes.length]
      const chunks = points.slice(1).map((end, i) => bytes.subarray(points[i], end))
      expect(await digestOf(chunks)).toEqual(expected([bytes]))
    }), { numRuns: 15 })
  })

  it('keeps concurrent sessions apart', async () => {
    const bodies = Array.from({ length: 6 }, (_, i) => randomBytes((i + 1) * DIGEST_BATCH + i))
    const results = await Promise.all(bodies.map(async (b) => await digestOf([b.subarray(0, 1000), b.subarray(1000)])))
    results.forEach((r, i) => { expect(r).toEqual(expected([bodies[i] as Buffer])) })
  })

  it('forgets a dropped session and goes on serving others', async () => {
    const d = new StreamDigester(pool)
    await d.push(randomBytes(2 * DIGEST_BATCH))
    d.drop()
    const bytes = randomBytes(2 * DIGEST_BATCH)
    expect(await digestOf([bytes])).toEqual(expected([bytes]))
  })
})
