/**
 * IPFS routes of the content gateway: `GET /ipfs/{cid}[/{path}]` and HEAD, for the contents
 * Atlas stores on IPFS. Not a public gateway: it serves Atlas's own contents only, from the local
 * block store, and never fetches anything from the IPFS network for a caller.
 *
 * Three kinds of response, after the IPFS HTTP gateway specifications:
 * - the file itself (path gateway, deserialized): the bytes, with Range and conditional requests;
 * - one raw block (trustless gateway): `?format=raw` or `Accept: application/vnd.ipld.raw`;
 * - a CAR v1 of the DAG (trustless gateway): `?format=car` or `Accept: application/vnd.ipld.car`,
 *   blocks depth-first in pre-order (`order=dfs`), each once unless `dups=y` is asked for, with
 *   `dag-scope=block|entity|all` and `entity-bytes=from:to`.
 *
 * Which CIDs: the content's UnixFS root (its IPFS address), and for the file response also its
 * canonical id (the CIDv1 raw over the whole bytes, which those bytes verify against). Blocks
 * below a root are not served on their own: who may read a block is decided per content, and a
 * block does not say which contents hold it. A client gets them in the root's CAR, or over
 * Bitswap. Atlas stores single files, never UnixFS directories, so a `{path}` below a CID names
 * nothing (404).
 *
 * Public content needs no credentials; private content answers to its owner's bearer token, and
 * is 404 to anyone else, like an address that holds nothing.
 */
import { Readable } from 'node:stream'
import { CarWriter } from '@ipld/car/writer'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { raceAbort } from '../../backends/signals.ts'
import { AtlasError } from '../../core/errors.ts'
import { resume } from '../../core/streams.ts'
import type { Content } from '../../metadata/store.ts'
import { deliver, deliveryFor } from '../delivery.ts'
import { requestSignal } from '../http.ts'
import { assertContentReadable, contentHeaders } from '../rest/content.ts'
import { checkConditions, sendContent } from '../send-content.ts'
import type { GatewayDeps } from '../server.ts'

/** One block of a DAG. */
export interface IpfsBlock {
  cid: CID
  bytes: Uint8Array
}

/** What the routes need from the IPFS backend (local reads only). */
export interface IpfsBlockSource {
  /** One block of a retained DAG. @throws NotFoundError, ContentUnavailableError */
  getBlock(cid: CID, options?: { signal?: AbortSignal }): Promise<Uint8Array>
  /** The blocks of a retained DAG, depth-first pre-order. @throws NotFoundError, ContentUnavailableError */
  dagExport(root: CID, options?: { signal?: AbortSignal, duplicates?: boolean, range?: { start: number, end: number } }): AsyncIterable<IpfsBlock>
}

const RAW_TYPE = 'application/vnd.ipld.raw'
const CAR_TYPE = 'application/vnd.ipld.car'
const IMMUTABLE = 'public, max-age=29030400, immutable'

type DagScope = 'block' | 'entity' | 'all'

/** The response a request asks for. */
type Format =
  | { kind: 'file' }
  | { kind: 'raw' }
  | { kind: 'car', duplicates: boolean }

interface Negotiated {
  format: Format
  /** Chosen by the `format` query parameter (otherwise by Accept, or by default) */
  fromQuery: boolean
}

interface MediaRange {
  type: string
  params: Map<string, string>
  q: number
}

/** RFC 9110 Accept, parsed into media ranges ordered by preference (stable for equal q). */
function parseAccept (header: string | undefined): MediaRange[] {
  if (header === undefined) return []
  const ranges: MediaRange[] = []
  for (const part of header.split(',')) {
    const [type, ...rest] = part.split(';').map((s) => s.trim())
    if (type === undefined || type === '') continue
    const params = new Map<string, string>()
    let q = 1
    for (const p of rest) {
      const eq = p.indexOf('=')
      if (eq < 0) continue
      const name = p.slice(0, eq).trim().toLowerCase()
      const value = p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase()
      if (name === 'q') q = Number.isFinite(Number(value)) ? Number(value) : 0
      else params.set(name, value)
    }
    if (q > 0) ranges.push({ type: type.toLowerCase(), params, q })
  }
  return ranges.map((r, i) => ({ r, i })).sort((a, b) => b.r.q - a.r.q || a.i - b.i).map(({ r }) => r)
}

