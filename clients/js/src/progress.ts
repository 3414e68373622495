/** Progress accounting. Pure (time is passed in); unit-tested. */
export interface Progress {
  uploadedBytes: number
  totalBytes: number
  /** uploadedBytes / totalBytes × 100, not rounded. */
  percent: number
  partsDone: number
  partsTotal: number
  /** Smoothed transfer speed (bytes actually sent, retries included). */
  bytesPerSecond: number
}

/**
 * Tracks stored parts and the bytes in flight of each running part. A part that
 * fails loses its in-flight bytes (rolled back), but what the caller sees never
 * goes down and never exceeds the total: it is the running maximum.
 */
export class ProgressTracker {
  private stored = 0
  private partsDone = 0
  private inflight = new Map<number, number>()
  private reported = 0
  private sent = 0 // every byte put on the wire, retries included (for speed)
  private sampleAt: number
  private sampleSent = 0
  private speed = 0

  constructor(
    readonly totalBytes: number,
    readonly partsTotal: number,
    private readonly listener: ((p: Progress) => void) | undefined,
    private readonly now: () => number = () => Date.now(),
    /** Smoothing of the speed: weight of the newest sample. */
    private readonly alpha = 0.3,
  ) {
    this.sampleAt = now()
  }

  /** Parts already in storage when the transfer starts (resume). */
  alreadyStored(bytes: number, parts: number): void {
    this.stored += bytes
    this.partsDone += parts
    this.emit()
  }

  /** `loaded` bytes of part `n` (of `size`) have been sent so far. */
  update(n: number, loaded: number, size: number): void {
    const prev = this.inflight.get(n) ?? 0
    const now = Math.max(0, Math.min(loaded, size))
    if (now > prev) this.sent += now - prev
    this.inflight.set(n, now)
    this.emit()
  }

  /** Part `n` failed or was paused: its bytes in flight no longer count. */
  rollback(n: number): void {
    this.inflight.delete(n)
  }

  /** Part `n` (of `size` bytes) is in storage. */
  complete(n: number, size: number): void {
    const prev = this.inflight.get(n) ?? 0
    if (size > prev) this.sent += size - prev
    this.inflight.delete(n)
    this.stored += size
    this.partsDone++
    this.emit()
  }

  /** The caller's view now. */
  snapshot(): Progress {
    let inflight = 0
    for (const b of this.inflight.values()) inflight += b
    const actual = Math.min(this.totalBytes, this.stored + inflight)
    if (actual > this.reported) this.reported = actual
    const t = this.now()
    const dt = t - this.sampleAt
    if (dt >= 250) {
      const rate = ((this.sent - this.sampleSent) * 1000) / dt
      this.speed = this.speed === 0 ? rate : this.alpha * rate + (1 - this.alpha) * this.speed
      this.sampleAt = t
      this.sampleSent = this.sent
    }
    return {
      uploadedBytes: this.reported,
      totalBytes: this.totalBytes,
      percent: this.totalBytes === 0 ? 100 : (this.reported / this.totalBytes) * 100,
      partsDone: Math.min(this.partsDone, this.partsTotal),
      partsTotal: this.partsTotal,
      bytesPerSecond: Math.round(this.speed),
    }
  }

  emit(): void {
    if (this.listener) this.listener(this.snapshot())
  }
}
