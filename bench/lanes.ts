/**
 * Delivery lanes: the throughput a client measures through each lane's throttle, over a real
 * HTTP server on loopback. Target (issue #5): slow and medium within 10% of their caps on a
 * 64 MiB download; fast not throttled.
 *
 * A node:http server on 127.0.0.1 answers `GET /<lane>` with the bench payload (bench/bytes.ts,
 * 1 MiB chunks, made as it is sent) passed through `throttle()` from src/billing/lanes.ts with
 * the lane's cap and default burst, into the response via `Readable.from` and `pipeline`, as the
 * gateway sends content. The client is `fetch`, reading the body as it arrives and hashing it.
 * Throughput is bytes ÷ (time from sending the request to the last body byte), so it includes the
 * connection, the headers and the bucket's initial burst, all against the lane.
 *
 * The slow lane's default cap (1 MiB/s) would need 64 s for 64 MiB, so the bench scales it to
 * 4 MiB/s (16 s); the medium lane runs at its default 10 MiB/s (6.4 s). The throttle knows no
 * lane, only a cap and a burst (100 ms of the cap), so a scaled cap exercises the same code and
 * the ratio measured ÷ cap is the figure that carries over. A full run takes about 23 s.
 *
 *   npx node bench/lanes.ts [--mib 64] [--slow-mibps 4] [--medium-mibps 10]
 *
 * Then the same three lanes through the gateway itself: a real Atlas (billing on, the same caps as
 * ATLAS_LANE_SLOW_BPS / ATLAS_LANE_MEDIUM_BPS) serving one stored object of the same size to a
 * GET with `x-atlas-lane`, so the figure includes the hold, the metering and the storage read.
 *
 * Prints a table, the targets and a line `BENCH_JSON {...}`. Exits 0 when a target is missed and
 * 1 only when the data is wrong (a body whose length or SHA-256 differs from the payload's) or the
 * run fails.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  DEFAULT_LANE_CAPS, DEFAULT_MEDIUM_LANE_BYTES_PER_SECOND, LANE_NAMES, defaultBurstBytes, parseLane, systemClock, throttle,
  type LaneName, type ThrottleClock
} from '../src/billing/lanes.ts'
import { MiB, payloadBytes, payloadSha256, type Payload } from './bytes.ts'
import { uploadPayload } from './client.ts'
import { AtlasServer, createAccount, creditAccount } from './server.ts'

/** Largest deviation of measured ÷ cap from 1 that meets the target. */
export const TARGET_CAP_TOLERANCE = 0.10

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '64' },
    'slow-mibps': { type: 'string', default: '4' },
    'medium-mibps': { type: 'string', default: String(DEFAULT_MEDIUM_LANE_BYTES_PER_SECOND / MiB) }
  }
})
const SIZE = Number(values.mib) * MiB
const CAPS: Record<LaneName, number | undefined> = {
  slow: Number(values['slow-mibps']) * MiB,
  medium: Number(values['medium-mibps']) * MiB,
  fast: DEFAULT_LANE_CAPS.fast
}
const payload: Payload = { size: SIZE, seed: 'lanes' }

interface ServerStats {
  /** Timer waits of the throttle during the response */
  waits: number
  /** Pieces the throttle yielded */
  pieces: number
  /** Whether throttle() returned the source itself */
  passthrough: boolean
}

interface LaneRun {
  lane: LaneName
  capMiBps: number | null
  burstBytes: number | null
  bytes: number
  seconds: number
  firstByteMs: number
  MiBps: number
  ratio: number | null
  sha256ok: boolean
  waits: number
  pieces: number
  passthrough: boolean
}

/** Serve `GET /<lane>`: the payload through that lane's throttle. */
function startServer (stats: Map<LaneName, ServerStats>): Promise<{ url: string, close: () => Promise<void> }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const lane = parseLane((req.url ?? '/').slice(1))
      const controller = new AbortController()
      res.once('close', () => { if (!res.writableFinished) controller.abort() })
      const s: ServerStats = { waits: 0, pieces: 0, passthrough: false }
      stats.set(lane, s)
      const counting: ThrottleClock = {
        now: systemClock.now,
        sleep: async (ms, signal) => { s.waits++; await systemClock.sleep(ms, signal) }
      }
      async function * source (): AsyncGenerator<Uint8Array> { yield * payloadBytes(payload) }
      const src = source()
      const body = throttle(src, { bytesPerSecond: CAPS[lane], signal: controller.signal, clock: counting })
      s.passthrough = body === src
      async function * counted (): AsyncGenerator<Uint8Array> {
        for await (const piece of body) { s.pieces++; yield piece }
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(SIZE) })
      // objectMode false: the readable buffers by bytes (64 KiB), not 16 pieces, ahead of the socket
      await pipeline(Readable.from(counted(), { objectMode: false }), res)
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(400).end(String(err))
      else res.destroy(err as Error)
    })
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: async () => { await new Promise<void>((r) => { server.close(() => { r() }) }) }
      })
    })
  })
}

