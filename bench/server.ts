/**
 * The Atlas server under test, run as a child process: `node src/cli.ts serve` started with this
 * process's own Node binary (no npx wrapper), so the child's pid is the server's and its memory
 * is what `/proc/<pid>/status` shows.
 */
import { readFileSync } from 'node:fs'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** How long the server may take to answer /healthz after spawning. */
export const SERVER_START_TIMEOUT_MS = 60_000
/** How long a SIGTERM may take to stop it before SIGKILL. */
export const SERVER_STOP_TIMEOUT_MS = 30_000
/** Bytes of the server's stdout/stderr kept for error reports. */
const LOG_TAIL_BYTES = 32 * 1024

export interface AtlasServerInit {
  /** The repository root (where src/cli.ts is) */
  root: string
  /** ATLAS_DATA_DIR */
  dataDir: string
  /** Extra Node options for the server, e.g. `--cpu-prof` */
  execArgv?: string[]
  /** Variables set over {@link atlasEnv}'s, e.g. `ATLAS_BT_ANNOUNCE` */
  env?: NodeJS.ProcessEnv
}

export interface Account {
  id: string
  accessKeyId: string
  secretAccessKey: string
  token: string
}

/** A free TCP port on 127.0.0.1 (bound to port 0, then released). */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  server.close()
  await once(server, 'close')
  if (port === 0) throw new Error('Could not find a free port')
  return port
}

/** The environment Atlas runs with in the benchmark (the admin CLI uses the same). */
export function atlasEnv (dataDir: string, port: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ATLAS_DATA_DIR: dataDir,
    ATLAS_HOST: '127.0.0.1',
    ATLAS_PORT: String(port),
    ATLAS_IPFS_OFFLINE: 'true',
    ATLAS_BT_PORT: '0',
    ATLAS_BT_DHT: 'false',
    ATLAS_LOG_LEVEL: 'warn',
    // the throughput benches measure the data path; bench/billing.ts measures billing's cost
    ATLAS_BILLING_ENABLED: 'false',
    // this process runs under npm: do not let the server inherit npm's own settings for Node
    NODE_OPTIONS: ''
  }
}

/** `atlas accounts create --name NAME --json`, run as its own process. */
export async function createAccount (root: string, env: NodeJS.ProcessEnv, name: string): Promise<Account> {
  const { stdout } = await execFileAsync(process.execPath, [join(root, 'src/cli.ts'), 'accounts', 'create', '--name', name, '--json'], { cwd: root, env })
  const line = stdout.trim().split('\n').pop() ?? ''
  const account = JSON.parse(line) as Account
  if (typeof account.token !== 'string') throw new Error(`accounts create printed no token: ${stdout}`)
  return account
}

/** `atlas accounts credit ID BTT --reason REASON`, run as its own process: BTT for a billed bench to spend. */
export async function creditAccount (root: string, env: NodeJS.ProcessEnv, id: string, btt: string, reason: string): Promise<void> {
  await execFileAsync(process.execPath, [join(root, 'src/cli.ts'), 'accounts', 'credit', id, btt, '--reason', reason], { cwd: root, env })
}

/**
 * The Node flags `npm start` gives the server (the `node …` options of package.json's start
 * script), so that the bench measures the server as users run it.
 */
export function startScriptNodeFlags (root: string): string[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts?: { start?: string } }
  const words = (pkg.scripts?.start ?? '').split(/\s+/)
  if (words[0] !== 'node') return []
  const flags: string[] = []
  for (const word of words.slice(1)) {
    if (!word.startsWith('--')) break
    flags.push(word)
  }
  return flags
}

export class AtlasServer {
  readonly child: ChildProcess
  readonly pid: number
  readonly url: string
  readonly env: NodeJS.ProcessEnv
  #log = ''
  #exited: Promise<number | null>

  private constructor (child: ChildProcess, url: string, env: NodeJS.ProcessEnv) {
    this.child = child
    if (child.pid === undefined) throw new Error('The server process did not start')
    this.pid = child.pid
    this.url = url
    this.env = env
    const keep = (chunk: Buffer): void => {
      this.#log = (this.#log + chunk.toString('utf8')).slice(-LOG_TAIL_BYTES)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    this.#exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode)
      else child.once('exit', (code) => { resolve(code) })
    })
  }

  /** Spawn the server on a free port and wait until /healthz answers. */
  static async start (init: AtlasServerInit): Promise<AtlasServer> {
    const port = await freePort()
    const env = { ...atlasEnv(init.dataDir, port), ...init.env }
    const child = spawn(process.execPath, [...startScriptNodeFlags(init.root), ...(init.execArgv ?? []), join(init.root, 'src/cli.ts'), 'serve'], {
      cwd: init.root,
      env,
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const server = new AtlasServer(child, `http://127.0.0.1:${port}`, env)
    try {
      await server.#waitHealthy()
    } catch (err) {
      await server.kill()
      throw err
    }
    return server
  }

  /** The last lines the server printed (it logs at `warn`). */
  get logTail (): string {
    return this.#log
  }

  get running (): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  async #waitHealthy (): Promise<void> {
    const deadline = Date.now() + SERVER_START_TIMEOUT_MS
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`The server exited during start (code ${this.child.exitCode}):\n${this.#log}`)
      try {
        const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(2_000) })
        if (res.ok) return
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    throw new Error(`The server did not answer /healthz within ${SERVER_START_TIMEOUT_MS} ms:\n${this.#log}`)
  }

  /** SIGTERM (Atlas shuts down gracefully, and writes a CPU profile if asked), SIGKILL after a timeout. */
  async stop (): Promise<number | null> {
    if (!this.running) return await this.#exited
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => { this.child.kill('SIGKILL') }, SERVER_STOP_TIMEOUT_MS)
    try {
      return await this.#exited
    } finally {
      clearTimeout(timer)
    }
  }

  /** SIGKILL, for cleanup after a failure. */
  async kill (): Promise<void> {
    if (this.running) this.child.kill('SIGKILL')
    await this.#exited
  }
}
