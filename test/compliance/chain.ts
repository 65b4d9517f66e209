/**
 * The ChainClient compliance suite: what a chain client must show against a TRON node, the real
 * tronweb code path included (the node builds transfers, tronweb checks them, the hot wallet
 * signs, the node validates). chain.dev.test.ts runs it against the dev node, chain.tre.test.ts
 * against java-tron in the tronbox/tre image.
 *
 * One fixture serves the whole suite (a java-tron node takes a minute to start); every test
 * works with fresh random recipients, so tests do not see each other's transfers.
 */
import { TronWeb, Trx, utils } from 'tronweb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtlasError } from '../../src/core/errors.ts'
import { BroadcastRefusedError, type ChainClient, type SignedTransfer } from '../../src/billing/chain/chain.ts'

export interface ChainFixture {
  /** The client under test; its hot wallet holds `hotBalance` of the token, solidified */
  chain: ChainClient
  /** A client of the same hot wallet for a second TRC-20, which the hot wallet holds too */
  otherTokenChain: ChainClient
  /** The hot wallet's private key (hex), to sign what the client would not */
  hotKey: string
  /** The node's base URL */
  fullHost: string
  /** Give `address` `amount` base units of the token from a funded account (pending until a block) */
  fund: (address: string, amount: bigint) => Promise<void>
  /** Let at least `count` more blocks be produced */
  advance: (count: number) => Promise<void>
  /**
   * The node's solidification lag, when it is exact and blocks come only from `advance` (the
   * dev node): the suite then also checks states that a live chain may skip past
   */
  exactLag?: number
  teardown: () => Promise<void>
}

export interface ChainTestOptions {
  setup: () => Promise<ChainFixture>
  /** Per-test timeout, for nodes that produce blocks in real time @default vitest's */
  timeout?: number
}

const HEX64 = /^[0-9a-f]{64}$/

function randomAddress (): string {
  return TronWeb.createRandom().address
}

function randomKey (): string {
  return TronWeb.createRandom().privateKey.slice(2)
}

