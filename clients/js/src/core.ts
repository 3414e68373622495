import { Api } from './api.js'
import { UploadBrokerError, aborted } from './errors.js'
import { partChecksum, sha256, toHex, type ChecksumAlgorithm } from './checksum.js'
import { sendableHeaders } from './headers.js'
import { ProgressTracker } from './progress.js'
import { backoff, classifyPut, parseRetryAfter, retryDefaults, sleep, type RetryOptions } from './retry.js'
import { Pool } from './scheduler.js'
import { Signer } from './signer.js'
import type {
  FileSource, Platform, PutResult, ResumeResponse, StoredPart, UploadBrokerOptions, UploadInput, UploadOptions, UploadResource,
} from './types.js'

const MiB = 1024 * 1024

/** The default fingerprint: `name:size:lastModified:sha256(first MiB ‖ last MiB)`. */
export async function defaultFingerprint(src: FileSource): Promise<string> {
  const head = await src.bytes(await src.read(0, Math.min(MiB, src.size)))
  const tail = await src.bytes(await src.read(Math.max(0, src.size - MiB), src.size))
  const both = new Uint8Array(head.length + tail.length)
  both.set(head)
  both.set(tail, head.length)
  const digest = toHex(await sha256(both))
  const fp = `${src.name}:${src.size}:${Math.trunc(src.lastModified)}:${digest}`
  if (fp.length <= 256) return fp
  const name = toHex(await sha256(new TextEncoder().encode(src.name))).slice(0, 32)
  return `${name}:${src.size}:${Math.trunc(src.lastModified)}:${digest}`
}

export type UploadState = 'starting' | 'uploading' | 'paused' | 'completing' | 'completed' | 'failed' | 'aborted'

/** One file's upload: `done`, `pause()`, `resume()`, `abort()`. */
export class Upload {
  /** Resolves to the completed upload resource; rejects with an UploadBrokerError. */
  readonly done: Promise<UploadResource>
  /** The upload at the broker, once created or found (holds the resume token: keep it private). */
  resource: UploadResource | undefined
  private _state: UploadState = 'starting'
  private pool: Pool<number> | undefined
  private stopped: UploadBrokerError | undefined
  private readonly stop = new AbortController()
  private aborting: Promise<void> | undefined

  constructor(
    private readonly ctx: { api: Api; platform: Platform; opts: UploadBrokerOptions },
    private readonly input: UploadInput,
    private readonly opts: UploadOptions,
    private readonly token?: string,
  ) {
    const sig = opts.signal
    if (sig) {
      if (sig.aborted) this.halt(aborted('cancelled by the signal'))
      else sig.addEventListener('abort', () => this.halt(aborted('cancelled by the signal')), { once: true })
    }
    this.done = this.run().then(
      (r) => {
        this._state = 'completed'
        return r
      },
      (e) => {
        if (this._state !== 'aborted') this._state = 'failed'
        throw this.stopped ?? e
      },
    )
    this.done.catch(() => {}) // callers observe `done`; never an unhandled rejection from here
  }

  get state(): UploadState {
    return this._state
  }

  /** Stops sending (parts in flight are cancelled and sent again on resume). */
  pause(): void {
    if (this._state === 'uploading' || this._state === 'starting') {
      this._state = 'paused'
      this.pool?.pause()
    }
  }

  resume(): void {
    if (this._state !== 'paused') return
    this._state = this.pool ? 'uploading' : 'starting'
    this.pool?.start() // from idle (paused before the transfer began) or paused
  }

  /** Cancels the transfer and aborts the upload at the broker (its parts are deleted). */
  abort(): Promise<void> {
    if (!this.aborting) {
      this.halt(aborted('the upload was aborted'))
      this._state = 'aborted'
      this.aborting = this.done.then(
        () => { throw new UploadBrokerError('UPLOAD_NOT_ACTIVE', 'the upload had already completed') },
        async () => {
          if (this.resource) await this.ctx.api.abort(this.resource.resumeToken)
        },
      )
    }
    return this.aborting
  }

  private halt(reason: UploadBrokerError): void {
    if (this.stopped) return
    this.stopped = reason
    this.stop.abort(reason)
    this.pool?.cancel(reason)
  }

  private check(): void {
    if (this.stopped) throw this.stopped
  }

