// The package in headless Chromium (Debian's, through playwright-core) against
// the real broker and LocalStack; every object is read back and hashed.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { readFile, mkdir } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import * as esbuild from 'esbuild'
import { chromium } from 'playwright-core'
import { MiB, KEY, need, freePort, sha256, makeBytes, objectDigest, startBroker } from './common.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
let broker, shortBroker, server, browser, pageOrigin

/**
 * The app's backend, played by the page server: `POST /api/upload-grant` mints
 * an upload grant for the signed-in user (the `session` cookie) with the API
 * key, through the broker's `POST /v1/grants`. The browser never sees the key.
 */
const backend = { ttlSeconds: 900, calls: {}, issued: [] }
async function uploadGrantRoute(req, res) {
  const user = /(?:^|;\s*)session=([a-z]+)/.exec(req.headers.cookie || '')?.[1]
  if (!user) { res.writeHead(401); return res.end() }
  backend.calls[user] = (backend.calls[user] || 0) + 1
  const r = await broker.api('POST', '/v1/grants', { subject: `user-${user}`, ttlSeconds: backend.ttlSeconds })
  if (r.status !== 201) { res.writeHead(502); return res.end() }
  backend.issued.push({ user, ...r.body })
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify(r.body)) // {grant, subject, expiresAt}
}

before(async () => {
  need('S3_ENDPOINT')
  const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium'
  try {
    await readFile(chromiumPath).then(() => {}, (e) => { throw e })
  } catch {
    throw new Error(`Chromium is missing at ${chromiumPath}: apt-get install chromium (scripts/test.sh does it), or set CHROMIUM`)
  }
  const out = path.join(here, '../dist/page.js')
  await mkdir(path.dirname(out), { recursive: true })
  await esbuild.build({ entryPoints: [path.join(here, '../page/app.js')], bundle: true, format: 'esm', outfile: out, logLevel: 'warning' })
  const files = {
    '/': ['text/html', await readFile(path.join(here, '../page/index.html'))],
    '/app.js': ['text/javascript', await readFile(out)],
  }
  const port = await freePort()
  server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/api/upload-grant') {
      return uploadGrantRoute(req, res).catch(() => { res.writeHead(500); res.end() })
    }
    const f = files[new URL(req.url, 'http://x').pathname]
    if (!f) { res.writeHead(404); return res.end() }
    res.writeHead(200, { 'content-type': f[0] })
    res.end(f[1])
  }).listen(port, '127.0.0.1')
  pageOrigin = `http://127.0.0.1:${port}`
  ;[broker, shortBroker] = await Promise.all([
    startBroker('browser'),
    // Part URLs that live 2 seconds: a queued part's URL expires before it is sent.
    startBroker('browser-short-urls', { PART_URL_TTL: '2s' }),
  ])
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  })
})

after(async () => {
  await browser?.close()
  server?.close()
  await Promise.all([broker?.stop(), shortBroker?.stop()])
})

/** Records part PUTs (requests and answers, by part number) and broker calls. */
function watch(page, log) {
  page.on('request', (req) => {
    const u = new URL(req.url())
    if (req.method() === 'PUT' && u.searchParams.has('partNumber')) {
      log.putRequests.push(Number(u.searchParams.get('partNumber')))
    }
  })
  page.on('response', async (res) => {
    const req = res.request()
    const u = new URL(req.url())
    if (req.method() === 'PUT' && u.searchParams.has('partNumber')) {
      log.putAnswers.push({ n: Number(u.searchParams.get('partNumber')), status: res.status() })
    } else if (req.method() === 'POST' && u.pathname.endsWith('/parts')) {
      log.signCalls++
    } else if (req.method() === 'POST' && u.pathname.endsWith('/resume') && res.ok()) {
      log.resumes.push(await res.json())
    }
  })
  // Every broker call, in the order the answers came: its credential, status and error message.
  page.on('response', (res) => {
    const req = res.request()
    if (req.method() === 'OPTIONS' || !new URL(req.url()).pathname.startsWith('/v1/')) return
    const call = { method: req.method(), path: new URL(req.url()).pathname, status: res.status() }
    log.broker.push(call)
    log.pending.push((async () => {
      call.auth = (await req.allHeaders()).authorization
      if (res.status() >= 400) call.message = (await res.json().catch(() => ({}))).error?.message
    })().catch(() => {}))
  })
  page.on('requestfailed', (req) => {
    const u = new URL(req.url())
    if (req.method() === 'PUT' && u.searchParams.has('partNumber')) log.putFailures.push(Number(u.searchParams.get('partNumber')))
  })
}

