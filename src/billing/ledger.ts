/**
 * The ledger interface (DESIGN.md, billing): double-entry, append-only, in BTT base units.
 *
 * Every movement of value is a transaction whose postings sum to zero. A customer has two
 * ledger accounts that may never go below zero: `available` (what they can spend) and `held`
 * (reservations for responses in flight). Value comes in from funding sources (an admin credit,
 * a chain deposit) and goes out to revenue (storage, egress, requests) or payouts. Sign
 * convention: a posting adds its amount to its account's balance, so funding sources go
 * negative as they fund customers, and revenue accounts grow positive.
 *
 * Corrections are reversing transactions, never edits. Every transaction carries an idempotency
 * key and its cause: posting the same key again with the same inputs returns the transaction
 * already posted; with other inputs it is an `IdempotencyConflict`.
 *
 * Holds are two-phase charges (pending, then settled to the amount used or voided), placed
 * before a response's first byte so that concurrent requests cannot spend the same funds.
 *
 * test/compliance/ledger.ts is the suite every implementation passes.
 */

/** The ledger accounts Atlas uses, by name. */
export const LedgerAccounts = {
  available: (customerId: string): string => `customer:${customerId}:available`,
  held: (customerId: string): string => `customer:${customerId}:held`,
  /** What the customer owes (storage that ran on while the balance was dry): zero or negative */
  receivable: (customerId: string): string => `customer:${customerId}:receivable`,
  revenue: {
    storage: 'revenue:storage',
    egress: 'revenue:egress',
    requests: 'revenue:requests'
  },
  funding: {
    admin: 'funding:admin',
    chain: 'funding:chain'
  },
  payouts: 'payouts:seeders'
} as const

/** What a ledger account is for; a customer's available and held accounts may not go negative. */
export type LedgerAccountKind = 'available' | 'held' | 'receivable' | 'revenue' | 'funding' | 'payout'

/** The kind of a ledger account, from its name. @throws TypeError for a name Atlas does not use */
export function accountKind (account: string): { kind: LedgerAccountKind, customerId?: string } {
  const customer = /^customer:(.+):(available|held|receivable)$/.exec(account)
  if (customer !== null) return { kind: customer[2] as 'available' | 'held' | 'receivable', customerId: customer[1] as string }
  if (account.startsWith('revenue:')) return { kind: 'revenue' }
  if (account.startsWith('funding:')) return { kind: 'funding' }
  if (account.startsWith('payouts:')) return { kind: 'payout' }
  throw new TypeError(`${account} is not a ledger account Atlas uses`)
}

export type TransactionKind =
  /** An operator's credit to a customer */
  | 'admin-credit'
  /** A deposit seen on chain */
  | 'deposit'
  /** A storage period's charge */
  | 'storage'
  /** A hold placed for a response */
  | 'hold'
  /** A hold settled to what was used (the rest released) */
  | 'settle'
  /** A hold released in full */
  | 'void'
  /** A per-request fee */
  | 'request'
  /** A correction: the negation of an earlier transaction */
  | 'reversal'
  /** A withdrawal or a payout to a seeder */
  | 'payout'

/** Why a transaction exists: at least one of these. */
export interface Cause {
  requestId?: string
  /** A metering period, e.g. `2026-11-25T14:00:00.000Z/PT1H` */
  period?: string
  /** A chain transaction id */
  chainTx?: string
  /** An operator's reason */
  reason?: string
  /** The bucket, object or lane involved */
  bucket?: string
  key?: string
  lane?: string
  /** Bytes metered */
  bytes?: string
}

export interface PostingInput {
  account: string
  /** Non-zero base units, added to the account's balance */
  amount: bigint
}

export interface TransactionInput {
  idempotencyKey: string
  kind: TransactionKind
  cause: Cause
  postings: PostingInput[]
}

export interface Posting {
  account: string
  amount: bigint
  /** The account's balance after this posting, for accounts that keep one */
  balanceAfter?: bigint
}

