/**
 * The BitTorrent figures of `npm run bench` (issue #4), measured by ratios inside one run:
 *
 * (a) ingest: REST PUT of 256 MiB into an `ipfs+bittorrent` bucket against the same size into an
 *     `ipfs` bucket, same server, back to back. Target: (MiB/s both) / (MiB/s ipfs only) >= 0.7.
 * (b) seeding: aria2c downloads one 256 MiB content from Atlas's BitTorrent peer, and the same
 *     torrent (same infohash) from another aria2c that seeds the same bytes, with the same aria2c
 *     options, over loopback. Target: Atlas's throughput / aria2c's >= 0.8.
 *
 * A report, not a test: it prints tables, one `BENCH_BT_JSON {...}` line and whether each target
 * is met, and exits 0 either way. It exits 1 only when the data is wrong (a downloaded SHA-256
 * that differs from the upload, a content id that differs from the bytes sent, an infohash that
 * changes when the .torrent is rewritten) or the run fails (aria2c missing or failing, a request
 * refused).
 *
 * How (b) makes sure each download has one source, the intended one:
 * - the .torrent is Atlas's own (`GET /bt/{infohash}.torrent`) with its `url-list` (the webseed:
 *   HTTP, not the seeder) and its trackers removed, and one `announce` put in: a bittorrent-tracker
 *   on 127.0.0.1 run by this process. Tracker A is Atlas's (`ATLAS_BT_ANNOUNCE`), tracker B the
 *   reference seeder's; the info dictionary is untouched, so both files have the same infohash;
 * - the downloading aria2c runs with DHT, LPD and PEX off, so a tracker is the only way it finds
 *   peers, and each tracker knows one seeder;
 * - Atlas runs with DHT, LSD, UPnP and NAT-PMP off and tracker A configured (it also announces to
 *   its built-in tracker, on by default, which no download is told about).
 *
 * What (b) measures, per download: the wall time of the aria2c process (spawn to exit, which
 * includes its one-second scheduling ticks: announce, connect, final announce, exit; a few seconds
 * that do not depend on the seeder) and the transfer window (from the first to the last byte the
 * downloader writes to its file, polled every few ms from its /proc/<pid>/io `wchar`, with
 * aria2c's disk cache off so that every block is written as it arrives). The headline ratio is
 * the transfer window's: the seeder's speed without the fixed overhead that both runs share;
 * the wall time ratio is printed next to it.
 *
 * Each part starts with an uncounted warm-up round (round 0): a server's first uploads and first
 * upload to a peer compile the JavaScript of their paths, and right after the ingest the garbage
 * collector is still working off what it left; the counted rounds measure the steady state.
 *
 *   npx node bench/bittorrent.ts [--quick] [--size-mib N] [--ingest-rounds N] [--seed-rounds N]
 *                                [--profile [--profile-dir DIR]] [--node-arg OPT]... [--root DIR] [--keep]
 *
 * `--quick`: one counted round of each (the default is three); `--seed-rounds 0` skips (b);
 * `--profile`: `--cpu-prof` on the server, then where its main thread spent the last upload into
 * each bucket and the last download from Atlas.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { cpus, platform, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import bencode from 'bencode'
import { Server as TrackerServer } from 'bittorrent-tracker'
import { canonicalIdFromSha256 } from '../src/core/content-id.ts'
import { MiB, payloadBytes, payloadSha256, type Payload } from './bytes.ts'
import { median, mibps, round } from './stats.ts'
import { jsonRequest, uploadPayload } from './client.ts'
import { childrenCpuSeconds, ProcessSampler, waitForQuiet, type RssWindow } from './proc.ts'
import { formatSummary, monotonicUs, readProfile, summariseProfile, type ProfileWindow } from './profile-summary.ts'
import { AtlasServer, createAccount, freePort } from './server.ts'

const DEFAULT_ROOT = resolve(import.meta.dirname, '..')

/** Ingest into ipfs+bittorrent must reach this share of ingest into ipfs alone. */
export const TARGET_INGEST_RATIO = 0.7
/** aria2c downloading from Atlas must reach this share of aria2c downloading from aria2c. */
export const TARGET_SEED_RATIO = 0.8
/** A transfer during which other processes used more than this share of one CPU is marked. */
export const DISTURBED_SHARE = 0.25
/** Longest wait for a quiet machine before one transfer, and in all. */
const QUIET_WAIT_PER_TRANSFER_MS = 15_000
const QUIET_WAIT_TOTAL_MS = 60_000
/** One aria2c download may take this long before the run counts as failed. */
const ARIA2C_TIMEOUT_MS = 180_000
/** How long a seeder may take to appear on its tracker. */
const SEEDER_READY_TIMEOUT_MS = 60_000
/** Polling period of the downloader's written bytes. */
const WCHAR_POLL_MS = 2
/** The block size aria2c requests, and the size of one request message on the wire. */
const BLOCK_BYTES = 16 * 1024
const REQUEST_BYTES = 17