/**
 * CAR variant from content type parameters, overridden by the `car-*` query parameters: version 1
 * only, order `dfs` (what a client that says `unk` or nothing also gets), dups `n` by default.
 * Undefined when a parameter asks for something this gateway does not produce.
 */
function carVariant (params: Map<string, string>, query: Record<string, string | undefined>): { duplicates: boolean } | undefined {
  const version = query['car-version'] ?? params.get('version')
  const order = query['car-order'] ?? params.get('order')
  const dups = query['car-dups'] ?? params.get('dups')
  if (version !== undefined && version !== '1') return undefined
  if (order !== undefined && order !== 'dfs' && order !== 'unk') return undefined
  if (dups !== undefined && dups !== 'y' && dups !== 'n') return undefined
  return { duplicates: dups === 'y' }
}

/**
 * The response format: the `format` query parameter first (as the trustless gateway
 * specification asks), then the most preferred Accept media range that names something served
 * here, else the file. Asking only for IPFS types this gateway does not produce is a 400, not
 * silently the file: a trustless client would otherwise mistake the file for what it asked for.
 */
function negotiate (query: Record<string, string | undefined>, accept: string | undefined): Negotiated {
  const ranges = parseAccept(accept)
  const format = query.format
  if (format !== undefined && format !== '') {
    if (format === 'raw') return { format: { kind: 'raw' }, fromQuery: true }
    if (format === 'car') {
      const params = ranges.find((r) => r.type === CAR_TYPE)?.params ?? new Map<string, string>()
      const variant = carVariant(params, query)
      if (variant === undefined) throw new AtlasError('BadRequest', 'This gateway writes CAR version 1, order=dfs, dups=n or dups=y')
      return { format: { kind: 'car', ...variant }, fromQuery: true }
    }
    throw new AtlasError('BadRequest', `Unsupported format "${format.slice(0, 40)}": this gateway serves format=raw, format=car, or the file without format`)
  }
  let unsupported = false
  for (const range of ranges) {
    if (range.type === RAW_TYPE) return { format: { kind: 'raw' }, fromQuery: false }
    if (range.type === CAR_TYPE) {
      const variant = carVariant(range.params, query)
      if (variant !== undefined) return { format: { kind: 'car', ...variant }, fromQuery: false }
      unsupported = true
    } else if (range.type.startsWith('application/vnd.ipld.') || range.type.startsWith('application/vnd.ipfs.')) {
      unsupported = true
    } else {
      return { format: { kind: 'file' }, fromQuery: false }
    }
  }
  if (unsupported) throw new AtlasError('BadRequest', `None of the accepted types is served here: ${RAW_TYPE}, ${CAR_TYPE} (version=1, order=dfs) or the file`)
  return { format: { kind: 'file' }, fromQuery: false }
}

