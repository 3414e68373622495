// Shared by the integration tests: the real broker binary, LocalStack read back
// with boto3, deterministic bytes. The environment comes from test/run.sh (or
// scripts/test.sh): S3_ENDPOINT, JS_DATABASE_URL, JS_BUCKET, BROKER_BIN, JS_PYTHON.
import { spawn, execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import path from 'node:path'
import net from 'node:net'

export const MiB = 1024 * 1024
export const KEY = 'js-client-test-key'

export function need(name) {
  const v = process.env[name]
  if (!v) {
    throw new Error(
      `${name} is not set. Run these tests with clients/js/test/run.sh from scripts/test.sh, ` +
        `or clients/js/test/standalone.sh, which starts Postgres (127.0.0.1:5432) and LocalStack and sets it.`,
    )
  }
  return v
}

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

export const sha256 = (b) => createHash('sha256').update(b).digest('hex')

/** Deterministic bytes (xorshift32): the page and the test make the same ones. */
export { makeBytes } from '../page/bytes.js'

/** Reads an object back from LocalStack (boto3, SigV4): its SHA-256 and size. */
export function objectDigest(key) {
  const py = `import boto3, hashlib, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
h = hashlib.sha256(); n = 0
for chunk in s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"].iter_chunks(1 << 20):
    h.update(chunk); n += len(chunk)
print(h.hexdigest(), n)`
  const out = execFileSync(need('JS_PYTHON'), ['-c', py, need('S3_ENDPOINT'), need('JS_BUCKET'), key]).toString().trim()
  const [hash, size] = out.split(' ')
  return { hash, size: Number(size) }
}

/** Starts the real broker (`serve`) on a free port; `env` adds settings (e.g. PART_URL_TTL). */
export async function startBroker(name, env = {}) {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  let logs = ''
  const proc = spawn(need('BROKER_BIN'), ['serve'], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: need('JS_DATABASE_URL'),
      S3_BUCKET: need('JS_BUCKET'),
      S3_ENDPOINT: need('S3_ENDPOINT'),
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      BROKER_LISTEN: `127.0.0.1:${port}`,
      BROKER_API_KEYS: `js:${KEY}`,
      BROKER_CORS_ORIGINS: '*',
      BROKER_TOKEN_SECRET: 'js-client-token-secret-of-at-least-32-bytes',
      S3_KEY_PREFIX: `js-${name}-${Date.now()}/`,
      SWEEP_INTERVAL: '0',
      RUST_LOG: 'debug',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  proc.stderr.on('data', (d) => { logs += d })
  const exited = new Promise((r) => proc.once('exit', r))
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break
    } catch {}
    if (i > 300 || proc.exitCode !== null) throw new Error(`the broker did not start:\n${logs.slice(-4000)}`)
    await sleep(100)
  }
  return {
    url,
    /** A broker call with the test's API key. */
    async api(method, p, body) {
      const res = await fetch(url + p, {
        method,
        headers: { authorization: `Bearer ${KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      })
      const text = await res.text()
      return { status: res.status, body: text ? JSON.parse(text) : undefined }
    },
    async stop() {
      proc.kill('SIGTERM')
      await exited
      // Checked for secrets with the rest of the run's logs (scripts/test.sh).
      if (process.env.UPLOAD_BROKER_TEST_LOG_DIR) {
        await mkdir(process.env.UPLOAD_BROKER_TEST_LOG_DIR, { recursive: true })
        await writeFile(path.join(process.env.UPLOAD_BROKER_TEST_LOG_DIR, `js-client-${name}-broker.log`), logs)
      }
    },
  }
}
