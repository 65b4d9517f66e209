/**
 * The protobuf encoding of the few TRON messages the dev node has to hash: `Transaction.raw` with
 * one `TriggerSmartContract`, and `BlockHeader.raw`. A TRON node takes a transaction's JSON,
 * re-serializes its `raw_data` into these bytes and hashes them: the transaction id is
 * `sha256(raw bytes)`, and that id is what the owner signs.
 *
 * This writer is deliberately independent of tronweb's (google-protobuf) encoder: tronweb checks
 * every transaction the node builds by encoding it itself and comparing `raw_data_hex` and
 * `txID`, and the node checks every signature against its own encoding. Two encoders that must
 * agree byte for byte make each check a real one; reusing tronweb's would make both tautologies.
 *
 * Field numbers are those of java-tron's `core/Tron.proto` and `core/contract/smart_contract.proto`.
 * Proto3 rules: scalar fields at their default (0, empty) are not written; fields go in field
 * number order, as every protobuf runtime writes them.
 */

/** `Transaction.Contract.ContractType.TriggerSmartContract` */
export const TRIGGER_SMART_CONTRACT_TYPE = 31

export const TRIGGER_SMART_CONTRACT_TYPE_URL = 'type.googleapis.com/protocol.TriggerSmartContract'

const WIRE_VARINT = 0
const WIRE_LENGTH_DELIMITED = 2

/** Appends protobuf fields to a growing buffer. */
export class ProtoWriter {
  private buffer = new Uint8Array(256)
  private length = 0

  /** A varint field (int32, int64, enum, bool); not written when 0 (the proto3 default). */
  varint (field: number, value: bigint | number): this {
    const v = BigInt(value)
    if (v < 0n) throw new RangeError(`field ${field}: negative varints are not used by these messages`)
    if (v === 0n) return this
    this.tag(field, WIRE_VARINT)
    this.rawVarint(v)
    return this
  }

  /** A bytes field; not written when empty (the proto3 default). */
  bytes (field: number, value: Uint8Array): this {
    if (value.length === 0) return this
    return this.lengthDelimited(field, value)
  }

  /** A string field (UTF-8); not written when empty. */
  string (field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value))
  }

  /** An embedded message: written even when empty, since a set message field is present. */
  message (field: number, value: Uint8Array): this {
    return this.lengthDelimited(field, value)
  }

  finish (): Uint8Array {
    return this.buffer.slice(0, this.length)
  }

  private lengthDelimited (field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LENGTH_DELIMITED)
    this.rawVarint(BigInt(value.length))
    this.ensure(value.length)
    this.buffer.set(value, this.length)
    this.length += value.length
    return this
  }

  private tag (field: number, wireType: number): void {
    this.rawVarint(BigInt(field) << 3n | BigInt(wireType))
  }

  private rawVarint (value: bigint): void {
    this.ensure(10)
    let v = value
    while (v > 0x7fn) {
      this.buffer[this.length++] = Number(v & 0x7fn) | 0x80
      v >>= 7n
    }
    this.buffer[this.length++] = Number(v)
  }

  private ensure (extra: number): void {
    if (this.length + extra <= this.buffer.length) return
    const next = new Uint8Array(Math.max(this.buffer.length * 2, this.length + extra))
    next.set(this.buffer.subarray(0, this.length))
    this.buffer = next
  }
}

/** The fields of a `TriggerSmartContract` call, addresses as 21-byte (`41…`) values. */
export interface TriggerSmartContractFields {
  ownerAddress: Uint8Array
  contractAddress: Uint8Array
  callValue: bigint
  data: Uint8Array
  callTokenValue: bigint
  tokenId: bigint
}

/** `Transaction.raw` with exactly one contract, a `TriggerSmartContract`. */
export interface TriggerTransactionRaw {
  refBlockBytes: Uint8Array
  refBlockNum: bigint
  refBlockHash: Uint8Array
  expiration: bigint
  /** The memo (`raw_data.data`) */
  data: Uint8Array
  contract: TriggerSmartContractFields
  permissionId: number
  timestamp: bigint
  feeLimit: bigint
}

export function encodeTriggerSmartContract (c: TriggerSmartContractFields): Uint8Array {
  return new ProtoWriter()
    .bytes(1, c.ownerAddress)
    .bytes(2, c.contractAddress)
    .varint(3, c.callValue)
    .bytes(4, c.data)
    .varint(5, c.callTokenValue)
    .varint(6, c.tokenId)
    .finish()
}

/** The bytes whose sha256 is the transaction id. */
export function encodeTransactionRaw (raw: TriggerTransactionRaw): Uint8Array {
  const any = new ProtoWriter()
    .string(1, TRIGGER_SMART_CONTRACT_TYPE_URL)
    .bytes(2, encodeTriggerSmartContract(raw.contract))
    .finish()
  const contract = new ProtoWriter()
    .varint(1, TRIGGER_SMART_CONTRACT_TYPE)
    .message(2, any)
    .varint(5, raw.permissionId)
    .finish()
  return new ProtoWriter()
    .bytes(1, raw.refBlockBytes)
    .varint(3, raw.refBlockNum)
    .bytes(4, raw.refBlockHash)
    .varint(8, raw.expiration)
    .bytes(10, raw.data)
    .message(11, contract)
    .varint(14, raw.timestamp)
    .varint(18, raw.feeLimit)
    .finish()
}

/** `BlockHeader.raw`: what a block id hashes. */
export interface BlockHeaderRaw {
  timestamp: number
  txTrieRoot: Uint8Array
  parentHash: Uint8Array
  number: number
  witnessAddress: Uint8Array
  version: number
}

export function encodeBlockHeaderRaw (h: BlockHeaderRaw): Uint8Array {
  return new ProtoWriter()
    .varint(1, h.timestamp)
    .bytes(2, h.txTrieRoot)
    .bytes(3, h.parentHash)
    .varint(7, h.number)
    .bytes(9, h.witnessAddress)
    .varint(10, h.version)
    .finish()
}
