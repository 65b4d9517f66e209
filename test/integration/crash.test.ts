import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { atlasJson, startServerProcess, type ServerProcess } from '../fixtures/server-process.ts'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

async function * walk (dir: string): AsyncGenerator<{ path: string, size: number }> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch {
    return
  }
  for (const entry of entries) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield * walk(path)
    else if (entry.isFile()) {
      let size: number
      try {
        size = (await stat(path)).size
      } catch (err) {
        // a running server renames and deletes files between readdir and stat (temporary block files)
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
        throw err
      }
      yield { path, size }
    }
  }
}

async function bytesUnder (dir: string): Promise<number> {
  let total = 0
  for await (const f of walk(dir)) total += f.size
  return total
}

describe('crash safety (kill -9)', () => {
  let dataDir: string
  let server: ServerProcess | undefined

  afterAll(async () => {
    await server?.kill('SIGKILL')
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  })

  it('keeps committed objects and leaves no trace of an upload killed half-way', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'atlas-crash-'))
    const env = { ATLAS_DATA_DIR: dataDir, ATLAS_IPFS_OFFLINE: 'true' }
    // admin commands work without a server
    const account = await atlasJson(['accounts', 'create', '--name', 'crash'], env)
    expect(account).toMatchObject({ id: expect.any(String), accessKeyId: expect.any(String), secretAccessKey: expect.any(String), token: expect.any(String) })
    const auth = { authorization: `Bearer ${account.token as string}` }

    server = await startServerProcess(env)
    expect((await fetch(`${server.url}/v1/buckets/crash`, { method: 'PUT', headers: auth })).status).toBe(201)
    const small = randomBytes(1000)
    const large = randomBytes(3 * 1024 * 1024 + 5)
    for (const [key, body] of [['small', small], ['dir/large', large]] as const) {
      expect((await fetch(`${server.url}/v1/buckets/crash/objects/${key}`, { method: 'PUT', headers: auth, body })).status).toBe(200)
    }
    // and while the server runs
    const listed = await atlasJson(['accounts', 'list'], env)
    expect(listed.map((a: { id: string }) => a.id)).toContain(account.id)

    const blocksDir = join(dataDir, 'ipfs')
    const settledBytes = await bytesUnder(blocksDir)

    // an upload of 32 MiB that dies after 12 MiB, with the process
    const { port } = new URL(server.url)
    const socket = connect(Number(port), '127.0.0.1')
    // the server dies under this upload: its reset is expected
    socket.on('error', () => {})
    await new Promise<void>((resolve) => socket.once('connect', () => { resolve() }))
    socket.write(`PUT /v1/buckets/crash/objects/killed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${account.token as string}\r\nContent-Length: ${32 * 1024 * 1024}\r\n\r\n`)
    for (let i = 0; i < 12; i++) socket.write(randomBytes(1024 * 1024))
    // wait until the server has written some of it to the blockstore
    const deadline = Date.now() + 20_000
    while (await bytesUnder(blocksDir) < settledBytes + 4 * 1024 * 1024) {
      if (Date.now() > deadline) throw new Error('the upload never reached the blockstore')
      await new Promise((r) => setTimeout(r, 25))
    }
    await server.kill('SIGKILL')
    socket.destroy()
    expect(await bytesUnder(blocksDir)).toBeGreaterThan(settledBytes)

    server = await startServerProcess(env)
    for (const [key, body] of [['small', small], ['dir/large', large]] as const) {
      const res = await fetch(`${server.url}/v1/buckets/crash/objects/${key}`, { headers: auth })
      expect(res.status, key).toBe(200)
      expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(body))
    }
    expect((await fetch(`${server.url}/v1/buckets/crash/objects/killed`, { headers: auth })).status).toBe(404)
    const list = await (await fetch(`${server.url}/v1/buckets/crash/objects`, { headers: auth })).json() as { objects: Array<{ key: string }> }
    expect(list.objects.map((o) => o.key)).toEqual(['dir/large', 'small'])

    // the killed upload's blocks are collected at start: the repository shrinks back
    const gcDeadline = Date.now() + 20_000
    while (await bytesUnder(blocksDir) > settledBytes) {
      if (Date.now() > gcDeadline) break
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(await bytesUnder(blocksDir)).toBeLessThanOrEqual(settledBytes)
    const leftovers: string[] = []
    for await (const f of walk(dataDir)) if (/\.tmp|staging|\.partial/i.test(f.path)) leftovers.push(f.path)
    expect(leftovers).toEqual([])
    await server.kill('SIGTERM')
    expect(server.child.exitCode).toBe(0)
  })
})

describe('crash between the backends and the metadata commit', () => {
  it('releases, at the next start, bytes a backend kept for an upload that never committed', async () => {
    const { startTestAtlas } = await import('../fixtures/atlas.ts')
    const first = await startTestAtlas()
    const kept = randomBytes(2 * 1024 * 1024)
    expect((await first.api('/v1/buckets/kept', { method: 'PUT' })).status).toBe(201)
    expect((await first.api('/v1/buckets/kept/objects/kept.bin', { method: 'PUT', body: kept })).status).toBe(200)
    // what an upload leaves when the process dies right after the backend accepted it
    const orphan = await first.atlas.ipfs.put((async function * () { yield randomBytes(3 * 1024 * 1024) })())
    expect(await first.atlas.ipfs.has(orphan.address)).toBe(true)
    await first.stop({ keepData: true })

    const second = await startTestAtlas({ dataDir: first.dataDir })
    try {
      await second.atlas.objects.sweep()
      expect(await second.atlas.ipfs.has(orphan.address)).toBe(false)
      const res = await second.api('/v1/buckets/kept/objects/kept.bin', { auth: first.account.token })
      expect(res.status).toBe(200)
      expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(kept))
    } finally {
      await second.stop()
    }
  })
})
