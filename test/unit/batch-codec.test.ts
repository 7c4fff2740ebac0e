// The binary batch layout of the peer stream (src/net/batch-codec.ts): every batch decodes
// to the messages that were encoded, whichever layout each message took, and bytes that
// are not a batch fail with a BatchFormatError, never anything else.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BatchFormatError, decodeBatch, DecodedBatch, encodeBatch } from '../../src/net/batch-codec.js';
import { parseRepMessage } from '../../src/net/rep-wire.js';

const nodeId = fc.stringMatching(/^[a-z0-9-]{1,32}$/);
const count = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const clock = fc.uniqueArray(fc.tuple(nodeId, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })), { selector: ([id]) => id, maxLength: 6 });
const record = fc
  .record({
    value: fc.option(fc.uint8Array({ maxLength: 200 }), { nil: null }),
    clock,
    epoch: count,
    seq: count,
    deletedAtMs: fc.option(count, { nil: undefined }),
  })
  .map(({ deletedAtMs, ...r }) => (deletedAtMs === undefined ? r : { ...r, deletedAtMs }));
const key = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 });

/** Messages as the core sends them; `from` and `clusterName` are filled in per batch. */
const body = fc.oneof(
  fc.record({ type: fc.constant('rep-append'), partition: fc.nat(1 << 21), session: fc.nat(0xffffffff), entries: fc.array(fc.record({ seq: count, key, record }), { maxLength: 5 }), epoch: count }),
  fc.record({ type: fc.constant('rep-ack'), partition: fc.nat(1 << 21), session: fc.nat(0xffffffff), acked: count, caughtUp: fc.boolean(), resync: fc.boolean(), copying: fc.boolean(), epoch: count }),
  fc.record({ type: fc.constant('heartbeat'), epoch: count, ringChecksum: fc.string(), leader: fc.option(nodeId, { nil: null }) }),
  // Anything else the core might send, including an append of another shape.
  fc.record({ type: fc.constant('rep-append'), partition: fc.nat(1 << 21), session: fc.nat(), entries: fc.constant([]), epoch: count, extra: fc.nat() }),
);

/** Byte values as plain arrays: a decoded value is a Buffer, an encoded one any Uint8Array. */
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? { bytes: [...x] } : x && typeof x === 'object' && (x as { type?: unknown }).type === 'Buffer' ? { bytes: (x as { data: number[] }).data } : x)));

describe('peer batch codec', () => {
  it('decodes every batch to the messages encoded (property)', () => {
    fc.assert(
      fc.property(nodeId, fc.string({ minLength: 1, maxLength: 64 }), fc.array(body, { minLength: 1, maxLength: 20 }), fc.boolean(), (from, clusterName, bodies, foreign) => {
        // A message from another sender or cluster keeps its own fields (MessagePack form).
        const messages = bodies.map((b, i) => ({ ...b, from: foreign && i === 0 ? `${from}x` : from, clusterName }));
        const batch = decodeBatch(encodeBatch(from, clusterName, messages));
        expect(batch).toBeInstanceOf(DecodedBatch);
        expect(batch.from).toBe(from);
        expect(plain(batch.messages)).toEqual(plain(messages));
      }),
      { numRuns: 500 },
    );
  });

  it('takes the compact layouts for appends and acks: fewer bytes than MessagePack, and the message check accepts them', () => {
    const append = { type: 'rep-append', partition: 7, session: 3, entries: [{ seq: 12, key: 'bench/1', record: { value: new Uint8Array(100), clock: [['n1', 12]], epoch: 2, seq: 12 } }], from: 'n1', clusterName: 'local', epoch: 2 };
    const ack = { type: 'rep-ack', partition: 7, session: 3, acked: 12, caughtUp: true, resync: false, copying: false, from: 'n2', clusterName: 'local', epoch: 2 };
    expect(encodeBatch('n1', 'local', [append]).length).toBeLessThan(190);
    expect(encodeBatch('n2', 'local', [ack]).length).toBeLessThan(50);
    for (const m of [...decodeBatch(encodeBatch('n1', 'local', [append])).messages, ...decodeBatch(encodeBatch('n2', 'local', [ack])).messages]) {
      expect(parseRepMessage(m)).toMatchObject({ ok: true });
    }
  });

  it('sends a message the layout cannot carry exactly as MessagePack, for the receiver to refuse with the precise reason', () => {
    const base = { type: 'rep-append', partition: 1, session: 1, from: 'n1', clusterName: 'local', epoch: 1 };
    const rec = { value: new Uint8Array([1]), clock: [['n1', 1]], epoch: 1, seq: 1 };
    const odd = [
      { ...base, entries: [{ seq: 1, key: 'a', record: { ...rec, clock: [['N 1', 1]] } }] },
      { ...base, entries: [{ seq: 1, key: 'a', record: { ...rec, extra: true } }] },
      { ...base, entries: [{ seq: 1, key: 'a', record: { ...rec, clock: Array.from({ length: 300 }, (_, i) => [`n${i}`, 1]) } }] },
    ];
    const decoded = decodeBatch(encodeBatch('n1', 'local', odd)).messages;
    expect(plain(decoded)).toEqual(plain(odd));
    expect(decoded.map((m) => parseRepMessage(m))).toEqual([
      { ok: false, error: 'entries.0.record.clock: bad node id' },
      { ok: false, error: 'entries.0.record: unrecognized key "extra"' },
      { ok: false, error: expect.stringMatching(/^entries\.0\.record\.clock/) },
    ]);
  });

  it('refuses any damaged frame with a BatchFormatError (or decodes it to messages the checks then judge)', () => {
    const frame = encodeBatch('n1', 'local', [
      { type: 'rep-append', partition: 1, session: 1, entries: [{ seq: 1, key: 'a', record: { value: new Uint8Array([1, 2]), clock: [['n1', 1]], epoch: 1, seq: 1 } }], from: 'n1', clusterName: 'local', epoch: 1 },
      { type: 'rep-ack', partition: 1, session: 1, acked: 1, caughtUp: true, resync: false, copying: false, from: 'n1', clusterName: 'local', epoch: 1 },
      { type: 'heartbeat', from: 'n1', clusterName: 'local', epoch: 1, ringChecksum: '', leader: null },
    ]);
    fc.assert(
      fc.property(fc.nat(frame.length - 1), fc.nat(255), fc.nat(frame.length), (at, byte, cut) => {
        const damaged = Buffer.from(frame);
        damaged[at] = byte;
        for (const b of [damaged, frame.subarray(0, cut)]) {
          try {
            decodeBatch(b);
          } catch (e) {
            expect(e).toBeInstanceOf(BatchFormatError);
          }
        }
      }),
      { numRuns: 3000 },
    );
    expect(() => decodeBatch(frame.subarray(0, frame.length - 1))).toThrow(BatchFormatError);
  });
});
