// The test page: the built package (dist/browser.js), driven by the tests
// through window.startUpload and window.uploads; what happens lands in window.events.
import { UploadBroker } from '../../dist/browser.js'
import { makeBytes } from './bytes.js'

const q = new URLSearchParams(location.search)
const key = q.get('key')
window.credentialCalls = 0
const broker = new UploadBroker({
  endpoint: q.get('broker'),
  credential: async () => { window.credentialCalls++; return key },
  retry: { baseDelay: 200, maxDelay: 2000 },
})
window.events = []
window.uploads = {}

/** Starts an upload of `size` deterministic bytes; returns at once. */
window.startUpload = ({ id, size, seed, name, lastModified = 1700000000000, options = {} }) => {
  const file = new File([makeBytes(size, seed)], name, { type: 'application/octet-stream', lastModified })
  const push = (e) => window.events.push({ id, t: performance.now(), ...e })
  const u = broker.upload(file, {
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
