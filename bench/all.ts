/**
 * `npm run bench`: the ingest and memory bench (bench/run.ts, which takes the options after
 * `--`), then the S3-against-REST bench (bench/s3-vs-rest.ts; its options are passed as
 * `--s3-small N`, `--s3-large-mib M`, `--s3-rounds R`). Exits non-zero when either fails.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const here = (name: string): string => fileURLToPath(new URL(name, import.meta.url))
const args = process.argv.slice(2)
const ingestArgs: string[] = []
const s3Args: string[] = []
for (let i = 0; i < args.length; i++) {
  const arg = args[i] as string
  if (arg.startsWith('--s3-')) {
    const [name, value] = arg.slice(5).split('=')
    s3Args.push(`--${name as string}`, value ?? (args[++i] as string))
  } else ingestArgs.push(arg)
}
let status = 0
for (const [script, scriptArgs] of [['run.ts', ingestArgs], ['s3-vs-rest.ts', s3Args]] as const) {
  const run = spawnSync(process.execPath, [here(script), ...scriptArgs], { stdio: 'inherit' })
  if (run.status !== 0) status = run.status ?? 1
}
process.exit(status)
