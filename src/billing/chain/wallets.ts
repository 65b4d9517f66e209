/**
 * Linked wallets: an account proves it controls a TRON address by signing a challenge with
 * TRON's message signing (tronweb's `signMessageV2`), and from then on BTT that address sends to
 * the deposit address is credited to that account, and withdrawals may go to it.
 *
 * A challenge is a message naming Atlas, the account and a random nonce; the nonce is kept
 * server-side, expires after {@link CHALLENGE_TTL_MS} and is used once (deleted in the
 * transaction that links). A signature is checked by recovering its signer (`verifyMessageV2`)
 * and comparing it with the address claimed. An address belongs to one account at most (the
 * table's primary key); linking it links the deposits it sent before, which were waiting
 * unattributed.
 */
import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import { AtlasError } from '../../core/errors.ts'
import { isDbError } from '../../metadata/db-errors.ts'
import type { Database } from '../../metadata/schema.ts'
import type { ChainClient } from './chain.ts'

/** How long a challenge can be signed and used: 10 minutes */
export const CHALLENGE_TTL_MS = 10 * 60_000

/** Unused challenges an account keeps at most; asking for more drops the oldest */
export const MAX_LIVE_CHALLENGES = 10

const NONCE = /^[0-9a-f]{32}$/

export interface WalletChallenge {
  /** The text to sign, exactly */
  message: string
  nonce: string
  expiresAt: Date
}

export interface LinkedWallet {
  address: string
  accountId: string
  linkedAt: Date
}

export interface LinkInput {
  address: string
  /** signMessageV2's signature of the challenge's message (65 bytes of hex) */
  signature: string
  /** The challenge's nonce; without it every unexpired challenge of the account is tried */
  nonce?: string
}

export interface WalletsInit {
  db: Kysely<Database>
  chain: Pick<ChainClient, 'verifyMessage' | 'isAddress'>
  /** Told after a link commits (the deposit watcher credits what the wallet sent before) */
  onLinked?: (accountId: string, address: string) => Promise<void>
  /** The clock, for tests. @default Date.now */
  now?: () => number
}

/** The message an account signs to link a wallet. */
export function challengeMessage (accountId: string, nonce: string, expiresAt: Date): string {
  return [
    'Atlas: link a TRON wallet',
    `Account: ${accountId}`,
    `Nonce: ${nonce}`,
    `Expires: ${expiresAt.toISOString()}`,
    'Signing this proves that you control the wallet; it moves no funds.'
  ].join('\n')
}

export class Wallets {
  readonly #db: Kysely<Database>
  readonly #chain: WalletsInit['chain']
  readonly #onLinked: WalletsInit['onLinked']
  readonly #now: () => number

  constructor (init: WalletsInit) {
    this.#db = init.db
    this.#chain = init.chain
    this.#onLinked = init.onLinked
    this.#now = init.now ?? Date.now
  }

