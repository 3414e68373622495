// Node ≥ 20: file paths (read by range with fs, never whole) or Blobs; PUTs with
// node:http(s), written in chunks for progress.
import { open, stat } from 'node:fs/promises'
import { basename } from 'node:path'
import * as http from 'node:http'
import * as https from 'node:https'
import { BrokerClient } from './core.js'
import { UploadBrokerError } from './errors.js'
import type { FileSource, Platform, PutRequest, PutResult, UploadBrokerOptions, UploadInput } from './types.js'

async function openInput(input: UploadInput): Promise<FileSource> {
  if (typeof input === 'string') {
    const st = await stat(input)
    if (!st.isFile()) throw new UploadBrokerError('INVALID_INPUT', `${input} is not a file`)
    const fh = await open(input, 'r')
    return {
      name: basename(input),
      size: st.size,
      type: '',
      lastModified: Math.trunc(st.mtimeMs),
      async read(start, end) {
        const buf = Buffer.allocUnsafe(end - start)
        let off = 0
        while (off < buf.length) {
          const { bytesRead } = await fh.read(buf, off, buf.length - off, start + off)
          if (bytesRead === 0) throw new UploadBrokerError('SIZE_MISMATCH', `${input} got shorter while uploading`)
          off += bytesRead
        }
        return new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
      },
      bytes: async (b) => b as Uint8Array,
      close: () => fh.close(),
    }
  }
  if (typeof Blob !== 'undefined' && input instanceof Blob) {
    const f = input as Blob & { name?: string; lastModified?: number }
    return {
      name: f.name ?? 'blob',
      size: f.size,
      type: f.type,
      lastModified: f.lastModified ?? 0,
      read: async (start, end) => new Uint8Array(await f.slice(start, end).arrayBuffer()),
      bytes: async (b) => b as Uint8Array,
    }
  }
  throw new UploadBrokerError('INVALID_INPUT', 'upload a file path or a Blob')
}

const CHUNK = 256 * 1024

function nodePut(req: PutRequest): Promise<PutResult> {
  return new Promise((resolve, reject) => {
    if (req.signal.aborted) return reject(req.signal.reason)
    const body = req.body as Uint8Array
    const u = new URL(req.url)
    let settled = false
    const finish = (f: () => void) => {
      if (settled) return
      settled = true
      req.signal.removeEventListener('abort', onAbort)
      f()
    }
    const r = (u.protocol === 'https:' ? https : http).request(u, {
      method: req.method,
      headers: { ...req.headers, 'content-length': String(body.length) },
    })
    const onAbort = () => {
      r.destroy()
      finish(() => reject(req.signal.reason))
    }
    req.signal.addEventListener('abort', onAbort, { once: true })
    r.setTimeout(req.timeout, () => {
      r.destroy()
      finish(() => reject(new UploadBrokerError('TIMEOUT', 'a part upload made no progress', { retryable: true })))
    })
    r.on('error', (e) => finish(() => reject(new UploadBrokerError('NETWORK_ERROR', 'a part upload failed (network)', { retryable: true, cause: e }))))
    r.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c))
      res.on('error', (e) => finish(() => reject(new UploadBrokerError('NETWORK_ERROR', 'a part upload failed (network)', { retryable: true, cause: e }))))
      res.on('end', () => {
        const status = res.statusCode ?? 0
        const h = (n: string) => { const v = res.headers[n]; return (Array.isArray(v) ? v[0] : v) ?? null }
        finish(() => resolve({ status, etag: h('etag'), body: status >= 300 ? Buffer.concat(chunks).toString('utf8').slice(0, 2000) : '', retryAfter: h('retry-after') }))
      })
    })
    let off = 0
    const pump = () => {
      while (off < body.length && !settled) {
        const end = Math.min(body.length, off + CHUNK)
        const chunk = body.subarray(off, end)
        off = end
        const sentSoFar = end
        const ok = r.write(chunk, (err) => { if (!err && !settled) req.onProgress(sentSoFar) })
        if (!ok) return void r.once('drain', pump)
      }
      if (!settled) r.end()
    }
    pump()
  })
}

const nodePlatform: Platform = { open: openInput, put: nodePut }

/** The client: `new UploadBroker({endpoint, credential}).upload(pathOrBlob, options)`. */
export class UploadBroker extends BrokerClient {
  constructor(options: UploadBrokerOptions) {
    super(options, nodePlatform)
  }
}

export { Upload, defaultFingerprint } from './core.js'
export type { UploadState } from './core.js'
export { UploadBrokerError } from './errors.js'
export { crc32c } from './checksum.js'
export type * from './types.js'
