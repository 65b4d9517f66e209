/**
 * The worker side of the digest pool: MD5 and SHA-256 of upload bodies, off the main thread.
 * Messages: `{ id, op: 'update', buf }` (buf is a transferred ArrayBuffer), `{ id, op: 'end' }`,
 * `{ id, op: 'drop' }`; replies `{ id, op: 'ack', bytes }` and `{ id, op: 'done', md5, sha256 }`.
 */
import { createHash, type Hash } from 'node:crypto'
import { parentPort } from 'node:worker_threads'

interface Message {
  id: number
  op: 'update' | 'end' | 'drop'
  buf?: ArrayBuffer
  length?: number
}

const sessions = new Map<number, { md5: Hash, sha256: Hash }>()

parentPort?.on('message', (message: Message) => {
  let session = sessions.get(message.id)
  if (message.op === 'drop') {
    sessions.delete(message.id)
    return
  }
  if (session === undefined) {
    session = { md5: createHash('md5'), sha256: createHash('sha256') }
    sessions.set(message.id, session)
  }
  if (message.op === 'update' && message.buf !== undefined) {
    const view = new Uint8Array(message.buf, 0, message.length ?? message.buf.byteLength)
    session.md5.update(view)
    session.sha256.update(view)
    parentPort?.postMessage({ id: message.id, op: 'ack', bytes: view.byteLength })
    return
  }
  if (message.op === 'end') {
    sessions.delete(message.id)
    parentPort?.postMessage({ id: message.id, op: 'done', md5: session.md5.digest('hex'), sha256: session.sha256.digest('hex') })
  }
})