/** `dag-scope` and `entity-bytes` of a CAR request, resolved against the file's size. */
function carSelection (query: Record<string, string | undefined>, size: number): { scope: DagScope, range?: { start: number, end: number }, tag: string } {
  const scopeParam = query['dag-scope']
  if (scopeParam !== undefined && scopeParam !== 'block' && scopeParam !== 'entity' && scopeParam !== 'all') {
    throw new AtlasError('BadRequest', 'dag-scope is one of block, entity, all')
  }
  const bytes = query['entity-bytes']
  if (bytes === undefined) {
    const scope = scopeParam ?? 'all'
    return { scope, tag: scope === 'all' ? '' : `.${scope}` }
  }
  if (scopeParam !== undefined && scopeParam !== 'entity') {
    throw new AtlasError('BadRequest', 'entity-bytes implies dag-scope=entity')
  }
  const match = /^(-?\d{1,16}):(-?\d{1,16}|\*)$/.exec(bytes)
  if (match === null) throw new AtlasError('BadRequest', 'entity-bytes is from:to, each an integer (negative: from the end) and to also *')
  const position = (text: string): number => {
    const n = Number(text)
    return n < 0 ? Math.max(size + n, 0) : n
  }
  const start = position(match[1] as string)
  const last = match[2] === '*' ? size - 1 : Math.min(position(match[2] as string), size - 1)
  if (start >= size && size > 0) throw new AtlasError('BadRequest', `entity-bytes starts at ${start}, past the end of the ${size}-byte file`)
  // an empty range is the root block alone (the specification's answer to a range that selects nothing)
  if (last < start) return { scope: 'block', tag: `.bytes-${start}-${start - 1}` }
  return { scope: 'entity', range: { start, end: last + 1 }, tag: `.bytes-${start}-${last}` }
}

/**
 * A CAR v1 of `blocks` under `roots`, as bytes. CarWriter's put() settles only once the bytes of
 * the block were read from its output, so one block at most waits here. A walk that fails makes
 * the stream fail (an HTTP response cut short, never a CAR that looks complete); a consumer that
 * stops early aborts the walk through `stop` and the writer's output is drained in the background
 * so that nothing stays waiting.
 */
async function * carStream (roots: CID[], blocks: AsyncIterable<IpfsBlock> | Iterable<IpfsBlock>, stop: AbortController): AsyncGenerator<Uint8Array, void, undefined> {
  const { writer, out } = CarWriter.create(roots)
  const chunks = out[Symbol.asyncIterator]()
  const failure = new AbortController()
  // the writer runs on its own; it settles nothing the consumer waits for except through `failure`
  void (async () => {
    try {
      for await (const block of blocks) await writer.put(block)
      await writer.close()
    } catch (err) {
      failure.abort(err)
    }
  })()
  let finished = false
  try {
    for (;;) {
      const next = await raceAbort(chunks.next(), failure.signal)
      if (next.done === true) break
      yield next.value
    }
    finished = true
  } finally {
    if (!finished) {
      stop.abort()
      void (async () => {
        while ((await raceAbort(chunks.next(), failure.signal)).done !== true);
      })().catch(() => {})
    }
  }
}