  /** A new challenge for the account to sign. */
  async challenge (accountId: string): Promise<WalletChallenge> {
    const now = this.#now()
    const nonce = randomBytes(16).toString('hex')
    const expiresMs = now + CHALLENGE_TTL_MS
    await this.#db.transaction().execute(async trx => {
      await trx.deleteFrom('chain_challenges').where('account_id', '=', accountId).where('expires_ms', '<=', now).execute()
      const live = await trx.selectFrom('chain_challenges').select('nonce').where('account_id', '=', accountId).orderBy('created_ms', 'desc').orderBy('nonce').execute()
      const drop = live.slice(MAX_LIVE_CHALLENGES - 1).map(r => r.nonce)
      if (drop.length > 0) await trx.deleteFrom('chain_challenges').where('nonce', 'in', drop).execute()
      await trx.insertInto('chain_challenges').values({ nonce, account_id: accountId, created_ms: now, expires_ms: expiresMs }).execute()
    })
    const expiresAt = new Date(expiresMs)
    return { message: challengeMessage(accountId, nonce, expiresAt), nonce, expiresAt }
  }

  /**
   * Link `address` to the account, on a signature of one of its unexpired challenges by that
   * address. Linking an address the account has already is not an error (`created` false).
   *
   * @throws AtlasError `InvalidArgument` (malformed address, signature or nonce; no unexpired
   * challenge), `InvalidSignature` (the signature is not the address's over a challenge of this
   * account), `Conflict` (the address is linked to another account)
   */
  async link (accountId: string, input: LinkInput): Promise<{ wallet: LinkedWallet, created: boolean }> {
    if (typeof input.address !== 'string' || !this.#chain.isAddress(input.address)) {
      throw new AtlasError('InvalidArgument', `address must be a base58 TRON address (T…), not ${JSON.stringify(String(input.address)).slice(0, 60)}`)
    }
    if (typeof input.signature !== 'string') throw new AtlasError('InvalidArgument', 'signature must be the hex string signMessageV2 returned')
    if (input.nonce !== undefined && (typeof input.nonce !== 'string' || !NONCE.test(input.nonce))) throw new AtlasError('InvalidArgument', 'nonce must be the nonce of a challenge (32 hex digits)')
    const now = this.#now()
    let query = this.#db.selectFrom('chain_challenges').selectAll().where('account_id', '=', accountId).where('expires_ms', '>', now)
    if (input.nonce !== undefined) query = query.where('nonce', '=', input.nonce)
    const challenges = await query.orderBy('created_ms', 'desc').limit(MAX_LIVE_CHALLENGES).execute()
    if (challenges.length === 0) {
      throw new AtlasError('InvalidArgument', `${input.nonce === undefined ? 'This account has no unexpired challenge' : `No unexpired challenge ${input.nonce} for this account`}: get one from GET /v1/account/wallets/challenge (a challenge lasts ${CHALLENGE_TTL_MS / 60_000} minutes and links one wallet)`)
    }
    let matched: string | undefined
    let signer: string | undefined
    for (const c of challenges) {
      signer = await this.#chain.verifyMessage(challengeMessage(accountId, c.nonce, new Date(Number(c.expires_ms))), input.signature)
      if (signer === input.address) {
        matched = c.nonce
        break
      }
    }
    if (matched === undefined) {
      throw new AtlasError('InvalidSignature', challenges.length === 1
        ? `The signature was made by ${String(signer)}, not by ${input.address}: sign the challenge's message with the key of the wallet you link`
        : `The signature is not ${input.address}'s over any unexpired challenge of this account: sign a challenge's message with the key of the wallet you link`)
    }
    const nonce = matched
    let result: { wallet: LinkedWallet, created: boolean }
    try {
      result = await this.#db.transaction().execute(async trx => {
        const used = await trx.deleteFrom('chain_challenges').where('nonce', '=', nonce).where('account_id', '=', accountId).executeTakeFirst()
        if (used.numDeletedRows !== 1n) throw new AtlasError('InvalidArgument', 'That challenge was used meanwhile: get a new one')
        const existing = await trx.selectFrom('chain_wallets').selectAll().where('address', '=', input.address).executeTakeFirst()
        if (existing !== undefined) {
          // (a refusal rolls the challenge's use back: it may still link another wallet)
          if (existing.account_id !== accountId) throw linkedElsewhere(input.address)
          return { wallet: toWallet(existing), created: false }
        }
        await trx.insertInto('chain_wallets').values({ address: input.address, account_id: accountId, linked_ms: now }).execute()
        // deposits it sent before it was linked wait, unattributed, for this
        await trx.updateTable('chain_deposits').set({ account_id: accountId }).where('from_address', '=', input.address).where('account_id', 'is', null).execute()
        return { wallet: { address: input.address, accountId, linkedAt: new Date(now) }, created: true }
      })
    } catch (err) {
      // another account linked it at the same moment
      if (isDbError(err, 'unique')) throw linkedElsewhere(input.address)
      throw err
    }
    if (result.created) await this.#onLinked?.(accountId, input.address)
    return result
  }

  /** The account's wallets, oldest link first. */
  async list (accountId: string): Promise<LinkedWallet[]> {
    const rows = await this.#db.selectFrom('chain_wallets').selectAll().where('account_id', '=', accountId).orderBy('linked_ms').orderBy('address').execute()
    return rows.map(toWallet)
  }

  /** The account an address is linked to. */
  async accountOf (address: string): Promise<string | undefined> {
    const row = await this.#db.selectFrom('chain_wallets').select('account_id').where('address', '=', address).executeTakeFirst()
    return row?.account_id
  }
}

function linkedElsewhere (address: string): AtlasError {
  return new AtlasError('Conflict', `The wallet ${address} is linked to another account`)
}

function toWallet (row: { address: string, account_id: string, linked_ms: number | bigint }): LinkedWallet {
  return { address: row.address, accountId: row.account_id, linkedAt: new Date(Number(row.linked_ms)) }
}
