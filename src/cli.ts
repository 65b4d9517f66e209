#!/usr/bin/env node
/**
 * The `atlas` command. `atlas serve` runs the gateway; the admin commands work on the same data
 * dir or database whether or not a server is running (SQLite in WAL mode and PostgreSQL both
 * take concurrent writers).
 */
import { realpathSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createAccount, issueAccessKey } from './accounts/credentials.ts'
import { formatBtt, parseBtt } from './billing/amount.ts'
import { Billing } from './billing/billing.ts'
import { KyselyLedger } from './billing/kysely-ledger.ts'
import { parseLane } from './billing/lanes.ts'
import { accountSummary, amountJson } from './billing/usage.ts'
import { ConfigError, loadConfig, type AtlasConfig } from './config.ts'
import { AtlasError } from './core/errors.ts'
import { KyselyMetadataStore } from './metadata/kysely-store.ts'
import { openMetadata } from './metadata/open.ts'
import type { MetadataStore } from './metadata/store.ts'

const USAGE = `Usage: atlas <command> [options]

Commands:
  serve                                 run the gateway (what npm start runs)
  accounts create --name NAME [--json]  create an account and its first access key
  accounts list [--json]                list accounts
  accounts balance ID [--json]          an account's balances (available, held, owed) and status
  accounts credit ID AMOUNT --reason TEXT [--json]
                                        credit AMOUNT BTT (decimal, e.g. 12.5) to an account, as an
                                        admin credit; it pays what the account owes first
  keys create --account ID [--lane slow|medium|fast] [--json]
                                        issue another access key for an account; --lane sets the
                                        delivery lane of its requests that name none
  keys list --account ID [--json]       list an account's access keys
  keys revoke ACCESS_KEY_ID             revoke an access key
  chain status [--json]                 the TRON chain in use: node, token, deposit address, heads,
                                        deposit scan cursor, hot wallet balance
  dev wallet [--amount N] [--json]      development mode: a new wallet on the running server's dev
                                        chain, funded with N BTT (default 1000); prints its key
  dev deposit --key K --amount N [--json]
                                        development mode: send N BTT from key K's wallet to the
                                        deposit address (a real tronweb TRC-20 transfer)

Options:
  --config FILE   JSON config file (ATLAS_* environment variables override it)
  -h, --help      show this help
`

type Out = (line: string) => void

/**
 * parseArgs reads `-5` as the short option `-5`; a negative number is wrapped in this (a NUL,
 * which no real argument contains) so that it stays an argument and the amount check can say
 * what is wrong with it, instead of "unknown option".
 */
const NEGATIVE_NUMBER = /^-\.?\d/
const WRAP = '\u0000'
const unwrap = (value: string): string => value.startsWith(WRAP) ? value.slice(WRAP.length) : value

