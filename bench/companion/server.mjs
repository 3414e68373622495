// Uppy Companion (the version pinned in package.json) with S3 configured, for
// the side-by-side HTTP benchmark (`scripts/bench.sh http`, bench/http/run.sh).
//
// Companion's own Express app (`companion.app(options)`, its documented way of
// plugging into a server) served by node:http, with the options its S3 routes
// read (lib/server/controllers/s3.js, lib/server/s3-client.js): `s3.key`,
// `s3.secret`, `s3.bucket`, `s3.region`, `s3.endpoint`, `s3.forcePathStyle`
// (LocalStack is addressed path-style, as the broker does with
// S3_FORCE_PATH_STYLE=true), and the options `companion.app` refuses to start
// without (`secret`, `filePath`, `server.host`, `corsOrigins`; `uploadUrls`
// under NODE_ENV=production). Everything else keeps Companion's defaults
// (`s3.expires` 800 s, default `getKey`, Prometheus metrics middleware on).
// The standalone server (`companion` binary) would add a request log (morgan),
// helmet and a session store on every request; this measures the S3 routes
// without them.
//
// Environment: PORT, S3_ENDPOINT, S3_BUCKET, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION (default us-east-1), COMPANION_DATADIR.
import http from 'node:http'
import { mkdirSync, readFileSync } from 'node:fs'
import * as companion from '@uppy/companion'

function need(name) {
  const value = process.env[name]
  if (!value) {
    console.error(`server.mjs: ${name} is not set`)
    process.exit(2)
  }
  return value
}

const port = Number(need('PORT'))
const dataDir = need('COMPANION_DATADIR')
mkdirSync(dataDir, { recursive: true })
const version = JSON.parse(
  readFileSync(new URL('./node_modules/@uppy/companion/package.json', import.meta.url), 'utf8'),
).version

const { app } = companion.app({
  s3: {
    key: need('AWS_ACCESS_KEY_ID'),
    secret: need('AWS_SECRET_ACCESS_KEY'),
    bucket: need('S3_BUCKET'),
    region: process.env.AWS_REGION || 'us-east-1',
    endpoint: need('S3_ENDPOINT'),
    forcePathStyle: true,
  },
  server: { host: `127.0.0.1:${port}`, protocol: 'http' },
  filePath: dataDir,
  secret: 'companion-bench-secret-0123456789abcdef',
  corsOrigins: true,
  // Only for Companion's remote-URL uploads, which this benchmark does not use;
  // required when NODE_ENV=production.
  uploadUrls: [`http://127.0.0.1:${port}/`],
})

const server = http.createServer(app)
server.keepAliveTimeout = 65_000
server.listen(port, '127.0.0.1', () => {
  console.log(`companion ${version} listening on http://127.0.0.1:${port} (node ${process.version})`)
})
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  })
}
