/**
 * The reference the REST ingest is compared with: the same bytes added straight into Helia by
 * `unixfs(helia).addByteStream()` under Atlas's import profile, in a process of its own.
 *
 * The storage mirrors what the IPFS backend builds (src/backends/ipfs/ipfs-backend.ts, offline):
 * `createHeliaLight` over an `FsBlockstore` at `<dir>/blocks` and an `FsDatastore` at
 * `<dir>/datastore`, no libp2p. What the reference leaves out is what Atlas adds on top: HTTP,
 * the whole-body MD5 and SHA-256, the fan-out, the block guard, pinning and the metadata commit.
 *
 * Run by run.ts with an IPC channel: it says `ready`, then handles `run` messages one at a time
 * (the parent resets its memory high-water mark in between) and exits on `exit`.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { unixfs } from '@helia/unixfs'
import { FsBlockstore } from 'blockstore-fs'
import { FsDatastore } from 'datastore-fs'
import { createHeliaLight } from 'helia'
import { unixfsImporterOptions } from '../src/backends/ipfs/profile.ts'
import { payloadBytes, type Payload } from './bytes.ts'

export type DirectRequest =
  | { type: 'run', payload: Payload, dir: string }
  | { type: 'exit' }

export type DirectReply =
  | { type: 'ready' }
  | { type: 'done', cid: string, ms: number, setupMs: number }
  | { type: 'failed', error: string }

/**
 * Import `payload` into a fresh Helia repository at `dir`.
 *
 * @returns the root CID, the import time (from the first byte pulled to the root CID; Helia's
 * start and stop are timed apart as setupMs)
 */
export async function directImport (payload: Payload, dir: string): Promise<{ cid: string, ms: number, setupMs: number }> {
  const setupStarted = performance.now()
  await mkdir(dir, { recursive: true })
  const blockstore = new FsBlockstore(join(dir, 'blocks'))
  const datastore = new FsDatastore(join(dir, 'datastore'))
  await blockstore.open()
  await datastore.open()
  const helia = createHeliaLight({ blockstore, datastore })
  await helia.start()
  let setupMs = performance.now() - setupStarted
  let cid: string
  let ms: number
  try {
    const fs = unixfs(helia)
    // the profile sets no progress listener; leaving the key out reconciles the two libraries'
    // listener types (@helia/unixfs widens the importer's progress events)
    const { onProgress: _none, ...profile } = unixfsImporterOptions()
    const started = performance.now()
    cid = (await fs.addByteStream(payloadBytes(payload), profile)).toString()
    ms = performance.now() - started
  } finally {
    const stopStarted = performance.now()
    await helia.stop()
    await blockstore.close()
    await datastore.close()
    setupMs += performance.now() - stopStarted
  }
  return { cid, ms, setupMs }
}

function send (reply: DirectReply): void {
  process.send?.(reply)
}

if (process.send !== undefined && process.argv[1] === import.meta.filename) {
  process.on('message', (message: DirectRequest) => {
    if (message.type === 'exit') {
      process.disconnect()
      return
    }
    directImport(message.payload, message.dir).then(
      (result) => { send({ type: 'done', ...result }) },
      (err: unknown) => { send({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) }) }
    )
  })
  send({ type: 'ready' })
}