/** `user`: signed in to the app (a session cookie), the page's credential is a grant from the backend. */
async function openPage({ brokerUrl = broker.url, throttle = 0, initScript, user } = {}, log = newLog()) {
  const context = await browser.newContext()
  if (initScript) await context.addInitScript(initScript)
  if (user) await context.addCookies([{ name: 'session', value: user, url: pageOrigin }])
  const page = await context.newPage()
  page.on('pageerror', (e) => console.error('page error:', e.message))
  watch(page, log)
  if (throttle) {
    const cdp = await context.newCDPSession(page)
    await cdp.send('Network.enable')
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: throttle })
  }
  await page.goto(`${pageOrigin}/?broker=${encodeURIComponent(brokerUrl)}&${user ? 'grant=1' : `key=${KEY}`}`)
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready')
  return { context, page, log }
}
const newLog = () => ({ putRequests: [], putAnswers: [], putFailures: [], signCalls: 0, resumes: [], broker: [], pending: [] })

const events = (page, id, type) => page.evaluate(([i, t]) => window.events.filter((e) => e.id === i && (!t || e.type === t)), [id, type])

async function finished(page, id, timeout = 120_000) {
  const h = await page.waitForFunction((i) => window.events.find((e) => e.id === i && (e.type === 'done' || e.type === 'error')), id, { timeout })
  return h.jsonValue()
}

async function waitProgress(page, id, percent) {
  await page.waitForFunction(([i, p]) => window.events.some((e) => e.id === i && e.type === 'progress' && e.percent >= p), [id, percent], { timeout: 60_000 })
}

function checkObject(key, size, seed) {
  const got = objectDigest(key)
  assert.equal(got.size, size, 'object size in storage')
  assert.equal(got.hash, sha256(makeBytes(size, seed)), 'the object in storage has the exact bytes')
}

/** Progress is monotone, never above the total, and ends at 100%. */
async function checkProgress(page, id, size) {
  const ps = await events(page, id, 'progress')
  assert.ok(ps.length > 3, 'progress was reported')
  for (let i = 1; i < ps.length; i++) assert.ok(ps[i].uploadedBytes >= ps[i - 1].uploadedBytes, 'progress never goes down')
  assert.ok(ps.every((p) => p.uploadedBytes <= size && p.percent <= 100 && p.totalBytes === size), 'never above the total')
  assert.equal(ps.at(-1).uploadedBytes, size)
  assert.ok(ps.some((p) => p.uploadedBytes > 0 && p.uploadedBytes < size && p.uploadedBytes % (5 * MiB) !== 0), 'progress within parts (XHR upload events)')
  return ps
}

test('a 64 MiB file with SHA-256 part checksums: stored byte for byte', async () => {
  const { context, page, log } = await openPage()
  const size = 64 * MiB
  await page.evaluate((s) => window.startUpload({ id: 'big', size: s, seed: 1, name: 'big.bin', options: { partSize: 8 * 1024 * 1024, checksum: 'SHA256' } }), size)
  const end = await finished(page, 'big')
  assert.equal(end.type, 'done', end.message)
  assert.equal(end.status, 'completed')
  assert.equal(end.objectSize, size)
  assert.equal(end.checksumType, 'COMPOSITE', 'the object carries the composite SHA-256')
  assert.deepEqual([...new Set(log.putAnswers.map((a) => a.n))].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8])
  assert.ok(log.putAnswers.every((a) => a.status === 200), 'every part PUT accepted with its checksum header')
  assert.equal(await page.evaluate(() => window.credentialCalls), 1, 'credential() called once')
  const ps = await checkProgress(page, 'big', size)
  assert.ok(ps.at(-1).partsDone === 8 && ps.at(-1).partsTotal === 8)
  checkObject(end.key, size, 1)
  await context.close()
})

test('10% of part PUTs cut off mid-body: the upload completes, each failed part sent again', async () => {
  const { context, page, log } = await openPage({ throttle: 32 * MiB })
  let puts = 0
  const cut = []
  await page.route((u) => u.searchParams.has('partNumber'), async (route) => {
    const req = route.request()
    if (req.method() === 'PUT' && puts++ % 10 === 2) {
      cut.push(Number(new URL(req.url()).searchParams.get('partNumber')))
      await sleep(150) // the client has started sending
      return route.abort('connectionreset')
    }
    return route.continue()
  })
  const size = 64 * MiB
  await page.evaluate((s) => window.startUpload({ id: 'flaky', size: s, seed: 2, name: 'flaky.bin', options: { partSize: 5 * 1024 * 1024, concurrency: 3 } }), size)
  const end = await finished(page, 'flaky')
  assert.equal(end.type, 'done', end.message)
  assert.ok(cut.length >= 1, 'some PUTs were cut')
  const ok = new Set(log.putAnswers.filter((a) => a.status === 200).map((a) => a.n))
  for (const n of cut) assert.ok(ok.has(n), `part ${n} was cut and then sent again`)
  assert.equal(ok.size, 13, 'every part stored')
  await checkProgress(page, 'flaky', size)
  checkObject(end.key, size, 2)
  await context.close()
})