  private async run(): Promise<UploadResource> {
    const { api, platform } = this.ctx
    const o = this.opts
    const src = await platform.open(this.input)
    try {
      const want: ChecksumAlgorithm | 'none' =
        o.checksum ?? (typeof crypto !== 'undefined' && crypto.subtle ? 'SHA256' : 'none')
      let r: ResumeResponse | undefined
      let resumed = false
      let fingerprint: string | undefined
      if (this.token) {
        r = await api.resume(this.token)
        resumed = true
      } else {
        fingerprint = o.fingerprint ?? (await defaultFingerprint(src))
        this.check()
        if (o.resume !== false) {
          const { uploads } = await api.find(fingerprint)
          const hit = uploads.find(
            (u) => u.size === src.size && (u.checksumAlgorithm ?? 'none') === want && (!o.partSize || u.partSize === o.partSize),
          )
          if (hit) {
            try {
              r = await api.resume(hit.resumeToken)
              resumed = true
            } catch (e) {
              // Expired or finished since the lookup: start a new one.
              if (!(e instanceof UploadBrokerError) || ![404, 409, 410].includes(e.status)) throw e
            }
          }
        }
      }
      if (!r) {
        const body: Record<string, unknown> = { filename: o.filename ?? src.name, size: src.size, fingerprint }
        const ct = o.contentType ?? src.type
        if (ct) body.contentType = ct
        if (o.partSize) body.partSize = o.partSize
        if (o.metadata) body.metadata = o.metadata
        if (want !== 'none') body.checksumAlgorithm = want
        const c = await api.create(body)
        r = { ...c, uploadedParts: [], missingParts: range(1, c.partCount), progress: undefined as never }
      }
      const { uploadedParts, missingParts, parts, progress: _p, conflictingParts: _c, ...resource } = r
      this.resource = resource as UploadResource
      o.onStart?.(this.resource, { resumed })
      if (r.status !== 'active') throw new UploadBrokerError('UPLOAD_NOT_ACTIVE', `the upload is ${r.status}`)
      if (r.size !== src.size) {
        throw new UploadBrokerError('SIZE_MISMATCH', `the file has ${src.size} bytes, the upload ${r.size}`)
      }
      this.check()
      return await this.transfer(src, r, uploadedParts, missingParts)
    } finally {
      await src.close?.().catch(() => {})
    }
  }