/**
 * aria2c options of every download, the same for both seeders. No DHT, LPD or PEX (a tracker is
 * the only source of peers), IPv4 on loopback, no preallocation (it would write the whole file
 * before the transfer), no disk cache (every block is written when it arrives, so `wchar` follows
 * the transfer), no console output (so `wchar` counts the file, the control file and the messages
 * to peers and tracker), exit when complete. The pipelining is aria2c's own (1.36:
 * DefaultBtInteractive): 6 requests of 16 KiB in flight at first, doubled whenever a quarter of
 * them came back in one receive round, up to 256 (4 MiB). `--bt-request-peer-speed-limit` (50K)
 * only makes aria2c look for more peers when slower than that; with one peer it changes nothing,
 * and it is left at its default in both runs.
 */
export const ARIA2C_COMMON = [
  '--no-conf=true',
  '--enable-dht=false',
  '--enable-dht6=false',
  '--enable-peer-exchange=false',
  '--bt-enable-lpd=false',
  '--disable-ipv6=true',
  '--interface=127.0.0.1',
  '--quiet=true'
]
export const ARIA2C_DOWNLOAD = [
  ...ARIA2C_COMMON,
  '--seed-time=0',
  '--file-allocation=none',
  '--disk-cache=0',
  '--check-integrity=false'
]
/** The reference seeder: the file is complete on disk; seed it without hashing it first, forever. */
export const ARIA2C_SEED = [
  ...ARIA2C_COMMON,
  '--seed-ratio=0.0',
  '--bt-seed-unverified=true'
]

type Mode = 'full' | 'quick' | 'profile'

interface IngestRun {
  round: number
  bucket: 'both' | 'ipfs'
  payload: Payload
  sha256: string
  ms: number
  mibps: number
  tailMs: number
  server: RssWindow
  window: ProfileWindow
  btih?: string
}

interface SeedRun {
  round: number
  seeder: 'atlas' | 'aria2c'
  wallMs: number
  /** First to last byte written by the downloader */
  windowMs: number
  firstByteMs: number
  wallMibps: number
  windowMibps: number
  seederCpu: RssWindow
  downloaderCpuSeconds: number
  sha256: string
  match: boolean
  window: ProfileWindow
}

const errors: string[] = []

function fail (message: string): void {
  errors.push(message)
  process.stderr.write(`\n!!! BENCH ERROR: ${message}\n\n`)
}

function log (line: string): void {
  process.stderr.write(`bench bt: ${line}\n`)
}

function disturbed (w: RssWindow): boolean {
  return w.otherCpuSeconds > DISTURBED_SHARE * w.wallSeconds
}

let quietWaitedMs = 0
let startedBusy = 0

/** Before a transfer: flush dirty pages, then wait (within a budget) for a quiet machine. */
async function settle (): Promise<void> {
  spawnSync('sync', { stdio: 'ignore' })
  const budget = Math.min(QUIET_WAIT_PER_TRANSFER_MS, QUIET_WAIT_TOTAL_MS - quietWaitedMs)
  const { waitedMs, quiet } = await waitForQuiet(Math.max(0, budget))
  quietWaitedMs += waitedMs
  if (!quiet) startedBusy++
}

interface LoopbackTracker {
  url: string
  /** Peers that announced the torrent as complete */
  seeders: (infoHash: string) => number
  close: () => Promise<void>
}

/** An HTTP bittorrent-tracker on 127.0.0.1 (no UDP, no WebSocket). */
async function startTracker (): Promise<LoopbackTracker> {
  const server = new TrackerServer({ http: true, udp: false, ws: false, stats: false })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { resolve() })
  })
  const address = server.http?.address()
  if (address === null || address === undefined || typeof address === 'string') throw new Error('the tracker has no address')
  return {
    url: `http://127.0.0.1:${address.port}/announce`,
    seeders: (infoHash) => (server.torrents[infoHash] as unknown as { complete?: number } | undefined)?.complete ?? 0,
    close: async () => { await new Promise<void>((resolve) => { server.close(() => { resolve() }) }) }
  }
}

async function waitFor (what: string, test: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!test()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Bytes `pid` has written through write(2) and friends, or undefined once it is gone. */
function readWchar (pid: number): number | undefined {
  try {
    const match = /^wchar:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))
    return match === null ? undefined : Number(match[1])
  } catch {
    return undefined
  }
}

async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

async function exited (child: ChildProcess): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode }
  return await new Promise((resolve) => child.once('exit', (code, signal) => { resolve({ code, signal }) }))
}

