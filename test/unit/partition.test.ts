// Script-like interaction tests for the replication layer: three nodes, a hand-driven
// network (deliver everything, in order), a memory store per node, and transcripts of
// what clients see. Every step carries out Readies as the runtime must (persist -> send
// -> reply); here persist is applied at once.
import { describe, expect, it } from 'vitest';
import { applyChange, isChangeError } from '../../src/core/membership.js';
import {
  canServe,
  isCaughtUp,
  requestRepair,
  setConfig,
  step,
  submit,
  tick,
  type ClientResult,
  type KvRecord,
} from '../../src/core/replication.js';
import { comparePositions, onHistory, judgeIncoming, type HistoryEntry } from '../../src/core/partition.js';
import { partitionOf } from '../../src/core/hash.js';
import { buildRing } from '../../src/core/ring.js';
import { nodeId, epoch, seq, type NodeId } from '../../src/core/types.js';
import { increment, EMPTY_CLOCK } from '../../src/core/vector-clock.js';
import { harnessIds, harnessParams, RepHarness } from '../support/rep-harness.js';

const ids = harnessIds;
const params = harnessParams;

class Harness extends RepHarness {
  result(id: string): ClientResult | 'pending' {
    return this.reply(id);
  }

  primaryOf(key: string): NodeId {
    return buildRing(this.cfg).primaryOf(partitionOf(key, params.partitions))!;
  }
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (r: ClientResult | 'pending'): string => {
  if (r === 'pending') return 'pending';
  if (r.status === 'ok') return r.value !== undefined ? `ok ${new TextDecoder().decode(r.value)}` : `ok ${r.created ? 'created' : 'replaced'}`;
  if (r.status === 'unavailable') return `unavailable ${r.reason}`;
  if (r.status === 'not_primary') return `not_primary ${r.primary}`;
  return r.status;
};

describe('replication: script', () => {
  it('takeover waits out leases, then put / get / cas / delete go through the primary', () => {
    const h = new Harness();
    const p = h.primaryOf('k');
    const other = ids.find((x) => x !== p)!;
    // A request during the takeover waits (parkTicks = 10), then is refused: nothing applied.
    const early = h.submit(p, { type: 'get', key: 'k', consistency: 'strong' });
    expect(h.reply(early)).toBe('pending');
    h.ticks(10);
    expect(text(h.reply(early))).toBe('unavailable takeover');
    // One that arrives closer to the end of the takeover is served when it ends.
    const parked = h.submit(p, { type: 'get', key: 'k', consistency: 'strong' });
    expect(h.reply(parked)).toBe('pending');
    h.ticks(10); // leaseTicks + 1 after the takeover sync, and leases granted
    expect(text(h.reply(parked))).toBe('not_found');
    expect(canServe(h.reps.get(p)!, partitionOf('k', 4))).toBe(true);
    const transcript = [
      text(h.client(other, { type: 'put', key: 'k', value: bytes('v1') })),
      text(h.client(p, { type: 'put', key: 'k', value: bytes('v1'), ifNoneMatch: '*' })),
      text(h.client(p, { type: 'put', key: 'k', value: bytes('v1') })),
      text(h.client(p, { type: 'get', key: 'k', consistency: 'strong' })),
      text(h.client(p, { type: 'put', key: 'k', value: bytes('v2'), ifMatch: ['nope'] })),
      text(h.client(p, { type: 'put', key: 'k', value: bytes('v2'), ifNoneMatch: '*' })),
      text(h.client(p, { type: 'delete', key: 'k' })),
      text(h.client(p, { type: 'delete', key: 'k' })),
      text(h.client(other, { type: 'get', key: 'k', consistency: 'stale' })),
    ];
    expect(transcript).toEqual([
      `not_primary ${p}`,
      'ok created',
      'ok replaced',
      'ok v1',
      'precondition_failed',
      'precondition_failed',
      'ok replaced',
      'not_found',
      'not_found',
    ]);
  });

  it('commit waits for every in-sync replica; a write is unavailable below minInSync', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('k');
    const [r1, r2] = ids.filter((x) => x !== p) as [NodeId, NodeId];
    h.cut.add(r1); // r1 stops answering: the write is persisted on p and r2, not acknowledged
    const id = 'w1';
    h.apply(p, submit(h.reps.get(p)!, id, { type: 'put', key: 'k', value: bytes('x') }));
    h.flush();
    expect(h.result(id)).toBe('pending');
    expect(text(h.client(p, { type: 'get', key: 'k', consistency: 'strong' }))).toMatch(/not_found|unavailable no-lease/); // never the uncommitted value
    h.cut.delete(r1);
    h.ticks(5); // the retransmission (every 4 ticks) reaches r1, which persists and acks
    expect(text(h.result(id))).toBe('ok created');
    // r1 and r2 marked down: one copy left (< minInSync 2) -> unavailable, nothing applied.
    h.down.add(r1);
    h.change({ kind: 'mark-down', id: r1 });
    h.down.add(r2);
    h.change({ kind: 'mark-down', id: r2 });
    h.ticks(20);
    expect(text(h.client(p, { type: 'put', key: 'k', value: bytes('y') }))).toBe('unavailable too-few-in-sync');
    expect(h.data.get(p)!.get(`${partitionOf('k', 4)}/k`)?.value).toEqual(bytes('x'));
  });

  it('fencing: a replica on a newer epoch refuses the old primary, which can no longer ack or renew its lease', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('k');
    const part = partitionOf('k', 4);
    // The replicas move to epoch 2 (p marked down); p does not hear of it.
    h.cut.add(p);
    const next = applyChange(h.cfg, { kind: 'mark-down', id: p });
    if (isChangeError(next)) throw new Error(next.error);
    h.cfg = next;
    for (const id of ids) if (id !== p) h.apply(id, setConfig(h.reps.get(id)!, next));
    h.cut.delete(p);
    const w = 'w-old';
    h.apply(p, submit(h.reps.get(p)!, w, { type: 'put', key: 'k', value: bytes('stale') }));
    h.ticks(41); // writeTimeoutTicks
    expect(h.result(w)).toEqual({ status: 'timeout' }); // never acknowledged: outcome unknown
    expect(canServe(h.reps.get(p)!, part)).toBe(false); // its lease ran out and is not renewed
    const newPrimary = buildRing(h.cfg).primaryOf(part)!;
    expect(newPrimary).not.toBe(p);
    expect(canServe(h.reps.get(newPrimary)!, part)).toBe(true); // two copies: the new primary serves, alone
    expect(h.data.get(newPrimary)!.get(`${part}/k`)).toBeUndefined(); // the fenced write never reached it
  });

