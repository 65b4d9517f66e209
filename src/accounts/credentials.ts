/**
 * Accounts and their credentials. An access key is an S3-style pair (access key id, secret) plus
 * a bearer token for the REST API; the secret is stored encrypted (SigV4 needs it back), the
 * token only as its SHA-256.
 */
import { createHash, randomBytes } from 'node:crypto'
import { AtlasError } from '../core/errors.ts'
import type { AccessKey, MetadataStore } from '../metadata/store.ts'

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

function randomBase32 (length: number): string {
  const bytes = randomBytes(length)
  let out = ''
  for (const b of bytes) out += BASE32[b & 31]
  return out
}

/** Bearer tokens start with this, so that a leaked one is easy to recognise in logs and scanners */
export const TOKEN_PREFIX = 'atlas_'

export function hashToken (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

export interface IssuedCredentials {
  accessKeyId: string
  secretAccessKey: string
  token: string
}

export interface CreatedAccount extends IssuedCredentials {
  id: string
  name: string
}

export function newAccountId (): string {
  return `acc_${randomBase32(16).toLowerCase()}`
}

/** Create an access key for the account and return its secrets, shown once. */
export async function issueAccessKey (metadata: MetadataStore, accountId: string, options: { defaultLane?: string } = {}): Promise<IssuedCredentials> {
  const account = await metadata.getAccount(accountId)
  if (account === null) throw new AtlasError('NoSuchAccount', `No account ${accountId}`)
  // 20 characters like AWS key ids; "AT" marks Atlas-issued keys
  const accessKeyId = `AT${randomBase32(18)}`
  const secretAccessKey = randomBytes(30).toString('base64')
  const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`
  await metadata.createAccessKey({ accessKeyId, accountId, secretAccessKey, tokenHash: hashToken(token), ...(options.defaultLane === undefined ? {} : { defaultLane: options.defaultLane }) })
  return { accessKeyId, secretAccessKey, token }
}

export async function createAccount (metadata: MetadataStore, name: string): Promise<CreatedAccount> {
  const trimmed = name.trim()
  if (trimmed.length === 0 || trimmed.length > 200) throw new AtlasError('InvalidArgument', 'Account names are 1 to 200 characters')
  const account = await metadata.createAccount({ id: newAccountId(), name: trimmed })
  const credentials = await issueAccessKey(metadata, account.id)
  return { id: account.id, name: account.name, ...credentials }
}

/** The active key that issued `token` (it names its account), or null. */
export async function keyForToken (metadata: MetadataStore, token: string): Promise<AccessKey | null> {
  if (!token.startsWith(TOKEN_PREFIX)) return null
  const key = await metadata.getAccessKeyByTokenHash(hashToken(token))
  return key === null || key.revokedAt !== null ? null : key
}
