/**
 * The chain compliance suite against the dev node: TronwebChain, that is the real tronweb code
 * path, over HTTP to the project's TRON stand-in. Blocks come only on demand, so the suite also
 * sees the states a live chain may skip past (pending in the pool, in a block not yet solidified).
 */
import { TronWeb } from 'tronweb'
import { DEV_BTT, DevNode } from '../../src/billing/chain/dev-node.ts'
import { TronwebChain } from '../../src/billing/chain/tronweb-chain.ts'
import { chainTests } from './chain.ts'

const SOLIDITY_LAG = 3

chainTests('dev node', {
  async setup () {
    const node = await DevNode.start({
      autoProduce: false,
      solidityLag: SOLIDITY_LAG,
      tokens: [DEV_BTT, { name: 'Another token', symbol: 'OTHER', decimals: 6 }]
    })
    const [btt, other] = node.tokenAddresses as [string, string]
    const hotKey = TronWeb.createRandom().privateKey.slice(2)
    const chain = new TronwebChain({ fullHost: node.url, tokenContract: btt, privateKey: hotKey })
    const otherTokenChain = new TronwebChain({ fullHost: node.url, tokenContract: other, privateKey: hotKey })
    node.fund(chain.depositAddress, 10n ** 24n, btt)
    node.fund(chain.depositAddress, 10n ** 12n, other)
    node.produce(1 + SOLIDITY_LAG)
    return {
      chain,
      otherTokenChain,
      hotKey,
      fullHost: node.url,
      fund: async (address, amount) => { node.fund(address, amount, btt) },
      advance: async (count) => { node.produce(count) },
      exactLag: SOLIDITY_LAG,
      teardown: async () => { await node.close() }
    }
  }
})