export async function ipfsRoutes (app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  const { metadata, objects } = deps

  const blockSource = (): IpfsBlockSource => {
    if (deps.ipfs === undefined) throw new AtlasError('NotFound', 'The IPFS backend is not enabled on this gateway')
    return deps.ipfs
  }

  /** The content at `cid`, if the caller may read it and it is stored on IPFS. */
  const readable = async (request: FastifyRequest, cid: CID): Promise<{ content: Content, root: CID, payer: string }> => {
    const content = await objects.resolve(cid.toV1().toString())
    const payer = await assertContentReadable(metadata, request.principal, content)
    const location = content.locations.find((l) => l.backend === 'ipfs')
    if (location === undefined) throw new AtlasError('NoSuchContent', 'That content is not stored on IPFS')
    return { content, root: CID.parse(location.address), payer }
  }

  const handler = async (request: FastifyRequest<{ Params: { cid: string, '*'?: string }, Querystring: Record<string, string | undefined> }>, reply: FastifyReply): Promise<FastifyReply> => {
    let cid: CID
    try {
      cid = CID.parse(request.params.cid)
    } catch (err) {
      throw new AtlasError('InvalidAddress', 'Not a CID', { cause: err })
    }
    const query = request.query
    const { format, fromQuery } = negotiate(query, request.headers.accept)
    const subpath = request.params['*'] ?? ''
    const urlPath = request.url.split('?')[0] as string

    // identity CIDs carry their bytes: the trustless specification's probe `bafkqaaa` is one
    if (cid.multihash.code === identity.code) {
      if (cid.code !== raw.code || subpath !== '') throw new AtlasError('NotFound', 'Only raw identity CIDs are served here')
      return sendInline(request, reply, cid, format, query)
    }

    const { content, root, payer } = await readable(request, cid)
    const delivery = deliveryFor(request, deps, payer)
    if (subpath !== '') {
      throw new AtlasError('NotFound', 'Atlas stores single files, not UnixFS directories: there is no path below a file')
    }
    const isRoot = root.equals(cid.toV1())
    const cidText = cid.toString()

    const headers: Record<string, string> = {
      ...contentHeaders(content),
      'x-ipfs-path': urlPath,
      'x-ipfs-roots': cidText,
      'x-content-type-options': 'nosniff'
    }
    // content reached with credentials may be private: shared caches must not keep it
    headers['cache-control'] = request.principal === null ? IMMUTABLE : 'private, max-age=29030400, immutable'
    void reply.header('vary', 'Accept')

    if (format.kind === 'file') {
      // the bytes under a CID that names them: the UnixFS root, or the raw CID of the whole bytes
      if (!isRoot && !cid.toV1().equals(CID.parse(content.id))) throw new AtlasError('NoSuchContent', 'No content you may read is stored at that address')
      return await sendContent(request, reply, objects, { content, etag: `"${cidText}"`, contentType: 'application/octet-stream', headers, delivery })
    }
    if (!isRoot) {
      throw new AtlasError('NoSuchContent', `${cidText} names the whole content, which is not one IPFS block here: ask for its UnixFS root ${root.toString()}`)
    }
    if (!fromQuery) headers['content-location'] = `${urlPath}?${new URLSearchParams({ ...definedOnly(query), format: format.kind }).toString()}`

    const signal = requestSignal(request, reply)
    if (format.kind === 'raw') {
      const etag = `"${cidText}.raw"`
      if (notModified(request, reply, etag)) return reply
      const bytes = await blockSource().getBlock(root, { signal })
      if (request.method === 'HEAD') {
        setHeaders(reply, { ...headers, etag })
        void reply.header('content-type', RAW_TYPE).header('content-length', String(bytes.byteLength))
        return reply.send()
      }
      const { source: block, finish } = await deliver(request, delivery, bytes.byteLength, () => (async function * () { yield Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) })(), signal)
      reply.raw.once('close', () => { void finish() })
      setHeaders(reply, { ...headers, etag })
      void reply.header('content-type', RAW_TYPE)
        .header('content-disposition', `attachment; filename="${cidText}.bin"`)
        .header('content-length', String(bytes.byteLength))
      return reply.send(Readable.from(block, { objectMode: false }))
    }

    const selection = carSelection(query, content.size)
    const etag = `"${cidText}.car${selection.tag}${format.duplicates ? '.dups' : ''}"`
    if (notModified(request, reply, etag)) return reply
    const source = blockSource()
    const stop = new AbortController()
    const walkSignal = AbortSignal.any([signal, stop.signal])
    let blocks: AsyncIterable<IpfsBlock>
    if (selection.scope === 'block' || request.method === 'HEAD') {
      // the root block is read either way: a missing root is an error status, not a broken CAR
      const bytes = await source.getBlock(root, { signal })
      blocks = (async function * () { yield { cid, bytes } })()
    } else {
      const walk = source.dagExport(root, { signal: walkSignal, duplicates: format.duplicates, range: selection.range })[Symbol.asyncIterator]()
      const first = await walk.next()
      if (first.done === true) throw new AtlasError('InternalError', 'The DAG walk yielded no root block')
      // the root under the CID as asked for (a CIDv0 request gets a CIDv0 root)
      blocks = resume({ done: false, value: { cid, bytes: first.value.bytes } }, walk)
    }
    setHeaders(reply, { ...headers, etag })
    void reply.header('content-type', `${CAR_TYPE}; version=1; order=dfs; dups=${format.duplicates ? 'y' : 'n'}`)
      .header('content-disposition', `attachment; filename="${cidText}.car"`)
    if (request.method === 'HEAD') return reply.send()
    let metered
    try {
      metered = await deliver(request, delivery, carSizeBound(content.size), () => carStream([cid], blocks, stop), signal)
    } catch (err) {
      stop.abort()
      throw err
    }
    const { finish } = metered
    reply.raw.once('close', () => { void finish() })
    return reply.send(Readable.from(metered.source, { objectMode: false }))
  }

  app.get('/ipfs/:cid', handler)
  app.head('/ipfs/:cid', handler)
  app.get('/ipfs/:cid/*', handler)
  app.head('/ipfs/:cid/*', handler)
}

