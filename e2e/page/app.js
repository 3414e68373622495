// A plain Uppy app, configured as the README tells users to: @uppy/aws-s3 with
// `companionEndpoint` pointing at upload-broker, and a fetch wrapper that adds
// the user's upload grant, fetched from the app's backend (the test's page
// server, which holds the API key), to the signing requests (the plugin has no
// header option). The wrapper is the README's.
import Uppy from '@uppy/core'
import AwsS3 from '@uppy/aws-s3'
import GoldenRetriever from '@uppy/golden-retriever'
import { makeBytes } from './bytes.js'

const params = new URLSearchParams(location.search)
const BROKER = params.get('broker')   // the broker's URL; the plugin appends /s3
const fetch0 = window.fetch.bind(window)

// The user's upload grant from your backend ({grant, subject, expiresAt}),
// fetched again a minute before it expires.
let grant = null, pending = null
async function currentGrant() {
  if (!grant || Date.parse(grant.expiresAt) - Date.now() < 60_000) {
    pending ??= fetch0('/api/upload-grant', { method: 'POST' })
      .then((res) => { if (!res.ok) throw new Error(`no upload grant (HTTP ${res.status})`); return res.json() })
      .finally(() => { pending = null })
    grant = await pending
  }
  return grant.grant
}

// @uppy/aws-s3 6.x has no option for headers on its signing requests; it calls
// fetch(), so add the grant there, for the broker's URLs only.
window.fetch = async (input, init = {}) => {
  const url = input instanceof Request ? input.url : String(input)
  if (!url.startsWith(BROKER)) return fetch0(input, init)
  const headers = new Headers(init.headers || {})
  headers.set('Authorization', `Bearer ${await currentGrant()}`)
  return fetch0(input, { ...init, headers })
}

const uppy = new Uppy({ id: 'e2e', autoProceed: false, debug: params.get('debug') === '1' })
// `?plain=1`: the plugin exactly as an app would have it for Companion (small
// files then go up in one presigned POST).
uppy.use(AwsS3, params.get('plain')
  ? { companionEndpoint: BROKER }
  : { companionEndpoint: BROKER, shouldUseMultipart: true, getChunkSize: () => 5 * 1024 * 1024 })
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
