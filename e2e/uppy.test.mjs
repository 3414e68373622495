// Uppy (@uppy/core + @uppy/aws-s3 + @uppy/golden-retriever from npm, bundled
// with esbuild) in headless Chromium, uploading through upload-broker's
// Companion-compatible routes into LocalStack. Run by scripts/test.sh, which
// starts Postgres and LocalStack and sets the environment below.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { createServer } from 'node:http'
import { createHash } from 'node:crypto'
import { readFile, mkdir, writeFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import net from 'node:net'
import * as esbuild from 'esbuild'
import { chromium } from 'playwright-core'
import { makeBytes } from './page/bytes.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const need = (name) => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set: run the browser tests through scripts/test.sh`)
  return v
}
const MiB = 1024 * 1024
const KEY = 'e2e-browser-key'

let broker, server, browser, brokerUrl, pageUrl, brokerLogs = ''

// The app's backend, played by the page server: `POST /api/upload-grant` mints
// an upload grant for its signed-in user with the API key (POST /v1/grants), as
// the README's "Minting a grant" shows. The page never sees the key.
const SUBJECT = 'user-42'
let grantCalls = 0
async function uploadGrantRoute(res) {
  grantCalls++
  const r = await fetch(`${brokerUrl}/v1/grants`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ subject: SUBJECT, ttlSeconds: 900, contentTypes: ['application/octet-stream'] }),
  })
  if (r.status !== 201) { res.writeHead(502); return res.end() }
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(await r.text()) // {grant, subject, expiresAt}
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

const sha256 = (b) => createHash('sha256').update(b).digest('hex')

// Reads an object back from LocalStack with boto3 (SigV4), returning its SHA-256 and size.
function objectDigest(key) {
  const py = `import boto3, hashlib, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
b = s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"].read()
print(hashlib.sha256(b).hexdigest(), len(b))`
  const out = execFileSync(need('E2E_PYTHON'), ['-c', py, need('S3_ENDPOINT'), need('E2E_BUCKET'), key]).toString().trim()
  const [hash, size] = out.split(' ')
  return { hash, size: Number(size) }
}

