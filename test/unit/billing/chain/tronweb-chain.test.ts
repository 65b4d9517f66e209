/**
 * TronwebChain beyond the compliance suite: what it sends (the API key header), what it never
 * lets out (the hot wallet key, the API key), aborts, and scans that resume where they stopped.
 */
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { inspect } from 'node:util'
import { TronWeb } from 'tronweb'
import { afterEach, describe, expect, it } from 'vitest'
import { AbortedError, AtlasError } from '../../../../src/core/errors.ts'
import { DevNode } from '../../../../src/billing/chain/dev-node.ts'
import { TronwebChain } from '../../../../src/billing/chain/tronweb-chain.ts'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
})

const hotKey = (): string => TronWeb.createRandom().privateKey.slice(2)

async function devNode (): Promise<DevNode> {
  const node = await DevNode.start({ autoProduce: false, solidityLag: 1 })
  cleanups.push(async () => { await node.close() })
  return node
}

/** A node that records request headers and answers every request with `reply` (or never). */
async function fakeNode (reply: unknown | undefined): Promise<{ url: string, headers: IncomingHttpHeaders[] }> {
  const headers: IncomingHttpHeaders[] = []
  const server = createServer((req, res) => {
    headers.push(req.headers)
    req.resume()
    if (reply === undefined) return
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(reply))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(async () => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, headers }
}

describe('TronwebChain', () => {
  it('sends the API key as TRON-PRO-API-KEY and reads the head', async () => {
    const block = { blockID: `${'0'.repeat(13)}7b2${'ab'.repeat(24)}`, block_header: { raw_data: { number: 1970, timestamp: 1_700_000_000_000 } } }
    const node = await fakeNode(block)
    const chain = new TronwebChain({ fullHost: node.url, apiKey: 'k-123', tokenContract: TronWeb.createRandom().address, privateKey: hotKey() })
    expect(await chain.head()).toEqual({ number: 1970, id: block.blockID, timestamp: 1_700_000_000_000 })
    expect(node.headers[0]?.['tron-pro-api-key']).toBe('k-123')
  })

  it('never lets the hot wallet key or the API key out, in errors or when inspected', async () => {
    const key = hotKey()
    const apiKey = 'secret-api-key-5e2c'
    const node = await fakeNode({ unexpected: true })
    const chain = new TronwebChain({ fullHost: node.url, apiKey, tokenContract: TronWeb.createRandom().address, privateKey: key })
    const unreachable = new TronwebChain({ fullHost: 'http://127.0.0.1:9', apiKey, tokenContract: TronWeb.createRandom().address, privateKey: key })
    const settled = await Promise.allSettled([chain.head(), unreachable.head(), unreachable.signTransfer(TronWeb.createRandom().address, 1n)])
    const errors = settled.flatMap(s => s.status === 'rejected' ? [s.reason as unknown] : [])
    expect(errors).toHaveLength(3)
    for (const err of errors) {
      expect(err).toBeInstanceOf(AtlasError)
      expect((err as AtlasError).code).toBe('ServiceUnavailable')
      const text = inspect(err, { depth: 10 }) + JSON.stringify(err)
      expect(text).not.toContain(key)
      expect(text).not.toContain(apiKey)
    }
    expect(inspect(chain, { depth: 6 })).not.toContain(key)
    expect(JSON.stringify(chain.tronWeb.defaultPrivateKey)).toBe('false')
    expect(() => new TronwebChain({ fullHost: node.url, tokenContract: chain.tokenContract, privateKey: `${key.slice(0, 60)}zzzz` })).toThrow(/64 hex digits/)
    const short = (() => { try { return new TronwebChain({ fullHost: node.url, tokenContract: chain.tokenContract, privateKey: key.slice(0, 62) }) } catch (err) { return err } })()
    expect(short).toBeInstanceOf(AtlasError)
    expect(String(short)).not.toContain(key.slice(0, 62))
  })

  it('stops waiting when the signal aborts', async () => {
    const silent = await fakeNode(undefined)
    const chain = new TronwebChain({ fullHost: silent.url, tokenContract: TronWeb.createRandom().address, privateKey: hotKey() })
    const controller = new AbortController()
    const pending = chain.head({ signal: controller.signal })
    controller.abort()
    await expect(pending).rejects.toBeInstanceOf(AbortedError)
    await expect(chain.transfersTo(TronWeb.createRandom().address, 0, 0, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortedError)
  })

  it('scans in block order at any concurrency, and ranges resume exactly where they stopped', async () => {
    const node = await devNode()
    const deposit = TronWeb.createRandom()
    for (let b = 0; b < 24; b++) {
      // Deposits in most blocks, several in some, none in every fifth
      for (let i = 0; i < b % 5; i++) node.fund(deposit.address, BigInt(b * 10 + i + 1))
      node.fund(TronWeb.createRandom().address, 1n)
      node.produce(1)
    }
    node.produce(1)
    const solid = node.solidifiedNumber
    const scan = async (concurrency: number, from: number, to: number): Promise<Array<[number, bigint]>> => {
      const chain = new TronwebChain({ fullHost: node.url, tokenContract: node.tokenAddresses[0] as string, privateKey: hotKey(), scanConcurrency: concurrency })
      return (await chain.transfersTo(deposit.address, from, to)).map(t => [t.blockNumber, t.amount])
    }
    const whole = await scan(1, 1, solid)
    expect(whole).toHaveLength([...Array(24).keys()].reduce((n, b) => n + b % 5, 0))
    expect(whole.map(([block]) => block)).toEqual([...whole.map(([block]) => block)].sort((a, b) => a - b))
    expect(await scan(7, 1, solid)).toEqual(whole)
    const parts = [...await scan(3, 1, 9), ...await scan(3, 10, 10), ...await scan(3, 11, solid)]
    expect(parts).toEqual(whole)
  })
})
