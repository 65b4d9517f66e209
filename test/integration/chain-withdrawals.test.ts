/**
 * Withdrawals end to end against the dev TRON node (issue #6, "Done means"): a withdrawal whose
 * process dies between signing and broadcast, between broadcast and settlement, or between
 * signing and recording the signature ends with exactly one transfer on chain and a ledger that
 * balances; a transfer that never lands is voided only once chain time is past its expiration;
 * one that reverts is voided. Crashes are made two ways: in process (the chain client or ledger
 * of one Withdrawals instance fails at the chosen step, then a new instance over the same
 * database takes over), and with kill -9 of a real `atlas serve`, caught between signing and
 * broadcast by a proxy in front of the node that holds the broadcast. Bad input is refused with
 * a clear problem and no ledger change.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TronWeb } from 'tronweb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAccount } from '../../src/accounts/credentials.ts'
import { UNITS_PER_BTT } from '../../src/billing/amount.ts'
import type { ChainClient, SignedTransfer } from '../../src/billing/chain/chain.ts'
import { EXPIRY_MARGIN_MS, WITHDRAWALS_LEDGER_ACCOUNT, Withdrawals, type WithdrawalLimits } from '../../src/billing/chain/withdrawals.ts'
import { KyselyLedger } from '../../src/billing/kysely-ledger.ts'
import type { Ledger } from '../../src/billing/ledger.ts'
import { KyselyMetadataStore } from '../../src/metadata/index.ts'
import { linkWallet, quietLogger, sendToken, startChainAtlas, startChainTestbed, withOverrides, type ChainTestbed, type UserWallet } from '../fixtures/chain.ts'
import { withLedger as withDataDirLedger } from '../fixtures/ledger.ts'
import { atlasJson, startServerProcess, type ServerProcess } from '../fixtures/server-process.ts'

const BTT = UNITS_PER_BTT
const json = { 'content-type': 'application/json' }

describe('BTT withdrawals against the dev TRON node', () => {
  let bed: ChainTestbed
  let t: Awaited<ReturnType<typeof startChainAtlas>>
  let store: KyselyMetadataStore
  let ledger: Ledger
  let accountId: string
  let wallet: UserWallet
  const DEPOSIT = 500n * BTT

  beforeAll(async () => {
    bed = await startChainTestbed()
    t = await startChainAtlas(bed)
    if (!(t.atlas.metadata instanceof KyselyMetadataStore)) throw new Error('expected the SQL store')
    store = t.atlas.metadata
    ledger = t.atlas.billing?.ledger as Ledger
    accountId = t.account.id
    // the account's funds come from a real deposit: the hot wallet holds what it pays out
    wallet = bed.wallet(1000n)
    bed.solidify()
    expect((await linkWallet(t.api, wallet)).status).toBe(201)
    await sendToken(wallet, bed.btt, t.chain.client.depositAddress, DEPOSIT)
    bed.solidify()
    await t.chain.deposits.scan()
    expect((await ledger.customerBalances(accountId)).available).toBe(DEPOSIT)
  })
  afterAll(async () => {
    await t?.stop()
    await bed?.close()
  })

  /** A Withdrawals instance over the test Atlas's database: another process, as far as it can tell */
  function instance (chain: ChainClient = t.chain.client, limits: WithdrawalLimits = t.chain.withdrawals.limits): Withdrawals {
    return new Withdrawals({ db: store.db, dialect: store.dialect, chain, ledger, walletOwner: async (a) => await t.chain.wallets.accountOf(a), limits, logger: quietLogger })
  }

  /** Transfers to `address` on chain since block `from`, once everything is solidified */
  async function transfersTo (address: string, from: number): Promise<Array<{ txId: string, amount: bigint }>> {
    bed.solidify()
    const solid = (await t.chain.client.solidifiedHead()).number
    return (await t.chain.client.transfersTo(address, from, solid)).map(x => ({ txId: x.txId, amount: x.amount }))
  }

  async function head (): Promise<number> {
    return (await t.chain.client.head()).number
  }

  it('holds, sends and settles a withdrawal once the transfer is solidified', async () => {
    const start = await head()
    const paidBefore = await ledger.balance(WITHDRAWALS_LEDGER_ACCOUNT)
    const before = await ledger.customerBalances(accountId)
    const res = await t.api('/v1/account/withdrawals', { method: 'POST', headers: json, body: JSON.stringify({ address: wallet.address, amount: '12.5' }) })
    expect(res.status).toBe(202)
    const w = await res.json() as { id: string, state: string, txId: string, amount: { btt: string } }
    expect(w).toMatchObject({ state: 'broadcast', amount: { btt: '12.5' } })
    const amount = 12_500_000_000_000_000_000n
    expect(await ledger.customerBalances(accountId)).toEqual({ available: before.available - amount, held: amount, receivable: 0n })

    // in a block, not solidified: still open
    bed.node.produce(1)
    await t.chain.withdrawals.advanceAll()
    expect((await t.chain.withdrawals.get(w.id))?.state).toBe('broadcast')
    bed.solidify()
    await t.chain.withdrawals.advanceAll()
    const listed = await (await t.api('/v1/account/withdrawals')).json() as { withdrawals: Array<{ id: string, state: string, txId: string, blockNumber: number }> }
    expect(listed.withdrawals.find(x => x.id === w.id)).toMatchObject({ state: 'confirmed', txId: w.txId, result: 'SUCCESS' })
    expect(await ledger.customerBalances(accountId)).toEqual({ available: before.available - amount, held: 0n, receivable: 0n })
    expect(await ledger.balance(WITHDRAWALS_LEDGER_ACCOUNT)).toBe(paidBefore + amount)
    expect(await transfersTo(wallet.address, start)).toEqual([{ txId: w.txId, amount }])
    expect(await ledger.trialBalance()).toBe(0n)
  })

  it('killed between signing and broadcast: a restart broadcasts the same transaction, one transfer lands', async () => {
    const start = await head()
    const before = await ledger.customerBalances(accountId)
    const dying = instance(withOverrides<ChainClient>(t.chain.client, { broadcast: async () => { throw new Error('killed before the broadcast') } }))
    const w = await dying.request(accountId, { address: wallet.address, amount: '3' })
    expect(w.state).toBe('signed')
    expect((await t.chain.client.transactionStatus(w.txId as string)).state).toBe('unknown')
    expect(await ledger.customerBalances(accountId)).toMatchObject({ available: before.available - 3n * BTT, held: 3n * BTT })

    const restarted = instance()
    await restarted.advanceAll()
    expect(await restarted.get(w.id)).toMatchObject({ state: 'broadcast', txId: w.txId, broadcasts: 1 })
    bed.solidify()
    await restarted.advanceAll()
    expect(await restarted.get(w.id)).toMatchObject({ state: 'confirmed', txId: w.txId })
    expect(await transfersTo(wallet.address, start)).toEqual([{ txId: w.txId, amount: 3n * BTT }])
    expect(await ledger.customerBalances(accountId)).toEqual({ available: before.available - 3n * BTT, held: 0n, receivable: 0n })
    expect(await ledger.trialBalance()).toBe(0n)
  })

  it('killed between broadcast and settlement: a restart settles it, broadcasting again harmlessly meanwhile', async () => {
    const start = await head()
    const before = await ledger.customerBalances(accountId)
    const dying = instance(withOverrides<ChainClient>(t.chain.client, {
      broadcast: async (transfer: SignedTransfer) => {
        await t.chain.client.broadcast(transfer)
        throw new Error('killed after the broadcast')
      }
    }))
    const w = await dying.request(accountId, { address: wallet.address, amount: '4' })
    expect(w.state).toBe('signed')
    expect((await t.chain.client.transactionStatus(w.txId as string)).state).toBe('pending')

    const restarted = instance()
    // in a block but not solidified: left as it is
    bed.node.produce(1)
    await restarted.advanceAll()
    expect((await restarted.get(w.id))?.state).toBe('signed')
    bed.solidify()
    await restarted.advanceAll()
    await instance().advanceAll()
    expect(await restarted.get(w.id)).toMatchObject({ state: 'confirmed', txId: w.txId })
    expect(await transfersTo(wallet.address, start)).toEqual([{ txId: w.txId, amount: 4n * BTT }])
    expect(await ledger.customerBalances(accountId)).toEqual({ available: before.available - 4n * BTT, held: 0n, receivable: 0n })
    expect(await ledger.trialBalance()).toBe(0n)
  })

  it('killed between signing and recording the signature: the unrecorded transaction is never sent, a new one is', async () => {
    const start = await head()
    const before = await ledger.customerBalances(accountId)
    let lost: SignedTransfer | undefined
    const dying = instance(withOverrides<ChainClient>(t.chain.client, {
      signTransfer: async (to, amount, options) => {
        lost = await t.chain.client.signTransfer(to, amount, options)
        throw new Error('killed before recording the signature')
      }
    }))
    const w = await dying.request(accountId, { address: wallet.address, amount: '5' })
    expect(w.state).toBe('held')
    expect(w.txId).toBeUndefined()

    const restarted = instance()
    await restarted.advanceAll()
    bed.solidify()
    await restarted.advanceAll()
    const done = await restarted.get(w.id)
    expect(done?.state).toBe('confirmed')
    expect(done?.txId).not.toBe(lost?.txId)
    expect((await t.chain.client.transactionStatus(lost?.txId as string)).state).toBe('unknown')
    expect(await transfersTo(wallet.address, start)).toEqual([{ txId: done?.txId, amount: 5n * BTT }])
    expect(await ledger.customerBalances(accountId)).toEqual({ available: before.available - 5n * BTT, held: 0n, receivable: 0n })
    expect(await ledger.trialBalance()).toBe(0n)
  })

  it('a transaction that never lands is voided only once chain time is past its expiration', async () => {
    const start = await head()
    const before = await ledger.customerBalances(accountId)
    const silent = withOverrides<ChainClient>(t.chain.client, { broadcast: async () => { throw new Error('the node is unreachable') } })
    const w = await instance(silent).request(accountId, { address: wallet.address, amount: '6' })
    expect(w.state).toBe('signed')
    const expiration = (w.expiration as Date).getTime()
    const stuck = instance(silent)
    // until chain time passes expiration + margin, it is kept open (and tried again)
    while ((await t.chain.client.head()).timestamp < expiration + EXPIRY_MARGIN_MS - bed.node.intervalMs) bed.node.produce(1)
    await stuck.advanceAll()
    expect((await stuck.get(w.id))?.state).toBe('signed')
    expect((await ledger.customerBalances(accountId)).held).toBe(6n * BTT)
    bed.node.produce(2)
    await stuck.advanceAll()
    expect(await stuck.get(w.id)).toMatchObject({ state: 'expired', txId: w.txId })
    expect(await ledger.customerBalances(accountId)).toEqual(before)
    // too late for it now: a node refuses it, and it moved nothing
    await expect(t.chain.client.broadcast({ txId: w.txId as string, raw: (await store.db.selectFrom('chain_withdrawals').select('signed_tx').where('id', '=', w.id).executeTakeFirstOrThrow()).signed_tx as string, expiration }))
      .rejects.toMatchObject({ nodeCode: 'TRANSACTION_EXPIRATION_ERROR' })
    expect(await transfersTo(wallet.address, start)).toEqual([])
    expect(await ledger.trialBalance()).toBe(0n)
  })

  it('a transfer that reverts on chain voids the hold', async () => {
    const start = await head()
    const before = await ledger.customerBalances(accountId)
    const held = instance(withOverrides<ChainClient>(t.chain.client, { broadcast: async () => { throw new Error('killed before the broadcast') } }))
    const w = await held.request(accountId, { address: wallet.address, amount: '7' })
    // meanwhile the hot wallet is emptied (by its key, elsewhere): the transfer will revert
    const hot: UserWallet = { address: bed.hotAddress, privateKey: bed.hotKey, tronWeb: new TronWeb({ fullHost: bed.node.url, privateKey: bed.hotKey }) }
    const balance = await t.chain.client.tokenBalance(bed.hotAddress)
    const sink = bed.wallet(0n).address
    await sendToken(hot, bed.btt, sink, balance)
    bed.solidify()
    const restarted = instance()
    await restarted.advanceAll()
    bed.solidify()
    await restarted.advanceAll()
    expect(await restarted.get(w.id)).toMatchObject({ state: 'failed', txId: w.txId, result: 'REVERT' })
    expect(await ledger.customerBalances(accountId)).toEqual(before)
    expect(await transfersTo(wallet.address, start)).toEqual([])
    expect(await ledger.trialBalance()).toBe(0n)
    // the float back, for the tests after this one
    bed.node.fund(bed.hotAddress, balance, bed.btt)
    bed.solidify()
  })

  it('refuses bad input with a clear problem and no ledger change', async () => {
    const rival = await createAccount(t.atlas.metadata, 'rival')
    const rivalWallet = bed.wallet(0n)
    bed.solidify()
    expect((await linkWallet(async (p, i = {}) => await t.api(p, { ...i, auth: rival.token }), rivalWallet)).status).toBe(201)
    const snapshot = async (): Promise<unknown> => ({
      balances: await ledger.customerBalances(accountId),
      entries: (await ledger.entries(accountId, { limit: 1000 })).entries.length,
      withdrawals: (await t.chain.withdrawals.list(accountId)).length,
      trial: await ledger.trialBalance()
    })
    const before = await snapshot()
    const { available } = await ledger.customerBalances(accountId)
    const post = async (body: unknown): Promise<{ status: number, code: string, detail: string, balance?: string, required?: string }> =>
      await (await t.api('/v1/account/withdrawals', { method: 'POST', headers: json, body: JSON.stringify(body) })).json() as never
    const unlinked = bed.wallet(0n).address

    expect(await post({ address: 'TnotAnAddress', amount: '1' })).toMatchObject({ status: 400, code: 'InvalidArgument' })
    expect(await post({ address: wallet.address.toLowerCase(), amount: '1' })).toMatchObject({ status: 400, code: 'InvalidArgument' })
    expect(await post({ address: unlinked, amount: '1' })).toMatchObject({ status: 409, code: 'Conflict' })
    expect(await post({ address: rivalWallet.address, amount: '1' })).toMatchObject({ status: 409, code: 'Conflict' })
    const tooMuch = await post({ address: wallet.address, amount: String(available / BTT + 1n) })
    expect(tooMuch).toMatchObject({ status: 402, code: 'InsufficientFunds', balance: available.toString() })
    expect(tooMuch.detail).toMatch(/available/)
    expect(await post({ address: wallet.address, amount: '-1' })).toMatchObject({ status: 400, code: 'InvalidAmount' })
    const subUnit = await post({ address: wallet.address, amount: '1.0000000000000000001' })
    expect(subUnit).toMatchObject({ status: 400, code: 'InvalidAmount' })
    expect(subUnit.detail).toMatch(/decimals/)
    expect(await post({ address: wallet.address, amount: 1 })).toMatchObject({ status: 400, code: 'InvalidAmount' })
    expect(await post({ address: wallet.address, amount: '0' })).toMatchObject({ status: 400, code: 'InvalidAmount' })
    expect(await post({ address: wallet.address, amount: '1e3' })).toMatchObject({ status: 400, code: 'InvalidAmount' })
    expect(await post({ address: wallet.address, amount: '0.5' })).toMatchObject({ status: 400, code: 'InvalidAmount' })
    expect(await post({ address: wallet.address, amount: '1000001' })).toMatchObject({ status: 400, code: 'InvalidAmount' })
    expect(await post({ address: wallet.address })).toMatchObject({ status: 400, code: 'InvalidAmount' })
    // the day's limit: what was withdrawn today counts
    const strict = instance(t.chain.client, { min: BTT, max: 1000n * BTT, maxPerDay: 40n * BTT })
    await expect(strict.request(accountId, { address: wallet.address, amount: '20' })).rejects.toMatchObject({ code: 'Conflict', details: { limit: (40n * BTT).toString() } })
    expect(await snapshot()).toEqual(before)
  })
})

