// The package's Node build against the real broker and LocalStack: file paths
// read by range, a process killed with SIGKILL mid-upload and resumed by
// another, cancel by signal and resume by token.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { fork } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { UploadBroker, UploadBrokerError } from '../../dist/node.js'
import { MiB, KEY, objectDigest, startBroker } from './common.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
let broker, dir

before(async () => {
  broker = await startBroker('node')
  dir = await mkdtemp(path.join(tmpdir(), 'ub-js-'))
})
after(async () => {
  await broker?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

/** Writes `size` random bytes to a file, returning its path and SHA-256. */
async function randomFile(name, size) {
  const p = path.join(dir, name)
  const fh = await open(p, 'w')
  const h = createHash('sha256')
  for (let off = 0; off < size; off += 8 * MiB) {
    const b = randomBytes(Math.min(8 * MiB, size - off))
    h.update(b)
    await fh.write(b)
  }
  await fh.close()
  return { path: p, hash: h.digest('hex') }
}

/** Runs node-child.mjs; `onMessage(m, child)` sees its reports. Resolves with all of them when it exits. */
function child(file, checksum, partSize, onMessage = () => {}) {
  return new Promise((resolve, reject) => {
    const msgs = []
    const c = fork(path.join(here, 'node-child.mjs'), [broker.url, KEY, file, checksum, String(partSize)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    c.on('message', (m) => { msgs.push(m); onMessage(m, c) })
    c.on('error', reject)
    c.on('exit', (code, signal) => resolve({ msgs, code, signal }))
  })
}

test('256 MiB from disk with CRC32C: killed (SIGKILL) at ~50%, resumed by a second process', async () => {
  const size = 256 * MiB
  const f = await randomFile('big.bin', size)
  let killedAt
  const first = await child(f.path, 'CRC32C', 8 * MiB, (m, c) => {
    if (m.type === 'progress' && m.percent >= 50 && killedAt === undefined) {
      killedAt = m.percent
      c.kill('SIGKILL')
    }
  })
  assert.equal(first.signal, 'SIGKILL', 'the first process was killed')
  const start1 = first.msgs.find((m) => m.type === 'start')
  assert.equal(start1.resumed, false)
  assert.equal(start1.partCount, 32)
  // What storage has now (ListParts, through the broker).
  const status = await broker.api('GET', `/v1/uploads/${start1.token}`)
  const stored = status.body.uploadedParts.map((p) => p.partNumber)
  assert.ok(stored.length >= 8 && stored.length < 32, `killed mid-upload (${stored.length} of 32 parts stored)`)
  assert.ok(status.body.uploadedParts.every((p) => p.checksum), 'stored parts carry their CRC32C')

  const second = await child(f.path, 'CRC32C', 8 * MiB)
  const start2 = second.msgs.find((m) => m.type === 'start')
  const done = second.msgs.find((m) => m.type === 'done' || m.type === 'error')
  assert.equal(done.type, 'done', done.message)
  assert.equal(start2.resumed, true, 'found by the default fingerprint')
  assert.equal(start2.uploadId, start1.uploadId, 'the same multipart upload')
  const sent = second.msgs.filter((m) => m.type === 'part').map((m) => m.partNumber)
  for (const n of sent) assert.ok(!stored.includes(n), `part ${n} was stored and sent again`)
  assert.deepEqual([...stored, ...sent].sort((a, b) => a - b), Array.from({ length: 32 }, (_, i) => i + 1))
  const firstProgress = second.msgs.find((m) => m.type === 'progress')
  assert.ok(firstProgress.uploadedBytes >= stored.length * 8 * MiB - 1, 'progress starts from the stored bytes')
  assert.equal(done.objectSize, size)
  assert.equal(done.checksumType, 'COMPOSITE')
  assert.match(done.checksum, /-32$/)
  const got = objectDigest(done.key)
  assert.equal(got.size, size)
  assert.equal(got.hash, f.hash, 'the object in storage has the exact bytes')
})

test('cancel with an AbortSignal keeps the upload resumable; resumeUpload(token, path) finishes it; a Blob works too', async () => {
  const size = 23 * MiB + 123
  const f = await randomFile('signal.bin', size)
  let calls = 0
  const client = new UploadBroker({ endpoint: broker.url + '/', credential: async () => { calls++; return KEY } })
  const ac = new AbortController()
  let token
  const parts = []
  const u = client.upload(f.path, {
    partSize: 5 * MiB, concurrency: 1, checksum: 'SHA256', signal: ac.signal,
    onStart: (r) => { token = r.resumeToken },
    onPart: (p) => { parts.push(p.partNumber); if (parts.length === 2) ac.abort() },
  })
  const err = await u.done.catch((e) => e)
  assert.ok(err instanceof UploadBrokerError)
  assert.equal(err.code, 'ABORTED')
  assert.equal((await client.status(token)).status, 'active', 'still resumable')

  const more = []
  const r = await client.resumeUpload(token, f.path, { onPart: (p) => more.push(p.partNumber) }).done
  assert.equal(r.status, 'completed')
  assert.deepEqual(more.sort(), [3, 4, 5], 'only the missing parts')
  assert.equal(calls, 1, 'credential() called once and cached')
  const got = objectDigest(r.key)
  assert.equal(got.hash, f.hash)

  // A Blob, in Node.
  const blob = new Blob([Buffer.from('x'.repeat(6 * MiB))], { type: 'text/plain' })
  const b = await client.upload(blob, { checksum: 'none', resume: false, metadata: { origin: 'node-test' } }).done
  assert.equal(b.contentType, 'text/plain')
  assert.equal(b.metadata.origin, 'node-test')
  assert.equal(objectDigest(b.key).hash, createHash('sha256').update('x'.repeat(6 * MiB)).digest('hex'))

  // A file of another size than the token's upload is refused, typed.
  await writeFile(path.join(dir, 'small.bin'), 'abc')
  const wrong = await client.resumeUpload(r.resumeToken, path.join(dir, 'small.bin')).done.catch((e) => e)
  assert.ok(wrong instanceof UploadBrokerError)
  assert.equal(wrong.code, 'UPLOAD_NOT_ACTIVE', 'a completed upload cannot be resumed')
})

test('the README example runs as written (endpoint and credential fetch pointed at the test broker)', async () => {
  const readme = await readFile(path.join(here, '../../README.md'), 'utf8')
  const block = readme.split('<!-- example:start')[1].split('<!-- example:end -->')[0]
  const code = block.slice(block.indexOf('```js\n') + 6, block.lastIndexOf('```'))
  assert.match(code, /^import \{ UploadBroker, UploadBrokerError \} from '@upload-broker\/client'/)
  const body = code.replace(/^import .*\n/, '').replace("'https://uploads.example.com'", 'ENDPOINT')
  const size = 11 * MiB
  // Another upload of the same size, to resume by token and abort.
  const other = await broker.api('POST', '/v1/uploads', { filename: 'other.bin', size, partSize: 5 * MiB })
  const mod = `import { UploadBroker, UploadBrokerError } from '@upload-broker/client'
const ENDPOINT = ${JSON.stringify(broker.url)}
export let credentialFetches = 0
const fetch = async (u) => { credentialFetches++; if (u !== '/api/upload-grant') throw new Error(u); return new Response(${JSON.stringify(KEY)}) }
const file = new File([new Uint8Array(${size}).fill(7)], 'readme.bin', { lastModified: 1 })
export const bar = {}
const resumeToken = ${JSON.stringify(other.body.resumeToken)}
${body}
export const result = await upload.done
export const aborted = again.state
`
  const file = path.join(here, '../dist/readme-example.mjs')
  await writeFile(file, mod)
  const m = await import(file)
  await rm(file)
  assert.equal(m.result.status, 'completed')
  assert.equal(m.result.objectSize, size)
  assert.equal(m.result.metadata['uploaded-by'], 'user-42')
  assert.equal(m.bar.value, 100)
  assert.equal(m.credentialFetches, 1)
  assert.equal(m.aborted, 'aborted')
  assert.equal((await broker.api('GET', `/v1/uploads/${other.body.resumeToken}`)).body.status, 'aborted')
  assert.equal(objectDigest(m.result.key).hash, createHash('sha256').update(new Uint8Array(size).fill(7)).digest('hex'))
})

test('a 401 from the real broker (a rotated credential): credential() is called again and the upload goes on', async () => {
  const given = []
  const creds = ['a-key-the-broker-no-longer-accepts', KEY]
  const client = new UploadBroker({ endpoint: broker.url, credential: async () => { const c = creds[Math.min(given.length, 1)]; given.push(c); return c } })
  const r = await client.upload(new Blob([new Uint8Array(5 * MiB + 1).fill(9)]), { resume: false }).done
  assert.equal(r.status, 'completed')
  assert.equal(given.length, 2, 'called again after the 401, and only then')
  // A string credential the broker refuses is final, typed.
  const bad = await new UploadBroker({ endpoint: broker.url, credential: 'nope' }).upload(new Blob(['x'.repeat(10)])).done.catch((e) => e)
  assert.ok(bad instanceof UploadBrokerError)
  assert.equal(bad.code, 'UNAUTHORIZED')
  assert.equal(bad.status, 401)
})
