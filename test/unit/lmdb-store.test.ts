// The lmdb engine on a real data directory: dropping a partition removes its records and
// only its records, and the live-key count (ringkv_keys) follows, across a reopen too.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import type { WriteOp } from '../../src/store/store.js';
import { partitionId } from '../../src/core/types.js';
import type { VectorClock } from '../../src/core/vector-clock.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const open = (path: string): LmdbStore => new LmdbStore({ path, fsync: false, mapSizeBytes: 64 * 1024 * 1024 });
const clock = [['n1', 1]] as unknown as VectorClock;
const put = (p: number, key: string, value: string | null): WriteOp => ({
  kind: 'put',
  partition: partitionId(p),
  key,
  record: { value: value === null ? null : new TextEncoder().encode(value), clock, epoch: 1, seq: 1 },
});
const keysOf = (s: LmdbStore, p: number): string[] => s.scan(partitionId(p), { prefix: '', after: '', limit: 1000, includeTombstones: true }).map((r) => r.key);

describe('lmdb store: dropping a partition', () => {
  it('removes every record of that partition (tombstones too), none of its neighbours, and keeps the live-key count', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ringkv-lmdb-'));
    dirs.push(dir);
    let s = open(dir);
    // Partition 1: 300 keys, every tenth a tombstone; partitions 0 and 2 around it.
    await s.write([put(0, 'z', 'before'), put(2, '', 'after-empty-key'), put(2, 'a', 'after')]);
    await s.write(Array.from({ length: 300 }, (_, i) => put(1, `k${i}`, i % 10 === 0 ? null : `v${i}`)));
    expect(s.countKeys()).toBe(3 + 270);
    await s.write([{ kind: 'remove-partition', partition: partitionId(1) }]);
    expect(keysOf(s, 1)).toEqual([]);
    expect(keysOf(s, 0)).toEqual(['z']);
    expect(keysOf(s, 2)).toEqual(['', 'a']);
    expect(s.countKeys()).toBe(3);
    // Written again after the drop, and counted again; a reopen recounts from disk.
    await s.write([put(1, 'k1', 'again'), put(1, 'k2', null)]);
    expect(s.countKeys()).toBe(4);
    await s.close();
    s = open(dir);
    expect(s.countKeys()).toBe(4);
    await s.write([{ kind: 'remove-partition', partition: partitionId(1) }, { kind: 'remove', partition: partitionId(2), key: 'a' }]);
    expect(s.countKeys()).toBe(2);
    expect(keysOf(s, 2)).toEqual(['']);
    await s.close();
  });

  it('counts live keys right when writes follow each other before the first is committed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ringkv-lmdb-'));
    dirs.push(dir);
    let s = open(dir);
    // None of these is awaited before the next is issued: each must see the ones before it.
    const writes = [
      s.write([put(1, 'a', 'v1'), put(1, 'b', 'v1')]),
      s.write([put(1, 'a', null)]), // a tombstone over a pending live record
      s.write([put(1, 'a', 'v2'), put(2, 'c', 'v1')]),
      s.write([{ kind: 'remove-partition', partition: partitionId(1) }]),
      s.write([put(1, 'b', 'v3')]), // after the pending drop: a new live key
      s.write([{ kind: 'remove', partition: partitionId(2), key: 'c' }, { kind: 'remove', partition: partitionId(2), key: 'c' }]),
    ];
    // Nothing is visible (or counted) before it is durable.
    expect(s.countKeys()).toBe(0);
    expect(s.get(partitionId(1), 'a')).toBeUndefined();
    await Promise.all(writes);
    expect(s.countKeys()).toBe(1);
    expect(keysOf(s, 1)).toEqual(['b']);
    expect(keysOf(s, 2)).toEqual([]);
    // Checkpointed into the B-tree by now or not: the next writes read liveness from either.
    await s.write([put(1, 'b', null), put(2, 'd', 'v')]);
    expect(s.countKeys()).toBe(1);
    await s.close();
    s = open(dir);
    expect(s.countKeys()).toBe(1);
    await s.close();
  });
});
