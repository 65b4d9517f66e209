/**
 * A local stand-in for a TRON full node's HTTP API: the endpoints that tronweb calls for what
 * Atlas needs (TRC-20 balances, TRC-20 transfers built by the node, signed locally and
 * broadcast, transaction status, solidified block scans), over an in-memory chain. Tests run the
 * real tronweb client against it, and `atlas serve` uses it in development mode.
 *
 * What it keeps, as a node does:
 * - a chain of blocks, produced every `blockIntervalMs` or on demand, each with a block id
 *   (8 bytes of block number, then 24 bytes of the header hash) and a witness signature;
 * - a solidified head `solidityLag` blocks behind the head (19 on mainnet: 19 of 27 super
 *   representatives confirm a block); `/walletsolidity/*` answers from solidified state only;
 * - TRC-20 tokens with balances and `Transfer` logs; a transfer beyond the sender's balance lands
 *   in its block as a REVERT receipt that moves nothing, as on chain.
 *
 * What it checks on `/wallet/broadcasttransaction`, in java-tron's order: the broadcast id cache
 * (a transaction id seen before, accepted or not, is a DUP_TRANSACTION_ERROR), signature length,
 * the owner's secp256k1 signature over `sha256(raw_data)` (re-encoded here from the JSON,
 * `raw_data_hex` and `txID` are ignored as a node ignores them), the reference block (TaPoS),
 * expiry against the head block time (and at most 24 h ahead), duplicates on chain, and the
 * contract call (known contract, no TRX attached, fee limit within bounds).
 *
 * What it does not model: TRX, energy and bandwidth (no fees, no resource errors; accounts need
 * no activation), multi-signature permissions, forks, and any contract other than its own TRC-20
 * tokens, which are native here rather than TVM bytecode. Token supplies are allocated to a
 * faucet address at genesis; `/admin/fund` pays out of it with real, signed transfers.
 *
 * Admin endpoints (development only; the node listens on loopback by default):
 * - `POST /admin/fund {address, amount, token?}`: a faucet transfer (amount in base units as a
 *   decimal string), pending until the next block; answers `{txid}`
 * - `POST /admin/produce {blocks?}`: produce blocks now (default 1); answers the heads
 * - `POST /admin/production {enabled}`: turn timed block production on or off
 * - `GET /admin/status`: heads, tokens, faucet, pending count
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { utils } from 'tronweb'
import {
  encodeBlockHeaderRaw,
  encodeTransactionRaw,
  TRIGGER_SMART_CONTRACT_TYPE_URL,
  type TriggerTransactionRaw
} from './protobuf.ts'
import {
  abiString,
  addressWord,
  base58ToHex,
  bytesToHex,
  decodeTransferCall,
  hexToBase58,
  hexToBytes,
  isBase58Address,
  isHexAddress,
  keccakHex,
  normalizeHex,
  revertData,
  selector,
  TRANSFER_TOPIC,
  TRC20,
  uint256Word,
  wordToHexAddress
} from './trc20.ts'

/** A TRC-20 token the dev node runs. */
export interface DevTokenInit {
  /** Contract address (base58). @default {@link devTokenAddress}(symbol) */
  address?: string
  name: string
  symbol: string
  decimals: number
  /** Total supply in base units, held by the faucet from genesis. @default 10^9 whole tokens */
  supply?: bigint
}

/** The dev stand-in of BTT: an 18-decimal TRC-20, as BTT is on mainnet. */
export const DEV_BTT: DevTokenInit = { name: 'BitTorrent (Atlas dev)', symbol: 'BTT', decimals: 18 }

export interface DevNodeInit {
  /** @default '127.0.0.1' */
  host?: string
  /** @default 0 (any free port) */
  port?: number
  /** Slot length: block timestamps advance by at least this much, and timed production runs this often. @default 3000 */
  blockIntervalMs?: number
  /** Produce a block every `blockIntervalMs`; otherwise only on demand. @default true */
  autoProduce?: boolean
  /** How many blocks the solidified head trails the head. @default 19 */
  solidityLag?: number
  /** @default [DEV_BTT] */
  tokens?: DevTokenInit[]
  /** The faucet's private key (hex). @default a random key */
  faucetKey?: string
  /** The block producer's private key (hex). @default a random key */
  witnessKey?: string
  /** Pending pool size past which broadcasts answer SERVER_BUSY. @default 2000 (java-tron's default) */
  maxPending?: number
}

/** The deterministic contract address the dev node gives a token that has none configured. */
export function devTokenAddress (symbol: string): string {
  return hexToBase58(`41${keccakHex(`atlas dev token ${symbol}`).slice(-40)}`)
}

const DEFAULT_INTERVAL_MS = 3000
const DEFAULT_SOLIDITY_LAG = 19
const DEFAULT_MAX_PENDING = 2000
/** A node refuses an expiration further than this past its head block time (java-tron's constant) */
const MAX_EXPIRATION_AHEAD_MS = 24 * 60 * 60 * 1000
/** What java-tron adds to the head block time for the expiration of the transactions it builds */
const TX_EXPIRATION_MS = 60 * 1000
/** java-tron's upper bound on fee_limit, in sun (15,000 TRX) */
const MAX_FEE_LIMIT = 15_000_000_000
/** TaPoS looks references up among this many recent blocks (two bytes of block number) */
const TAPOS_WINDOW = 65_536
/** Size of the broadcast id cache */
const SEEN_CACHE_SIZE = 100_000
const MAX_BODY_BYTES = 4 * 1024 * 1024
const BLOCK_VERSION = 30
const ZERO_HASH = new Uint8Array(32)
const ZERO_ADDRESS = `41${'0'.repeat(40)}`

