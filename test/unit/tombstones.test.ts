// Tombstone collection: the sweep, purgedClock / purgedUpTo, the catch-up rule, and the
// storage and wire encodings. Script-like, on three nodes with a hand-driven network (as
// partition.test.ts), with a wall clock the test moves by hand.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { partitionOf } from '../../src/core/hash.js';
import { emptyMeta, normalizeMeta, tombstoneExpired } from '../../src/core/partition.js';
import {
  requestRepair,
  step,
  type ClientResult,
  type KvRecord,
  type PartitionMeta,
  type RepMessage,
  type RepMutation,
} from '../../src/core/replication.js';
import { buildRing } from '../../src/core/ring.js';
import {
  epoch,
  nodeId,
  partitionId,
  seq,
  type NodeId,
} from '../../src/core/types.js';
import { compare, EMPTY_CLOCK, increment, versionOf } from '../../src/core/vector-clock.js';
import { encodeRepMessage, parseRepMessage } from '../../src/net/rep-wire.js';
import { loadPartitionMetas, OverlayStoreView, repWriteOps, toKvRecord } from '../../src/runtime/rep-store.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { harnessIds, harnessParams, RepHarness } from '../support/rep-harness.js';

const ids = harnessIds;
const params = harnessParams;
const GRACE = 10_000;
const T0 = 1_700_000_000_000;

/** The harness with a wall clock (from T0) and a tombstone grace of GRACE. */
class Harness extends RepHarness {
  declare wall: number;

  constructor(mutation: RepMutation = null) {
    super({ rep: { tombstoneGraceMs: GRACE, testOnlyMutation: mutation }, wallStartMs: T0 });
  }

  /** Ticks until the wall clock reaches `ms`. */
  ticksUntil(ms: number): void {
    while (this.wall + 50 <= ms) this.ticks(1);
  }

  result(id: string): ClientResult | 'pending' {
    return this.reply(id);
  }

  primaryOf(key: string): NodeId {
    return buildRing(this.cfg).primaryOf(partitionId(partitionOf(key, params.partitions)))!;
  }

  record(node: NodeId, key: string): KvRecord | undefined {
    return this.data.get(node)!.get(`${partitionOf(key, params.partitions)}/${key}`);
  }

  meta(node: NodeId, key: string): PartitionMeta {
    return this.reps.get(node)!.partitions[partitionOf(key, params.partitions)]!.meta;
  }