  private async transfer(
    src: FileSource,
    r: ResumeResponse,
    stored: StoredPart[],
    missing: number[],
  ): Promise<UploadResource> {
    const { api, platform, opts: bopts } = this.ctx
    const o = this.opts
    const token = r.resumeToken
    const alg = r.checksumAlgorithm // the upload's own algorithm decides
    const sizeOf = (n: number) => (n < r.partCount ? r.partSize : r.size - (r.partCount - 1) * r.partSize)
    const retry: RetryOptions = bopts.retry ?? {}
    const attempts = retry.attempts ?? retryDefaults.attempts
    const timeout = bopts.partTimeout ?? 60_000

    const done = new Map<number, { etag: string | null; checksum?: string | undefined }>()
    const missingSet = new Set(missing)
    for (const p of stored) if (!missingSet.has(p.partNumber)) done.set(p.partNumber, { etag: p.etag, checksum: p.checksum })

    const progress = new ProgressTracker(r.size, r.partCount, o.onProgress)
    let storedBytes = r.size
    for (const n of missing) storedBytes -= sizeOf(n)
    progress.alreadyStored(storedBytes, r.partCount - missing.length)

    const concurrency = Math.max(1, Math.floor(o.concurrency ?? 4))
    let pool: Pool<number>
    const signer = new Signer(api, token, !!alg, () => pool.upcoming(Math.max(8, concurrency * 4)), this.stop.signal)
    signer.seed(r.parts ?? [])

    const sendPart = async (n: number, signal: AbortSignal): Promise<void> => {
      const size = sizeOf(n)
      const start = (n - 1) * r.partSize
      const body = await src.read(start, start + size)
      const checksum = alg ? await partChecksum(alg, await src.bytes(body)) : undefined
      let failures = 0
      let resigns = 0
      for (;;) {
        if (signal.aborted) throw signal.reason
        const part = await signer.get(n, checksum, signal)
        let res: PutResult | undefined
        let err: unknown
        try {
          res = await platform.put({
            url: part.url,
            method: part.method || 'PUT',
            headers: sendableHeaders(part.headers),
            body,
            size,
            signal,
            timeout,
            onProgress: (loaded) => progress.update(n, loaded, size),
          })
        } catch (e) {
          err = e
        }
        if (res && res.status >= 200 && res.status < 300) {
          progress.complete(n, size)
          done.set(n, { etag: res.etag, checksum })
          o.onPart?.({ partNumber: n, size, etag: res.etag })
          return
        }
        progress.rollback(n)
        progress.emit()
        signer.invalidate(n) // whatever went wrong, the next try gets a fresh URL
        if (signal.aborted) throw signal.reason
        const status = res?.status ?? 0
        const verdict = classifyPut(status)
        const failure =
          err ??
          new UploadBrokerError(verdict === 'fatal' ? 'STORAGE_ERROR' : 'STORAGE_UNAVAILABLE',
            `storage answered ${status} to part ${n}${s3Code(res?.body)}`, { status, retryable: verdict !== 'fatal' })
        if (verdict === 'fatal') throw failure
        if (verdict === 'resign' && resigns++ < 3) continue // expired URL: sign again at once
        if (++failures >= attempts) throw failure
        await sleep(backoff(failures - 1, retry, parseRetryAfter(res?.retryAfter)), signal)
      }
    }

    pool = new Pool(missing, concurrency, sendPart)
    this.pool = pool
    if (this.stopped) pool.cancel(this.stopped)
    else if (this._state !== 'paused') {
      this._state = 'uploading'
      pool.start()
    }
    await pool.done
    this.check()

    this._state = 'completing'
    const list = range(1, r.partCount).map((n) => ({ partNumber: n, ...done.get(n) }))
    const body = list.every((p) => p.etag)
      ? { parts: list.map((p) => (p.checksum ? { partNumber: p.partNumber, etag: p.etag, checksum: p.checksum } : { partNumber: p.partNumber, etag: p.etag })) }
      : {} // without ETags (a bucket CORS rule that hides them): the broker completes from ListParts
    const result = await api.complete(token, body, this.stop.signal)
    if (result.status !== 'completed') throw new UploadBrokerError('UPLOAD_NOT_ACTIVE', `the upload is ${result.status}`)
    if (result.objectSize !== undefined && result.objectSize !== r.size) {
      throw new UploadBrokerError('SIZE_MISMATCH', `the object has ${result.objectSize} bytes, ${r.size} were uploaded`)
    }
    progress.emit()
    return result
  }
}

function range(a: number, b: number): number[] {
  const out: number[] = []
  for (let i = a; i <= b; i++) out.push(i)
  return out
}

function s3Code(body: string | undefined): string {
  const m = body && /<Code>([^<]{1,64})<\/Code>/.exec(body)
  return m ? ` (${m[1]})` : ''
}

/** The client. One per broker endpoint and credential. */
export class BrokerClient {
  /** @internal */
  readonly api: Api

  constructor(
    readonly options: UploadBrokerOptions,
    private readonly platform: Platform,
  ) {
    if (!options?.endpoint) throw new UploadBrokerError('INVALID_INPUT', 'endpoint is required')
    if (!options.credential) throw new UploadBrokerError('INVALID_INPUT', 'credential is required')
    this.api = new Api(options.endpoint, options.credential, options.retry, options.requestTimeout, options.fetch)
  }

  /**
   * Uploads a file: finds and continues its active upload (by fingerprint), or
   * creates one. Returns at once; `upload.done` settles at the end.
   */
  upload(file: UploadInput, options: UploadOptions = {}): Upload {
    return new Upload({ api: this.api, platform: this.platform, opts: this.options }, file, options)
  }

  /** Continues the upload of this resume token with the same file. */
  resumeUpload(resumeToken: string, file: UploadInput, options: UploadOptions = {}): Upload {
    return new Upload({ api: this.api, platform: this.platform, opts: this.options }, file, options, resumeToken)
  }

  /** The upload's status, with `uploadedParts` and `progress`. */
  status(resumeToken: string): Promise<ResumeResponse> {
    return this.api.status(resumeToken)
  }

  /** Aborts an upload by its resume token. */
  abort(resumeToken: string): Promise<void> {
    return this.api.abort(resumeToken)
  }

  /** Active uploads created with this fingerprint, newest first. */
  async find(fingerprint: string): Promise<UploadResource[]> {
    return (await this.api.find(fingerprint)).uploads
  }
}

