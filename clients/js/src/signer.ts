import type { Api } from './api.js'
import type { PartUrl } from './types.js'

interface Waiter {
  checksum: string | undefined
  resolve: (p: PartUrl) => void
  reject: (e: unknown) => void
}

/**
 * Part URLs on demand: parts asked for at about the same time (and, without
 * checksums, the next parts in the queue) are signed in one `…/parts` call;
 * URLs close to expiry are signed again; a URL that failed is dropped.
 */
export class Signer {
  private cache = new Map<number, PartUrl>()
  private waiting = new Map<number, Waiter[]>()
  private busy = false
  /** Re-sign URLs that expire within this many ms (by the local clock). */
  margin = 30_000

  constructor(
    private readonly api: Pick<Api, 'sign'>,
    private readonly token: string,
    private readonly checksummed: boolean,
    private readonly ahead: () => number[],
    private readonly signal?: AbortSignal,
    private readonly now: () => number = () => Date.now(),
  ) {}

  seed(parts: PartUrl[]): void {
    for (const p of parts) this.cache.set(p.partNumber, p)
  }

  invalidate(n: number): void {
    this.cache.delete(n)
  }

  private fresh(p: PartUrl | undefined): p is PartUrl {
    return !!p && Date.parse(p.expiresAt) - this.now() > this.margin
  }

  /** A URL for part `n` (bound to `checksum` when the upload has checksums). */
  get(n: number, checksum: string | undefined, signal?: AbortSignal): Promise<PartUrl> {
    const c = this.cache.get(n)
    if (this.fresh(c) && (!this.checksummed || c.headers && Object.values(c.headers).includes(checksum ?? ''))) {
      return Promise.resolve(c)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const l = this.waiting.get(n)
        if (l) {
          const i = l.indexOf(w)
          if (i >= 0) l.splice(i, 1)
          if (l.length === 0) this.waiting.delete(n)
        }
        reject(signal!.reason)
      }
      const off = () => signal?.removeEventListener('abort', onAbort)
      const w: Waiter = {
        checksum,
        resolve: (p) => { off(); resolve(p) },
        reject: (e) => { off(); reject(e) },
      }
      const list = this.waiting.get(n) ?? []
      list.push(w)
      this.waiting.set(n, list)
      signal?.addEventListener('abort', onAbort, { once: true })
      // Let every part that asks in this turn join the same batch.
      queueMicrotask(() => void this.flush())
    })
  }

  private async flush(): Promise<void> {
    if (this.busy || this.waiting.size === 0) return
    this.busy = true
    const batch = new Map<number, Waiter[]>()
    for (const [n, ws] of this.waiting) {
      if (batch.size >= 1000) break
      batch.set(n, ws)
    }
    for (const n of batch.keys()) this.waiting.delete(n)
    try {
      let body: { partNumbers: number[] } | { parts: { partNumber: number; checksum: string }[] }
      if (this.checksummed) {
        body = { parts: [...batch].map(([n, ws]) => ({ partNumber: n, checksum: ws[0]!.checksum ?? '' })) }
      } else {
        const numbers = [...batch.keys()]
        for (const n of this.ahead()) {
          if (numbers.length >= 1000) break
          if (!batch.has(n) && !this.fresh(this.cache.get(n))) numbers.push(n)
        }
        body = { partNumbers: numbers }
      }
      const { parts } = await this.api.sign(this.token, body, this.signal)
      for (const p of parts) {
        this.cache.set(p.partNumber, p)
        for (const w of batch.get(p.partNumber) ?? []) w.resolve(p)
        batch.delete(p.partNumber)
      }
      for (const [n, ws] of batch) for (const w of ws) w.reject(new Error(`the broker did not sign part ${n}`))
    } catch (e) {
      for (const ws of batch.values()) for (const w of ws) w.reject(e)
    } finally {
      this.busy = false
      if (this.waiting.size > 0) void this.flush()
    }
  }
}
