import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TronWeb, Trx } from 'tronweb'
import { parseBtt } from '../../src/billing/amount.ts'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { checkResponse, documentedRoutes, toOpenApiPath, type Checked } from '../fixtures/openapi.ts'
import { announceQuery, percentEncode } from '../fixtures/tracker.ts'

describe('openapi.yaml and the server agree', () => {
  let t: TestAtlas
  /** A second Atlas with billing on, for the account routes' answers when it is */
  let billed: TestAtlas
  const checked: Checked[] = []

  beforeAll(async () => {
    [t, billed] = await Promise.all([
      startTestAtlas(),
      startTestAtlas({ config: { billing: { enabled: true }, bittorrent: { enabled: false } } })
    ])
  })
  afterAll(async () => { await Promise.all([t?.stop(), billed?.stop()]) })

  const callOn = async (atlas: TestAtlas, method: string, path: string, init: RequestInit & { auth?: boolean | string } = {}): Promise<Response> => {
    const res = await atlas.api(path, { ...init, method })
    checked.push(await checkResponse(method, path, res))
    return res
  }
  const call = async (method: string, path: string, init: RequestInit & { auth?: boolean | string } = {}): Promise<Response> => await callOn(t, method, path, init)

  it('documents every route the server has', () => {
    const documented = new Set(documentedRoutes().map((r) => `${r.method} ${r.path}`))
    // the S3 API's catch-all routes are described in the README, not in the REST contract
    const served = t.atlas.server.atlasRoutes.filter((r) => r.method !== 'OPTIONS' && r.url !== '/' && r.url !== '/*')
    expect(served.length).toBeGreaterThan(10)
    const undocumented = served.map((r) => `${r.method} ${toOpenApiPath(r.url)}`).filter((r) => !documented.has(r))
    expect(undocumented).toEqual([])
  })

  it('answers as documented on every route', async () => {
    const json = { 'content-type': 'application/json' }
    await call('GET', '/healthz', { auth: false })
    await call('GET', '/readyz', { auth: false })
    await call('GET', '/v1/buckets')
    await call('GET', '/v1/buckets', { auth: false })
    await call('PUT', '/v1/buckets/spec-bucket', { headers: json, body: '{"backends":["ipfs"],"public":true}' })
    await call('PUT', '/v1/buckets/spec-bucket', { headers: json, body: '{}' })
    await call('PUT', '/v1/buckets/BAD', {})
    await call('GET', '/v1/buckets/spec-bucket')
    await call('GET', '/v1/buckets/missing-bucket')
    const body = randomBytes(1_500_000)
    const stored = await call('PUT', '/v1/buckets/spec-bucket/objects/a/b.bin', { body, headers: { 'x-atlas-meta-k': 'v' } })
    expect(stored.status).toBe(200)
    const { contentId } = await stored.json() as { contentId: string }
    await call('PUT', '/v1/buckets/missing-bucket/objects/x', { body: 'x' })
    await call('PUT', '/v1/buckets/spec-bucket/objects/x', { body: 'x', auth: false })
    const form = new FormData()
    form.append('file', new Blob([Buffer.from('form')]), 'f.txt')
    await call('POST', '/v1/buckets/spec-bucket/objects', { body: form })
    await call('POST', '/v1/buckets/spec-bucket/objects', { body: 'x', headers: { 'content-type': 'text/plain' } })
    await call('GET', '/v1/buckets/spec-bucket/objects?delimiter=/&limit=1')
    await call('GET', '/v1/buckets/spec-bucket/objects?limit=5000')
    await call('GET', '/v1/buckets/spec-bucket/objects/a/b.bin')
    await call('GET', '/v1/buckets/spec-bucket/objects/a/b.bin', { headers: { range: 'bytes=0-9' } })
    await call('GET', '/v1/buckets/spec-bucket/objects/a/b.bin', { headers: { range: 'bytes=9999999-' } })
    await call('GET', '/v1/buckets/spec-bucket/objects/a/b.bin', { headers: { 'if-match': '"nope"' } })
    await call('GET', '/v1/buckets/spec-bucket/objects/nope')
    await call('HEAD', '/v1/buckets/spec-bucket/objects/a/b.bin')
    await call('HEAD', '/v1/buckets/spec-bucket/objects/nope')
    await call('GET', `/v1/content/${contentId}`)
    await call('GET', `/v1/content/${contentId}`, { headers: { range: 'bytes=5-' } })
    await call('GET', '/v1/content/garbage')
    await call('GET', `/v1/content/sha256:${'0'.repeat(64)}`)
    await call('HEAD', `/v1/content/${contentId}`)
    await call('PUT', '/v1/buckets/spec-torrents', { headers: json, body: '{"backends":["ipfs","bittorrent"],"public":true}' })
    const seeded = await (await call('PUT', '/v1/buckets/spec-torrents/objects/t.bin', { body: randomBytes(100_000) })).json() as { addresses: { btih: string } }
    const ih = seeded.addresses.btih
    await call('GET', `/bt/${ih}.torrent`, { auth: false })
    await call('HEAD', `/bt/${ih}.torrent`, { auth: false })
    await call('GET', `/bt/${ih}`, { auth: false, headers: { range: 'bytes=0-99' } })
    await call('GET', `/bt/${ih}`, { auth: false })
    await call('HEAD', `/bt/${ih}`, { auth: false })
    await call('GET', `/bt/${ih}/magnet`, { auth: false })
    await call('HEAD', `/bt/${ih}/magnet`, { auth: false })
    await call('GET', `/bt/${'0'.repeat(40)}`, { auth: false })
    await call('GET', '/bt/not-an-infohash/magnet', { auth: false })
    const cid = (await t.api(`/v1/content/${contentId}`, { method: 'HEAD' })).headers.get('x-atlas-cid') as string
    await call('GET', `/ipfs/${cid}`, { auth: false })
    await call('GET', `/ipfs/${cid}`, { auth: false, headers: { range: 'bytes=0-9' } })
    await call('GET', `/ipfs/${cid}`, { auth: false, headers: { range: 'bytes=9999999-' } })
    await call('GET', `/ipfs/${cid}`, { auth: false, headers: { 'if-none-match': `"${cid}"` } })
    await call('GET', `/ipfs/${cid}`, { auth: false, headers: { 'if-match': '"nope"' } })
    await call('GET', `/ipfs/${cid}?format=raw`, { auth: false })
    await call('GET', `/ipfs/${cid}?format=car&dag-scope=all&car-dups=n`, { auth: false, headers: { accept: 'application/vnd.ipld.car' } })
    await call('GET', `/ipfs/${cid}?format=tar`, { auth: false })
    await call('GET', '/ipfs/not-a-cid', { auth: false })
    await call('GET', `/ipfs/${cid}`, { auth: 'not-a-token' })
    await call('GET', `/ipfs/${contentId}?format=raw`, { auth: false })
    await call('HEAD', `/ipfs/${cid}?format=car`, { auth: false })
    await call('HEAD', `/ipfs/${cid}`, { auth: false, headers: { range: 'bytes=0-9' } })
    await call('HEAD', '/ipfs/not-a-cid', { auth: false })
    await call('GET', `/ipfs/${cid}/a/b`, { auth: false })
    await call('GET', '/ipfs/not-a-cid/a', { auth: false })
    await call('GET', `/ipfs/${cid}/a`, { auth: 'not-a-token' })
    await call('HEAD', `/ipfs/${cid}/a`, { auth: false })
    const tracked = await call('GET', `/announce?${announceQuery(ih, { event: 'started', left: 100, port: 50_000 })}`, { auth: false })
    expect(tracked.headers.get('content-type')).toBe('text/plain')
    expect(Buffer.from(await tracked.arrayBuffer()).toString('latin1')).toMatch(/^d8:completei1e/)
    expect(Buffer.from(await (await call('GET', '/announce', { auth: false })).arrayBuffer()).toString()).toMatch(/failure reason/)
    await call('GET', `/scrape?info_hash=${percentEncode(Buffer.from(ih, 'hex'))}`, { auth: false })
    await call('GET', '/scrape', { auth: false })
    // billing off here: the price list still answers, the account has no money, no usage or ledger
    expect((await (await call('GET', '/v1/pricing', { auth: false })).json() as { enabled: boolean }).enabled).toBe(false)
    expect((await (await call('GET', '/v1/account')).json() as { billing: string }).billing).toBe('disabled')
    expect((await call('GET', '/v1/account/usage')).status).toBe(404)
    expect((await call('GET', '/v1/account/ledger')).status).toBe(404)
    // billing on: a credit, an upload and a download to report
    await billed.atlas.billing?.credit(billed.account.id, parseBtt('100'), 'openapi')
    await callOn(billed, 'PUT', '/v1/buckets/spec-billed', { headers: json, body: '{"public":true}' })
    await callOn(billed, 'PUT', '/v1/buckets/spec-billed/objects/o', { body: randomBytes(10_000) })
    await callOn(billed, 'GET', '/v1/buckets/spec-billed/objects/o?lane=slow')
    expect((await (await callOn(billed, 'GET', '/v1/pricing', { auth: false })).json() as { enabled: boolean }).enabled).toBe(true)
    expect((await (await callOn(billed, 'GET', '/v1/account')).json() as { billing: string }).billing).toBe('enabled')
    await callOn(billed, 'GET', '/v1/account', { auth: false })
    await callOn(billed, 'GET', '/v1/account/usage')
    await callOn(billed, 'GET', '/v1/account/usage?from=2026-01-01&to=2026-02-01&bucket=spec-billed')
    await callOn(billed, 'GET', '/v1/account/usage?from=2026-02-30')
    await callOn(billed, 'GET', '/v1/account/ledger?limit=2')
    await callOn(billed, 'GET', '/v1/account/ledger?limit=0')
    // the chain routes: 404 with billing off; with billing on (the built-in dev chain) a wallet
    // linked by a tronweb signature, and withdrawals refused as documented
    for (const path of ['/v1/account/wallets/challenge', '/v1/account/wallets', '/v1/account/deposits', '/v1/account/withdrawals']) expect((await call('GET', path)).status).toBe(404)
    const challenge = await (await callOn(billed, 'GET', '/v1/account/wallets/challenge')).json() as { message: string }
    const user = TronWeb.createRandom()
    const linkBody = JSON.stringify({ address: user.address, signature: Trx.signMessageV2(challenge.message, user.privateKey.slice(2)) })
    expect((await callOn(billed, 'POST', '/v1/account/wallets', { headers: json, body: linkBody })).status).toBe(201)
    expect((await callOn(billed, 'POST', '/v1/account/wallets', { headers: json, body: linkBody })).status).toBe(400)
    expect((await callOn(billed, 'GET', '/v1/account/wallets')).status).toBe(200)
    expect((await callOn(billed, 'GET', '/v1/account/deposits')).status).toBe(200)
    expect((await callOn(billed, 'GET', '/v1/account/deposits?limit=0')).status).toBe(400)
    const withdraw = async (address: string, amount: string): Promise<number> => (await callOn(billed, 'POST', '/v1/account/withdrawals', { headers: json, body: JSON.stringify({ address, amount }) })).status
    expect(await withdraw(user.address, '1000000')).toBe(402)
    expect(await withdraw(TronWeb.createRandom().address, '1')).toBe(409)
    expect(await withdraw(user.address, '-1')).toBe(400)
    // the dev chain's hot wallet holds nothing yet: it cannot pay
    expect(await withdraw(user.address, '1')).toBe(503)
    expect((await callOn(billed, 'GET', '/v1/account/withdrawals')).status).toBe(200)
    await call('DELETE', '/v1/buckets/spec-bucket')
    await call('DELETE', '/v1/buckets/spec-bucket/objects/a/b.bin')
    await call('DELETE', '/v1/buckets/spec-bucket/objects/f.txt')
    await call('DELETE', '/v1/buckets/spec-bucket/objects/x')
    await call('DELETE', '/v1/buckets/spec-bucket')

    const exercised = new Set(checked.map((c) => `${c.method} ${c.template}`))
    const notExercised = documentedRoutes().map((r) => `${r.method} ${r.path}`).filter((r) => !exercised.has(r))
    expect(notExercised).toEqual([])
  })

  it('catches a response that breaks the document', async () => {
    const fake = new Response(JSON.stringify({ buckets: [{ name: 'x' }] }), { status: 200, headers: { 'content-type': 'application/json' } })
    await expect(checkResponse('GET', '/v1/buckets', fake)).rejects.toThrow(/does not match/)
    const undocumented = new Response('{}', { status: 418, headers: { 'content-type': 'application/json' } })
    await expect(checkResponse('GET', '/v1/buckets', undocumented)).rejects.toThrow(/status 418/)
  })
})
