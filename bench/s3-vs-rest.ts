/**
 * S3 API against REST API, same server, same run: PUT and GET of 4 KiB objects at concurrency 32
 * (ops/s), and of a 256 MiB object (MiB/s). The S3 requests are signed with SigV4 before the
 * clock starts (by @smithy/signature-v4, the AWS SDK's signer), so the figures compare what the
 * server spends, not what a client library spends. Both sides send with the same HTTP client.
 * Target: S3 costs at most 15% more than REST (REST ops/s ÷ S3 ops/s ≤ 1.15).
 *
 *   npx node bench/s3-vs-rest.ts [--small N] [--large-mib M] [--rounds R]
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { Agent, request, type IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Sha256 } from '@aws-crypto/sha256-js'
import { SignatureV4 } from '@smithy/signature-v4'
import { MiB, payloadBytes, type Payload } from './bytes.ts'
import { median } from './stats.ts'
import { AtlasServer, createAccount, type Account } from './server.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const TARGET_S3_COST = 1.15
const CONCURRENCY = 32

const { values } = parseArgs({
  options: {
    small: { type: 'string', default: '3000' },
    'large-mib': { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    /** Node options for the server, e.g. --server-arg=--cpu-prof */
    'server-arg': { type: 'string', multiple: true, default: [] }
  }
})
const SMALL_COUNT = Number(values.small)
const LARGE = Number(values['large-mib']) * MiB
const ROUNDS = Number(values.rounds)

interface Req {
  method: string
  path: string
  headers: Record<string, string>
  body?: Buffer
}

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })

async function send (base: URL, req: Req, bodyStream?: Readable): Promise<{ status: number, bytes: number, sha256?: string }> {
  return await new Promise((resolve, reject) => {
    const r = request({ host: base.hostname, port: base.port, method: req.method, path: req.path, headers: req.headers, agent }, (res: IncomingMessage) => {
      let bytes = 0
      const hash = req.method === 'GET' ? createHash('sha256') : undefined
      res.on('data', (d: Buffer) => { bytes += d.byteLength; hash?.update(d) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, bytes, sha256: hash?.digest('hex') }) })
      res.on('error', reject)
    })
    r.on('error', reject)
    if (bodyStream !== undefined) void pipeline(bodyStream, r).catch(reject)
    else r.end(req.body)
  })
}

async function runAll (base: URL, reqs: Req[]): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < reqs.length) {
      const req = reqs[next++] as Req
      const res = await send(base, req)
      if (res.status !== 200) throw new Error(`${req.method} ${req.path}: ${res.status}`)
    }
  }))
  return reqs.length / ((performance.now() - started) / 1000)
}

function signerFor (account: Account): SignatureV4 {
  return new SignatureV4({ service: 's3', region: 'us-east-1', credentials: { accessKeyId: account.accessKeyId, secretAccessKey: account.secretAccessKey }, sha256: Sha256, uriEscapePath: false })
}

async function s3Request (signer: SignatureV4, base: URL, method: string, path: string, body: Buffer | undefined, extra: Record<string, string> = {}, unsignedPayload = false): Promise<Req> {
  const headers: Record<string, string> = {
    host: base.host,
    'x-amz-content-sha256': unsignedPayload ? 'UNSIGNED-PAYLOAD' : createHash('sha256').update(body ?? Buffer.alloc(0)).digest('hex'),
    ...extra
  }
  if (body !== undefined) headers['content-length'] = String(body.byteLength)
  const signed = await signer.sign({ method, protocol: 'http:', hostname: base.hostname, port: Number(base.port), path, query: {}, headers })
  return { method, path, headers: signed.headers as Record<string, string>, body }
}

function restRequest (account: Account, method: string, path: string, body?: Buffer, extra: Record<string, string> = {}): Req {
  const headers: Record<string, string> = { authorization: `Bearer ${account.token}`, ...extra }
  if (body !== undefined) headers['content-length'] = String(body.byteLength)
  return { method, path, headers, body }
}

async function timedLarge (base: URL, req: Req, payload: Payload | undefined): Promise<{ mibs: number, sha256?: string }> {
  const started = performance.now()
  const res = await send(base, req, payload === undefined ? undefined : Readable.from(payloadBytes(payload)))
  if (res.status !== 200) throw new Error(`${req.method} ${req.path}: ${res.status}`)
  return { mibs: (LARGE / MiB) / ((performance.now() - started) / 1000), sha256: res.sha256 }
}

