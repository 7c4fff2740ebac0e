// Wire form of the replication messages (rep-*, src/core/replication.ts). zod checks the
// SHAPE (types, sizes, no extra fields); the core checks the MEANING (epochs, sessions).
//
// Values are bytes (null for a tombstone): raw bytes in the MessagePack batches that
// peer-transport.ts sends, or a base64 string in a JSON batch (`encodeRepMessage` gives a
// message's JSON form). Clocks are arrays of [nodeId, counter] pairs.

import { z } from 'zod';
import type { KvRecord, RepMessage } from '../core/replication.js';
import { replicationLimits } from '../core/replication.js';
import { antiEntropyLimits } from '../core/anti-entropy.js';
import { NODE_ID_PATTERN, type Epoch, type NodeId, type PartitionId, type Seq } from '../core/types.js';
import type { VectorClock } from '../core/vector-clock.js';

/** Largest value a record may carry on the wire (the config's valueBytesMax is at most 64 MiB). */
export const repValueBytesMax = 64 * 1024 ** 2;
const base64Max = Math.ceil(repValueBytesMax / 3) * 4;

const nodeId = z.string().regex(NODE_ID_PATTERN).transform((s) => s as NodeId);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const seq = count.transform((n) => n as Seq);
const epochAny = count.transform((n) => n as Epoch); // 0 = the empty position
const epoch = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).transform((n) => n as Epoch);
const u32 = z.number().int().min(0).max(0xffffffff);
const key = z.string().min(1).max(replicationLimits.keyLengthMax);

const clock = z
  .array(z.tuple([nodeId, z.number().int().min(1).max(Number.MAX_SAFE_INTEGER)]))
  .max(64)
  .transform((c) => c as unknown as VectorClock);

const recordFields = new Set(['value', 'clock', 'epoch', 'seq', 'deletedAtMs']);
const base64Pattern = /^[A-Za-z0-9+/]*={0,2}$/;
const isCount = (n: unknown, min: number): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= min;

/**
 * One record, checked by hand: it is the bulk of every append and copy chunk, and a
 * schema walk costs several objects per record (a chunk holds up to copyChunkMax). The
 * rules are those of the other schemas here: a plain object with exactly these fields,
 * a value of raw bytes (MessagePack) or base64 (JSON) or null, a clock of at most 64
 * [nodeId, counter >= 1] pairs, epoch >= 1, seq >= 0, deletedAtMs >= 0 if present.
 * Returns the record (a base64 value decoded) or what is wrong with it.
 */
export function checkRecord(v: unknown): KvRecord | string {
  const r = checkRecordAt(v);
  return Array.isArray(r) ? (r[0] === null ? r[1] : `${r[0]}: ${r[1]}`) : r;
}

/** checkRecord's result: the record, or [the field at fault (null: the record itself), what is wrong]. */
function checkRecordAt(v: unknown): KvRecord | [string | null, string] {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return [null, 'expected a record object'];
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!recordFields.has(k)) return [null, `unrecognized key ${JSON.stringify(k)}`];
  let value: Uint8Array | null;
  const raw = o['value'];
  if (raw === null) value = null;
  else if (raw instanceof Uint8Array) {
    if (raw.byteLength > repValueBytesMax) return ['value', `over ${repValueBytesMax} bytes`];
    value = raw;
  } else if (typeof raw === 'string') {
    if (raw.length > base64Max) return ['value', `over ${repValueBytesMax} bytes`];
    if (!base64Pattern.test(raw)) return ['value', 'not base64'];
    value = new Uint8Array(Buffer.from(raw, 'base64'));
  } else return ['value', 'expected bytes, a base64 string or null'];
  const c = o['clock'];
  if (!Array.isArray(c)) return ['clock', 'expected an array'];
  if (c.length > 64) return ['clock', 'more than 64 entries'];
  for (const e of c as unknown[]) {
    if (!Array.isArray(e) || e.length !== 2) return ['clock', 'expected [nodeId, counter] pairs'];
    if (typeof e[0] !== 'string' || !NODE_ID_PATTERN.test(e[0])) return ['clock', 'bad node id'];
    if (!isCount(e[1], 1)) return ['clock', 'a counter must be an integer >= 1'];
  }
  const { epoch, seq, deletedAtMs } = o;
  if (!isCount(epoch, 1)) return ['epoch', 'expected an integer >= 1'];
  if (!isCount(seq, 0)) return ['seq', 'expected an integer >= 0'];
  if (deletedAtMs !== undefined && !isCount(deletedAtMs, 0)) return ['deletedAtMs', 'expected an integer >= 0'];
  const out = { value, clock: c as unknown as VectorClock, epoch: epoch as Epoch, seq: seq as Seq };
  return deletedAtMs === undefined ? out : { ...out, deletedAtMs };
}