  it('writes parked during a takeover are served in arrival order when it ends, each with its own version', () => {
    const h = new Harness();
    const p = h.primaryOf('k');
    h.ticks(8); // the takeover's lease wait is not over yet
    const first = h.submit(p, { type: 'put', key: 'k', value: bytes('a') });
    const second = h.submit(p, { type: 'put', key: 'k', value: bytes('b') });
    expect([h.reply(first), h.reply(second)]).toEqual(['pending', 'pending']);
    h.ticks(10);
    const a = h.reply(first);
    const b = h.reply(second);
    expect(a).toMatchObject({ status: 'ok', created: true });
    expect(b).toMatchObject({ status: 'ok', created: false });
    if (a === 'pending' || b === 'pending' || a.status !== 'ok' || b.status !== 'ok') throw new Error('unreachable');
    expect(b.version).not.toBe(a.version); // released in one Ready, yet two versions
    expect(text(h.client(p, { type: 'get', key: 'k', consistency: 'strong' }))).toBe('ok b');
  });

  it('catch-up: a returning node gets a delta, is confirmed, reports caught up, and counts for commits', () => {
    const h = new Harness();
    h.ticks(20);
    const p = h.primaryOf('k');
    const r = ids.find((x) => x !== p)!;
    expect(text(h.client(p, { type: 'put', key: 'k', value: bytes('1') }))).toBe('ok created');
    h.down.add(r);
    h.change({ kind: 'mark-down', id: r });
    h.ticks(20);
    expect(text(h.client(p, { type: 'put', key: 'k', value: bytes('2') }))).toBe('ok replaced');
    h.boot(r); // restart from its disk
    h.change({ kind: 'mark-joining', id: r });
    h.ticks(30);
    expect(isCaughtUp(h.reps.get(p)!, r, h.cfg)).toBe(true); // what readyToActivate asks
    expect(h.data.get(r)!.get(`${partitionOf('k', 4)}/k`)?.value).toEqual(bytes('2'));
    h.change({ kind: 'mark-active', id: r });
    h.ticks(20);
    expect(text(h.client(h.primaryOf('k'), { type: 'get', key: 'k', consistency: 'strong' }))).toBe('ok 2');
  });
});

