/**
 * Billing's cost on the hot path: GET of 4 KiB objects at concurrency 32 (ops/s) from a server
 * with billing on (every GET places a hold and settles it in the ledger) against the same
 * server build with billing off, both running in this one bench run, measured in alternating
 * order over several rounds. Target: billing costs at most 10% (on ÷ off ≥ 0.9).
 *
 *   npx node bench/billing.ts [--small N] [--rounds R]
 *
 * A report, not a test: exits non-zero only when a request fails or a body is wrong.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { Agent, request, type IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { AtlasServer, createAccount, creditAccount, type Account } from './server.ts'
import { median } from './stats.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const TARGET_BILLING_RATIO = 0.9
const CONCURRENCY = 32

const { values } = parseArgs({
  options: {
    small: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '5' }
  }
})
const COUNT = Number(values.small)
const ROUNDS = Number(values.rounds)

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })

interface Side {
  name: 'on' | 'off'
  server: AtlasServer
  account: Account
  base: URL
  bodies: Buffer[]
}

async function send (base: URL, method: string, path: string, token: string, body?: Buffer): Promise<{ status: number, sha256: string }> {
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` }
    if (body !== undefined) headers['content-length'] = String(body.byteLength)
    const r = request({ host: base.hostname, port: base.port, method, path, headers, agent }, (res: IncomingMessage) => {
      const hash = createHash('sha256')
      res.on('data', (d: Buffer) => { hash.update(d) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, sha256: hash.digest('hex') }) })
      res.on('error', reject)
    })
    r.on('error', reject)
    r.end(body)
  })
}

async function start (name: 'on' | 'off'): Promise<Side> {
  const dataDir = await mkdtemp(join(tmpdir(), `atlas-bench-billing-${name}-`))
  const server = await AtlasServer.start({ root: ROOT, dataDir, env: { ATLAS_BILLING_ENABLED: name === 'on' ? 'true' : 'false', ATLAS_BT_ENABLED: 'false' } })
  const account = await createAccount(ROOT, server.env, `bench-billing-${name}`)
  if (name === 'on') {
    // plenty for the run: egress of a 4 KiB GET at the default fast price is about 0.04 BTT
    await creditAccount(ROOT, server.env, account.id, '100000000', 'billing bench')
  }
  const base = new URL(server.url)
  if ((await send(base, 'PUT', '/v1/buckets/bench', account.token)).status !== 201) throw new Error(`${name}: could not create the bucket`)
  const bodies = Array.from({ length: COUNT }, () => randomBytes(4096))
  await runAll(bodies.map((body, i) => async () => {
    const res = await send(base, 'PUT', `/v1/buckets/bench/objects/k${i}`, account.token, body)
    if (res.status !== 200) throw new Error(`${name}: PUT k${i}: ${res.status}`)
  }))
  return { name, server, account, base, bodies }
}

async function runAll (jobs: Array<() => Promise<void>>): Promise<number> {
  let next = 0
  const began = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < jobs.length) await (jobs[next++] as () => Promise<void>)()
  }))
  return jobs.length / ((performance.now() - began) / 1000)
}

async function getAll (side: Side): Promise<number> {
  const expected = side.bodies.map(b => createHash('sha256').update(b).digest('hex'))
  return await runAll(side.bodies.map((_, i) => async () => {
    const res = await send(side.base, 'GET', `/v1/buckets/bench/objects/k${i}`, side.account.token)
    if (res.status !== 200) throw new Error(`${side.name}: GET k${i}: ${res.status}`)
    if (res.sha256 !== expected[i]) throw new Error(`${side.name}: GET k${i} returned other bytes`)
  }))
}

async function main (): Promise<void> {
  const sides: Side[] = []
  try {
    sides.push(await start('off'), await start('on'))
    const [off, on] = sides as [Side, Side]
    // one warm-up pass each
    await getAll(off)
    await getAll(on)
    const results: Record<'on' | 'off', number[]> = { on: [], off: [] }
    for (let round = 0; round < ROUNDS; round++) {
      for (const side of round % 2 === 0 ? [off, on] : [on, off]) results[side.name].push(await getAll(side))
    }
    const ratios = results.on.map((r, i) => r / (results.off[i] as number))
    const ratio = median(ratios)
    console.log('\nBilling cost: GET 4 KiB, concurrency 32, ops/s')
    console.table(results.on.map((r, i) => ({ round: i + 1, 'billing off': Math.round(results.off[i] as number), 'billing on': Math.round(r), 'on/off': Number((ratios[i] as number).toFixed(3)) })))
    console.log(`median on/off: ${ratio.toFixed(3)} (target ≥ ${TARGET_BILLING_RATIO}): ${ratio >= TARGET_BILLING_RATIO ? 'met' : 'MISSED'}`)
    console.log(`BENCH_JSON ${JSON.stringify({ bench: 'billing', count: COUNT, rounds: ROUNDS, opsOff: results.off, opsOn: results.on, medianRatio: ratio, target: TARGET_BILLING_RATIO, met: ratio >= TARGET_BILLING_RATIO })}`)
  } finally {
    for (const side of sides) {
      await side.server.kill()
      await rm(side.server.env.ATLAS_DATA_DIR as string, { recursive: true, force: true })
    }
    agent.destroy()
  }
}

await main()