/** Records are checked after the schema, by checkRecords (a zod walk per record costs several times more). */
const record = z.unknown();
const position = z.strictObject({ epoch: epochAny, seq });
const history = z.array(z.strictObject({ epoch, startSeq: seq })).max(replicationLimits.historyMax + 1);
const partition = z.number().int().min(0).max(1 << 21).transform((n) => n as PartitionId);

const base = { from: nodeId, clusterName: z.string().max(64), epoch };
const part = { ...base, partition, session: u32 };

export const repMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({
    ...base,
    type: z.literal('rep-heartbeat'),
    nonce: u32,
    leaseId: count,
    caughtUpEpoch: count,
    orphans: z.array(z.tuple([z.number().int().min(0).max(1 << 21), position.nullable()])).max(1 << 16),
    progress: z.strictObject({ partitions: count, confirmed: count, keys: count, bytes: count }),
  }),
  z.strictObject({ ...base, type: z.literal('rep-lease'), nonce: u32, leaseId: count }),
  z.strictObject({ ...part, type: z.literal('rep-sync') }),
  z.strictObject({ ...part, type: z.literal('rep-sync-ok'), pos: position.nullable(), history, servedIn: count.nullable(), leaseFence: count }),
  z.strictObject({
    ...part,
    type: z.literal('rep-catchup'),
    mode: z.enum(['none', 'delta', 'full']),
    fromSeq: seq,
    liveFrom: seq,
    liveFromEpoch: epochAny,
    history,
  }),
  z.strictObject({ ...part, type: z.literal('rep-copy-req'), mode: z.enum(['delta', 'full']), fromSeq: seq, after: key.nullable() }),
  z.strictObject({
    ...part,
    type: z.literal('rep-copy-chunk'),
    mode: z.enum(['delta', 'full']),
    fromSeq: seq,
    after: key.nullable(),
    records: z.array(z.tuple([key, record])).max(replicationLimits.copyChunkMax),
    next: key.nullable(),
    pos: position,
    history,
    purgedClock: clock,
    purgedUpTo: position,
  }),
  z.strictObject({
    ...part,
    type: z.literal('rep-append'),
    entries: z.array(z.strictObject({ seq, key, record })).max(replicationLimits.replicationBatchMax),
  }),
  z.strictObject({ ...part, type: z.literal('rep-ack'), acked: seq, caughtUp: z.boolean(), resync: z.boolean(), copying: z.boolean() }),
  z.strictObject({ ...part, type: z.literal('rep-confirm') }),
  z.strictObject({ ...part, type: z.literal('rep-ae-req'), round: count, after: key.nullable(), upTo: key.nullable() }),
  z.strictObject({ ...part, type: z.literal('rep-ae-digest'), round: count, count, sum: u32, overflow: z.boolean() }),
  z.strictObject({
    ...part,
    type: z.literal('rep-ae-push'),
    round: count,
    after: key.nullable(),
    upTo: key.nullable(),
    records: z.array(z.tuple([key, record])).max(antiEntropyLimits.aeScanMax),
  }),
  z.strictObject({ ...part, type: z.literal('rep-ae-back'), round: count, repaired: count, records: z.array(z.tuple([key, record])).max(antiEntropyLimits.aeScanMax) }),
]);

export type ParsedRepMessage = { ok: true; msg: RepMessage } | { ok: false; error: string };

/**
 * Checks a replication message. The two that every write sends, `rep-append` and
 * `rep-ack`, are checked by hand when they are well formed (a zod walk cost about a
 * twentieth of a node's CPU under a put load); anything else, and any message the hand
 * check does not accept, goes through the schema, which gives the precise error.
 */
export function parseRepMessage(raw: unknown): ParsedRepMessage {
  if (wellFormedAppend(raw)) {
    const error = checkRecords(raw as z.infer<typeof repMessageSchema>);
    return error === null ? { ok: true, msg: raw as unknown as RepMessage } : { ok: false, error };
  }
  if (wellFormedAck(raw)) return { ok: true, msg: raw as unknown as RepMessage };
  return parseRepMessageBySchema(raw);
}

/** parseRepMessage through the schema alone: the reference the hand checks must agree with. */
export function parseRepMessageBySchema(raw: unknown): ParsedRepMessage {
  const r = repMessageSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    return { ok: false, error: `${i.path.join('.') || 'message'}: ${i.message}` };
  }
  const error = checkRecords(r.data);
  return error === null ? { ok: true, msg: r.data as unknown as RepMessage } : { ok: false, error };
}