/**
 * The .torrent aria2c gets: Atlas's info dictionary untouched (so the same infohash), `announce`
 * set to one tracker, no `announce-list`, no `url-list` (no webseed).
 */
function torrentFor (original: Uint8Array, infoHash: string, announce: string): { bytes: Uint8Array, name: string, length: number } {
  const decoded = bencode.decode(original) as Record<string, unknown>
  const info = decoded.info as Record<string, unknown> | undefined
  if (info === undefined) throw new Error('The .torrent has no info dictionary')
  const infoBytes = bencode.encode(info as never)
  const rehashed = createHash('sha1').update(infoBytes).digest('hex')
  if (rehashed !== infoHash) fail(`the .torrent's info dictionary hashes to ${rehashed} once re-encoded, not ${infoHash}`)
  const bytes = bencode.encode({ announce, info: info as never })
  return { bytes, name: Buffer.from(info.name as Uint8Array).toString('utf8'), length: Number(info.length) }
}

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'profile-dir': { type: 'string' },
      'size-mib': { type: 'string', default: '256' },
      'ingest-rounds': { type: 'string' },
      'seed-rounds': { type: 'string' },
      'node-arg': { type: 'string', multiple: true, default: [] },
      root: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  if (values.help === true) {
    process.stdout.write('usage: node bench/bittorrent.ts [--quick] [--size-mib N] [--ingest-rounds N] [--seed-rounds N] [--profile [--profile-dir DIR]] [--node-arg OPT]... [--root CHECKOUT] [--keep]\n')
    return 0
  }
  const mode: Mode = values.profile === true ? 'profile' : values.quick === true ? 'quick' : 'full'
  const size = Number(values['size-mib']) * MiB
  const ingestRounds = Number(values['ingest-rounds'] ?? (mode === 'full' ? 3 : 1))
  const seedRounds = Number(values['seed-rounds'] ?? (mode === 'full' ? 3 : 1))
  if (!Number.isSafeInteger(size) || size <= 0 || !(ingestRounds >= 1) || !(seedRounds >= 0)) throw new Error('--size-mib and --ingest-rounds take positive numbers, --seed-rounds a number >= 0 (0: no seeding figures)')
  const root = resolve(values.root ?? DEFAULT_ROOT)
  const nodeArgs = values['node-arg'] ?? []

  const aria2cVersion = spawnSync('aria2c', ['--version'], { encoding: 'utf8' })
  if (aria2cVersion.status !== 0) {
    fail('aria2c is not installed (apt-get install -y aria2): the seeding figures cannot be measured')
    process.stdout.write(`BENCH_BT_JSON ${JSON.stringify({ version: 1, errors })}\n`)
    return 1
  }
  const aria2c = (aria2cVersion.stdout.split('\n')[0] ?? '').trim()

  const tmp = await mkdtemp(join(tmpdir(), 'atlas-bench-bt-'))
  const profileDir = mode === 'profile' ? resolve(values['profile-dir'] ?? join(tmpdir(), `atlas-bench-bt-profiles-${Date.now()}`)) : undefined
  const startedAt = performance.now()
  let server: AtlasServer | undefined
  let seeder: ChildProcess | undefined
  const trackers: LoopbackTracker[] = []
  log(`node ${process.version}, ${cpus().length} CPUs, ${aria2c}, server from ${root}, temp dir ${tmp}${profileDir === undefined ? '' : `, profiles in ${profileDir}`}`)

  try {
    const atlasTracker = await startTracker()
    trackers.push(atlasTracker)
    const referenceTracker = await startTracker()
    trackers.push(referenceTracker)
    server = await AtlasServer.start({
      root,
      dataDir: join(tmp, 'server'),
      execArgv: [...(profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--cpu-prof-name=server-bt.cpuprofile']), ...nodeArgs],
      env: {
        ATLAS_BT_ENABLED: 'true',
        ATLAS_BT_PORT: String(await freePort()),
        ATLAS_BT_ANNOUNCE: atlasTracker.url,
        ATLAS_BT_DHT: 'false',
        ATLAS_BT_LSD: 'false',
        ATLAS_BT_UPNP: 'false',
        ATLAS_BT_NATPMP: 'false'
      }
    })
    log(`server pid ${server.pid} at ${server.url}, BitTorrent peer port ${server.env.ATLAS_BT_PORT as string}`)
    const account = await createAccount(root, server.env, 'bench-bt')
    for (const [name, backends] of [['bt-both', ['ipfs', 'bittorrent']], ['bt-ipfs', ['ipfs']]] as const) {
      const res = await jsonRequest('PUT', `${server.url}/v1/buckets/${name}`, account.token, { backends })
      if (res.status !== 200 && res.status !== 201) throw new Error(`PUT /v1/buckets/${name}: ${res.status} ${JSON.stringify(res.body)}`)
    }

    // (a) ingest: every upload its own bytes (a keystream of its own), so that none meets blocks
    // or files an earlier one left; the order alternates between rounds. Round 0 warms up and is
    // not counted (the server's first uploads compile the JavaScript of the path)
    const ingest: IngestRun[] = []
    const ingestWarmup: IngestRun[] = []
    for (let r = 0; r <= ingestRounds; r++) {
      const order: Array<'both' | 'ipfs'> = r % 2 === 1 ? ['ipfs', 'both'] : ['both', 'ipfs']
      for (const bucket of order) {
        const payload: Payload = { size, seed: `bt-ingest-${r}-${bucket}` }
        const { sha256 } = payloadSha256(payload)
        await settle()
        const sampler = new ProcessSampler(server.pid)
        sampler.start()
        const fromUs = monotonicUs()
        const res = await uploadPayload(`${server.url}/v1/buckets/bt-${bucket}/objects/ingest-${r}.bin`, account.token, payload)
        const window = { fromUs, toUs: monotonicUs() }
        const cpu = sampler.stop()
        if (res.status !== 200) throw new Error(`PUT into bt-${bucket}: ${res.status} ${JSON.stringify(res.body)}\n${server.logTail}`)
        const body = res.body as { size?: number, contentId?: string, addresses?: { ipfs?: string, btih?: string } }
        const contentId = canonicalIdFromSha256(Buffer.from(sha256, 'hex'))
        if (body.size !== size) fail(`ingest ${r} ${bucket}: the server stored ${body.size} bytes, ${size} were sent`)
        if (body.contentId !== contentId) fail(`ingest ${r} ${bucket}: content id ${body.contentId}, expected ${contentId} from the bytes sent`)
        if (body.addresses?.ipfs === undefined) fail(`ingest ${r} ${bucket}: no IPFS address`)
        if (bucket === 'both' && body.addresses?.btih === undefined) fail(`ingest ${r} both: no BitTorrent address`)
        const run: IngestRun = { round: r, bucket, payload, sha256, ms: res.ms, mibps: mibps(size, res.ms), tailMs: res.tailMs, server: cpu, window, btih: body.addresses?.btih }
        if (r === 0) ingestWarmup.push(run)
        else ingest.push(run)
        log(`${r === 0 ? 'warm-up' : `ingest ${r}`} ${bucket === 'both' ? 'ipfs+bittorrent' : 'ipfs'}: ${run.mibps.toFixed(1)} MiB/s, server CPU ${cpu.cpuSeconds.toFixed(2)} s${disturbed(cpu) ? ' (disturbed)' : ''}`)
      }
    }

    const seed: SeedRun[] = []
    const warmup: SeedRun[] = []
    if (seedRounds > 0) {
      // (b) seeding: the last content uploaded into the ipfs+bittorrent bucket
      const content = ingest.filter((r) => r.bucket === 'both').at(-1) as IngestRun
      const infoHash = content.btih as string
      const torrentRes = await fetch(`${server.url}/bt/${infoHash}.torrent`, { headers: { authorization: `Bearer ${account.token}` } })
      if (torrentRes.status !== 200) throw new Error(`GET /bt/${infoHash}.torrent: ${torrentRes.status} ${await torrentRes.text()}`)
      const original = new Uint8Array(await torrentRes.arrayBuffer())
      const atlasTorrent = torrentFor(original, infoHash, atlasTracker.url)
      const referenceTorrent = torrentFor(original, infoHash, referenceTracker.url)
      if (atlasTorrent.length !== size) fail(`the .torrent says ${atlasTorrent.length} bytes, ${size} were uploaded`)
      const atlasTorrentPath = join(tmp, 'atlas.torrent')
      const referenceTorrentPath = join(tmp, 'reference.torrent')
      await writeFile(atlasTorrentPath, atlasTorrent.bytes)
      await writeFile(referenceTorrentPath, referenceTorrent.bytes)
      await waitFor('Atlas to announce the torrent to its tracker', () => atlasTracker.seeders(infoHash) >= 1, SEEDER_READY_TIMEOUT_MS)

      // the reference seeder's copy: the same bytes from the generator (so in the page cache, as
      // Atlas's freshly written data file is)
      const seedDir = join(tmp, 'aria2c-seed')
      await mkdir(seedDir)
      const seedFile = join(seedDir, referenceTorrent.name)
      const handle = await open(seedFile, 'wx')
      const written = createHash('sha256')
      try {
        for (const chunk of payloadBytes(content.payload)) {
          written.update(chunk)
          await handle.write(chunk)
        }
      } finally {
        await handle.close()
      }
      if (written.digest('hex') !== content.sha256) fail('the reference seeder\'s copy differs from the uploaded bytes')
      const seedPort = await freePort()
      seeder = spawn('aria2c', [...ARIA2C_SEED, `--listen-port=${seedPort}`, '--dir', seedDir, referenceTorrentPath], { stdio: ['ignore', 'ignore', 'pipe'] })
      let seederErr = ''
      seeder.stderr?.on('data', (d: Buffer) => { seederErr = (seederErr + d.toString('utf8')).slice(-8192) })
      const seederPid = seeder.pid as number
      await waitFor('the aria2c seeder to announce the torrent to its tracker', () => {
        if (seeder?.exitCode !== null) throw new Error(`the aria2c seeder exited (${seeder?.exitCode}): ${seederErr}`)
        return referenceTracker.seeders(infoHash) >= 1
      }, SEEDER_READY_TIMEOUT_MS)
      log(`content ${infoHash} (${size / MiB} MiB, ${atlasTorrent.name}): Atlas and aria2c (pid ${seederPid}, port ${seedPort}) both seed it`)

      // round 0 warms up and is not counted: the server's first upload to a peer compiles the
      // JavaScript of that path, and the garbage collector still works off the ingest before it
      for (let r = 0; r <= seedRounds; r++) {
        const order: Array<'atlas' | 'aria2c'> = r % 2 === 1 ? ['atlas', 'aria2c'] : ['aria2c', 'atlas']
        for (const side of order) {
          await settle()
          const run = await download({
            round: r,
            side,
            torrent: side === 'atlas' ? atlasTorrentPath : referenceTorrentPath,
            out: join(tmp, `download-${r}-${side}`),
            name: atlasTorrent.name,
            size,
            seederPid: side === 'atlas' ? server.pid : seederPid,
            expectedSha256: content.sha256
          })
          if (r === 0) warmup.push(run)
          else seed.push(run)
          log(`${r === 0 ? 'warm-up' : `seed ${r}`} ${side}: wall ${(run.wallMs / 1000).toFixed(2)} s = ${run.wallMibps.toFixed(1)} MiB/s, transfer ${(run.windowMs / 1000).toFixed(2)} s = ${run.windowMibps.toFixed(0)} MiB/s` +
            ` (first byte after ${(run.firstByteMs / 1000).toFixed(2)} s), seeder CPU ${run.seederCpu.cpuSeconds.toFixed(2)} s, downloader CPU ${run.downloaderCpuSeconds.toFixed(2)} s${disturbed(run.seederCpu) ? ' (disturbed)' : ''}`)
        }
      }
      seeder.kill('SIGTERM')
      await exited(seeder)
      seeder = undefined
    }
    const serverExit = await server.stop()
    if (serverExit !== 0) log(`the server exited with code ${serverExit}:\n${server.logTail}`)
    server = undefined

    const report = buildReport(ingest, ingestWarmup, seed, warmup, { mode, size, aria2c, seconds: (performance.now() - startedAt) / 1000, root, nodeArgs })
    process.stdout.write(`${formatReport(report, [...ingestWarmup, ...ingest], seed, warmup)}\n`)
    if (profileDir !== undefined) report.profiles = summariseProfiles(join(profileDir, 'server-bt.cpuprofile'), ingest, seed)
    process.stdout.write(`BENCH_BT_JSON ${JSON.stringify({ ...report, errors })}\n`)
    return errors.length === 0 ? 0 : 1
  } finally {
    if (seeder !== undefined && seeder.exitCode === null && seeder.signalCode === null) {
      seeder.kill('SIGKILL')
      await exited(seeder)
    }
    if (server !== undefined) await server.kill()
    for (const tracker of trackers) await tracker.close()
    if (values.keep === true) log(`kept ${tmp}`)
    else await rm(tmp, { recursive: true, force: true })
  }
}

interface DownloadPlan {
  round: number
  side: 'atlas' | 'aria2c'
  torrent: string
  out: string
  name: string
  size: number
  seederPid: number
  expectedSha256: string
}

/** One aria2c download, timed from spawn to exit and from its first to its last byte written. */
async function download (plan: DownloadPlan): Promise<SeedRun> {
  await mkdir(plan.out)
  const port = await freePort()
  const sampler = new ProcessSampler(plan.seederPid)
  const childCpuBefore = childrenCpuSeconds()
  sampler.start()
  const fromUs = monotonicUs()
  const began = performance.now()
  const child = spawn('aria2c', [...ARIA2C_DOWNLOAD, `--listen-port=${port}`, '--dir', plan.out, plan.torrent], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString('utf8')).slice(-8192) })
  const pid = child.pid as number
  // wchar also counts what aria2c writes to sockets and to its control file: under 2 KiB before
  // the first block, and a 17-byte request per 16 KiB block after. So the transfer starts when a
  // block's worth has been written and ends when the whole file and its requests have.
  const lastThreshold = plan.size + REQUEST_BYTES * Math.ceil(plan.size / BLOCK_BYTES)
  let base: number | undefined
  let first: number | undefined
  let last: number | undefined
  const poll = (): void => {
    const wchar = readWchar(pid)
    if (wchar === undefined) return
    base ??= wchar
    const written = wchar - base
    if (written >= BLOCK_BYTES) first ??= performance.now() - began
    if (written >= lastThreshold) last ??= performance.now() - began
  }
  poll()
  const timer = setInterval(poll, WCHAR_POLL_MS)
  const killer = setTimeout(() => { child.kill('SIGKILL') }, ARIA2C_TIMEOUT_MS)
  const { code, signal } = await exited(child)
  clearInterval(timer)
  clearTimeout(killer)
  const wallMs = performance.now() - began
  const window = { fromUs, toUs: monotonicUs() }
  const seederCpu = sampler.stop()
  const downloaderCpuSeconds = childrenCpuSeconds() - childCpuBefore
  if (code !== 0) throw new Error(`aria2c (${plan.side} run ${plan.round}) exited with ${code ?? signal}: ${stderr}`)
  const sha256 = await sha256File(join(plan.out, plan.name))
  const match = sha256 === plan.expectedSha256
  if (!match) fail(`DOWNLOAD MISMATCH from ${plan.side} (run ${plan.round}): sha256 ${sha256}, uploaded ${plan.expectedSha256}`)
  await rm(plan.out, { recursive: true, force: true })
  // a poll may miss the last write when the process exits within one period: then it ended at exit
  const firstByteMs = first ?? wallMs
  const windowMs = Math.max((last ?? wallMs) - firstByteMs, WCHAR_POLL_MS)
  return {
    round: plan.round,
    seeder: plan.side,
    wallMs,
    windowMs,
    firstByteMs,
    wallMibps: mibps(plan.size, wallMs),
    windowMibps: mibps(plan.size, windowMs),
    seederCpu,
    downloaderCpuSeconds,
    sha256,
    match,
    window
  }
}

