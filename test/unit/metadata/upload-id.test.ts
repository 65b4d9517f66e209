import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { UPLOAD_ID_LENGTH, UploadIdGenerator } from '../../../src/metadata/upload-id.ts'

describe('UploadIdGenerator', () => {
  it('makes URL-safe ids of a fixed length that start with a digit or a letter', () => {
    const ids = new UploadIdGenerator()
    for (let i = 0; i < 100; i++) {
      const { id } = ids.next()
      expect(id).toHaveLength(UPLOAD_ID_LENGTH)
      expect(id).toMatch(/^[0-9a-hjkmnp-tv-z]+$/)
      expect(encodeURIComponent(id)).toBe(id)
    }
  })

  it('sorts ids in the order they were made, within a millisecond and when the clock goes back', () => {
    const ids = new UploadIdGenerator()
    const made = [
      ids.next(1_700_000_000_000),
      ids.next(1_700_000_000_000),
      ids.next(1_700_000_000_000),
      ids.next(1_699_999_999_000), // the clock stepped back
      ids.next(1_700_000_000_001)
    ]
    expect(made.map(m => m.id).sort()).toEqual(made.map(m => m.id))
    expect(new Set(made.map(m => m.id)).size).toBe(made.length)
    // The time given back is the one in the id: never earlier than a previous one
    expect(made.map(m => m.time.getTime())).toEqual([1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001])
  })

  it('moves to the next millisecond when one millisecond has made 32^4 ids', () => {
    const ids = new UploadIdGenerator()
    let previous = ids.next(5).id
    for (let i = 0; i < 32 ** 4; i++) {
      const { id, time } = ids.next(5)
      if (id <= previous) throw new Error(`id ${i} does not sort after the previous one`)
      previous = id
      if (i === 32 ** 4 - 1) expect(time.getTime()).toBe(6)
    }
  })

  it('orders ids of different times by time, whatever their random part', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 48 }), fc.integer({ min: 0, max: 2 ** 48 }), (t1, t2) => {
      const a = new UploadIdGenerator().next(t1).id
      const b = new UploadIdGenerator().next(t2).id
      if (t1 < t2) expect(a < b).toBe(true)
      if (t1 > t2) expect(a > b).toBe(true)
    }))
  })
})