test('a page reload at ~50%: the new page finishes the same upload, no stored part sent again', async () => {
  const size = 40 * MiB
  const start = (page) => page.evaluate((s) => window.startUpload({ id: 'reload', size: s, seed: 3, name: 'reloaded.bin', options: { partSize: 5 * 1024 * 1024, concurrency: 2 } }), size)
  const first = await openPage({ throttle: 16 * MiB })
  await start(first.page)
  await waitProgress(first.page, 'reload', 50)
  const [started] = await events(first.page, 'reload', 'start')
  assert.equal(started.resumed, false)
  const firstParts = (await events(first.page, 'reload', 'part')).map((e) => e.partNumber)
  assert.ok(firstParts.length < 8, 'reloaded mid-upload')
  await first.page.reload()
  await first.page.waitForFunction(() => document.getElementById('status').textContent === 'ready')
  const putsBefore = first.log.putRequests.length
  // The same file again, as an app would after a reload: found by its fingerprint.
  await start(first.page)
  const end = await finished(first.page, 'reload')
  assert.equal(end.type, 'done', end.message)
  const [again] = await events(first.page, 'reload', 'start')
  assert.equal(again.resumed, true, 'found by fingerprint')
  assert.equal(end.uploadId, started.uploadId, 'the same multipart upload')
  assert.equal(first.log.resumes.length, 1)
  const stored = first.log.resumes[0].uploadedParts.map((p) => p.partNumber)
  assert.ok(stored.length >= firstParts.length && stored.length > 0)
  const sentAfter = first.log.putRequests.slice(putsBefore)
  for (const n of sentAfter) assert.ok(!stored.includes(n), `part ${n} was already stored and was PUT again`)
  assert.deepEqual([...new Set([...stored, ...sentAfter])].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8])
  const ps = await events(first.page, 'reload', 'progress')
  assert.ok(ps[0].uploadedBytes >= stored.length * 5 * MiB - 1, 'the resumed page starts from the stored bytes')
  checkObject(end.key, size, 3)
  await first.context.close()
})

test('expired part URLs (PART_URL_TTL=2s, a client clock 10 minutes slow): 403, re-signed, completed', async () => {
  // The slow clock makes the client trust URLs that storage has expired, so
  // storage answers 403 and the client must sign again.
  const skew = `{ const now = Date.now; Date.now = () => now() - 600000 }`
  const { context, page, log } = await openPage({ brokerUrl: shortBroker.url, throttle: 4 * MiB, initScript: skew })
  const size = 20 * MiB
  await page.evaluate((s) => window.startUpload({ id: 'expiry', size: s, seed: 4, name: 'expiry.bin', options: { partSize: 5 * 1024 * 1024, concurrency: 1, checksum: 'none' } }), size)
  const end = await finished(page, 'expiry')
  assert.equal(end.type, 'done', end.message)
  const refused = log.putAnswers.filter((a) => a.status === 403)
  assert.ok(refused.length >= 1, `storage refused expired URLs (answers: ${log.putAnswers.map((a) => a.status)})`)
  assert.ok(log.signCalls >= 1, 're-signed through …/parts')
  checkObject(end.key, size, 4)
  await context.close()
})

test('pause and resume', async () => {
  const { context, page, log } = await openPage({ throttle: 12 * MiB })
  const size = 30 * MiB
  await page.evaluate((s) => window.startUpload({ id: 'pause', size: s, seed: 5, name: 'paused.bin', options: { partSize: 5 * 1024 * 1024, concurrency: 2 } }), size)
  await waitProgress(page, 'pause', 30)
  await page.evaluate(() => window.uploads.pause.pause())
  assert.equal(await page.evaluate(() => window.uploads.pause.state), 'paused')
  await sleep(300)
  const putsAtPause = log.putRequests.length
  const progressAtPause = (await events(page, 'pause', 'progress')).at(-1).uploadedBytes
  await sleep(1500)
  assert.equal(log.putRequests.length, putsAtPause, 'nothing sent while paused')
  assert.ok(progressAtPause < size)
  await page.evaluate(() => window.uploads.pause.resume())
  const end = await finished(page, 'pause')
  assert.equal(end.type, 'done', end.message)
  assert.ok(log.putRequests.length > putsAtPause, 'sending went on after resume')
  await checkProgress(page, 'pause', size)
  checkObject(end.key, size, 5)
  await context.close()
})

