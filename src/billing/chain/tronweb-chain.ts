/**
 * The ChainClient over tronweb, for any TRON full node's HTTP API: TronGrid, a self-hosted
 * java-tron, or the project's dev node. It needs nothing TronGrid-only: deposits are found by
 * scanning solidified blocks' transaction infos for the token's Transfer logs.
 *
 * The hot wallet's private key stays in this object: it is never given to the TronWeb instance
 * (which would carry it in `defaultPrivateKey`), never sent, never put in an error. Errors from
 * the HTTP layer are re-raised without their cause, since an axios error carries the request's
 * headers, API key included.
 */
import { TronWeb } from 'tronweb'
import { AbortedError, AtlasError, isAbortError } from '../../core/errors.ts'
import {
  BroadcastRefusedError,
  type ChainBlockRef,
  type ChainClient,
  type ChainOptions,
  type SignedTransfer,
  type TokenTransfer,
  type TransactionStatus
} from './chain.ts'
import { addressWord, base58ToHex, hexToBase58, isBase58Address, TRANSFER_TOPIC, wordToHexAddress, wordToUint256 } from './trc20.ts'

export interface TronwebChainInit {
  /** Base URL of the node's HTTP API (`https://api.trongrid.io`, `http://127.0.0.1:8090`, the dev node's URL) */
  fullHost: string
  /** TronGrid API key, sent as the `TRON-PRO-API-KEY` header */
  apiKey?: string
  /** The TRC-20 contract (base58) */
  tokenContract: string
  /** The hot wallet's private key, 64 hex digits; its address is the deposit address */
  privateKey: string
  /** fee_limit of transfers, in sun. @default 100_000_000 (100 TRX) */
  feeLimit?: number
  /** Blocks requested at once while scanning. @default 8 */
  scanConcurrency?: number
}

/** @default fee_limit of a transfer: 100 TRX, well above a TRC-20 transfer's energy cost */
export const DEFAULT_FEE_LIMIT = 100_000_000
/** @default blocks in flight while scanning: enough to hide a remote node's latency */
export const DEFAULT_SCAN_CONCURRENCY = 8

const TX_ID = /^[0-9a-f]{64}$/
const SIGNATURE = /^(0x)?[0-9a-f]{130}$/i
const MAX_UINT256 = (1n << 256n) - 1n

type Json = Record<string, unknown>

