// Browsers (and workers): File/Blob slices, PUTs with XMLHttpRequest for upload progress.
import { BrokerClient } from './core.js'
import { UploadBrokerError } from './errors.js'
import type { FileSource, Platform, PutRequest, PutResult, UploadBrokerOptions, UploadInput } from './types.js'

function openBlob(input: UploadInput): Promise<FileSource> {
  if (typeof input === 'string' || typeof Blob === 'undefined' || !(input instanceof Blob)) {
    return Promise.reject(new UploadBrokerError('INVALID_INPUT', 'upload a File or Blob (file paths work in Node only)'))
  }
  const f = input as Blob & { name?: string; lastModified?: number }
  return Promise.resolve({
    name: f.name ?? 'blob',
    size: f.size,
    type: f.type,
    lastModified: f.lastModified ?? 0,
    read: async (start: number, end: number) => f.slice(start, end),
    bytes: async (body: unknown) => new Uint8Array(await (body as Blob).arrayBuffer()),
  })
}

function xhrPut(req: PutRequest): Promise<PutResult> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    let timer: ReturnType<typeof setTimeout> | undefined
    const fail = (e: unknown) => {
      clearTimeout(timer)
      req.signal.removeEventListener('abort', onAbort)
      reject(e)
    }
    const arm = () => {
      clearTimeout(timer)
      timer = setTimeout(() => {
        xhr.abort()
        fail(new UploadBrokerError('TIMEOUT', 'a part upload made no progress', { retryable: true }))
      }, req.timeout)
    }
    const onAbort = () => {
      xhr.abort()
      fail(req.signal.reason)
    }
    if (req.signal.aborted) return reject(req.signal.reason)
    req.signal.addEventListener('abort', onAbort, { once: true })
    xhr.open(req.method, req.url)
    for (const [k, v] of Object.entries(req.headers)) xhr.setRequestHeader(k, v)
    xhr.upload.onprogress = (e) => {
      arm()
      req.onProgress(e.loaded)
    }
    xhr.onload = () => {
      clearTimeout(timer)
      req.signal.removeEventListener('abort', onAbort)
      resolve({
        status: xhr.status,
        etag: xhr.getResponseHeader('ETag'),
        body: xhr.status >= 300 ? String(xhr.responseText).slice(0, 2000) : '',
        retryAfter: xhr.getResponseHeader('Retry-After'),
      })
    }
    xhr.onerror = () => fail(new UploadBrokerError('NETWORK_ERROR', 'a part upload failed (network)', { retryable: true }))
    arm()
    xhr.send(req.body as Blob)
  })
}

async function fetchPut(req: PutRequest): Promise<PutResult> {
  // Workers without XMLHttpRequest (service workers): no upload progress events.
  const timer = new AbortController()
  const t = setTimeout(() => timer.abort(), req.timeout)
  try {
    const res = await fetch(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body as Blob,
      signal: AbortSignal.any ? AbortSignal.any([req.signal, timer.signal]) : req.signal,
    })
    const body = res.ok ? '' : (await res.text()).slice(0, 2000)
    if (res.ok) req.onProgress(req.size)
    return { status: res.status, etag: res.headers.get('etag'), body, retryAfter: res.headers.get('retry-after') }
  } catch (e) {
    if (req.signal.aborted) throw req.signal.reason
    throw new UploadBrokerError(timer.signal.aborted ? 'TIMEOUT' : 'NETWORK_ERROR', 'a part upload failed', { retryable: true, cause: e })
  } finally {
    clearTimeout(t)
  }
}

const browserPlatform: Platform = {
  open: openBlob,
  put: (req) => (typeof XMLHttpRequest !== 'undefined' ? xhrPut(req) : fetchPut(req)),
}

/** The client: `new UploadBroker({endpoint, credential}).upload(file, options)`. */
export class UploadBroker extends BrokerClient {
  constructor(options: UploadBrokerOptions) {
    super(options, browserPlatform)
  }
}

export { Upload, defaultFingerprint } from './core.js'
export type { UploadState } from './core.js'
export { UploadBrokerError } from './errors.js'
export { crc32c } from './checksum.js'
export type * from './types.js'
