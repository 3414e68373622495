/**
 * Runs one task per item with at most `concurrency` at once; pause aborts the
 * running tasks and puts their items back at the front of the queue; cancel ends
 * everything. Pure (no I/O); unit-tested.
 */
export type PoolState = 'idle' | 'running' | 'paused' | 'done' | 'failed'

const PAUSED = Symbol('paused')

export class Pool<T> {
  private queue: T[]
  private running = new Map<T, AbortController>()
  private _state: PoolState = 'idle'
  private resolveDone!: () => void
  private rejectDone!: (e: unknown) => void
  readonly done: Promise<void>

  constructor(
    items: readonly T[],
    public concurrency: number,
    private readonly task: (item: T, signal: AbortSignal) => Promise<void>,
  ) {
    if (!(concurrency >= 1)) throw new RangeError('concurrency must be at least 1')
    this.queue = [...items]
    this.done = new Promise<void>((res, rej) => {
      this.resolveDone = res
      this.rejectDone = rej
    })
    this.done.catch(() => {}) // the owner observes it; no unhandled rejection here
  }

  get state(): PoolState {
    return this._state
  }

  /** Items not started yet, in order (for signing ahead). */
  upcoming(limit: number): T[] {
    return this.queue.slice(0, limit)
  }

  get active(): number {
    return this.running.size
  }

  start(): void {
    if (this._state !== 'idle' && this._state !== 'paused') return
    this._state = 'running'
    this.fill()
    this.checkDone()
  }

  pause(): void {
    if (this._state !== 'running') return
    this._state = 'paused'
    for (const c of this.running.values()) c.abort(PAUSED)
  }

  resume(): void {
    if (this._state === 'paused') this.start()
  }

  /** Ends the pool: running tasks are aborted with `reason`, `done` rejects with it. */
  cancel(reason: unknown): void {
    if (this._state === 'done' || this._state === 'failed') return
    this._state = 'failed'
    for (const c of this.running.values()) c.abort(reason)
    this.queue = []
    this.rejectDone(reason)
  }

  private fill(): void {
    if (this._state !== 'running') return
    while (this.running.size < this.concurrency && this.queue.length > 0) {
      const item = this.queue.shift() as T
      const c = new AbortController()
      this.running.set(item, c)
      let p: Promise<void>
      try {
        p = this.task(item, c.signal)
      } catch (e) {
        p = Promise.reject(e)
      }
      p.then(
        () => {
          this.running.delete(item)
          this.fill()
          this.checkDone()
        },
        (e) => {
          this.running.delete(item)
          if (c.signal.aborted && c.signal.reason === PAUSED) {
            // Paused (or paused and resumed before it noticed): do it again later.
            this.queue.unshift(item)
            this.fill()
          } else if (this._state === 'running' || this._state === 'paused') {
            this.cancel(e)
          }
        },
      )
    }
  }

  private checkDone(): void {
    if (this._state === 'running' && this.queue.length === 0 && this.running.size === 0) {
      this._state = 'done'
      this.resolveDone()
    }
  }
}