describe('replication: pure rules', () => {
  const hist: HistoryEntry[] = [
    { epoch: epoch(1), startSeq: seq(1) },
    { epoch: epoch(3), startSeq: seq(10) },
  ];
  const last = { epoch: epoch(3), seq: seq(15) };
  it('a position is on a history only inside its epoch range', () => {
    expect(onHistory(hist, last, { epoch: epoch(0), seq: seq(0) })).toBe(true);
    expect(onHistory(hist, last, { epoch: epoch(1), seq: seq(9) })).toBe(true);
    expect(onHistory(hist, last, { epoch: epoch(1), seq: seq(10) })).toBe(false); // divergent suffix
    expect(onHistory(hist, last, { epoch: epoch(2), seq: seq(5) })).toBe(false);
    expect(onHistory(hist, last, { epoch: epoch(3), seq: seq(16) })).toBe(false);
    expect(comparePositions(null, { epoch: epoch(0), seq: seq(0) })).toBeLessThan(0);
  });
  it('an incoming version applies only if it descends from the stored one', () => {
    const a = increment(EMPTY_CLOCK, nodeId('n1'));
    const b = increment(a, nodeId('n2'));
    const c = increment(a, nodeId('n3'));
    const rec = (clock: typeof a): KvRecord => ({ value: null, clock, epoch: epoch(1), seq: seq(1) });
    expect(judgeIncoming(undefined, rec(a))).toBe('apply');
    expect(judgeIncoming(rec(a), rec(b))).toBe('apply');
    expect(judgeIncoming(rec(b), rec(a))).toBe('skip');
    expect(judgeIncoming(rec(b), rec(c))).toBe('conflict');
  });
});

describe('anti-entropy', () => {
  // Damage replicas' stores behind the core's back, then compare and repair.
  it('repairs a lost record, a stale version and a missing tombstone on replicas, and counts each repair once', () => {
    const h = new Harness();
    h.ticks(20);
    const keys = Array.from({ length: 1200 }, (_, i) => `k${i}`); // > aeChunkMax per partition: several ranges
    for (const k of keys) expect(text(h.client(h.primaryOf(k), { type: 'put', key: k, value: bytes(`v-${k}`) }))).toBe('ok created');
    const before = new Map<string, KvRecord | undefined>();
    for (const k of keys) before.set(k, h.data.get(ids[0]!)!.get(`${partitionOf(k, 4)}/${k}`));
    for (const k of keys.slice(0, 3)) expect(text(h.client(h.primaryOf(k), { type: 'put', key: k, value: bytes(`w-${k}`) }))).toBe('ok replaced');
    expect(text(h.client(h.primaryOf('k3'), { type: 'delete', key: 'k3' }))).toBe('ok replaced');
    const copies = (k: string) => ids.map((id) => h.data.get(id)!.get(`${partitionOf(k, 4)}/${k}`));
    // On one replica of each: k0 lost, k1 back to its old version; k3's tombstone lost (the value is back).
    const victim = (k: string) => ids.find((id) => id !== h.primaryOf(k))!;
    h.data.get(victim('k0'))!.delete(`${partitionOf('k0', 4)}/k0`);
    h.data.get(victim('k1'))!.set(`${partitionOf('k1', 4)}/k1`, before.get('k1')!);
    h.data.get(victim('k3'))!.set(`${partitionOf('k3', 4)}/k3`, before.get('k3')!);
    // A key only a replica holds (a record the primary lost): it comes back to the primary.
    const lostOnPrimary = 'k7';
    h.data.get(h.primaryOf(lostOnPrimary))!.delete(`${partitionOf(lostOnPrimary, 4)}/${lostOnPrimary}`);

    const events: { type: string; count?: number; where?: string }[] = [];
    const done = new Set<number>();
    for (const id of ids) {
      const r = requestRepair(h.reps.get(id)!);
      h.apply(id, r.ready);
      for (const e of r.ready.events) if (e.type === 'ae-done') done.add(e.partition);
    }
    for (let i = 0; i < 20 && done.size < 4; i++) {
      for (const id of ids) {
        const r = tick(h.reps.get(id)!);
        h.apply(id, r);
        events.push(...r.events);
        for (const e of r.events) if (e.type === 'ae-done') done.add(e.partition);
      }
      // Deliver one message at a time so that events are visible.
      for (let j = 0; j < 10_000 && h.wire.length > 0; j++) {
        const env = h.wire.shift()!;
        const r = step(h.reps.get(env.to)!, env.msg);
        h.apply(env.to, r);
        events.push(...r.events);
        for (const e of r.events) if (e.type === 'ae-done') done.add(e.partition);
      }
    }
    expect(done.size).toBe(4); // every partition compared with every follower
    for (const k of keys) {
      const c = copies(k);
      expect(c.every((x) => x !== undefined && JSON.stringify(x) === JSON.stringify(c[0]))).toBe(true);
    }
    expect(copies('k3')[0]!.value).toBeNull(); // the delete was not undone
    const repaired = events.filter((e) => e.type === 'repaired').reduce((a, e) => a + (e.count ?? 0), 0);
    expect(repaired).toBe(4); // k0, k1, k3 on replicas and k7 on its primary
    expect(events.some((e) => e.type === 'repaired' && e.where === 'primary')).toBe(true);
    expect(events.filter((e) => e.type === 'version-conflict')).toEqual([]);
  });
});
