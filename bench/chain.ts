/**
 * Deposit scanning throughput: how fast TronwebChain.transfersTo walks solidified blocks, the way
 * the deposit watcher does (one `walletsolidity/gettransactioninfobyblocknum` per block, Transfer
 * logs of the token filtered for the deposit address), against the dev node at 100 token
 * transfers per block.
 *
 * The dev node runs in a child process (as a real node is another process, usually another
 * machine), filled before timing starts: N blocks of `--per-block` faucet transfers, signed and
 * checked like any transaction, a tenth of them to the deposit address; then enough empty blocks
 * to solidify them all. The parent times transfersTo over the N blocks, at scan concurrency 1 and
 * at the default, several rounds each, and checks that it found exactly the deposits made.
 *
 *   npx node bench/chain.ts [--blocks 200] [--per-block 100] [--rounds 3]
 *
 * Prints a table and a line `BENCH_JSON {...}`. A report, not a test: exits non-zero only when a
 * scan finds other deposits than were made, or the run fails.
 */
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { TronWeb } from 'tronweb'
import { DevNode } from '../src/billing/chain/dev-node.ts'
import { DEFAULT_SCAN_CONCURRENCY, TronwebChain } from '../src/billing/chain/tronweb-chain.ts'

/** One transfer in this many goes to the deposit address */
const DEPOSIT_EVERY = 10
/** Other recipients cycle through this many addresses */
const OTHER_RECIPIENTS = 64

const { values } = parseArgs({
  options: {
    blocks: { type: 'string', default: '200' },
    'per-block': { type: 'string', default: '100' },
    rounds: { type: 'string', default: '3' },
    // internal: run as the node process
    serve: { type: 'string' }
  }
})
const BLOCKS = Number(values.blocks)
const PER_BLOCK = Number(values['per-block'])
const ROUNDS = Number(values.rounds)

interface Ready {
  url: string
  token: string
  deposits: number
  transfers: number
  first: number
  last: number
  fillSeconds: number
}

/** Child: a dev node filled with BLOCKS blocks of PER_BLOCK transfers, all solidified. */
async function serve (deposit: string): Promise<void> {
  const node = await DevNode.start({ autoProduce: false, maxPending: PER_BLOCK })
  const others = Array.from({ length: OTHER_RECIPIENTS }, () => TronWeb.createRandom().address)
  const began = performance.now()
  const first = node.headNumber + 1
  let deposits = 0
  for (let b = 0; b < BLOCKS; b++) {
    for (let i = 0; i < PER_BLOCK; i++) {
      const toDeposit = (b * PER_BLOCK + i) % DEPOSIT_EVERY === 0
      if (toDeposit) deposits++
      node.fund(toDeposit ? deposit : others[i % OTHER_RECIPIENTS] as string, BigInt(1 + b * PER_BLOCK + i))
    }
    node.produce(1)
  }
  const last = node.headNumber
  node.produce(node.solidityLag)
  const ready: Ready = { url: node.url, token: node.tokenAddresses[0] as string, deposits, transfers: BLOCKS * PER_BLOCK, first, last, fillSeconds: (performance.now() - began) / 1000 }
  process.stdout.write(`${JSON.stringify(ready)}\n`)
  // Serve until the parent closes stdin
  process.stdin.resume()
  process.stdin.on('end', () => { void node.close().then(() => process.exit(0)) })
}

async function main (): Promise<number> {
  const hotKey = TronWeb.createRandom().privateKey.slice(2)
  const deposit = TronWeb.address.fromPrivateKey(hotKey) as string
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', deposit, '--blocks', String(BLOCKS), '--per-block', String(PER_BLOCK)], { stdio: ['pipe', 'pipe', 'inherit'] })
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve)
      child.once('exit', code => { reject(new Error(`the node process exited with ${String(code)}`)) })
    })
    const ready = JSON.parse(line) as Ready
    console.log(`dev node: ${BLOCKS} blocks × ${PER_BLOCK} transfers filled in ${ready.fillSeconds.toFixed(1)} s (signing and validation included)`)
    const runs: Array<{ concurrency: number, round: number, seconds: number, blocksPerSecond: number, transfersPerSecond: number }> = []
    const errors: string[] = []
    for (const concurrency of [1, DEFAULT_SCAN_CONCURRENCY]) {
      const chain = new TronwebChain({ fullHost: ready.url, tokenContract: ready.token, privateKey: hotKey, scanConcurrency: concurrency })
      for (let round = 1; round <= ROUNDS; round++) {
        const began = performance.now()
        const found = await chain.transfersTo(deposit, ready.first, ready.last)
        const seconds = (performance.now() - began) / 1000
        if (found.length !== ready.deposits || found.some(t => t.to !== deposit || t.blockNumber < ready.first || t.blockNumber > ready.last)) {
          errors.push(`concurrency ${concurrency} round ${round}: found ${found.length} deposits, made ${ready.deposits}`)
        }
        runs.push({ concurrency, round, seconds, blocksPerSecond: BLOCKS / seconds, transfersPerSecond: ready.transfers / seconds })
      }
    }
    console.log(`\nDeposit scan: TronwebChain.transfersTo over ${BLOCKS} solidified blocks, ${PER_BLOCK} transfers per block (1 in ${DEPOSIT_EVERY} a deposit)`)
    console.log('| scan concurrency | round | seconds | blocks/s | transfers/s |')
    console.log('| --- | --- | --- | --- | --- |')
    for (const r of runs) console.log(`| ${r.concurrency} | ${r.round} | ${r.seconds.toFixed(3)} | ${Math.round(r.blocksPerSecond)} | ${Math.round(r.transfersPerSecond)} |`)
    const median = (concurrency: number): number => {
      const xs = runs.filter(r => r.concurrency === concurrency).map(r => r.blocksPerSecond).sort((a, b) => a - b)
      return xs[Math.floor(xs.length / 2)] as number
    }
    const summary = { sequential: median(1), concurrent: median(DEFAULT_SCAN_CONCURRENCY) }
    console.log(`median blocks/s: ${Math.round(summary.sequential)} sequential, ${Math.round(summary.concurrent)} at concurrency ${DEFAULT_SCAN_CONCURRENCY} (${Math.round(summary.concurrent * PER_BLOCK)} transfers/s)`)
    for (const e of errors) console.log(`ERROR ${e}`)
    console.log(`BENCH_JSON ${JSON.stringify({ bench: 'chain', blocks: BLOCKS, perBlock: PER_BLOCK, depositEvery: DEPOSIT_EVERY, fillSeconds: ready.fillSeconds, runs, medianBlocksPerSecond: summary, errors })}`)
    return errors.length === 0 ? 0 : 1
  } finally {
    child.stdin.end()
  }
}

if (values.serve !== undefined) {
  await serve(values.serve)
} else {
  main().then((code) => { process.exitCode = code }, (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
