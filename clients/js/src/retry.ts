/** Retry policy: capped exponential backoff with jitter. Pure; unit-tested. */
export interface RetryOptions {
  /** Attempts per part or request before giving up (first try included). Default 8. */
  attempts?: number
  /** First backoff, in ms. Default 500. */
  baseDelay?: number
  /** Largest backoff, in ms. Default 20000. */
  maxDelay?: number
}

export const retryDefaults = { attempts: 8, baseDelay: 500, maxDelay: 20_000 }

/**
 * The wait before retry number `attempt` (0 for the first retry): "equal jitter",
 * half of the capped exponential delay plus a random share of the other half, so
 * that a crowd of clients spreads out but no retry comes back immediately.
 * `retryAfter` (ms, from a `Retry-After` header) is honoured as a lower bound, up
 * to one minute.
 */
export function backoff(
  attempt: number,
  opts: RetryOptions = {},
  retryAfter?: number,
  random: () => number = Math.random,
): number {
  const base = opts.baseDelay ?? retryDefaults.baseDelay
  const cap = opts.maxDelay ?? retryDefaults.maxDelay
  const d = Math.min(cap, base * 2 ** Math.min(attempt, 30))
  const jittered = d / 2 + random() * (d / 2)
  return retryAfter !== undefined && retryAfter > 0 ? Math.max(jittered, Math.min(retryAfter, 60_000)) : jittered
}

/** `Retry-After` (seconds or an HTTP date) in ms, if present and valid. */
export function parseRetryAfter(v: string | null | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined
  const s = Number(v)
  if (Number.isFinite(s)) return s >= 0 ? s * 1000 : undefined
  const t = Date.parse(v)
  return Number.isNaN(t) ? undefined : Math.max(0, t - now)
}

/** What to do after a part PUT to storage failed. `status` 0: no answer (network error, timeout). */
export type PutVerdict = 'resign' | 'retry' | 'fatal'
export function classifyPut(status: number): PutVerdict {
  if (status === 403) return 'resign' // expired (or otherwise refused) URL: sign again
  if (status === 0 || status === 408 || status === 429 || status >= 500) return 'retry'
  return 'fatal'
}

/** What to do after a broker call failed. */
export type ApiVerdict = 'refresh' | 'retry' | 'fatal'
export function classifyApi(status: number): ApiVerdict {
  if (status === 401) return 'refresh'
  if (status === 0 || status === 408 || status === 429 || status >= 500) return 'retry'
  return 'fatal'
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(t)
      reject(signal!.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