type Json = Record<string, unknown>

interface TokenState {
  /** 41… hex */
  address: string
  name: string
  symbol: string
  decimals: number
  supply: bigint
  /** Balances after the head block */
  head: Map<string, bigint>
  /** Balances after the solidified head */
  solid: Map<string, bigint>
}

interface ParsedTransaction {
  txID: string
  raw: TriggerTransactionRaw
  rawDataHex: string
  signature: string[]
  /** 41… hex */
  owner: string
  /** 41… hex */
  contract: string
  dataHex: string
  expiration: number
}

interface Effect {
  token: string
  from: string
  to: string
  amount: bigint
}

interface DevBlock {
  number: number
  id: string
  timestamp: number
  parentHash: string
  txTrieRoot: string
  witnessAddress: string
  witnessSignature: string
  txs: ParsedTransaction[]
  rets: string[]
  infos: Json[]
  effects: Effect[]
}

class NodeInputError extends Error {}

/** Answers of java-tron's broadcast, in its wire form (`code` names, `message` as hex of UTF-8). */
function refuse (code: string, txid: string, message?: string): Json {
  return message === undefined ? { code, txid } : { code, txid, message: Buffer.from(message, 'utf8').toString('hex') }
}

function sha256 (bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest())
}

function merkleRoot (ids: string[]): Uint8Array {
  if (ids.length === 0) return ZERO_HASH
  let level = ids.map(id => hexToBytes(id))
  while (level.length > 1) {
    const next: Uint8Array[] = []
    for (let i = 0; i < level.length; i += 2) {
      const left = level[i] as Uint8Array
      const right = level[i + 1]
      next.push(right === undefined ? left : sha256(Buffer.concat([left, right])))
    }
    level = next
  }
  return level[0] as Uint8Array
}

function int (value: unknown, name: string): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new NodeInputError(`${name} must be a non-negative integer`)
  return n
}

function optionalInt (value: unknown, name: string): number {
  return value === undefined || value === null ? 0 : int(value, name)
}

function hexParam (value: unknown, name: string): string {
  const h = normalizeHex(value)
  if (h === undefined) throw new NodeInputError(`${name} must be hex`)
  return h
}

function addressParam (value: unknown, name: string): string {
  if (isHexAddress(value)) return value.toLowerCase()
  throw new NodeInputError(`${name} must be a hex TRON address (41…)`)
}

function addressFromKey (privateKey: string): string {
  return bytesToHex(Uint8Array.from(utils.crypto.getAddressFromPriKey(utils.code.hexStr2byteArray(privateKey))))
}

/** The dev TRON node. Start it with {@link DevNode.start}. */
export class DevNode {
  readonly intervalMs: number
  readonly solidityLag: number
  /** The faucet's address (base58): it holds every token's supply from genesis */
  readonly faucetAddress: string

  private readonly faucetKey: string
  private readonly witnessKey: string
  private readonly witnessAddress: string
  private readonly maxPending: number
  private readonly tokens = new Map<string, TokenState>()
  private readonly blocks: DevBlock[] = []
  private readonly txIndex = new Map<string, { block: number, index: number }>()
  private readonly pool = new Map<string, ParsedTransaction>()
  private readonly seen = new Set<string>()
  /** First block an address took part in (41… hex → block number) */
  private readonly accounts = new Map<string, number>()
  private server: Server | undefined
  private timer: NodeJS.Timeout | undefined
  private autoProduce: boolean
  private solidNumber = 0

  private constructor (init: DevNodeInit) {
    this.intervalMs = init.blockIntervalMs ?? DEFAULT_INTERVAL_MS
    if (!Number.isSafeInteger(this.intervalMs) || this.intervalMs <= 0) throw new RangeError('blockIntervalMs must be a positive integer')
    this.solidityLag = init.solidityLag ?? DEFAULT_SOLIDITY_LAG
    if (!Number.isSafeInteger(this.solidityLag) || this.solidityLag < 0) throw new RangeError('solidityLag must be a non-negative integer')
    this.maxPending = init.maxPending ?? DEFAULT_MAX_PENDING
    this.autoProduce = init.autoProduce ?? true
    this.faucetKey = init.faucetKey ?? randomBytes(32).toString('hex')
    this.witnessKey = init.witnessKey ?? randomBytes(32).toString('hex')
    const faucet = addressFromKey(this.faucetKey)
    this.faucetAddress = hexToBase58(faucet)
    this.witnessAddress = addressFromKey(this.witnessKey)
    for (const t of init.tokens ?? [DEV_BTT]) {
      const address = base58ToHex(t.address ?? devTokenAddress(t.symbol))
      if (this.tokens.has(address)) throw new RangeError(`two tokens at ${hexToBase58(address)}`)
      const supply = t.supply ?? 10n ** 9n * 10n ** BigInt(t.decimals)
      this.tokens.set(address, {
        address, name: t.name, symbol: t.symbol, decimals: t.decimals, supply,
        head: new Map([[faucet, supply]]),
        solid: new Map([[faucet, supply]])
      })
    }
    this.accounts.set(faucet, 0)
    const now = Date.now()
    this.blocks.push(this.seal(0, now - now % this.intervalMs, ZERO_HASH, [], [], [], []))
  }

