// When a learner is confirmed (rebalancing.md, "When a learner is confirmed"): a learner
// that still copies some partitions is not confirmed on the partitions it has finished,
// so it does not sit in their commit sets (and slow their writes) while it copies the rest;
// unless a partition cannot commit without it. Then availability comes first.
//
// Script-like, as partition.test.ts: three nodes, a hand-driven network, a memory store
// per node, Readies carried out at once; one partition's copy chunks are held back.
import { describe, expect, it } from 'vitest';
import { isCaughtUp, type ClientOp } from '../../src/core/replication.js';
import { buildRing } from '../../src/core/ring.js';
import { partitionId, type NodeId } from '../../src/core/types.js';
import { harnessIds, harnessKeys, harnessParams, RepHarness } from '../support/rep-harness.js';

const P = harnessParams.partitions;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const put = (key: string, value: string): ClientOp => ({ type: 'put', key, value: bytes(value) });
const keys = harnessKeys;

class Harness extends RepHarness {
  primaryOf(p: number): NodeId {
    return buildRing(this.cfg).primaryOf(partitionId(p))!;
  }

  /** Puts on the partition's primary and returns 'ok' or the failure. */
  write(p: number, value: string): string {
    const r = this.client(this.primaryOf(p), put(keys[p]!, value));
    if (r === 'pending') return 'pending';
    return r.status === 'unavailable' ? `unavailable ${r.reason}` : r.status;
  }

  /** Partitions whose primary has confirmed `learner` since event index `from`. */
  confirmedFor(learner: NodeId, from: number): number[] {
    const out = new Set<number>();
    for (const { event } of this.events.slice(from)) if (event.type === 'confirmed' && event.learner === learner) out.add(event.partition);
    return [...out].sort();
  }

  value(node: NodeId, p: number): string | undefined {
    const r = this.data.get(node)!.get(`${p}/${keys[p]}`);
    return r?.value == null ? undefined : new TextDecoder().decode(r.value);
  }
}

/**
 * Node `r` goes down, every partition gets a write it misses, and it comes back as a
 * joining member (a learner of every partition, each needing a delta copy) while the
 * copy chunks of partition `held` are held back.
 */
function returning(h: Harness, r: NodeId, held: number, alsoDown?: NodeId): number {
  h.ticks(20);
  for (let p = 0; p < P; p++) expect(h.write(p, 'v1')).toBe('ok');
  h.down.add(r);
  h.change({ kind: 'mark-down', id: r });
  h.ticks(20);
  for (let p = 0; p < P; p++) expect(h.write(p, 'v2')).toBe('ok');
  if (alsoDown !== undefined) {
    h.down.add(alsoDown);
    h.change({ kind: 'mark-down', id: alsoDown });
    h.ticks(20);
  }
  h.hold = (env) => env.msg.type === 'rep-copy-chunk' && env.to === r && env.msg.partition === held;
  const from = h.events.length;
  h.boot(r);
  h.change({ kind: 'mark-joining', id: r });
  h.ticks(30);
  return from;
}

describe('learner confirmation waits for all of its copies', () => {
  it('a learner still copying one partition is confirmed on none; once it finishes, on all at once', () => {
    const h = new Harness();
    const r = harnessIds[2]!;
    const held = 0;
    const from = returning(h, r, held);
    // Every other partition's copy is complete on r, not the held one ...
    for (let p = 0; p < P; p++) if (p !== held) expect(h.value(r, p)).toBe('v2');
    expect(h.value(r, held)).not.toBe('v2');
    // ... yet no primary waits for r: nothing is confirmed while it copies partition 0.
    expect(h.confirmedFor(r, from)).toEqual([]);
    expect(isCaughtUp(h.reps.get(h.primaryOf(1))!, r, h.cfg)).toBe(false);
    // Writes commit with the in-sync replicas alone meanwhile.
    for (let p = 0; p < P; p++) if (p !== held) expect(h.write(p, 'v3')).toBe('ok');

    h.release();
    h.ticks(10);
    expect(h.confirmedFor(r, from)).toEqual([0, 1, 2, 3]);
    expect(isCaughtUp(h.reps.get(h.primaryOf(1))!, r, h.cfg)).toBe(true);
    for (let p = 0; p < P; p++) expect(h.value(r, p)).toBe(p === held ? 'v2' : 'v3');
  });

  it('a partition that cannot commit without the learner confirms it at once, copies elsewhere or not', () => {
    const h = new Harness();
    const [alive, r, down] = harnessIds as [NodeId, NodeId, NodeId];
    const held = 0;
    // r misses v2; then `down` fails too, and `alive` alone cannot commit (minInSync 2).
    const from = returning(h, r, held, down);
    expect(h.primaryOf(1)).toBe(alive);
    // r still copies partition 0, but the other partitions need it: confirmed, and they
    // commit again.
    expect(h.confirmedFor(r, from)).toEqual([1, 2, 3]);
    for (let p = 1; p < P; p++) expect(h.write(p, 'v3')).toBe('ok');
    expect(h.write(held, 'v3')).toBe('unavailable too-few-in-sync');

    h.release();
    h.ticks(10);
    expect(h.confirmedFor(r, from)).toEqual([0, 1, 2, 3]);
    expect(h.write(held, 'v4')).toBe('ok');
  });
});
