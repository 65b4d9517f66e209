/**
 * A server killed mid-download (kill -9) charges the bytes the client received, to within one
 * checkpoint of the hold, and releases the rest of the hold when it starts again (issue #5,
 * "Done means"). The download runs in the slow lane so that it is still under way when the
 * process dies.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { get } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createAccount, type CreatedAccount } from '../../src/accounts/credentials.ts'
import { UNITS_PER_BTT } from '../../src/billing/amount.ts'
import { Billing, CHECKPOINT_BYTES } from '../../src/billing/billing.ts'
import { Pricing } from '../../src/billing/pricing.ts'
import { loadConfig } from '../../src/config.ts'
import { quietLogger, withLedger } from '../fixtures/ledger.ts'
import { startServerProcess, type ServerProcess } from '../fixtures/server-process.ts'

const MiB = 1024 * 1024
const OBJECT_SIZE = 64 * MiB
const SLOW_LANE_BPS = 8 * MiB
/** The process is killed once the client has this much of the object */
const KILL_AFTER = 24 * MiB
const CREDIT = 1000n * UNITS_PER_BTT

describe('billing: a server killed mid-download', () => {
  let dataDir: string | undefined
  let server: ServerProcess | undefined

  afterAll(async () => {
    await server?.kill('SIGKILL')
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  })

  it('charges what the client received (within one checkpoint) and releases the rest after restart', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'atlas-billing-crash-'))
    const env = {
      ATLAS_DATA_DIR: dataDir,
      ATLAS_IPFS_OFFLINE: 'true',
      ATLAS_BT_ENABLED: 'false',
      ATLAS_BILLING_ENABLED: 'true',
      ATLAS_LANE_SLOW_BPS: String(SLOW_LANE_BPS),
      // free storage: no storage period can move the balance while the test runs
      ATLAS_PRICE_STORAGE_IPFS: '0',
      ATLAS_PRICE_STORAGE_BITTORRENT: '0'
    }
    const dir = dataDir
    // an account with funds, before the server starts
    const account: CreatedAccount = await withLedger(dir, async (store, ledger) => {
      const created = await createAccount(store, 'crash')
      const billing = new Billing({ ledger, db: store.db, config: loadConfig({ env: {} }).billing, owner: 'test-admin', logger: quietLogger })
      await billing.credit(created.id, CREDIT, 'funds for the crash test')
      return created
    })
    const auth = { authorization: `Bearer ${account.token}` }

    server = await startServerProcess(env)
    expect((await fetch(`${server.url}/v1/buckets/crash`, { method: 'PUT', headers: auth })).status).toBe(201)
    const body = randomBytes(OBJECT_SIZE)
    expect((await fetch(`${server.url}/v1/buckets/crash/objects/large.bin`, { method: 'PUT', headers: auth, body })).status).toBe(200)

    // the download, in the slow lane; node:http hands over every byte that reached the socket
    // before the connection broke (fetch would drop what it had queued)
    const running = server
    let received = 0
    let corrupt = false
    let killed: Promise<void> | undefined
    const ended = await new Promise<string>((resolve, reject) => {
      const request = get(`${running.url}/v1/buckets/crash/objects/large.bin`, { headers: { ...auth, 'x-atlas-lane': 'slow' } }, (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`GET answered ${res.statusCode}`))
          return
        }
        expect(res.headers['content-length']).toBe(String(OBJECT_SIZE))
        res.on('data', (chunk: Buffer) => {
          if (!chunk.equals(body.subarray(received, received + chunk.byteLength))) corrupt = true
          received += chunk.byteLength
          if (received >= KILL_AFTER && killed === undefined) killed = running.kill('SIGKILL')
        })
        res.on('aborted', () => { resolve('aborted') })
        res.on('error', () => { resolve('error') })
        res.on('end', () => { resolve('end') })
      })
      request.on('error', reject)
    })
    await killed
    // the response broke off with the process, part of the way through
    expect(ended).not.toBe('end')
    expect(corrupt).toBe(false)
    expect(received).toBeGreaterThanOrEqual(KILL_AFTER)
    expect(received).toBeLessThan(OBJECT_SIZE)

    const pricing = new Pricing(loadConfig({ env }).billing)
    const fullHold = pricing.egressCost(BigInt(OBJECT_SIZE), 'slow')
    // dead: the hold is still pending, at its last checkpoint, the whole response still held
    const holdId = await withLedger(dir, async (store, ledger) => {
      const rows = await store.db.selectFrom('ledger_holds').select(['id', 'lane']).where('customer_id', '=', account.id).execute()
      expect(rows).toHaveLength(1)
      const hold = await ledger.hold(rows[0]?.id as string)
      expect(hold).toMatchObject({ status: 'pending', amount: fullHold })
      expect(rows[0]?.lane).toBe('slow')
      expect((await ledger.customerBalances(account.id)).held).toBe(fullHold)
      return rows[0]?.id as string
    })

    // the restart settles it
    server = await startServerProcess(env)
    await server.kill('SIGTERM')
    expect(server.child.exitCode).toBe(0)
    await withLedger(dir, async (_store, ledger) => {
      const hold = await ledger.hold(holdId)
      if (hold === null) throw new Error('the hold is gone')
      expect(hold.status).toBe('settled')
      // charged for what was sent up to the last checkpoint: within one checkpoint of what the
      // client received, either way (bytes still in socket buffers had left the server)
      expect(Math.abs(hold.bytes - received)).toBeLessThanOrEqual(CHECKPOINT_BYTES)
      expect(hold.used).toBe(pricing.egressCost(BigInt(hold.bytes), 'slow'))
      expect(hold.used).toBeLessThan(fullHold)
      const balances = await ledger.customerBalances(account.id)
      expect(balances.held).toBe(0n)
      expect(balances.available).toBe(CREDIT - hold.used)
      expect(await ledger.trialBalance()).toBe(0n)
    })
  })
})