  /** Start a node listening on `host:port`. */
  static async start (init: DevNodeInit = {}): Promise<DevNode> {
    const node = new DevNode(init)
    const server = createServer((req, res) => { node.handle(req, res) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(init.port ?? 0, init.host ?? '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
    node.server = server
    node.setProduction(node.autoProduce)
    return node
  }

  /** Base URL, the `fullHost` to give tronweb */
  get url (): string {
    const address = this.server?.address() as AddressInfo | null | undefined
    if (address === undefined || address === null) throw new Error('the dev node is not listening')
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    return `http://${host}:${address.port}`
  }

  /** Token contract addresses (base58), in configuration order */
  get tokenAddresses (): string[] {
    return [...this.tokens.keys()].map(hexToBase58)
  }

  get headNumber (): number {
    return this.blocks.length - 1
  }

  get solidifiedNumber (): number {
    return this.solidNumber
  }

  get pendingCount (): number {
    return this.pool.size
  }

  /** Turn timed block production on or off. */
  setProduction (enabled: boolean): void {
    this.autoProduce = enabled
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    if (enabled && this.server !== undefined) {
      this.timer = setInterval(() => { this.produce(1) }, this.intervalMs)
      this.timer.unref()
    }
  }

  /** Produce `count` blocks now, each taking every pending transaction that has not expired. */
  produce (count = 1): void {
    for (let i = 0; i < count; i++) this.produceOne()
  }

  /**
   * A transfer of `amount` base units of `token` (default: the first token) from the faucet to
   * `address`: a transaction signed by the faucet's key, pending until the next block.
   *
   * @returns the transaction id
   */
  fund (address: string, amount: bigint, token?: string): string {
    const to = base58ToHex(address)
    const contract = token === undefined ? [...this.tokens.keys()][0] as string : base58ToHex(token)
    if (!this.tokens.has(contract)) throw new RangeError(`no token at ${token ?? ''}`)
    if (amount <= 0n) throw new RangeError('amount must be positive')
    const faucet = base58ToHex(this.faucetAddress)
    const json = this.buildTrigger(faucet, contract, TRC20.transfer + addressWord(to) + uint256Word(amount), 0, MAX_FEE_LIMIT)
    const signed = utils.crypto.signTransaction(this.faucetKey, { ...json }) as unknown as Json
    const tx = this.parseTransaction(signed)
    // The node signs this one itself: it skips verifying its own signature (2 ms a recovery)
    this.remember(tx.txID)
    const reply = this.admit(tx)
    if (reply.result !== true) throw new Error(`faucet transfer refused: ${String(reply.code)}`)
    return tx.txID
  }

  async close (): Promise<void> {
    this.setProduction(false)
    const server = this.server
    this.server = undefined
    if (server === undefined) return
    server.closeAllConnections()
    await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  }

  // ─── Chain ─────────────────────────────────────────────────────────────────

  private get head (): DevBlock {
    return this.blocks[this.blocks.length - 1] as DevBlock
  }

  private seal (number: number, timestamp: number, parentHash: Uint8Array, txs: ParsedTransaction[], rets: string[], infos: Json[], effects: Effect[]): DevBlock {
    const txTrieRoot = merkleRoot(txs.map(t => t.txID))
    const witness = hexToBytes(this.witnessAddress)
    const rawHash = sha256(encodeBlockHeaderRaw({ timestamp, txTrieRoot, parentHash, number, witnessAddress: witness, version: BLOCK_VERSION }))
    const id = Buffer.concat([Buffer.from(BigInt(number).toString(16).padStart(16, '0'), 'hex'), rawHash.subarray(8)]).toString('hex')
    const witnessSignature = utils.crypto.ECKeySign(Array.from(rawHash), utils.code.hexStr2byteArray(this.witnessKey))
    for (const [i, info] of infos.entries()) {
      info.blockNumber = number
      info.blockTimeStamp = timestamp
      info.id = (txs[i] as ParsedTransaction).txID
    }
    return { number, id, timestamp, parentHash: bytesToHex(parentHash), txTrieRoot: bytesToHex(txTrieRoot), witnessAddress: this.witnessAddress, witnessSignature, txs, rets, infos, effects }
  }

  private produceOne (): void {
    const parent = this.head
    // Timed production follows the clock; blocks made on demand advance chain time by one slot,
    // so a test can move past an expiration without waiting for it
    const timestamp = this.autoProduce ? Math.max(parent.timestamp + this.intervalMs, Date.now() - Date.now() % this.intervalMs) : parent.timestamp + this.intervalMs
    const number = parent.number + 1
    const txs: ParsedTransaction[] = []
    const rets: string[] = []
    const infos: Json[] = []
    const effects: Effect[] = []
    for (const tx of this.pool.values()) {
      // A pending transaction that expired before a block took it is dropped, as java-tron does
      if (tx.expiration <= timestamp) continue
      const outcome = this.execute(tx, number, effects)
      txs.push(tx)
      rets.push(outcome.ret)
      infos.push(outcome.info)
    }
    this.pool.clear()
    const block = this.seal(number, timestamp, hexToBytes(parent.id), txs, rets, infos, effects)
    this.blocks.push(block)
    for (const [index, tx] of txs.entries()) this.txIndex.set(tx.txID, { block: number, index })
    this.solidify(Math.max(0, number - this.solidityLag))
  }

  private solidify (target: number): void {
    while (this.solidNumber < target) {
      this.solidNumber++
      for (const e of (this.blocks[this.solidNumber] as DevBlock).effects) {
        const token = this.tokens.get(e.token) as TokenState
        token.solid.set(e.from, (token.solid.get(e.from) ?? 0n) - e.amount)
        token.solid.set(e.to, (token.solid.get(e.to) ?? 0n) + e.amount)
      }
    }
  }

  /** Run a contract call against head state; the receipt as a node reports it. */
  private execute (tx: ParsedTransaction, blockNumber: number, effects: Effect[]): { ret: string, info: Json } {
    const token = this.tokens.get(tx.contract) as TokenState
    this.touch(tx.owner, blockNumber)
    const success = (contractResult: string, log: Json[] = []): { ret: string, info: Json } => ({
      ret: 'SUCCESS',
      info: { id: tx.txID, contractResult: [contractResult], contract_address: tx.contract, receipt: { result: 'SUCCESS' }, ...(log.length > 0 ? { log } : {}) }
    })
    const revert = (data: string): { ret: string, info: Json } => ({
      ret: 'REVERT',
      info: {
        id: tx.txID,
        contractResult: [data],
        contract_address: tx.contract,
        receipt: { result: 'REVERT' },
        result: 'FAILED',
        resMessage: Buffer.from('REVERT opcode executed', 'utf8').toString('hex')
      }
    })
    const sel = tx.dataHex.slice(0, 8)
    if (sel === TRC20.transfer) {
      const call = decodeTransferCall(tx.dataHex)
      if (call === undefined) return revert('')
      if (call.to === ZERO_ADDRESS) return revert(revertData('ERC20: transfer to the zero address'))
      const balance = token.head.get(tx.owner) ?? 0n
      if (balance < call.amount) return revert(revertData('ERC20: transfer amount exceeds balance'))
      token.head.set(tx.owner, balance - call.amount)
      token.head.set(call.to, (token.head.get(call.to) ?? 0n) + call.amount)
      this.touch(call.to, blockNumber)
      effects.push({ token: token.address, from: tx.owner, to: call.to, amount: call.amount })
      return success(uint256Word(1n), [{
        address: token.address.slice(2),
        topics: [TRANSFER_TOPIC, addressWord(tx.owner), addressWord(call.to)],
        data: uint256Word(call.amount)
      }])
    }
    const view = this.view(token, tx.dataHex, token.head)
    return view === undefined ? revert('') : success(view)
  }

  /** A read-only TRC-20 call; `undefined` when it would revert. */
  private view (token: TokenState, dataHex: string, balances: Map<string, bigint>): string | undefined {
    switch (dataHex.slice(0, 8)) {
      case TRC20.balanceOf: {
        const owner = wordToHexAddress(dataHex.slice(8, 72))
        return owner === undefined ? undefined : uint256Word(balances.get(owner) ?? 0n)
      }
      case TRC20.totalSupply: return uint256Word(token.supply)
      case TRC20.decimals: return uint256Word(BigInt(token.decimals))
      case TRC20.symbol: return abiString(token.symbol)
      case TRC20.name: return abiString(token.name)
      default: return undefined
    }
  }

  private touch (address: string, blockNumber: number): void {
    if (!this.accounts.has(address)) this.accounts.set(address, blockNumber)
  }

  // ─── Transactions ──────────────────────────────────────────────────────────

  /** A TriggerSmartContract transaction as java-tron builds it: referencing the head block. */
  private buildTrigger (owner: string, contract: string, dataHex: string, callValue: number, feeLimit: number): Json {
    const head = this.head
    const raw: TriggerTransactionRaw = {
      refBlockBytes: hexToBytes(BigInt(head.number & 0xffff).toString(16).padStart(4, '0')),
      refBlockNum: 0n,
      refBlockHash: hexToBytes(head.id.slice(16, 32)),
      expiration: BigInt(head.timestamp + TX_EXPIRATION_MS),
      data: new Uint8Array(),
      contract: {
        ownerAddress: hexToBytes(owner),
        contractAddress: hexToBytes(contract),
        callValue: BigInt(callValue),
        data: hexToBytes(dataHex),
        callTokenValue: 0n,
        tokenId: 0n
      },
      permissionId: 0,
      timestamp: BigInt(Date.now()),
      feeLimit: BigInt(feeLimit)
    }
    const rawBytes = encodeTransactionRaw(raw)
    return { visible: false, txID: bytesToHex(sha256(rawBytes)), raw_data: rawDataJson(raw), raw_data_hex: bytesToHex(rawBytes) }
  }

  /** Read a signed transaction's JSON as java-tron's JsonFormat would, re-encoding raw_data. */
  private parseTransaction (body: unknown): ParsedTransaction {
    if (typeof body !== 'object' || body === null) throw new NodeInputError('the transaction must be a JSON object')
    const t = body as Json
    if (t.visible === true) throw new NodeInputError('the dev node reads and writes addresses as hex (visible=false) only')
    const rd = t.raw_data
    if (typeof rd !== 'object' || rd === null) throw new NodeInputError('raw_data is missing')
    const r = rd as Json
    for (const key of Object.keys(r)) {
      if (!RAW_DATA_FIELDS.has(key)) throw new NodeInputError(`raw_data.${key} is not supported by the dev node`)
    }
    const contracts = r.contract
    if (!Array.isArray(contracts) || contracts.length !== 1) throw new NodeInputError('raw_data.contract must hold exactly one contract')
    const c = contracts[0] as Json
    if (c?.type !== 'TriggerSmartContract') throw new NodeInputError(`contract type ${String(c?.type)} is not supported by the dev node (TriggerSmartContract only)`)
    const parameter = c.parameter as Json | undefined
    if (parameter?.type_url !== undefined && parameter.type_url !== TRIGGER_SMART_CONTRACT_TYPE_URL) throw new NodeInputError('parameter.type_url does not match the contract type')
    const v = parameter?.value as Json | undefined
    if (typeof v !== 'object' || v === null) throw new NodeInputError('parameter.value is missing')
    const owner = addressParam(v.owner_address, 'owner_address')
    const contract = addressParam(v.contract_address, 'contract_address')
    const dataHex = v.data === undefined ? '' : hexParam(v.data, 'data')
    const raw: TriggerTransactionRaw = {
      refBlockBytes: hexToBytes(r.ref_block_bytes === undefined ? '' : hexParam(r.ref_block_bytes, 'ref_block_bytes')),
      refBlockNum: BigInt(optionalInt(r.ref_block_num, 'ref_block_num')),
      refBlockHash: hexToBytes(r.ref_block_hash === undefined ? '' : hexParam(r.ref_block_hash, 'ref_block_hash')),
      expiration: BigInt(optionalInt(r.expiration, 'expiration')),
      data: hexToBytes(r.data === undefined ? '' : hexParam(r.data, 'data')),
      contract: {
        ownerAddress: hexToBytes(owner),
        contractAddress: hexToBytes(contract),
        callValue: BigInt(optionalInt(v.call_value, 'call_value')),
        data: hexToBytes(dataHex),
        callTokenValue: BigInt(optionalInt(v.call_token_value, 'call_token_value')),
        tokenId: BigInt(optionalInt(v.token_id, 'token_id'))
      },
      permissionId: optionalInt(c.Permission_id, 'Permission_id'),
      timestamp: BigInt(optionalInt(r.timestamp, 'timestamp')),
      feeLimit: BigInt(optionalInt(r.fee_limit, 'fee_limit'))
    }
    const signature = t.signature === undefined ? [] : t.signature
    if (!Array.isArray(signature)) throw new NodeInputError('signature must be an array')
    const rawBytes = encodeTransactionRaw(raw)
    return {
      txID: bytesToHex(sha256(rawBytes)),
      raw,
      rawDataHex: bytesToHex(rawBytes),
      signature: signature.map((s, i) => hexParam(s, `signature[${i}]`)),
      owner,
      contract,
      dataHex,
      expiration: Number(raw.expiration)
    }
  }

  /** `/wallet/broadcasttransaction` */
  private broadcast (body: unknown): Json {
    const tx = this.parseTransaction(body)
    if (this.pool.size >= this.maxPending) return { code: 'SERVER_BUSY', txid: tx.txID }
    // java-tron caches the id before validating: a retry of a refused transaction is a DUP too
    if (this.seen.has(tx.txID)) return { code: 'DUP_TRANSACTION_ERROR', txid: tx.txID }
    this.remember(tx.txID)
    for (const sig of tx.signature) {
      if (sig.length !== 130) return refuse('SIGERROR', tx.txID, `Validate signature error: Signature size is ${sig.length / 2}`)
    }
    if (tx.signature.length !== 1) return refuse('SIGERROR', tx.txID, `validate signature error the owner permission takes 1 signature, got ${tx.signature.length}`)
    let signer: string
    try {
      signer = utils.crypto.ecRecover(tx.txID, tx.signature[0] as string).toLowerCase()
    } catch {
      return refuse('SIGERROR', tx.txID, 'validate signature error signature is malformed')
    }
    if (signer !== tx.owner) return refuse('SIGERROR', tx.txID, `validate signature error ${hexToBase58(signer)} is not contained of permission`)
    return this.admit(tx)
  }

  /** The checks after the signature, then into the pending pool. */
  private admit (tx: ParsedTransaction): Json {
    if (!this.taposHolds(tx.raw)) return refuse('TAPOS_ERROR', tx.txID, 'Tapos check error')
    const headTime = this.head.timestamp
    if (tx.expiration <= headTime || tx.expiration > headTime + MAX_EXPIRATION_AHEAD_MS) return refuse('TRANSACTION_EXPIRATION_ERROR', tx.txID, 'transaction expired')
    if (this.txIndex.has(tx.txID) || this.pool.has(tx.txID)) return refuse('DUP_TRANSACTION_ERROR', tx.txID, 'dup transaction')
    if (!this.tokens.has(tx.contract)) return refuse('CONTRACT_VALIDATE_ERROR', tx.txID, 'contract validate error : No contract or not a valid smart contract')
    if (tx.raw.contract.callValue !== 0n || tx.raw.contract.callTokenValue !== 0n) return refuse('CONTRACT_VALIDATE_ERROR', tx.txID, 'contract validate error : the dev node holds no TRX or TRC-10: call_value and call_token_value must be 0')
    if (tx.raw.feeLimit > BigInt(MAX_FEE_LIMIT)) return refuse('CONTRACT_VALIDATE_ERROR', tx.txID, `contract validate error : feeLimit must be >= 0 and <= ${MAX_FEE_LIMIT}`)
    this.pool.set(tx.txID, tx)
    return { result: true, txid: tx.txID }
  }

  private taposHolds (raw: TriggerTransactionRaw): boolean {
    if (raw.refBlockBytes.length !== 2 || raw.refBlockHash.length !== 8) return false
    const low = (raw.refBlockBytes[0] as number) << 8 | (raw.refBlockBytes[1] as number)
    // The newest block whose number ends in those two bytes, within the recent-block window
    const n = this.head.number - ((this.head.number - low) & 0xffff)
    if (n < 0 || this.head.number - n >= TAPOS_WINDOW) return false
    return (this.blocks[n] as DevBlock).id.slice(16, 32) === bytesToHex(raw.refBlockHash)
  }

  private remember (txid: string): void {
    this.seen.add(txid)
    if (this.seen.size > SEEN_CACHE_SIZE) this.seen.delete(this.seen.values().next().value as string)
  }

  // ─── JSON views ────────────────────────────────────────────────────────────

  private blockJson (block: DevBlock, withTransactions: boolean): Json {
    const json: Json = {
      blockID: block.id,
      block_header: {
        raw_data: {
          // java-tron omits a zero number (genesis); tronweb reads it for reference blocks, so keep it
          number: block.number,
          txTrieRoot: block.txTrieRoot,
          witness_address: block.witnessAddress,
          parentHash: block.parentHash,
          version: BLOCK_VERSION,
          timestamp: block.timestamp
        },
        witness_signature: block.witnessSignature
      }
    }
    if (withTransactions && block.txs.length > 0) json.transactions = block.txs.map((tx, i) => txJson(tx, block.rets[i]))
    return json
  }

  private blockAt (number: number, solid: boolean): DevBlock | undefined {
    return number <= (solid ? this.solidNumber : this.headNumber) ? this.blocks[number] : undefined
  }

  private located (txid: string, solid: boolean): { block: DevBlock, index: number } | undefined {
    const at = this.txIndex.get(txid)
    if (at === undefined || at.block > (solid ? this.solidNumber : this.headNumber)) return undefined
    return { block: this.blocks[at.block] as DevBlock, index: at.index }
  }

  private triggerConstant (p: Json, solid: boolean): Json {
    const owner = p.owner_address === undefined ? ZERO_ADDRESS : addressParam(p.owner_address, 'owner_address')
    const contract = addressParam(p.contract_address, 'contract_address')
    const data = callData(p)
    const token = this.tokens.get(contract)
    if (token === undefined) return { result: { code: 'CONTRACT_VALIDATE_ERROR', message: Buffer.from('Smart contract is not exist.').toString('hex') } }
    const transaction = this.buildTrigger(owner, contract, data, 0, 0)
    const output = this.view(token, data, solid ? token.solid : token.head)
    if (output === undefined) {
      return { result: { code: 'CONTRACT_EXE_ERROR', message: Buffer.from('REVERT opcode executed').toString('hex') }, constant_result: [''], transaction: { ret: [{ ret: 'FAILED' }], ...transaction } }
    }
    return { result: { result: true }, constant_result: [output], transaction: { ret: [{}], ...transaction } }
  }

  private triggerSmartContract (p: Json): Json {
    const owner = addressParam(p.owner_address, 'owner_address')
    const contract = addressParam(p.contract_address, 'contract_address')
    const feeLimit = optionalInt(p.fee_limit, 'fee_limit')
    if (optionalInt(p.call_token_value, 'call_token_value') !== 0 || optionalInt(p.token_id, 'token_id') !== 0) {
      throw new NodeInputError('the dev node holds no TRC-10 tokens: call_token_value and token_id must be 0')
    }
    if (optionalInt(p.Permission_id, 'Permission_id') !== 0) throw new NodeInputError('the dev node supports the owner permission only')
    return { result: { result: true }, transaction: this.buildTrigger(owner, contract, callData(p), optionalInt(p.call_value, 'call_value'), feeLimit) }
  }

  private account (p: Json, solid: boolean): Json {
    const address = addressParam(p.address, 'address')
    const since = this.accounts.get(address)
    if (since === undefined || since > (solid ? this.solidNumber : this.headNumber)) return {}
    return { address, create_time: (this.blocks[since] as DevBlock).timestamp }
  }

  private contractJson (p: Json): Json {
    const address = addressParam(p.value, 'value')
    const token = this.tokens.get(address)
    if (token === undefined) return {}
    return {
      origin_address: base58ToHex(this.faucetAddress),
      contract_address: address,
      name: token.name,
      abi: { entrys: TRC20_ABI }
    }
  }

  private blockParam (p: Json, solid: boolean): Json {
    const idOrNum = p.id_or_num
    const detail = p.detail === true || p.detail === 'true'
    if (idOrNum === undefined || idOrNum === '') return this.blockJson(solid ? this.blocks[this.solidNumber] as DevBlock : this.head, detail)
    const s = String(idOrNum)
    const block = /^\d+$/.test(s) ? this.blockAt(Number(s), solid) : this.blockById(s, solid)
    return block === undefined ? {} : this.blockJson(block, detail)
  }

  private blockById (id: string, solid: boolean): DevBlock | undefined {
    const h = normalizeHex(id)
    if (h === undefined || h.length !== 64) throw new NodeInputError('value must be a block id (64 hex digits)')
    const block = this.blockAt(Number.parseInt(h.slice(0, 16), 16), solid)
    return block?.id === h ? block : undefined
  }

  private status (): Json {
    return {
      head: this.headNumber,
      headTimestamp: this.head.timestamp,
      solidified: this.solidNumber,
      pending: this.pool.size,
      production: this.autoProduce,
      blockIntervalMs: this.intervalMs,
      solidityLag: this.solidityLag,
      faucet: this.faucetAddress,
      tokens: [...this.tokens.values()].map(t => ({ address: hexToBase58(t.address), name: t.name, symbol: t.symbol, decimals: t.decimals, supply: t.supply.toString() }))
    }
  }

  // ─── HTTP ──────────────────────────────────────────────────────────────────

  private readonly routes: Record<string, (p: Json) => unknown> = {
    '/wallet/getnowblock': () => this.blockJson(this.head, true),
    '/walletsolidity/getnowblock': () => this.blockJson(this.blocks[this.solidNumber] as DevBlock, true),
    '/wallet/getblock': p => this.blockParam(p, false),
    '/walletsolidity/getblock': p => this.blockParam(p, true),
    '/wallet/getblockbynum': p => { const b = this.blockAt(int(p.num, 'num'), false); return b === undefined ? {} : this.blockJson(b, true) },
    '/walletsolidity/getblockbynum': p => { const b = this.blockAt(int(p.num, 'num'), true); return b === undefined ? {} : this.blockJson(b, true) },
    '/wallet/getblockbyid': p => { const b = this.blockById(String(p.value), false); return b === undefined ? {} : this.blockJson(b, true) },
    '/walletsolidity/getblockbyid': p => { const b = this.blockById(String(p.value), true); return b === undefined ? {} : this.blockJson(b, true) },
    '/wallet/getaccount': p => this.account(p, false),
    '/walletsolidity/getaccount': p => this.account(p, true),
    '/wallet/gettransactionbyid': p => { const at = this.located(hexParam(p.value, 'value'), false); return at === undefined ? {} : txJson(at.block.txs[at.index] as ParsedTransaction, at.block.rets[at.index]) },
    '/walletsolidity/gettransactionbyid': p => { const at = this.located(hexParam(p.value, 'value'), true); return at === undefined ? {} : txJson(at.block.txs[at.index] as ParsedTransaction, at.block.rets[at.index]) },
    '/wallet/gettransactioninfobyid': p => { const at = this.located(hexParam(p.value, 'value'), false); return at === undefined ? {} : at.block.infos[at.index] },
    '/walletsolidity/gettransactioninfobyid': p => { const at = this.located(hexParam(p.value, 'value'), true); return at === undefined ? {} : at.block.infos[at.index] },
    '/wallet/gettransactioninfobyblocknum': p => this.blockAt(int(p.num, 'num'), false)?.infos ?? [],
    '/walletsolidity/gettransactioninfobyblocknum': p => this.blockAt(int(p.num, 'num'), true)?.infos ?? [],
    '/wallet/gettransactionfrompending': p => { const tx = this.pool.get(hexParam(p.value, 'value')); return tx === undefined ? {} : txJson(tx, undefined) },
    '/wallet/getpendingsize': () => ({ pendingSize: this.pool.size }),
    '/wallet/triggerconstantcontract': p => this.triggerConstant(p, false),
    '/walletsolidity/triggerconstantcontract': p => this.triggerConstant(p, true),
    '/wallet/triggersmartcontract': p => this.triggerSmartContract(p),
    '/wallet/broadcasttransaction': p => this.broadcast(p),
    '/wallet/getcontract': p => this.contractJson(p),
    '/wallet/getnodeinfo': () => ({
      beginSyncNum: 0,
      block: `Num:${this.headNumber},ID:${this.head.id}`,
      solidityBlock: `Num:${this.solidNumber},ID:${(this.blocks[this.solidNumber] as DevBlock).id}`,
      configNodeInfo: { codeVersion: '4.7.6', p2pVersion: 'atlas-dev' }
    }),
    '/admin/status': () => this.status(),
    '/admin/produce': p => { this.produce(p.blocks === undefined ? 1 : int(p.blocks, 'blocks')); return { head: this.headNumber, solidified: this.solidNumber } },
    '/admin/production': p => {
      if (typeof p.enabled !== 'boolean') throw new NodeInputError('enabled must be true or false')
      this.setProduction(p.enabled)
      return { enabled: this.autoProduce }
    },
    '/admin/fund': p => {
      if (!isBase58Address(p.address)) throw new NodeInputError('address must be a base58 TRON address')
      if (typeof p.amount !== 'string' || !/^\d+$/.test(p.amount)) throw new NodeInputError('amount must be a decimal string of base units')
      if (p.token !== undefined && !isBase58Address(p.token)) throw new NodeInputError('token must be a base58 TRON address')
      return { txid: this.fund(p.address, BigInt(p.amount), p.token as string | undefined) }
    }
  }

  private handle (req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://dev-node')
    const route = this.routes[url.pathname.replace(/\/+$/, '')]
    const send = (status: number, body: unknown): void => {
      const text = JSON.stringify(body)
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    }
    if (route === undefined) {
      req.resume()
      send(404, { Error: `no such endpoint on the dev node: ${url.pathname}` })
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    let tooBig = false
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) tooBig = true
      else chunks.push(chunk)
    })
    req.on('error', () => { res.destroy() })
    req.on('end', () => {
      const admin = url.pathname.startsWith('/admin/')
      try {
        if (tooBig) throw new NodeInputError(`body size is too big, the limit is ${MAX_BODY_BYTES}`)
        const params: Json = Object.fromEntries(url.searchParams)
        const text = Buffer.concat(chunks).toString('utf8').trim()
        if (text !== '') {
          const body = JSON.parse(text) as unknown
          if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new NodeInputError('the body must be a JSON object')
          Object.assign(params, body)
        }
        send(200, route(params))
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        // java-tron answers bad input with 200 and {"Error": "class <exception> : <message>"}
        if (admin) send(err instanceof NodeInputError || err instanceof RangeError ? 400 : 500, { error: message })
        else send(200, { Error: `class ${err instanceof SyntaxError ? 'com.alibaba.fastjson.JSONException' : 'java.lang.IllegalArgumentException'} : ${message}` })
      }
    })
  }
}

const RAW_DATA_FIELDS = new Set(['contract', 'ref_block_bytes', 'ref_block_num', 'ref_block_hash', 'expiration', 'data', 'timestamp', 'fee_limit'])

function callData (p: Json): string {
  if (typeof p.function_selector === 'string' && p.function_selector !== '') {
    const parameter = p.parameter === undefined ? '' : hexParam(p.parameter, 'parameter')
    return selector(p.function_selector.replace(/\s+/g, '')) + parameter
  }
  if (p.data !== undefined) return hexParam(p.data, 'data')
  throw new NodeInputError('function_selector or data is required')
}

/** raw_data as java-tron renders it (visible=false): defaults left out, addresses in hex. */
function rawDataJson (raw: TriggerTransactionRaw): Json {
  const value: Json = { data: bytesToHex(raw.contract.data), owner_address: bytesToHex(raw.contract.ownerAddress), contract_address: bytesToHex(raw.contract.contractAddress) }
  if (raw.contract.callValue !== 0n) value.call_value = Number(raw.contract.callValue)
  if (raw.contract.callTokenValue !== 0n) value.call_token_value = Number(raw.contract.callTokenValue)
  if (raw.contract.tokenId !== 0n) value.token_id = Number(raw.contract.tokenId)
  if (raw.contract.data.length === 0) delete value.data
  const contract: Json = { parameter: { value, type_url: TRIGGER_SMART_CONTRACT_TYPE_URL }, type: 'TriggerSmartContract' }
  if (raw.permissionId !== 0) contract.Permission_id = raw.permissionId
  const json: Json = { contract: [contract] }
  if (raw.refBlockBytes.length > 0) json.ref_block_bytes = bytesToHex(raw.refBlockBytes)
  if (raw.refBlockNum !== 0n) json.ref_block_num = Number(raw.refBlockNum)
  if (raw.refBlockHash.length > 0) json.ref_block_hash = bytesToHex(raw.refBlockHash)
  if (raw.expiration !== 0n) json.expiration = Number(raw.expiration)
  if (raw.data.length > 0) json.data = bytesToHex(raw.data)
  if (raw.feeLimit !== 0n) json.fee_limit = Number(raw.feeLimit)
  if (raw.timestamp !== 0n) json.timestamp = Number(raw.timestamp)
  return json
}

function txJson (tx: ParsedTransaction, contractRet: string | undefined): Json {
  return {
    ...(contractRet === undefined ? {} : { ret: [{ contractRet }] }),
    signature: tx.signature,
    txID: tx.txID,
    raw_data: rawDataJson(tx.raw),
    raw_data_hex: tx.rawDataHex
  }
}

/** The TRC-20 ABI as java-tron's getcontract renders it */
const TRC20_ABI = [
  { outputs: [{ type: 'bool' }], inputs: [{ name: 'to', type: 'address' }, { name: 'value', type: 'uint256' }], name: 'transfer', stateMutability: 'Nonpayable', type: 'Function' },
  { outputs: [{ type: 'uint256' }], constant: true, inputs: [{ name: 'account', type: 'address' }], name: 'balanceOf', stateMutability: 'View', type: 'Function' },
  { outputs: [{ type: 'uint256' }], constant: true, name: 'totalSupply', stateMutability: 'View', type: 'Function' },
  { outputs: [{ type: 'uint8' }], constant: true, name: 'decimals', stateMutability: 'View', type: 'Function' },
  { outputs: [{ type: 'string' }], constant: true, name: 'symbol', stateMutability: 'View', type: 'Function' },
  { outputs: [{ type: 'string' }], constant: true, name: 'name', stateMutability: 'View', type: 'Function' },
  {
    inputs: [{ indexed: true, name: 'from', type: 'address' }, { indexed: true, name: 'to', type: 'address' }, { name: 'value', type: 'uint256' }],
    name: 'Transfer',
    type: 'Event'
  }
]
