/**
 * Access-key secrets at rest. SigV4 needs the plaintext secret to verify a signature, so it
 * cannot be hashed like a password; it is sealed with AES-256-GCM under a 32-byte key that lives
 * outside the database (`<dataDir>/secret.key`, or the config). A stolen database dump alone then
 * yields no usable secret.
 *
 * Sealed form: `v1.` + base64url(IV (12 bytes) ‖ ciphertext ‖ tag (16 bytes)). The caller passes
 * a context (the access key id) that is bound in as additional authenticated data, so a sealed
 * secret copied onto another key's row fails to open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'

/** Length of the AES-256 key, in bytes */
export const SECRET_KEY_BYTES = 32

/** File under the data directory that holds the generated key */
export const SECRET_KEY_FILE = 'secret.key'

const VERSION = 'v1.'
const IV_BYTES = 12
const TAG_BYTES = 16

/** Seals and opens short secrets with AES-256-GCM. */
/** Secrets kept decrypted in memory, so that SigV4 does not pay an AES-GCM open per request */
const OPENED_CACHE_SIZE = 1024

export class SecretBox {
  readonly #key: Buffer
  /** sealed value + context → plaintext; a sealed value only ever opens to one plaintext */
  readonly #opened = new Map<string, string>()

  /** @param key - 32 random bytes; copied, so the caller may wipe its own buffer */
  constructor (key: Uint8Array) {
    if (key.byteLength !== SECRET_KEY_BYTES) {
      throw new TypeError(`The secret key must be ${SECRET_KEY_BYTES} bytes, got ${key.byteLength}`)
    }
    this.#key = Buffer.from(key)
  }

  /** Encrypt `plaintext`, binding it to `context`. A fresh random IV makes every call differ. */
  seal (plaintext: string, context: string): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_BYTES })
    cipher.setAAD(Buffer.from(context, 'utf8'))
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    return VERSION + Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')
  }

  /**
   * Decrypt what `seal()` produced under the same key and context.
   *
   * @throws Error when the value is malformed, was sealed under another key or another context,
   * or was tampered with. The message never contains the value.
   */
  open (sealed: string, context: string): string {
    const cacheKey = `${context}\u0000${sealed}`
    const cached = this.#opened.get(cacheKey)
    if (cached !== undefined) return cached
    const plaintext = this.#open(sealed, context)
    if (this.#opened.size >= OPENED_CACHE_SIZE) this.#opened.delete(this.#opened.keys().next().value as string)
    this.#opened.set(cacheKey, plaintext)
    return plaintext
  }

  #open (sealed: string, context: string): string {
    if (!sealed.startsWith(VERSION)) throw new Error('Unknown sealed secret format')
    const raw = Buffer.from(sealed.slice(VERSION.length), 'base64url')
    if (raw.byteLength < IV_BYTES + TAG_BYTES) throw new Error('Sealed secret is too short')
    const iv = raw.subarray(0, IV_BYTES)
    const tag = raw.subarray(raw.byteLength - TAG_BYTES)
    const body = raw.subarray(IV_BYTES, raw.byteLength - TAG_BYTES)
    const decipher = createDecipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_BYTES })
    decipher.setAAD(Buffer.from(context, 'utf8'))
    decipher.setAuthTag(tag)
    try {
      return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8')
    } catch (err) {
      throw new Error('Sealed secret failed authentication (wrong key or tampered value)', { cause: err })
    }
  }
}

/**
 * Decode a base64 (or base64url) key as found in config.
 *
 * @throws TypeError when it does not decode to exactly 32 bytes
 */
export function parseSecretKey (text: string): Uint8Array {
  const trimmed = text.trim()
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) throw new TypeError('The secret key is not base64')
  const key = Buffer.from(trimmed, trimmed.includes('-') || trimmed.includes('_') ? 'base64url' : 'base64')
  if (key.byteLength !== SECRET_KEY_BYTES) {
    throw new TypeError(`The secret key must decode to ${SECRET_KEY_BYTES} bytes, got ${key.byteLength}`)
  }
  return new Uint8Array(key)
}

/**
 * The key that seals access-key secrets: the configured one when given, otherwise the one in
 * `<dataDir>/secret.key`, generated on first use.
 *
 * The file is written to a temporary name with mode 0600 and then hard-linked into place: a link
 * never replaces an existing file, so when two processes start at once exactly one key wins and
 * both use it. An existing file that does not hold a valid key is an error, never overwritten
 * (that would make every stored secret unreadable).
 *
 * @param dataDir - created if missing
 * @param configured - a base64 key from config, which takes precedence over the file
 */
export async function loadOrCreateSecretKey (dataDir: string, configured?: string | null): Promise<Uint8Array> {
  if (configured !== undefined && configured !== null && configured !== '') return parseSecretKey(configured)

  const path = join(dataDir, SECRET_KEY_FILE)
  const existing = await readKeyFile(path)
  if (existing !== undefined) return existing

  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await createFileOnce(path, `${randomBytes(SECRET_KEY_BYTES).toString('base64')}\n`)
  const key = await readKeyFile(path)
  if (key === undefined) throw new Error(`${path} vanished while it was being created`)
  return key
}

/**
 * Create `path` holding `contents` (mode 0600) unless it exists: written to a temporary name,
 * synced, then hard-linked into place. A link never replaces an existing file, so when two
 * processes race exactly one file wins, whole; the loser's contents are dropped. Read the file
 * afterwards to get the winner's.
 */
export async function createFileOnce (path: string, contents: string): Promise<void> {
  const temporary = `${path}.${randomBytes(8).toString('hex')}.tmp`
  const handle = await open(temporary, 'wx', 0o600)
  try {
    await handle.writeFile(contents)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await link(temporary, path)
  } catch (err) {
    // another process linked its file first: that one stands
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  } finally {
    await unlink(temporary)
  }
}

async function readKeyFile (path: string): Promise<Uint8Array | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  try {
    return parseSecretKey(text)
  } catch (err) {
    throw new Error(`${path} does not hold a valid secret key`, { cause: err })
  }
}
