import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Signer } from '../dist/src/signer.js'

function fakeApi(ttlMs = 3_600_000) {
  const calls = []
  return {
    calls,
    sign: async (token, body) => {
      calls.push(body)
      const nums = body.partNumbers ?? body.parts.map((p) => p.partNumber)
      const sums = Object.fromEntries((body.parts ?? []).map((p) => [p.partNumber, p.checksum]))
      return {
        parts: nums.map((n) => ({
          partNumber: n, url: `https://s3/p${n}?sig=${calls.length}`, method: 'PUT', size: 10,
          expiresAt: new Date(Date.now() + ttlMs).toISOString(),
          headers: sums[n] ? { 'x-amz-checksum-sha256': sums[n] } : {},
        })),
      }
    },
  }
}

test('parts asked for together are signed in one call, with the next parts of the queue', async () => {
  const api = fakeApi()
  const s = new Signer(api, 'tok', false, () => [3, 4, 5, 6])
  const [a, b] = await Promise.all([s.get(1), s.get(2)])
  assert.equal(api.calls.length, 1)
  assert.deepEqual(api.calls[0].partNumbers, [1, 2, 3, 4, 5, 6])
  assert.equal(a.partNumber, 1)
  assert.equal(b.partNumber, 2)
  await s.get(4)
  assert.equal(api.calls.length, 1, 'signed ahead: no call')
  s.invalidate(4)
  await s.get(4)
  assert.equal(api.calls.length, 2, 'a dropped URL is signed again')
})

test('URLs close to expiry are signed again; seeded URLs are used', async () => {
  const api = fakeApi(10_000) // 10 s: inside the 30 s margin
  const s = new Signer(api, 'tok', false, () => [])
  s.seed([{ partNumber: 7, url: 'u', method: 'PUT', size: 1, expiresAt: new Date(Date.now() + 3_600_000).toISOString(), headers: {} }])
  assert.equal((await s.get(7)).url, 'u')
  await s.get(8)
  await s.get(8)
  assert.equal(api.calls.length, 2, 'a stale URL is not reused')
})

test('checksum mode: signs with each part checksum, no signing ahead', async () => {
  const api = fakeApi()
  const s = new Signer(api, 'tok', true, () => [9, 10])
  const [p1, p2] = await Promise.all([s.get(1, 'AAA='), s.get(2, 'BBB=')])
  assert.deepEqual(api.calls, [{ parts: [{ partNumber: 1, checksum: 'AAA=' }, { partNumber: 2, checksum: 'BBB=' }] }])
  assert.equal(p1.headers['x-amz-checksum-sha256'], 'AAA=')
  assert.equal(p2.headers['x-amz-checksum-sha256'], 'BBB=')
})

test('requests made while a call is in flight go in the next batch; errors reach every waiter', async () => {
  let release
  const calls = []
  const api = {
    sign: (t, body) => {
      calls.push(body.partNumbers)
      if (calls.length === 1) return new Promise((r) => (release = () => r({ parts: [{ partNumber: 1, url: 'x', method: 'PUT', size: 1, expiresAt: new Date(Date.now() + 3.6e6).toISOString(), headers: {} }] })))
      return Promise.reject(new Error('broker down'))
    },
  }
  const s = new Signer(api, 'tok', false, () => [])
  const p1 = s.get(1)
  await new Promise((r) => setImmediate(r))
  const p2 = s.get(2)
  const p3 = s.get(3)
  await new Promise((r) => setImmediate(r))
  assert.equal(calls.length, 1)
  release()
  await p1
  await assert.rejects(p2, /broker down/)
  await assert.rejects(p3, /broker down/)
  assert.deepEqual(calls[1], [2, 3])
})