  purged(node?: NodeId): number {
    let n = 0;
    for (const { node: at, event } of this.events) if (event.type === 'tombstones-purged' && (node === undefined || at === node)) n += event.count;
    return n;
  }
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const okVersion = (r: ClientResult | 'pending'): string => {
  if (r === 'pending' || r.status !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(r)}`);
  return r.version;
};

describe('tombstone collection: the sweep', () => {
  it('collects only tombstones whose grace has run out, on every copy, and records them in the meta', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('gone');
    okVersion(h.client(h.primaryOf('kept'), { type: 'put', key: 'kept', value: bytes('v') }));
    okVersion(h.client(p, { type: 'put', key: 'gone', value: bytes('v') }));
    const deletedAt = h.wall;
    okVersion(h.client(p, { type: 'delete', key: 'gone' }));
    for (const id of ids) expect(h.record(id, 'gone')).toMatchObject({ value: null, deletedAtMs: deletedAt });
    const tomb = h.record(p, 'gone')!;

    h.ticks(GRACE / 50 - 2); // not yet: deletedAtMs + grace > now
    for (const id of ids) expect(h.record(id, 'gone')?.value).toBeNull();
    expect(h.purged()).toBe(0);
    h.ticks(2 + GRACE / 4 / 50 + 1); // the grace ran out, and a new pass started (every grace / 4)
    for (const id of ids) {
      expect(h.record(id, 'gone')).toBeUndefined();
      expect(h.record(id, 'kept')?.value).toEqual(bytes('v'));
      expect(h.meta(id, 'gone').purgedClock).toEqual(tomb.clock);
      expect(h.meta(id, 'gone').purgedUpTo).toEqual({ epoch: tomb.epoch, seq: tomb.seq });
      expect(h.metas.get(id)!.get(partitionOf('gone', params.partitions))!.purgedClock).toEqual(tomb.clock); // persisted
      expect(h.purged(id)).toBe(1);
    }
    expect(h.client(p, { type: 'get', key: 'gone', consistency: 'strong' })).toEqual({ status: 'not_found' });
  });

  it('stamps a tombstone that has no deletedAtMs (written before collection) and gives it the whole grace', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('old');
    okVersion(h.client(p, { type: 'put', key: 'old', value: bytes('v') }));
    okVersion(h.client(p, { type: 'delete', key: 'old' }));
    // As a tombstone from an older build: no deletedAtMs, on every copy.
    for (const id of ids) {
      const { deletedAtMs: _d, ...rest } = h.record(id, 'old')!;
      h.data.get(id)!.set(`${partitionOf('old', params.partitions)}/old`, rest);
    }
    const removedAt = h.wall;
    h.ticks(GRACE / 4 / 50 + 2); // the next pass stamps them, each node with its own clock
    let last = 0;
    for (const id of ids) {
      const at = h.record(id, 'old')?.deletedAtMs;
      expect(at).toBeGreaterThan(removedAt);
      expect(at).toBeLessThanOrEqual(h.wall);
      last = Math.max(last, at!);
    }
    h.ticksUntil(last + GRACE - 100);
    for (const id of ids) expect(h.record(id, 'old')?.value).toBeNull(); // stamped, not collected
    h.ticks(GRACE / 4 / 50 + 4);
    for (const id of ids) expect(h.record(id, 'old')).toBeUndefined();
  });

  it('never collects a tombstone whose key has a write in flight, nor an uncommitted tombstone on the primary', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('k');
    const [r1] = ids.filter((x) => x !== p) as [NodeId, NodeId];
    okVersion(h.client(p, { type: 'put', key: 'k', value: bytes('v1') }));
    // r1 stops answering: the delete is persisted on p (and r2) but cannot commit.
    h.cut.add(r1);
    const del = h.submit(p, { type: 'delete', key: 'k' });
    expect(h.result(del)).toBe('pending');
    h.ticks(GRACE / 50 + GRACE / 4 / 50 + 2); // the tombstone's grace runs out while it is in flight
    expect(h.record(p, 'k')?.value).toBeNull(); // still there: its write is uncommitted
    expect(h.purged(p)).toBe(0);
    expect(h.result(del)).toEqual({ status: 'timeout' }); // the client gave up; the entry stays in flight
    h.cut.delete(r1);
    h.ticks(5); // r1 gets the delete, which commits
    h.ticks(GRACE / 4 / 50 + 2); // the next pass collects it everywhere
    for (const id of ids) expect(h.record(id, 'k')).toBeUndefined();
    expect(h.purged(p)).toBe(1);
  });

  it('an in-flight write over an expired tombstone keeps the key', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('k');
    const [r1] = ids.filter((x) => x !== p) as [NodeId, NodeId];
    okVersion(h.client(p, { type: 'put', key: 'k', value: bytes('v1') }));
    okVersion(h.client(p, { type: 'delete', key: 'k' }));
    h.cut.add(r1);
    h.wall += GRACE; // expired, not swept yet (the next pass starts within grace / 4)
    const put = h.submit(p, { type: 'put', key: 'k', value: bytes('v2') });
    h.ticks(GRACE / 4 / 50 + 2);
    expect(h.record(p, 'k')?.value).toEqual(bytes('v2')); // the newest record is the write in flight
    expect(h.purged(p)).toBe(0); // (r1, cut off, collects its own expired copy: that is fine)
    expect(h.result(put)).toEqual({ status: 'timeout' }); // the client gave up; the entry stays in flight
    h.cut.delete(r1);
    h.ticks(5);
    h.ticks(GRACE / 4 / 50 + 2);
    for (const id of ids) expect(h.record(id, 'k')?.value).toEqual(bytes('v2'));
  });
});

describe('tombstone collection: versions', () => {
  it('a key re-created after its tombstone was collected gets a version strictly after it; the old ETag fails If-Match', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('k');
    const v1 = okVersion(h.client(p, { type: 'put', key: 'k', value: bytes('v1') }));
    const v2 = okVersion(h.client(p, { type: 'delete', key: 'k' }));
    const tomb = h.record(p, 'k')!;
    h.ticks(GRACE / 50 + GRACE / 4 / 50 + 2);
    for (const id of ids) expect(h.record(id, 'k')).toBeUndefined();
    expect(h.client(p, { type: 'put', key: 'k', value: bytes('x'), ifMatch: [v1] })).toEqual({ status: 'precondition_failed' });
    expect(h.client(p, { type: 'delete', key: 'k', ifMatch: [v1] })).toEqual({ status: 'precondition_failed' });
    const r = h.client(p, { type: 'put', key: 'k', value: bytes('v3'), ifNoneMatch: '*' });
    expect(r).toMatchObject({ status: 'ok', created: true });
    const v3 = okVersion(r);
    expect(new Set([v1, v2, v3]).size).toBe(3);
    expect(compare(h.record(p, 'k')!.clock, tomb.clock)).toBe('after');

    // The same after a failover: the new primary collected the tombstone too.
    okVersion(h.client(p, { type: 'delete', key: 'k' }));
    const tomb2 = h.record(p, 'k')!;
    h.ticks(GRACE / 50 + GRACE / 4 / 50 + 2);
    h.down.add(p);
    h.change({ kind: 'mark-down', id: p });
    h.ticks(25);
    const q = h.primaryOf('k');
    expect(q).not.toBe(p);
    expect(h.record(q, 'k')).toBeUndefined();
    const v5 = okVersion(h.client(q, { type: 'put', key: 'k', value: bytes('v5') }));
    expect([v1, v2, v3, versionOf(tomb2.clock)]).not.toContain(v5);
    expect(compare(h.record(q, 'k')!.clock, tomb2.clock)).toBe('after');
  });

  it('a new key with nothing collected keeps the plain first clock', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('fresh');
    okVersion(h.client(p, { type: 'put', key: 'fresh', value: bytes('v') }));
    expect(h.record(p, 'fresh')!.clock).toEqual(increment(EMPTY_CLOCK, p));
  });
});

describe('tombstone collection: catch-up and repair', () => {
  /** A replica r is down while a key is deleted and its tombstone collected (not back yet). */
  function missedDeleteWhileDown(mutation: RepMutation): { h: Harness; p: NodeId; r: NodeId } {
    const h = new Harness(mutation);
    h.ticks(20);
    const p = h.primaryOf('k');
    const r = ids.find((x) => x !== p)!;
    okVersion(h.client(p, { type: 'put', key: 'k', value: bytes('v1') }));

    h.down.add(r);
    h.change({ kind: 'mark-down', id: r });
    h.ticks(20);
    okVersion(h.client(p, { type: 'delete', key: 'k' }));
    okVersion(h.client(p, { type: 'put', key: 'k9', value: bytes('a') }));
    expect(partitionOf('k9', params.partitions)).toBe(partitionOf('k', params.partitions)); // a log beyond the delete
    h.ticks(GRACE / 50 + GRACE / 4 / 50 + 2);
    for (const id of ids) if (id !== r) expect(h.record(id, 'k')).toBeUndefined();
    expect(h.record(r, 'k')?.value).toEqual(bytes('v1')); // r's disk still has the old value
    return { h, p, r };
  }

  /** r restarts and is made active again. */
  function comeBack(h: Harness, r: NodeId): void {
    h.boot(r);
    h.change({ kind: 'mark-joining', id: r });
    h.ticks(30);
    h.change({ kind: 'mark-active', id: r });
    h.ticks(20);
  }

  /** A replica is down while a key is deleted and its tombstone collected; it comes back. */
  function missedDelete(mutation: RepMutation): { h: Harness; r: NodeId } {
    const { h, r } = missedDeleteWhileDown(mutation);
    comeBack(h, r);
    return { h, r };
  }

  it('a replica that missed a collected delete takes a full copy, and the delete stays', () => {
    const { h, r } = missedDelete(null);
    expect(h.record(r, 'k')).toBeUndefined();
    expect(h.events.some(({ node, event }) => node === r && event.type === 'copy' && event.mode === 'full' && event.partition === partitionOf('k', params.partitions))).toBe(true);
    expect(h.meta(r, 'k').purgedClock).toEqual(h.meta(h.primaryOf('k'), 'k').purgedClock); // merged from the copy
    expect(h.client(r, { type: 'get', key: 'k', consistency: 'stale' })).toEqual({ status: 'not_found' });
  });

  it('a copy takes only the chunk that answers its own request: a late chunk of another mode is ignored', () => {
    // r's catch-up is a full copy. Just before its first full-copy request reaches the
    // primary, a chunk for an older delta request of the same session arrives (after: null,
    // nothing newer, last chunk). Taken as the answer, it would end the full copy with
    // none of the older records.
    const { h, p, r } = missedDeleteWhileDown(null);
    const part = partitionOf('k', params.partitions);
    let injected = 0;
    h.beforeDeliver = (env) => {
      const m = env.msg;
      if (injected > 0 || m.type !== 'rep-copy-req' || m.from !== r || m.partition !== part || m.mode !== 'full') return;
      injected += 1;
      const meta = h.reps.get(p)!.partitions[part]!.meta;
      const stale = {
        type: 'rep-copy-chunk',
        from: p,
        clusterName: 't',
        epoch: h.cfg.epoch,
        partition: partitionId(part),
        session: m.session,
        mode: 'delta',
        fromSeq: meta.pos!.seq,
        after: null,
        records: [],
        next: null,
        pos: meta.pos!,
        history: meta.history,
        purgedClock: meta.purgedClock,
        purgedUpTo: meta.purgedUpTo,
      } as unknown as RepMessage;
      h.apply(r, step(h.reps.get(r)!, stale));
    };
    comeBack(h, r);
    expect(injected).toBe(1);
    expect(h.record(r, 'k9')?.value).toEqual(bytes('a'));
    expect(h.record(r, 'k')).toBeUndefined();
  });

  it('(mutation) a delta catch-up that ignores purgedUpTo resurrects the value', () => {
    const { h, r } = missedDelete('delta-ignores-purges');
    expect(h.record(r, 'k')?.value).toEqual(bytes('v1'));
  });

  it('anti-entropy between a collected tombstone and one still kept does no harm', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('k');
    const r = ids.find((x) => x !== p)!;
    okVersion(h.client(p, { type: 'put', key: 'k', value: bytes('v1') }));
    okVersion(h.client(p, { type: 'delete', key: 'k' }));
    const tomb = h.record(p, 'k')!;
    h.ticks(GRACE / 50 + GRACE / 4 / 50 + 2);
    // r has not swept yet (as if its pass were behind): its tombstone is back.
    h.data.get(r)!.set(`${partitionOf('k', params.partitions)}/k`, tomb);
    const done = new Set<number>();
    const rr = requestRepair(h.reps.get(p)!);
    h.apply(p, rr.ready);
    h.flush();
    h.ticks(2);
    for (const { event } of h.events) if (event.type === 'ae-done') done.add(event.partition);
    expect(done.has(partitionOf('k', params.partitions))).toBe(true);
    // The tombstone went back to the primary (harmless: it reads as absent, and expires again).
    expect(h.events.some(({ event }) => event.type === 'repaired' && event.where === 'primary')).toBe(true);
    expect(h.events.filter(({ event }) => event.type === 'version-conflict')).toEqual([]);
    expect(h.client(p, { type: 'get', key: 'k', consistency: 'strong' })).toEqual({ status: 'not_found' });
    h.ticks(GRACE / 4 / 50 + 2); // whatever came back is expired and collected again
    for (const id of ids) expect(h.record(id, 'k')).toBeUndefined();
    const v = okVersion(h.client(p, { type: 'put', key: 'k', value: bytes('v2') }));
    expect(v).not.toBe(versionOf(tomb.clock));
    expect(compare(h.record(p, 'k')!.clock, tomb.clock)).toBe('after');
  });
});

describe('tombstone collection: encodings and config', () => {
  it('metas and records round-trip through LMDB; old metas and records read without the new fields', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ringkv-tomb-'));
    try {
      const store = new LmdbStore({ path: dir, fsync: false, mapSizeBytes: 1 << 26 });
      const clock = increment(increment(EMPTY_CLOCK, nodeId('n1')), nodeId('n2'));
      const meta: PartitionMeta = { ...emptyMeta(), pos: { epoch: epoch(3), seq: seq(9) }, history: [{ epoch: epoch(3), startSeq: seq(1) }], purgedClock: clock, purgedUpTo: { epoch: epoch(3), seq: seq(7) } };
      const p = partitionId(2);
      const tomb: KvRecord = { value: null, clock, epoch: epoch(3), seq: seq(7), deletedAtMs: T0 };
      const value: KvRecord = { value: bytes('v'), clock, epoch: epoch(3), seq: seq(8) };
      await store.write(
        repWriteOps([
          { kind: 'partition-meta', partition: p, meta },
          { kind: 'record', partition: p, key: 't', record: tomb },
          { kind: 'record', partition: p, key: 'v', record: value },
          { kind: 'record', partition: p, key: 'x', record: { ...tomb, deletedAtMs: T0 + 1 } },
          { kind: 'record-delete', partition: p, key: 'x' },
        ]),
      );
      // A meta as written before tombstone collection (and before copy targets).
      await store.write([{ kind: 'meta', key: 'rep/partition/00000001', value: { pos: { epoch: 2, seq: 4 }, history: [], confirmed: null } }]);
      await store.close();
      const again = new LmdbStore({ path: dir, fsync: false, mapSizeBytes: 1 << 26 });
      const metas = loadPartitionMetas(again);
      expect(metas.get(2)).toEqual(meta);
      expect(metas.get(1)).toEqual({ pos: { epoch: 2, seq: 4 }, history: [], confirmed: null, purgedClock: [], purgedUpTo: { epoch: 0, seq: 0 }, copyTarget: null });
      expect(toKvRecord(again.get(p, 't'))).toEqual(tomb);
      const v = toKvRecord(again.get(p, 'v'))!;
      expect({ ...v, value: new Uint8Array(v.value!) }).toEqual(value);
      expect('deletedAtMs' in toKvRecord(again.get(p, 'v'))!).toBe(false);
      expect(again.get(p, 'x')).toBeUndefined();
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(normalizeMeta({ pos: null, history: [], confirmed: null })).toEqual({ ...emptyMeta(), pos: null });
  });

  it('the write-behind overlay hides a staged record-delete, in get and scan, until it is durable', async () => {
    const store = new MemoryStore();
    const p = partitionId(0);
    const rec = (i: number): KvRecord => ({ value: bytes(`v${i}`), clock: increment(EMPTY_CLOCK, nodeId('n1')), epoch: epoch(1), seq: seq(i) });
    await store.write(repWriteOps(Array.from({ length: 6 }, (_, i) => ({ kind: 'record' as const, partition: p, key: `k${i}`, record: rec(i) }))));
    const view = new OverlayStoreView(store);
    const gen = view.stage([
      { kind: 'record-delete', partition: p, key: 'k0' },
      { kind: 'record-delete', partition: p, key: 'k1' },
    ]);
    expect(view.get(p, 'k0')).toBeUndefined();
    expect(view.scan(p, null, 3).map((r) => r.key)).toEqual(['k2', 'k3', 'k4']); // still `limit` records
    await store.write(repWriteOps([{ kind: 'record-delete', partition: p, key: 'k0' }, { kind: 'record-delete', partition: p, key: 'k1' }]));
    view.settle(gen);
    expect(view.scan(p, null, 10).map((r) => r.key)).toEqual(['k2', 'k3', 'k4', 'k5']);
  });

  it('tombstones and purge fields cross the wire', () => {
    const clock = increment(EMPTY_CLOCK, nodeId('n1'));
    const msg = {
      type: 'rep-copy-chunk',
      from: nodeId('n1'),
      clusterName: 't',
      epoch: epoch(2),
      partition: partitionId(1),
      session: 5,
      mode: 'full',
      fromSeq: 0,
      after: null,
      records: [
        ['a', { value: null, clock, epoch: epoch(2), seq: seq(3), deletedAtMs: T0 }],
        ['b', { value: bytes('x'), clock, epoch: epoch(2), seq: seq(4) }],
      ],
      next: null,
      pos: { epoch: epoch(2), seq: seq(4) },
      history: [{ epoch: epoch(2), startSeq: seq(1) }],
      purgedClock: clock,
      purgedUpTo: { epoch: epoch(2), seq: seq(2) },
    } as unknown as RepMessage;
    const parsed = parseRepMessage(JSON.parse(JSON.stringify(encodeRepMessage(msg))));
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    const m = parsed.msg as Extract<RepMessage, { type: 'rep-copy-chunk' }>;
    expect(m.records[0]![1].deletedAtMs).toBe(T0);
    expect(m.records[1]![1].deletedAtMs).toBeUndefined();
    expect(m.purgedClock).toEqual(clock);
    expect(m.purgedUpTo).toEqual({ epoch: 2, seq: 2 });
    const { purgedClock: _c, ...without } = JSON.parse(JSON.stringify(encodeRepMessage(msg))) as Record<string, unknown>;
    expect(parseRepMessage(without).ok).toBe(false); // required: nodes of one build only
  });

  it('tombstoneExpired: a tombstone with a deletedAtMs whose grace has run out, nothing else', () => {
    const t: KvRecord = { value: null, clock: EMPTY_CLOCK, epoch: epoch(1), seq: seq(1), deletedAtMs: 1000 };
    expect(tombstoneExpired(t, 1999, 1000)).toBe(false);
    expect(tombstoneExpired(t, 2000, 1000)).toBe(true);
    expect(tombstoneExpired({ ...t, deletedAtMs: undefined }, 1e15, 1000)).toBe(false);
    expect(tombstoneExpired({ ...t, value: bytes('v') }, 1e15, 1000)).toBe(false);
  });

  it('timing.tombstoneGraceMs: 24 h by default, at least 1 s, and at least 2 x antiEntropyIntervalMs', () => {
    expect(loadConfig(null, {}).config.timing.tombstoneGraceMs).toBe(86_400_000);
    expect(() => loadConfig(null, { RINGKV_TIMING_TOMBSTONE_GRACE_MS: '0' })).toThrow(/timing\.tombstoneGraceMs/);
    expect(() => loadConfig(null, { RINGKV_TIMING_TOMBSTONEGRACEMS: '999', RINGKV_TIMING_ANTI_ENTROPY_INTERVAL_MS: '0' })).toThrow(/timing\.tombstoneGraceMs/);
    expect(() => loadConfig(null, { RINGKV_TIMING_TOMBSTONE_GRACE_MS: '1000000' })).toThrow(
      /timing\.tombstoneGraceMs: must be at least 2 x timing\.antiEntropyIntervalMs \(1200000\)/,
    );
    expect(loadConfig(null, { RINGKV_TIMING_TOMBSTONE_GRACE_MS: '1200000' }).config.timing.tombstoneGraceMs).toBe(1_200_000);
    expect(loadConfig(null, { RINGKV_TIMING_TOMBSTONE_GRACE_MS: '1500', RINGKV_TIMING_ANTI_ENTROPY_INTERVAL_MS: '0' }).config.timing.tombstoneGraceMs).toBe(1500);
  });
});
