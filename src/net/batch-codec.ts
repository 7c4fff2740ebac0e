// The binary form of one batch of protocol messages on a peer stream (ringkv-peer/2,
// peer-stream.ts). The two messages that every replicated write sends, `rep-append` and
// `rep-ack`, get a fixed layout; every other message travels as its MessagePack map.
// A MessagePack map per message cost about 1.4 us to pack and unpack for an append (field
// names included), about 6 % of a node's main thread under a put load, and walking the
// batch's schema another 1.4 % (docs/design.md, departure 14).
//
//   u8 2 (this layout) | u8 n + sender id (ASCII) | u16 n + cluster name (UTF-8) | u32 count
//   then per message a u8 tag:
//     0  u32 n + the message as a MessagePack map
//     1  rep-append: f64 epoch | u32 partition | u32 session | u32 entries, then per entry
//        f64 seq | u16 n + key (UTF-8) | u32 n + record (record-codec.ts layout)
//     2  rep-ack: f64 epoch | u32 partition | u32 session | f64 acked | u8 flags
//        (1 caughtUp, 2 resync, 4 copying)
//   integers little-endian; f64 for JavaScript numbers up to 2^53.
//
// A compact message takes its `from` and `clusterName` from the batch. Decoding checks
// only the layout (lengths, tags, bytes left); what the fields mean (ranges, ids, clocks)
// is checked afterwards for every message alike (rep-wire.ts parseRepMessage), whichever
// way it travelled.

import { Packr, Unpackr } from 'msgpackr';
import type { KvRecord } from '../core/replication.js';
import { NODE_ID_PATTERN } from '../core/types.js';
import { messagesPerBatchMax } from './wire.js';
import { hasExactly } from './rep-wire.js';
import { decodeRecordChecked, recordBytes, writeRecord } from '../store/record-codec.js';

export const BATCH_FORMAT = 2;
const TAG_PACKED = 0;
const TAG_APPEND = 1;
const TAG_ACK = 2;
const U32_MAX = 0xffffffff;

/** Plain MessagePack maps (no msgpackr record extension), so any MessagePack reader can decode them. */
export const peerPackr = new Packr({ useRecords: false });
/** Reads maps as plain objects (a `__proto__` key is renamed, never assigned). */
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export class BatchFormatError extends Error {}

/**
 * A batch read from a frame: a sender that is a node id and 1 to messagesPerBatchMax
 * messages, the rules of the batch schema (wire.ts), so it need not be walked again.
 */
export class DecodedBatch {
  constructor(
    readonly from: string,
    readonly messages: unknown[],
  ) {}
}

interface AppendLike {
  type: 'rep-append';
  from: string;
  clusterName: string;
  epoch: number;
  partition: number;
  session: number;
  entries: { seq: number; key: string; record: KvRecord }[];
}

interface AckLike {
  type: 'rep-ack';
  from: string;
  clusterName: string;
  epoch: number;
  partition: number;
  session: number;
  acked: number;
  caughtUp: boolean;
  resync: boolean;
  copying: boolean;
}

// Exactly these keys, so that the compact form loses nothing.
const appendKeys = new Set(['type', 'partition', 'session', 'entries', 'from', 'clusterName', 'epoch']);
const entryKeys = new Set(['seq', 'key', 'record']);
const recordKeys = new Set(['value', 'clock', 'epoch', 'seq']);
const deletedRecordKeys = new Set([...recordKeys, 'deletedAtMs']);
const ackKeys = new Set(['type', 'partition', 'session', 'acked', 'caughtUp', 'resync', 'copying', 'from', 'clusterName', 'epoch']);
const isU32 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= U32_MAX;
const isF64Int = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n);

function compactAppend(m: unknown, from: string, clusterName: string): m is AppendLike {
  const a = m as AppendLike;
  if (a.type !== 'rep-append' || a.from !== from || a.clusterName !== clusterName || !hasExactly(a, appendKeys)) return false;
  if (!isF64Int(a.epoch) || !isU32(a.partition) || !isU32(a.session) || !Array.isArray(a.entries) || a.entries.length > U32_MAX) return false;
  for (const e of a.entries) {
    if (typeof e !== 'object' || e === null || !hasExactly(e, entryKeys) || !isF64Int(e.seq) || typeof e.key !== 'string' || e.key.length > 0xffff / 3) return false;
    if (!fitsRecordLayout(e.record)) return false;
  }
  return true;
}

