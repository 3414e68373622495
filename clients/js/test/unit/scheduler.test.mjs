import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Pool } from '../dist/src/scheduler.js'

const tick = () => new Promise((r) => setImmediate(r))

/** A task whose runs are finished by hand. */
function manual() {
  const runs = []
  const task = (item, signal) =>
    new Promise((resolve, reject) => {
      const run = { item, signal, resolve, reject }
      runs.push(run)
      signal.addEventListener('abort', () => reject(signal.reason))
    })
  return { runs, task, live: () => runs.filter((r) => !r.signal.aborted && !r.finished) }
}
const finish = (run) => { run.finished = true; run.resolve() }

test('runs every item with at most `concurrency` at once, in order', async () => {
  const { runs, task, live } = manual()
  const pool = new Pool([1, 2, 3, 4, 5], 2, task)
  pool.start()
  assert.deepEqual(runs.map((r) => r.item), [1, 2])
  finish(runs[1]); await tick()
  assert.deepEqual(runs.map((r) => r.item), [1, 2, 3])
  assert.equal(pool.active, 2)
  assert.deepEqual(pool.upcoming(10), [4, 5])
  while (live().length) { finish(live()[0]); await tick() }
  await pool.done
  assert.deepEqual(runs.map((r) => r.item).sort(), [1, 2, 3, 4, 5])
  assert.equal(pool.state, 'done')
})

test('pause aborts running tasks and requeues them first; resume finishes', async () => {
  const { runs, task, live } = manual()
  const pool = new Pool([1, 2, 3], 2, task)
  pool.start()
  pool.pause()
  await tick()
  assert.ok(runs.every((r) => r.signal.aborted), 'running tasks were cancelled')
  assert.equal(pool.state, 'paused')
  assert.deepEqual(pool.upcoming(10).sort(), [1, 2, 3], 'nothing lost, nothing started while paused')
  pool.resume()
  assert.deepEqual(live().map((r) => r.item).sort(), [1, 2])
  while (live().length) { finish(live()[0]); await tick() }
  await pool.done
  const okRuns = runs.filter((r) => r.finished).map((r) => r.item).sort()
  assert.deepEqual(okRuns, [1, 2, 3], 'each item completed exactly once')
})

test('a task failure ends the pool: others are cancelled, done rejects with it', async () => {
  const { runs, task } = manual()
  const pool = new Pool([1, 2, 3], 2, task)
  pool.start()
  runs[0].reject(new Error('fatal'))
  await assert.rejects(pool.done, /fatal/)
  assert.ok(runs[1].signal.aborted)
  assert.equal(runs.length, 2, 'nothing more started')
  assert.equal(pool.state, 'failed')
})

test('cancel rejects done with the reason; an empty pool is done at once', async () => {
  const { task } = manual()
  const pool = new Pool([1], 1, task)
  pool.start()
  pool.cancel(new Error('aborted by user'))
  await assert.rejects(pool.done, /aborted by user/)
  const empty = new Pool([], 4, task)
  empty.start()
  await empty.done
  assert.throws(() => new Pool([1], 0, task), RangeError)
})

test('pause before start: nothing runs until resume', async () => {
  let ran = 0
  const pool = new Pool([1, 2], 1, async () => { ran++ })
  pool.pause() // not running yet: no effect
  assert.equal(pool.state, 'idle')
  pool.start()
  await pool.done
  assert.equal(ran, 2)
})
