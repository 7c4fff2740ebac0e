// The write-ahead log of the lmdb engine (lmdb-store.ts): an append-only sequence of
// frames, each one store write, made durable with one synchronous append per group of
// writes. A write is acknowledged once its frame is on disk; the B-tree catches up in the
// background (checkpoints), and the frames it holds are then deleted.
//
// On disk: segment files `wal-<first LSN, 16 hex digits>.log` in the store's directory.
// A frame is
//
//   u32 payload length | u32 CRC-32 of (LSN bytes, payload) | f64 LSN | payload
//
// LSNs (log sequence numbers) count frames from 1 and never repeat, across restarts too.
// A crash can tear only the last append (one append is in flight at a time), so reading
// stops at the first frame of the last segment that is short or fails its CRC; that
// frame was never acknowledged. A bad frame anywhere else is corruption and stops the open.

import { closeSync, constants, fsyncSync, ftruncateSync, openSync, readdirSync, readFileSync, unlinkSync, writev } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

/** Bytes of a frame before its payload. */
export const FRAME_HEADER_BYTES = 16;
const HEADER = FRAME_HEADER_BYTES;
const SEGMENT_RE = /^wal-([0-9a-f]{16})\.log$/;
/** A segment is closed and a new one begun once it holds this much. */
const SEGMENT_BYTES = 64 * 1024 * 1024;

export interface WalFrame {
  readonly lsn: number;
  readonly payload: Buffer;
}

interface Segment {
  readonly name: string;
  readonly firstLsn: number;
  /** The last LSN written to it (firstLsn - 1 while empty). */
  lastLsn: number;
}