async function download (url: string, headers: Record<string, string> = {}): Promise<{ bytes: number, seconds: number, firstByteMs: number, sha256: string }> {
  const started = performance.now()
  const response = await fetch(url, { headers })
  if (response.status !== 200 || response.body === null) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`)
  const hash = createHash('sha256')
  let bytes = 0
  let firstByte = 0
  for await (const chunk of response.body) {
    if (bytes === 0) firstByte = performance.now()
    bytes += chunk.byteLength
    hash.update(chunk)
  }
  const seconds = (performance.now() - started) / 1000
  return { bytes, seconds, firstByteMs: firstByte - started, sha256: hash.digest('hex') }
}

const fmt = (n: number | null, digits = 2): string => n === null ? '-' : n.toFixed(digits)

async function main (): Promise<number> {
  const expected = payloadSha256(payload).sha256
  const stats = new Map<LaneName, ServerStats>()
  const server = await startServer(stats)
  const runs: LaneRun[] = []
  const errors: string[] = []
  try {
    for (const lane of LANE_NAMES) {
      const got = await download(`${server.url}/${lane}`)
      const cap = CAPS[lane]
      const MiBps = got.bytes / MiB / got.seconds
      const s = stats.get(lane) as ServerStats
      const run: LaneRun = {
        lane,
        capMiBps: cap === undefined ? null : cap / MiB,
        burstBytes: cap === undefined ? null : defaultBurstBytes(cap),
        bytes: got.bytes,
        seconds: got.seconds,
        firstByteMs: got.firstByteMs,
        MiBps,
        ratio: cap === undefined ? null : MiBps / (cap / MiB),
        sha256ok: got.bytes === SIZE && got.sha256 === expected,
        waits: s.waits,
        pieces: s.pieces,
        passthrough: s.passthrough
      }
      if (!run.sha256ok) errors.push(`${lane}: received ${got.bytes} bytes, sha256 ${got.sha256}; expected ${SIZE}, ${expected}`)
      runs.push(run)
      console.error(`${lane}: ${fmt(MiBps)} MiB/s in ${fmt(got.seconds)} s`)
    }
  } finally {
    await server.close()
  }

  console.log(`\nDelivery lanes: ${SIZE / MiB} MiB per lane over HTTP on loopback (default caps: slow ${DEFAULT_LANE_CAPS.slow as number / MiB}, medium ${DEFAULT_LANE_CAPS.medium as number / MiB} MiB/s)\n`)
  console.log('| lane | cap MiB/s | burst KiB | seconds | first byte ms | MiB/s | measured/cap | waits | waits/s | pieces | sha256 |')
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const r of runs) {
    const burst = r.burstBytes === null ? '-' : fmt(r.burstBytes / 1024, 0)
    console.log(`| ${r.lane} | ${fmt(r.capMiBps, 0)} | ${burst} | ${fmt(r.seconds)} | ${fmt(r.firstByteMs, 1)} | ${fmt(r.MiBps)} | ${fmt(r.ratio, 4)} | ${r.waits} | ${fmt(r.waits / r.seconds, 1)} | ${r.pieces} | ${r.sha256ok ? 'ok' : 'WRONG'} |`)
  }

  // the same lanes through the gateway itself: a real Atlas with billing on, GET with x-atlas-lane
  const gateway = await throughGateway(expected, errors)
  console.log(`\nThrough the gateway: GET /v1/buckets/…/objects/… of ${SIZE / MiB} MiB with x-atlas-lane (billing on)\n`)
  console.log('| lane | cap MiB/s | seconds | MiB/s | measured/cap | sha256 |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const r of gateway) console.log(`| ${r.lane} | ${fmt(r.capMiBps, 0)} | ${fmt(r.seconds)} | ${fmt(r.MiBps)} | ${fmt(r.ratio, 4)} | ${r.sha256ok ? 'ok' : 'WRONG'} |`)

  const capped = runs.filter((r) => r.ratio !== null)
  const fast = runs.find((r) => r.lane === 'fast') as LaneRun
  const fastestCapped = Math.max(...capped.map((r) => r.MiBps))
  const targets = [
    ...capped.map((r) => ({
      name: `${r.lane}: measured/cap within ±${TARGET_CAP_TOLERANCE * 100}% on ${SIZE / MiB} MiB`,
      value: fmt(r.ratio, 4),
      met: Math.abs((r.ratio as number) - 1) <= TARGET_CAP_TOLERANCE
    })),
    ...gateway.filter((r) => r.ratio !== null).map((r) => ({
      name: `gateway ${r.lane}: measured/cap within ±${TARGET_CAP_TOLERANCE * 100}% on ${SIZE / MiB} MiB`,
      value: fmt(r.ratio, 4),
      met: Math.abs((r.ratio as number) - 1) <= TARGET_CAP_TOLERANCE
    })),
    {
      name: 'fast: not throttled (throttle returns the source, no waits, faster than every capped lane)',
      value: `${fmt(fast.MiBps)} MiB/s, passthrough ${String(fast.passthrough)}, waits ${fast.waits}`,
      met: fast.passthrough && fast.waits === 0 && fast.MiBps > fastestCapped
    }
  ]
  console.log('\n| target | value | met |')
  console.log('| --- | --- | --- |')
  for (const t of targets) console.log(`| ${t.name} | ${t.value} | ${t.met ? 'yes' : 'NO'} |`)
  console.log(`BENCH_JSON ${JSON.stringify({ bench: 'lanes', sizeBytes: SIZE, runs, gateway, targets, errors })}`)
  return errors.length === 0 ? 0 : 1
}

/**
 * The lanes through a real Atlas (`atlas serve` in a child process, billing on, the bench's
 * caps as ATLAS_LANE_*_BPS): one object of the bench's size, downloaded once per lane.
 */
async function throughGateway (expected: string, errors: string[]): Promise<Array<{ lane: LaneName, capMiBps: number | null, seconds: number, MiBps: number, ratio: number | null, sha256ok: boolean }>> {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const dataDir = await mkdtemp(join(tmpdir(), 'atlas-bench-lanes-'))
  const server = await AtlasServer.start({
    root,
    dataDir,
    env: {
      ATLAS_BILLING_ENABLED: 'true',
      ATLAS_BT_ENABLED: 'false',
      ATLAS_LANE_SLOW_BPS: String(CAPS.slow),
      ATLAS_LANE_MEDIUM_BPS: String(CAPS.medium)
    }
  })
  const runs = []
  try {
    const account = await createAccount(root, server.env, 'bench-lanes')
    await creditAccount(root, server.env, account.id, '1000000', 'lanes bench')
    const made = await fetch(`${server.url}/v1/buckets/lanes`, { method: 'PUT', headers: { authorization: `Bearer ${account.token}` } })
    if (made.status !== 201) throw new Error(`create bucket: ${made.status}`)
    const put = await uploadPayload(`${server.url}/v1/buckets/lanes/objects/payload`, account.token, payload)
    if (put.status !== 200) throw new Error(`upload: ${put.status} ${JSON.stringify(put.body)}`)
    for (const lane of LANE_NAMES) {
      const got = await download(`${server.url}/v1/buckets/lanes/objects/payload`, { authorization: `Bearer ${account.token}`, 'x-atlas-lane': lane })
      const cap = CAPS[lane]
      const MiBps = got.bytes / MiB / got.seconds
      const sha256ok = got.bytes === SIZE && got.sha256 === expected
      if (!sha256ok) errors.push(`gateway ${lane}: received ${got.bytes} bytes, sha256 ${got.sha256}`)
      runs.push({ lane, capMiBps: cap === undefined ? null : cap / MiB, seconds: got.seconds, MiBps, ratio: cap === undefined ? null : MiBps / (cap / MiB), sha256ok })
      console.error(`gateway ${lane}: ${fmt(MiBps)} MiB/s in ${fmt(got.seconds)} s`)
    }
  } finally {
    await server.kill()
    await rm(dataDir, { recursive: true, force: true })
  }
  return runs
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
