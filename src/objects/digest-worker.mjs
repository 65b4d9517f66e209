// The worker side of the digest pool (src/objects/digest-pool.ts): MD5 and SHA-256 of upload
// bodies, off the main thread. Plain JavaScript on purpose: a worker that loads a .ts file also
// loads Node's type-stripping compiler into its isolate, tens of MiB for two hash functions.
//
// Messages in:  { id, op: 'update', buf, offset, length } (buf transferred), { id, op: 'end' }, { id, op: 'drop' }
// Messages out: { id, op: 'ack', bytes, buf } (buf transferred back for reuse), { id, op: 'done', md5, sha256 }
import { createHash } from 'node:crypto'
import { parentPort } from 'node:worker_threads'

const sessions = new Map()

parentPort.on('message', (message) => {
  if (message.op === 'drop') {
    sessions.delete(message.id)
    return
  }
  let session = sessions.get(message.id)
  if (session === undefined) {
    session = { md5: createHash('md5'), sha256: createHash('sha256') }
    sessions.set(message.id, session)
  }
  if (message.op === 'update') {
    const view = new Uint8Array(message.buf, message.offset, message.length)
    session.md5.update(view)
    session.sha256.update(view)
    parentPort.postMessage({ id: message.id, op: 'ack', bytes: message.length, buf: message.buf }, [message.buf])
  } else if (message.op === 'end') {
    sessions.delete(message.id)
    parentPort.postMessage({ id: message.id, op: 'done', md5: session.md5.digest('hex'), sha256: session.sha256.digest('hex') })
  }
})