interface ReportContext {
  mode: Mode
  size: number
  aria2c: string
  seconds: number
  root: string
  nodeArgs: string[]
}

function cpuJson (w: RssWindow): Record<string, number | boolean | null> {
  return { cpuSeconds: round(w.cpuSeconds, 2), sysSeconds: round(w.sysSeconds, 2), otherCpuSeconds: round(w.otherCpuSeconds, 2), disturbed: disturbed(w) }
}

/** Median of per-round ratios (each round's two sides ran back to back). */
function pairRatios<T extends { round: number }> (runs: T[], isNum: (r: T) => boolean, value: (r: T) => number): number[] {
  const ratios: number[] = []
  for (const roundNo of [...new Set(runs.map((r) => r.round))]) {
    const inRound = runs.filter((r) => r.round === roundNo)
    const num = inRound.find(isNum)
    const den = inRound.find((r) => !isNum(r))
    if (num !== undefined && den !== undefined) ratios.push(value(num) / value(den))
  }
  return ratios
}

function ingestRunJson (r: IngestRun): Record<string, unknown> {
  return { round: r.round, bucket: r.bucket, ms: round(r.ms, 0), tailMs: round(r.tailMs, 0), MiBps: round(r.mibps), server: cpuJson(r.server), sha256: r.sha256, btih: r.btih ?? null }
}

