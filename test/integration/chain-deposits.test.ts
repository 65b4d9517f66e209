/**
 * Deposits end to end, all through tronweb against the dev TRON node (issue #6, "Done means"):
 * a wallet is linked by a signature made with tronweb's signMessageV2, BTT is sent from it with
 * tronweb (contract().transfer().send()), and the account is credited exactly once, only after
 * the block is solidified. Transfers that must credit nothing (reverted, another token, another
 * recipient, a replayed broadcast) credit nothing; a watcher killed mid-scan and restarted
 * credits nothing twice and misses nothing.
 */
import { TronWeb } from 'tronweb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAccount } from '../../src/accounts/credentials.ts'
import { UNITS_PER_BTT } from '../../src/billing/amount.ts'
import type { ChainClient } from '../../src/billing/chain/chain.ts'
import { DepositWatcher } from '../../src/billing/chain/deposits.ts'
import { CHALLENGE_TTL_MS, Wallets } from '../../src/billing/chain/wallets.ts'
import { KyselyLedger } from '../../src/billing/kysely-ledger.ts'
import { LedgerAccounts, type Ledger } from '../../src/billing/ledger.ts'
import { KyselyMetadataStore } from '../../src/metadata/kysely-store.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { linkWallet, quietLogger, sendToken, startChainAtlas, startChainTestbed, withOverrides, type ChainTestbed, type UserWallet } from '../fixtures/chain.ts'
import { atlasJson } from '../fixtures/server-process.ts'

const BTT = UNITS_PER_BTT

