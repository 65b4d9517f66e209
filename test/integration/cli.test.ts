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