/**
 * A record the layout carries exactly: these fields and no others, integers, a clock of at
 * most 255 node ids. Anything else goes as MessagePack, and the receiver's checks say what
 * is wrong with it.
 */
function fitsRecordLayout(r: KvRecord): boolean {
  if (typeof r !== 'object' || r === null) return false;
  if (!hasExactly(r, r.deletedAtMs === undefined ? recordKeys : deletedRecordKeys)) return false;
  if (!isF64Int(r.epoch) || !isF64Int(r.seq) || (r.deletedAtMs !== undefined && !isF64Int(r.deletedAtMs))) return false;
  if (!(r.value === null || r.value instanceof Uint8Array) || !Array.isArray(r.clock) || r.clock.length > 255) return false;
  for (let i = 0; i < r.clock.length; i++) {
    const e = r.clock[i] as unknown;
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !NODE_ID_PATTERN.test(e[0]) || typeof e[1] !== 'number') return false;
  }
  return true;
}

function compactAck(m: unknown, from: string, clusterName: string): m is AckLike {
  const a = m as AckLike;
  return (
    a.type === 'rep-ack' &&
    a.from === from &&
    a.clusterName === clusterName &&
    hasExactly(a, ackKeys) &&
    isF64Int(a.epoch) &&
    isU32(a.partition) &&
    isU32(a.session) &&
    isF64Int(a.acked) &&
    typeof a.caughtUp === 'boolean' &&
    typeof a.resync === 'boolean' &&
    typeof a.copying === 'boolean'
  );
}

/** One batch as a frame payload. `from` is a node id (ASCII); `clusterName` is this cluster's. */
export function encodeBatch(from: string, clusterName: string, messages: readonly unknown[]): Buffer {
  // First pass: each message's form and size; second: one buffer, written in place.
  const kinds = new Uint8Array(messages.length);
  const packed: (Buffer | null)[] = new Array(messages.length).fill(null);
  const nameBytes = Buffer.byteLength(clusterName);
  let size = 1 + 1 + from.length + 2 + nameBytes + 4;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    if (compactAppend(m, from, clusterName)) {
      kinds[i] = TAG_APPEND;
      size += 21;
      for (const e of m.entries) size += 14 + Buffer.byteLength(e.key) + recordBytes(e.record);
    } else if (compactAck(m, from, clusterName)) {
      kinds[i] = TAG_ACK;
      size += 26;
    } else {
      kinds[i] = TAG_PACKED;
      packed[i] = peerPackr.pack(m);
      size += 5 + packed[i]!.length;
    }
  }
  const b = Buffer.allocUnsafe(size);
  let o = 0;
  b[o++] = BATCH_FORMAT;
  b[o++] = from.length;
  o += b.write(from, o, 'latin1');
  b.writeUInt16LE(nameBytes, o);
  o += 2;
  o += b.write(clusterName, o, 'utf8');
  o = b.writeUInt32LE(messages.length, o);
  for (let i = 0; i < messages.length; i++) {
    b[o++] = kinds[i]!;
    if (kinds[i] === TAG_APPEND) {
      const m = messages[i] as AppendLike;
      o = b.writeDoubleLE(m.epoch, o);
      o = b.writeUInt32LE(m.partition, o);
      o = b.writeUInt32LE(m.session, o);
      o = b.writeUInt32LE(m.entries.length, o);
      for (const e of m.entries) {
        o = b.writeDoubleLE(e.seq, o);
        const k = b.write(e.key, o + 2, 'utf8');
        b.writeUInt16LE(k, o);
        o += 2 + k;
        const lengthAt = o;
        o = writeRecord(b, o + 4, e.record);
        b.writeUInt32LE(o - lengthAt - 4, lengthAt);
      }
    } else if (kinds[i] === TAG_ACK) {
      const m = messages[i] as AckLike;
      o = b.writeDoubleLE(m.epoch, o);
      o = b.writeUInt32LE(m.partition, o);
      o = b.writeUInt32LE(m.session, o);
      o = b.writeDoubleLE(m.acked, o);
      b[o++] = (m.caughtUp ? 1 : 0) | (m.resync ? 2 : 0) | (m.copying ? 4 : 0);
    } else {
      const body = packed[i]!;
      o = b.writeUInt32LE(body.length, o);
      o += body.copy(b, o);
    }
  }
  return b;
}

