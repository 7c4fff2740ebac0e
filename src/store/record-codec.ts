// The on-disk form of one record in the lmdb engine. Every put, every read and every
// applied replica write goes through it, so it is a fixed binary layout written and read
// by hand rather than a self-describing format:
//
//   byte 0       0xC1: this layout (a byte MessagePack never uses, so records written by
//                earlier builds, which stored MessagePack, are still told apart and read)
//   byte 1       flags: 1 = live (a value follows the header; else a tombstone),
//                       2 = (epoch, seq) present, 4 = deletedAtMs present
//   [f64 epoch, f64 seq]     if flag 2, little-endian
//   [f64 deletedAtMs]        if flag 4
//   u8 n, then n times: u8 id length, id bytes (ASCII: NODE_ID_PATTERN), f64 counter
//   the value bytes, to the end (flag 1)
//
// Numbers are float64 because they are JavaScript numbers up to 2^53 (clock counters and
// seqs never wrap), and a fixed width keeps the writer a single pass.

import { Unpackr } from 'msgpackr';
import type { VectorClock } from '../core/vector-clock.js';
import type { StoredRecord } from './store.js';

const MARK = 0xc1;
const LIVE = 1;
const HAS_POS = 2;
const HAS_DELETED = 4;

/** Node ids are at most 32 ASCII characters and a clock has one entry per node that was ever primary. */
const CLOCK_ENTRIES_MAX = 255;

export function encodeRecord(r: StoredRecord): Buffer {
  const b = Buffer.allocUnsafe(recordBytes(r));
  writeRecord(b, 0, r);
  return b;
}

/** The length of a record's encoding. Throws if it cannot be stored. */
export function recordBytes(r: StoredRecord): number {
  const clock = r.clock;
  if (clock.length > CLOCK_ENTRIES_MAX) throw new RangeError(`a vector clock of ${clock.length} entries cannot be stored (at most ${CLOCK_ENTRIES_MAX})`);
  let size = 3;
  if (r.value !== null) size += r.value.byteLength;
  if (r.epoch !== undefined && r.seq !== undefined) size += 16;
  if (r.deletedAtMs !== undefined) size += 8;
  // Indexed loops: a destructuring for-of allocated an iterator result per entry here.
  for (let i = 0; i < clock.length; i++) size += 9 + clock[i]![0].length;
  return size;
}

/** Writes a record's encoding (recordBytes(r) long) into b at o; returns the offset after it. */
export function writeRecord(b: Buffer, o: number, r: StoredRecord): number {
  const hasPos = r.epoch !== undefined && r.seq !== undefined;
  b[o++] = MARK;
  b[o++] = (r.value !== null ? LIVE : 0) | (hasPos ? HAS_POS : 0) | (r.deletedAtMs !== undefined ? HAS_DELETED : 0);
  if (hasPos) {
    b.writeDoubleLE(r.epoch!, o);
    b.writeDoubleLE(r.seq!, o + 8);
    o += 16;
  }
  if (r.deletedAtMs !== undefined) {
    b.writeDoubleLE(r.deletedAtMs, o);
    o += 8;
  }
  const clock = r.clock;
  b[o++] = clock.length;
  for (let j = 0; j < clock.length; j++) {
    const id = clock[j]![0];
    b[o++] = id.length;
    // Node ids are short ASCII: a loop is cheaper than a native Buffer.write per id.
    for (let i = 0; i < id.length; i++) b[o++] = id.charCodeAt(i);
    b.writeDoubleLE(clock[j]![1], o);
    o += 8;
  }
  if (r.value !== null) {
    b.set(r.value, o);
    o += r.value.byteLength;
  }
  return o;
}

/** Decodes a stored record. `b` may be a view into lmdb's reused read buffer: the value is copied out. */
export function decodeRecord(bytes: Uint8Array): StoredRecord {
  const b = asBuffer(bytes);
  if (b[0] !== MARK) return fromLegacy(legacy.unpack(b) as LegacyRecord);
  // One reader of the layout for the disk and the wire; its length checks cost ~25 ns a record.
  return decodeRecordChecked(b, 0, b.length);
}

/**
 * Decodes a record from bytes that may be anything (a peer's frame): b[start, end), with
 * every length checked. Throws a RangeError that says what is wrong; the value is copied out.
 */
export function decodeRecordChecked(b: Buffer, start: number, end: number): StoredRecord {
  let o = start;
  const need = (n: number): number => {
    const at = o;
    if (at + n > end) throw new RangeError(`truncated at byte ${at - start} of ${end - start}`);
    o = at + n;
    return at;
  };
  if (b[need(1)] !== MARK) throw new RangeError('not a record of this layout');
  const flags = b[need(1)]!;
  if ((flags & ~(LIVE | HAS_POS | HAS_DELETED)) !== 0) throw new RangeError(`unknown flags ${flags}`);
  let epoch: number | undefined;
  let seq: number | undefined;
  let deletedAtMs: number | undefined;
  if (flags & HAS_POS) {
    epoch = b.readDoubleLE(need(8));
    seq = b.readDoubleLE(need(8));
  }
  if (flags & HAS_DELETED) deletedAtMs = b.readDoubleLE(need(8));
  const n = b[need(1)]!;
  const clock: [string, number][] = new Array(n);
  for (let i = 0; i < n; i++) {
    const len = b[need(1)]!;
    const at = need(len);
    clock[i] = [b.toString('latin1', at, at + len), b.readDoubleLE(need(8))];
  }
  let value: Uint8Array | null = null;
  if (flags & LIVE) {
    value = Buffer.allocUnsafe(end - o);
    b.copy(value, 0, o, end);
  } else if (o !== end) throw new RangeError(`${end - o} bytes after a tombstone`);
  const base = epoch === undefined ? { value, clock: clock as unknown as VectorClock } : { value, clock: clock as unknown as VectorClock, epoch, seq: seq! };
  return deletedAtMs === undefined ? base : { ...base, deletedAtMs };
}

/** Is the stored record live (not a tombstone)? Reads only the header. */
export function isLiveRecord(b: Uint8Array): boolean {
  if (b[0] !== MARK) return (legacy.unpack(b) as LegacyRecord).v !== null;
  return (b[1]! & LIVE) !== 0;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

// Records written before this layout: lmdb-js's default MessagePack (with msgpackr's
// record extension), short field names.
interface LegacyRecord {
  v: Uint8Array | null;
  c: [string, number][];
  e?: number;
  s?: number;
  d?: number;
}
const legacy = new Unpackr({ useRecords: true });

function fromLegacy(r: LegacyRecord): StoredRecord {
  const clock = r.c as unknown as VectorClock;
  const value = r.v === null ? null : Uint8Array.prototype.slice.call(r.v);
  const base = r.e === undefined || r.s === undefined ? { value, clock } : { value, clock, epoch: r.e, seq: r.s };
  return r.d === undefined ? base : { ...base, deletedAtMs: r.d };
}
