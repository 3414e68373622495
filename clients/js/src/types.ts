import type { Progress } from './progress.js'
import type { RetryOptions } from './retry.js'

/** The upload resource of the broker's API (api-v1). */
export interface UploadResource {
  id: string
  resumeToken: string
  status: 'active' | 'completing' | 'completed' | 'aborted' | 'expired'
  bucket: string
  key: string
  uploadId: string
  filename: string
  contentType: string
  size: number
  partSize: number
  partCount: number
  metadata?: Record<string, string>
  fingerprint?: string
  createdAt: string
  expiresAt: string
  checksumAlgorithm?: 'SHA256' | 'CRC32C'
  /** The grant subject the upload belongs to; null for uploads created with an API key. */
  subject?: string | null
  /** Completed uploads: the object's ETag, composite checksum and size in storage. */
  etag?: string
  checksum?: string
  checksumType?: string
  objectSize?: number
  [field: string]: unknown
}

export interface PartUrl {
  partNumber: number
  url: string
  method: string
  size: number
  expiresAt: string
  headers: Record<string, string>
}

export interface StoredPart {
  partNumber: number
  etag: string
  size: number
  checksum?: string
}

export interface ServerProgress {
  uploadedBytes: number
  totalBytes: number
  uploadedParts: number
  totalParts: number
  percent: number
}

export interface ResumeResponse extends UploadResource {
  uploadedParts: StoredPart[]
  missingParts: number[]
  parts: PartUrl[]
  progress: ServerProgress
  conflictingParts?: unknown[]
}

export type FoundUpload = UploadResource & {
  uploadedParts: StoredPart[]
  missingParts: number[]
  progress: ServerProgress
}

/** A bearer credential (API key or upload grant), or a function that fetches one. */
export type Credential = string | (() => string | Promise<string>)

export interface UploadBrokerOptions {
  /** The broker's base URL, e.g. `https://uploads.example.com`. */
  endpoint: string
  /** Sent as `Authorization: Bearer …`. A function is called once, and again after a 401. */
  credential: Credential
  /** Retries of broker calls and part PUTs (network errors, timeouts, 5xx, 429). */
  retry?: RetryOptions
  /** Longest a broker call may take, in ms (default 30000; `complete` gets 4×). */
  requestTimeout?: number
  /** A part PUT that makes no progress for this long (ms) is retried (default 60000). */
  partTimeout?: number
  /** The `fetch` used for broker calls (default: the global one). */
  fetch?: typeof fetch
}

export interface UploadOptions {
  onProgress?: (p: Progress) => void
  /** Called once the upload exists at the broker (created, or found to resume). */
  onStart?: (upload: UploadResource, info: { resumed: boolean }) => void
  /** Called after each part is stored. */
  onPart?: (part: { partNumber: number; size: number; etag: string | null }) => void
  /** Parts in flight at once (default 4). */
  concurrency?: number
  /** Per-part checksum bound into the part URLs (default `SHA256` where WebCrypto is available). */
  checksum?: 'SHA256' | 'CRC32C' | 'none'
  /** Default: the file's type, else the broker's default (`application/octet-stream`). */
  contentType?: string
  /** Becomes the object's user metadata. */
  metadata?: Record<string, string>
  /** Bytes per part (5 MiB to 5 GiB; default: the broker's). */
  partSize?: number
  /** The file's identity for finding its upload again (default: name, size, lastModified and a hash of the first and last MiB). */
  fingerprint?: string
  /** Default: the file's name. */
  filename?: string
  /** Cancels the transfer; the upload stays resumable. */
  signal?: AbortSignal
  /** Find this file's active upload by fingerprint and continue it (default true). */
  resume?: boolean
}

/** What can be uploaded: a Blob or File; in Node also a file path. */
export type UploadInput = Blob | string

/** The file being uploaded, as the platform reads it. */
export interface FileSource {
  name: string
  size: number
  type: string
  lastModified: number
  /** The bytes [start, end): a Blob slice in browsers, a Uint8Array in Node. */
  read(start: number, end: number): Promise<unknown>
  /** A body from `read` as bytes (for hashing). */
  bytes(body: unknown): Promise<Uint8Array>
  close?(): Promise<void>
}

export interface PutRequest {
  url: string
  method: string
  headers: Record<string, string>
  body: unknown
  size: number
  signal: AbortSignal
  /** No progress for this long (ms): fail with TIMEOUT. */
  timeout: number
  onProgress(loaded: number): void
}

/** An answer from storage; network failures reject instead (UploadBrokerError, retryable). */
export interface PutResult {
  status: number
  etag: string | null
  body: string
  retryAfter: string | null
}

export interface Platform {
  open(input: UploadInput): Promise<FileSource>
  put(req: PutRequest): Promise<PutResult>
}

export type { Progress, RetryOptions }
