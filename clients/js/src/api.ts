import { UploadBrokerError, brokerError } from './errors.js'
import { backoff, classifyApi, parseRetryAfter, retryDefaults, sleep, type RetryOptions } from './retry.js'
import type { Credential, FoundUpload, PartUrl, ResumeResponse, UploadResource } from './types.js'

/** Links signals: `signal` aborts when any of them does; `dispose` unhooks it. */
export function anySignal(signals: (AbortSignal | undefined)[]): { signal: AbortSignal; dispose: () => void } {
  const c = new AbortController()
  const offs: (() => void)[] = []
  for (const s of signals) {
    if (!s) continue
    if (s.aborted) {
      c.abort(s.reason)
      break
    }
    const f = () => c.abort(s.reason)
    s.addEventListener('abort', f, { once: true })
    offs.push(() => s.removeEventListener('abort', f))
  }
  return { signal: c.signal, dispose: () => offs.forEach((f) => f()) }
}

/** The broker's HTTP API: auth, JSON, typed errors, retries. */
export class Api {
  private cred: Promise<string> | undefined
  private readonly base: string

  constructor(
    endpoint: string,
    private readonly credential: Credential,
    private readonly retry: RetryOptions = {},
    private readonly timeout = 30_000,
    private readonly fetchFn: typeof fetch = (...a) => fetch(...a),
  ) {
    this.base = endpoint.replace(/\/+$/, '')
  }

  /** The credential; `stale` (the one a 401 refused) makes a function credential be called again. */
  private bearer(stale?: Promise<string>): Promise<string> {
    if (!this.cred || (stale && this.cred === stale)) {
      const c = this.credential
      this.cred = Promise.resolve(typeof c === 'function' ? c() : c).then((v) => String(v).trim())
      this.cred.catch(() => (this.cred = undefined))
    }
    return this.cred
  }

  async call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal, timeout = this.timeout): Promise<T> {
    const attempts = this.retry.attempts ?? retryDefaults.attempts
    let refreshed = false
    for (let attempt = 0; ; attempt++) {
      const credP = this.bearer()
      let cred: string
      try {
        cred = await credP
      } catch (e) {
        throw new UploadBrokerError('CREDENTIAL_ERROR', 'credential() failed', { cause: e })
      }
      const timer = new AbortController()
      const t = setTimeout(() => timer.abort(new UploadBrokerError('TIMEOUT', `${method} ${routeOf(path)} timed out`, { retryable: true })), timeout)
      let res: Response | undefined
      let failure: UploadBrokerError
      const linked = anySignal([signal, timer.signal])
      try {
        const headers: Record<string, string> = { authorization: `Bearer ${cred}` }
        if (body !== undefined) headers['content-type'] = 'application/json'
        res = await this.fetchFn(this.base + path, {
          method,
          headers,
          body: body === undefined ? null : JSON.stringify(body),
          signal: linked.signal,
        })
        const text = await res.text()
        clearTimeout(t)
        linked.dispose()
        const json = text ? safeJson(text) : undefined
        if (res.ok) return json as T
        const verdict = classifyApi(res.status)
        failure = brokerError(res.status, json, verdict === 'retry')
        if (verdict === 'refresh') {
          if (refreshed || typeof this.credential !== 'function') throw failure
          refreshed = true
          this.bearer(credP) // call credential() again
          attempt--
          continue
        }
        if (verdict === 'fatal') throw failure
      } catch (e) {
        clearTimeout(t)
        linked.dispose()
        if (signal?.aborted) throw signal.reason
        if (e instanceof UploadBrokerError && !e.retryable) throw e
        failure =
          e instanceof UploadBrokerError
            ? e
            : timer.signal.aborted
              ? (timer.signal.reason as UploadBrokerError)
              : new UploadBrokerError('NETWORK_ERROR', `${method} ${routeOf(path)}: the broker could not be reached`, { retryable: true, cause: e })
      }
      if (attempt + 1 >= attempts) throw failure
      await sleep(backoff(attempt, this.retry, parseRetryAfter(res?.headers.get('retry-after'))), signal)
    }
  }

  create(body: Record<string, unknown>): Promise<UploadResource & { parts: PartUrl[] }> {
    return this.call('POST', '/v1/uploads', body)
  }
  sign(token: string, body: { partNumbers: number[] } | { parts: { partNumber: number; checksum: string }[] }, signal?: AbortSignal): Promise<{ parts: PartUrl[] }> {
    return this.call('POST', `/v1/uploads/${enc(token)}/parts`, body, signal)
  }
  resume(token: string): Promise<ResumeResponse> {
    return this.call('POST', `/v1/uploads/${enc(token)}/resume`)
  }
  status(token: string): Promise<ResumeResponse> {
    return this.call('GET', `/v1/uploads/${enc(token)}`)
  }
  complete(token: string, body: unknown, signal?: AbortSignal): Promise<UploadResource> {
    return this.call('POST', `/v1/uploads/${enc(token)}/complete`, body, signal, this.timeout * 4)
  }
  async abort(token: string): Promise<void> {
    await this.call('DELETE', `/v1/uploads/${enc(token)}`)
  }
  find(fingerprint: string): Promise<{ uploads: FoundUpload[] }> {
    return this.call('GET', `/v1/uploads?fingerprint=${enc(fingerprint)}`)
  }
}

const enc = encodeURIComponent
// Error messages name the route, never the token in the path.
const routeOf = (path: string) => path.replace(/\/v1\/uploads\/[^/?]+/, '/v1/uploads/{token}').replace(/\?.*/, '')

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
