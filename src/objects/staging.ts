/**
 * The staging area under the data dir: where the parts of multipart uploads wait for their
 * CompleteMultipartUpload. A part is written to a temporary name and renamed into place once
 * whole, so a part file either is complete or does not exist; leftovers of a crash (temporary
 * files, parts no upload refers to) are removed at start.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, readdir, rename, rm, rmdir, unlink } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { AbortedError, isAbortError } from '../core/errors.ts'

const TMP_SUFFIX = '.tmp'

export interface StagedPart {
  /** Path relative to the staging root, as recorded in the metadata */
  path: string
  size: number
  /** Hex MD5 of the bytes */
  md5: string
}

export class StagingArea {
  readonly root: string

  constructor (root: string) {
    this.root = root
  }

  async start (): Promise<void> {
    await mkdir(join(this.root, 'parts'), { recursive: true })
  }

  /**
   * Write `source` as a new part file of the upload. On any failure the temporary file is removed
   * and nothing is left behind.
   */
  async writePart (uploadId: string, partNumber: number, source: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<StagedPart> {
    if (!/^[A-Za-z0-9_-]+$/.test(uploadId)) throw new TypeError('upload ids are URL-safe tokens')
    const dir = join(this.root, 'parts', uploadId)
    await mkdir(dir, { recursive: true })
    const name = `${String(partNumber).padStart(5, '0')}-${randomBytes(6).toString('hex')}`
    const tmp = join(dir, name + TMP_SUFFIX)
    const md5 = createHash('md5')
    let size = 0
    const counted = async function * (): AsyncGenerator<Uint8Array> {
      for await (const chunk of source) {
        size += chunk.byteLength
        md5.update(chunk)
        yield chunk
      }
    }
    try {
      await pipeline(Readable.from(counted()), createWriteStream(tmp, { flags: 'wx' }), { signal })
      await rename(tmp, join(dir, name))
    } catch (err) {
      await rm(tmp, { force: true })
      if (signal?.aborted === true && isAbortError(err)) throw new AbortedError('The upload of a part was aborted', { cause: err })
      throw err
    }
    return { path: relative(this.root, join(dir, name)), size, md5: md5.digest('hex') }
  }

  /** Stream a staged part. */
  read (path: string, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    return createReadStream(this.resolve(path), { highWaterMark: 1024 * 1024, signal })
  }

  /** Remove staged parts; missing files are fine. Empty upload folders go too. */
  async release (paths: string[]): Promise<void> {
    const dirs = new Set<string>()
    for (const path of paths) {
      const full = this.resolve(path)
      await unlink(full).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
      dirs.add(join(full, '..'))
    }
    // an upload's folder goes with its last part (rmdir refuses while others remain)
    for (const dir of dirs) await rmdir(dir).catch(() => {})
  }

  /**
   * Remove every staged file that `keep` does not name: temporary files of writes cut off by a
   * crash, and parts of uploads that were completed or aborted while their files could not go.
   * @returns how many files were removed
   */
  async reconcile (keep: (path: string) => Promise<boolean>): Promise<number> {
    let removed = 0
    const partsDir = join(this.root, 'parts')
    let uploads: string[]
    try {
      uploads = await readdir(partsDir)
    } catch {
      return 0
    }
    for (const upload of uploads) {
      const dir = join(partsDir, upload)
      const files = await readdir(dir).catch(() => [] as string[])
      for (const file of files) {
        const path = relative(this.root, join(dir, file))
        if (file.endsWith(TMP_SUFFIX) || !await keep(path)) {
          await rm(join(dir, file), { force: true })
          removed++
        }
      }
      await rmdir(dir).catch(() => {})
    }
    return removed
  }

  private resolve (path: string): string {
    const full = join(this.root, path)
    if (relative(this.root, full).startsWith('..') || full.includes(`${sep}..${sep}`)) throw new TypeError('staging path escapes the staging area')
    return full
  }
}