async function main (): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'atlas-bench-s3-'))
  const server = await AtlasServer.start({ root: ROOT, dataDir, execArgv: values['server-arg'] })
  try {
    const account = await createAccount(ROOT, server.env, 'bench-s3')
    const base = new URL(server.url)
    const signer = signerFor(account)
    if ((await send(base, restRequest(account, 'PUT', '/v1/buckets/rest-side'))).status !== 201) throw new Error('REST bucket')
    if ((await send(base, await s3Request(signer, base, 'PUT', '/s3-side', undefined))).status !== 200) throw new Error('S3 bucket')

    const smallResults: Record<string, number[]> = { restPut: [], s3Put: [], restGet: [], s3Get: [] }
    const largeResults: Record<string, number[]> = { restPut: [], s3Put: [], restGet: [], s3Get: [] }
    for (let round = 0; round < ROUNDS; round++) {
      const bodies = Array.from({ length: SMALL_COUNT }, () => randomBytes(4096))
      const restPuts = bodies.map((b, i) => restRequest(account, 'PUT', `/v1/buckets/rest-side/objects/r${round}/k${i}`, b))
      const s3Puts = await Promise.all(bodies.map(async (b, i) => await s3Request(signer, base, 'PUT', `/s3-side/r${round}/k${i}`, b)))
      const restGets = bodies.map((_, i) => restRequest(account, 'GET', `/v1/buckets/rest-side/objects/r${round}/k${i}`))
      const s3Gets = await Promise.all(bodies.map(async (_, i) => await s3Request(signer, base, 'GET', `/s3-side/r${round}/k${i}`, undefined)))
      // alternate which side goes first, so neither always meets a warmer server
      const order = round % 2 === 0 ? ['rest', 's3'] : ['s3', 'rest']
      for (const side of order) {
        smallResults[`${side}Put`]?.push(await runAll(base, side === 'rest' ? restPuts : s3Puts))
      }
      for (const side of order) {
        smallResults[`${side}Get`]?.push(await runAll(base, side === 'rest' ? restGets : s3Gets))
      }

      const payload: Payload = { size: LARGE, seed: `s3-vs-rest-${round}` }
      const expected = createHash('sha256')
      for (const chunk of payloadBytes(payload)) expected.update(chunk)
      const sha = expected.digest('hex')
      for (const side of order) {
        const req = side === 'rest'
          ? restRequest(account, 'PUT', `/v1/buckets/rest-side/objects/large${round}`, undefined, { 'content-length': String(LARGE) })
          : await s3Request(signer, base, 'PUT', `/s3-side/large${round}`, undefined, { 'content-length': String(LARGE) }, true)
        largeResults[`${side}Put`]?.push((await timedLarge(base, req, payload)).mibs)
      }
      for (const side of order) {
        const req = side === 'rest'
          ? restRequest(account, 'GET', `/v1/buckets/rest-side/objects/large${round}`)
          : await s3Request(signer, base, 'GET', `/s3-side/large${round}`, undefined)
        const got = await timedLarge(base, req, undefined)
        if (got.sha256 !== sha) throw new Error(`${side} GET of the large object returned other bytes`)
        largeResults[`${side}Get`]?.push(got.mibs)
      }
    }

    const row = (label: string, rest: number[], s3: number[], unit: string): Record<string, unknown> => {
      const r = median(rest)
      const s = median(s3)
      const cost = r / s
      console.log(`${label.padEnd(22)} REST ${r.toFixed(1).padStart(8)} ${unit}   S3 ${s.toFixed(1).padStart(8)} ${unit}   S3 cost ${cost.toFixed(3)}x ${cost <= TARGET_S3_COST ? 'ok' : 'MISSED'}`)
      return { rest: r, s3: s, restRuns: rest, s3Runs: s3, s3Cost: cost, met: cost <= TARGET_S3_COST }
    }
    console.log(`S3 vs REST, ${ROUNDS} rounds, medians (target: S3 cost <= ${TARGET_S3_COST}x REST)`)
    const summary = {
      small: { count: SMALL_COUNT, concurrency: CONCURRENCY, put: row('PUT 4 KiB x32', smallResults.restPut as number[], smallResults.s3Put as number[], 'ops/s'), get: row('GET 4 KiB x32', smallResults.restGet as number[], smallResults.s3Get as number[], 'ops/s') },
      large: { mib: LARGE / MiB, put: row(`PUT ${LARGE / MiB} MiB`, largeResults.restPut as number[], largeResults.s3Put as number[], 'MiB/s'), get: row(`GET ${LARGE / MiB} MiB`, largeResults.restGet as number[], largeResults.s3Get as number[], 'MiB/s') }
    }
    console.log(`BENCH_S3_JSON ${JSON.stringify(summary)}`)
  } finally {
    agent.destroy()
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

await main()
