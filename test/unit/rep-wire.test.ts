// The wire checks of replication messages: what a peer may send, and the precise error
// for what it may not. Records are checked by hand (checkRecord), the rest by zod.

import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import type { RepMessage } from '../../src/core/replication.js';
import fc from 'fast-check';
import { replicationLimits } from '../../src/core/replication.js';
import { checkRecord, encodeRepMessage, parseRepMessage, parseRepMessageBySchema, repValueBytesMax } from '../../src/net/rep-wire.js';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
/** Through MessagePack and back, as a batch travels between nodes. */
const viaMsgpack = (m: unknown): unknown => unpackr.unpack(packr.pack(m));

const good = { value: new Uint8Array([1, 2, 3]), clock: [['n1', 2], ['n2', 1]], epoch: 3, seq: 7 };
const append = (record: unknown): unknown => ({
  type: 'rep-append',
  from: 'n1',
  clusterName: 'c',
  epoch: 3,
  partition: 5,
  session: 1,
  entries: [{ seq: 7, key: 'k', record }],
});

describe('replication wire: records', () => {
  it('accepts a record as MessagePack carries it, and a tombstone with its deletedAtMs', () => {
    const r = checkRecord(viaMsgpack(good));
    expect(typeof r).toBe('object');
    if (typeof r === 'string') return;
    expect([...r.value!]).toEqual([1, 2, 3]);
    expect(r.clock).toEqual([['n1', 2], ['n2', 1]]);
    expect([r.epoch, r.seq, r.deletedAtMs]).toEqual([3, 7, undefined]);
    expect(checkRecord({ value: null, clock: [], epoch: 1, seq: 0, deletedAtMs: 1_700_000_000_000 })).toEqual({
      value: null,
      clock: [],
      epoch: 1,
      seq: 0,
      deletedAtMs: 1_700_000_000_000,
    });
  });

  it('decodes a base64 value (the JSON form of a batch)', () => {
    const wire = JSON.parse(JSON.stringify(encodeRepMessage(append(good) as RepMessage))) as { entries: { record: unknown }[] };
    expect(typeof (wire.entries[0]!.record as { value: unknown }).value).toBe('string');
    const parsed = parseRepMessage(wire);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok || parsed.msg.type !== 'rep-append') return;
    expect([...parsed.msg.entries[0]!.record.value!]).toEqual([1, 2, 3]);
  });

  it.each([
    ['not an object', 'x', 'expected a record object'],
    ['an array', [], 'expected a record object'],
    ['an unknown field', { ...good, extra: 1 }, 'unrecognized key "extra"'],
    ['a missing value', { clock: [], epoch: 1, seq: 0 }, 'value: expected bytes, a base64 string or null'],
    ['a number value', { ...good, value: 5 }, 'value: expected bytes, a base64 string or null'],
    ['a value that is not base64', { ...good, value: 'a b' }, 'value: not base64'],
    ['a clock that is not an array', { ...good, clock: {} }, 'clock: expected an array'],
    ['a clock of 65 entries', { ...good, clock: Array.from({ length: 65 }, (_, i) => [`n${i}`, 1]) }, 'clock: more than 64 entries'],
    ['a clock entry of three', { ...good, clock: [['n1', 1, 2]] }, 'clock: expected [nodeId, counter] pairs'],
    ['a bad node id', { ...good, clock: [['N 1', 1]] }, 'clock: bad node id'],
    ['a zero counter', { ...good, clock: [['n1', 0]] }, 'clock: a counter must be an integer >= 1'],
    ['a fractional counter', { ...good, clock: [['n1', 1.5]] }, 'clock: a counter must be an integer >= 1'],
    ['epoch 0', { ...good, epoch: 0 }, 'epoch: expected an integer >= 1'],
    ['a negative seq', { ...good, seq: -1 }, 'seq: expected an integer >= 0'],
    ['a string seq', { ...good, seq: '7' }, 'seq: expected an integer >= 0'],
    ['a negative deletedAtMs', { ...good, value: null, deletedAtMs: -5 }, 'deletedAtMs: expected an integer >= 0'],
  ])('refuses %s with a precise message', (_what, record, message) => {
    expect(checkRecord(record)).toBe(message);
    // In a message, the error names the path to the field at fault, as the schema's errors do.
    const path = /^(value|clock|epoch|seq|deletedAtMs): /.test(message) ? `entries.0.record.${message}` : `entries.0.record: ${message}`;
    expect(parseRepMessage(append(record))).toEqual({ ok: false, error: path });
  });

  it('refuses a value over the wire limit without decoding it', () => {
    const big = { byteLength: repValueBytesMax + 1 };
    Object.setPrototypeOf(big, Uint8Array.prototype);
    expect(checkRecord({ ...good, value: big })).toBe(`value: over ${repValueBytesMax} bytes`);
    expect(checkRecord({ ...good, value: 'A'.repeat(Math.ceil(repValueBytesMax / 3) * 4 + 4) })).toBe(`value: over ${repValueBytesMax} bytes`);
  });

  it('checks the records of copy chunks and anti-entropy pushes too', () => {
    const chunk = {
      type: 'rep-copy-chunk',
      from: 'n1',
      clusterName: 'c',
      epoch: 3,
      partition: 5,
      session: 1,
      mode: 'full',
      fromSeq: 0,
      after: null,
      records: [['a', good], ['b', { ...good, seq: -1 }]],
      next: null,
      pos: { epoch: 3, seq: 7 },
      history: [{ epoch: 3, startSeq: 1 }],
      purgedClock: [],
      purgedUpTo: { epoch: 0, seq: 0 },
    };
    expect(parseRepMessage(viaMsgpack(chunk))).toEqual({ ok: false, error: 'records.1.1.seq: expected an integer >= 0' });
    const fixed = { ...chunk, records: [['a', good]] };
    expect(parseRepMessage(viaMsgpack(fixed)).ok).toBe(true);
  });
});

