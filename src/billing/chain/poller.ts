/**
 * A background step run every so often until stopped (the deposit scanner, the withdrawal
 * driver): one step at a time, the next one `intervalMs` after the previous ended, aborted by
 * `stop()`. A step that fails is logged once per distinct failure (a node that is down would
 * otherwise log every few seconds) and tried again at the next tick.
 */
export interface PollerLogger {
  error(obj: object, msg?: string): void
}

export class Poller {
  readonly #step: (signal: AbortSignal) => Promise<unknown>
  readonly #log: PollerLogger
  readonly #what: string
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #abort = new AbortController()
  #stopped = true
  #lastError = ''

  /** @param what names the step in the failure log line */
  constructor (what: string, step: (signal: AbortSignal) => Promise<unknown>, log: PollerLogger) {
    this.#what = what
    this.#step = step
    this.#log = log
  }

  /** Run the step now, then every `intervalMs` after each run ends, until {@link stop}. */
  start (intervalMs: number): void {
    this.#stopped = false
    const tick = (): void => {
      this.#running = this.#run().finally(() => {
        this.#running = undefined
        if (!this.#stopped) {
          this.#timer = setTimeout(tick, intervalMs)
          this.#timer.unref()
        }
      })
    }
    tick()
  }

  /** Stop: abort the step in progress and wait for it to end. */
  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#abort.abort()
    await this.#running
    this.#abort = new AbortController()
  }

  async #run (): Promise<void> {
    try {
      await this.#step(this.#abort.signal)
      this.#lastError = ''
    } catch (err) {
      if (this.#stopped) return
      const message = err instanceof Error ? err.message : String(err)
      if (message !== this.#lastError) this.#log.error({ err }, `${this.#what} failed; retrying`)
      this.#lastError = message
    }
  }
}