/**
 * A proxy in front of the node that can hold broadcasts: the server, which records the signed
 * transaction before broadcasting it, is then caught between the two.
 */
async function startHoldingProxy (target: string): Promise<{ url: string, hold: boolean, held: Array<{ txID: string }>, onHeld?: () => void, close(): Promise<void> }> {
  const state = { hold: false, held: [] as Array<{ txID: string }>, onHeld: undefined as (() => void) | undefined }
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      if (state.hold && req.url?.startsWith('/wallet/broadcasttransaction') === true) {
        state.held.push(JSON.parse(body.toString('utf8')) as { txID: string })
        state.onHeld?.()
        return // never answered: the caller waits until it dies
      }
      fetch(`${target}${req.url ?? '/'}`, { method: req.method, headers: { 'content-type': 'application/json' }, ...(req.method === 'GET' || req.method === 'HEAD' ? {} : { body }) })
        .then(async (reply) => {
          const text = Buffer.from(await reply.arrayBuffer())
          res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': text.byteLength })
          res.end(text)
        }, () => { res.destroy() })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  })
}

describe('BTT withdrawals: atlas serve killed with kill -9', () => {
  let bed: ChainTestbed | undefined
  let server: ServerProcess | undefined
  let proxy: Awaited<ReturnType<typeof startHoldingProxy>> | undefined
  let dataDir: string | undefined

  afterAll(async () => {
    await server?.kill('SIGKILL')
    await proxy?.close()
    await bed?.close()
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  })

  /** The ledger, read from the data dir while no server runs on it */
  async function withLedger<T> (fn: (store: KyselyMetadataStore, ledger: KyselyLedger) => Promise<T>): Promise<T> {
    return await withDataDirLedger(dataDir as string, fn)
  }

  async function until<T> (what: string, fn: () => Promise<T | undefined>): Promise<T> {
    for (let i = 0; i < 400; i++) {
      const value = await fn()
      if (value !== undefined) return value
      await new Promise(resolve => setTimeout(resolve, 25))
    }
    throw new Error(`timed out waiting for ${what}: ${server?.output() ?? ''}`)
  }

  it('between signing and broadcast, and between broadcast and settlement: one transfer each, a balanced ledger', async () => {
    const testbed = await startChainTestbed()
    bed = testbed
    const holding = await startHoldingProxy(testbed.node.url)
    proxy = holding
    dataDir = await mkdtemp(join(tmpdir(), 'atlas-withdraw-crash-'))
    const env = {
      ATLAS_DATA_DIR: dataDir,
      ATLAS_IPFS_OFFLINE: 'true',
      ATLAS_BT_ENABLED: 'false',
      ATLAS_BILLING_ENABLED: 'true',
      ATLAS_CHAIN: 'tron',
      ATLAS_TRON_FULL_HOST: holding.url,
      ATLAS_BTT_CONTRACT: testbed.btt,
      ATLAS_TRON_KEY_FILE: testbed.keyFile,
      ATLAS_CHAIN_START_BLOCK: '0',
      ATLAS_CHAIN_SCAN_INTERVAL_SECONDS: '0.05'
    }
    const account = await atlasJson(['accounts', 'create', '--name', 'killed'], env) as { id: string, token: string }
    await atlasJson(['accounts', 'credit', account.id, '100', '--reason', 'funds for the kill test'], env)
    // the hot wallet's float, from the faucet
    testbed.node.fund(testbed.hotAddress, 1000n * BTT, testbed.btt)
    const user = testbed.wallet(0n)
    testbed.solidify()
    const start = testbed.node.headNumber

    server = await startServerProcess(env)
    const api = async (path: string, init: RequestInit = {}): Promise<Response> => await fetch(`${(server as ServerProcess).url}${path}`, { ...init, headers: { ...init.headers as Record<string, string>, authorization: `Bearer ${account.token}` } })
    expect((await linkWallet(api, user)).status).toBe(201)
    const withdraw = async (amount: string): Promise<Response> => await api('/v1/account/withdrawals', { method: 'POST', headers: json, body: JSON.stringify({ address: user.address, amount }) })

    // 1. caught between signing and broadcast: the broadcast is held, the process killed
    holding.hold = true
    const heldOne = new Promise<void>((resolve) => { holding.onHeld = resolve })
    const pending = withdraw('10').catch(() => undefined)
    await heldOne
    await (server as ServerProcess).kill('SIGKILL')
    expect(await pending).toBeUndefined()
    const firstTx = holding.held[0]?.txID as string
    expect((await withLedger(async (store) => await store.db.selectFrom('chain_withdrawals').select(['state', 'tx_id']).execute()))).toEqual([{ state: 'signed', tx_id: firstTx }])
    expect(testbed.node.pendingCount).toBe(0)

    // 2. restarted: the same transaction goes out; caught again after a second broadcast, before settlement
    holding.hold = false
    server = await startServerProcess(env)
    await until('the first withdrawal to be broadcast', async () => testbed.node.pendingCount > 0 ? true : undefined)
    const second = await withdraw('20')
    expect(second.status).toBe(202)
    const secondTx = (await second.json() as { txId: string }).txId
    expect(testbed.node.pendingCount).toBe(2)
    await (server as ServerProcess).kill('SIGKILL')
    testbed.solidify()

    // 3. restarted: both settle
    server = await startServerProcess(env)
    await until('both withdrawals to settle', async () => {
      const { withdrawals } = await (await api('/v1/account/withdrawals')).json() as { withdrawals: Array<{ state: string }> }
      return withdrawals.every(w => w.state === 'confirmed') ? withdrawals : undefined
    })
    await (server as ServerProcess).kill('SIGTERM')
    server = undefined

    testbed.solidify()
    const chain = new (await import('../../src/billing/chain/tronweb-chain.ts')).TronwebChain({ fullHost: testbed.node.url, tokenContract: testbed.btt, privateKey: testbed.hotKey })
    const landed = await chain.transfersTo(user.address, start, (await chain.solidifiedHead()).number)
    expect(landed.map(x => [x.txId, x.amount]).sort()).toEqual([[firstTx, 10n * BTT], [secondTx, 20n * BTT]].sort())
    expect(await chain.tokenBalance(user.address)).toBe(30n * BTT)
    await withLedger(async (store, ledger) => {
      const rows = await store.db.selectFrom('chain_withdrawals').select(['state', 'tx_id']).orderBy('id').execute()
      expect(rows).toEqual([{ state: 'confirmed', tx_id: firstTx }, { state: 'confirmed', tx_id: secondTx }])
      expect(await ledger.customerBalances(account.id)).toEqual({ available: 70n * BTT, held: 0n, receivable: 0n })
      expect(await ledger.balance(WITHDRAWALS_LEDGER_ACCOUNT)).toBe(30n * BTT)
      expect(await ledger.trialBalance()).toBe(0n)
    })
  })
})
