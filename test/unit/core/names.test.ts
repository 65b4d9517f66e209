import { describe, expect, it } from 'vitest'
import { bucketNameProblem, objectKeyProblem } from '../../../src/core/names.ts'

describe('bucket names (S3 general-purpose rules)', () => {
  it('accepts valid names', () => {
    for (const name of ['abc', 'my-bucket', 'my.bucket.1', 'a'.repeat(63), '1bucket']) expect(bucketNameProblem(name), name).toBeUndefined()
  })
  it('refuses invalid names', () => {
    for (const name of ['ab', 'a'.repeat(64), 'Upper', 'under_score', '-start', 'end-', 'a..b', 'a.-b', 'a-.b', '10.0.0.1', 'xn--abc', 'sthree-x', 'name-s3alias', 'name--ol-s3', 'sp ace', 'é-accent']) {
      expect(bucketNameProblem(name), name).toBeTypeOf('string')
    }
  })
})

describe('object keys', () => {
  it('accepts what S3 accepts, slashes and unicode included', () => {
    for (const key of ['a', 'dir/sub/file.txt', 'with space', 'ünïcödé/€', 'a..b', '.hidden', 'x/.config', 'k'.repeat(1024)]) {
      expect(objectKeyProblem(key), key).toBeUndefined()
    }
  })
  it('refuses empty, too long, control characters and traversal segments', () => {
    for (const key of ['', 'k'.repeat(1025), '€'.repeat(342), 'a\u0000b', 'line\nbreak', '..', '.', 'a/../b', 'a/./b', 'a/..', '/abs', '\ud800']) {
      expect(objectKeyProblem(key), JSON.stringify(key)).toBeTypeOf('string')
    }
  })
})
