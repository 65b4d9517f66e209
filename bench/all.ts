/**
 * `npm run bench`: the ingest and memory bench (bench/run.ts, which takes the options after
 * `--`), then the S3-against-REST bench (bench/s3-vs-rest.ts; its options are passed as
 * `--s3-small N`, `--s3-large-mib M`, `--s3-rounds R`), then the BitTorrent bench
 * (bench/bittorrent.ts: it also takes `--quick`, `--keep`, `--root` and `--node-arg`, and its own
 * options as `--bt-NAME[=VALUE]`, e.g. `--bt-seed-rounds=5`, `--bt-profile`), then billing's
 * cost on 4 KiB GETs (bench/billing.ts, `--billing-NAME=VALUE`), the delivery lanes' measured
 * throughput against their caps (bench/lanes.ts, `--lanes-NAME=VALUE`) and deposit scanning on
 * the TRON stand-in (bench/chain.ts, `--chain-NAME=VALUE`). Exits non-zero when any fails.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const here = (name: string): string => fileURLToPath(new URL(name, import.meta.url))
const args = process.argv.slice(2)
const ingestArgs: string[] = []
const s3Args: string[] = []
const btArgs: string[] = []
const billingArgs: string[] = []
const lanesArgs: string[] = []
const chainArgs: string[] = []
const prefixed: Array<[string, string[]]> = [['--billing-', billingArgs], ['--lanes-', lanesArgs], ['--chain-', chainArgs]]
for (let i = 0; i < args.length; i++) {
  const arg = args[i] as string
  if (arg.startsWith('--s3-')) {
    const [name, value] = arg.slice(5).split('=')
    s3Args.push(`--${name as string}`, value ?? (args[++i] as string))
  } else if (prefixed.some(([prefix]) => arg.startsWith(prefix))) {
    const [prefix, target] = prefixed.find(([p]) => arg.startsWith(p)) as [string, string[]]
    target.push(`--${arg.slice(prefix.length)}`)
  } else if (arg.startsWith('--bt-')) {
    btArgs.push(`--${arg.slice(5)}`)
  } else {
    ingestArgs.push(arg)
    if (arg === '--quick' || arg === '--keep' || /^--(root|node-arg)=/.test(arg)) btArgs.push(arg)
    else if (arg === '--root' || arg === '--node-arg') btArgs.push(arg, args[i + 1] as string)
  }
}
let status = 0
const quick = args.includes('--quick')
if (quick) {
  billingArgs.push('--rounds=3')
  chainArgs.push('--blocks=100', '--rounds=2')
}
const scripts: Array<[string, string[]]> = [
  ['run.ts', ingestArgs],
  ['s3-vs-rest.ts', s3Args],
  ['bittorrent.ts', btArgs],
  ['billing.ts', billingArgs],
  ['lanes.ts', lanesArgs],
  ['chain.ts', chainArgs]
]
for (const [script, scriptArgs] of scripts) {
  const run = spawnSync(process.execPath, [here(script), ...scriptArgs], { stdio: 'inherit' })
  if (run.status !== 0) status = run.status ?? 1
}
process.exit(status)