function seedRunJson (r: SeedRun): Record<string, unknown> {
  return {
    round: r.round,
    seeder: r.seeder,
    wallMs: round(r.wallMs, 0),
    windowMs: round(r.windowMs, 0),
    firstByteMs: round(r.firstByteMs, 0),
    wallMiBps: round(r.wallMibps),
    windowMiBps: round(r.windowMibps),
    seederProcess: cpuJson(r.seederCpu),
    downloaderCpuSeconds: round(r.downloaderCpuSeconds, 2),
    sha256Match: r.match
  }
}

function buildReport (ingest: IngestRun[], ingestWarmup: IngestRun[], seed: SeedRun[], warmup: SeedRun[], ctx: ReportContext): Record<string, unknown> {
  const ingestRatios = pairRatios(ingest, (r) => r.bucket === 'both', (r) => r.mibps)
  const windowRatios = pairRatios(seed, (r) => r.seeder === 'atlas', (r) => r.windowMibps)
  const wallRatios = pairRatios(seed, (r) => r.seeder === 'atlas', (r) => r.wallMibps)
  const ingestRatio = median(ingestRatios)
  const windowRatio = median(windowRatios)
  const wallRatio = median(wallRatios)
  const side = (s: 'atlas' | 'aria2c'): Record<string, number | null> => {
    const runs = seed.filter((r) => r.seeder === s)
    return {
      windowMedianMiBps: round(median(runs.map((r) => r.windowMibps))),
      wallMedianMiBps: round(median(runs.map((r) => r.wallMibps))),
      wallMedianSeconds: round(median(runs.map((r) => r.wallMs)) / 1000, 2),
      seederCpuMedianSeconds: round(median(runs.map((r) => r.seederCpu.cpuSeconds)), 2)
    }
  }
  return {
    version: 1,
    mode: ctx.mode,
    node: process.version,
    platform: platform(),
    cpus: cpus().length,
    memTotalMiB: round(totalmem() / MiB, 0),
    serverRoot: ctx.root,
    nodeOptions: ctx.nodeArgs,
    aria2c: ctx.aria2c,
    sizeMiB: ctx.size / MiB,
    seconds: round(ctx.seconds),
    quietWaitSeconds: round(quietWaitedMs / 1000),
    transfersStartedBusy: startedBusy,
    ingest: {
      warmup: ingestWarmup.map(ingestRunJson),
      runs: ingest.map(ingestRunJson),
      ratios: ingestRatios.map((x) => round(x, 3)),
      ratio: round(ingestRatio, 3),
      bothMedianMiBps: round(median(ingest.filter((r) => r.bucket === 'both').map((r) => r.mibps))),
      ipfsMedianMiBps: round(median(ingest.filter((r) => r.bucket === 'ipfs').map((r) => r.mibps))),
      target: TARGET_INGEST_RATIO,
      met: ingestRatio >= TARGET_INGEST_RATIO
    },
    seed: seed.length === 0
      ? null
      : {
          aria2cDownloadOptions: ARIA2C_DOWNLOAD,
          aria2cSeedOptions: ARIA2C_SEED,
          warmup: warmup.map(seedRunJson),
          runs: seed.map(seedRunJson),
          atlas: side('atlas'),
          aria2c: side('aria2c'),
          windowRatios: windowRatios.map((x) => round(x, 3)),
          wallRatios: wallRatios.map((x) => round(x, 3)),
          windowRatio: round(windowRatio, 3),
          wallRatio: round(wallRatio, 3),
          target: TARGET_SEED_RATIO,
          met: windowRatio >= TARGET_SEED_RATIO,
          wallMet: wallRatio >= TARGET_SEED_RATIO
        }
  }
}