async function rejection (promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

export function chainTests (name: string, options: ChainTestOptions): void {
  describe(`${name} chain client compliance`, () => {
    let fx: ChainFixture
    let chain: ChainClient

    beforeAll(async () => {
      fx = await options.setup()
      chain = fx.chain
    })

    afterAll(async () => {
      await fx?.teardown()
    })

    /** Advance until block `number` is solidified; the new solidified head. */
    async function solidified (number: number): Promise<number> {
      for (;;) {
        const solid = await chain.solidifiedHead()
        if (solid.number >= number) return solid.number
        await fx.advance(1)
      }
    }

    /** Advance until the head's timestamp reaches `time` (chain time). */
    async function headReaches (time: number): Promise<void> {
      while ((await chain.head()).timestamp < time) await fx.advance(1)
    }

    /** Sign, broadcast, and wait until the transfer's block is solidified. */
    async function settle (transfer: SignedTransfer): Promise<number> {
      await chain.broadcast(transfer)
      for (;;) {
        const status = await chain.transactionStatus(transfer.txId)
        if (status.blockNumber !== undefined) return await solidified(status.blockNumber)
        if (status.state === 'unknown') throw new Error(`transfer ${transfer.txId} was dropped`)
        await fx.advance(1)
      }
    }

    const test = (title: string, fn: () => Promise<void>): void => { it(title, fn, options.timeout) }

    test('reports heads that advance, the solidified head trailing', async () => {
      const head = await chain.head()
      const solid = await chain.solidifiedHead()
      expect(head.id).toMatch(HEX64)
      expect(solid.id).toMatch(HEX64)
      // A block id starts with its number (8 bytes, big-endian)
      expect(Number.parseInt(head.id.slice(0, 16), 16)).toBe(head.number)
      expect(solid.number).toBeLessThanOrEqual(head.number)
      if (fx.exactLag !== undefined) expect(head.number - solid.number).toBe(fx.exactLag)
      await fx.advance(2)
      const later = await chain.head()
      expect(later.number).toBeGreaterThanOrEqual(head.number + 2)
      expect(later.timestamp).toBeGreaterThan(head.timestamp)
      expect((await chain.solidifiedHead()).number).toBeGreaterThanOrEqual(solid.number)
      // Once solidified, the block the head was is the same block (no other chain took its place)
      await solidified(head.number)
      const solidNow = await chain.solidifiedHead()
      expect(solidNow.number).toBeGreaterThanOrEqual(head.number)
      if (solidNow.number === head.number) expect(solidNow.id).toBe(head.id)
    })

    test('reads solidified blocks by number, none above the solidified head', async () => {
      const solid = await chain.solidifiedHead()
      expect(await chain.solidifiedBlock(solid.number)).toEqual(solid)
      const genesis = await chain.solidifiedBlock(0)
      expect(genesis?.number).toBe(0)
      expect(genesis?.id).toMatch(HEX64)
      // the genesis block names the chain: it stays the same block
      await fx.advance(1)
      expect((await chain.solidifiedBlock(0))?.id).toBe(genesis?.id)
      const head = await chain.head()
      if (fx.exactLag !== undefined && fx.exactLag > 0) expect(await chain.solidifiedBlock(head.number)).toBeUndefined()
      expect(await chain.solidifiedBlock(head.number + 1000)).toBeUndefined()
      await expect(chain.solidifiedBlock(-1)).rejects.toMatchObject({ code: 'InvalidArgument' })
    })

    test('reads a token balance from solidified state', async () => {
      const holder = randomAddress()
      expect(await chain.tokenBalance(holder)).toBe(0n)
      await fx.fund(holder, 1_000_000n)
      await fx.advance(1)
      if (fx.exactLag !== undefined && fx.exactLag > 0) expect(await chain.tokenBalance(holder)).toBe(0n)
      await solidified((await chain.head()).number)
      expect(await chain.tokenBalance(holder)).toBe(1_000_000n)
    })

    test('signs and broadcasts a transfer: pending, confirmed once solidified, listed once', async () => {
      const recipient = randomAddress()
      const start = (await chain.head()).number
      const transfer = await chain.signTransfer(recipient, 1234n)
      expect(transfer.txId).toMatch(HEX64)
      expect(transfer.expiration).toBeGreaterThan((await chain.head()).timestamp)
      expect(JSON.parse(transfer.raw)).toMatchObject({ txID: transfer.txId })
      expect(await chain.transactionStatus(transfer.txId)).toEqual({ state: 'unknown' })

      await chain.broadcast(transfer)
      if (fx.exactLag !== undefined) {
        // In the pending pool, then in a block that is not solidified yet
        expect(await chain.transactionStatus(transfer.txId)).toEqual({ state: 'pending' })
        await fx.advance(1)
        const inBlock = await chain.transactionStatus(transfer.txId)
        expect(inBlock).toMatchObject({ state: fx.exactLag > 0 ? 'pending' : 'confirmed', result: 'SUCCESS' })
        expect(inBlock.blockNumber).toBe((await chain.head()).number)
      }
      const solid = await settle(transfer)
      const status = await chain.transactionStatus(transfer.txId)
      expect(status).toMatchObject({ state: 'confirmed', result: 'SUCCESS' })

      const found = await chain.transfersTo(recipient, start, solid)
      expect(found).toEqual([{ txId: transfer.txId, logIndex: 0, blockNumber: status.blockNumber, from: chain.depositAddress, to: recipient, amount: 1234n }])
      // Scanning block by block finds it exactly once too
      const single = await chain.transfersTo(recipient, status.blockNumber as number, status.blockNumber as number)
      expect(single).toHaveLength(1)
      expect(await chain.transfersTo(recipient, start, (status.blockNumber as number) - 1)).toEqual([])
      expect(await chain.tokenBalance(recipient)).toBe(1234n)
    })

    test('a replayed broadcast resolves and moves nothing twice', async () => {
      const recipient = randomAddress()
      const start = (await chain.head()).number
      const transfer = await chain.signTransfer(recipient, 77n)
      await chain.broadcast(transfer)
      // Again while pending, again once in a block: the node has it, no second transfer
      await chain.broadcast(transfer)
      const solid = await settle(transfer)
      await chain.broadcast(transfer)
      await fx.advance(2)
      const later = await solidified((await chain.head()).number)
      expect(later).toBeGreaterThanOrEqual(solid)
      const found = await chain.transfersTo(recipient, start, later)
      expect(found.map(t => [t.txId, t.amount])).toEqual([[transfer.txId, 77n]])
      expect(await chain.tokenBalance(recipient)).toBe(77n)
    })

    test('a transfer beyond the balance lands reverted: failed, moves nothing, not listed', async () => {
      const recipient = randomAddress()
      const start = (await chain.head()).number
      const balance = await chain.tokenBalance(chain.depositAddress)
      const transfer = await chain.signTransfer(recipient, balance + 10n ** 30n)
      const solid = await settle(transfer)
      const status = await chain.transactionStatus(transfer.txId)
      expect(status.state).toBe('failed')
      expect(status.result).toBe('REVERT')
      expect(status.blockNumber).toBeLessThanOrEqual(solid)
      expect(await chain.transfersTo(recipient, start, solid)).toEqual([])
      expect(await chain.tokenBalance(recipient)).toBe(0n)
      expect(await chain.tokenBalance(chain.depositAddress)).toBe(balance)
    })

    test('transfers of another token, and to another address, are not listed', async () => {
      const recipient = randomAddress()
      const other = randomAddress()
      const start = (await chain.head()).number
      const otherToken = await fx.otherTokenChain.signTransfer(recipient, 500n)
      const elsewhere = await chain.signTransfer(other, 600n)
      const wanted = await chain.signTransfer(recipient, 700n)
      for (const t of [otherToken, elsewhere, wanted]) await chain.broadcast(t)
      let solid = 0
      for (const t of [otherToken, elsewhere, wanted]) solid = Math.max(solid, await settle(t))
      expect((await fx.otherTokenChain.transactionStatus(otherToken.txId)).state).toBe('confirmed')
      expect(await fx.otherTokenChain.tokenBalance(recipient)).toBe(500n)
      expect((await chain.transfersTo(recipient, start, solid)).map(t => [t.txId, t.amount])).toEqual([[wanted.txId, 700n]])
      expect((await chain.transfersTo(other, start, solid)).map(t => [t.txId, t.amount])).toEqual([[elsewhere.txId, 600n]])
      expect((await fx.otherTokenChain.transfersTo(recipient, start, solid)).map(t => [t.txId, t.amount])).toEqual([[otherToken.txId, 500n]])
    })

    test('an expired transaction is refused', async () => {
      const recipient = randomAddress()
      const transfer = await chain.signTransfer(recipient, 5n)
      await headReaches(transfer.expiration)
      const err = await rejection(chain.broadcast(transfer))
      expect(err).toBeInstanceOf(BroadcastRefusedError)
      expect((err as BroadcastRefusedError).nodeCode).toBe('TRANSACTION_EXPIRATION_ERROR')
      await fx.advance(1)
      expect(await chain.transactionStatus(transfer.txId)).toEqual({ state: 'unknown' })
    })

    test('a transaction signed by another key than its owner is refused, and so is a tampered one', async () => {
      const recipient = randomAddress()
      const tronWeb = new TronWeb({ fullHost: fx.fullHost })
      const built = await tronWeb.transactionBuilder.triggerSmartContract(
        chain.tokenContract, 'transfer(address,uint256)', { feeLimit: 100_000_000 },
        [{ type: 'address', value: recipient }, { type: 'uint256', value: 9n }], chain.depositAddress
      )
      // tronweb's sign() refuses a key that is not the owner's: sign the txID directly
      const forged = utils.crypto.signTransaction(randomKey(), { ...built.transaction })
      const forgedTransfer = { txId: forged.txID, raw: JSON.stringify(forged), expiration: forged.raw_data.expiration }
      const err = await rejection(chain.broadcast(forgedTransfer))
      expect(err).toBeInstanceOf(BroadcastRefusedError)
      expect((err as BroadcastRefusedError).nodeCode).toBe('SIGERROR')

      // Signed by the owner, then the amount changed: the node hashes raw_data itself
      const honest = await chain.signTransfer(recipient, 9n)
      const tampered = JSON.parse(honest.raw) as { raw_data: { contract: Array<{ parameter: { value: { data: string } } }> } }
      const value = (tampered.raw_data.contract[0] as { parameter: { value: { data: string } } }).parameter.value
      value.data = value.data.slice(0, -2) + 'ff'
      const err2 = await rejection(chain.broadcast({ ...honest, raw: JSON.stringify(tampered) }))
      expect(err2).toBeInstanceOf(BroadcastRefusedError)
      expect((err2 as BroadcastRefusedError).nodeCode).toBe('SIGERROR')

      await fx.advance(1)
      expect(await chain.transactionStatus(forged.txID)).toEqual({ state: 'unknown' })
      expect(await chain.transactionStatus(honest.txId)).toEqual({ state: 'unknown' })
      await solidified((await chain.head()).number)
      expect(await chain.tokenBalance(recipient)).toBe(0n)
    })

    test('verifies signed messages: the signer for a good signature, another address otherwise', async () => {
      const message = `Link this wallet to Atlas account 42, nonce ${randomKey().slice(0, 16)}`
      const signature = await chain.signMessage(message)
      expect(await chain.verifyMessage(message, signature)).toBe(chain.depositAddress)
      const otherKey = randomKey()
      const otherSignature = Trx.signMessageV2(message, otherKey)
      const signer = await chain.verifyMessage(message, otherSignature)
      expect(signer).toBe(TronWeb.address.fromPrivateKey(otherKey))
      expect(signer).not.toBe(chain.depositAddress)
      expect(await chain.verifyMessage(`${message}!`, signature)).not.toBe(chain.depositAddress)
      for (const bad of ['', '0x1234', 'zz'.repeat(65)]) {
        const err = await rejection(chain.verifyMessage(message, bad))
        expect(err).toBeInstanceOf(AtlasError)
        expect((err as AtlasError).code).toBe('InvalidArgument')
      }
    })

    test('tells well-formed addresses from malformed ones, and refuses bad input', async () => {
      expect(chain.isAddress(chain.depositAddress)).toBe(true)
      expect(chain.isAddress(chain.tokenContract)).toBe(true)
      const good = chain.depositAddress
      const flipped = good.slice(0, -1) + (good.endsWith('1') ? '2' : '1')
      // characters outside the base58 alphabet (0, O, I, l) included: false, never a throw
      for (const bad of ['', 'T', flipped, good.slice(1), `${good}1`, TronWeb.address.toHex(good), '0x' + TronWeb.address.toHex(good).slice(2), `${good.slice(0, -1)}l`, `${good.slice(0, -1)}0`, good.toLowerCase()]) {
        expect(chain.isAddress(bad)).toBe(false)
      }
      const codeOf = async (p: Promise<unknown>): Promise<string | undefined> => ((await rejection(p)) as AtlasError).code
      expect(await codeOf(chain.tokenBalance(flipped))).toBe('InvalidArgument')
      expect(await codeOf(chain.signTransfer(flipped, 1n))).toBe('InvalidArgument')
      expect(await codeOf(chain.signTransfer(randomAddress(), 0n))).toBe('InvalidAmount')
      expect(await codeOf(chain.signTransfer(randomAddress(), -5n))).toBe('InvalidAmount')
      expect(await codeOf(chain.transfersTo(flipped, 0, 0))).toBe('InvalidArgument')
      const solid = (await chain.solidifiedHead()).number
      expect(await codeOf(chain.transfersTo(randomAddress(), 0, solid + 1000))).toBe('InvalidArgument')
      expect(await codeOf(chain.transactionStatus('not-a-txid'))).toBe('InvalidArgument')
    })
  })
}
