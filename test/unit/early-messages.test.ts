// Messages from an epoch a node has not learned yet are held, not dropped, and delivered
// once it adopts that epoch: a config change then costs no retransmission period. Holding
// is bounded, and held messages are dropped if the epoch is not learned in time.
//
// Script-like, as partition.test.ts: three nodes, a hand-driven network, a memory store
// per node, Readies carried out at once.
import { describe, expect, it } from 'vitest';
import { applyChange, isChangeError, type ClusterConfig } from '../../src/core/membership.js';
import { setConfig, tick, type ClientOp } from '../../src/core/replication.js';
import { partitionOf } from '../../src/core/hash.js';
import { buildRing } from '../../src/core/ring.js';
import { partitionId, type NodeId } from '../../src/core/types.js';
import { harnessParams, RepHarness } from '../support/rep-harness.js';

const put = (key: string, value: string): ClientOp => ({ type: 'put', key, value: new TextEncoder().encode(value) });

function nextConfig(cfg: ClusterConfig): ClusterConfig {
  const next = applyChange(cfg, { kind: 'noop' });
  if (isChangeError(next)) throw new Error(next.error);
  return next;
}

/** A put on k's primary after only the primary has adopted the next epoch. */
function putAcrossEpochs(): { h: RepHarness; id: string; replicas: NodeId[]; next: ClusterConfig } {
  const h = new RepHarness();
  h.ticks(20);
  const [primary, ...replicas] = buildRing(h.cfg).preference(partitionId(partitionOf('k', harnessParams.partitions))) as NodeId[];
  const next = nextConfig(h.cfg);
  h.apply(primary!, setConfig(h.reps.get(primary!)!, next));
  h.flush();
  const id = h.submit(primary!, put('k', 'v'));
  return { h, id, replicas, next };
}

describe('messages from an epoch not learned yet', () => {
  it('are delivered as soon as the epoch is adopted: a write in flight across a config change commits without a retransmission', () => {
    const { h, id, replicas, next } = putAcrossEpochs();
    expect(h.reply(id)).toBe('pending'); // the replicas are still at the old epoch
    for (const r of replicas) expect(h.reps.get(r)!.early.some((e) => e.msg.type === 'rep-append')).toBe(true);
    h.cfg = next;
    for (const r of replicas) h.apply(r, setConfig(h.reps.get(r)!, next));
    h.flush(); // no tick: nothing is retransmitted
    expect(h.reply(id)).toMatchObject({ status: 'ok', created: true });
    for (const r of replicas) expect(h.reps.get(r)!.early).toEqual([]);
  });

  it('the other way round: entries the replicas refused (they adopted first) are sent again when the primary adopts', () => {
    const h = new RepHarness();
    h.ticks(20);
    const [primary, ...replicas] = buildRing(h.cfg).preference(partitionId(partitionOf('k', harnessParams.partitions))) as NodeId[];
    const next = nextConfig(h.cfg);
    for (const r of replicas) h.apply(r, setConfig(h.reps.get(r)!, next));
    h.flush();
    const id = h.submit(primary!, put('k', 'v'));
    expect(h.reply(id)).toBe('pending'); // its appends carried the old epoch: fenced
    h.cfg = next;
    h.apply(primary!, setConfig(h.reps.get(primary!)!, next));
    h.flush(); // no tick
    expect(h.reply(id)).toMatchObject({ status: 'ok', created: true });
  });

  it('are dropped if the epoch is not learned within suspectTicks; the write then commits by retransmission', () => {
    const { h, id, replicas, next } = putAcrossEpochs();
    const rep = h.reps.get(replicas[0]!)!;
    expect(rep.early.length).toBeGreaterThan(0);
    // The replicas' clocks run (their own traffic is not the point here): the held messages age.
    for (let i = 0; i <= rep.timing.suspectTicks + 1; i++) for (const r of replicas) h.apply(r, { ...tick(h.reps.get(r)!), send: [] });
    expect(rep.early).toEqual([]);
    expect(rep.earlyBytes).toBe(0);
    h.cfg = next;
    for (const r of replicas) h.apply(r, setConfig(h.reps.get(r)!, next));
    h.ticks(10);
    expect(h.reply(id)).toMatchObject({ status: 'ok' });
  });
});

