/**
 * `npm run bench`: ingest and download throughput of the REST API over IPFS, against Helia on its
 * own, and the server's memory while it moves a 1 GiB object.
 *
 * A report, not a test: it prints tables and one `BENCH_JSON {...}` line, says whether each
 * target is met, and exits 0 either way. It exits non-zero only when something is wrong with the
 * data or the run: a downloaded SHA-256 that differs from the uploaded one, a content id or CID
 * that differs from the expected one, a failed request.
 *
 * Two child processes, never busy at the same time:
 * - the Atlas server (`node src/cli.ts serve`, offline IPFS, data in a temp dir), which takes
 *   `PUT /v1/buckets/bench/objects/<key>` with a streamed body, and at the end serves the largest
 *   object back (`GET`, hashed by the client);
 * - the reference (bench/direct.ts), which adds the same bytes with `unixfs(helia).addByteStream()`
 *   under Atlas's import profile into a fresh offline Helia on FsBlockstore/FsDatastore, built as
 *   the IPFS backend builds it. Its root CIDs must equal the server's (same bytes, same profile).
 * Each REST upload is followed at once by the direct add of the same bytes, so both sides of a
 * ratio see the same machine; dirty pages are flushed (`sync`) before every transfer so that no
 * transfer pays for the previous one's writeback, and the run waits (a bounded time) for other
 * processes on the machine to go quiet. For every transfer the watched process's RSS is
 * polled every 50 ms (and its kernel high-water mark reset before), its CPU time counted, and the
 * CPU time of everything else on the machine too, to show when a figure was disturbed.
 *
 * Options: `--quick` (one 256 MiB run); `--profile` (two 256 MiB runs with `--cpu-prof` on both
 * children, then where the time of the second went: REST upload, direct add, REST download);
 * `--profile-dir DIR` (where profiles go; kept); `--node-arg OPT` (repeatable: a Node option for
 * both children, to try a runtime remedy, e.g. `--node-arg=--max-semi-space-size=2`); `--root DIR` (run
 * the server of another checkout, e.g. to compare a change against a copy of the tree before it;
 * the reference always uses this checkout's profile); `--keep` (keep the temp dir).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, loadavg, platform, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { canonicalIdFromSha256 } from '../src/core/content-id.ts'
import { GiB, MiB, payloadSha256, type Payload } from './bytes.ts'
import { median, mibps, round } from './stats.ts'
import { downloadAndHash, jsonRequest, uploadPayload } from './client.ts'
import type { DirectReply, DirectRequest } from './direct.ts'
import { dropPageCache, ProcessSampler, readMemory, waitForQuiet, type RssWindow } from './proc.ts'
import { formatSummary, monotonicUs, readProfile, summariseProfile, type ProfileSummary, type ProfileWindow } from './profile-summary.ts'
import { AtlasServer, createAccount } from './server.ts'

/** The checkout whose server is measured, unless `--root` names another (to compare two trees). */
const DEFAULT_ROOT = resolve(import.meta.dirname, '..')
const BUCKET = 'bench'

/** REST ingest must reach this share of the direct Helia ingest. */
export const TARGET_INGEST_RATIO = 0.8
/** The server's RSS while moving 1 GiB must stay below this. */
export const TARGET_PEAK_RSS_BYTES = 300 * MiB
/** A transfer during which other processes used more than this share of one CPU is marked. */
export const DISTURBED_SHARE = 0.25
/** Longest wait for a quiet machine before one transfer, and in all (so the run stays short). */
export const QUIET_WAIT_PER_TRANSFER_MS = 15_000
export const QUIET_WAIT_TOTAL_MS = 60_000

type Mode = 'full' | 'quick' | 'profile'

interface Workload extends Payload {
  /** Row label */
  label: string
  /** What runs of the same size are summarised under */
  group: string
  key: string
}

interface Transfer {
  ms: number
  mibps: number
  /** Memory and CPU of the watched process, and of the others */
  rss: RssWindow
  window: ProfileWindow
}

