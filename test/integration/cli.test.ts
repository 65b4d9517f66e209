/**
 * The admin commands, run as a user runs them: as processes on a data dir.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startServerProcess, type ServerProcess } from '../fixtures/server-process.ts'

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
const run = promisify(execFile)

describe('atlas CLI', () => {
  let dataDir: string
  let env: Record<string, string>
  let server: ServerProcess | undefined

  const atlas = async (...args: string[]): Promise<{ stdout: string, stderr: string, code: number }> => {
    try {
      const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } })
      return { stdout, stderr, code: 0 }
    } catch (err) {
      const e = err as { stdout: string, stderr: string, code: number }
      return { stdout: e.stdout, stderr: e.stderr, code: e.code }
    }
  }

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'atlas-cli-'))
    env = { ATLAS_DATA_DIR: dataDir, ATLAS_IPFS_OFFLINE: 'true' }
  })
  afterAll(async () => {
    await server?.kill()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('creates accounts and issues, lists and revokes keys while the server runs', async () => {
    server = await startServerProcess(env)
    const created = JSON.parse((await atlas('accounts', 'create', '--name', 'ops team', '--json')).stdout)
    expect(Object.keys(created).sort()).toEqual(['accessKeyId', 'id', 'name', 'secretAccessKey', 'token'])
    const second = JSON.parse((await atlas('keys', 'create', '--account', created.id, '--json')).stdout)
    expect(second.accessKeyId).not.toBe(created.accessKeyId)

    const auth = (token: string): RequestInit => ({ headers: { authorization: `Bearer ${token as string}` } })
    expect((await fetch(`${server.url}/v1/buckets`, auth(second.token))).status).toBe(200)

    const listed = JSON.parse((await atlas('keys', 'list', '--account', created.id, '--json')).stdout)
    expect(listed.map((k: { accessKeyId: string }) => k.accessKeyId).sort()).toEqual([created.accessKeyId, second.accessKeyId].sort())
    expect(JSON.stringify(listed)).not.toContain(created.secretAccessKey)

    expect((await atlas('keys', 'revoke', second.accessKeyId)).code).toBe(0)
    expect((await fetch(`${server.url}/v1/buckets`, auth(second.token))).status).toBe(401)
    expect((await fetch(`${server.url}/v1/buckets`, auth(created.token))).status).toBe(200)
    const after = JSON.parse((await atlas('keys', 'list', '--account', created.id, '--json')).stdout)
    expect(after.find((k: { accessKeyId: string }) => k.accessKeyId === second.accessKeyId).revokedAt).not.toBeNull()

    const accounts = JSON.parse((await atlas('accounts', 'list', '--json')).stdout)
    expect(accounts).toEqual([expect.objectContaining({ id: created.id, name: 'ops team' })])
  })

  it('credits accounts and shows balances while a billing server runs; refuses bad credits without a ledger change', async () => {
    await server?.kill()
    server = await startServerProcess({ ...env, ATLAS_BILLING_ENABLED: 'true' })
    const created = JSON.parse((await atlas('accounts', 'create', '--name', 'payer', '--json')).stdout)
    const fromServer = async (path: string): Promise<any> => {
      const res = await fetch(`${server?.url ?? ''}${path}`, { headers: { authorization: `Bearer ${created.token as string}` } })
      expect(res.status, path).toBe(200)
      return await res.json()
    }
    const empty = JSON.parse((await atlas('accounts', 'balance', created.id, '--json')).stdout)
    expect(empty).toMatchObject({ id: created.id, name: 'payer', status: 'active', available: { units: '0', btt: '0' }, held: { units: '0', btt: '0' }, owed: { units: '0', btt: '0' } })

    const credit = await atlas('accounts', 'credit', created.id, '12.5', '--reason', 'invoice 1', '--json')
    expect(credit.code, credit.stderr).toBe(0)
    expect(JSON.parse(credit.stdout)).toMatchObject({ id: created.id, credited: { units: '12500000000000000000', btt: '12.5' }, available: { btt: '12.5' } })
    // the smallest amount there is, exactly
    expect((await atlas('accounts', 'credit', created.id, '0.000000000000000001', '--reason', 'one unit')).code).toBe(0)
    const expected = { units: '12500000000000000001', btt: '12.500000000000000001' }
    expect((await fromServer('/v1/account')).balance.available).toEqual(expected)
    const ledger = (await fromServer('/v1/account/ledger')).entries
    expect(ledger.map((e: { kind: string, cause: { reason: string } }) => [e.kind, e.cause.reason])).toEqual([['admin-credit', 'one unit'], ['admin-credit', 'invoice 1']])
    const text = await atlas('accounts', 'balance', created.id)
    expect(text.stdout).toMatch(/available\s+12\.500000000000000001 BTT/)

    const refused: Array<{ args: string[], says: RegExp }> = [
      { args: ['-5', '--reason', 'x'], says: /negative/ },
      { args: ['-0.5', '--reason', 'x'], says: /negative/ },
      { args: ['0.0000000000000000001', '--reason', 'x'], says: /18 decimals/ },
      { args: ['abc', '--reason', 'x'], says: /not a decimal number/ },
      { args: ['1e3', '--reason', 'x'], says: /not a decimal number/ },
      { args: ['12,5', '--reason', 'x'], says: /not a decimal number/ },
      { args: ['0', '--reason', 'x'], says: /more than 0/ },
      { args: ['5'], says: /--reason/ },
      { args: ['5', '--reason', '  '], says: /--reason/ },
      { args: [], says: /AMOUNT/ }
    ]
    // independent processes: run them side by side
    await Promise.all(refused.map(async ({ args, says }) => {
      const result = await atlas('accounts', 'credit', created.id, ...args)
      expect(result.code, args.join(' ')).not.toBe(0)
      expect(result.stderr, args.join(' ')).toMatch(says)
    }))
    const unknown = await atlas('accounts', 'credit', 'acc_missing', '5', '--reason', 'x')
    expect(unknown.code).not.toBe(0)
    expect(unknown.stderr).toContain('No account acc_missing')
    expect((await atlas('accounts', 'balance', 'acc_missing')).code).not.toBe(0)
    // nothing of it reached the ledger
    expect((await fromServer('/v1/account')).balance.available).toEqual(expected)
    expect((await fromServer('/v1/account/ledger')).entries).toHaveLength(2)
    expect(JSON.parse((await atlas('accounts', 'balance', created.id, '--json')).stdout).available).toEqual(expected)

    const laned = await atlas('keys', 'create', '--account', created.id, '--lane', 'medium', '--json')
    expect(JSON.parse(laned.stdout).defaultLane).toBe('medium')
    const keys = JSON.parse((await atlas('keys', 'list', '--account', created.id, '--json')).stdout)
    expect(keys.find((k: { accessKeyId: string }) => k.accessKeyId === JSON.parse(laned.stdout).accessKeyId).defaultLane).toBe('medium')
    const account = await (await fetch(`${server.url}/v1/account`, { headers: { authorization: `Bearer ${JSON.parse(laned.stdout).token as string}` } })).json() as { defaultLane: string }
    expect(account.defaultLane).toBe('medium')
    const badLane = await atlas('keys', 'create', '--account', created.id, '--lane', 'warp')
    expect(badLane.code).not.toBe(0)
    expect(badLane.stderr).toContain('warp')
  })

  it('explains bad usage and bad configuration with exit code 2', async () => {
    const noName = await atlas('accounts', 'create')
    expect(noName.code).toBe(2)
    expect(noName.stderr).toContain('--name')
    const unknown = await atlas('keys', 'revoke', 'ATNOSUCHKEY')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('ATNOSUCHKEY')
    const noAccount = await atlas('keys', 'create', '--account', 'acc_missing')
    expect(noAccount.code).toBe(2)
    const badConfig = await run(process.execPath, [CLI, 'accounts', 'list'], { env: { ...process.env, ...env, ATLAS_PORT: 'eighty' } }).catch((e) => e)
    expect(badConfig.code).toBe(2)
    expect(badConfig.stderr).toContain('port (ATLAS_PORT)')
    const help = await atlas('--help')
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('accounts create')
  })
})