/**
 * Most bytes a CAR of a `size`-byte UnixFS file can take, for the delivery hold (settled to what
 * is sent): the file's bytes, plus per block a length prefix and a CID (about 40 bytes) and the
 * dag-pb nodes' links (about 45 bytes per leaf), for leaves as small as 256 KiB, plus the header.
 */
function carSizeBound (size: number): number {
  const leaves = Math.ceil(size / (256 * 1024)) + 1
  return size + leaves * 2 * 128 + 64 * 1024
}

/** The inline bytes of a raw identity CID, in the format asked for. */
async function sendInline (request: FastifyRequest, reply: FastifyReply, cid: CID, format: Format, query: Record<string, string | undefined>): Promise<FastifyReply> {
  const cidText = cid.toString()
  const bytes = Buffer.from(cid.multihash.digest)
  const headers: Record<string, string> = {
    'x-ipfs-path': request.url.split('?')[0] as string,
    'x-ipfs-roots': cidText,
    'x-content-type-options': 'nosniff',
    'cache-control': IMMUTABLE
  }
  void reply.header('vary', 'Accept')
  if (format.kind === 'car') {
    carSelection(query, bytes.byteLength)
    const etag = `"${cidText}.car"`
    if (notModified(request, reply, etag)) return reply
    setHeaders(reply, { ...headers, etag })
    void reply.header('content-type', `${CAR_TYPE}; version=1; order=dfs; dups=${format.duplicates ? 'y' : 'n'}`)
      .header('content-disposition', `attachment; filename="${cidText}.car"`)
    if (request.method === 'HEAD') return reply.send()
    // identity blocks never go into a CAR (their bytes are in the CID): the header alone
    return reply.send(Readable.from(carStream([cid], [], new AbortController()), { objectMode: false }))
  }
  const etag = format.kind === 'raw' ? `"${cidText}.raw"` : `"${cidText}"`
  if (notModified(request, reply, etag)) return reply
  setHeaders(reply, { ...headers, etag })
  void reply.header('content-type', format.kind === 'raw' ? RAW_TYPE : 'application/octet-stream')
    .header('content-length', String(bytes.byteLength))
  if (format.kind === 'raw') void reply.header('content-disposition', `attachment; filename="${cidText}.bin"`)
  return request.method === 'HEAD' ? reply.send() : reply.send(bytes)
}

/**
 * Answer 304 (with the ETag alone) when If-None-Match holds `etag`; throw 412 when If-Match does
 * not. Otherwise the caller sends the ETag with the response, once it knows there is one.
 */
function notModified (request: FastifyRequest, reply: FastifyReply, etag: string): boolean {
  if (checkConditions(request.headers, { etag }) !== 'not-modified') return false
  void reply.code(304).header('etag', etag).send()
  return true
}

function setHeaders (reply: FastifyReply, headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers)) void reply.header(name, value)
}

function definedOnly (query: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(query)) if (typeof v === 'string') out[k] = v
  return out
}
