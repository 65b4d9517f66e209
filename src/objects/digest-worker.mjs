// The worker side of the digest pool (src/objects/digest-pool.ts): MD5 and SHA-256 of upload
// bodies, off the main thread. Plain JavaScript on purpose: a worker that loads a .ts file also
// loads Node's type-stripping compiler into its isolate, tens of MiB for two hash functions.
//
// workerData: { slots: SharedArrayBuffer[] }, the memory the blocks come in (shared, reused).
// Messages in:  { id, op: 'update', slot, length }, { id, op: 'end' }, { id, op: 'drop' }
// Messages out: { id, op: 'ack', slot, bytes } (the slot is free again), { id, op: 'done', md5, sha256 }
import { createHash } from 'node:crypto'
import { parentPort, workerData } from 'node:worker_threads'

const slots = workerData.slots.map((memory) => new Uint8Array(memory))
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
    const view = slots[message.slot].subarray(0, message.length)
    session.md5.update(view)
    session.sha256.update(view)
    // from here on the main thread may overwrite the slot
    parentPort.postMessage({ id: message.id, op: 'ack', slot: message.slot, bytes: message.length })
  } else if (message.op === 'end') {
    sessions.delete(message.id)
    parentPort.postMessage({ id: message.id, op: 'done', md5: session.md5.digest('hex'), sha256: session.sha256.digest('hex') })
  }
})
