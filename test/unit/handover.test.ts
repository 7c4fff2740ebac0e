// A planned change of primary (rule 3, "handover"): the previous epoch's primary was
// serving and stops when it adopts the new epoch; the new primary's sync reaches it in the
// new epoch, so no lease of it can still be in use and the new primary serves at once. A
// primary that is gone (crashed, cut off) leaves leases that must be waited out.
//
// Script-like, as learner-confirm.test.ts: three nodes, a hand-driven network, a memory
// store per node, Readies carried out at once.
import { describe, expect, it } from 'vitest';
import { canServe, defaultRepTiming, type ClientOp } from '../../src/core/replication.js';
import { buildRing } from '../../src/core/ring.js';
import { partitionId, type NodeId } from '../../src/core/types.js';
import { harnessIds, harnessKeys, harnessParams, RepHarness } from '../support/rep-harness.js';

const P = harnessParams.partitions;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const keys = harnessKeys;
const put = (p: number, value: string): ClientOp => ({ type: 'put', key: keys[p]!, value: bytes(value) });

/** n3 leaves (mark-down) and comes back as a joining member, caught up; returns its partitions. */
function returned(h: RepHarness): { r: NodeId; mine: number[] } {
  const r = harnessIds[2]!;
  const ring = buildRing(h.cfg);
  const mine = Array.from({ length: P }, (_, p) => p).filter((p) => ring.primaryOf(partitionId(p)) === r);
  expect(mine.length).toBeGreaterThan(0);
  h.ticks(20);
  h.down.add(r);
  h.change({ kind: 'mark-down', id: r });
  h.ticks(30);
  // The interim primaries serve r's partitions.
  for (const p of mine) expect(h.client(buildRing(h.cfg).primaryOf(partitionId(p))!, put(p, 'interim'))).toMatchObject({ status: 'ok' });
  h.boot(r);
  h.change({ kind: 'mark-joining', id: r });
  h.ticks(30);
  return { r, mine };
}

/** Ticks until `node` serves partition p as its primary, and then a put of it succeeds there. */
function ticksUntilServed(h: RepHarness, node: NodeId, p: number): number {
  for (let t = 0; t < 100; t++) {
    if (canServe(h.reps.get(node)!, p)) {
      expect(h.client(node, put(p, 'after'))).toMatchObject({ status: 'ok' });
      return t;
    }
    h.ticks(1);
  }
  throw new Error('never served');
}

describe('handover of a partition from a serving primary', () => {
  it('the new primary serves without waiting out the old primary’s lease', () => {
    const h = new RepHarness();
    const { r, mine } = returned(h);
    h.change({ kind: 'mark-active', id: r });
    for (const p of mine) expect(ticksUntilServed(h, r, p)).toBeLessThan(defaultRepTiming.leaseTicks / 4);
  });

  it('a new primary waits out the lease of an old primary that restarted (it cannot tell what it served)', () => {
    const h = new RepHarness();
    const { r, mine } = returned(h);
    const p = mine[0]!;
    const interim = buildRing(h.cfg).primaryOf(partitionId(p))!;
    expect(interim).not.toBe(r);
    // The interim primary crashes as the switch is decided; the new primary's sync waits for it.
    h.down.add(interim);
    h.change({ kind: 'mark-active', id: r });
    h.ticks(5);
    expect(canServe(h.reps.get(r)!, p)).toBe(false);
    h.boot(interim);
    expect(ticksUntilServed(h, r, p)).toBeGreaterThanOrEqual(defaultRepTiming.leaseTicks / 2);
  });
});
