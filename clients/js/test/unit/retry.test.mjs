import { test } from 'node:test'
import assert from 'node:assert/strict'
import { backoff, parseRetryAfter, classifyPut, classifyApi, sleep } from '../dist/src/retry.js'

test('backoff grows exponentially, is capped, and is jittered within [d/2, d]', () => {
  const opts = { baseDelay: 100, maxDelay: 1000 }
  assert.equal(backoff(0, opts, undefined, () => 0), 50)
  assert.equal(backoff(0, opts, undefined, () => 1), 100)
  assert.equal(backoff(1, opts, undefined, () => 1), 200)
  assert.equal(backoff(3, opts, undefined, () => 1), 800)
  assert.equal(backoff(4, opts, undefined, () => 1), 1000, 'capped')
  assert.equal(backoff(50, opts, undefined, () => 0), 500, 'capped, still jittered')
  for (let i = 0; i < 100; i++) {
    const d = backoff(2, opts)
    assert.ok(d >= 200 && d <= 400, `jittered delay ${d} within [200, 400]`)
  }
  const spread = new Set(Array.from({ length: 20 }, () => backoff(5, { baseDelay: 100, maxDelay: 10000 })))
  assert.ok(spread.size > 10, 'jitter spreads retries out')
})

test('Retry-After is a lower bound, at most a minute', () => {
  assert.equal(backoff(0, { baseDelay: 100 }, 5000, () => 1), 5000)
  assert.equal(backoff(0, { baseDelay: 100 }, 10, () => 1), 100, 'a shorter Retry-After does not shorten the backoff')
  assert.equal(backoff(0, { baseDelay: 100 }, 3_600_000, () => 1), 60_000)
  assert.equal(parseRetryAfter('3'), 3000)
  assert.equal(parseRetryAfter('0'), 0)
  assert.equal(parseRetryAfter(null), undefined)
  assert.equal(parseRetryAfter('soon'), undefined)
  const now = Date.parse('2026-01-01T00:00:00Z')
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:07 GMT', now), 7000)
})

test('classification of part PUT and broker failures', () => {
  assert.equal(classifyPut(403), 'resign')
  for (const s of [0, 408, 429, 500, 502, 503]) assert.equal(classifyPut(s), 'retry', String(s))
  for (const s of [400, 404, 411]) assert.equal(classifyPut(s), 'fatal', String(s))
  assert.equal(classifyApi(401), 'refresh')
  for (const s of [0, 408, 429, 500, 503]) assert.equal(classifyApi(s), 'retry', String(s))
  for (const s of [400, 403, 404, 409, 410, 413]) assert.equal(classifyApi(s), 'fatal', String(s))
})

test('sleep is cancelled by its signal', async () => {
  const c = new AbortController()
  const p = sleep(10_000, c.signal)
  c.abort(new Error('stop'))
  await assert.rejects(p, /stop/)
})
