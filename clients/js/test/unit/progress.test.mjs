import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ProgressTracker } from '../dist/src/progress.js'

function tracker(total, parts) {
  const seen = []
  let t = 0
  const p = new ProgressTracker(total, parts, (x) => seen.push(x), () => t)
  return { p, seen, tick: (ms) => (t += ms) }
}

test('in-flight bytes count; a failed part is rolled back but the caller never sees progress go down', () => {
  const { p, seen } = tracker(300, 3)
  p.update(1, 60, 100)
  p.update(2, 50, 100)
  assert.equal(seen.at(-1).uploadedBytes, 110)
  p.rollback(2) // part 2 failed at 50 bytes
  p.emit()
  assert.equal(seen.at(-1).uploadedBytes, 110, 'monotone to the caller')
  p.update(2, 20, 100) // re-sent from its start
  assert.equal(seen.at(-1).uploadedBytes, 110, 'stays until the real figure passes it')
  p.update(2, 80, 100)
  assert.equal(seen.at(-1).uploadedBytes, 140)
  p.complete(1, 100)
  p.complete(2, 100)
  p.complete(3, 100)
  const last = seen.at(-1)
  assert.deepEqual([last.uploadedBytes, last.percent, last.partsDone, last.partsTotal], [300, 100, 3, 3])
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i].uploadedBytes >= seen[i - 1].uploadedBytes)
})

test('never above the total, even with over-reported or repeated events', () => {
  const { p, seen } = tracker(150, 2)
  p.update(1, 500, 100) // a transport reporting more than the part
  p.update(2, 50, 50)
  p.complete(1, 100)
  p.update(2, 50, 50)
  p.complete(2, 50)
  assert.ok(seen.every((s) => s.uploadedBytes <= 150 && s.percent <= 100))
  assert.equal(seen.at(-1).uploadedBytes, 150)
})

test('parts already stored (resume) start the count', () => {
  const { p, seen } = tracker(1000, 10)
  p.alreadyStored(400, 4)
  assert.equal(seen.at(-1).uploadedBytes, 400)
  assert.equal(seen.at(-1).partsDone, 4)
  assert.equal(seen.at(-1).percent, 40)
})

test('speed is smoothed and counts re-sent bytes', () => {
  const { p, seen, tick } = tracker(10_000, 10)
  tick(500); p.update(1, 500, 1000) // 1000 B/s
  assert.equal(seen.at(-1).bytesPerSecond, 1000)
  tick(500); p.update(1, 1000, 1000) // another 1000 B/s
  assert.equal(seen.at(-1).bytesPerSecond, 1000)
  p.rollback(1)
  tick(500); p.update(1, 1000, 1000) // re-sent 1000 in 0.5 s: 2000 B/s raw
  const s = seen.at(-1).bytesPerSecond
  assert.ok(s > 1000 && s < 2000, `smoothed: ${s}`)
  tick(100); p.update(2, 10, 1000)
  assert.equal(seen.at(-1).bytesPerSecond, s, 'not re-sampled within 250 ms')
})
