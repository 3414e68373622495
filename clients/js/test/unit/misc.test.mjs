import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { crc32c, partChecksum } from '../dist/src/checksum.js'
import { sendableHeaders } from '../dist/src/headers.js'
import { Api } from '../dist/src/api.js'
import { UploadBrokerError } from '../dist/src/errors.js'

test('CRC32C: the standard check value, incremental, and as S3 wants it', async () => {
  const enc = new TextEncoder()
  assert.equal(crc32c(enc.encode('123456789')), 0xe3069283)
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa) // RFC 3720 B.4: 32 bytes of zeros
  const data = new Uint8Array(100_003).map((_, i) => (i * 31) & 0xff)
  assert.equal(crc32c(data.subarray(50_001), crc32c(data.subarray(0, 50_001))), crc32c(data))
  assert.equal(await partChecksum('CRC32C', enc.encode('123456789')), Buffer.from([0xe3, 0x06, 0x92, 0x83]).toString('base64'))
  assert.equal(await partChecksum('SHA256', data), createHash('sha256').update(data).digest('base64'))
})

test('headers the HTTP stack sets itself are not sent', () => {
  assert.deepEqual(
    sendableHeaders({ 'content-length': '5', Host: 'x', 'x-amz-checksum-sha256': 'abc', 'Content-Type': 'a/b', 'sec-fetch-mode': 'x' }),
    { 'x-amz-checksum-sha256': 'abc', 'Content-Type': 'a/b' },
  )
})

function fakeFetch(answers) {
  const seen = []
  const f = async (url, init) => {
    seen.push({ url, init })
    const a = answers.shift()
    if (a instanceof Error) throw a
    return new Response(a.body === undefined ? '' : JSON.stringify(a.body), { status: a.status, headers: a.headers })
  }
  return { f, seen }
}

test('a 401 calls credential() again, once, and retries with the new one', async () => {
  let n = 0
  const { f, seen } = fakeFetch([{ status: 401, body: { error: { code: 'UNAUTHORIZED', message: 'grant expired' } } }, { status: 200, body: { ok: 1 } }])
  const api = new Api('http://b/', async () => `grant-${++n}`, {}, 1000, f)
  assert.deepEqual(await api.call('GET', '/v1/x'), { ok: 1 })
  assert.equal(n, 2)
  assert.deepEqual(seen.map((s) => s.init.headers.authorization), ['Bearer grant-1', 'Bearer grant-2'])
  assert.equal(seen[0].url, 'http://b/v1/x')
})

test('a second 401 in a row is final; a string credential is not refreshed', async () => {
  let n = 0
  const unauthorized = { status: 401, body: { error: { code: 'UNAUTHORIZED', message: 'no' } } }
  const a = fakeFetch([unauthorized, unauthorized])
  const api = new Api('http://b', async () => `g${++n}`, {}, 1000, a.f)
  await assert.rejects(api.call('GET', '/v1/x'), (e) => e instanceof UploadBrokerError && e.code === 'UNAUTHORIZED' && e.status === 401)
  assert.equal(n, 2)
  const b = fakeFetch([unauthorized])
  await assert.rejects(new Api('http://b', 'key', {}, 1000, b.f).call('GET', '/v1/x'), { code: 'UNAUTHORIZED' })
  assert.equal(b.seen.length, 1)
})

test('5xx, 429 and network errors are retried with backoff; 4xx are typed and final', async () => {
  const { f, seen } = fakeFetch([
    { status: 503, body: { error: { code: 'UNAVAILABLE', message: 'db' } } },
    new TypeError('fetch failed'),
    { status: 429, body: { error: { code: 'RATE_LIMITED', message: 'slow down' } }, headers: { 'retry-after': '0' } },
    { status: 200, body: { done: true } },
  ])
  const api = new Api('http://b', 'k', { baseDelay: 1, maxDelay: 2 }, 1000, f)
  assert.deepEqual(await api.call('POST', '/v1/uploads', { a: 1 }), { done: true })
  assert.equal(seen.length, 4)
  assert.equal(seen[0].init.headers['content-type'], 'application/json')

  const g = fakeFetch([{ status: 409, body: { error: { code: 'PARTS_MISSING', message: 'm', missingParts: [3] } } }])
  const err = await new Api('http://b', 'k', {}, 1000, g.f).call('POST', '/v1/uploads/SECRET-TOKEN/complete').catch((e) => e)
  assert.ok(err instanceof UploadBrokerError)
  assert.equal(err.code, 'PARTS_MISSING')
  assert.deepEqual(err.details.missingParts, [3])
  assert.equal(g.seen.length, 1)

  const h = fakeFetch([new TypeError('down'), new TypeError('down')])
  const e2 = await new Api('http://b', 'k', { attempts: 2, baseDelay: 1 }, 1000, h.f).call('GET', '/v1/uploads/SECRET-TOKEN').catch((e) => e)
  assert.equal(e2.code, 'NETWORK_ERROR')
  assert.ok(!e2.message.includes('SECRET-TOKEN'), 'error messages never carry the resume token')
})
