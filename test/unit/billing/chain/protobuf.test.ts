import fc from 'fast-check'
import { utils } from 'tronweb'
import { describe, expect, it } from 'vitest'
import { encodeTransactionRaw, TRIGGER_SMART_CONTRACT_TYPE_URL, type TriggerTransactionRaw } from '../../../../src/billing/chain/protobuf.ts'
import { bytesToHex, hexToBytes } from '../../../../src/billing/chain/trc20.ts'

/** The transaction JSON a node would send for these raw fields (visible=false, defaults left out). */
function toJson (raw: TriggerTransactionRaw): Record<string, unknown> {
  const value: Record<string, unknown> = {
    owner_address: bytesToHex(raw.contract.ownerAddress),
    contract_address: bytesToHex(raw.contract.contractAddress)
  }
  if (raw.contract.data.length > 0) value.data = bytesToHex(raw.contract.data)
  if (raw.contract.callValue !== 0n) value.call_value = Number(raw.contract.callValue)
  if (raw.contract.callTokenValue !== 0n) value.call_token_value = Number(raw.contract.callTokenValue)
  if (raw.contract.tokenId !== 0n) value.token_id = Number(raw.contract.tokenId)
  const contract: Record<string, unknown> = { parameter: { value, type_url: TRIGGER_SMART_CONTRACT_TYPE_URL }, type: 'TriggerSmartContract' }
  if (raw.permissionId !== 0) contract.Permission_id = raw.permissionId
  const rawData: Record<string, unknown> = {
    contract: [contract],
    ref_block_bytes: bytesToHex(raw.refBlockBytes),
    ref_block_hash: bytesToHex(raw.refBlockHash),
    expiration: Number(raw.expiration),
    timestamp: Number(raw.timestamp)
  }
  if (raw.data.length > 0) rawData.data = bytesToHex(raw.data)
  if (raw.feeLimit !== 0n) rawData.fee_limit = Number(raw.feeLimit)
  return { visible: false, raw_data: rawData }
}

const address = fc.uint8Array({ minLength: 20, maxLength: 20 }).map(b => Uint8Array.from([0x41, ...b]))
const int53 = (max: number): fc.Arbitrary<bigint> => fc.integer({ min: 0, max }).map(BigInt)

const rawArb: fc.Arbitrary<TriggerTransactionRaw> = fc.record({
  refBlockBytes: fc.uint8Array({ minLength: 2, maxLength: 2 }),
  refBlockNum: fc.constant(0n),
  refBlockHash: fc.uint8Array({ minLength: 8, maxLength: 8 }),
  expiration: int53(Number.MAX_SAFE_INTEGER).map(v => v + 1n),
  data: fc.uint8Array({ maxLength: 300 }),
  contract: fc.record({
    ownerAddress: address,
    contractAddress: address,
    callValue: int53(2 ** 40),
    data: fc.uint8Array({ maxLength: 400 }),
    callTokenValue: int53(2 ** 40),
    tokenId: int53(2_000_000)
  }),
  permissionId: fc.integer({ min: 0, max: 9 }),
  timestamp: int53(Number.MAX_SAFE_INTEGER).map(v => v + 1n),
  feeLimit: int53(15_000_000_000)
})

describe('protobuf encoding of TRON transactions', () => {
  it('agrees byte for byte with tronweb\'s own encoder (raw_data_hex and txID)', () => {
    fc.assert(fc.property(rawArb, raw => {
      const pb = utils.transaction.txJsonToPb(toJson(raw))
      const ours = encodeTransactionRaw(raw)
      expect(bytesToHex(ours)).toBe(utils.transaction.txPbToRawDataHex(pb).toLowerCase())
      expect(utils.ethersUtils.sha256(ours).slice(2)).toBe(utils.transaction.txPbToTxID(pb).replace(/^0x/, ''))
    }), { numRuns: 300 })
  })

  it('encodes a known transfer to the bytes java-tron hashes', () => {
    const raw: TriggerTransactionRaw = {
      refBlockBytes: hexToBytes('0a0b'),
      refBlockNum: 0n,
      refBlockHash: hexToBytes('0102030405060708'),
      expiration: 1_700_000_060_000n,
      data: new Uint8Array(),
      contract: {
        ownerAddress: hexToBytes(`41${'11'.repeat(20)}`),
        contractAddress: hexToBytes(`41${'22'.repeat(20)}`),
        callValue: 0n,
        data: hexToBytes('a9059cbb'),
        callTokenValue: 0n,
        tokenId: 0n
      },
      permissionId: 0,
      timestamp: 1_700_000_000_000n,
      feeLimit: 100_000_000n
    }
    const hex = bytesToHex(encodeTransactionRaw(raw))
    // field 1 (ref_block_bytes), field 4 (ref_block_hash), field 8 (expiration varint)
    expect(hex.startsWith('0a020a0b220801020304050607084')).toBe(true)
    // the contract: type 31 (TriggerSmartContract), the Any's type URL, then the call
    expect(hex).toContain('5a')
    expect(hex).toContain('081f12')
    expect(hex).toContain(Buffer.from(TRIGGER_SMART_CONTRACT_TYPE_URL).toString('hex'))
    // fee_limit is field 18: a two-byte tag 0x90 0x01, then 100_000_000 as a varint
    expect(hex.endsWith('900180c2d72f')).toBe(true)
  })
})