export interface LedgerTransaction {
  id: string
  idempotencyKey: string
  kind: TransactionKind
  cause: Cause
  /** The transaction this one reverses */
  reverses?: string
  postings: Posting[]
  createdAt: Date
}

export type HoldStatus = 'pending' | 'settled' | 'voided'

export interface Hold {
  id: string
  customerId: string
  /** Reserved amount */
  amount: bigint
  /** Recorded use so far (pending) or charged (settled) */
  used: bigint
  status: HoldStatus
  /** The revenue account a settlement pays */
  revenueAccount: string
  /** The process instance that placed it */
  owner: string
  cause: Cause
  /** Bytes delivered (recorded at checkpoints and when final) */
  bytes: number
  createdAt: Date
}

export interface PlaceHoldInput {
  idempotencyKey: string
  customerId: string
  amount: bigint
  revenueAccount: string
  owner: string
  cause: Cause
  /** For usage reports: the delivery lane and the bucket read */
  lane?: string
  bucket?: string
}

export interface CustomerBalances {
  available: bigint
  held: bigint
  /** Owed: storage charged while the balance could not pay it (zero or negative) */
  receivable: bigint
}

export interface LedgerEntriesPage {
  /** Newest first */
  entries: LedgerTransaction[]
  /** Pass as `before` for the next page; absent on the last page */
  next?: string
}

export interface Ledger {
  /**
   * Post a balanced transaction.
   *
   * @throws AtlasError `InvalidAmount` (a zero amount, postings that do not sum to zero, fewer
   * than two postings), `InsufficientFunds` (a customer account would go below zero; details
   * carry `balance` and `required`), `Conflict` (a customer's receivable would go above zero:
   * a payment of more than is owed), `IdempotencyConflict`, `NoSuchAccount` (an unknown customer)
   */
  post(input: TransactionInput): Promise<LedgerTransaction>

  /**
   * Post the negation of transaction `id` (a correction). A transaction is reversed at most once.
   *
   * @throws AtlasError `NotFound`, `Conflict` (already reversed), `InsufficientFunds`
   */
  reverse(id: string, input: { idempotencyKey: string, reason: string }): Promise<LedgerTransaction>

  /** A transaction by id, or null. */
  transaction(id: string): Promise<LedgerTransaction | null>

  /** The balance of any ledger account (0 for one never posted to). */
  balance(account: string): Promise<bigint>

  /** A customer's available and held balances. */
  customerBalances(customerId: string): Promise<CustomerBalances>

  /** The transactions that touched a customer's accounts, newest first. */
  entries(customerId: string, options?: { limit?: number, before?: string }): Promise<LedgerEntriesPage>

  /**
   * Move `amount` from the customer's available balance to held, as a pending hold. Replaying the
   * same idempotency key returns the same hold.
   *
   * @throws AtlasError `InsufficientFunds`, `InvalidAmount`, `IdempotencyConflict`
   */
  placeHold(input: PlaceHoldInput): Promise<Hold>

  /**
   * Record use so far on a pending hold (never decreases it; capped at the hold's amount), with
   * the bytes it stands for.
   */
  checkpointHold(id: string, used: bigint, bytes?: number): Promise<void>

  /**
   * Charge `used` (capped at the hold's amount) to the hold's revenue account and release the
   * rest to available; `bytes` is what was delivered. Settling a hold that is already final
   * returns it unchanged.
   */
  settleHold(id: string, used: bigint, bytes?: number, responses?: number): Promise<Hold>

  /** Release a pending hold in full (a void). A final hold is returned unchanged. */
  voidHold(id: string): Promise<Hold>

  /** A hold by id, or null. */
  hold(id: string): Promise<Hold | null>

  /** Pending holds placed by `owner` (to settle after that process crashed). */
  pendingHolds(owner: string): Promise<Hold[]>

  /** The sum of every posting ever made: zero in a sound ledger. */
  trialBalance(): Promise<bigint>
}
