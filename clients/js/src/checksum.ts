/** Part checksums as S3 wants them: base64 of the digest. */

let tables: Uint32Array[] | undefined

/** CRC32C tables for slicing-by-8, built on first use (no table in the bundle). */
function crcTables(): Uint32Array[] {
  if (tables) return tables
  const t: Uint32Array[] = []
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256))
  const t0 = t[0]!
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let j = 0; j < 8; j++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t0[i] = c >>> 0
  }
  for (let i = 0; i < 256; i++) {
    for (let k = 1; k < 8; k++) t[k]![i] = (t[k - 1]![i]! >>> 8) ^ t0[t[k - 1]![i]! & 0xff]!
  }
  return (tables = t)
}

/** CRC32C (Castagnoli) of `data`, continuing from `crc` (0 to start). */
export function crc32c(data: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = crcTables() as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array]
  let c = ~crc >>> 0
  let i = 0
  const n = data.length
  const end8 = n - (n % 8)
  while (i < end8) {
    const a = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) ^ c
    c =
      t7[a & 0xff]! ^ t6[(a >>> 8) & 0xff]! ^ t5[(a >>> 16) & 0xff]! ^ t4[a >>> 24]! ^
      t3[data[i + 4]!]! ^ t2[data[i + 5]!]! ^ t1[data[i + 6]!]! ^ t0[data[i + 7]!]!
    i += 8
  }
  while (i < n) c = t0[(c ^ data[i++]!) & 0xff]! ^ (c >>> 8)
  return ~c >>> 0
}

export function toBase64(bytes: Uint8Array): string {
  let s = ''
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(s)
}

export function toHex(bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}

export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', data as Uint8Array<ArrayBuffer>))
}

export type ChecksumAlgorithm = 'SHA256' | 'CRC32C'

/** The value of `x-amz-checksum-sha256` / `-crc32c` for these bytes. */
export async function partChecksum(alg: ChecksumAlgorithm, data: Uint8Array): Promise<string> {
  if (alg === 'SHA256') return toBase64(await sha256(data))
  const c = crc32c(data)
  return toBase64(new Uint8Array([c >>> 24, (c >>> 16) & 0xff, (c >>> 8) & 0xff, c & 0xff]))
}
