/**
 * Coordination between imports and garbage collection.
 *
 * An import writes its blocks first and retains its root only at the end, so for a while its
 * blocks are on disk with no pin reaching them. A `remove()` running meanwhile must not delete
 * those blocks, even when the content it removes shares them (the very case of deduplication).
 * Helia's blockstore lock only covers single block writes, not the import-then-pin sequence, so
 * the backend keeps its own account: an import holds every block it writes until it has pinned
 * or given up, and the collector deletes only blocks nobody holds.
 *
 * The hold is taken synchronously before the write and the collector checks holds synchronously
 * before it starts an unlink; a write that arrives while an unlink of the same block is under way
 * waits for the unlink and then writes the block again. So either the collector sees the hold and
 * keeps the block, or the block is deleted before the writer stores it anew.
 */

/** Holds that imports in flight take on blocks, and the deletions the collector runs. */
export class BlockGuard {
  readonly #holds = new Map<string, number>()
  readonly #deleting = new Map<string, Promise<void>>()

  /** Take a hold on `block` (re-entrant: every hold needs its own release). */
  hold (block: string): void {
    this.#holds.set(block, (this.#holds.get(block) ?? 0) + 1)
  }

  /** Give back one hold on `block`. */
  release (block: string): void {
    const count = (this.#holds.get(block) ?? 0) - 1
    if (count <= 0) this.#holds.delete(block)
    else this.#holds.set(block, count)
  }

  /** Resolves once no deletion of `block` is under way (at once, usually). */
  async settled (block: string): Promise<void> {
    await this.#deleting.get(block)
  }

  /**
   * Run `unlink` for `block` unless something holds it.
   *
   * @returns false when the block is held and was kept
   */
  async delete (block: string, unlink: () => Promise<void>): Promise<boolean> {
    if (this.#holds.has(block)) return false
    const running = this.#deleting.get(block)
    if (running !== undefined) {
      await running
      return true
    }
    const deletion = unlink().finally(() => this.#deleting.delete(block))
    this.#deleting.set(block, deletion.catch(() => {}))
    await deletion
    return true
  }
}

/** A FIFO async lock: `run()` calls execute one at a time, in call order. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve()

  async run<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn)
    this.#tail = result.catch(() => {})
    return result
  }
}