test('abort: the transfer stops and the upload is aborted at the broker', async () => {
  const { context, page, log } = await openPage({ throttle: 12 * MiB })
  const size = 30 * MiB
  await page.evaluate((s) => window.startUpload({ id: 'abort', size: s, seed: 6, name: 'aborted.bin', options: { partSize: 5 * 1024 * 1024 } }), size)
  await waitProgress(page, 'abort', 20)
  await page.evaluate(() => window.uploads.abort.abort())
  const end = await finished(page, 'abort')
  assert.equal(end.type, 'error')
  assert.equal(end.code, 'ABORTED')
  const [started] = await events(page, 'abort', 'start')
  const status = await broker.api('GET', `/v1/uploads/${started.token}`)
  assert.equal(status.body.status, 'aborted')
  const puts = log.putRequests.length
  await sleep(800)
  assert.equal(log.putRequests.length, puts, 'nothing sent after abort')
  await context.close()
})

test('an upload grant that expires mid-upload: 401, credential() fetches a fresh one from the backend, the upload completes', async () => {
  backend.ttlSeconds = 2
  const { context, page, log } = await openPage({ user: 'alice', throttle: 8 * MiB })
  const size = 20 * MiB
  await page.evaluate((s) => window.startUpload({ id: 'grant', size: s, seed: 7, name: 'granted.bin', options: { partSize: 5 * 1024 * 1024, concurrency: 2 } }), size)
  await waitProgress(page, 'grant', 15)
  await page.evaluate(() => window.uploads.grant.pause())
  backend.ttlSeconds = 900 // the grants fetched from now on outlive the test
  const [started] = await events(page, 'grant', 'start')
  assert.equal(backend.calls.alice, 1, 'one grant so far')
  const first = backend.issued.find((g) => g.user === 'alice')
  assert.equal(first.subject, 'user-alice')
  assert.equal((await broker.api('GET', `/v1/uploads/${started.token}`)).body.subject, 'user-alice', 'the upload is the subject\'s')

  // Another user (another browser, signed in as bob) with alice's resume token: 404, as for an unknown upload.
  const bob = await openPage({ user: 'bob' })
  await bob.page.evaluate(([s, token]) => window.startUpload({ id: 'stolen', token, size: s, seed: 7, name: 'granted.bin' }), [size, started.token])
  const refused = await finished(bob.page, 'stolen')
  assert.equal(refused.type, 'error')
  assert.equal(refused.code, 'NOT_FOUND', refused.message)
  assert.equal(backend.calls.bob, 1)
  assert.deepEqual(bob.log.broker.map((c) => `${c.path.endsWith('/resume') ? 'resume' : c.path} ${c.status}`), ['resume 404'])
  assert.equal(bob.log.putRequests.length, 0)
  await bob.context.close()

  // The first grant expires: the broker refuses it once its exp is past, with its 30 s clock leeway.
  const waitFrom = Date.now()
  for (;;) {
    const r = await fetch(`${broker.url}/v1/uploads?fingerprint=x`, { headers: { authorization: `Bearer ${first.grant}` } })
    const body = await r.json()
    if (r.status === 401) {
      assert.match(body.error.message, /expired/)
      break
    }
    assert.equal(r.status, 200, JSON.stringify(body))
    assert.ok(Date.now() - waitFrom < 60_000, 'the grant of 2 seconds still works after a minute')
    await sleep(250)
  }
  await Promise.all(log.pending)
  const callsBefore = log.broker.length
  assert.ok(log.broker.every((c) => c.auth === `Bearer ${first.grant}` && c.status < 400), 'so far every call with the first grant, and accepted')

  await page.evaluate(() => window.uploads.grant.resume())
  const end = await finished(page, 'grant')
  assert.equal(end.type, 'done', end.message)
  assert.equal(end.uploadId, started.uploadId)
  await Promise.all(log.pending)
  const after = log.broker.slice(callsBefore)
  assert.equal(after[0].status, 401, `the next broker call is refused (${JSON.stringify(after[0])})`)
  assert.match(after[0].message, /expired/)
  assert.equal(after[0].auth, `Bearer ${first.grant}`)
  assert.ok(backend.calls.alice >= 2, `credential() fetched a fresh grant from the backend (${backend.calls.alice} grants)`)
  assert.equal(await page.evaluate(() => window.credentialCalls), backend.calls.alice)
  const fresh = after.slice(1)
  assert.ok(fresh.length >= 2 && fresh.every((c) => c.status < 400 && c.auth !== `Bearer ${first.grant}` && c.auth.startsWith('Bearer eyJ')),
    `after the 401, every call with a fresh grant, accepted: ${JSON.stringify(fresh.map((c) => [c.path.split('/').at(-1), c.status]))}`)
  assert.ok(fresh.some((c) => c.path.endsWith('/complete')))
  assert.ok(log.broker.every((c) => c.auth !== `Bearer ${KEY}`), 'the API key never reached the browser')
  await checkProgress(page, 'grant', size)
  checkObject(end.key, size, 7)
  await context.close()
})
