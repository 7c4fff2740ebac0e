// The stored layout of partition metadata (src/store/meta-codec.ts): every meta the core
// can hold round-trips, through a real LMDB store and its write-ahead log too, and metas
// that earlier builds stored as MessagePack objects still load.

import fc from 'fast-check';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PartitionMeta } from '../../src/core/partition.js';
import { emptyMeta } from '../../src/core/partition.js';
import { partitionId, type Epoch, type NodeId, type Seq } from '../../src/core/types.js';
import type { VectorClock } from '../../src/core/vector-clock.js';
import { loadPartitionMetas, partitionMetaKey, repWriteOps } from '../../src/runtime/rep-store.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { decodePartitionMeta, encodePartitionMeta, isEncodedPartitionMeta } from '../../src/store/meta-codec.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const nodeId = fc.stringMatching(/^[a-z0-9-]{1,32}$/);
const count = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const position = fc.record({ epoch: count.map((n) => n as Epoch), seq: count.map((n) => n as Seq) });
const metaArb: fc.Arbitrary<PartitionMeta> = fc.record({
  pos: fc.option(position, { nil: null }),
  history: fc.array(fc.record({ epoch: count.map((n) => n as Epoch), startSeq: count.map((n) => n as Seq) }), { maxLength: 40 }),
  confirmed: fc.option(fc.record({ epoch: count.map((n) => n as Epoch), learners: fc.uniqueArray(nodeId, { maxLength: 9 }).map((l) => l as NodeId[]) }), { nil: null }),
  purgedClock: fc
    .uniqueArray(fc.tuple(nodeId, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })), { selector: ([id]) => id, maxLength: 12 })
    .map((c) => c as unknown as VectorClock),
  purgedUpTo: position,
  copyTarget: fc.option(position, { nil: null }),
});

describe('partition meta codec', () => {
  it('round-trips every meta', () => {
    fc.assert(
      fc.property(metaArb, (m) => {
        const b = encodePartitionMeta(m);
        expect(isEncodedPartitionMeta(b)).toBe(true);
        expect(decodePartitionMeta(b)).toEqual(m);
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses bytes of another layout, truncated or with trailing bytes', () => {
    const b = encodePartitionMeta({ ...emptyMeta(), pos: { epoch: 3 as Epoch, seq: 9 as Seq } });
    expect(() => decodePartitionMeta(Buffer.from([0x81, 0xa3]))).toThrow('not a partition meta of this layout');
    expect(() => decodePartitionMeta(b.subarray(0, b.length - 1))).toThrow();
    expect(() => decodePartitionMeta(Buffer.concat([b, Buffer.from([0])]))).toThrow('1 unexpected trailing bytes');
  });

  it('is what a store write carries, and what a restart loads: through the log, after a checkpoint, and next to a meta an earlier build stored as an object', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ringkv-meta-'));
    dirs.push(dir);
    const metas = fc.sample(metaArb, 6);
    const legacy = { pos: { epoch: 2, seq: 4 }, history: [{ epoch: 1, startSeq: 1 }], confirmed: null };
    let s = new LmdbStore({ path: dir, fsync: false, mapSizeBytes: 64 * 1024 * 1024 });
    // The earlier builds' form: the object itself, MessagePack in the meta database.
    await s.write([{ kind: 'meta', key: partitionMetaKey(7), value: legacy }]);
    // This build's: the ops rep-store makes of the core's partition-meta.
    for (const [i, meta] of metas.entries()) await s.write(repWriteOps([{ kind: 'partition-meta', partition: partitionId(i), meta }]));
    const want = new Map<number, PartitionMeta>(metas.map((m, i) => [i, m]));
    want.set(7, { ...emptyMeta(), pos: { epoch: 2 as Epoch, seq: 4 as Seq }, history: [{ epoch: 1 as Epoch, startSeq: 1 as Seq }] });
    expect(loadPartitionMetas(s)).toEqual(want); // from the memory layer
    // Reopen without a clean close: the metas come back from the log's replay.
    const crashCopy = mkdtempSync(join(tmpdir(), 'ringkv-meta-copy-'));
    dirs.push(crashCopy);
    cpSync(dir, crashCopy, { recursive: true });
    await s.close();
    s = new LmdbStore({ path: crashCopy, fsync: false, mapSizeBytes: 64 * 1024 * 1024 });
    try {
      expect(s.recovery.ops).toBeGreaterThan(0);
      expect(loadPartitionMetas(s)).toEqual(want);
    } finally {
      await s.close();
    }
    // After a clean close every meta is in the B-tree.
    s = new LmdbStore({ path: dir, fsync: false, mapSizeBytes: 64 * 1024 * 1024 });
    try {
      expect(s.recovery.frames).toBe(0);
      expect(loadPartitionMetas(s)).toEqual(want);
    } finally {
      await s.close();
    }
  });
});
