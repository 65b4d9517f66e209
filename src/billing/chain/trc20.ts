/**
 * TRON addresses and the TRC-20 ABI, as both the dev node and the tronweb client need them.
 *
 * A TRON address is 21 bytes: the prefix 0x41 and the 20 bytes of an EVM address. Nodes write it
 * as 42 hex digits (`41…`) in JSON, users as base58check (`T…`); inside the TVM (ABI words, event
 * topics, log addresses) it is the bare 20 bytes. TRC-20 is ERC-20 on the TVM: the same function
 * selectors, the same `Transfer(address,address,uint256)` event.
 */
import { TronWeb, utils } from 'tronweb'

/** keccak256 of a UTF-8 string, as hex without 0x. */
export function keccakHex (text: string): string {
  return utils.ethersUtils.keccak256(new TextEncoder().encode(text)).slice(2)
}

/** The 4-byte selector (8 hex digits) of a function signature such as `transfer(address,uint256)`. */
export function selector (signature: string): string {
  return keccakHex(signature).slice(0, 8)
}

/** TRC-20 functions the dev node answers and the client calls. */
export const TRC20 = {
  transfer: selector('transfer(address,uint256)'),
  balanceOf: selector('balanceOf(address)'),
  totalSupply: selector('totalSupply()'),
  decimals: selector('decimals()'),
  symbol: selector('symbol()'),
  name: selector('name()')
} as const

/** topics[0] of a `Transfer(address indexed from, address indexed to, uint256 value)` log */
export const TRANSFER_TOPIC = keccakHex('Transfer(address,address,uint256)')

/** Selector of Solidity's `Error(string)`, the revert reason encoding */
export const ERROR_SELECTOR = selector('Error(string)')

const HEX_ADDRESS = /^41[0-9a-f]{40}$/
const HEX = /^(?:[0-9a-f]{2})*$/
const MAX_UINT256 = (1n << 256n) - 1n

/** True for a well-formed base58check TRON address (`T…`, 34 characters, valid checksum). */
export function isBase58Address (address: unknown): address is string {
  if (typeof address !== 'string') return false
  try {
    return utils.crypto.isAddressValid(address)
  } catch {
    // tronweb's base58 decoder throws on characters outside the alphabet (0, O, I, l)
    return false
  }
}

/** Base58check to 42 hex digits (`41…`, lower case). @throws RangeError when malformed */
export function base58ToHex (address: string): string {
  if (!isBase58Address(address)) throw new RangeError(`not a TRON address: ${address}`)
  return TronWeb.address.toHex(address).toLowerCase()
}

/** 42 hex digits (`41…`) to base58check. @throws RangeError when malformed */
export function hexToBase58 (hex: string): string {
  const h = hex.toLowerCase()
  if (!HEX_ADDRESS.test(h)) throw new RangeError(`not a hex TRON address: ${hex}`)
  return TronWeb.address.fromHex(h)
}

/** True for 42 hex digits starting 41 (either case) */
export function isHexAddress (hex: unknown): hex is string {
  return typeof hex === 'string' && HEX_ADDRESS.test(hex.toLowerCase())
}

/** Even-length hex without 0x, lower case; `undefined` when it is not hex. */
export function normalizeHex (value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined
  const h = value.replace(/^0x/i, '').toLowerCase()
  return HEX.test(h) ? h : undefined
}

export function hexToBytes (hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

export function bytesToHex (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

/** A uint256 as one 32-byte ABI word (64 hex digits). */
export function uint256Word (value: bigint): string {
  if (value < 0n || value > MAX_UINT256) throw new RangeError('value out of uint256 range')
  return value.toString(16).padStart(64, '0')
}

/** A TRON address (`41…` hex) as one ABI word / log topic: the 20 bytes, left-padded. */
export function addressWord (hexAddress: string): string {
  if (!isHexAddress(hexAddress)) throw new RangeError(`not a hex TRON address: ${hexAddress}`)
  return hexAddress.slice(2).toLowerCase().padStart(64, '0')
}

/** One ABI word back to a TRON address (`41…`); `undefined` when its upper 12 bytes are not zero. */
export function wordToHexAddress (word: string): string | undefined {
  const w = word.toLowerCase()
  if (!/^0{24}[0-9a-f]{40}$/.test(w)) return undefined
  return `41${w.slice(24)}`
}

/** One ABI word as a uint256; `undefined` when it is not 64 hex digits. */
export function wordToUint256 (word: string): bigint | undefined {
  return /^[0-9a-fA-F]{64}$/.test(word) ? BigInt(`0x${word}`) : undefined
}

/** ABI encoding of a single `string` return value (offset, length, padded bytes). */
export function abiString (text: string): string {
  const bytes = Buffer.from(text, 'utf8')
  const padded = bytes.toString('hex').padEnd(Math.ceil(bytes.length / 32) * 64, '0')
  return uint256Word(32n) + uint256Word(BigInt(bytes.length)) + padded
}

/** Revert data as Solidity writes it for `require(cond, reason)`: `Error(string)`. */
export function revertData (reason: string): string {
  return ERROR_SELECTOR + abiString(reason)
}

/** Decoded `transfer(address,uint256)` call data, or `undefined` when it is not one. */
export function decodeTransferCall (dataHex: string): { to: string, amount: bigint } | undefined {
  // Like Solidity's ABI decoder: short call data reverts, bytes past the arguments are ignored
  const data = dataHex.toLowerCase()
  if (data.length < 8 + 128 || !data.startsWith(TRC20.transfer)) return undefined
  const to = wordToHexAddress(data.slice(8, 72))
  const amount = wordToUint256(data.slice(72, 136))
  return to === undefined || amount === undefined ? undefined : { to, amount }
}
