// A copy that loses its source (PartitionMeta.copyTarget): an active replica restarts,
// begins a delta catch-up (its position is null until the copy completes), and its primary
// goes away before the copy is done. The replica becomes the primary, but the other member
// is only joining: its commit set is empty. Before copy targets it stayed in takeover
// forever (replication sim seeds 797 and 2718). Now it pulls from any node whose log
// contains the position its copy set out to reach, and only from such a node.
//
// Script-like, as partition.test.ts: three nodes, a hand-driven network, a memory store
// per node, Readies carried out at once.
import { describe, expect, it } from 'vitest';
import {
  canServe,
  isCaughtUp,
  metaOf,
  roleOf,
  type ClientOp,
  type PartitionMeta,
} from '../../src/core/replication.js';
import { partitionOf } from '../../src/core/hash.js';
import { buildRing } from '../../src/core/ring.js';
import { type NodeId } from '../../src/core/types.js';
import { harnessParams, RepHarness } from '../support/rep-harness.js';

const params = harnessParams;

class Harness extends RepHarness {
  result(id: string): string {
    const r = this.reply(id);
    if (r === 'pending') return 'pending';
    if (r.status === 'ok') return r.value !== undefined ? `ok ${new TextDecoder().decode(r.value)}` : 'ok';
    if (r.status === 'unavailable') return `unavailable ${r.reason}`;
    return r.status;
  }

  value(node: NodeId, key: string): string | null | undefined {
    const r = this.data.get(node)!.get(`${partitionOf(key, params.partitions)}/${key}`);
    return r === undefined ? undefined : r.value === null ? null : new TextDecoder().decode(r.value);
  }
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const put = (key: string, value: string): ClientOp => ({ type: 'put', key, value: bytes(value) });
const get = (key: string): ClientOp => ({ type: 'get', key, consistency: 'strong' });
/** A second key in k's partition. */
const k2 = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'].map((x) => `k2${x}`).find((x) => partitionOf(x, params.partitions) === partitionOf('k', params.partitions))!;

/**
 * Up to the stuck state: `primary` (P) leads k's partition, `replica` (A) is next in its
 * preference list, `learner` (B) is joining and confirmed. A restarts behind P and begins a
 * delta catch-up whose chunks never arrive; then P is marked down, and A is the primary
 * with an empty commit set and no complete copy. `learnerMisses`: B is cut off too while
 * P writes, so its log stops before A's copy target.
 */
function strandedPrimary(learnerMisses: boolean): { h: Harness; part: number; primary: NodeId; replica: NodeId; learner: NodeId } {
  const h = new Harness();
  h.ticks(20);
  const key = 'k';
  const part = partitionOf(key, params.partitions);
  const [primary, replica, learner] = buildRing(h.cfg).preference(part) as [NodeId, NodeId, NodeId];
  expect(h.result(h.submit(primary, put(key, 'v1')))).toBe('ok');
  // B leaves and comes back as a joining member: a learner the primary confirms.
  h.down.add(learner);
  h.change({ kind: 'mark-down', id: learner });
  h.boot(learner);
  h.change({ kind: 'mark-joining', id: learner });
  h.ticks(30);
  expect(isCaughtUp(h.reps.get(primary)!, learner, h.cfg)).toBe(true);
  expect(h.result(h.submit(primary, put(k2, 'acked')))).toBe('ok'); // committed on all three
  // A (and B, if asked) miss a write: it waits for A's ack and is never acknowledged.
  h.cut.add(replica);
  if (learnerMisses) h.cut.add(learner);
  const lost = h.submit(primary, put(key, 'v2'));
  h.ticks(2);
  // A restarts from its disk, behind P: P resyncs it and sends a delta catch-up, whose
  // copy requests are lost.
  h.down.add(replica);
  h.cut.delete(replica);
  h.boot(replica);
  h.lose.add('rep-copy-req');
  h.ticks(8);
  expect(metaOf(h.reps.get(replica)!, part)!.pos).toBeNull(); // mid-copy
  expect(h.result(lost)).toBe('pending');
  // P goes away for good: A is the only active member, B still joining.
  h.down.add(primary);
  h.change({ kind: 'mark-down', id: primary });
  h.lose.delete('rep-copy-req');
  h.cut.delete(learner);
  expect(roleOf(h.reps.get(replica)!, part)).toBe('primary');
  expect(roleOf(h.reps.get(learner)!, part)).toBe('learner');
  return { h, part, primary, replica, learner };
}

describe('a copy that loses its source', () => {
  it('a new primary whose catch-up lost its source pulls from a learner whose log contains its copy target', () => {
    const { h, part, primary, replica, learner } = strandedPrimary(false);
    const a = h.reps.get(replica)!;
    const target = metaOf(a, part)!.copyTarget;
    const learnerPos = metaOf(h.reps.get(learner)!, part)!.pos;
    h.ticks(40);
    expect(metaOf(a, part)!.pos).not.toBeNull();
    expect(canServe(a, part)).toBe(true); // B confirmed: two copies, under a lease
    expect(isCaughtUp(a, learner, h.cfg)).toBe(true); // so B can be activated
    // The target was P's position when the catch-up began, and B's log contains it.
    expect(target).toEqual(metaOf(h.reps.get(primary)!, part)!.pos);
    expect(learnerPos).toEqual(target);
    expect(metaOf(a, part)!.copyTarget).toBeNull(); // cleared with the complete copy
    // Nothing acknowledged is lost; the unacknowledged write survived with B's log.
    expect(h.result(h.submit(replica, get(k2)))).toBe('ok acked');
    expect(h.result(h.submit(replica, get('k')))).toBe('ok v2');
    h.change({ kind: 'mark-active', id: learner });
    h.ticks(20);
    expect(h.result(h.submit(replica, put('k', 'v3')))).toBe('ok');
    expect(h.value(learner, 'k')).toBe('v3');
  });

  it('a learner whose log does not contain the copy target is never copied from: the partition waits for one that does', () => {
    const { h, part, primary, replica, learner } = strandedPrimary(true);
    const a = h.reps.get(replica)!;
    const target = metaOf(h.reps.get(primary)!, part)!.pos!; // where A's catch-up was to end
    expect(metaOf(h.reps.get(learner)!, part)!.pos!.seq).toBeLessThan(target.seq); // B missed the write there
    h.ticks(40);
    expect(metaOf(a, part)!.pos).toBeNull(); // no unclean election: still waiting
    expect(canServe(a, part)).toBe(false);
    const waiting = h.submit(replica, get(k2));
    expect(h.result(waiting)).toBe('pending'); // parked for parkTicks, then refused
    h.ticks(10);
    expect(h.result(waiting)).toBe('unavailable takeover');
    // P comes back as a joining member: its log contains the target, so A copies it.
    h.boot(primary);
    h.change({ kind: 'mark-joining', id: primary });
    h.ticks(40);
    expect(metaOf(a, part)!.pos).toEqual(target);
    expect(canServe(a, part)).toBe(true);
    expect(h.result(h.submit(replica, get(k2)))).toBe('ok acked');
    expect(h.value(learner, 'k')).toBe('v2'); // B was brought to A's log
  });
});
