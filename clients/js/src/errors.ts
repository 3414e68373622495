/**
 * Every failure the client reports is an UploadBrokerError. `code` is the
 * broker's error code (the contract's: `UPLOAD_EXPIRED`, `NOT_FOUND`, …) when
 * the broker answered with one, otherwise one of the client's own:
 * `NETWORK_ERROR`, `TIMEOUT`, `ABORTED`, `STORAGE_ERROR` (storage refused a part),
 * `SIZE_MISMATCH` (the file or the stored object does not have the expected size),
 * `INVALID_INPUT`.
 */
export class UploadBrokerError extends Error {
  override readonly name = 'UploadBrokerError'
  /** The contract's error code, or one of the client's own (see above). */
  readonly code: string
  /** HTTP status of the answer that caused it; 0 when there was none. */
  readonly status: number
  /** Extra fields of the broker's `error` object (such as `missingParts`). */
  readonly details: Record<string, unknown>
  /** Whether the request that failed may be retried. */
  readonly retryable: boolean

  constructor(
    code: string,
    message: string,
    opts: { status?: number; details?: Record<string, unknown>; retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.code = code
    this.status = opts.status ?? 0
    this.details = opts.details ?? {}
    this.retryable = opts.retryable ?? false
  }
}

export const aborted = (why = 'the upload was cancelled') =>
  new UploadBrokerError('ABORTED', why)

/** Builds an error from a broker answer: `{"error": {"code", "message", …}}`. */
export function brokerError(status: number, body: unknown, retryable: boolean): UploadBrokerError {
  const e = (body as { error?: Record<string, unknown> } | null)?.error
  if (e && typeof e.code === 'string') {
    const { code, message, ...details } = e
    return new UploadBrokerError(code, typeof message === 'string' ? message : code, { status, details, retryable })
  }
  return new UploadBrokerError(status >= 500 ? 'UNAVAILABLE' : 'HTTP_' + status, `the broker answered ${status}`, {
    status,
    retryable,
  })
}