describe('replication wire: the hand checks of rep-append and rep-ack agree with the schema', () => {
  const ack = { type: 'rep-ack', from: 'n2', clusterName: 'c', epoch: 3, partition: 5, session: 1, acked: 7, caughtUp: true, resync: false, copying: false };
  const twoEntries = {
    ...(append(good) as Record<string, unknown>),
    entries: [
      { seq: 7, key: 'k', record: good },
      { seq: 8, key: 'k2', record: { value: null, clock: [['n1', 3]], epoch: 3, seq: 8, deletedAtMs: 5 } },
    ],
  };
  const odd = [undefined, null, -1, 0, 1, 1.5, 2 ** 21 + 1, 2 ** 32, 2 ** 53, Number.NaN, '', 'x', 'N1', 'c'.repeat(65), 'k'.repeat(replicationLimits.keyLengthMax + 1), true, [], {}, [1], new Uint8Array(1)];
  const fields = ['type', 'from', 'clusterName', 'epoch', 'partition', 'session', 'entries', 'acked', 'caughtUp', 'resync', 'copying', 'extra', '__proto__'];
  const entryFields = ['seq', 'key', 'record', 'extra'];

  type Mutation = { at: 'message' | 'entry'; field: string; value: number };
  const mutate = (base: Record<string, unknown>, muts: Mutation[]): unknown => {
    const m = viaMsgpack(base) as Record<string, unknown>;
    for (const { at, field, value } of muts) {
      const first: unknown = Array.isArray(m.entries) ? m.entries[0] : undefined;
      const target = at === 'entry' && typeof first === 'object' && first !== null ? (first as Record<string, unknown>) : m;
      const v = odd[value % odd.length];
      if (v === undefined) delete target[field];
      else Object.defineProperty(target, field, { value: v, enumerable: true, configurable: true, writable: true });
    }
    return m;
  };

  it('accepts and refuses the same messages, with the same errors', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Record<string, unknown>>(ack, twoEntries, append(good) as Record<string, unknown>, { ...(append(good) as Record<string, unknown>), entries: [] }),
        fc.array(
          fc.record({ at: fc.constantFrom<'message' | 'entry'>('message', 'entry'), field: fc.constantFrom(...fields, ...entryFields), value: fc.nat() }),
          { maxLength: 3 },
        ),
        (base, muts) => {
          const raw = mutate(base, muts);
          const fast = parseRepMessage(raw);
          const slow = parseRepMessageBySchema(mutate(base, muts));
          expect(fast.ok).toBe(slow.ok);
          if (!fast.ok && !slow.ok) expect(fast.error).toBe(slow.error);
          if (fast.ok && slow.ok) expect(viaMsgpack(fast.msg)).toEqual(viaMsgpack(slow.msg));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('refuses an append one entry over the batch limit, and a well-formed ack passes', () => {
    const entries = Array.from({ length: replicationLimits.replicationBatchMax + 1 }, (_, i) => ({ seq: i, key: `k${i}`, record: good }));
    const r = parseRepMessage(viaMsgpack({ ...(append(good) as Record<string, unknown>), entries }));
    expect(r.ok).toBe(false);
    expect(parseRepMessage(viaMsgpack(ack))).toEqual({ ok: true, msg: ack });
  });
});
