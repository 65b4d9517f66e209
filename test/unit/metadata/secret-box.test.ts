import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadOrCreateSecretKey, parseSecretKey, SECRET_KEY_FILE, SecretBox } from '../../../src/metadata/secret-box.ts'

describe('SecretBox', () => {
  const key = randomBytes(32)
  const box = new SecretBox(key)

  it('opens what it sealed, and seals the same secret differently each time', () => {
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
    const a = box.seal(secret, 'AKID1')
    const b = box.seal(secret, 'AKID1')
    expect(a).not.toBe(b)
    expect(a).not.toContain(secret)
    expect(a.startsWith('v1.')).toBe(true)
    expect(box.open(a, 'AKID1')).toBe(secret)
    expect(box.open(b, 'AKID1')).toBe(secret)
    expect(box.open(box.seal('', 'AKID1'), 'AKID1')).toBe('')
    expect(box.open(box.seal('ünïcødé 🔑', 'AKID1'), 'AKID1')).toBe('ünïcødé 🔑')
  })

  it('refuses another context, another key and any tampering', () => {
    const sealed = box.seal('secret', 'AKID1')
    expect(() => box.open(sealed, 'AKID2')).toThrow(/authentication/)
    expect(() => new SecretBox(randomBytes(32)).open(sealed, 'AKID1')).toThrow(/authentication/)
    const raw = Buffer.from(sealed.slice(3), 'base64url')
    for (const at of [0, 12, raw.length - 1]) {
      const flipped = Buffer.from(raw)
      flipped[at] = (flipped[at] as number) ^ 1
      expect(() => box.open(`v1.${flipped.toString('base64url')}`, 'AKID1')).toThrow()
    }
    expect(() => box.open('v2.abc', 'AKID1')).toThrow(/format/)
    expect(() => box.open('v1.abc', 'AKID1')).toThrow(/short/)
  })

  it('never puts the value into its error messages', () => {
    const sealed = box.seal('top-secret-value', 'AKID1')
    try {
      box.open(sealed, 'other')
      expect.unreachable()
    } catch (err) {
      expect(String((err as Error).message)).not.toContain(sealed)
    }
  })

  it('wants a 32-byte key', () => {
    expect(() => new SecretBox(randomBytes(16))).toThrow(TypeError)
    expect(() => new SecretBox(randomBytes(33))).toThrow(TypeError)
  })
})

describe('parseSecretKey', () => {
  it('decodes base64 and base64url keys of 32 bytes', () => {
    const key = randomBytes(32)
    expect(Buffer.from(parseSecretKey(key.toString('base64'))).equals(key)).toBe(true)
    expect(Buffer.from(parseSecretKey(`  ${key.toString('base64url')}\n`)).equals(key)).toBe(true)
  })

  it('refuses other lengths and non-base64 text', () => {
    expect(() => parseSecretKey(randomBytes(31).toString('base64'))).toThrow(/32 bytes/)
    expect(() => parseSecretKey('not base64 at all!')).toThrow(/base64/)
    expect(() => parseSecretKey('')).toThrow()
  })
})

describe('loadOrCreateSecretKey', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-key-'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('creates <dataDir>/secret.key with mode 0600 once and reads it back after', async () => {
    const dataDir = join(dir, 'data')
    const first = await loadOrCreateSecretKey(dataDir)
    expect(first.byteLength).toBe(32)
    const file = join(dataDir, SECRET_KEY_FILE)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect(Buffer.from(parseSecretKey(await readFile(file, 'utf8'))).equals(Buffer.from(first))).toBe(true)
    const second = await loadOrCreateSecretKey(dataDir)
    expect(Buffer.from(second).equals(Buffer.from(first))).toBe(true)
  })

  it('gives every concurrent caller the same key and leaves no temporary files', async () => {
    const keys = await Promise.all(Array.from({ length: 8 }, async () => await loadOrCreateSecretKey(dir)))
    const distinct = new Set(keys.map(k => Buffer.from(k).toString('hex')))
    expect(distinct.size).toBe(1)
    expect(await readdir(dir)).toEqual([SECRET_KEY_FILE])
  })

  it('prefers a configured key and writes no file then', async () => {
    const configured = randomBytes(32)
    const key = await loadOrCreateSecretKey(dir, configured.toString('base64'))
    expect(Buffer.from(key).equals(configured)).toBe(true)
    expect(await readdir(dir)).toEqual([])
  })

  it('refuses a damaged key file rather than replacing it', async () => {
    await writeFile(join(dir, SECRET_KEY_FILE), 'garbage\n')
    await expect(loadOrCreateSecretKey(dir)).rejects.toThrow(/valid secret key/)
    expect(await readFile(join(dir, SECRET_KEY_FILE), 'utf8')).toBe('garbage\n')
  })
})
