/**
 * The benchmark's HTTP client: a streamed PUT whose body is generated on the fly (never held in
 * memory), and a GET that hashes the body as it arrives.
 */
import { createHash } from 'node:crypto'
import { request, type IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { payloadBytes, type Payload } from './bytes.ts'

export interface HttpResult {
  status: number
  /** Wall time from opening the request to the end of the response body */
  ms: number
}

export interface UploadResult extends HttpResult {
  /** The response body, parsed when it is JSON */
  body: unknown
  /**
   * From the last body byte handed to the socket to the end of the response: the server's work
   * after the body (the import's last blocks, pinning, the metadata commit) plus what was still
   * in socket buffers
   */
  tailMs: number
  /** CPU time this (client) process spent during the upload, seconds */
  clientCpuSeconds: number
}

export interface DownloadResult extends HttpResult {
  bytes: number
  sha256: string
  /** The response body when the status is not 200 (an error document) */
  error?: string
}

/** A JSON request with a bearer token (for the small setup calls). */
export async function jsonRequest (method: string, url: string, token: string, body?: unknown): Promise<{ status: number, body: unknown }> {
  const res = await fetch(url, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' })
    },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {}
  return { status: res.status, body: parsed }
}

/** PUT the payload as a raw body with Content-Length, streamed from the generator. */
export async function uploadPayload (url: string, token: string, payload: Payload): Promise<UploadResult> {
  const cpuAtStart = process.cpuUsage()
  const started = performance.now()
  const req = request(url, {
    method: 'PUT',
    agent: false,
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/octet-stream',
      'content-length': String(payload.size)
    }
  })
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve)
    req.once('error', reject)
  })
  // the server may answer (an error) before it has read the whole body: then sending fails too,
  // and the response is what to report
  let sentAt = Number.NaN
  const sent = pipeline(Readable.from(payloadBytes(payload), { objectMode: false }), req).then(() => { sentAt = performance.now() })
  sent.catch(() => {})
  const res = await response
  const text = await readText(res)
  const ended = performance.now()
  const ms = ended - started
  if (res.statusCode === 200) await sent
  const cpu = process.cpuUsage(cpuAtStart)
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: res.statusCode ?? 0, ms, body, tailMs: ended - sentAt, clientCpuSeconds: (cpu.user + cpu.system) / 1e6 }
}

/** GET `url`, hashing and counting the body as it streams in. */
export async function downloadAndHash (url: string, token: string): Promise<DownloadResult> {
  const started = performance.now()
  const req = request(url, { method: 'GET', agent: false, headers: { authorization: `Bearer ${token}` } })
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve)
    req.once('error', reject)
  })
  req.end()
  const res = await response
  if (res.statusCode !== 200) {
    const error = await readText(res)
    return { status: res.statusCode ?? 0, ms: performance.now() - started, bytes: 0, sha256: '', error }
  }
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of res) {
    const buf = chunk as Buffer
    bytes += buf.byteLength
    hash.update(buf)
  }
  if (!res.complete) throw new Error(`The download of ${url} ended before the end of the response`)
  return { status: 200, ms: performance.now() - started, bytes, sha256: hash.digest('hex') }
}

async function readText (res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