describe('BTT deposits through tronweb against the dev TRON node', () => {
  let bed: ChainTestbed
  let t: Awaited<ReturnType<typeof startChainAtlas>>
  let store: KyselyMetadataStore
  let ledger: Ledger
  let deposit: string

  beforeAll(async () => {
    bed = await startChainTestbed()
    t = await startChainAtlas(bed)
    if (!(t.atlas.metadata instanceof KyselyMetadataStore)) throw new Error('expected the SQL store')
    store = t.atlas.metadata
    ledger = t.atlas.billing?.ledger as Ledger
    deposit = t.chain.client.depositAddress
  })
  afterAll(async () => {
    await t?.stop()
    await bed?.close()
  })

  /** A new account and a fetch that carries its token */
  async function newAccount (name: string): Promise<{ id: string, api: TestAtlas['api'] }> {
    const account = await createAccount(t.atlas.metadata, name)
    return { id: account.id, api: async (path, init = {}) => await t.api(path, { ...init, auth: account.token }) }
  }

  async function available (accountId: string): Promise<bigint> {
    return (await ledger.customerBalances(accountId)).available
  }

  async function depositTransactions (accountId: string): Promise<Array<{ key: string, chainTx: string | undefined }>> {
    const page = await ledger.entries(accountId, { limit: 1000 })
    return page.entries.filter(e => e.kind === 'deposit').map(e => ({ key: e.idempotencyKey, chainTx: e.cause.chainTx }))
  }

  async function linkedWallet (api: TestAtlas['api'], btt = 1000n): Promise<UserWallet> {
    const wallet = bed.wallet(btt)
    bed.solidify()
    const res = await linkWallet(api, wallet)
    expect(res.status).toBe(201)
    return wallet
  }

  it('links a wallet by signature and credits a tronweb transfer from it once, only after solidification', async () => {
    const { id, api } = await newAccount('depositor')
    const wallet = await linkedWallet(api)
    const listed = await (await api('/v1/account/wallets')).json() as { depositAddress: string, wallets: Array<{ address: string }> }
    expect(listed.depositAddress).toBe(deposit)
    expect(listed.wallets.map(w => w.address)).toEqual([wallet.address])

    const txid = await sendToken(wallet, bed.btt, deposit, 25n * BTT)
    // pending, then in a block that is not solidified yet: nothing credited, nothing listed
    await t.chain.deposits.scan()
    bed.node.produce(1)
    expect((await t.chain.client.transactionStatus(txid)).state).toBe('pending')
    await t.chain.deposits.scan()
    expect(await available(id)).toBe(0n)
    expect((await (await api('/v1/account/deposits')).json() as { deposits: unknown[] }).deposits).toEqual([])

    bed.solidify()
    expect((await t.chain.client.transactionStatus(txid)).state).toBe('confirmed')
    await t.chain.deposits.scan()
    expect(await available(id)).toBe(25n * BTT)
    const { deposits } = await (await api('/v1/account/deposits')).json() as { deposits: Array<Record<string, unknown>> }
    expect(deposits).toMatchObject([{ txId: txid, logIndex: 0, from: wallet.address, amount: { units: (25n * BTT).toString(), btt: '25' }, state: 'credited' }])

    // scanning again, and another watcher over the same database, credit nothing more
    await t.chain.deposits.scan()
    await t.chain.deposits.creditPending()
    await new DepositWatcher({ db: store.db, dialect: store.dialect, chain: t.chain.client, ledger, mode: 'tron', startBlock: 0, logger: quietLogger }).scan()
    expect(await available(id)).toBe(25n * BTT)
    expect(await depositTransactions(id)).toEqual([{ key: `deposit:${txid}:0`, chainTx: txid }])
    const account = await (await api('/v1/account')).json() as { balance: { available: { btt: string } } }
    expect(account.balance.available.btt).toBe('25')
    expect(await ledger.trialBalance()).toBe(0n)
  })

  it('credits nothing for a reverted transfer, another token, another recipient or a replayed broadcast', async () => {
    const { id, api } = await newAccount('careful')
    const wallet = await linkedWallet(api, 10n)
    bed.node.fund(wallet.address, 500n * BTT, bed.other)
    bed.solidify()
    const start = (await t.chain.client.head()).number

    // beyond the wallet's balance: lands on chain as a REVERT
    const reverted = await sendToken(wallet, bed.btt, deposit, 11n * BTT)
    // another TRC-20 to the deposit address
    const otherToken = await sendToken(wallet, bed.other, deposit, 300n * BTT)
    // BTT to someone else
    const elsewhere = await sendToken(wallet, bed.btt, bed.wallet(0n).address, 1n * BTT)
    // one real deposit, broadcast twice: before and after it landed
    const { transaction } = await wallet.tronWeb.transactionBuilder.triggerSmartContract(bed.btt, 'transfer(address,uint256)', { feeLimit: 100_000_000 },
      [{ type: 'address', value: deposit }, { type: 'uint256', value: (2n * BTT).toString() }], wallet.address)
    const signed = await wallet.tronWeb.trx.sign(transaction, wallet.privateKey)
    expect(await wallet.tronWeb.trx.sendRawTransaction(signed)).toMatchObject({ result: true })
    bed.node.produce(1)
    const replay = await wallet.tronWeb.trx.sendRawTransaction(signed) as unknown as { code?: string }
    expect(replay.code).toBe('DUP_TRANSACTION_ERROR')
    bed.solidify()
    expect(await wallet.tronWeb.trx.sendRawTransaction(signed)).toMatchObject({ code: 'DUP_TRANSACTION_ERROR' })
    bed.solidify()

    expect(await t.chain.client.transactionStatus(reverted)).toMatchObject({ state: 'failed', result: 'REVERT' })
    expect((await t.chain.client.transactionStatus(otherToken)).state).toBe('confirmed')
    expect((await t.chain.client.transactionStatus(elsewhere)).state).toBe('confirmed')
    await t.chain.deposits.scan()
    await t.chain.deposits.scan()
    expect(await available(id)).toBe(2n * BTT)
    expect(await depositTransactions(id)).toEqual([{ key: `deposit:${signed.txID}:0`, chainTx: signed.txID }])
    // none of the others was even recorded
    const rows = await store.db.selectFrom('chain_deposits').select('tx_id').where('block_number', '>', start).execute()
    expect(rows.map(r => r.tx_id)).toEqual([signed.txID])
  })

  it('records a deposit from an unknown sender unattributed and credits it when the sender links the wallet', async () => {
    const { id, api } = await newAccount('latecomer')
    const wallet = bed.wallet(100n)
    bed.solidify()
    const txid = await sendToken(wallet, bed.btt, deposit, 40n * BTT)
    bed.solidify()
    await t.chain.deposits.scan()
    const waiting = await t.chain.deposits.unattributed()
    expect(waiting.filter(d => d.txId === txid)).toMatchObject([{ from: wallet.address, amount: 40n * BTT, state: 'solidified' }])
    expect(await available(id)).toBe(0n)

    expect((await linkWallet(api, wallet)).status).toBe(201)
    expect(await available(id)).toBe(40n * BTT)
    expect((await t.chain.deposits.unattributed()).filter(d => d.txId === txid)).toEqual([])
    const { deposits } = await (await api('/v1/account/deposits')).json() as { deposits: Array<{ txId: string, state: string }> }
    expect(deposits).toMatchObject([{ txId: txid, state: 'credited' }])
    await t.chain.deposits.scan()
    expect(await depositTransactions(id)).toHaveLength(1)
  })

  it('a deposit pays what a dry account owes first', async () => {
    const { id, api } = await newAccount('dry')
    const wallet = await linkedWallet(api)
    await ledger.post({
      idempotencyKey: `test-owed:${id}`,
      kind: 'storage',
      cause: { reason: 'storage the balance could not pay' },
      postings: [{ account: LedgerAccounts.revenue.storage, amount: 3n * BTT }, { account: LedgerAccounts.receivable(id), amount: -3n * BTT }]
    })
    await sendToken(wallet, bed.btt, deposit, 10n * BTT)
    bed.solidify()
    await t.chain.deposits.scan()
    expect(await ledger.customerBalances(id)).toEqual({ available: 7n * BTT, held: 0n, receivable: 0n })
  })

  it('a watcher killed mid-scan, and again mid-credit, then restarted, credits nothing twice and misses nothing', async () => {
    const { id, api } = await newAccount('patient')
    const wallets = [await linkedWallet(api), await linkedWallet(api)]
    await t.chain.deposits.scan()
    const amounts = [1n, 2n, 3n, 5n, 8n, 13n, 21n].map(n => n * BTT)
    const txids: string[] = []
    for (const [i, amount] of amounts.entries()) {
      txids.push(await sendToken(wallets[i % 2] as UserWallet, bed.btt, deposit, amount))
      bed.node.produce(1)
    }
    bed.solidify()
    const cursorBefore = (await t.chain.deposits.cursor())?.nextBlock as number
    const solid = (await t.chain.client.solidifiedHead()).number
    expect(solid - cursorBefore).toBeGreaterThan(6)

    // killed on its third batch of two blocks: two batches are recorded, with the cursor
    let calls = 0
    const dyingChain = withOverrides<ChainClient>(t.chain.client, {
      transfersTo: async (to, from, until, options) => {
        if (++calls === 3) throw new Error('killed mid-scan')
        return await t.chain.client.transfersTo(to, from, until, options)
      }
    })
    const watcher = (chain: ChainClient, ledgerOf: Ledger): DepositWatcher => new DepositWatcher({ db: store.db, dialect: store.dialect, chain, ledger: ledgerOf, mode: 'tron', batchBlocks: 2, logger: quietLogger })
    await expect(watcher(dyingChain, ledger).scan()).rejects.toThrow('killed mid-scan')
    expect((await t.chain.deposits.cursor())?.nextBlock).toBe(cursorBefore + 4)
    const recorded = await store.db.selectFrom('chain_deposits').select(['tx_id', 'state']).where('account_id', '=', id).execute()
    expect(recorded.length).toBeGreaterThan(0)
    expect(recorded.length).toBeLessThan(amounts.length)
    expect(recorded.every(r => r.state === 'solidified')).toBe(true)
    expect(await available(id)).toBe(0n)

    // restarted, killed after its second credit reached the ledger but before the deposit row said so
    let posted = 0
    const dyingLedger = withOverrides<Ledger>(ledger as KyselyLedger, {
      post: async (input) => {
        const tx = await ledger.post(input)
        if (input.kind === 'deposit' && ++posted === 2) throw new Error('killed mid-credit')
        return tx
      }
    })
    await expect(watcher(t.chain.client, dyingLedger).scan()).rejects.toThrow('killed mid-credit')
    expect(await available(id)).toBe(amounts[0] as bigint + (amounts[1] as bigint))

    // restarted again, whole: everything once
    await watcher(t.chain.client, ledger).scan()
    const total = amounts.reduce((a, b) => a + b, 0n)
    expect(await available(id)).toBe(total)
    const credited = await depositTransactions(id)
    expect(credited.map(c => c.chainTx).sort()).toEqual([...txids].sort())
    const rows = await store.db.selectFrom('chain_deposits').select(['tx_id', 'state']).where('account_id', '=', id).execute()
    expect(rows.map(r => r.tx_id).sort()).toEqual([...txids].sort())
    expect(rows.every(r => r.state === 'credited')).toBe(true)
    expect((await t.chain.deposits.cursor())?.nextBlock).toBe(solid + 1)
    expect(await ledger.trialBalance()).toBe(0n)
  })

  it('refuses a bad link: another key\'s signature, a malformed address or signature, no challenge, a used or expired one, a wallet of another account', async () => {
    const { id, api } = await newAccount('linker')
    const json = { 'content-type': 'application/json' }
    const post = async (body: unknown): Promise<Response> => await api('/v1/account/wallets', { method: 'POST', headers: json, body: JSON.stringify(body) })
    const problem = async (res: Response): Promise<{ status: number, code: string, detail: string }> => await res.json() as { status: number, code: string, detail: string }
    const mine = bed.wallet(0n)
    const stranger = bed.wallet(0n)

    // no challenge asked for yet
    const signed = await mine.tronWeb.trx.signMessageV2('anything', mine.privateKey)
    expect(await problem(await post({ address: mine.address, signature: signed }))).toMatchObject({ status: 400, code: 'InvalidArgument' })

    const { message, nonce } = await (await api('/v1/account/wallets/challenge')).json() as { message: string, nonce: string, expiresAt: string }
    expect(message).toContain('Atlas')
    expect(message).toContain(id)
    expect(message).toContain(nonce)
    // the right message, signed by another key
    const byStranger = await stranger.tronWeb.trx.signMessageV2(message, stranger.privateKey)
    const wrongKey = await problem(await post({ address: mine.address, signature: byStranger }))
    expect(wrongKey).toMatchObject({ status: 400, code: 'InvalidSignature' })
    expect(wrongKey.detail).toContain(stranger.address)
    // malformed input
    expect(await problem(await post({ address: 'TnotAnAddress', signature: byStranger }))).toMatchObject({ status: 400, code: 'InvalidArgument' })
    expect(await problem(await post({ address: `${mine.address.slice(0, -1)}${mine.address.endsWith('a') ? 'b' : 'a'}`, signature: byStranger }))).toMatchObject({ status: 400, code: 'InvalidArgument' })
    expect(await problem(await post({ address: mine.address, signature: '0x1234' }))).toMatchObject({ status: 400, code: 'InvalidArgument' })
    expect(await problem(await post({ address: mine.address }))).toMatchObject({ status: 400, code: 'InvalidArgument' })
    expect(await problem(await api('/v1/account/wallets', { method: 'POST', headers: json, body: '[]' }))).toMatchObject({ status: 400 })
    expect((await (await api('/v1/account/wallets')).json() as { wallets: unknown[] }).wallets).toEqual([])

    // the right key: linked; the challenge is used up
    const good = await mine.tronWeb.trx.signMessageV2(message, mine.privateKey)
    expect((await post({ address: mine.address, signature: good, nonce })).status).toBe(201)
    // single use: the same signature again is refused; a new challenge links it again harmlessly
    expect(await problem(await post({ address: mine.address, signature: good, nonce }))).toMatchObject({ status: 400, code: 'InvalidArgument' })
    expect((await linkWallet(api, mine)).status).toBe(200)
    const other = bed.wallet(0n)
    const reuse = await other.tronWeb.trx.signMessageV2(message, other.privateKey)
    expect(await problem(await post({ address: other.address, signature: reuse }))).toMatchObject({ status: 400, code: 'InvalidArgument' })

    // another account cannot take it
    const rival = await newAccount('rival')
    const res = await linkWallet(rival.api, mine)
    expect(await problem(res)).toMatchObject({ status: 409, code: 'Conflict' })
    expect((await (await rival.api('/v1/account/wallets')).json() as { wallets: unknown[] }).wallets).toEqual([])

    // an expired challenge: the same link, checked eleven minutes later
    const late = new Wallets({ db: store.db, chain: t.chain.client, now: () => Date.now() + CHALLENGE_TTL_MS + 60_000 })
    const fresh = await (await api('/v1/account/wallets/challenge')).json() as { message: string }
    await expect(late.link(id, { address: other.address, signature: await other.tronWeb.trx.signMessageV2(fresh.message, other.privateKey) }))
      .rejects.toMatchObject({ code: 'InvalidArgument' })
    expect((await (await api('/v1/account/wallets')).json() as { wallets: Array<{ address: string }> }).wallets.map(w => w.address)).toEqual([mine.address])
  })
})

