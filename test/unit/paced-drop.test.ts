// Rule 6, the drop: a node that no longer owns or learns partitions deletes its copies a
// few partitions per tick (replicationLimits.dropsPerTickPer128), not all in the Ready of
// the config change. A drop is one store write that deletes every record of a partition;
// all of them at once held an old owner's event loop for 100-290 ms at a rebalance switch.
//
// Script-like, as handover.test.ts: three nodes, a hand-driven network, a memory store per
// node, Readies carried out at once.
import { describe, expect, it } from 'vitest';
import { type ClientOp } from '../../src/core/replication.js';
import { buildRing } from '../../src/core/ring.js';
import { partitionId } from '../../src/core/types.js';
import { harnessIds, harnessKeys, harnessParams, RepHarness } from '../support/rep-harness.js';

const P = harnessParams.partitions;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const keys = harnessKeys;
const put = (p: number, value: string): ClientOp => ({ type: 'put', key: keys[p]!, value: bytes(value) });

describe('dropping released partitions', () => {
  it('a removed node drops its partitions one per tick, and then holds nothing', () => {
    const h = new RepHarness();
    h.ticks(20);
    for (let p = 0; p < P; p++) expect(h.client(buildRing(h.cfg).primaryOf(partitionId(p))!, put(p, 'v'))).toMatchObject({ status: 'ok' });
    const gone = harnessIds[2]!;
    expect(h.data.get(gone)!.size).toBe(P);
    h.change({ kind: 'decommission', id: gone });
    h.ticks(5);
    const from = h.events.length;
    h.change({ kind: 'remove', id: gone });
    const drops = (): number => h.events.slice(from).filter((e) => e.node === gone && e.event.type === 'dropped').length;
    // Nothing in the config change's own Ready: its records are all still there.
    expect(drops()).toBe(0);
    expect(h.data.get(gone)!.size).toBe(P);
    const perTick: number[] = [];
    for (let t = 0; t < P + 2; t++) {
      h.ticks(1);
      perTick.push(drops());
    }
    // One more partition each tick, until all are gone.
    expect(perTick.slice(0, P)).toEqual(Array.from({ length: P }, (_, i) => i + 1));
    expect(drops()).toBe(P);
    expect(h.data.get(gone)!.size).toBe(0);
    // The remaining members still serve every partition.
    for (let p = 0; p < P; p++) expect(h.client(buildRing(h.cfg).primaryOf(partitionId(p))!, put(p, 'w'))).toMatchObject({ status: 'ok' });
  });
});