// Hand checks: true only for what the schema accepts (strict objects: exactly these keys).
const appendKeys = new Set(['type', 'from', 'clusterName', 'epoch', 'partition', 'session', 'entries']);
const ackKeys = new Set(['type', 'from', 'clusterName', 'epoch', 'partition', 'session', 'acked', 'caughtUp', 'resync', 'copying']);
const entryKeys = new Set(['seq', 'key', 'record']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** Exactly these own keys, and no symbols. */
export function hasExactly(o: object, keys: ReadonlySet<string>): boolean {
  let n = 0;
  for (const k in o) {
    if (!Object.hasOwn(o, k)) continue;
    if (!keys.has(k)) return false;
    n++;
  }
  return n === keys.size && Object.getOwnPropertySymbols(o).length === 0;
}

const isInt = (v: unknown, min: number, max: number): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;

function partHeaderOk(o: Record<string, unknown>): boolean {
  return (
    typeof o.from === 'string' &&
    NODE_ID_PATTERN.test(o.from) &&
    typeof o.clusterName === 'string' &&
    o.clusterName.length <= 64 &&
    isInt(o.epoch, 1, Number.MAX_SAFE_INTEGER) &&
    isInt(o.partition, 0, 1 << 21) &&
    isInt(o.session, 0, 0xffffffff)
  );
}

function wellFormedAppend(raw: unknown): boolean {
  if (!isPlainObject(raw) || raw.type !== 'rep-append' || !hasExactly(raw, appendKeys) || !partHeaderOk(raw)) return false;
  const entries = raw.entries;
  if (!Array.isArray(entries) || entries.length > replicationLimits.replicationBatchMax) return false;
  for (const e of entries as unknown[]) {
    if (!isPlainObject(e) || !hasExactly(e, entryKeys) || !isInt(e.seq, 0, Number.MAX_SAFE_INTEGER)) return false;
    if (typeof e.key !== 'string' || e.key.length < 1 || e.key.length > replicationLimits.keyLengthMax) return false;
  }
  return true;
}

function wellFormedAck(raw: unknown): boolean {
  return (
    isPlainObject(raw) &&
    raw.type === 'rep-ack' &&
    hasExactly(raw, ackKeys) &&
    partHeaderOk(raw) &&
    isInt(raw.acked, 0, Number.MAX_SAFE_INTEGER) &&
    typeof raw.caughtUp === 'boolean' &&
    typeof raw.resync === 'boolean' &&
    typeof raw.copying === 'boolean'
  );
}

/** An error in the form of the schema's: `path.to.field: what is wrong`. */
const recordError = (at: string, [field, message]: [string | null, string]): string => `${field === null ? at : `${at}.${field}`}: ${message}`;

/** Checks (and decodes) the records of a message the schema accepted, in place; the first problem, or null. */
function checkRecords(m: z.infer<typeof repMessageSchema>): string | null {
  if (m.type === 'rep-append') {
    for (let i = 0; i < m.entries.length; i++) {
      const r = checkRecordAt(m.entries[i]!.record);
      if (Array.isArray(r)) return recordError(`entries.${i}.record`, r);
      m.entries[i]!.record = r;
    }
  } else if (m.type === 'rep-copy-chunk' || m.type === 'rep-ae-push' || m.type === 'rep-ae-back') {
    for (let i = 0; i < m.records.length; i++) {
      const r = checkRecordAt(m.records[i]![1]);
      if (Array.isArray(r)) return recordError(`records.${i}.1`, r);
      m.records[i]![1] = r;
    }
  }
  return null;
}

interface WireRecord {
  value: string | null;
  clock: VectorClock;
  epoch: number;
  seq: number;
  deletedAtMs?: number;
}

function encodeRecord(r: { value: Uint8Array | null; clock: VectorClock; epoch: number; seq: number; deletedAtMs?: number }): WireRecord {
  const out: WireRecord = {
    value: r.value === null ? null : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength).toString('base64'),
    clock: r.clock,
    epoch: r.epoch,
    seq: r.seq,
  };
  if (r.deletedAtMs !== undefined) out.deletedAtMs = r.deletedAtMs;
  return out;
}

/** The JSON-safe form of a replication message (values as base64). */
export function encodeRepMessage(msg: RepMessage): unknown {
  if (msg.type === 'rep-append') return { ...msg, entries: msg.entries.map((e) => ({ seq: e.seq, key: e.key, record: encodeRecord(e.record) })) };
  if (msg.type === 'rep-copy-chunk' || msg.type === 'rep-ae-push' || msg.type === 'rep-ae-back') return { ...msg, records: msg.records.map(([k, r]) => [k, encodeRecord(r)]) };
  return msg;
}
