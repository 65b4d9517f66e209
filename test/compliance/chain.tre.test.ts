/**
 * The chain compliance suite against java-tron itself: the tronbox/tre image (a one-witness
 * private chain with funded accounts) started through testcontainers, with two TRC-20 tokens
 * compiled by solc-js and deployed there. This is what keeps the dev node honest: the same
 * suite, the same TronwebChain, a real node.
 *
 * It needs a container runtime and the `solc` package. Without either it is skipped with the
 * reason printed, on CI too: the issue allows it, since CI machines here have no Docker engine.
 */
import { TronWeb } from 'tronweb'
import { describe, it } from 'vitest'
import { TronwebChain } from '../../src/billing/chain/tronweb-chain.ts'
import { chainTests } from './chain.ts'

const IMAGE = 'tronbox/tre'
const PORT = 9090
const STARTUP_TIMEOUT_MS = 5 * 60_000
const TEST_TIMEOUT_MS = 5 * 60_000
/** What the hot wallet gets from the deployer: TRX for energy and bandwidth, tokens to send */
const HOT_WALLET_TRX_SUN = 5_000_000_000
const FEE_LIMIT = 1_000_000_000

/** A plain TRC-20: the supply to the deployer, `require` on the balance (so overdrafts revert). */
const TOKEN_SOURCE = `// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;
contract TestToken {
  string public name;
  string public symbol;
  uint8 public decimals;
  uint256 public totalSupply;
  mapping(address => uint256) public balanceOf;
  event Transfer(address indexed from, address indexed to, uint256 value);
  constructor(string memory name_, string memory symbol_, uint8 decimals_, uint256 supply) {
    name = name_; symbol = symbol_; decimals = decimals_; totalSupply = supply;
    balanceOf[msg.sender] = supply;
    emit Transfer(address(0), msg.sender, supply);
  }
  function transfer(address to, uint256 value) external returns (bool) {
    require(balanceOf[msg.sender] >= value, "transfer amount exceeds balance");
    balanceOf[msg.sender] -= value;
    balanceOf[to] += value;
    emit Transfer(msg.sender, to, value);
    return true;
  }
}
`

interface Compiled { abi: unknown[], bytecode: string }

async function runtimeAvailable (): Promise<string | undefined> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers')
    await getContainerRuntimeClient()
    return undefined
  } catch (err) {
    return `no container runtime for ${IMAGE} (${(err as Error).message.split('\n')[0] ?? ''})`
  }
}

async function compileToken (): Promise<Compiled | string> {
  // Not a dependency of the project yet: looked up at run time so the suite states what it lacks
  const specifier = 'solc'
  let solc: { compile: (input: string) => string }
  try {
    solc = (await import(specifier) as { default: typeof solc }).default
  } catch {
    return 'the solc package is not installed (npm i -D solc) to compile the test token'
  }
  const output = JSON.parse(solc.compile(JSON.stringify({
    language: 'Solidity',
    sources: { 'TestToken.sol': { content: TOKEN_SOURCE } },
    // The TVM lacks opcodes of later EVM versions (PUSH0): target an older one
    settings: { evmVersion: 'istanbul', optimizer: { enabled: true, runs: 200 }, outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } } }
  }))) as { errors?: Array<{ severity: string, formattedMessage: string }>, contracts: Record<string, Record<string, { abi: unknown[], evm: { bytecode: { object: string } } }>> }
  const fatal = output.errors?.filter(e => e.severity === 'error') ?? []
  if (fatal.length > 0) throw new Error(fatal.map(e => e.formattedMessage).join('\n'))
  const contract = output.contracts['TestToken.sol']?.TestToken
  if (contract === undefined) throw new Error('solc produced no TestToken')
  return { abi: contract.abi, bytecode: contract.evm.bytecode.object }
}

async function waitFor<T> (what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 500))
  }
}

const missingRuntime = await runtimeAvailable()
const compiled = missingRuntime === undefined ? await compileToken() : missingRuntime

if (typeof compiled === 'string') {
  console.warn(`Skipping the tronbox/tre chain suite: ${compiled}`)
  describe.skip('tre chain client compliance', () => { it(compiled, () => {}) })
} else {
  chainTests('tronbox/tre', {
    timeout: TEST_TIMEOUT_MS,
    async setup () {
      const { GenericContainer, Wait } = await import('testcontainers')
      const container = await new GenericContainer(IMAGE)
        .withExposedPorts(PORT)
        .withWaitStrategy(Wait.forHttp('/admin/accounts-json', PORT).forStatusCode(200))
        .withStartupTimeout(STARTUP_TIMEOUT_MS)
        .start()
      try {
        const fullHost = `http://${container.getHost()}:${container.getMappedPort(PORT)}`
        const keys = await waitFor('funded accounts', async () => {
          const res = await fetch(`${fullHost}/admin/accounts-json`)
          const body = await res.json() as { privateKeys?: string[] }
          return body.privateKeys !== undefined && body.privateKeys.length > 0 ? body.privateKeys : undefined
        })
        const deployerKey = keys[0] as string
        const tronWeb = new TronWeb({ fullHost, privateKey: deployerKey })
        await waitFor('a producing chain', async () => (await tronWeb.trx.getCurrentBlock()).block_header.raw_data.number > 2 ? true : undefined)
        const deploy = async (name: string, symbol: string, decimals: number): Promise<string> => {
          const contract = await tronWeb.contract().new({ abi: compiled.abi as never, bytecode: compiled.bytecode, feeLimit: FEE_LIMIT, parameters: [name, symbol, decimals, (10n ** 30n).toString()] })
          return TronWeb.address.fromHex(contract.address as string)
        }
        const btt = await deploy('BitTorrent (test)', 'BTT', 18)
        const other = await deploy('Another token', 'OTHER', 6)
        const hotKey = TronWeb.createRandom().privateKey.slice(2)
        const chain = new TronwebChain({ fullHost, tokenContract: btt, privateKey: hotKey })
        const otherTokenChain = new TronwebChain({ fullHost, tokenContract: other, privateKey: hotKey })
        const send = async (token: string, to: string, amount: bigint): Promise<void> => {
          const contract = await tronWeb.contract(compiled.abi as never, token)
          await contract.methods.transfer(to, amount.toString()).send({ feeLimit: FEE_LIMIT })
        }
        await tronWeb.trx.sendTransaction(chain.depositAddress, HOT_WALLET_TRX_SUN)
        await send(btt, chain.depositAddress, 10n ** 24n)
        await send(other, chain.depositAddress, 10n ** 12n)
        const advance = async (count: number): Promise<void> => {
          const start = (await tronWeb.trx.getCurrentBlock()).block_header.raw_data.number
          await waitFor(`${count} blocks`, async () => (await tronWeb.trx.getCurrentBlock()).block_header.raw_data.number >= start + count ? true : undefined)
        }
        // Until the hot wallet's funds are solidified
        await waitFor('the hot wallet funded', async () => (await otherTokenChain.tokenBalance(chain.depositAddress)) > 0n ? true : undefined)
        await waitFor('the hot wallet funded', async () => (await chain.tokenBalance(chain.depositAddress)) > 0n ? true : undefined)
        return {
          chain,
          otherTokenChain,
          hotKey,
          fullHost,
          fund: async (address, amount) => { await send(btt, address, amount) },
          advance,
          teardown: async () => { await container.stop() }
        }
      } catch (err) {
        await container.stop()
        throw err
      }
    }
  })
}
