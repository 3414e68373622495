// The Chromium side of the benchmark: the same Blob through @upload-broker/client
// and through @aws-sdk/lib-storage, into the same LocalStack.
import { UploadBroker } from '../dist/browser.js'
import { S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'

const q = new URLSearchParams(location.search)
let blob
window.makeFile = (size) => {
  const bytes = new Uint8Array(size)
  for (let off = 0; off < size; off += 65536) crypto.getRandomValues(bytes.subarray(off, Math.min(size, off + 65536)))
  blob = new File([bytes], 'bench.bin', { type: 'application/octet-stream', lastModified: Date.now() })
}
window.runOurs = async ({ checksum, partSize, concurrency }) => {
  const broker = new UploadBroker({ endpoint: q.get('broker'), credential: q.get('key') })
  const t0 = performance.now()
  const r = await broker.upload(blob, { checksum, partSize, concurrency, resume: false }).done
  if (r.objectSize !== blob.size) throw new Error('wrong size')
  return performance.now() - t0
}
window.runLib = async ({ partSize, concurrency }) => {
  const client = new S3Client({
    region: 'us-east-1', endpoint: q.get('s3'), forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    // The SDK's default (a CRC32 of every part, WHEN_SUPPORTED) needs the bucket's
    // CORS rule to expose x-amz-checksum-crc32 as well as ETag; with the usual
    // ETag-only rule the upload fails at completion. So: checksums only when required.
    requestChecksumCalculation: 'WHEN_REQUIRED',
  })
  const t0 = performance.now()
  await new Upload({ client, params: { Bucket: q.get('bucket'), Key: `bench/lib-${Date.now()}.bin`, Body: blob }, partSize, queueSize: concurrency }).done()
  return performance.now() - t0
}
document.getElementById('status').textContent = 'ready'