function formatReport (report: Record<string, unknown>, ingest: IngestRun[], seed: SeedRun[], warmup: SeedRun[]): string {
  const lines: string[] = []
  const table = (header: string[], body: string[][]): void => {
    const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)))
    const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd()
    lines.push(line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line))
  }
  const size = report.sizeMiB as number
  lines.push('', `Atlas BitTorrent bench: node ${process.version}, ${cpus().length} CPUs, ${report.aria2c as string}, ${size} MiB per transfer, ${report.seconds as number} s`)

  lines.push('', `(a) Ingest: REST PUT of ${size} MiB into an ipfs+bittorrent bucket and into an ipfs bucket (round 0 warms up, not counted)`, '')
  table(
    ['round', 'bucket', 'seconds', 'tail s', 'MiB/s', 'server CPU s (sys)', 'others CPU s'],
    ingest.map((r) => [String(r.round), r.bucket === 'both' ? 'ipfs+bittorrent' : 'ipfs', (r.ms / 1000).toFixed(2), (r.tailMs / 1000).toFixed(2), r.mibps.toFixed(1),
      `${r.server.cpuSeconds.toFixed(2)} (${r.server.sysSeconds.toFixed(2)})`, `${r.server.otherCpuSeconds.toFixed(1)}${disturbed(r.server) ? '*' : ''}`])
  )

  if (seed.length > 0) {
    lines.push('', `(b) Seeding: aria2c downloads ${size} MiB from one seeder over loopback (same torrent, same aria2c options; round 0 warms up, not counted)`, '')
    table(
      ['round', 'seeder', 'wall s', 'wall MiB/s', 'first byte s', 'transfer s', 'transfer MiB/s', 'seeder CPU s (sys)', 'aria2c CPU s', 'others CPU s', 'sha256'],
      [...warmup, ...seed].map((r) => [String(r.round), r.seeder === 'atlas' ? 'Atlas' : 'aria2c', (r.wallMs / 1000).toFixed(2), r.wallMibps.toFixed(1), (r.firstByteMs / 1000).toFixed(2),
        (r.windowMs / 1000).toFixed(2), r.windowMibps.toFixed(0), `${r.seederCpu.cpuSeconds.toFixed(2)} (${r.seederCpu.sysSeconds.toFixed(2)})`,
        r.downloaderCpuSeconds.toFixed(2), `${r.seederCpu.otherCpuSeconds.toFixed(1)}${disturbed(r.seederCpu) ? '*' : ''}`, r.match ? 'match' : 'MISMATCH'])
    )
  }

  const a = report.ingest as { ratio: number, ratios: number[], bothMedianMiBps: number, ipfsMedianMiBps: number, met: boolean }
  const b = report.seed as { windowRatio: number, wallRatio: number, windowRatios: number[], wallRatios: number[], met: boolean, wallMet: boolean, atlas: Record<string, number>, aria2c: Record<string, number> } | null
  const verdict = (met: boolean): string => (met ? 'met' : 'MISSED')
  const many = (xs: number[]): string => (xs.length > 1 ? `median of ${xs.map((x) => x.toFixed(2)).join(', ')}` : 'one pair')
  const downloads = [...warmup, ...seed]
  lines.push('', 'Targets', '')
  table(['figure', 'value', 'target', ''], [
    ['(a) ingest ipfs+bittorrent / ipfs', `${a.ratio.toFixed(2)} (${many(a.ratios)}; ${a.bothMedianMiBps} / ${a.ipfsMedianMiBps} MiB/s)`, `>= ${TARGET_INGEST_RATIO}`, verdict(a.met)],
    ...(b === null
      ? [['(b) seeding Atlas / aria2c', 'not measured (--seed-rounds 0)', `>= ${TARGET_SEED_RATIO}`, '-']]
      : [
          ['(b) seeding Atlas / aria2c, transfer', `${b.windowRatio.toFixed(2)} (${many(b.windowRatios)}; ${b.atlas.windowMedianMiBps} / ${b.aria2c.windowMedianMiBps} MiB/s)`, `>= ${TARGET_SEED_RATIO}`, verdict(b.met)],
          ['    the same on wall time', `${b.wallRatio.toFixed(2)} (${many(b.wallRatios)}; ${b.atlas.wallMedianMiBps} / ${b.aria2c.wallMedianMiBps} MiB/s)`, `>= ${TARGET_SEED_RATIO}`, verdict(b.wallMet)],
          ['downloads, sha256', downloads.every((r) => r.match) ? 'all equal to the upload' : 'DIFFERENT', 'equal', downloads.every((r) => r.match) ? 'ok' : 'ERROR']
        ])
  ])
  lines.push('')
  lines.push('(a) seconds: request start to response end; tail s: from the last body byte sent. Each upload has its own bytes; the order alternates by round.')
  lines.push('(b) wall: aria2c spawn to exit (tracker announce, connect, transfer, final announce, exit: aria2c works in 1 s ticks);')
  lines.push('    transfer: first to last byte the downloader wrote (its /proc wchar, disk cache off). The headline ratio is the transfer\'s.')
  lines.push('    No webseed (url-list removed), no DHT/LPD/PEX: each download\'s only peer is the seeder its tracker knows.')
  lines.push(`    aria2c options of both downloads: ${ARIA2C_DOWNLOAD.join(' ')}`)
  lines.push(`others CPU s: every other user-space process meanwhile; * = more than ${DISTURBED_SHARE * 100}% of one CPU. Waited ${report.quietWaitSeconds as number} s for quiet; ${report.transfersStartedBusy as number} transfers started busy.`)
  return lines.join('\n')
}

