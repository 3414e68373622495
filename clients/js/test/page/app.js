// The test page: the built package (dist/browser.js), driven by the tests
// through window.startUpload and window.uploads; what happens lands in window.events.
import { UploadBroker } from '../../dist/browser.js'
import { makeBytes } from './bytes.js'

const q = new URLSearchParams(location.search)
const key = q.get('key')
window.credentialCalls = 0
// `?grant=1`: as an app does it, an upload grant from the app's backend (the
// test's page server, which holds the API key), fetched again after a 401.
// Otherwise the API key from the URL.
async function credential() {
  window.credentialCalls++
  if (!q.get('grant')) return key
  const res = await fetch('/api/upload-grant', { method: 'POST' })
  if (!res.ok) throw new Error(`no upload grant (HTTP ${res.status})`)
  return (await res.json()).grant
}
const broker = new UploadBroker({
  endpoint: q.get('broker'),
  credential,
  retry: { baseDelay: 200, maxDelay: 2000 },
})
window.events = []
window.uploads = {}

/** Starts an upload of `size` deterministic bytes (with `token`: resumes that upload); returns at once. */
window.startUpload = ({ id, size, seed, name, lastModified = 1700000000000, token, options = {} }) => {
  const file = new File([makeBytes(size, seed)], name, { type: 'application/octet-stream', lastModified })
  const push = (e) => window.events.push({ id, t: performance.now(), ...e })
  const u = (token ? broker.resumeUpload.bind(broker, token) : broker.upload.bind(broker))(file, {
    ...options,
    onStart: (r, info) => push({ type: 'start', uploadId: r.uploadId, key: r.key, token: r.resumeToken, resumed: info.resumed, partCount: r.partCount }),
    onProgress: (p) => push({ type: 'progress', ...p }),
    onPart: (p) => push({ type: 'part', partNumber: p.partNumber }),
  })
  window.uploads[id] = u
  u.done.then(
    (r) => push({ type: 'done', key: r.key, uploadId: r.uploadId, status: r.status, objectSize: r.objectSize, checksumType: r.checksumType }),
    (e) => push({ type: 'error', code: e.code, message: e.message }),
  )
}
document.getElementById('status').textContent = 'ready'
