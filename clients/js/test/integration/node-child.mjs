// One uploading process for node.test.mjs: uploads a file path with the
// package's Node build and reports over IPC (never on stdout: the messages
// carry the resume token).
import { UploadBroker } from '../../dist/node.js'

const [endpoint, key, file, checksum, partSize] = process.argv.slice(2)
const broker = new UploadBroker({ endpoint, credential: key })
const send = (m) => process.send(m)
const u = broker.upload(file, {
  checksum,
  partSize: Number(partSize),
  concurrency: 4,
  onStart: (r, info) => send({ type: 'start', uploadId: r.uploadId, token: r.resumeToken, resumed: info.resumed, partCount: r.partCount }),
  onProgress: (p) => send({ type: 'progress', percent: p.percent, uploadedBytes: p.uploadedBytes }),
  onPart: (p) => send({ type: 'part', partNumber: p.partNumber }),
})
u.done.then(
  (r) => { send({ type: 'done', key: r.key, uploadId: r.uploadId, objectSize: r.objectSize, checksumType: r.checksumType, checksum: r.checksum }); process.disconnect() },
  (e) => { send({ type: 'error', code: e.code, message: e.message }); process.disconnect() },
)
