#!/usr/bin/env node
/**
 * The `atlas` command. `atlas serve` runs the gateway; the admin commands work on the same data
 * dir or database whether or not a server is running (SQLite in WAL mode and PostgreSQL both
 * take concurrent writers).
 */
import { realpathSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createAccount, issueAccessKey } from './accounts/credentials.ts'
import { ConfigError, loadConfig, type AtlasConfig } from './config.ts'
import { AtlasError } from './core/errors.ts'
import { openMetadata } from './metadata/open.ts'
import type { MetadataStore } from './metadata/store.ts'

const USAGE = `Usage: atlas <command> [options]

Commands:
  serve                                 run the gateway (what npm start runs)
  accounts create --name NAME [--json]  create an account and its first access key
  accounts list [--json]                list accounts
  keys create --account ID [--json]     issue another access key for an account
  keys list --account ID [--json]       list an account's access keys
  keys revoke ACCESS_KEY_ID             revoke an access key

Options:
  --config FILE   JSON config file (ATLAS_* environment variables override it)
  -h, --help      show this help
`

type Out = (line: string) => void

export async function runCli (argv: string[], out: Out = (l) => { process.stdout.write(`${l}\n`) }): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      name: { type: 'string' },
      account: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  const [command, sub, ...rest] = positionals
  if (values.help === true || command === undefined) {
    out(USAGE)
    return command === undefined && values.help !== true ? 2 : 0
  }
  const config = loadConfig({ file: values.config })

  if (command === 'serve') {
    await serve(config)
    return 0
  }

  const metadata = await openMetadata(config)
  try {
    switch (`${command} ${sub ?? ''}`.trim()) {
      case 'accounts create': {
        if (values.name === undefined) throw new UsageError('accounts create needs --name NAME')
        const created = await createAccount(metadata, values.name)
        if (values.json === true) out(JSON.stringify(created))
        else {
          out(`account         ${created.id} (${created.name})`)
          out(`accessKeyId     ${created.accessKeyId}`)
          out(`secretAccessKey ${created.secretAccessKey}`)
          out(`token           ${created.token}`)
          out('The secret and the token are shown once: keep them now.')
        }
        return 0
      }
      case 'accounts list': {
        const accounts = await metadata.listAccounts()
        if (values.json === true) out(JSON.stringify(accounts.map((a) => ({ id: a.id, name: a.name, createdAt: a.createdAt.toISOString() }))))
        else for (const a of accounts) out(`${a.id}\t${a.name}\t${a.createdAt.toISOString()}`)
        return 0
      }
      case 'keys create': {
        const accountId = await requireAccount(metadata, values.account)
        const issued = await issueAccessKey(metadata, accountId)
        out(values.json === true ? JSON.stringify({ accountId, ...issued }) : `accessKeyId     ${issued.accessKeyId}\nsecretAccessKey ${issued.secretAccessKey}\ntoken           ${issued.token}`)
        return 0
      }
      case 'keys list': {
        const accountId = await requireAccount(metadata, values.account)
        const keys = await metadata.listAccessKeys(accountId)
        const rows = keys.map((k) => ({ accessKeyId: k.accessKeyId, createdAt: k.createdAt.toISOString(), revokedAt: k.revokedAt?.toISOString() ?? null }))
        if (values.json === true) out(JSON.stringify(rows))
        else for (const r of rows) out(`${r.accessKeyId}\t${r.createdAt}\t${r.revokedAt === null ? 'active' : `revoked ${r.revokedAt}`}`)
        return 0
      }
      case 'keys revoke': {
        const id = rest[0]
        if (id === undefined) throw new UsageError('keys revoke needs ACCESS_KEY_ID')
        if (!await metadata.revokeAccessKey(id)) throw new AtlasError('NoSuchAccessKey', `No active access key ${id}`)
        out(values.json === true ? JSON.stringify({ accessKeyId: id, revoked: true }) : `revoked ${id}`)
        return 0
      }
      default:
        throw new UsageError(`Unknown command: ${positionals.join(' ')}`)
    }
  } finally {
    await metadata.close()
  }
}

class UsageError extends Error {}

async function requireAccount (metadata: MetadataStore, id: string | undefined): Promise<string> {
  if (id === undefined) throw new UsageError('this command needs --account ID')
  if (await metadata.getAccount(id) === null) throw new AtlasError('NoSuchAccount', `No account ${id}`)
  return id
}

async function serve (config: AtlasConfig): Promise<void> {
  // the server's wiring (Helia, libp2p, fastify) loads only for serve: admin commands stay quick
  const { startAtlas } = await import('./main.ts')
  const atlas = await startAtlas(config)
  let signals = 0
  const shutdown = (signal: string): void => {
    signals++
    if (signals > 1) {
      atlas.logger.warn('second signal: exiting now')
      process.exit(130)
    }
    atlas.logger.info({ signal }, 'shutting down: finishing requests in flight')
    atlas.stop().then(() => process.exit(0), (err: unknown) => {
      atlas.logger.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  }
  process.on('SIGINT', () => { shutdown('SIGINT') })
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
}

/** Run the CLI as a process: exit codes 0 ok, 1 failure, 2 bad usage or configuration. */
export function main (argv: string[]): void {
  runCli(argv).then((code) => {
    if (code !== 0) process.exitCode = code
  }, (err: unknown) => {
    if (err instanceof ConfigError || err instanceof UsageError || err instanceof AtlasError) {
      process.stderr.write(`atlas: ${err.message}\n`)
      process.exitCode = 2
    } else if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      process.stderr.write(`atlas: ${(err as Error).message}\n${USAGE}`)
      process.exitCode = 2
    } else {
      process.stderr.write(`atlas: ${(err as Error).stack ?? String(err)}\n`)
      process.exitCode = 1
    }
  })
}

if (process.argv[1] !== undefined && import.meta.filename === realpathSync(process.argv[1])) main(process.argv.slice(2))
