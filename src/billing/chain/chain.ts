/**
 * The chain interface: what Atlas needs from TRON to take BTT deposits and pay withdrawals (and,
 * later, seeders). Two implementations: `tronweb-chain.ts` talks to a TRON full node (a real
 * one, or the project's stand-in `dev-node.ts`) through tronweb; test/compliance/chain.ts is the
 * suite every implementation passes.
 *
 * Amounts are bigint base units of the configured TRC-20 token (BTT has 18 decimals). Addresses
 * are base58check TRON addresses (`T…`). Block numbers are plain numbers.
 */

import { AtlasError } from '../../core/errors.ts'

export interface ChainBlockRef {
  number: number
  /** Block id (hex) */
  id: string
  /** Block timestamp, ms since the epoch */
  timestamp: number
}

/** A TRC-20 Transfer event of the configured token, as found in a solidified block. */
export interface TokenTransfer {
  /** The transaction id (hex, 64 digits) */
  txId: string
  /** Index of the Transfer log within the transaction's logs */
  logIndex: number
  blockNumber: number
  from: string
  to: string
  amount: bigint
}

export type TransactionState =
  /** The node does not know it (never broadcast, or dropped/expired before inclusion) */
  | 'unknown'
  /**
   * In a block that is not solidified yet (`blockNumber` set), or waiting in the node's pending
   * pool (`blockNumber` absent)
   */
  | 'pending'
  /** Solidified and its contract call succeeded */
  | 'confirmed'
  /** Solidified but reverted (receipt.result other than SUCCESS): it moved nothing */
  | 'failed'

export interface TransactionStatus {
  state: TransactionState
  blockNumber?: number
  /** The receipt result as the node reports it (e.g. SUCCESS, REVERT, OUT_OF_ENERGY) */
  result?: string
}

/** A transaction signed but maybe not broadcast: recorded before broadcast so it can be resent. */
export interface SignedTransfer {
  txId: string
  /** The whole signed transaction as JSON, to broadcast again after a crash */
  raw: string
  /**
   * When the transaction expires (ms, chain time): once the head block's timestamp has reached
   * it, it can never be included. Compare with `head().timestamp`, not the local clock.
   */
  expiration: number
}

export interface ChainOptions {
  signal?: AbortSignal
}

export interface ChainClient {
  /** The token contract (base58) this client reads and sends */
  readonly tokenContract: string
  /** The hot wallet's address: where deposits go and what withdrawals are paid from */
  readonly depositAddress: string

  /** The newest block */
  head(options?: ChainOptions): Promise<ChainBlockRef>
  /** The newest solidified (irreversible) block */
  solidifiedHead(options?: ChainOptions): Promise<ChainBlockRef>

  /**
   * The solidified block `number`, or undefined above the solidified head. Block 0's id names
   * the chain: the deposit watcher keeps it to notice a database pointed at another network (or
   * a development chain that started over).
   */
  solidifiedBlock(number: number, options?: ChainOptions): Promise<ChainBlockRef | undefined>

  /** Token balance of an address, in base units (solidified state) */
  tokenBalance(address: string, options?: ChainOptions): Promise<bigint>

  /**
   * Transfers of the token to `to` in the solidified blocks `[fromBlock, toBlock]` (inclusive),
   * from successful transactions only, in block then log order.
   *
   * @throws when `toBlock` is above the solidified head
   */
  transfersTo(to: string, fromBlock: number, toBlock: number, options?: ChainOptions): Promise<TokenTransfer[]>

  /** Where a transaction stands */
  transactionStatus(txId: string, options?: ChainOptions): Promise<TransactionStatus>

  /** Build and sign a token transfer from the hot wallet, without broadcasting it */
  signTransfer(to: string, amount: bigint, options?: ChainOptions): Promise<SignedTransfer>

  /**
   * Broadcast a signed transfer. Broadcasting one the node already has is not an error (a
   * resend after a crash): it resolves the same way.
   *
   * Resolving is not proof that the transfer will land: a node answers a repeat of any id it has
   * seen, even one it refused, as a duplicate. Settle on {@link transactionStatus}.
   *
   * @throws BroadcastRefusedError when the node refuses it (expired, bad signature, …)
   */
  broadcast(transfer: SignedTransfer, options?: ChainOptions): Promise<void>

  /** Verify a message signed with TRON's message signing (signMessageV2); returns the signer's address */
  verifyMessage(message: string, signature: string): Promise<string>

  /** Sign a message with the hot wallet (signMessageV2) */
  signMessage(message: string): Promise<string>

  /** True when `address` is a well-formed base58check TRON address */
  isAddress(address: string): boolean
}

/**
 * A node refused a broadcast. `nodeCode` is the node's response code (`SIGERROR`, `TAPOS_ERROR`,
 * `TRANSACTION_EXPIRATION_ERROR`, `CONTRACT_VALIDATE_ERROR`, `SERVER_BUSY`, …): an expired
 * transaction can be given up, a busy node retried.
 */
export class BroadcastRefusedError extends AtlasError {
  readonly nodeCode: string

  constructor (nodeCode: string, message: string) {
    super('ServiceUnavailable', message, { details: { nodeCode } })
    this.name = 'BroadcastRefusedError'
    this.nodeCode = nodeCode
  }
}