/** The batch in a frame payload: its sender and its messages as plain objects, not yet checked. */
export function decodeBatch(b: Buffer): DecodedBatch {
  let o = 0;
  let at = 'batch';
  const need = (n: number): number => {
    const p = o;
    if (p + n > b.length) throw new BatchFormatError(`${at}: truncated at byte ${p}`);
    o = p + n;
    return p;
  };
  const u8 = (): number => b[need(1)]!;
  const u32 = (): number => b.readUInt32LE(need(4));
  const f64 = (): number => b.readDoubleLE(need(8));
  const str = (n: number, encoding: 'latin1' | 'utf8'): string => {
    const p = need(n);
    return b.toString(encoding, p, p + n);
  };
  const format = u8();
  if (format !== BATCH_FORMAT) throw new BatchFormatError(`batch layout ${format}, not ${BATCH_FORMAT}`);
  at = 'from';
  const from = str(u8(), 'latin1');
  at = 'clusterName';
  const clusterName = str(b.readUInt16LE(need(2)), 'utf8');
  if (!NODE_ID_PATTERN.test(from)) throw new BatchFormatError(`from: ${JSON.stringify(from)} is not a node id`);
  at = 'count';
  const count = u32();
  if (count < 1 || count > messagesPerBatchMax) throw new BatchFormatError(`count: ${count} messages (1 to ${messagesPerBatchMax})`);
  // Every message takes at least one byte: a count beyond what is left is a lie.
  if (count > b.length - o) throw new BatchFormatError(`count ${count} with ${b.length - o} bytes left`);
  const messages: unknown[] = new Array(count);
  for (let i = 0; i < count; i++) {
    at = 'message';
    const tag = u8();
    if (tag === TAG_APPEND) {
      const epoch = f64();
      const partition = u32();
      const session = u32();
      const n = u32();
      if (n > b.length - o) throw new BatchFormatError(`messages.${i}: ${n} entries with ${b.length - o} bytes left`);
      const entries: { seq: number; key: string; record: KvRecord }[] = new Array(n);
      for (let j = 0; j < n; j++) {
        at = 'entry';
        const seq = f64();
        const key = str(b.readUInt16LE(need(2)), 'utf8');
        const len = u32();
        const start = need(len);
        let record: KvRecord;
        try {
          record = decodeRecordChecked(b, start, start + len) as KvRecord;
        } catch (e) {
          throw new BatchFormatError(`messages.${i}.entries.${j}.record: ${(e as Error).message}`);
        }
        entries[j] = { seq, key, record };
      }
      messages[i] = { type: 'rep-append', partition, session, entries, from, clusterName, epoch };
    } else if (tag === TAG_ACK) {
      const epoch = f64();
      const partition = u32();
      const session = u32();
      const acked = f64();
      const flags = u8();
      if ((flags & ~7) !== 0) throw new BatchFormatError(`messages.${i}: unknown ack flags ${flags}`);
      messages[i] = { type: 'rep-ack', partition, session, acked, caughtUp: (flags & 1) !== 0, resync: (flags & 2) !== 0, copying: (flags & 4) !== 0, from, clusterName, epoch };
    } else if (tag === TAG_PACKED) {
      const len = u32();
      const start = need(len);
      try {
        messages[i] = unpackr.unpack(b.subarray(start, start + len));
      } catch (e) {
        throw new BatchFormatError(`messages.${i}: malformed MessagePack: ${(e as Error).message}`);
      }
    } else {
      throw new BatchFormatError(`messages.${i}: unknown tag ${tag}`);
    }
  }
  if (o !== b.length) throw new BatchFormatError(`${b.length - o} bytes after the last message`);
  return new DecodedBatch(from, messages);
}
