/**
 * A gate between uploads in flight and the sweeper that removes unreferenced data from the
 * backends. Uploads pass through concurrently; a sweep runs only when no upload is in flight and
 * holds new uploads back while it runs (a sweep is short: unpin, stop seeding, delete files).
 *
 * Why: a backend stores an upload's bytes before the metadata row exists, so a sweep that ran
 * beside an upload of the same bytes could remove data that the upload is about to commit.
 */
export class IngestGate {
  private active = 0
  private sweeping: Promise<void> | undefined
  private idleWaiters: Array<() => void> = []

  /** Enter as an upload; call the returned function exactly once when the upload is settled. */
  async enter (): Promise<() => void> {
    while (this.sweeping !== undefined) await this.sweeping
    this.active++
    let left = false
    return () => {
      if (left) return
      left = true
      this.active--
      if (this.active === 0) for (const w of this.idleWaiters.splice(0)) w()
    }
  }

  /** Uploads in flight now */
  get inFlight (): number {
    return this.active
  }

  /**
   * Run `fn` when no upload is in flight, keeping new uploads out until it settles. Waits for
   * uploads in flight to finish (it does not preempt them).
   */
  async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    for (;;) {
      if (this.sweeping !== undefined) await this.sweeping
      else if (this.active > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
      else break
    }
    let release!: () => void
    this.sweeping = new Promise<void>((resolve) => { release = resolve })
    try {
      return await fn()
    } finally {
      this.sweeping = undefined
      release()
    }
  }
}