interface Pending {
  readonly frame: Buffer;
  readonly lsn: number;
  readonly onDurable: () => void;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

const segmentName = (firstLsn: number): string => `wal-${firstLsn.toString(16).padStart(16, '0')}.log`;

/** Every intact frame in the directory's segments, in LSN order (see the file comment). Truncates a torn tail. */
export function readWal(dir: string): WalFrame[] {
  const names = readdirSync(dir)
    .filter((n) => SEGMENT_RE.test(n))
    .sort();
  const frames: WalFrame[] = [];
  names.forEach((name, i) => {
    const path = join(dir, name);
    const buf = readFileSync(path);
    let o = 0;
    while (o < buf.length) {
      const bad = (what: string): Error => new Error(`write-ahead log ${path} is corrupt at byte ${o}: ${what}`);
      if (buf.length - o < HEADER) {
        if (i < names.length - 1) throw bad('a short frame header');
        break;
      }
      const len = buf.readUInt32LE(o);
      const end = o + HEADER + len;
      if (end > buf.length || crc32(buf.subarray(o + 8, end)) !== buf.readUInt32LE(o + 4)) {
        if (i < names.length - 1) throw bad(end > buf.length ? 'a frame longer than the segment' : 'a CRC mismatch');
        break;
      }
      const lsn = buf.readDoubleLE(o + 8);
      const prev = frames.length > 0 ? frames[frames.length - 1]!.lsn : null;
      if (prev !== null && lsn !== prev + 1) throw bad(`LSN ${lsn} follows ${prev}`);
      frames.push({ lsn, payload: buf.subarray(o + HEADER, end) });
      o = end;
    }
    if (o < buf.length) {
      // The torn tail of the last segment: an append that never completed, never acknowledged.
      const fd = openSync(path, 'r+');
      try {
        ftruncateSync(fd, o);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  });
  return frames;
}

/**
 * Appends frames with group commit: one append (a `writev` on a file opened with
 * O_DSYNC, so it returns once the data is on disk) is in flight at a time, and every frame
 * queued meanwhile goes out in the next one. Frames become durable in LSN order.
 */
export class WriteAheadLog {
  private readonly segments: Segment[] = [];
  private fd = -1;
  private segmentBytes = 0;
  private nextLsn: number;
  private queue: Pending[] = [];
  private writing = false;
  private failed: Error | null = null;
  private idleWaiters: (() => void)[] = [];
  /** Totals since the open, for metrics. */
  appends = 0;
  frames = 0;
  bytes = 0;

  /** Starts an empty log whose first frame gets `firstLsn`. Existing segments must have been read (readWal) and removed (removeAll). */
  constructor(
    private readonly dir: string,
    private readonly fsync: boolean,
    firstLsn: number,
  ) {
    this.nextLsn = firstLsn;
    this.openSegment();
  }

  /** Deletes every segment in dir (after their frames are safely in the B-tree). */
  static removeAll(dir: string): void {
    for (const n of readdirSync(dir)) if (SEGMENT_RE.test(n)) unlinkSync(join(dir, n));
  }

  /** The LSN of the last frame appended (durable or not). */
  get lastLsn(): number {
    return this.nextLsn - 1;
  }

  /**
   * Appends one frame: `frame` is FRAME_HEADER_BYTES left for the header, then the payload.
   * `onDurable` runs once it is on disk, in LSN order with the other frames' and before
   * the returned promise resolves. Rejects on an I/O error, after which every append
   * fails: what is on disk is no longer known.
   */
  append(frame: Buffer, onDurable: () => void): { lsn: number; done: Promise<void> } {
    const lsn = this.nextLsn++;
    frame.writeUInt32LE(frame.length - HEADER, 0);
    frame.writeDoubleLE(lsn, 8);
    frame.writeUInt32LE(crc32(frame.subarray(8)), 4);
    const done = new Promise<void>((resolve, reject) => {
      if (this.failed !== null) return reject(this.failed);
      this.queue.push({ frame, lsn, onDurable, resolve, reject });
      if (!this.writing) this.flush();
    });
    return { lsn, done };
  }

  /** Frames up to `lsn` are in the B-tree: the segments that hold only such frames go. */
  release(lsn: number): void {
    while (this.segments.length > 1 && this.segments[0]!.lastLsn <= lsn) {
      unlinkSync(join(this.dir, this.segments.shift()!.name));
    }
  }

  /** Segment files on disk now. */
  get segmentCount(): number {
    return this.segments.length;
  }

  /** Resolves once every frame appended so far is durable (or failed). */
  idle(): Promise<void> {
    if (!this.writing) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Closes the current segment. Call after idle(). */
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private openSegment(): void {
    if (this.fd >= 0) closeSync(this.fd);
    const name = segmentName(this.nextLsn);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | (this.fsync ? constants.O_DSYNC : 0);
    this.fd = openSync(join(this.dir, name), flags, 0o600);
    this.segmentBytes = 0;
    this.segments.push({ name, firstLsn: this.nextLsn, lastLsn: this.nextLsn - 1 });
    if (this.fsync) {
      // The new file's directory entry must be durable before any frame in it counts.
      const d = openSync(this.dir, 'r');
      try {
        fsyncSync(d);
      } finally {
        closeSync(d);
      }
    }
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) {
      this.writing = false;
      for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    this.writing = true;
    if (this.segmentBytes >= SEGMENT_BYTES) {
      try {
        this.openSegment();
      } catch (e) {
        return this.fail(batch, e as Error);
      }
    }
    const frames = batch.map((p) => p.frame);
    let bytes = 0;
    for (const f of frames) bytes += f.length;
    writev(this.fd, frames, (err, written) => {
      if (err === null && written !== bytes) err = new Error(`short write-ahead log append: ${written} of ${bytes} bytes`) as NodeJS.ErrnoException;
      if (err !== null) return this.fail(batch, err);
      this.segmentBytes += bytes;
      this.appends++;
      this.frames += batch.length;
      this.bytes += bytes;
      this.segments[this.segments.length - 1]!.lastLsn = batch[batch.length - 1]!.lsn;
      for (const p of batch) p.onDurable();
      for (const p of batch) p.resolve();
      this.flush();
    });
  }

  private fail(batch: Pending[], e: Error): void {
    this.failed = e;
    for (const p of [...batch, ...this.queue]) p.reject(e);
    this.queue = [];
    this.writing = false;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