before(async () => {
  // The page: the real packages, bundled.
  await mkdir(path.join(here, 'dist'), { recursive: true })
  await esbuild.build({
    entryPoints: [path.join(here, 'page/app.js')],
    bundle: true,
    format: 'esm',
    outfile: path.join(here, 'dist/app.js'),
    logLevel: 'warning',
  })
  const files = {
    '/': ['text/html', await readFile(path.join(here, 'page/index.html'))],
    '/app.js': ['text/javascript', await readFile(path.join(here, 'dist/app.js'))],
  }
  const pagePort = await freePort()
  server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/api/upload-grant') {
      return uploadGrantRoute(res).catch(() => { res.writeHead(500); res.end() })
    }
    const f = files[new URL(req.url, 'http://x').pathname]
    if (!f) { res.writeHead(404); return res.end() }
    res.writeHead(200, { 'content-type': f[0] })
    res.end(f[1])
  }).listen(pagePort, '127.0.0.1')
  const pageOrigin = `http://127.0.0.1:${pagePort}`

  // The broker, as users run it.
  const brokerPort = await freePort()
  brokerUrl = `http://127.0.0.1:${brokerPort}`
  broker = spawn(need('BROKER_BIN'), ['serve'], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: need('E2E_DATABASE_URL'),
      S3_BUCKET: need('E2E_BUCKET'),
      S3_ENDPOINT: need('S3_ENDPOINT'),
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      BROKER_LISTEN: `127.0.0.1:${brokerPort}`,
      BROKER_API_KEYS: `e2e:${KEY}`,
      BROKER_CORS_ORIGINS: pageOrigin,
      BROKER_TOKEN_SECRET: 'e2e-token-secret-of-at-least-32-bytes!!',
      S3_KEY_PREFIX: `e2e-${Date.now()}/`,
      SWEEP_INTERVAL: '0',
      RUST_LOG: 'debug',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  broker.stderr.on('data', (d) => { brokerLogs += d })
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${brokerUrl}/healthz`)).ok) break
    } catch {}
    if (i > 300) throw new Error(`the broker did not start:\n${brokerLogs}`)
    await sleep(100)
  }
  pageUrl = `${pageOrigin}/?broker=${encodeURIComponent(brokerUrl)}`

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  })
})

after(async () => {
  await browser?.close()
  server?.close()
  if (broker) {
    broker.kill('SIGTERM')
    await new Promise((r) => broker.once('exit', r))
    // Checked for secrets with the rest of the run's logs.
    if (process.env.UPLOAD_BROKER_TEST_LOG_DIR) {
      await mkdir(process.env.UPLOAD_BROKER_TEST_LOG_DIR, { recursive: true })
      await writeFile(path.join(process.env.UPLOAD_BROKER_TEST_LOG_DIR, 'e2e-broker.log'), brokerLogs)
    }
  }
})

/** Watches a page's traffic: creates, successful part PUTs per part number, and the credential of each broker call. */
function watch(page) {
  const seen = { creates: [], puts: new Map(), completes: [], credentials: [] }
  page.on('request', (req) => {
    if (req.url().startsWith(brokerUrl) && req.method() !== 'OPTIONS') seen.credentials.push(req.allHeaders().then((h) => h.authorization))
  })
  page.on('response', async (res) => {
    const req = res.request()
    const url = new URL(req.url())
    if (req.method() === 'POST' && url.pathname === '/s3/multipart' && res.ok()) {
      seen.creates.push(await res.json())
    } else if (req.method() === 'POST' && url.pathname.endsWith('/complete') && res.ok()) {
      seen.completes.push(decodeURIComponent(url.pathname.split('/')[3]))
    } else if (req.method() === 'PUT' && url.searchParams.has('partNumber') && res.status() === 200) {
      const n = Number(url.searchParams.get('partNumber'))
      seen.puts.set(n, (seen.puts.get(n) || 0) + 1)
    }
  })
  return seen
}

async function openPage(query = '') {
  grantCalls = 0
  const context = await browser.newContext()
  const page = await context.newPage()
  page.on('pageerror', (e) => console.error('page error:', e.message))
  if (process.env.E2E_DEBUG) page.on('console', (m) => console.error('console:', m.text().slice(0, 300)))
  const seen = watch(page)
  // Loopback is too fast to pause or reload mid-upload: throttle uploads to
  // 8 MiB/s (a 25 MiB file then takes about 3 s).
  const cdp = await context.newCDPSession(page)
  await cdp.send('Network.enable')
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 8 * MiB,
  })
  await page.goto(pageUrl + query + (process.env.E2E_DEBUG ? '&debug=1' : ''))
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready')
  return { context, page, seen }
}

async function waitForSuccess(page, name, timeout = 60000) {
  const handle = await page.waitForFunction(
    (n) => window.events.find((e) => (e.type === 'success' || e.type === 'error') && e.name === n),
    name, { timeout },
  )
  const e = await handle.jsonValue()
  assert.equal(e.type, 'success', `upload failed: ${e.message}`)
  return e
}

/** Every broker call carried an upload grant from the backend (never the API key); `grants`: how many the page fetched. */
async function checkGrants(seen, grants) {
  seen.credentials = await Promise.all(seen.credentials)
  assert.ok(seen.credentials.length > 0)
  assert.ok(seen.credentials.every((c) => /^Bearer eyJ[\w-]+\.[\w-]+\.[\w-]+$/.test(c ?? '')),
    `every broker call with a grant: ${seen.credentials.filter((c) => !c?.startsWith('Bearer eyJ'))}`)
  const subjects = new Set(seen.credentials.map((c) => JSON.parse(Buffer.from(c.split('.')[1], 'base64url')).sub))
  assert.deepEqual([...subjects], [SUBJECT])
  assert.equal(grantCalls, grants, 'grants fetched from the backend')
  assert.equal(new Set(seen.credentials).size, grants)
}

function checkObject(key, size, seed) {
  const got = objectDigest(key)
  assert.equal(got.size, size)
  assert.equal(got.hash, sha256(makeBytes(size, seed)), 'the object in storage has the exact bytes')
}

test('a 25 MiB file in 5 MiB parts, through the broker into storage', async () => {
  const { context, page, seen } = await openPage()
  const size = 25 * MiB
  await page.evaluate((s) => { window.addFile('big.bin', s, 7); return window.uppy.upload() }, size)
  await waitForSuccess(page, 'big.bin')
  assert.equal(seen.creates.length, 1)
  assert.deepEqual([...seen.puts.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5])
  assert.ok([...seen.puts.values()].every((n) => n === 1), 'each part uploaded once')
  assert.deepEqual(seen.completes, [seen.creates[0].uploadId])
  checkObject(seen.creates[0].key, size, 7)
  await checkGrants(seen, 1)
  await context.close()
})

test('pause and resume', async () => {
  const { context, page, seen } = await openPage()
  const size = 25 * MiB
  const id = await page.evaluate((s) => { const id = window.addFile('paused.bin', s, 11); window.uppy.upload(); return id }, size)
  await page.waitForFunction(() => window.events.filter((e) => e.type === 'part').length >= 2)
  await page.evaluate((id) => window.uppy.pauseResume(id), id)
  const partsAtPause = await page.evaluate(() => window.events.filter((e) => e.type === 'part').length)
  assert.ok(partsAtPause < 5, 'paused mid-upload')
  await sleep(1500)
  const partsWhilePaused = await page.evaluate(() => window.events.filter((e) => e.type === 'part').length)
  assert.ok(partsWhilePaused <= partsAtPause + 1, 'nothing more is uploaded while paused (but the part in flight)')
  await page.evaluate((id) => window.uppy.pauseResume(id), id)
  await waitForSuccess(page, 'paused.bin')
  assert.equal(seen.creates.length, 1, 'one multipart upload')
  for (const [n, count] of seen.puts) assert.equal(count, 1, `part ${n} was uploaded ${count} times`)
  checkObject(seen.creates[0].key, size, 11)
  await checkGrants(seen, 1)
  await context.close()
})

test('a page reload mid-upload resumes the same upload with Golden Retriever', async () => {
  const { context, page, seen } = await openPage('&golden=1')
  const size = 25 * MiB
  await page.evaluate((s) => { window.addFile('reloaded.bin', s, 13); window.uppy.upload() }, size)
  await page.waitForFunction(() => window.events.filter((e) => e.type === 'part').length >= 2)
  await sleep(300) // let Golden Retriever persist the state
  const partsBeforeReload = seen.puts.size
  assert.ok(partsBeforeReload < 5, 'the reload happens mid-upload')
  await page.reload()
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready')
  await page.waitForFunction(() => window.restored === true, null, { timeout: 20000 })
  const done = await waitForSuccess(page, 'reloaded.bin')
  assert.equal(seen.creates.length, 1, 'no second multipart upload after the reload')
  assert.deepEqual(seen.completes, [seen.creates[0].uploadId], 'completed with the same uploadId')
  for (const [n, count] of seen.puts) assert.equal(count, 1, `part ${n} was uploaded ${count} times`)
  assert.deepEqual([...seen.puts.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5], 'every part once, across the reload')
  checkObject(seen.creates[0].key, size, 13)
  assert.ok(done.uploadURL, 'Uppy reports the object URL')
  await checkGrants(seen, 2) // the reloaded page fetched a fresh grant of the same subject
  await context.close()
})

test('the plugin unchanged: a small file goes up in one presigned POST', async () => {
  const { context, page, seen } = await openPage('&plain=1')
  const size = 3 * MiB + 17
  let params = 0
  page.on('response', (res) => { if (new URL(res.url()).pathname === '/s3/params' && res.ok()) params++ })
  await page.evaluate((s) => { window.addFile('small.txt', s, 17); return window.uppy.upload() }, size)
  const done = await waitForSuccess(page, 'small.txt')
  assert.equal(params, 1, 'one /s3/params call')
  assert.equal(seen.creates.length, 0, 'no multipart upload for a small file')
  const key = decodeURIComponent(new URL(done.uploadURL).pathname.split('/').slice(2).join('/'))
  checkObject(key, size, 17)
  await checkGrants(seen, 1)
  await context.close()
})
