// Deterministic bytes: the page uploads them, the test checks the object
// against the same ones (xorshift32, as e2e/ does).
export function makeBytes(size, seed) {
  const out = new Uint8Array(size)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}
