// What a checksum costs a client per GiB: SHA-256 through WebCrypto (the API a
// browser uses; Node's is the same interface) and CRC32C in pure JS
// (@aws-crypto/crc32c, what a browser would have to ship), in 16 MiB parts.
import { webcrypto } from 'node:crypto';
import { Crc32c } from '@aws-crypto/crc32c';
const PART = 16 * 1024 * 1024, GIB = 1024 * 1024 * 1024;
const buf = new Uint8Array(PART);
for (let i = 0; i < PART; i += 65536) webcrypto.getRandomValues(buf.subarray(i, i + 65536));
async function time(name, f) {
  await f(); // warm
  const runs = [];
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    for (let i = 0; i < GIB / PART; i++) await f();
    runs.push((performance.now() - t) / 1000);
  }
  runs.sort((a, b) => a - b);
  console.log(`${name}: ${runs[1].toFixed(2)} s per GiB (median of 3; min ${runs[0].toFixed(2)}, max ${runs[2].toFixed(2)}) = ${(1024 / runs[1]).toFixed(0)} MiB/s`);
}
await time('SHA-256 via WebCrypto', () => webcrypto.subtle.digest('SHA-256', buf));
await time('CRC32C via @aws-crypto/crc32c (pure JS)', () => { const c = new Crc32c(); c.update(buf); return c.digest(); });
console.log(`node ${process.version}`);
