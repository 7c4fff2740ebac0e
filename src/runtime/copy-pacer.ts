// Paces a learner's partition copies as background traffic.
//
// A copy competes with client traffic for the same CPUs, disks and event loops, on the
// nodes that send chunks and on the node that applies them. A fixed throttle is either
// too slow for a quiet cluster or too fast for a busy one, so the rate follows the
// queueing delay the copy itself observes, in the manner of LEDBAT (RFC 6817):
//
//   * every chunk request is timed until its chunk arrives (a round trip through both
//     peer queues, the source's event loop and its store scan, and this node's event loop);
//   * the lowest round trip of the last baseHistoryMs is the base: the chunk's own cost.
//     Under sustained load every round trip includes some queueing, so the base would
//     creep up with it; as in LEDBAT++ (draft-irtf-iccrg-ledbat-plus-plus), copies slow
//     to the floor for two windows when they start and every probeEveryMs after, to
//     measure it without their own load;
//   * the 90th percentile round trip of each window, minus the base, is the queueing
//     delay: a tail, not the median, because what copies must not hurt is the tail of
//     client latency (a put waits for every owner's event loop, so one node's stall is
//     one slow put);
//   * below targetDelayMs the rate grows (by up to a quarter per window), above it the
//     rate shrinks in proportion to the excess (by up to half per window), always within
//     [minBytesPerS, maxBytesPerS].
//
// So copies run at the configured ceiling while nothing else waits, and back off when
// requests (client or copy) start to queue anywhere on their path. Pure: the caller
// passes the time, which keeps it testable.

export interface CopyPacerOptions {
  /** The ceiling (limits.transferBytesPerSecond). */
  readonly maxBytesPerS: number;
  /** Queueing delay copies may add before they back off (ms); 0 = always the ceiling. */
  readonly targetDelayMs: number;
  /** The floor: copies always progress at least this fast. */
  readonly minBytesPerS?: number;
  /** One decision per window (ms). */
  readonly windowMs?: number;
  /** How long the lowest round trip is remembered (ms). */
  readonly baseHistoryMs?: number;
  /** How often copies slow to the floor to measure the base again (ms). */
  readonly probeEveryMs?: number;
  /** Which round trip of a window stands for it (0.5: the median); default 0.9. */
  readonly delayPercentile?: number;
}

/** A chunk request not answered within this long is forgotten (it was dropped or resent). */
const requestForgetMs = 10_000;
/** Copies that start after this long without a request begin with a probe. */
const idleMs = 5_000;
const baseBuckets = 6;

export class CopyPacer {
  private rate: number;
  private readonly min: number;
  private readonly windowMs: number;
  private readonly bucketMs: number;
  private readonly probeEveryMs: number;
  private readonly percentile: number;
  private readonly sentAt = new Map<string, number>();
  private samples: number[] = [];
  /** End of the current decision window (null before the first call). */
  private windowEnd: number | null = null;
  /** Lowest round trip per bucket of baseHistoryMs / baseBuckets, newest last. */
  private readonly base: { start: number; min: number }[] = [];
  /** Copies run at the floor until then, to measure the base. */
  private probeUntil = -Infinity;
  private nextProbeAt = Infinity;
  private lastRequestAt = -Infinity;
  /** The latest time given to any method. */
  private now = -Infinity;
  /** The last window's queueing delay (ms), for reports; null before the first sample. */
  queueingMs: number | null = null;

  constructor(private readonly opts: CopyPacerOptions) {
    this.min = Math.min(opts.maxBytesPerS, opts.minBytesPerS ?? 512 * 1024);
    this.windowMs = opts.windowMs ?? 250;
    this.bucketMs = (opts.baseHistoryMs ?? 60_000) / baseBuckets;
    this.probeEveryMs = opts.probeEveryMs ?? 20_000;
    this.percentile = opts.delayPercentile ?? 0.9;
    // Start at the floor and ramp up (a quarter per window: the floor to 32 MiB/s in under
    // 5 s): a burst is what the pacer exists to avoid, and with a target of a few ms even an
    // eighth of the ceiling showed in the first second's client p99.
    this.rate = opts.targetDelayMs === 0 ? opts.maxBytesPerS : this.min;
  }

  /** Value bytes per second copies may use now. */
  bytesPerS(): number {
    return this.now < this.probeUntil ? this.min : this.rate;
  }

  /** A chunk request identified by `key` left at `nowMs`. */
  requestSent(key: string, nowMs: number): void {
    this.now = Math.max(this.now, nowMs);
    if (this.opts.targetDelayMs > 0 && nowMs - this.lastRequestAt > idleMs) {
      // Copies (re)start: measure the base before they load anything, or a base taken
      // under their own load would hide the queueing they cause until the next probe.
      this.startProbe(nowMs);
    }
    this.lastRequestAt = nowMs;
    this.sentAt.set(key, nowMs);
  }

  /** The chunk answering `key` arrived at `nowMs`. */
  chunkReceived(key: string, nowMs: number): void {
    this.now = Math.max(this.now, nowMs);
    const t = this.sentAt.get(key);
    if (t === undefined) return;
    this.sentAt.delete(key);
    const rtt = nowMs - t;
    this.samples.push(rtt);
    const last = this.base[this.base.length - 1];
    if (last === undefined || nowMs - last.start >= this.bucketMs) {
      this.base.push({ start: nowMs, min: rtt });
      if (this.base.length > baseBuckets) this.base.shift();
    } else last.min = Math.min(last.min, rtt);
  }

  /** Call often (every tick); decides once per window. Returns the rate now. */
  update(nowMs: number): number {
    this.now = Math.max(this.now, nowMs);
    if (this.opts.targetDelayMs === 0) return this.rate;
    if (this.windowEnd === null) this.windowEnd = nowMs + this.windowMs;
    if (nowMs < this.windowEnd) return this.bytesPerS();
    // A window that overlapped a probe measured the floor, not the rate: no decision.
    const probed = this.probeUntil > this.windowEnd - this.windowMs;
    this.windowEnd = nowMs + this.windowMs;
    for (const [k, t] of this.sentAt) if (nowMs - t > requestForgetMs) this.sentAt.delete(k);
    if (this.samples.length > 0 && nowMs >= this.nextProbeAt) this.startProbe(nowMs);
    if (this.samples.length === 0 || probed) {
      this.samples = [];
      return this.bytesPerS();
    }
    const sorted = this.samples.sort((a, b) => a - b);
    const current = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * this.percentile))]!;
    this.samples = [];
    let baseMs = Infinity;
    for (const b of this.base) baseMs = Math.min(baseMs, b.min);
    this.queueingMs = Math.max(0, current - baseMs);
    const target = this.opts.targetDelayMs;
    const offTarget = Math.max(-1, Math.min(1, (target - this.queueingMs) / target));
    const factor = offTarget >= 0 ? 1 + 0.25 * offTarget : 1 + 0.5 * offTarget;
    this.rate = Math.max(this.min, Math.min(this.opts.maxBytesPerS, this.rate * factor));
    return this.bytesPerS();
  }

  private startProbe(nowMs: number): void {
    this.probeUntil = nowMs + 2 * this.windowMs;
    this.nextProbeAt = nowMs + this.probeEveryMs;
  }
}

/** The key that matches a chunk to the request it answers (the chunk echoes these fields). */
export function copyRequestKey(peer: string, m: { partition: number; session: number; mode: string; fromSeq: number; after: string | null }): string {
  return `${peer}/${m.partition}/${m.session}/${m.mode}/${m.fromSeq}/${m.after ?? ''}`;
}