export async function runCli (argv: string[], out: Out = (l) => { process.stdout.write(`${l}\n`) }): Promise<number> {
  const parsed = parseArgs({
    args: argv.map((a) => NEGATIVE_NUMBER.test(a) ? `${WRAP}${a}` : a),
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      name: { type: 'string' },
      account: { type: 'string' },
      reason: { type: 'string' },
      lane: { type: 'string' },
      key: { type: 'string' },
      amount: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  const positionals = parsed.positionals.map(unwrap)
  const values = Object.fromEntries(Object.entries(parsed.values).map(([k, v]) => [k, typeof v === 'string' ? unwrap(v) : v])) as typeof parsed.values
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
      case 'accounts balance': {
        const [id, ...extra] = rest
        if (id === undefined || extra.length > 0) throw new UsageError('accounts balance needs one account ID')
        const account = await metadata.getAccount(id)
        if (account === null) throw new AtlasError('NoSuchAccount', `No account ${id}`)
        const summary = await accountSummary(openBilling(metadata, config), id)
        if (values.json === true) {
          out(JSON.stringify({
            id,
            name: account.name,
            status: summary.status.status,
            available: amountJson(summary.available),
            held: amountJson(summary.held),
            owed: amountJson(summary.owed),
            dailyStorageCost: amountJson(summary.dailyStorageCost),
            runwayDays: summary.runwayDays
          }))
        } else {
          out(`account    ${id} (${account.name})`)
          out(`status     ${summary.status.status}${summary.status.graceEndsAt === undefined ? '' : ` until ${summary.status.graceEndsAt.toISOString()}`}`)
          out(`available  ${formatBtt(summary.available)} BTT`)
          out(`held       ${formatBtt(summary.held)} BTT`)
          out(`owed       ${formatBtt(summary.owed)} BTT`)
          out(`storage    ${formatBtt(summary.dailyStorageCost)} BTT a day${summary.runwayDays === null ? '' : ` (${summary.runwayDays} days of runway)`}`)
        }
        return 0
      }
      case 'accounts credit': {
        const [id, amountText, ...extra] = rest
        if (id === undefined || amountText === undefined || extra.length > 0) {
          throw new UsageError('accounts credit needs an account ID and an AMOUNT in BTT, e.g. accounts credit acc_… 12.5 --reason "invoice 42"')
        }
        if (values.reason === undefined || values.reason.trim() === '') throw new UsageError('accounts credit needs --reason TEXT (it is recorded with the credit)')
        // every check before the ledger is touched: a refused credit changes nothing
        const amount = parseBtt(amountText)
        if (amount === 0n) throw new AtlasError('InvalidAmount', 'A credit must be more than 0 BTT')
        await requireAccount(metadata, id)
        const billing = openBilling(metadata, config)
        const transactionId = await billing.credit(id, amount, values.reason.trim())
        const balances = await billing.ledger.customerBalances(id)
        if (values.json === true) {
          out(JSON.stringify({ id, credited: amountJson(amount), transactionId, available: amountJson(balances.available), owed: amountJson(-balances.receivable) }))
        } else {
          out(`credited   ${formatBtt(amount)} BTT to ${id} (transaction ${transactionId})`)
          out(`available  ${formatBtt(balances.available)} BTT`)
          if (balances.receivable !== 0n) out(`owed       ${formatBtt(-balances.receivable)} BTT`)
        }
        return 0
      }
      case 'keys create': {
        const accountId = await requireAccount(metadata, values.account)
        const defaultLane = values.lane === undefined ? undefined : parseLane(values.lane)
        const issued = await issueAccessKey(metadata, accountId, defaultLane === undefined ? {} : { defaultLane })
        out(values.json === true
          ? JSON.stringify({ accountId, ...issued, ...(defaultLane === undefined ? {} : { defaultLane }) })
          : `accessKeyId     ${issued.accessKeyId}\nsecretAccessKey ${issued.secretAccessKey}\ntoken           ${issued.token}${defaultLane === undefined ? '' : `\ndefaultLane     ${defaultLane}`}`)
        return 0
      }
      case 'keys list': {
        const accountId = await requireAccount(metadata, values.account)
        const keys = await metadata.listAccessKeys(accountId)
        const rows = keys.map((k) => ({ accessKeyId: k.accessKeyId, createdAt: k.createdAt.toISOString(), revokedAt: k.revokedAt?.toISOString() ?? null, defaultLane: k.defaultLane ?? null }))
        if (values.json === true) out(JSON.stringify(rows))
        else for (const r of rows) out(`${r.accessKeyId}\t${r.createdAt}\t${r.revokedAt === null ? 'active' : `revoked ${r.revokedAt}`}${r.defaultLane === null ? '' : `\tlane ${r.defaultLane}`}`)
        return 0
      }
      case 'keys revoke': {
        const id = rest[0]
        if (id === undefined) throw new UsageError('keys revoke needs ACCESS_KEY_ID')
        if (!await metadata.revokeAccessKey(id)) throw new AtlasError('NoSuchAccessKey', `No active access key ${id}`)
        out(values.json === true ? JSON.stringify({ accessKeyId: id, revoked: true }) : `revoked ${id}`)
        return 0
      }
      case 'chain status': {
        if (!(metadata instanceof KyselyMetadataStore)) throw new AtlasError('InternalError', 'The chain needs the SQL metadata store')
        const { chainStatus } = await import('./billing/chain/dev-tools.ts')
        const status = await chainStatus(config, metadata.db)
        if (values.json === true) {
          out(JSON.stringify({ ...status, ...(status.hotWalletBalance === undefined ? {} : { hotWalletBalance: amountJson(status.hotWalletBalance) }), openWithdrawalsAmount: amountJson(status.openWithdrawalsAmount) }))
        } else {
          out(`mode             ${status.mode}${status.mode === 'dev' ? ' (in-memory TRON stand-in inside atlas serve)' : ''}`)
          out(`full host        ${status.fullHost ?? '-'}`)
          out(`token contract   ${status.tokenContract}`)
          out(`deposit address  ${status.depositAddress}`)
          if (status.head !== undefined) out(`head             ${status.head} (solidified ${String(status.solidifiedHead)})`)
          out(`scan cursor      ${status.cursor === undefined ? 'not started' : `next block ${status.cursor}${status.behind === undefined ? '' : `, ${status.behind} solidified blocks behind`}`}`)
          if (status.hotWalletBalance !== undefined) out(`hot wallet       ${formatBtt(status.hotWalletBalance)} BTT`)
          out(`unattributed     ${status.unattributedDeposits} deposits from unlinked senders`)
          out(`withdrawals      ${status.openWithdrawals} open (${formatBtt(status.openWithdrawalsAmount)} BTT)`)
          if (status.error !== undefined) out(`error            ${status.error}`)
        }
        return status.error === undefined ? 0 : 1
      }
      case 'dev wallet': {
        const { createDevWallet } = await import('./billing/chain/dev-tools.ts')
        const amount = parseBtt(values.amount ?? '1000')
        if (amount === 0n) throw new AtlasError('InvalidAmount', 'A dev wallet is funded with more than 0 BTT')
        const wallet = await createDevWallet(config, amount)
        if (values.json === true) out(JSON.stringify({ address: wallet.address, privateKey: wallet.privateKey, funded: amountJson(wallet.funded), txId: wallet.txId }))
        else {
          out(`address     ${wallet.address}`)
          out(`privateKey  ${wallet.privateKey}`)
          out(`funded      ${formatBtt(wallet.funded)} BTT (transaction ${wallet.txId}, spendable from the next block)`)
          out('A development key: it holds dev-chain BTT only, and the dev chain starts over when the server restarts.')
        }
        return 0
      }
      case 'dev deposit': {
        if (values.key === undefined || values.amount === undefined) throw new UsageError('dev deposit needs --key K (a private key, as dev wallet prints it) and --amount N (BTT)')
        const { devDeposit } = await import('./billing/chain/dev-tools.ts')
        const amount = parseBtt(values.amount)
        if (amount === 0n) throw new AtlasError('InvalidAmount', 'A deposit must be more than 0 BTT')
        const sent = await devDeposit(config, values.key, amount)
        if (values.json === true) out(JSON.stringify({ txId: sent.txId, from: sent.from, to: sent.to, amount: amountJson(sent.amount) }))
        else {
          out(`sent        ${formatBtt(sent.amount)} BTT from ${sent.from} to ${sent.to}`)
          out(`transaction ${sent.txId}`)
          out('Credited to the account that linked the sending wallet once its block is solidified (GET /v1/account/deposits).')
        }
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

/**
 * Billing over the metadata database, for admin commands: the ledger and the account reports,
 * without the server's storage timer (never `start()`ed) and without delivery holds, so `cli`
 * as the hold owner is never used. Works whether billing is on in this configuration or not:
 * a credit made while it is off counts once it is on.
 */
function openBilling (metadata: MetadataStore, config: AtlasConfig): Billing {
  if (!(metadata instanceof KyselyMetadataStore)) throw new AtlasError('InternalError', 'Billing needs the SQL metadata store')
  const quiet = (): void => {}
  const warn = (obj: object, msg?: string): void => { process.stderr.write(`atlas: ${msg ?? ''} ${JSON.stringify(obj)}\n`) }
  return new Billing({
    ledger: new KyselyLedger({ db: metadata.db, dialect: metadata.dialect }),
    db: metadata.db,
    config: config.billing,
    owner: 'cli',
    logger: { info: quiet, warn, error: warn }
  })
}

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
