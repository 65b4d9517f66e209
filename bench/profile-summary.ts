/**
 * Summaries of V8 CPU profiles (`node --cpu-prof` writes them as `.cpuprofile` JSON): where the
 * time went, by function (self time and inclusive time) and by package.
 *
 * Run on its own: `npx node bench/profile-summary.ts FILE.cpuprofile [TOP]`.
 */
import { readFileSync, realpathSync } from 'node:fs'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
  columnNumber: number
}

interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface ProfileRow {
  /** `function (file:line)` */
  name: string
  /** Milliseconds */
  ms: number
  /** Share of the busy (non-idle) time, 0..1 */
  share: number
}

export interface ProfileSummary {
  /** Profile duration, ms */
  totalMs: number
  /** Time not idle, ms */
  busyMs: number
  /** By function, self time, largest first */
  self: ProfileRow[]
  /** By function, inclusive time (self plus callees, recursion counted once), largest first */
  inclusive: ProfileRow[]
  /** By package (`node_modules` name, `atlas:src/...`, `node:internal`, or a V8 pseudo-frame) */
  packages: ProfileRow[]
}

/** V8 pseudo-frames that are not the program's work. */
const IDLE_FRAMES = new Set(['(idle)'])

function functionKey (frame: CallFrame): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
  if (frame.url === '') return name
  return `${name} (${shortUrl(frame.url)}:${frame.lineNumber + 1})`
}

/** Trim a script URL to what tells it apart: the package and file, or the path in the repo. */
function shortUrl (url: string): string {
  const modules = url.lastIndexOf('/node_modules/')
  if (modules !== -1) return url.slice(modules + '/node_modules/'.length).replace('/dist/src/', '/')
  const src = url.search(/\/(src|bench|test)\//)
  if (src !== -1) return url.slice(src + 1)
  return url.replace(/^file:\/\//, '')
}

function packageKey (frame: CallFrame): string {
  const url = frame.url
  if (url === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native)'
  const modules = url.lastIndexOf('/node_modules/')
  if (modules !== -1) {
    const rest = url.slice(modules + '/node_modules/'.length).split('/')
    return (rest[0] ?? '').startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url)
  }
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/')
  const src = url.search(/\/(src|bench)\//)
  if (src !== -1) return `atlas:${url.slice(src + 1)}`
  return url
}

/**
 * A stretch of time, in microseconds of the monotonic clock: V8 stamps profile samples with it,
 * and `process.hrtime.bigint() / 1000n` in any process of the machine reads the same clock.
 */
export interface ProfileWindow {
  fromUs: number
  toUs: number
}

/** The monotonic clock in microseconds, comparable with the sample times of a `.cpuprofile`. */
export function monotonicUs (): number {
  return Number(process.hrtime.bigint() / 1000n)
}

/**
 * Summarise `profile`, or only its samples taken inside `window` (to leave out start-up and
 * other transfers).
 */
export function summariseProfile (profile: CpuProfile, top = 20, window?: ProfileWindow): ProfileSummary {
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const node of profile.nodes) {
    byId.set(node.id, node)
    for (const child of node.children ?? []) parent.set(child, node.id)
  }
  // sample i lasts until sample i + 1 (what Chrome DevTools does)
  const selfUs = new Map<number, number>()
  let at = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number
    at += profile.timeDeltas[i] ?? 0
    if (window !== undefined && (at < window.fromUs || at > window.toUs)) continue
    const duration = profile.timeDeltas[i + 1] ?? 0
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, duration))
  }

  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const packages = new Map<string, number>()
  let busyUs = 0
  let totalUs = 0
  for (const [id, us] of selfUs) {
    const node = byId.get(id)
    if (node === undefined) continue
    totalUs += us
    if (IDLE_FRAMES.has(node.callFrame.functionName)) continue
    busyUs += us
    const key = functionKey(node.callFrame)
    self.set(key, (self.get(key) ?? 0) + us)
    const pkg = packageKey(node.callFrame)
    packages.set(pkg, (packages.get(pkg) ?? 0) + us)
    // every distinct function on the stack gets the sample once
    const seen = new Set<string>()
    for (let frameId: number | undefined = id; frameId !== undefined; frameId = parent.get(frameId)) {
      const frame = byId.get(frameId)?.callFrame
      if (frame === undefined || frame.functionName === '(root)') continue
      const k = functionKey(frame)
      if (seen.has(k)) continue
      seen.add(k)
      inclusive.set(k, (inclusive.get(k) ?? 0) + us)
    }
  }
  const rows = (map: Map<string, number>): ProfileRow[] => [...map]
    .map(([name, us]) => ({ name, ms: us / 1000, share: busyUs === 0 ? 0 : us / busyUs }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, top)
  return { totalMs: totalUs / 1000, busyMs: busyUs / 1000, self: rows(self), inclusive: rows(inclusive), packages: rows(packages) }
}

export function readProfile (file: string): CpuProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
}

/** The summary as text tables. */
export function formatSummary (title: string, summary: ProfileSummary): string {
  const lines = [`${title}: ${(summary.totalMs / 1000).toFixed(1)} s profiled, ${(summary.busyMs / 1000).toFixed(1)} s busy (main thread)`]
  const table = (heading: string, rows: ProfileRow[]): void => {
    lines.push('', `  ${heading}`)
    for (const row of rows) {
      lines.push(`  ${row.ms.toFixed(0).padStart(8)} ms ${(row.share * 100).toFixed(1).padStart(5)}%  ${row.name}`)
    }
  }
  table('self time by package', summary.packages)
  table('self time by function', summary.self)
  table('inclusive time by function', summary.inclusive)
  return lines.join('\n')
}

if (process.argv[1] !== undefined && import.meta.filename === realpathSync(process.argv[1])) {
  const file = process.argv[2]
  if (file === undefined) {
    process.stderr.write('usage: npx node bench/profile-summary.ts FILE.cpuprofile [TOP]\n')
    process.exit(2)
  }
  process.stdout.write(`${formatSummary(file, summariseProfile(readProfile(file), Number(process.argv[3] ?? 25)))}\n`)
}