describe('the development flow: atlas serve\'s own dev chain, driven by the atlas dev commands', () => {
  let t: TestAtlas | undefined

  afterAll(async () => { await t?.stop() })

  it('dev wallet, a link by signature, dev deposit, the credit, chain status, a withdrawal', async () => {
    // dev mode is the default; quick blocks so that the test does not wait a minute per block
    t = await startTestAtlas({ config: { billing: { enabled: true }, bittorrent: { enabled: false }, chain: { scanIntervalSeconds: 0.05, dev: { blockIntervalMs: 100, solidityLag: 2 } } } })
    const atlas = t
    expect(atlas.atlas.chain?.mode).toBe('dev')
    const env = { ATLAS_DATA_DIR: atlas.dataDir }
    const until = async <T>(what: string, fn: () => Promise<T | undefined>): Promise<T> => {
      for (let i = 0; i < 600; i++) {
        const value = await fn()
        if (value !== undefined) return value
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      throw new Error(`timed out waiting for ${what}`)
    }

    const wallet = await atlasJson(['dev', 'wallet', '--amount', '300'], env) as { address: string, privateKey: string, funded: { btt: string } }
    expect(wallet.funded.btt).toBe('300')
    const tronWeb = new TronWeb({ fullHost: atlas.atlas.chain?.fullHost as string, privateKey: wallet.privateKey })
    expect((await linkWallet(atlas.api, { address: wallet.address, privateKey: wallet.privateKey, tronWeb })).status).toBe(201)
    // the faucet's transfer must be in a block before the wallet can spend it
    await until('the dev wallet to be funded', async () => (await atlas.atlas.chain?.client.tokenBalance(wallet.address) ?? 0n) > 0n ? true : undefined)
    const sent = await atlasJson(['dev', 'deposit', '--key', wallet.privateKey, '--amount', '120.5'], env) as { txId: string, to: string }
    expect(sent.to).toBe(atlas.atlas.chain?.client.depositAddress)
    const credited = await until('the deposit to be credited', async () => {
      const { deposits } = await (await atlas.api('/v1/account/deposits')).json() as { deposits: Array<{ txId: string, state: string }> }
      return deposits.find(d => d.txId === sent.txId && d.state === 'credited')
    })
    expect(credited).toBeDefined()
    const account = await (await atlas.api('/v1/account')).json() as { balance: { available: { btt: string } } }
    expect(account.balance.available.btt).toBe('120.5')

    const status = await atlasJson(['chain', 'status'], env) as { mode: string, depositAddress: string, hotWalletBalance: { btt: string }, cursor: number, solidifiedHead: number }
    expect(status).toMatchObject({ mode: 'dev', depositAddress: sent.to, hotWalletBalance: { btt: '120.5' } })
    expect(status.cursor).toBeGreaterThan(0)

    const res = await atlas.api('/v1/account/withdrawals', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ address: wallet.address, amount: '20' }) })
    expect(res.status).toBe(202)
    await until('the withdrawal to be confirmed', async () => {
      const { withdrawals } = await (await atlas.api('/v1/account/withdrawals')).json() as { withdrawals: Array<{ state: string }> }
      return withdrawals[0]?.state === 'confirmed' ? true : undefined
    })
    expect(((await (await atlas.api('/v1/account')).json()) as { balance: { available: { btt: string } } }).balance.available.btt).toBe('100.5')
  })
})
