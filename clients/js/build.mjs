// Builds dist/: ESM bundles for browsers and Node (esbuild) and the type
// declarations (tsc). `node build.mjs --size` also prints the browser bundle's
// min+gzip size (the budget is 8 KB).
import * as esbuild from 'esbuild'
import { execFileSync } from 'node:child_process'
import { gzipSync } from 'node:zlib'
import { rmSync } from 'node:fs'

rmSync('dist', { recursive: true, force: true })
rmSync('test/dist/src', { recursive: true, force: true })
const common = { bundle: true, format: 'esm', target: 'es2022', logLevel: 'warning', legalComments: 'none' }
await esbuild.build({ ...common, entryPoints: ['src/browser.ts'], outfile: 'dist/browser.js', platform: 'browser' })
await esbuild.build({ ...common, entryPoints: ['src/node.ts'], outfile: 'dist/node.js', platform: 'node' })
// The internal modules one by one, for the unit tests.
await esbuild.build({ entryPoints: ['src/*.ts'], outdir: 'test/dist/src', format: 'esm', target: 'es2022', logLevel: 'warning', platform: 'neutral' })
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.'], { stdio: 'inherit' })

if (process.argv.includes('--size')) {
  const min = async (stdin) =>
    (await esbuild.build({ stdin: { contents: stdin, resolveDir: '.', loader: 'js' }, bundle: true, minify: true, format: 'esm', write: false, target: 'es2022' })).outputFiles[0].contents
  const all = await min(`export * from './dist/browser.js'`)
  // What an app that calls only the client pays (tree-shaken):
  const app = await min(`import { UploadBroker } from './dist/browser.js'; globalThis.x = new UploadBroker({endpoint: 'x', credential: 'y'})`)
  const kb = (b) => (b.length / 1024).toFixed(2) + ' KB'
  console.log(`browser bundle, everything exported: ${kb(all)} min, ${kb(gzipSync(all, { level: 9 }))} min+gzip`)
  console.log(`browser bundle, UploadBroker only:   ${kb(app)} min, ${kb(gzipSync(app, { level: 9 }))} min+gzip`)
}
