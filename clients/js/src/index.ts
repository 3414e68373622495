// The type entry of the package: the same API in browsers (dist/browser.js) and
// in Node (dist/node.js, where `upload()` also takes a file path).
export * from './browser.js'
