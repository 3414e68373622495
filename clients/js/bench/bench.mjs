// Throughput of @upload-broker/client against @aws-sdk/lib-storage: the same
// file, the same LocalStack, the same part size and concurrency; in headless
// Chromium and in Node. Run by bench/run.sh (which starts the services).
import { createServer } from 'node:http'
import { createReadStream } from 'node:fs'
import { open, rm, mkdtemp } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir, cpus } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import { chromium } from 'playwright-core'
import { S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { UploadBroker } from '../dist/node.js'
import { KEY, MiB, freePort, need, startBroker } from '../test/integration/common.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const RUNS = Number(process.env.BENCH_RUNS || 3)
const partSize = 8 * MiB
const concurrency = 4
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const rows = []
async function measure(where, what, size, fn) {
  const times = []
  for (let i = 0; i < RUNS; i++) times.push(await fn())
  const ms = median(times)
  rows.push({ where, what, size, ms })
  console.log(`${where.padEnd(8)} ${what.padEnd(56)} ${(size / MiB).toFixed(0)} MiB in ${(ms / 1000).toFixed(2)} s = ${(size / MiB / (ms / 1000)).toFixed(1)} MiB/s (median of ${RUNS})`)
}

const broker = await startBroker('bench')
const s3 = need('S3_ENDPOINT')
const bucket = need('JS_BUCKET')
try {
  // ---------------------------------------------------------------- Node
  const dir = await mkdtemp(path.join(tmpdir(), 'ub-bench-'))
  const file = path.join(dir, 'bench.bin')
  const nodeSize = 256 * MiB
  const fh = await open(file, 'w')
  for (let off = 0; off < nodeSize; off += 8 * MiB) await fh.write(randomBytes(8 * MiB))
  await fh.close()
  const client = new UploadBroker({ endpoint: broker.url, credential: KEY })
  for (const checksum of ['none', 'CRC32C', 'SHA256']) {
    await measure('Node', `@upload-broker/client, checksum ${checksum}`, nodeSize, async () => {
      const t0 = performance.now()
      const r = await client.upload(file, { checksum, partSize, concurrency, resume: false }).done
      if (r.objectSize !== nodeSize) throw new Error('wrong size')
      return performance.now() - t0
    })
  }
  for (const [label, calc] of [['SDK default: CRC32 per part', 'WHEN_SUPPORTED'], ['no checksum', 'WHEN_REQUIRED']]) {
    const sdk = new S3Client({ region: 'us-east-1', endpoint: s3, forcePathStyle: true, credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, requestChecksumCalculation: calc })
    await measure('Node', `@aws-sdk/lib-storage, fs stream, ${label}`, nodeSize, async () => {
      const t0 = performance.now()
      await new Upload({ client: sdk, params: { Bucket: bucket, Key: `bench/lib-${Date.now()}.bin`, Body: createReadStream(file) }, partSize, queueSize: concurrency }).done()
      return performance.now() - t0
    })
  }
  await rm(dir, { recursive: true, force: true })

  // ---------------------------------------------------------------- Chromium
  const out = path.join(here, 'dist/page.js')
  await esbuild.build({ entryPoints: [path.join(here, 'page.js')], bundle: true, format: 'esm', outfile: out, logLevel: 'error', platform: 'browser', define: { global: 'globalThis' } })
  const { readFile } = await import('node:fs/promises')
  const files = {
    '/': ['text/html', '<!doctype html><meta charset="utf-8"><p id="status">loading</p><script type="module" src="./app.js"></script>'],
    '/app.js': ['text/javascript', await readFile(out)],
  }
  const port = await freePort()
  const server = createServer((req, res) => {
    const f = files[new URL(req.url, 'http://x').pathname]
    if (!f) { res.writeHead(404); return res.end() }
    res.writeHead(200, { 'content-type': f[0] })
    res.end(f[1])
  }).listen(port, '127.0.0.1')
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-dev-shm-usage'],
  })
  const page = await browser.newPage()
  page.on('pageerror', (e) => console.error('page error:', e.message))
  await page.goto(`http://127.0.0.1:${port}/?broker=${encodeURIComponent(broker.url)}&key=${KEY}&s3=${encodeURIComponent(s3)}&bucket=${bucket}`)
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready')
  const webSize = 128 * MiB
  await page.evaluate((s) => window.makeFile(s), webSize)
  for (const checksum of ['none', 'SHA256', 'CRC32C']) {
    await measure('Chromium', `@upload-broker/client, checksum ${checksum}`, webSize, () => page.evaluate((o) => window.runOurs(o), { checksum, partSize, concurrency }))
  }
  await measure('Chromium', '@aws-sdk/lib-storage, Blob, no checksum', webSize, () => page.evaluate((o) => window.runLib(o), { partSize, concurrency }))
  await browser.close()
  server.close()
} finally {
  await broker.stop()
}
console.log(`\n${cpus().length} CPUs (${cpus()[0]?.model}), Node ${process.version}, parts of ${partSize / MiB} MiB, ${concurrency} at once`)
