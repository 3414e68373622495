// A plain Uppy app, configured as the README tells users to: @uppy/aws-s3 with
// `companionEndpoint` pointing at upload-broker, and a fetch wrapper that adds
// the broker credential to the signing requests (the plugin has no header option).
import Uppy from '@uppy/core'
import AwsS3 from '@uppy/aws-s3'
import GoldenRetriever from '@uppy/golden-retriever'
import { makeBytes } from './bytes.js'

const params = new URLSearchParams(location.search)
const broker = params.get('broker')
const credential = params.get('key')

const originalFetch = window.fetch.bind(window)
window.fetch = (input, init = {}) => {
  const url = typeof input === 'string' ? input : input.url
  if (url.startsWith(broker)) {
    const headers = new Headers(init.headers || {})
    headers.set('Authorization', `Bearer ${credential}`)
    init = { ...init, headers }
  }
  return originalFetch(input, init)
}

const uppy = new Uppy({ id: 'e2e', autoProceed: false, debug: params.get('debug') === '1' })
// `?plain=1`: the plugin exactly as an app would have it for Companion (small
// files then go up in one presigned POST).
uppy.use(AwsS3, params.get('plain')
  ? { companionEndpoint: broker }
  : { companionEndpoint: broker, shouldUseMultipart: true, getChunkSize: () => 5 * 1024 * 1024 })
if (params.get('golden')) {
  uppy.use(GoldenRetriever, { indexedDB: { maxFileSize: 100 * 1024 * 1024, maxTotalSize: 200 * 1024 * 1024 } })
  // What the Dashboard's "resume" button does after a reload.
  uppy.on('restored', () => {
    window.restored = true
    uppy.emit('restore-confirmed')
  })
}


window.events = []
uppy.on('upload-success', (file, response) => window.events.push({ type: 'success', name: file.name, uploadURL: response.uploadURL, s3: file.s3Multipart }))
uppy.on('upload-error', (file, error) => window.events.push({ type: 'error', name: file?.name, message: String(error?.message || error) }))
uppy.on('upload-progress', (file, progress) => { window.progress = progress })
uppy.on('s3-multipart:part-uploaded', (file, part) => window.events.push({ type: 'part', partNumber: part.PartNumber }))

window.addFile = (name, size, seed) => {
  const blob = new Blob([makeBytes(size, seed)], { type: 'application/octet-stream' })
  return uppy.addFile({ name, type: 'application/octet-stream', data: blob, source: 'test' })
}
window.uppy = uppy
document.getElementById('status').textContent = 'ready'
