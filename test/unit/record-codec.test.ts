// The lmdb engine's record layout (store/record-codec.ts): every record round-trips, the
// header alone tells a tombstone, and records written by earlier builds (lmdb-js's
// MessagePack) are still read, from a real data directory.
import fc from 'fast-check';
import { open } from 'lmdb';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { partitionId } from '../../src/core/types.js';
import type { VectorClock } from '../../src/core/vector-clock.js';
import { LmdbStore, lmdbPageSize } from '../../src/store/lmdb-store.js';
import { decodeRecord, encodeRecord, isLiveRecord } from '../../src/store/record-codec.js';
import type { StoredRecord } from '../../src/store/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const nodeId = fc.stringMatching(/^[a-z0-9-]{1,32}$/);
const clockArb = fc
  .uniqueArray(fc.tuple(nodeId, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })), { selector: ([id]) => id, maxLength: 12 })
  .map((es) => es.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)) as unknown as VectorClock);
const recordArb: fc.Arbitrary<StoredRecord> = fc
  .record({
    value: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: null }),
    clock: clockArb,
    pos: fc.option(fc.tuple(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })), { nil: undefined }),
    deletedAtMs: fc.option(fc.integer({ min: 0, max: 2 ** 45 }), { nil: undefined }),
  })
  .map(({ value, clock, pos, deletedAtMs }) => {
    const r: StoredRecord = pos === undefined ? { value, clock } : { value, clock, epoch: pos[0], seq: pos[1] };
    return deletedAtMs === undefined ? r : { ...r, deletedAtMs };
  });

const plain = (r: StoredRecord) => ({ ...r, value: r.value === null ? null : [...r.value], clock: r.clock.map(([id, k]) => [id, k]) });

describe('record codec', () => {
  it('round-trips every record, and the header tells a live record from a tombstone', () => {
    fc.assert(
      fc.property(recordArb, (r) => {
        const b = encodeRecord(r);
        expect(plain(decodeRecord(b))).toEqual(plain(r));
        expect(isLiveRecord(b)).toBe(r.value !== null);
      }),
      { numRuns: 2000 },
    );
  });

  it('copies the value out of the buffer it decodes (lmdb reuses its read buffer)', () => {
    const b = encodeRecord({ value: new Uint8Array([1, 2, 3]), clock: [['n1', 7]] as unknown as VectorClock, epoch: 2, seq: 9 });
    const r = decodeRecord(b);
    b.fill(0);
    expect([...r.value!]).toEqual([1, 2, 3]);
    expect(r.clock).toEqual([['n1', 7]]);
  });

  it('reads a data directory whose records an earlier build wrote as MessagePack, and an overwritten one in the new layout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ringkv-codec-'));
    dirs.push(dir);
    // The earlier engine: lmdb-js's default encoding, same names, same key layout.
    const old = open({ path: dir, maxDbs: 4, pageSize: lmdbPageSize, cache: false });
    const oldKv = old.openDB<unknown, [number, string]>({ name: 'kv', cache: false });
    await oldKv.put([3, 'live'], { v: Buffer.from('hello'), c: [['n1', 4], ['n2', 1]], e: 2, s: 17 });
    await oldKv.put([3, 'gone'], { v: null, c: [['n1', 5]], e: 2, s: 18, d: 1700000000000 });
    await oldKv.put([4, 'pre-replication'], { v: Buffer.from('x'), c: [['n3', 1]] });
    await old.close();

    const s = new LmdbStore({ path: dir, fsync: false, mapSizeBytes: 64 * 1024 * 1024 });
    try {
      expect(s.countKeys()).toBe(2);
      const live = s.get(partitionId(3), 'live')!;
      expect(Buffer.from(live.value!).toString()).toBe('hello');
      expect(live).toMatchObject({ clock: [['n1', 4], ['n2', 1]], epoch: 2, seq: 17 });
      expect(s.get(partitionId(3), 'gone')).toEqual({ value: null, clock: [['n1', 5]], epoch: 2, seq: 18, deletedAtMs: 1700000000000 });
      expect(s.get(partitionId(4), 'pre-replication')).toMatchObject({ clock: [['n3', 1]] });
      expect(s.scan(partitionId(3), { prefix: '', after: '', limit: 10, includeTombstones: true }).map((e) => e.key)).toEqual(['gone', 'live']);
      expect(s.scan(partitionId(3), { prefix: '', after: '', limit: 10 }).map((e) => e.key)).toEqual(['live']);
      // Overwriting an old record counts it right and stores the new layout.
      await s.write([{ kind: 'put', partition: partitionId(3), key: 'gone', record: { value: Buffer.from('back'), clock: [['n1', 6]] as unknown as VectorClock, epoch: 3, seq: 1 } }]);
      expect(s.countKeys()).toBe(3);
      expect(Buffer.from(s.get(partitionId(3), 'gone')!.value!).toString()).toBe('back');
    } finally {
      await s.close();
    }
  });
});
