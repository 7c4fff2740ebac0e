// The stored form of a partition's metadata (core/partition.ts PartitionMeta). Every store
// write that carries a replicated record carries its partition's meta too (its log
// position moved), on the primary and on every replica, so it is a fixed binary layout
// written and read by hand, like record-codec.ts, rather than a MessagePack map (about
// 1.3 us to encode, against about 0.1 us):
//
//   byte 0       0xC2: this layout
//   byte 1       flags: 1 = pos present, 2 = confirmed present, 4 = copyTarget present
//   [f64 pos.epoch, f64 pos.seq]                               if flag 1
//   u16 n, then n times: f64 epoch, f64 startSeq               history
//   [f64 epoch, u8 n, then n times: u8 id length, id bytes]    confirmed, if flag 2
//   u8 n, then n times: u8 id length, id bytes, f64 counter    purgedClock
//   f64 purgedUpTo.epoch, f64 purgedUpTo.seq
//   [f64 copyTarget.epoch, f64 copyTarget.seq]                 if flag 4
//
// Numbers are little-endian float64: JavaScript numbers up to 2^53. Node ids are ASCII
// (NODE_ID_PATTERN). Metas written before this layout were MessagePack objects; they
// are still read (rep-store.ts loadPartitionMetas).

import type { Epoch, NodeId, Seq } from '../core/types.js';
import type { HistoryEntry, LogPosition, PartitionMeta } from '../core/partition.js';
import type { VectorClock } from '../core/vector-clock.js';

const MARK = 0xc2;
const HAS_POS = 1;
const HAS_CONFIRMED = 2;
const HAS_COPY_TARGET = 4;
const U8_MAX = 255;
const U16_MAX = 65535;

export function encodePartitionMeta(m: PartitionMeta): Buffer {
  const learners = m.confirmed?.learners ?? [];
  if (m.history.length > U16_MAX || learners.length > U8_MAX || m.purgedClock.length > U8_MAX) {
    throw new RangeError('partition metadata too large to store (history, learners or purged clock)');
  }
  let size = 2 + 2 + 16 * m.history.length + 1 + 16;
  let flags = 0;
  if (m.pos !== null) {
    flags |= HAS_POS;
    size += 16;
  }
  if (m.confirmed !== null) {
    flags |= HAS_CONFIRMED;
    size += 9;
    for (const id of learners) size += 1 + id.length;
  }
  for (let i = 0; i < m.purgedClock.length; i++) size += 9 + m.purgedClock[i]![0].length;
  if (m.copyTarget !== null) {
    flags |= HAS_COPY_TARGET;
    size += 16;
  }
  const b = Buffer.allocUnsafe(size);
  b[0] = MARK;
  b[1] = flags;
  let o = 2;
  const f64 = (x: number): void => {
    b.writeDoubleLE(x, o);
    o += 8;
  };
  // Node ids are short ASCII: a loop is cheaper than a native Buffer.write per id.
  const id = (s: string): void => {
    b[o++] = s.length;
    for (let i = 0; i < s.length; i++) b[o++] = s.charCodeAt(i);
  };
  if (m.pos !== null) {
    f64(m.pos.epoch);
    f64(m.pos.seq);
  }
  b.writeUInt16LE(m.history.length, o);
  o += 2;
  for (const h of m.history) {
    f64(h.epoch);
    f64(h.startSeq);
  }
  if (m.confirmed !== null) {
    f64(m.confirmed.epoch);
    b[o++] = learners.length;
    for (const l of learners) id(l);
  }
  b[o++] = m.purgedClock.length;
  for (let i = 0; i < m.purgedClock.length; i++) {
    id(m.purgedClock[i]![0]);
    f64(m.purgedClock[i]![1]);
  }
  f64(m.purgedUpTo.epoch);
  f64(m.purgedUpTo.seq);
  if (m.copyTarget !== null) {
    f64(m.copyTarget.epoch);
    f64(m.copyTarget.seq);
  }
  return b;
}

/** Is this a meta in this layout (rather than an older MessagePack object)? */
export function isEncodedPartitionMeta(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && v.length > 0 && v[0] === MARK;
}

/** Decodes encodePartitionMeta's bytes; throws on bytes that are not such a meta. */
export function decodePartitionMeta(bytes: Uint8Array): PartitionMeta {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b[0] !== MARK) throw new Error('not a partition meta of this layout');
  const flags = b[1]!;
  let o = 2;
  const pos = (): LogPosition => {
    const p = { epoch: b.readDoubleLE(o) as Epoch, seq: b.readDoubleLE(o + 8) as Seq };
    o += 16;
    return p;
  };
  const id = (): string => {
    const len = b[o++]!;
    const s = b.toString('latin1', o, o + len);
    o += len;
    return s;
  };
  const p = flags & HAS_POS ? pos() : null;
  const nHistory = b.readUInt16LE(o);
  o += 2;
  const history: HistoryEntry[] = [];
  for (let i = 0; i < nHistory; i++) {
    const h = pos();
    history.push({ epoch: h.epoch, startSeq: h.seq });
  }
  let confirmed: PartitionMeta['confirmed'] = null;
  if (flags & HAS_CONFIRMED) {
    const epoch = b.readDoubleLE(o) as Epoch;
    o += 8;
    const n = b[o++]!;
    const learners: NodeId[] = [];
    for (let i = 0; i < n; i++) learners.push(id() as NodeId);
    confirmed = { epoch, learners };
  }
  const nClock = b[o++]!;
  const purgedClock: [string, number][] = [];
  for (let i = 0; i < nClock; i++) {
    const n = id();
    purgedClock.push([n, b.readDoubleLE(o)]);
    o += 8;
  }
  const purgedUpTo = pos();
  const copyTarget = flags & HAS_COPY_TARGET ? pos() : null;
  // readDoubleLE/readUInt16LE throw past the end; trailing bytes mean a different layout.
  if (o !== b.length) throw new Error(`partition meta has ${b.length - o} unexpected trailing bytes`);
  return { pos: p, history, confirmed, purgedClock: purgedClock as unknown as VectorClock, purgedUpTo, copyTarget };
}