/** Where the server's main thread spent the last upload into each bucket and the last download from Atlas. */
function summariseProfiles (file: string, ingest: IngestRun[], seed: SeedRun[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const windows = [
    { name: 'ingestIpfs', what: 'the last ipfs upload', window: ingest.filter((r) => r.bucket === 'ipfs').at(-1)?.window },
    { name: 'ingestBoth', what: 'the last ipfs+bittorrent upload', window: ingest.filter((r) => r.bucket === 'both').at(-1)?.window },
    { name: 'seedAtlas', what: 'the last download from Atlas', window: seed.filter((r) => r.seeder === 'atlas').at(-1)?.window }
  ]
  for (const { name, what, window } of windows) {
    if (window === undefined) continue
    try {
      const summary = summariseProfile(readProfile(file), 25, window)
      process.stdout.write(`\n${formatSummary(`${what} (server main thread; ${file})`, summary)}\n`)
      out[name] = {
        busyMs: Math.round(summary.busyMs),
        windowMs: Math.round(summary.totalMs),
        topSelf: summary.self.slice(0, 12).map((r) => ({ name: r.name, ms: Math.round(r.ms) })),
        topPackages: summary.packages.slice(0, 8).map((r) => ({ name: r.name, ms: Math.round(r.ms) }))
      }
    } catch (err) {
      fail(`could not read the CPU profile ${file}: ${(err as Error).message}`)
    }
  }
  return out
}

// exit explicitly: the report is written (stdout and stderr are synchronous on Linux), and a
// library handle left open (a tracker's keep-alive connection, a timer) must not hang the bench
main().then((code) => { process.exit(code) }, (err: unknown) => {
  process.stderr.write(`\nbench bt failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