interface IngestRow {
  label: string
  group: string
  size: number
  sha256: string
  rest: Transfer & { tailMs: number, cid: string, contentId: string }
  direct?: Transfer & { setupMs: number, cid: string }
  ratio?: number
}

interface DownloadRow extends Transfer {
  label: string
  size: number
  sha256: string
  expectedSha256: string
  match: boolean
}

/** Problems with the data (not missed targets): any of these makes the exit code 1. */
const errors: string[] = []

function fail (message: string): void {
  errors.push(message)
  process.stderr.write(`\n!!! BENCH ERROR: ${message}\n\n`)
}

function log (line: string): void {
  process.stderr.write(`bench: ${line}\n`)
}

function sizeLabel (bytes: number): string {
  return bytes >= GiB ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`
}

function mib (bytes: number | undefined): string {
  return bytes === undefined ? '-' : (bytes / MiB).toFixed(0)
}

function disturbed (rss: RssWindow): boolean {
  return rss.otherCpuSeconds > DISTURBED_SHARE * rss.wallSeconds
}

/** Time spent waiting for other processes to calm down, over the whole run. */
let quietWaitedMs = 0
/** Transfers that started while other processes were still busy. */
let startedBusy = 0
/** Transfers that started with the page cache dropped, and those that could not drop it */
let cacheDropped = 0
let cacheKept = 0

/**
 * Before a transfer: write dirty pages back, so that it does not pay for the previous one's
 * writeback, then wait (within a budget) until other processes leave the CPUs alone.
 */
async function settle (): Promise<void> {
  spawnSync('sync', { stdio: 'ignore' })
  if (dropPageCache()) cacheDropped++
  else cacheKept++
  const budget = Math.min(QUIET_WAIT_PER_TRANSFER_MS, QUIET_WAIT_TOTAL_MS - quietWaitedMs)
  const { waitedMs, quiet } = await waitForQuiet(Math.max(0, budget))
  quietWaitedMs += waitedMs
  if (!quiet) startedBusy++
}

function workloads (mode: Mode): Workload[] {
  const plan: Workload[] = []
  const add = (size: number, runs: number): void => {
    for (let n = 1; n <= runs; n++) {
      plan.push({
        label: runs > 1 ? `${sizeLabel(size)} #${n}` : sizeLabel(size),
        group: sizeLabel(size),
        size,
        seed: `${size}-${n}`,
        key: `bench/${sizeLabel(size).replace(' ', '')}-${n}.bin`
      })
    }
  }
  if (mode === 'quick') add(256 * MiB, 1)
  // profile: the second run is the one summarised, the first warms up
  else if (mode === 'profile') add(256 * MiB, 2)
  else {
    add(256 * MiB, 3)
    add(GiB, 2)
  }
  return plan
}

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'profile-dir': { type: 'string' },
      'node-arg': { type: 'string', multiple: true, default: [] },
      keep: { type: 'boolean', default: false },
      root: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  if (values.help === true) {
    process.stdout.write('usage: npm run bench [-- --quick | --profile [--profile-dir DIR]] [--node-arg NODE_OPTION]... [--root CHECKOUT] [--keep]\n')
    return 0
  }
  const mode: Mode = values.profile === true ? 'profile' : values.quick === true ? 'quick' : 'full'
  const plan = workloads(mode)
  // the same Node options for both sides, so that the ratio compares the code, not the runtime
  const nodeArgs = values['node-arg'] ?? []
  const root = resolve(values.root ?? DEFAULT_ROOT)
  const tmp = await mkdtemp(join(tmpdir(), 'atlas-bench-'))
  const profileDir = mode === 'profile' ? resolve(values['profile-dir'] ?? join(tmpdir(), `atlas-bench-profiles-${Date.now()}`)) : undefined
  const profileArgs = (name: string): string[] => profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}.cpuprofile`]
  let server: AtlasServer | undefined
  let direct: ChildProcess | undefined
  const startedAt = performance.now()
  const loadAtStart = loadavg()[0] ?? 0
  log(`node ${process.version}, ${cpus().length} CPUs, load ${loadAtStart.toFixed(2)}, server from ${root}, temp dir ${tmp}` +
    `${profileDir === undefined ? '' : `, profiles in ${profileDir}`}${nodeArgs.length === 0 ? '' : `, Node options ${nodeArgs.join(' ')}`}`)

  try {
    // the payloads' hashes, computed before anything runs so that no transfer pays for them
    const expected = new Map<string, string>()
    let generated = 0
    let generatorMs = 0
    for (const w of plan) {
      const { sha256, ms } = payloadSha256(w)
      expected.set(w.label, sha256)
      generated += w.size
      generatorMs += ms
    }
    const generatorMibps = mibps(generated, generatorMs)
    log(`payload generator + sha256: ${generatorMibps.toFixed(0)} MiB/s`)

    server = await AtlasServer.start({ root, dataDir: join(tmp, 'server'), execArgv: [...profileArgs('server'), ...nodeArgs] })
    const idleRss = readMemory(server.pid)?.rss
    log(`server pid ${server.pid} at ${server.url}, idle RSS ${mib(idleRss)} MiB`)
    const account = await createAccount(root, server.env, 'bench')
    const bucket = await jsonRequest('PUT', `${server.url}/v1/buckets/${BUCKET}`, account.token, { backends: ['ipfs'] })
    if (bucket.status !== 200 && bucket.status !== 201) throw new Error(`PUT /v1/buckets/${BUCKET}: ${bucket.status} ${JSON.stringify(bucket.body)}`)

    direct = spawn(process.execPath, [...profileArgs('direct'), ...nodeArgs, join(DEFAULT_ROOT, 'bench/direct.ts')], {
      cwd: DEFAULT_ROOT,
      env: { ...process.env, NODE_OPTIONS: '' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    const replies = replyQueue(direct)
    expectReply(await replies.next(), 'ready')
    const directPid = direct.pid as number
    const directIdleRss = readMemory(directPid)?.rss
    log(`direct Helia pid ${directPid}, idle RSS ${mib(directIdleRss)} MiB`)

    const rows: IngestRow[] = []
    for (const [i, w] of plan.entries()) {
      const sha256 = expected.get(w.label) as string

      await settle()
      const restSampler = new ProcessSampler(server.pid)
      restSampler.start()
      const restFrom = monotonicUs()
      const res = await uploadPayload(`${server.url}/v1/buckets/${BUCKET}/objects/${w.key}`, account.token, w)
      const restWindow = { fromUs: restFrom, toUs: monotonicUs() }
      const restRss = restSampler.stop()
      if (res.status !== 200) throw new Error(`PUT ${w.key}: ${res.status} ${JSON.stringify(res.body)}\n${server.logTail}`)
      const body = res.body as { size?: number, contentId?: string, addresses?: { ipfs?: string } }
      const contentId = canonicalIdFromSha256(Buffer.from(sha256, 'hex'))
      if (body.size !== w.size) fail(`${w.label}: the server stored ${body.size} bytes, ${w.size} were sent`)
      if (body.contentId !== contentId) fail(`${w.label}: content id ${body.contentId} from the server, ${contentId} expected from the bytes sent (sha256 ${sha256})`)
      const cid = body.addresses?.ipfs ?? ''
      if (cid === '') fail(`${w.label}: the response has no IPFS address`)
      const row: IngestRow = {
        label: w.label,
        group: w.group,
        size: w.size,
        sha256,
        rest: { ms: res.ms, mibps: mibps(w.size, res.ms), rss: restRss, window: restWindow, tailMs: res.tailMs, cid, contentId: body.contentId ?? '' }
      }
      rows.push(row)

      await settle()
      const dir = join(tmp, `direct-${i}`)
      const directSampler = new ProcessSampler(directPid)
      directSampler.start()
      const directFrom = monotonicUs()
      direct.send({ type: 'run', payload: { size: w.size, seed: w.seed }, dir } satisfies DirectRequest)
      const reply = expectReply(await replies.next(), 'done')
      const directWindow = { fromUs: directFrom, toUs: monotonicUs() }
      const directRss = directSampler.stop()
      await rm(dir, { recursive: true, force: true })
      row.direct = { ms: reply.ms, setupMs: reply.setupMs, mibps: mibps(w.size, reply.ms), rss: directRss, window: directWindow, cid: reply.cid }
      row.ratio = row.rest.mibps / row.direct.mibps
      if (reply.cid !== cid) fail(`${w.label}: direct Helia made CID ${reply.cid}, Atlas ${cid}, for the same bytes and profile`)
      log(`${w.label}: REST ${row.rest.mibps.toFixed(1)} MiB/s (server peak RSS ${mib(restRss.peak)} MiB), direct ${row.direct.mibps.toFixed(1)} MiB/s, ratio ${row.ratio.toFixed(2)}` +
        `${disturbed(restRss) || disturbed(directRss) ? ' (disturbed: other processes were busy)' : ''}`)
    }

    // the largest object back, the last uploaded of that size
    const largest = plan.reduce((a, b) => (b.size >= a.size ? b : a))
    const expectedSha256 = expected.get(largest.label) as string
    await settle()
    const downloadSampler = new ProcessSampler(server.pid)
    downloadSampler.start()
    const downloadFrom = monotonicUs()
    const got = await downloadAndHash(`${server.url}/v1/buckets/${BUCKET}/objects/${largest.key}`, account.token)
    const downloadWindow = { fromUs: downloadFrom, toUs: monotonicUs() }
    const downloadRss = downloadSampler.stop()
    if (got.status !== 200) throw new Error(`GET ${largest.key}: ${got.status} ${got.error ?? ''}\n${server.logTail}`)
    const match = got.sha256 === expectedSha256 && got.bytes === largest.size
    if (!match) fail(`DOWNLOAD MISMATCH for ${largest.label}: got ${got.bytes} bytes with sha256 ${got.sha256}, uploaded ${largest.size} bytes with sha256 ${expectedSha256}`)
    const download: DownloadRow = {
      label: largest.label,
      size: largest.size,
      ms: got.ms,
      mibps: mibps(got.bytes, got.ms),
      rss: downloadRss,
      window: downloadWindow,
      sha256: got.sha256,
      expectedSha256,
      match
    }
    log(`${largest.label} download: ${download.mibps.toFixed(1)} MiB/s, server peak RSS ${mib(downloadRss.peak)} MiB, sha256 ${match ? 'matches' : 'MISMATCH'}`)

    direct.send({ type: 'exit' } satisfies DirectRequest)
    await exited(direct)
    direct = undefined
    const serverExit = await server.stop()
    if (serverExit !== 0) log(`the server exited with code ${serverExit}:\n${server.logTail}`)
    server = undefined

    const report = buildReport(rows, download, {
      mode,
      root,
      nodeArgs,
      idleRss,
      directIdleRss,
      generatorMibps,
      loadAtStart,
      seconds: (performance.now() - startedAt) / 1000,
      quietWaitedMs,
      startedBusy
    })
    process.stdout.write(`${formatReport(report, rows, download)}\n`)
    if (profileDir !== undefined) {
      report.profileDir = profileDir
      report.profiles = summariseProfiles(profileDir, rows[rows.length - 1] as IngestRow, download)
    }
    process.stdout.write(`BENCH_JSON ${JSON.stringify({ ...report, errors })}\n`)
    return errors.length === 0 ? 0 : 1
  } finally {
    if (server !== undefined) await server.kill()
    if (direct !== undefined && direct.exitCode === null && direct.signalCode === null) {
      direct.kill('SIGKILL')
      await exited(direct)
    }
    if (values.keep === true) log(`kept ${tmp}`)
    else await rm(tmp, { recursive: true, force: true })
  }
}

/** Print where the time of the last run went, on each side; returns the short form for the JSON. */
function summariseProfiles (profileDir: string, last: IngestRow, download: DownloadRow): Record<string, unknown> {
  const windows = [
    { name: 'restUpload', file: 'server', window: last.rest.window, what: `${last.label} REST upload` },
    { name: 'directAdd', file: 'direct', window: last.direct?.window, what: `${last.label} direct add` },
    { name: 'restDownload', file: 'server', window: download.window, what: `${download.label} REST download` }
  ]
  const out: Record<string, unknown> = {}
  for (const { name, file: base, window, what } of windows) {
    const file = join(profileDir, `${base}.cpuprofile`)
    let summary: ProfileSummary
    try {
      summary = summariseProfile(readProfile(file), 25, window)
    } catch (err) {
      fail(`could not read the CPU profile ${file}: ${(err as Error).message}`)
      continue
    }
    process.stdout.write(`\n${formatSummary(`${what} (main thread; ${file})`, summary)}\n`)
    out[name] = {
      busyMs: Math.round(summary.busyMs),
      windowMs: Math.round(summary.totalMs),
      topSelf: summary.self.slice(0, 12).map((r) => ({ name: r.name, ms: Math.round(r.ms) })),
      topPackages: summary.packages.slice(0, 8).map((r) => ({ name: r.name, ms: Math.round(r.ms) }))
    }
  }
  return out
}

interface ReportContext {
  mode: Mode
  root: string
  nodeArgs: string[]
  idleRss: number | undefined
  directIdleRss: number | undefined
  generatorMibps: number
  loadAtStart: number
  seconds: number
  quietWaitedMs: number
  startedBusy: number
}

function windowJson (rss: RssWindow): Record<string, number | null | Record<string, number | null>> {
  return {
    peakRssMiB: round(rss.peak / MiB),
    polledPeakRssMiB: round(rss.peakPolled / MiB),
    hwmMiB: round(rss.hwm === undefined ? undefined : rss.hwm / MiB),
    cpuSeconds: round(rss.cpuSeconds, 2),
    sysSeconds: round(rss.sysSeconds, 2),
    benchCpuSeconds: round(rss.selfCpuSeconds, 2),
    threadCpuSeconds: Object.fromEntries(Object.entries(rss.threads).map(([name, s]) => [name, round(s, 2)])),
    otherCpuSeconds: round(rss.otherCpuSeconds, 2),
    kernelCpuSeconds: round(rss.kernelCpuSeconds, 2)
  }
}

/** Everything the JSON line carries; the tables are printed from the same figures. */
function buildReport (rows: IngestRow[], download: DownloadRow, ctx: ReportContext): Record<string, unknown> {
  const ingest: Record<string, unknown> = {}
  for (const group of [...new Set(rows.map((r) => r.group))]) {
    const runs = rows.filter((r) => r.group === group && r.direct !== undefined)
    // headline: the median of the pairs' ratios (the two sides of a pair ran back to back, so
    // they saw the same machine), over the pairs that other processes left alone when there are
    // any; the best of each side is kept for reference
    const calm = runs.filter((r) => !disturbed(r.rest.rss) && (r.direct === undefined || !disturbed(r.direct.rss)))
    const counted = calm.length > 0 ? calm : runs
    const ratio = median(counted.map((r) => r.ratio ?? 0))
    const rest = Math.max(...runs.map((r) => r.rest.mibps))
    const direct = Math.max(...runs.map((r) => r.direct?.mibps ?? 0))
    ingest[group] = {
      runs: runs.length,
      pairsCounted: counted.length,
      ratio: round(ratio, 3),
      restMedianMiBps: round(median(runs.map((r) => r.rest.mibps))),
      directMedianMiBps: round(median(runs.map((r) => r.direct?.mibps ?? 0))),
      restBestMiBps: round(rest),
      directBestMiBps: round(direct),
      bestOfRatio: round(rest / direct, 3),
      target: TARGET_INGEST_RATIO,
      met: ratio >= TARGET_INGEST_RATIO
    }
  }
  const oneGiB = rows.filter((r) => r.size === GiB)
  const uploadPeak = Math.max(0, ...oneGiB.map((r) => r.rest.rss.peak))
  const memoryRows = oneGiB.length > 0 ? { upload: uploadPeak, download: download.size === GiB ? download.rss.peak : 0 } : undefined
  const peak = memoryRows === undefined ? undefined : Math.max(memoryRows.upload, memoryRows.download)
  return {
    version: 1,
    mode: ctx.mode,
    nodeOptions: ctx.nodeArgs,
    serverRoot: ctx.root,
    node: process.version,
    platform: platform(),
    cpus: cpus().length,
    memTotalMiB: round(totalmem() / MiB, 0),
    loadAverageAtStart: round(ctx.loadAtStart, 2),
    quietWaitSeconds: round(ctx.quietWaitedMs / 1000),
    pageCache: { dropped: cacheDropped, kept: cacheKept },
    transfersStartedBusy: ctx.startedBusy,
    seconds: round(ctx.seconds),
    generatorMiBps: round(ctx.generatorMibps, 0),
    serverIdleRssMiB: round(ctx.idleRss === undefined ? undefined : ctx.idleRss / MiB),
    directIdleRssMiB: round(ctx.directIdleRss === undefined ? undefined : ctx.directIdleRss / MiB),
    runs: rows.map((r) => ({
      label: r.label,
      size: r.size,
      sha256: r.sha256,
      cid: r.rest.cid,
      rest: { ms: round(r.rest.ms, 0), tailMs: round(r.rest.tailMs, 0), MiBps: round(r.rest.mibps), server: windowJson(r.rest.rss), disturbed: disturbed(r.rest.rss) },
      direct: r.direct === undefined
        ? null
        : { ms: round(r.direct.ms, 0), setupMs: round(r.direct.setupMs, 0), MiBps: round(r.direct.mibps), process: windowJson(r.direct.rss), disturbed: disturbed(r.direct.rss), cidMatches: r.direct.cid === r.rest.cid },
      ratio: round(r.ratio, 3)
    })),
    download: {
      label: download.label,
      size: download.size,
      ms: round(download.ms, 0),
      MiBps: round(download.mibps),
      server: windowJson(download.rss),
      disturbed: disturbed(download.rss),
      sha256: download.sha256,
      expectedSha256: download.expectedSha256,
      sha256Match: download.match
    },
    ingest,
    memory: memoryRows === undefined || peak === undefined
      ? null
      : {
          uploadPeakRssMiB: round(memoryRows.upload / MiB),
          downloadPeakRssMiB: round(memoryRows.download / MiB),
          peakRssMiB: round(peak / MiB),
          targetMiB: TARGET_PEAK_RSS_BYTES / MiB,
          met: peak < TARGET_PEAK_RSS_BYTES
        }
  }
}

function cpu (rss: RssWindow): string {
  return `${rss.cpuSeconds.toFixed(2)} (${rss.sysSeconds.toFixed(2)})`
}

function others (rss: RssWindow): string {
  return `${rss.otherCpuSeconds.toFixed(1)}${disturbed(rss) ? '*' : ''}`
}

function formatReport (report: Record<string, unknown>, rows: IngestRow[], download: DownloadRow): string {
  const lines: string[] = []
  const table = (header: string[], body: string[][]): void => {
    const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)))
    const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd()
    lines.push(line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line))
  }
  lines.push('', `Atlas bench: node ${process.version}, ${cpus().length} CPUs, ${(totalmem() / GiB).toFixed(1)} GiB RAM, load ${report.loadAverageAtStart as number} at start, ${report.seconds as number} s`)
  lines.push(`payload: AES-128-CTR keystream in 1 MiB chunks (generator + sha256 ${report.generatorMiBps as number} MiB/s); idle RSS: server ${report.serverIdleRssMiB as number} MiB, direct ${report.directIdleRssMiB as number} MiB`)
  const nodeOptions = report.nodeOptions as string[]
  lines.push(`Node options of both children: ${nodeOptions.length === 0 ? 'none (as `npm start` runs the server)' : nodeOptions.join(' ')}`)

  lines.push('', 'Ingest: REST PUT into an offline IPFS bucket vs unixfs(helia).addByteStream of the same bytes', '')
  table(
    ['run', 'REST s', 'tail s', 'REST MiB/s', 'server RSS MiB', 'server CPU s (sys)', 'others CPU s', 'direct s', 'direct MiB/s', 'direct RSS MiB', 'direct CPU s (sys)', 'others CPU s', 'REST/direct'],
    rows.map((r) => [
      r.label,
      (r.rest.ms / 1000).toFixed(2),
      (r.rest.tailMs / 1000).toFixed(2),
      r.rest.mibps.toFixed(1),
      mib(r.rest.rss.peak),
      cpu(r.rest.rss),
      others(r.rest.rss),
      r.direct === undefined ? '-' : (r.direct.ms / 1000).toFixed(2),
      r.direct === undefined ? '-' : r.direct.mibps.toFixed(1),
      r.direct === undefined ? '-' : mib(r.direct.rss.peak),
      r.direct === undefined ? '-' : cpu(r.direct.rss),
      r.direct === undefined ? '-' : others(r.direct.rss),
      r.ratio === undefined ? '-' : r.ratio.toFixed(2)
    ])
  )

  lines.push('', 'Where the CPU went: seconds (user + system) by thread of the server and of the direct process, and the client (this process)', '')
  const thread = (rss: RssWindow, name: string): string => (rss.threads[name] ?? 0).toFixed(2)
  const otherThreads = (rss: RssWindow): string => Object.entries(rss.threads)
    .filter(([name]) => !['MainThread', 'V8Worker', 'libuv-worker', 'WorkerThread'].includes(name))
    .reduce((sum, [, s]) => sum + s, 0).toFixed(2)
  table(
    ['run', 'server main', 'V8 helpers', 'libuv pool', 'digest worker', 'other', 'client', 'direct main', 'V8 helpers', 'libuv pool'],
    rows.map((r) => [
      r.label,
      thread(r.rest.rss, 'MainThread'),
      thread(r.rest.rss, 'V8Worker'),
      thread(r.rest.rss, 'libuv-worker'),
      thread(r.rest.rss, 'WorkerThread'),
      otherThreads(r.rest.rss),
      r.rest.rss.selfCpuSeconds.toFixed(2),
      r.direct === undefined ? '-' : thread(r.direct.rss, 'MainThread'),
      r.direct === undefined ? '-' : thread(r.direct.rss, 'V8Worker'),
      r.direct === undefined ? '-' : thread(r.direct.rss, 'libuv-worker')
    ])
  )

  lines.push('', 'Download: REST GET of the largest object, hashed by the client', '')
  table(
    ['object', 'seconds', 'MiB/s', 'server RSS MiB', 'server CPU s (sys)', 'others CPU s', 'sha256'],
    [[download.label, (download.ms / 1000).toFixed(2), download.mibps.toFixed(1), mib(download.rss.peak), cpu(download.rss), others(download.rss), download.match ? 'match' : 'MISMATCH']]
  )

  lines.push('', 'Targets', '')
  const verdict = (met: boolean): string => (met ? 'met' : 'MISSED')
  const targets: string[][] = []
  for (const [group, g] of Object.entries(report.ingest as Record<string, { runs: number, pairsCounted: number, ratio: number, restBestMiBps: number, directBestMiBps: number, bestOfRatio: number, met: boolean }>)) {
    const pairs = g.pairsCounted === g.runs ? `${g.runs}` : `${g.pairsCounted} undisturbed of ${g.runs}`
    const how = g.runs > 1
      ? `median of ${pairs} pairs; best of each side ${g.restBestMiBps} / ${g.directBestMiBps} MiB/s = ${g.bestOfRatio.toFixed(2)}`
      : 'one pair'
    targets.push([`ingest ${group}, REST/direct`, `${g.ratio.toFixed(2)} (${how})`, `>= ${TARGET_INGEST_RATIO}`, verdict(g.met)])
  }
  const memory = report.memory as { uploadPeakRssMiB: number, downloadPeakRssMiB: number, peakRssMiB: number, met: boolean } | null
  if (memory !== null) {
    targets.push(['server peak RSS moving 1 GiB', `${memory.peakRssMiB} MiB (upload ${memory.uploadPeakRssMiB}, download ${memory.downloadPeakRssMiB})`, `< ${TARGET_PEAK_RSS_BYTES / MiB} MiB`, verdict(memory.met)])
  } else {
    targets.push(['server peak RSS moving 1 GiB', `not measured in this mode (${sizeLabel(download.size)}: ${mib(download.rss.peak)} MiB)`, `< ${TARGET_PEAK_RSS_BYTES / MiB} MiB`, '-'])
  }
  targets.push([`download ${download.label}, sha256`, download.match ? 'equal to the upload' : 'DIFFERENT', 'equal', download.match ? 'ok' : 'ERROR'])
  table(['figure', 'value', 'target', ''], targets)

  lines.push('')
  lines.push('REST s: request start to response end (HTTP, MD5 + SHA-256, import, pin, metadata commit); tail s: from the last body byte sent.')
  lines.push('direct s: addByteStream start to root CID, in a fresh repository (Helia start/stop excluded).')
  lines.push('RSS: the larger of VmRSS polled every 50 ms and VmHWM (reset before each transfer). CPU: user + system, all threads.')
  const cache = report.pageCache as { dropped: number, kept: number }
  const cacheNote = cache.kept === 0 ? 'drop the page cache' : cache.dropped === 0 ? 'the page cache kept (dropping it needs root)' : `the page cache dropped before ${cache.dropped} transfers, kept before ${cache.kept}`
  lines.push(`Before each transfer: sync, ${cacheNote}, then wait for other processes to go quiet (waited ${report.quietWaitSeconds as number} s in all; ${report.transfersStartedBusy as number} transfers started while the machine was still busy).`)
  lines.push(`others CPU s: CPU time of every other user-space process meanwhile; * = more than ${DISTURBED_SHARE * 100}% of one CPU: the figure is disturbed.`)
  return lines.join('\n')
}

/** The IPC replies of the direct child, one at a time; rejects when the child dies. */
function replyQueue (child: ChildProcess): { next: () => Promise<DirectReply> } {
  const queue: DirectReply[] = []
  let waiter: { resolve: (r: DirectReply) => void, reject: (e: Error) => void } | undefined
  let gone: Error | undefined
  child.on('message', (message: DirectReply) => {
    if (waiter !== undefined) {
      const w = waiter
      waiter = undefined
      w.resolve(message)
    } else queue.push(message)
  })
  child.once('exit', (code, signal) => {
    gone = new Error(`The direct Helia process exited (code ${code}, signal ${signal})`)
    waiter?.reject(gone)
    waiter = undefined
  })
  return {
    next: async () => {
      const queued = queue.shift()
      if (queued !== undefined) return queued
      if (gone !== undefined) throw gone
      return await new Promise<DirectReply>((resolve, reject) => { waiter = { resolve, reject } })
    }
  }
}

function expectReply<T extends DirectReply['type']> (reply: DirectReply, type: T): Extract<DirectReply, { type: T }> {
  if (reply.type === 'failed') throw new Error(`direct Helia failed: ${reply.error}`)
  if (reply.type !== type) throw new Error(`direct Helia said ${reply.type}, expected ${type}`)
  return reply as Extract<DirectReply, { type: T }>
}

async function exited (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  await new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  process.stderr.write(`\nbench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
