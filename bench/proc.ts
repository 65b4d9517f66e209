/**
 * Resident memory and CPU time of another process, from Linux's `/proc/<pid>/status` and
 * `/proc/<pid>/stat`.
 *
 * Two figures per measurement window: the largest `VmRSS` seen by polling (every 50 ms by
 * default), and the kernel's own high-water mark `VmHWM`, which catches peaks between polls. The
 * high-water mark covers the process's whole life unless it can be reset, which writing `5` to
 * `/proc/<pid>/clear_refs` does (allowed for processes of the same user); when the reset fails the
 * window reports only the polled peak.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'

/** Polling period of {@link ProcessSampler}. */
export const RSS_SAMPLE_INTERVAL_MS = 50

export interface RssWindow {
  /** Largest VmRSS polled during the window, in bytes */
  peakPolled: number
  /** VmHWM at the end of the window, in bytes; undefined when it could not be reset at the start */
  hwm: number | undefined
  /** The larger of the two: the figure to report */
  peak: number
  samples: number
  /** CPU time (user + system, every thread: libuv's pool included) spent in the window, seconds */
  cpuSeconds: number
  /** The system (kernel) part of cpuSeconds */
  sysSeconds: number
  /** CPU time the calling process (the bench) spent in the window, seconds */
  selfCpuSeconds: number
  /**
   * CPU time the other user-space processes of the machine spent in the window, seconds (with
   * the children they reaped meanwhile): other people's work. High values mean a disturbed
   * measurement.
   */
  otherCpuSeconds: number
  /**
   * CPU time of the kernel's own threads in the window, seconds (machine-wide busy time less
   * every user-space process): mostly the writeback of the dirty pages the transfer made
   */
  kernelCpuSeconds: number
  /** Length of the window, seconds */
  wallSeconds: number
  /**
   * CPU time (user + system) of the watched process's threads in the window, seconds, summed by
   * thread name: Node names its main thread `MainThread`, V8's helper threads (parallel and
   * concurrent garbage collection, background compilation) `V8Worker`, libuv's pool (file
   * writes) `libuv-worker`, and `worker_threads` workers `WorkerThread`
   */
  threads: Record<string, number>
}

/**
 * CPU time of every user-space process except `exclude`, in seconds, with the time of the
 * children each has reaped (so that short-lived processes count once their parent waits for
 * them). Kernel threads (children of kthreadd, pid 2) are left out.
 */
export function readUserlandCpuSeconds (exclude: number[]): { others: number, all: number } {
  let others = 0
  let all = 0
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return { others: Number.NaN, all: Number.NaN }
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const pid = Number(entry)
    const ppid = Number(fields[1])
    if (pid === 2 || ppid === 2) continue
    // utime, stime, cutime, cstime: fields 14 to 17
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
    all += ticks
    if (!exclude.includes(pid)) others += ticks
  }
  return { others: others / TICKS_PER_SECOND, all: all / TICKS_PER_SECOND }
}

/** Busy CPU time of the whole machine (all CPUs) in seconds, from the first line of /proc/stat. */
export function readMachineBusySeconds (): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? ''
    // cpu user nice system idle iowait irq softirq steal (guest time is inside user)
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number)
    return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / TICKS_PER_SECOND
  } catch {
    return Number.NaN
  }
}

/** Linux reports CPU times in USER_HZ ticks, 100 per second on every architecture Node runs on. */
const TICKS_PER_SECOND = 100

/** User and system CPU time of `pid` in seconds, or undefined once the process is gone. */
export function readCpuSeconds (pid: number): { user: number, sys: number } | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // fields after the command name (which may hold spaces), from field 3 (state) on
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]) / TICKS_PER_SECOND, sys: Number(fields[12]) / TICKS_PER_SECOND }
}

/**
 * CPU time of every thread of `pid` (user + system, seconds), keyed by thread id; each entry
 * carries the thread's name. Threads that ended meanwhile are missing (their time is not lost
 * from the process total, only from this breakdown).
 */
export function readThreadCpuSeconds (pid: number): Map<string, { name: string, seconds: number }> {
  const out = new Map<string, { name: string, seconds: number }>()
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tids) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    } catch {
      continue
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    out.set(tid, { name, seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND })
  }
  return out
}

/** The CPU time each thread name spent between two {@link readThreadCpuSeconds} readings. */
export function threadCpuByName (before: Map<string, { name: string, seconds: number }>, after: Map<string, { name: string, seconds: number }>): Record<string, number> {
  const byName: Record<string, number> = {}
  for (const [tid, { name, seconds }] of after) {
    const spent = seconds - (before.get(tid)?.seconds ?? 0)
    byName[name] = (byName[name] ?? 0) + spent
  }
  return byName
}

/** CPU seconds of this process's reaped children (cutime + cstime), from /proc/self/stat. */
export function childrenCpuSeconds (): number {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND
}

