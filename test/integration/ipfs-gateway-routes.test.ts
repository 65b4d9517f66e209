/**
 * The /ipfs routes against a real server: the file (path gateway) with Range, HEAD and
 * conditional requests; the trustless responses (one raw block, a CAR of the DAG, verified block
 * by block); negotiation by query and Accept; private content; the errors; and a CAR walk that
 * stops when its client goes away or fails when a block is gone.
 */
import { createHash, randomBytes } from 'node:crypto'
import { unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { base32upper } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as sha2 from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { exportFile, verifyCar } from '../fixtures/car.ts'

const MiB = 1024 * 1024
const CAR_DFS = 'application/vnd.ipld.car; version=1; order=dfs; dups=n'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const part of source) parts.push(part)
  return Buffer.concat(parts)
}

describe('/ipfs/{cid}', () => {
  let t: TestAtlas
  /** 3 MiB + 17 bytes: a dag-pb root over four raw leaves */
  const big = randomBytes(3 * MiB + 17)
  let bigCid: string
  let bigId: string
  const small = randomBytes(1000)
  let smallCid: string
  const secret = randomBytes(2 * MiB)
  let secretCid: string

  const json = { 'content-type': 'application/json' }
  const upload = async (bucket: string, key: string, body: Uint8Array): Promise<{ contentId: string, addresses: { ipfs: string } }> => {
    const res = await t.api(`/v1/buckets/${bucket}/objects/${key}`, { method: 'PUT', body })
    expect(res.status).toBe(200)
    return await res.json() as { contentId: string, addresses: { ipfs: string } }
  }
  const anon = async (path: string, init: RequestInit = {}): Promise<Response> => await t.api(path, { ...init, auth: false })

  beforeAll(async () => {
    t = await startTestAtlas()
    expect((await t.api('/v1/buckets/pub', { method: 'PUT', headers: json, body: '{"backends":["ipfs"],"public":true}' })).status).toBe(201)
    expect((await t.api('/v1/buckets/priv', { method: 'PUT', headers: json, body: '{"backends":["ipfs"],"public":false}' })).status).toBe(201)
    const b = await upload('pub', 'big.bin', big)
    bigCid = b.addresses.ipfs
    bigId = b.contentId
    smallCid = (await upload('pub', 'small.bin', small)).addresses.ipfs
    secretCid = (await upload('priv', 'secret.bin', secret)).addresses.ipfs
  })
  afterAll(async () => { await t?.stop() })

  describe('the file', () => {
    it('serves the bytes with the path gateway headers', async () => {
      const res = await anon(`/ipfs/${bigCid}`)
      expect(res.status).toBe(200)
      expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(big))
      expect(res.headers.get('etag')).toBe(`"${bigCid}"`)
      expect(res.headers.get('cache-control')).toBe('public, max-age=29030400, immutable')
      expect(res.headers.get('x-ipfs-path')).toBe(`/ipfs/${bigCid}`)
      expect(res.headers.get('x-ipfs-roots')).toBe(bigCid)
      expect(res.headers.get('content-type')).toBe('application/octet-stream')
      expect(res.headers.get('accept-ranges')).toBe('bytes')
      expect(res.headers.get('content-length')).toBe(String(big.byteLength))
      expect(res.headers.get('vary')).toMatch(/accept/i)
      expect(res.headers.get('x-atlas-content-id')).toBe(bigId)
    })

    it('serves a byte range across two leaves', async () => {
      const res = await anon(`/ipfs/${bigCid}`, { headers: { range: `bytes=${MiB - 5}-${MiB + 9}` } })
      expect(res.status).toBe(206)
      expect(res.headers.get('content-range')).toBe(`bytes ${MiB - 5}-${MiB + 9}/${big.byteLength}`)
      expect(Buffer.from(await res.arrayBuffer()).equals(big.subarray(MiB - 5, MiB + 10))).toBe(true)
    })

    it('answers HEAD with the headers alone', async () => {
      const res = await anon(`/ipfs/${bigCid}`, { method: 'HEAD' })
      expect(res.status).toBe(200)
      expect(res.headers.get('content-length')).toBe(String(big.byteLength))
      expect(res.headers.get('etag')).toBe(`"${bigCid}"`)
      expect((await res.arrayBuffer()).byteLength).toBe(0)
    })

    it('answers 304 to If-None-Match with its ETag', async () => {
      const res = await anon(`/ipfs/${bigCid}`, { headers: { 'if-none-match': `"${bigCid}"` } })
      expect(res.status).toBe(304)
      expect(res.headers.get('etag')).toBe(`"${bigCid}"`)
      // another format's ETag does not match the file
      expect((await anon(`/ipfs/${bigCid}`, { headers: { 'if-none-match': `"${bigCid}.raw"` } })).status).toBe(200)
    })

    it('serves a one-block content and a content under its canonical id', async () => {
      const one = await anon(`/ipfs/${smallCid}`)
      expect(one.status).toBe(200)
      expect(Buffer.from(await one.arrayBuffer()).equals(small)).toBe(true)
      // the raw CID of the whole bytes names them too (the bytes verify against it)
      const whole = await anon(`/ipfs/${bigId}`)
      expect(whole.status).toBe(200)
      expect(sha256(new Uint8Array(await whole.arrayBuffer()))).toBe(sha256(big))
      // but it is no IPFS block here: no raw block, no CAR
      expect((await anon(`/ipfs/${bigId}?format=raw`)).status).toBe(404)
      expect((await anon(`/ipfs/${bigId}?format=car`)).status).toBe(404)
    })

    it('accepts the CIDv0 and base36 forms of a dag-pb root', async () => {
      const cid = CID.parse(bigCid)
      const v0 = cid.toV0().toString()
      const res = await anon(`/ipfs/${v0}`, { headers: { range: 'bytes=0-3' } })
      expect(res.status).toBe(206)
      expect(res.headers.get('etag')).toBe(`"${v0}"`)
      const { base36 } = await import('multiformats/bases/base36')
      expect((await anon(`/ipfs/${cid.toString(base36)}`, { method: 'HEAD' })).status).toBe(200)
    })
  })

  describe('a raw block', () => {
    it('is the root block, by ?format=raw', async () => {
      const res = await anon(`/ipfs/${bigCid}?format=raw`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('application/vnd.ipld.raw')
      expect(res.headers.get('etag')).toBe(`"${bigCid}.raw"`)
      expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${bigCid}.bin"`)
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      expect(res.headers.get('content-location')).toBeNull()
      const body = new Uint8Array(await res.arrayBuffer())
      expect(createHash('sha256').update(body).digest().equals(CID.parse(bigCid).multihash.digest)).toBe(true)
    })

    it('is chosen by Accept too, and says where the format lives', async () => {
      const res = await anon(`/ipfs/${smallCid}`, { headers: { accept: 'application/vnd.ipld.raw' } })
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('application/vnd.ipld.raw')
      expect(res.headers.get('content-location')).toBe(`/ipfs/${smallCid}?format=raw`)
      // a one-block content's raw block is the file
      expect(Buffer.from(await res.arrayBuffer()).equals(small)).toBe(true)
    })

    it('answers HEAD and If-None-Match', async () => {
      const head = await anon(`/ipfs/${smallCid}?format=raw`, { method: 'HEAD' })
      expect(head.status).toBe(200)
      expect(head.headers.get('content-length')).toBe(String(small.byteLength))
      const cached = await anon(`/ipfs/${smallCid}?format=raw`, { headers: { 'if-none-match': `"${smallCid}.raw"` } })
      expect(cached.status).toBe(304)
    })
  })

  describe('a CAR', () => {
    it('holds every block of the DAG, depth-first, each once, verifiable', async () => {
      const res = await anon(`/ipfs/${bigCid}?format=car`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe(CAR_DFS)
      expect(res.headers.get('etag')).toBe(`"${bigCid}.car"`)
      expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${bigCid}.car"`)
      expect(res.headers.get('x-ipfs-roots')).toBe(bigCid)
      const car = await verifyCar(new Uint8Array(await res.arrayBuffer()))
      expect(car.roots.map(String)).toEqual([bigCid])
      expect(car.blocks.map((b) => b.cid.code)).toEqual([0x70, raw.code, raw.code, raw.code, raw.code])
      expect(String(car.blocks[0]?.cid)).toBe(bigCid)
      // leaves in file order (pre-order under one node): their concatenation is the file
      expect(Buffer.concat(car.blocks.slice(1).map((b) => b.bytes)).equals(big)).toBe(true)
      expect(sha256(await collect(exportFile(CID.parse(bigCid), car.blocks)))).toBe(sha256(big))
    })

    it('fails verification when one byte of it is changed', async () => {
      const bytes = new Uint8Array(await (await anon(`/ipfs/${bigCid}?format=car`)).arrayBuffer())
      const at = bytes.byteLength - 1000
      bytes[at] = (bytes[at] as number) ^ 0x01
      await expect(verifyCar(bytes)).rejects.toThrow(/do not hash to its CID/)
    })

    it('is chosen by Accept, with its content type parameters', async () => {
      const res = await anon(`/ipfs/${bigCid}`, { headers: { accept: 'text/html;q=0.5, application/vnd.ipld.car; version=1; order=dfs' } })
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe(CAR_DFS)
      expect(res.headers.get('content-location')).toBe(`/ipfs/${bigCid}?format=car`)
      expect((await verifyCar(new Uint8Array(await res.arrayBuffer()))).blocks).toHaveLength(5)
    })

    it('sends repeated blocks once, or each time with dups=y', async () => {
      const chunk = randomBytes(MiB)
      const body = Buffer.concat([chunk, chunk, chunk, randomBytes(10)])
      const { addresses } = await upload('pub', 'repeats.bin', body)
      const once = await verifyCar(new Uint8Array(await (await anon(`/ipfs/${addresses.ipfs}?format=car`)).arrayBuffer()))
      expect(once.blocks).toHaveLength(3)
      const res = await anon(`/ipfs/${addresses.ipfs}?format=car`, { headers: { accept: 'application/vnd.ipld.car; dups=y' } })
      expect(res.headers.get('content-type')).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=y')
      expect(res.headers.get('etag')).toBe(`"${addresses.ipfs}.car.dups"`)
      const each = await verifyCar(new Uint8Array(await res.arrayBuffer()))
      expect(each.blocks).toHaveLength(5)
      expect(Buffer.concat(each.blocks.slice(1).map((b) => b.bytes)).equals(body)).toBe(true)
      // the query parameter does the same
      const byQuery = await anon(`/ipfs/${addresses.ipfs}?format=car&car-dups=y`)
      expect((await verifyCar(new Uint8Array(await byQuery.arrayBuffer()))).blocks).toHaveLength(5)
      expect(sha256(await collect(exportFile(CID.parse(addresses.ipfs), once.blocks)))).toBe(sha256(body))
    })

    it('holds the root alone with dag-scope=block, everything with entity', async () => {
      const block = await anon(`/ipfs/${bigCid}?format=car&dag-scope=block`)
      expect(block.headers.get('etag')).toBe(`"${bigCid}.car.block"`)
      const one = await verifyCar(new Uint8Array(await block.arrayBuffer()))
      expect(one.blocks.map((b) => String(b.cid))).toEqual([bigCid])
      const entity = await anon(`/ipfs/${bigCid}?format=car&dag-scope=entity`)
      expect(entity.headers.get('etag')).toBe(`"${bigCid}.car.entity"`)
      expect((await verifyCar(new Uint8Array(await entity.arrayBuffer()))).blocks).toHaveLength(5)
    })

    it('holds the leaves a byte range needs with entity-bytes', async () => {
      const full = await verifyCar(new Uint8Array(await (await anon(`/ipfs/${bigCid}?format=car`)).arrayBuffer()))
      const leaves = full.blocks.slice(1).map((b) => String(b.cid))
      const ask = async (range: string): Promise<string[]> => {
        const res = await anon(`/ipfs/${bigCid}?format=car&entity-bytes=${range}`)
        expect(res.status, range).toBe(200)
        const car = await verifyCar(new Uint8Array(await res.arrayBuffer()))
        expect(String(car.blocks[0]?.cid)).toBe(bigCid)
        return car.blocks.slice(1).map((b) => String(b.cid))
      }
      expect(await ask(`${MiB}:${MiB}`)).toEqual([leaves[1]])
      expect(await ask(`${MiB - 1}:${MiB}`)).toEqual([leaves[0], leaves[1]])
      expect(await ask('-10:*')).toEqual([leaves[3]])
      expect(await ask('0:*')).toEqual(leaves)
      expect(await ask(`${2 * MiB}:-1`)).toEqual([leaves[2], leaves[3]])
      // nothing selected: the root block alone
      expect(await ask('10:5')).toEqual([])
      const res = await anon(`/ipfs/${bigCid}?format=car&entity-bytes=0:9`)
      expect(res.headers.get('etag')).toBe(`"${bigCid}.car.bytes-0-9"`)
      expect((await anon(`/ipfs/${bigCid}?format=car&entity-bytes=${big.byteLength}:*`)).status).toBe(400)
      expect((await anon(`/ipfs/${bigCid}?format=car&entity-bytes=1-2`)).status).toBe(400)
      expect((await anon(`/ipfs/${bigCid}?format=car&entity-bytes=0:1&dag-scope=all`)).status).toBe(400)
    })

    it('answers HEAD and If-None-Match', async () => {
      const head = await anon(`/ipfs/${bigCid}?format=car`, { method: 'HEAD' })
      expect(head.status).toBe(200)
      expect(head.headers.get('content-type')).toBe(CAR_DFS)
      expect((await head.arrayBuffer()).byteLength).toBe(0)
      const cached = await anon(`/ipfs/${bigCid}?format=car`, { headers: { 'if-none-match': `"${bigCid}.car"` } })
      expect(cached.status).toBe(304)
    })
  })

  describe('the probe CID bafkqaaa', () => {
    it('is an empty raw block and a CAR with no blocks', async () => {
      const block = await anon('/ipfs/bafkqaaa?format=raw')
      expect(block.status).toBe(200)
      expect((await block.arrayBuffer()).byteLength).toBe(0)
      const car = await anon('/ipfs/bafkqaaa?format=car')
      expect(car.status).toBe(200)
      const verified = await verifyCar(new Uint8Array(await car.arrayBuffer()))
      expect(verified.roots.map(String)).toEqual(['bafkqaaa'])
      expect(verified.blocks).toEqual([])
      expect((await anon('/ipfs/bafkqaaa', { method: 'HEAD', headers: { accept: 'application/vnd.ipld.raw' } })).status).toBe(200)
    })
  })

  describe('private content', () => {
    it('is 404 to anonymous callers and served to its owner', async () => {
      for (const query of ['', '?format=raw', '?format=car']) {
        const hidden = await anon(`/ipfs/${secretCid}${query}`)
        expect(hidden.status, query).toBe(404)
        expect((await hidden.json() as { code: string }).code).toBe('NoSuchContent')
        const own = await t.api(`/ipfs/${secretCid}${query}`)
        expect(own.status, query).toBe(200)
        expect(own.headers.get('cache-control')).toBe('private, max-age=29030400, immutable')
        await own.arrayBuffer()
      }
      const own = await t.api(`/ipfs/${secretCid}`)
      expect(sha256(new Uint8Array(await own.arrayBuffer()))).toBe(sha256(secret))
      // a token that is not valid is refused, not ignored
      expect((await t.api(`/ipfs/${bigCid}`, { auth: 'not-a-token' })).status).toBe(401)
    })
  })

  describe('a CAR walk', () => {
    /** Path of a block's file in blockstore-fs's default layout */
    const blockFile = (cid: CID): string => {
      const name = base32upper.encoder.encode(cid.multihash.bytes)
      return join(t.dataDir, 'ipfs', 'blocks', name.slice(-2), `${name}.data`)
    }

    it('stops when the client goes away', async () => {
      const body = randomBytes(48 * MiB)
      const { addresses } = await upload('pub', 'long.bin', body)
      const ipfs = t.atlas.ipfs
      const original = ipfs.dagExport
      let yielded = 0
      let signal: AbortSignal | undefined
      let ended!: () => void
      const walkEnded = new Promise<void>((resolve) => { ended = resolve })
      ipfs.dagExport = async function * (root, options = {}) {
        signal = options.signal
        try {
          for await (const block of original.call(ipfs, root, options)) {
            yielded++
            yield block
          }
        } finally {
          ended()
        }
      }
      try {
        const controller = new AbortController()
        const res = await anon(`/ipfs/${addresses.ipfs}?format=car`, { signal: controller.signal })
        expect(res.status).toBe(200)
        const reader = (res.body as ReadableStream<Uint8Array>).getReader()
        await reader.read()
        controller.abort()
        await walkEnded
        expect(signal?.aborted).toBe(true)
        // 48 leaves and a root: the walk ended well before the last of them
        expect(yielded).toBeLessThan(49)
      } finally {
        ipfs.dagExport = original
      }
    })

    it('cuts the response short, instead of ending it cleanly, when a block is missing', async () => {
      const body = randomBytes(4 * MiB)
      const { addresses } = await upload('pub', 'holed.bin', body)
      const car = await verifyCar(new Uint8Array(await (await anon(`/ipfs/${addresses.ipfs}?format=car`)).arrayBuffer()))
      await unlink(blockFile((car.blocks[3] as { cid: CID }).cid))
      const res = await anon(`/ipfs/${addresses.ipfs}?format=car`)
      // the root was there: the status went out before the hole was found
      expect(res.status).toBe(200)
      await expect(res.arrayBuffer()).rejects.toThrow()
    })

    it('answers 503 when the root block is damaged', async () => {
      const body = randomBytes(2 * MiB)
      const { addresses } = await upload('pub', 'damaged.bin', body)
      await writeFile(blockFile(CID.parse(addresses.ipfs)), randomBytes(100))
      for (const query of ['?format=raw', '?format=car']) {
        const res = await anon(`/ipfs/${addresses.ipfs}${query}`)
        expect(res.status, query).toBe(503)
        expect((await res.json() as { code: string }).code).toBe('ContentUnavailable')
      }
    })
  })

  describe('errors', () => {
    const problem = async (res: Response): Promise<{ status: number, code: string }> => {
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      return await res.json() as { status: number, code: string }
    }

    it('rejects what is not a CID', async () => {
      const res = await anon('/ipfs/not-a-cid')
      expect(res.status).toBe(400)
      expect((await problem(res)).code).toBe('InvalidAddress')
      // a BitTorrent infohash resolves elsewhere, but is no CID
      expect((await anon(`/ipfs/${'ab'.repeat(20)}`)).status).toBe(400)
    })

    it('rejects formats it does not serve', async () => {
      for (const query of ['?format=dag-json', '?format=tar', '?format=car&car-version=2', '?format=car&car-order=foo', '?format=car&dag-scope=some']) {
        const res = await anon(`/ipfs/${bigCid}${query}`)
        expect(res.status, query).toBe(400)
        expect((await problem(res)).code).toBe('BadRequest')
      }
      expect((await anon(`/ipfs/${bigCid}`, { headers: { accept: 'application/vnd.ipld.dag-json' } })).status).toBe(400)
      expect((await anon(`/ipfs/${bigCid}`, { headers: { accept: 'application/vnd.ipld.car; version=2' } })).status).toBe(400)
      // a browser's Accept gets the file
      const browser = await anon(`/ipfs/${smallCid}`, { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } })
      expect(browser.headers.get('content-type')).toBe('application/octet-stream')
    })

    it('has no path below a file', async () => {
      for (const query of ['', '?format=car', '?format=raw']) {
        const res = await anon(`/ipfs/${bigCid}/some/file.txt${query}`)
        expect(res.status, query).toBe(404)
        expect((await problem(res)).code).toBe('NotFound')
      }
    })

    it('is 404 for a CID it does not store', async () => {
      const digest = await sha2.sha256.digest(Buffer.from('never stored'))
      for (const cid of [CID.createV1(raw.code, digest), CID.createV1(0x70, digest)]) {
        for (const query of ['', '?format=raw', '?format=car']) {
          const res = await anon(`/ipfs/${cid.toString()}${query}`)
          expect(res.status, `${cid} ${query}`).toBe(404)
          expect((await problem(res)).code).toBe('NoSuchContent')
        }
      }
    })
  })
})
