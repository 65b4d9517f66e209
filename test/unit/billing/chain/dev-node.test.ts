/**
 * The dev node as a node: what it answers on the wire, and what it refuses, checked with raw HTTP
 * and with tronweb. (The chain compliance suite covers the paths a ChainClient takes.)
 */
import { createHash } from 'node:crypto'
import { TronWeb, utils } from 'tronweb'
import { afterEach, describe, expect, it } from 'vitest'
import { DEV_BTT, DevNode, devTokenAddress, type DevNodeInit } from '../../../../src/billing/chain/dev-node.ts'
import { encodeBlockHeaderRaw } from '../../../../src/billing/chain/protobuf.ts'
import { TRANSFER_TOPIC, addressWord, base58ToHex, hexToBytes, uint256Word } from '../../../../src/billing/chain/trc20.ts'

type Json = Record<string, any>

const nodes: DevNode[] = []

afterEach(async () => {
  while (nodes.length > 0) await nodes.pop()?.close()
})

async function start (init: DevNodeInit = {}): Promise<DevNode> {
  const node = await DevNode.start({ autoProduce: false, solidityLag: 2, ...init })
  nodes.push(node)
  return node
}

async function post (node: DevNode, path: string, body: unknown = {}): Promise<{ status: number, json: Json }> {
  const res = await fetch(`${node.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  return { status: res.status, json: await res.json() as Json }
}

function wallet (): { key: string, address: string } {
  const account = TronWeb.createRandom()
  return { key: account.privateKey.slice(2), address: account.address }
}

/** A transfer built by the node and signed by `signer` (default: the owner). */
async function signedTransfer (node: DevNode, owner: { key: string, address: string }, to: string, amount: bigint, options: Json = {}): Promise<Json> {
  const tronWeb = new TronWeb({ fullHost: node.url })
  const built = await tronWeb.transactionBuilder.triggerSmartContract(node.tokenAddresses[0] as string, 'transfer(address,uint256)', { feeLimit: 100_000_000, ...options }, [{ type: 'address', value: to }, { type: 'uint256', value: amount }], owner.address)
  return await tronWeb.trx.sign(built.transaction, owner.key) as unknown as Json
}

const hexText = (hex: string): string => Buffer.from(hex, 'hex').toString('utf8')

describe('dev node', () => {
  it('chains blocks: ids start with the number, parents link, the witness signs the header hash', async () => {
    const node = await start()
    node.produce(3)
    const blocks = await Promise.all([0, 1, 2, 3].map(async num => (await post(node, '/wallet/getblockbynum', { num })).json))
    for (const [i, block] of blocks.entries()) {
      const raw = block.block_header.raw_data
      expect(raw.number).toBe(i)
      expect(block.blockID.slice(0, 16)).toBe(i.toString(16).padStart(16, '0'))
      if (i > 0) expect(raw.parentHash).toBe(blocks[i - 1]?.blockID)
      const hash = createHash('sha256').update(encodeBlockHeaderRaw({
        timestamp: raw.timestamp, txTrieRoot: hexToBytes(raw.txTrieRoot), parentHash: hexToBytes(raw.parentHash), number: raw.number, witnessAddress: hexToBytes(raw.witness_address), version: raw.version
      })).digest('hex')
      expect(block.blockID.slice(16)).toBe(hash.slice(16))
      expect(utils.crypto.ecRecover(hash, block.block_header.witness_signature).toLowerCase()).toBe(raw.witness_address)
    }
    expect(blocks[3]?.block_header.raw_data.timestamp - blocks[2]?.block_header.raw_data.timestamp).toBe(node.intervalMs)
    expect((await post(node, '/wallet/getblockbynum', { num: 4 })).json).toEqual({})
    expect((await post(node, '/walletsolidity/getblockbynum', { num: 2 })).json).toEqual({})
    expect((await post(node, '/walletsolidity/getnowblock')).json.block_header.raw_data.number).toBe(1)
    expect((await post(node, '/wallet/getblock', { detail: false })).json).not.toHaveProperty('transactions')
    expect((await post(node, '/wallet/getblockbyid', { value: blocks[2]?.blockID })).json.blockID).toBe(blocks[2]?.blockID)
  })

  it('runs tronweb\'s contract API: getcontract, balanceOf, symbol, decimals', async () => {
    const node = await start()
    const holder = wallet()
    node.fund(holder.address, 123n)
    node.produce(1)
    const tronWeb = new TronWeb({ fullHost: node.url })
    tronWeb.setAddress(holder.address)
    const token = await tronWeb.contract().at(node.tokenAddresses[0] as string)
    expect(await token.balanceOf(holder.address).call()).toBe(123n)
    expect(await token.symbol().call()).toBe('BTT')
    expect(await token.decimals().call()).toBe(18n)
    expect(node.tokenAddresses[0]).toBe(devTokenAddress(DEV_BTT.symbol))
  })

  it('answers a broadcast as java-tron does: result and txid without a code, then DUP_TRANSACTION_ERROR', async () => {
    const node = await start()
    const owner = wallet()
    node.fund(owner.address, 1000n)
    node.produce(1)
    const tx = await signedTransfer(node, owner, wallet().address, 10n)
    expect((await post(node, '/wallet/broadcasttransaction', tx)).json).toEqual({ result: true, txid: tx.txID })
    expect((await post(node, '/wallet/broadcasttransaction', tx)).json).toEqual({ code: 'DUP_TRANSACTION_ERROR', txid: tx.txID })
    expect((await post(node, '/wallet/gettransactionfrompending', { value: tx.txID })).json.txID).toBe(tx.txID)
    node.produce(1)
    expect((await post(node, '/wallet/gettransactionfrompending', { value: tx.txID })).json).toEqual({})
    expect((await post(node, '/wallet/gettransactionbyid', { value: tx.txID })).json.ret).toEqual([{ contractRet: 'SUCCESS' }])
    expect((await post(node, '/walletsolidity/gettransactioninfobyid', { value: tx.txID })).json).toEqual({})
    node.produce(2)
    const infos = (await post(node, '/walletsolidity/gettransactioninfobyblocknum', { num: 2 })).json as unknown as Json[]
    expect(infos).toHaveLength(1)
    expect(infos[0]).toMatchObject({
      id: tx.txID,
      blockNumber: 2,
      receipt: { result: 'SUCCESS' },
      log: [{ address: base58ToHex(node.tokenAddresses[0] as string).slice(2), topics: [TRANSFER_TOPIC, addressWord(base58ToHex(owner.address)), expect.any(String)], data: uint256Word(10n) }]
    })
    expect((await post(node, '/walletsolidity/gettransactioninfobyblocknum', { num: 3 })).json).toEqual([])
  })

  it('refuses a bad reference block, an expiration too far ahead, an unknown contract, attached TRX', async () => {
    const node = await start()
    const owner = wallet()
    node.fund(owner.address, 1000n)
    node.produce(1)
    const tronWeb = new TronWeb({ fullHost: node.url })
    const head = (await post(node, '/wallet/getblock', { detail: false })).json
    const headTime = head.block_header.raw_data.timestamp as number
    const local = async (blockHeader: Json, contract = node.tokenAddresses[0] as string): Promise<Json> => {
      const built = await tronWeb.transactionBuilder.triggerSmartContract(contract, 'transfer(address,uint256)', { feeLimit: 1_000_000, txLocal: true, blockHeader }, [{ type: 'address', value: wallet().address }, { type: 'uint256', value: 1n }], owner.address)
      return await tronWeb.trx.sign(built.transaction, owner.key) as unknown as Json
    }
    const ref = { ref_block_bytes: (1).toString(16).padStart(4, '0'), ref_block_hash: head.blockID.slice(16, 32), expiration: headTime + 60_000, timestamp: headTime }
    const cases: Array<[Json, string, string]> = [
      [await local({ ...ref, ref_block_hash: '00'.repeat(8) }), 'TAPOS_ERROR', 'Tapos check error'],
      [await local({ ...ref, ref_block_bytes: '0009' }), 'TAPOS_ERROR', 'Tapos check error'],
      [await local({ ...ref, expiration: headTime + 25 * 3600_000 }), 'TRANSACTION_EXPIRATION_ERROR', 'transaction expired'],
      [await local({ ...ref, expiration: headTime }), 'TRANSACTION_EXPIRATION_ERROR', 'transaction expired'],
      [await local(ref, wallet().address), 'CONTRACT_VALIDATE_ERROR', 'No contract']
    ]
    for (const [tx, code, message] of cases) {
      const { json } = await post(node, '/wallet/broadcasttransaction', tx)
      expect(json).toMatchObject({ code, txid: tx.txID })
      expect(json).not.toHaveProperty('result')
      expect(hexText(json.message)).toContain(message)
      // A node caches the id before validating: the retry is a duplicate
      expect((await post(node, '/wallet/broadcasttransaction', tx)).json).toEqual({ code: 'DUP_TRANSACTION_ERROR', txid: tx.txID })
    }
    expect((await post(node, '/wallet/broadcasttransaction', await local(ref))).json.result).toBe(true)
    const paying = await signedTransfer(node, owner, wallet().address, 1n, { callValue: 5 })
    expect((await post(node, '/wallet/broadcasttransaction', paying)).json.code).toBe('CONTRACT_VALIDATE_ERROR')
  })

  it('refuses missing or malformed signatures', async () => {
    const node = await start()
    const owner = wallet()
    const tx = await signedTransfer(node, owner, wallet().address, 1n)
    const unsigned = { ...tx, signature: [] }
    expect((await post(node, '/wallet/broadcasttransaction', unsigned)).json.code).toBe('SIGERROR')
    const short = { ...tx, signature: [(tx.signature[0] as string).slice(0, 128)] }
    const { json } = await post(node, '/wallet/broadcasttransaction', { ...short, raw_data: { ...tx.raw_data, timestamp: tx.raw_data.timestamp + 1 } })
    expect(json.code).toBe('SIGERROR')
    expect(hexText(json.message)).toContain('Signature size is 64')
  })

  it('answers malformed requests with java-tron\'s Error shape, and unsupported contracts too', async () => {
    const node = await start()
    expect((await post(node, '/wallet/broadcasttransaction', '{not json')).json.Error).toMatch(/JSONException/)
    expect((await post(node, '/wallet/broadcasttransaction', { raw_data: { contract: [{ type: 'TransferContract', parameter: { value: {} } }] }, signature: [] })).json.Error).toMatch(/TriggerSmartContract only/)
    expect((await post(node, '/wallet/getblockbynum', { num: -1 })).json.Error).toMatch(/num/)
    expect((await post(node, '/wallet/nosuchthing')).status).toBe(404)
    expect((await post(node, '/wallet/triggerconstantcontract', { contract_address: base58ToHex(wallet().address), function_selector: 'balanceOf(address)', parameter: '' })).json.result.code).toBe('CONTRACT_VALIDATE_ERROR')
  })

  it('answers SERVER_BUSY when its pool is full', async () => {
    const node = await start({ maxPending: 1 })
    const owner = wallet()
    node.fund(owner.address, 10n)
    const tx = await signedTransfer(node, owner, wallet().address, 1n)
    expect((await post(node, '/wallet/broadcasttransaction', tx)).json.code).toBe('SERVER_BUSY')
  })

  it('drops a pending transaction that expires before a block takes it', async () => {
    // Slots longer than the 60 s expiration java-tron gives the transactions it builds
    const node = await start({ blockIntervalMs: 61_000 })
    const owner = wallet()
    node.fund(owner.address, 10n)
    node.produce(1)
    const tx = await signedTransfer(node, owner, wallet().address, 1n)
    expect((await post(node, '/wallet/broadcasttransaction', tx)).json.result).toBe(true)
    node.produce(1)
    expect((await post(node, '/wallet/gettransactioninfobyid', { value: tx.txID })).json).toEqual({})
    expect(node.pendingCount).toBe(0)
  })

  it('admin endpoints fund, produce, and switch timed production', async () => {
    const node = await start({ blockIntervalMs: 50 })
    const holder = wallet()
    const status = (await fetch(`${node.url}/admin/status`)).json()
    expect(await status).toMatchObject({ head: 0, solidified: 0, production: false, tokens: [{ symbol: 'BTT', decimals: 18 }] })
    const funded = await post(node, '/admin/fund', { address: holder.address, amount: '5000' })
    expect(funded.json.txid).toMatch(/^[0-9a-f]{64}$/)
    expect((await post(node, '/admin/fund', { address: 'Tnope', amount: '1' })).status).toBe(400)
    expect((await post(node, '/admin/fund', { address: holder.address, amount: '-1' })).status).toBe(400)
    expect((await post(node, '/admin/produce', { blocks: 3 })).json).toEqual({ head: 3, solidified: 1 })
    const tronWeb = new TronWeb({ fullHost: node.url })
    const balance = await tronWeb.transactionBuilder.triggerConfirmedConstantContract(node.tokenAddresses[0] as string, 'balanceOf(address)', {}, [{ type: 'address', value: holder.address }], holder.address)
    expect(BigInt(`0x${balance.constant_result?.[0] as string}`)).toBe(5000n)
    expect((await post(node, '/walletsolidity/getaccount', { address: base58ToHex(holder.address) })).json.address).toBe(base58ToHex(holder.address))
    expect((await post(node, '/walletsolidity/getaccount', { address: base58ToHex(wallet().address) })).json).toEqual({})
    expect((await post(node, '/admin/production', { enabled: true })).json).toEqual({ enabled: true })
    while (node.headNumber < 6) await new Promise(resolve => setTimeout(resolve, 20))
    expect((await post(node, '/admin/production', { enabled: false })).json).toEqual({ enabled: false })
    const stopped = node.headNumber
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(node.headNumber).toBe(stopped)
  })
})