/** VmRSS and VmHWM of `pid` in bytes, or undefined once the process is gone. */
export function readMemory (pid: number): { rss: number, hwm: number } | undefined {
  let status: string
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status)
    return match === null ? 0 : Number(match[1]) * 1024
  }
  return { rss: field('VmRSS'), hwm: field('VmHWM') }
}

/** Reset the kernel's peak-RSS counter of `pid`. @returns false when not permitted */
export function resetHighWaterMark (pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** Polls the memory of one process during a measurement window and counts its CPU time. */
export class ProcessSampler {
  readonly #pid: number
  readonly #intervalMs: number
  #timer: NodeJS.Timeout | undefined
  #peak = 0
  #samples = 0
  #hwmReset = false
  #cpuAtStart = { user: 0, sys: 0 }
  #selfAtStart: NodeJS.CpuUsage = { user: 0, system: 0 }
  #machineAtStart = 0
  #userlandAtStart = { others: 0, all: 0 }
  #threadsAtStart = new Map<string, { name: string, seconds: number }>()
  #startedAt = 0

  constructor (pid: number, intervalMs = RSS_SAMPLE_INTERVAL_MS) {
    this.#pid = pid
    this.#intervalMs = intervalMs
  }

  start (): void {
    this.#hwmReset = resetHighWaterMark(this.#pid)
    this.#peak = 0
    this.#samples = 0
    this.#cpuAtStart = readCpuSeconds(this.#pid) ?? { user: 0, sys: 0 }
    this.#selfAtStart = process.cpuUsage()
    this.#machineAtStart = readMachineBusySeconds()
    this.#userlandAtStart = readUserlandCpuSeconds([this.#pid, process.pid])
    this.#threadsAtStart = readThreadCpuSeconds(this.#pid)
    this.#startedAt = performance.now()
    this.#sample()
    this.#timer = setInterval(() => { this.#sample() }, this.#intervalMs)
  }

  stop (): RssWindow {
    clearInterval(this.#timer)
    this.#sample()
    const memory = readMemory(this.#pid)
    const cpu = readCpuSeconds(this.#pid)
    const threads = threadCpuByName(this.#threadsAtStart, readThreadCpuSeconds(this.#pid))
    const self = process.cpuUsage(this.#selfAtStart)
    const machine = readMachineBusySeconds() - this.#machineAtStart
    const userland = readUserlandCpuSeconds([this.#pid, process.pid])
    const hwm = this.#hwmReset && memory !== undefined ? memory.hwm : undefined
    const cpuSeconds = cpu === undefined ? Number.NaN : cpu.user + cpu.sys - this.#cpuAtStart.user - this.#cpuAtStart.sys
    const selfCpuSeconds = (self.user + self.system) / 1e6
    return {
      peakPolled: this.#peak,
      hwm,
      peak: Math.max(this.#peak, hwm ?? 0),
      samples: this.#samples,
      cpuSeconds,
      sysSeconds: cpu === undefined ? Number.NaN : cpu.sys - this.#cpuAtStart.sys,
      selfCpuSeconds,
      otherCpuSeconds: Math.max(0, userland.others - this.#userlandAtStart.others),
      kernelCpuSeconds: Math.max(0, machine - (userland.all - this.#userlandAtStart.all)),
      wallSeconds: (performance.now() - this.#startedAt) / 1000,
      threads
    }
  }

  #sample (): void {
    const memory = readMemory(this.#pid)
    if (memory === undefined) return
    this.#samples++
    if (memory.rss > this.#peak) this.#peak = memory.rss
  }
}

/**
 * Drop the kernel's clean page cache (after a `sync`, every cached page is clean), so that every
 * transfer starts from the same cache state: on the 2-CPU runner writing costs the kernel more
 * the more the cache holds (up to a second of system time per 256 MiB), which otherwise favours
 * whichever side of a pair runs after the other side's files were deleted.
 *
 * @returns false when not permitted (not root): the run then goes on with the cache as it is
 */
export function dropPageCache (): boolean {
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '1')
    return true
  } catch {
    return false
  }
}

/** Length of one look at the machine's load by {@link waitForQuiet}. */
const QUIET_PROBE_MS = 500

/**
 * Wait until the machine is quiet: other processes together busy less than `maxBusyShare` of one
 * CPU over a {@link QUIET_PROBE_MS} probe. Call it while the benchmark's own processes are idle.
 *
 * @returns how long it waited, and whether the machine was quiet at the end (false: gave up
 * after `maxWaitMs`)
 */
export async function waitForQuiet (maxWaitMs: number, maxBusyShare = 0.15): Promise<{ waitedMs: number, quiet: boolean }> {
  const started = performance.now()
  for (;;) {
    const before = readMachineBusySeconds()
    await new Promise((resolve) => setTimeout(resolve, QUIET_PROBE_MS))
    const busy = readMachineBusySeconds() - before
    const waitedMs = performance.now() - started
    if (Number.isNaN(busy) || busy < maxBusyShare * QUIET_PROBE_MS / 1000) return { waitedMs, quiet: true }
    if (waitedMs >= maxWaitMs) return { waitedMs, quiet: false }
  }
}