function isObject (value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isEmpty (value: unknown): boolean {
  return isObject(value) && Object.keys(value).length === 0
}

/** A node's `message`: hex of UTF-8 on the wire (visible=false), plain text otherwise. */
function nodeMessage (message: unknown): string {
  if (typeof message !== 'string' || message === '') return ''
  return /^(?:[0-9a-fA-F]{2})+$/.test(message) ? Buffer.from(message, 'hex').toString('utf8') : message
}

/** Any failure of a node call as an AtlasError that names the call, never carrying the raw cause. */
function chainError (err: unknown, what: string): Error {
  if (err instanceof AtlasError) return err
  if (isAbortError(err) || (isObject(err) && err.code === 'ERR_CANCELED')) return new AbortedError()
  const status = isObject(err) && isObject(err.response) ? err.response.status : undefined
  const reason = err instanceof Error ? err.message : String(err)
  return new AtlasError('ServiceUnavailable', `TRON node: ${what} failed: ${reason}`, { details: status === undefined ? {} : { status } })
}

function blockRef (block: unknown, what: string): ChainBlockRef {
  const header = isObject(block) && isObject(block.block_header) && isObject(block.block_header.raw_data) ? block.block_header.raw_data : undefined
  const id = isObject(block) ? block.blockID : undefined
  // protobuf JSON leaves a zero out: the genesis block has no `number`
  const number = header?.number ?? 0
  const timestamp = header?.timestamp
  if (typeof id !== 'string' || !TX_ID.test(id) || typeof number !== 'number' || typeof timestamp !== 'number') {
    throw new AtlasError('ServiceUnavailable', `TRON node: ${what} returned no block`)
  }
  return { number, id, timestamp }
}

/** The ChainClient that talks to a TRON node through tronweb. */
export class TronwebChain implements ChainClient {
  readonly tokenContract: string
  readonly depositAddress: string
  readonly tronWeb: TronWeb

  readonly #privateKey: string
  readonly #tokenHex20: string
  readonly #feeLimit: number
  readonly #scanConcurrency: number

  constructor (init: TronwebChainInit) {
    if (!isBase58Address(init.tokenContract)) throw new AtlasError('InvalidArgument', 'The token contract is not a base58 TRON address')
    const key = init.privateKey.trim().replace(/^0x/i, '').toLowerCase()
    if (!/^[0-9a-f]{64}$/.test(key)) throw new AtlasError('InvalidArgument', 'The hot wallet key must be 64 hex digits')
    const address = TronWeb.address.fromPrivateKey(key)
    if (typeof address !== 'string' || !isBase58Address(address)) throw new AtlasError('InvalidArgument', 'The hot wallet key is not a valid secp256k1 private key')
    this.#privateKey = key
    this.tokenContract = init.tokenContract
    this.#tokenHex20 = base58ToHex(init.tokenContract).slice(2)
    this.depositAddress = address
    this.#feeLimit = init.feeLimit ?? DEFAULT_FEE_LIMIT
    this.#scanConcurrency = init.scanConcurrency ?? DEFAULT_SCAN_CONCURRENCY
    this.tronWeb = new TronWeb({
      fullHost: init.fullHost,
      ...(init.apiKey === undefined || init.apiKey === '' ? {} : { headers: { 'TRON-PRO-API-KEY': init.apiKey } })
    })
    // The address only, so that calls default to it; the key is passed per signature
    this.tronWeb.setAddress(address)
  }

  async head (options: ChainOptions = {}): Promise<ChainBlockRef> {
    return blockRef(await this.call(options, 'getnowblock', async () => await this.tronWeb.trx.getCurrentBlock()), 'getnowblock')
  }

  async solidifiedHead (options: ChainOptions = {}): Promise<ChainBlockRef> {
    return blockRef(await this.call(options, 'walletsolidity/getnowblock', async () => await this.tronWeb.trx.getConfirmedCurrentBlock()), 'walletsolidity/getnowblock')
  }

  async solidifiedBlock (number: number, options: ChainOptions = {}): Promise<ChainBlockRef | undefined> {
    if (!Number.isSafeInteger(number) || number < 0) throw new AtlasError('InvalidArgument', `Invalid block number ${number}`)
    const reply = await this.request('solidityNode', 'walletsolidity/getblockbynum', { num: number }, options)
    // a block beyond the solidified head comes back as {}
    if (isEmpty(reply)) return undefined
    const block = blockRef(reply, `walletsolidity/getblockbynum(${number})`)
    if (block.number !== number) throw new AtlasError('ServiceUnavailable', `TRON node: walletsolidity/getblockbynum(${number}) returned block ${block.number}`)
    return block
  }

  async tokenBalance (address: string, options: ChainOptions = {}): Promise<bigint> {
    this.checkAddress(address)
    const reply = await this.call(options, 'balanceOf', async () => await this.tronWeb.transactionBuilder.triggerConfirmedConstantContract(
      this.tokenContract, 'balanceOf(address)', {}, [{ type: 'address', value: address }], this.depositAddress
    ))
    const word = (reply as { constant_result?: unknown }).constant_result
    const value = Array.isArray(word) && typeof word[0] === 'string' ? wordToUint256(word[0]) : undefined
    if (value === undefined) throw new AtlasError('ServiceUnavailable', 'TRON node: balanceOf returned no uint256')
    return value
  }

  async transfersTo (to: string, fromBlock: number, toBlock: number, options: ChainOptions = {}): Promise<TokenTransfer[]> {
    this.checkAddress(to)
    if (!Number.isSafeInteger(fromBlock) || !Number.isSafeInteger(toBlock) || fromBlock < 0 || toBlock < fromBlock) {
      throw new AtlasError('InvalidArgument', `Invalid block range [${fromBlock}, ${toBlock}]`)
    }
    const solid = await this.solidifiedHead(options)
    if (toBlock > solid.number) throw new AtlasError('InvalidArgument', `Block ${toBlock} is not solidified yet (the solidified head is ${solid.number})`)
    const toTopic = addressWord(base58ToHex(to))
    const found: TokenTransfer[] = []
    // A window of requests in flight; results are taken in block order
    const inFlight = new Map<number, Promise<unknown[]>>()
    let next = fromBlock
    const fill = (): void => {
      while (next <= toBlock && inFlight.size < this.#scanConcurrency) {
        const num = next++
        const request = this.request('solidityNode', 'walletsolidity/gettransactioninfobyblocknum', { num }, options)
          .then(reply => {
            // An empty block comes back as [] (or {} from some node versions)
            if (Array.isArray(reply)) return reply
            if (isEmpty(reply)) return []
            throw new AtlasError('ServiceUnavailable', `TRON node: gettransactioninfobyblocknum(${num}) returned no list`)
          })
        // Not awaited until its turn: keep a rejection from being reported as unhandled meanwhile
        request.catch(() => {})
        inFlight.set(num, request)
      }
    }
    try {
      for (let num = fromBlock; num <= toBlock; num++) {
        fill()
        const infos = await (inFlight.get(num) as Promise<unknown[]>)
        inFlight.delete(num)
        this.collect(infos, num, toTopic, found)
      }
    } finally {
      inFlight.clear()
    }
    return found
  }

  async transactionStatus (txId: string, options: ChainOptions = {}): Promise<TransactionStatus> {
    const id = txId.toLowerCase()
    if (!TX_ID.test(id)) throw new AtlasError('InvalidArgument', 'A transaction id is 64 hex digits')
    const solid = await this.call(options, 'walletsolidity/gettransactioninfobyid', async () => await this.tronWeb.trx.getTransactionInfo(id)) as unknown
    if (isObject(solid) && typeof solid.blockNumber === 'number') {
      const result = receiptResult(solid)
      return { state: result === 'SUCCESS' && solid.result !== 'FAILED' ? 'confirmed' : 'failed', blockNumber: solid.blockNumber, result }
    }
    // Not solidified: in a newer block (the full node has its info), in the pending pool, or unknown
    const full = await this.call(options, 'wallet/gettransactioninfobyid', async () => await this.tronWeb.trx.getUnconfirmedTransactionInfo(id)) as unknown
    if (isObject(full) && typeof full.blockNumber === 'number') return { state: 'pending', blockNumber: full.blockNumber, result: receiptResult(full) }
    // Nodes before java-tron 4.4 lack this endpoint (404): no pool to look into
    const pending = await this.request('fullNode', 'wallet/gettransactionfrompending', { value: id }, options, {})
    if (isObject(pending) && pending.txID === id) return { state: 'pending' }
    return { state: 'unknown' }
  }

  async signTransfer (to: string, amount: bigint, options: ChainOptions = {}): Promise<SignedTransfer> {
    this.checkAddress(to)
    if (amount <= 0n || amount > MAX_UINT256) throw new AtlasError('InvalidAmount', 'A transfer moves a positive whole number of base units')
    // The node builds the transaction (reference block, expiration); tronweb re-encodes it from
    // these arguments and refuses a reply whose raw_data_hex or txID differ
    const built = await this.call(options, 'triggersmartcontract', async () => await this.tronWeb.transactionBuilder.triggerSmartContract(
      this.tokenContract,
      'transfer(address,uint256)',
      { feeLimit: this.#feeLimit, callValue: 0 },
      [{ type: 'address', value: to }, { type: 'uint256', value: amount }],
      this.depositAddress
    ))
    if (built.result?.result !== true || !isObject(built.transaction)) throw new AtlasError('ServiceUnavailable', 'TRON node: triggersmartcontract built no transaction')
    const signed = await this.call(options, 'sign', async () => await this.tronWeb.trx.sign(built.transaction, this.#privateKey))
    const expiration = signed.raw_data.expiration
    if (typeof expiration !== 'number') throw new AtlasError('ServiceUnavailable', 'TRON node: the built transaction has no expiration')
    return { txId: signed.txID, raw: JSON.stringify(signed), expiration }
  }

  async broadcast (transfer: SignedTransfer, options: ChainOptions = {}): Promise<void> {
    let signed: unknown
    try {
      signed = JSON.parse(transfer.raw)
    } catch {
      throw new AtlasError('InvalidArgument', 'The signed transfer is not JSON')
    }
    if (!isObject(signed) || signed.txID !== transfer.txId || !Array.isArray(signed.signature)) {
      throw new AtlasError('InvalidArgument', 'The signed transfer does not match its transaction id or is not signed')
    }
    const reply = await this.call(options, 'broadcasttransaction', async () => await this.tronWeb.trx.sendRawTransaction(signed as never)) as unknown as Json
    if (reply.result === true) return
    const code = typeof reply.code === 'string' ? reply.code : undefined
    // The node has it already (a resend after a crash, or a second replica): not an error
    if (code === 'DUP_TRANSACTION_ERROR') return
    if (code === undefined) {
      const error = typeof reply.Error === 'string' ? reply.Error : 'an answer without a result'
      throw new AtlasError('ServiceUnavailable', `TRON node: broadcasttransaction failed: ${error}`)
    }
    const message = nodeMessage(reply.message)
    throw new BroadcastRefusedError(code, `TRON node refused transaction ${transfer.txId}: ${code}${message === '' ? '' : ` (${message})`}`)
  }

  async verifyMessage (message: string, signature: string): Promise<string> {
    if (!SIGNATURE.test(signature)) throw new AtlasError('InvalidArgument', 'A signature is 65 bytes of hex')
    try {
      return await this.tronWeb.trx.verifyMessageV2(message, signature)
    } catch {
      throw new AtlasError('InvalidArgument', 'The signature is malformed')
    }
  }

  async signMessage (message: string): Promise<string> {
    return this.tronWeb.trx.signMessageV2(message, this.#privateKey)
  }

  isAddress (address: string): boolean {
    return isBase58Address(address)
  }

  /** Transfer logs of the token to `toTopic` among one block's transaction infos. */
  private collect (infos: unknown[], num: number, toTopic: string, found: TokenTransfer[]): void {
    for (const info of infos) {
      if (!isObject(info)) throw new AtlasError('ServiceUnavailable', `TRON node: block ${num} has a malformed transaction info`)
      if (info.blockNumber !== num) throw new AtlasError('ServiceUnavailable', `TRON node: block ${num} returned the info of a transaction in block ${String(info.blockNumber)}`)
      // A reverted or failed call emits no logs on chain, but never trust that alone: it credits nothing
      if (receiptResult(info) !== 'SUCCESS' || info.result === 'FAILED') continue
      if (!Array.isArray(info.log) || typeof info.id !== 'string') continue
      for (const [logIndex, log] of info.log.entries()) {
        if (!isObject(log) || typeof log.address !== 'string' || log.address.toLowerCase().replace(/^41(?=[0-9a-f]{40}$)/, '') !== this.#tokenHex20) continue
        const topics = log.topics
        if (!Array.isArray(topics) || topics.length !== 3 || topics[0] !== TRANSFER_TOPIC) continue
        if (typeof topics[2] !== 'string' || topics[2].toLowerCase() !== toTopic) continue
        const from = typeof topics[1] === 'string' ? wordToHexAddress(topics[1]) : undefined
        const amount = typeof log.data === 'string' ? wordToUint256(log.data) : undefined
        if (from === undefined || amount === undefined) continue
        found.push({ txId: info.id.toLowerCase(), logIndex, blockNumber: num, from: hexToBase58(from), to: hexToBase58(`41${toTopic.slice(24)}`), amount })
      }
    }
  }

  private checkAddress (address: string): void {
    if (!isBase58Address(address)) throw new AtlasError('InvalidArgument', `Not a TRON address: ${JSON.stringify(String(address)).slice(0, 60)}`)
  }

  /** A tronweb call under the caller's signal, its failures as AtlasErrors. */
  private async call<T> (options: ChainOptions, what: string, fn: () => Promise<T>): Promise<T> {
    const signal = options.signal
    if (signal?.aborted === true) throw new AbortedError()
    try {
      if (signal === undefined) return await fn()
      // tronweb's calls take no signal: stop waiting on abort (the request itself runs out)
      return await new Promise<T>((resolve, reject) => {
        const onAbort = (): void => { reject(new AbortedError()) }
        signal.addEventListener('abort', onAbort, { once: true })
        fn().then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
      })
    } catch (err) {
      throw chainError(err, what)
    }
  }

  /**
   * A POST through tronweb's own provider (its host, headers, timeout), cancellable by the
   * signal; `ifMissing` is the answer when the node has no such endpoint (404).
   */
  private async request (node: 'fullNode' | 'solidityNode', path: string, payload: Json, options: ChainOptions, ifMissing?: unknown): Promise<unknown> {
    if (options.signal?.aborted === true) throw new AbortedError()
    try {
      const { data } = await this.tronWeb[node].instance.request({ url: path, method: 'post', data: payload, signal: options.signal })
      return data
    } catch (err) {
      if (ifMissing !== undefined && isObject(err) && isObject(err.response) && err.response.status === 404) return ifMissing
      throw chainError(err, path)
    }
  }
}

function receiptResult (info: Json): string | undefined {
  return isObject(info.receipt) && typeof info.receipt.result === 'string' ? info.receipt.result : undefined
}
