// Membership transitions (pure functions) and the membership node driven by a tiny
// lossless harness: election, forwarding, 'unavailable', failure-driven changes, restart.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  applyChange,
  failureDrivenChange,
  initialConfig,
  isChangeError,
  validateConfig,
  votersOf,
  type ClusterConfig,
  type ConfigChange,
} from '../../src/core/membership.js';
import {
  applyPersistOp,
  createNode,
  currentConfig,
  currentEpoch,
  emptyPersistedState,
  isLeader,
  leaderOf,
  propose,
  restoreNode,
  step,
  tick,
  type AdminReply,
  type MembershipNode,
  type NodeOptions,
  type PersistedState,
  type Ready,
} from '../../src/core/node.js';
import { nodeId, type NodeId } from '../../src/core/types.js';

const ids = ['n1', 'n2', 'n3'].map(nodeId);
const urls = (id: NodeId) => ({ id, peerUrl: `http://${id}:7380`, clientUrl: `http://${id}:7379` });
const params = { replicationFactor: 3, minInSync: 2, partitions: 8, vnodesPerNode: 4 };
const cfg1 = initialConfig(ids.map(urls), params);
const n1 = ids[0] as NodeId;
const n2 = ids[1] as NodeId;
const n3 = ids[2] as NodeId;
const n4 = nodeId('n4');

function ok(c: ClusterConfig | { error: string }): ClusterConfig {
  if (isChangeError(c)) throw new Error(c.error);
  return c;
}

describe('membership transitions', () => {
  it('starts at epoch 1 with every initial member active, sorted', () => {
    expect(cfg1.epoch).toBe(1);
    expect(cfg1.members.map((m) => `${m.id}:${m.status}`)).toEqual(['n1:active', 'n2:active', 'n3:active']);
    expect(votersOf(cfg1)).toEqual(ids);
  });

  it('follows active -> down -> joining -> active, one epoch per change', () => {
    const c2 = ok(applyChange(cfg1, { kind: 'mark-down', id: n2 }));
    const c3 = ok(applyChange(c2, { kind: 'mark-joining', id: n2 }));
    const c4 = ok(applyChange(c3, { kind: 'mark-active', id: n2 }));
    expect([c2.epoch, c3.epoch, c4.epoch]).toEqual([2, 3, 4]);
    expect(c4.members).toEqual(cfg1.members);
  });

  it('refuses illegal transitions', () => {
    expect(applyChange(cfg1, { kind: 'mark-joining', id: n2 })).toHaveProperty('error');
    expect(applyChange(cfg1, { kind: 'mark-active', id: n2 })).toHaveProperty('error');
    expect(applyChange(cfg1, { kind: 'mark-down', id: n4 })).toHaveProperty('error');
    expect(applyChange(cfg1, { kind: 'add', member: urls(n2) })).toHaveProperty('error');
    expect(applyChange(cfg1, { kind: 'remove', id: n4 })).toHaveProperty('error');
    const down = ok(applyChange(cfg1, { kind: 'mark-down', id: n2 }));
    expect(applyChange(down, { kind: 'mark-down', id: n2 })).toHaveProperty('error');
  });

  it('adds as joining and incoming; one move at a time; removes only what owns no data', () => {
    const c2 = ok(applyChange(cfg1, { kind: 'add', member: urls(n4) }));
    expect(c2.members.find((m) => m.id === n4)).toMatchObject({ status: 'joining', placement: 'incoming' });
    // A second move waits for the first, with a reason that names it.
    expect(applyChange(c2, { kind: 'decommission', id: n1 })).toEqual({ error: expect.stringContaining('n4 is being added') });
    expect(applyChange(c2, { kind: 'add', member: urls(nodeId('n5')) })).toHaveProperty('error');
    // Activation places the tokens: the add is over.
    const c3 = ok(applyChange(c2, { kind: 'mark-active', id: n4 }));
    expect(c3.members.find((m) => m.id === n4)).toMatchObject({ status: 'active', placement: 'owner' });
    // An owner is decommissioned, then removed; never removed directly.
    expect(applyChange(c3, { kind: 'remove', id: n3 })).toEqual({ error: expect.stringContaining('decommission') });
    const c4 = ok(applyChange(c3, { kind: 'decommission', id: n3 }));
    expect(c4.members.find((m) => m.id === n3)?.placement).toBe('outgoing');
    const c5 = ok(applyChange(c4, { kind: 'remove', id: n3 }));
    expect(votersOf(c5)).toEqual([n1, n2, n4]);
    // An incoming member can be removed (the add is cancelled).
    expect(votersOf(ok(applyChange(c2, { kind: 'remove', id: n4 })))).toEqual([n1, n2, n3]);
    // Never below minInSync owners, one of them active.
    const two = ok(applyChange(ok(applyChange(cfg1, { kind: 'decommission', id: n3 })), { kind: 'remove', id: n3 }));
    expect(applyChange(two, { kind: 'decommission', id: n2 })).toEqual({ error: expect.stringContaining('fewer than minInSync') });
  });

  it('any sequence of changes keeps configs valid: unique sorted ids, epoch + 1 per legal change', () => {
    const anyId = fc.constantFrom('n1', 'n2', 'n3', 'n4', 'n5').map(nodeId);
    const change: fc.Arbitrary<ConfigChange> = fc.oneof(
      anyId.map((id) => ({ kind: 'mark-down' as const, id })),
      anyId.map((id) => ({ kind: 'mark-joining' as const, id })),
      anyId.map((id) => ({ kind: 'mark-active' as const, id })),
      anyId.map((id) => ({ kind: 'add' as const, member: urls(id) })),
      anyId.map((id) => ({ kind: 'remove' as const, id })),
      fc.constant({ kind: 'noop' as const }),
    );
    fc.assert(
      fc.property(fc.array(change, { maxLength: 40 }), (changes) => {
        let c = cfg1;
        for (const ch of changes) {
          const next = applyChange(c, ch);
          if (isChangeError(next)) continue;
          expect(validateConfig(next)).toBeNull();
          expect(next.epoch).toBe(c.epoch + 1);
          expect(next.members.length).toBeGreaterThanOrEqual(c.minInSync);
          c = next;
        }
      }),
    );
  });

  it('the leader proposes mark-down, then mark-joining, then mark-active', () => {
    const all = () => true;
    expect(failureDrivenChange(cfg1, n1, all, all)).toBeNull();
    expect(failureDrivenChange(cfg1, n1, (id) => id !== n3, all)).toEqual({ kind: 'mark-down', id: n3 });
    const down = ok(applyChange(cfg1, { kind: 'mark-down', id: n3 }));
    expect(failureDrivenChange(down, n1, (id) => id !== n3, all)).toBeNull(); // still silent
    expect(failureDrivenChange(down, n1, all, all)).toEqual({ kind: 'mark-joining', id: n3 });
    const joining = ok(applyChange(down, { kind: 'mark-joining', id: n3 }));
    expect(failureDrivenChange(joining, n1, all, () => false)).toBeNull(); // not caught up yet
    expect(failureDrivenChange(joining, n1, all, all)).toEqual({ kind: 'mark-active', id: n3 });
    expect(failureDrivenChange(cfg1, n1, () => false, all)).toEqual({ kind: 'mark-down', id: n2 }); // never itself
  });
});

// ---------------------------------------------------------------------------------------
// A lossless, instant harness around createNode/step/tick/propose.

interface Harness {
  nodes: Map<NodeId, MembershipNode | null>;
  disks: Map<NodeId, PersistedState>;
  isolated: Set<NodeId>;
  replies: Map<NodeId, AdminReply[]>;
}

function harness(members: NodeId[] = ids, extra: NodeId[] = []): Harness {
  const h: Harness = { nodes: new Map(), disks: new Map(), isolated: new Set(), replies: new Map() };
  for (const id of [...members, ...extra]) {
    h.nodes.set(id, createNode(optsFor(id, members)));
    h.disks.set(id, emptyPersistedState());
    h.replies.set(id, []);
  }
  return h;
}

function optsFor(id: NodeId, members: NodeId[]): NodeOptions {
  return { id, clusterName: 't', initialMembers: members.map(urls), cluster: params, seed: id.charCodeAt(1), checkInvariants: true };
}

/** Carry out a Ready the way the runtime must: persist, then send (deliver at once), then reply. */
function run(h: Harness, from: NodeId, r: Ready): void {
  const queue: Array<[NodeId, Ready]> = [[from, r]];
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
    const [id, ready] = item;
    h.disks.set(id, ready.persist.reduce(applyPersistOp, h.disks.get(id) ?? emptyPersistedState()));
    for (const env of ready.send) {
      const dest = h.nodes.get(env.to);
      if (dest == null || h.isolated.has(id) || h.isolated.has(env.to)) continue;
      queue.push([env.to, step(dest, JSON.parse(JSON.stringify(env.msg)))]);
    }
    h.replies.get(id)?.push(...ready.replies);
  }
}

function ticks(h: Harness, n: number): void {
  for (let i = 0; i < n; i++) {
    for (const [id, node] of h.nodes) if (node !== null) run(h, id, tick(node));
  }
}

function node(h: Harness, id: NodeId): MembershipNode {
  const n = h.nodes.get(id);
  if (n == null) throw new Error(`${id} is down`);
  return n;
}

function theLeader(h: Harness): NodeId {
  const leaders = [...h.nodes].filter(([, n]) => n !== null && isLeader(n)).map(([id]) => id);
  expect(leaders).toHaveLength(1);
  return leaders[0] as NodeId;
}

describe('membership node', () => {
  it('elects one leader that every member follows', () => {
    const h = harness();
    ticks(h, 30);
    const leader = theLeader(h);
    for (const id of ids) expect(leaderOf(node(h, id))).toBe(leader);
  });

  it('forwards an admin request from a follower to the leader and commits it', () => {
    const h = harness(ids, [n4]);
    ticks(h, 30);
    const follower = ids.find((id) => id !== theLeader(h)) as NodeId;
    const r = propose(node(h, follower), { kind: 'add', member: urls(n4) }, 'req-1');
    expect(r.events).toContainEqual({ type: 'forwarded', requestId: 'req-1', to: theLeader(h) });
    run(h, follower, r);
    expect(h.replies.get(follower)).toEqual([{ requestId: 'req-1', result: { status: 'committed', epoch: 2 } }]);
    ticks(h, 30); // n4 learns it was added, heartbeats, and the leader activates it
    for (const id of [...ids, n4]) {
      expect(currentConfig(node(h, id)).members.map((m) => `${m.id}:${m.status}`)).toEqual([
        'n1:active',
        'n2:active',
        'n3:active',
        'n4:active',
      ]);
    }
  });

  it('rejects an illegal change with the leader\'s reason', () => {
    const h = harness();
    ticks(h, 30);
    run(h, n1, propose(node(h, n1), { kind: 'remove', id: n4 }, 'req-2'));
    expect(h.replies.get(n1)?.[0]?.result).toEqual({ status: 'rejected', error: 'n4 is not a member' });
  });

  it('answers unavailable on the minority side: at once without a quorum, else after the timeout', () => {
    const h = harness();
    ticks(h, 30);
    const lonely = theLeader(h);
    h.isolated.add(lonely);
    run(h, lonely, propose(node(h, lonely), { kind: 'noop' }, 'req-3')); // still believes it can lead
    ticks(h, 45);
    expect(h.replies.get(lonely)).toEqual([{ requestId: 'req-3', result: { status: 'unavailable', reason: 'timeout' } }]);
    run(h, lonely, propose(node(h, lonely), { kind: 'noop' }, 'req-4'));
    expect(h.replies.get(lonely)?.[1]).toEqual({ requestId: 'req-4', result: { status: 'unavailable', reason: 'no-quorum' } });
  });

  it('marks a silent member down, and back to joining and active when it returns', () => {
    const h = harness();
    ticks(h, 30);
    const victim = ids.find((id) => id !== theLeader(h)) as NodeId;
    h.isolated.add(victim);
    ticks(h, 40);
    const leader = node(h, theLeader(h));
    expect(currentConfig(leader).members.find((m) => m.id === victim)?.status).toBe('down');
    h.isolated.delete(victim);
    ticks(h, 40);
    for (const id of ids) expect(currentConfig(node(h, id)).members.every((m) => m.status === 'active')).toBe(true);
    expect(currentEpoch(leader)).toBe(4); // down, joining, active
  });

  it('restores promises and configs from its persisted ops', () => {
    const h = harness();
    ticks(h, 30);
    const id = ids.find((x) => x !== theLeader(h)) as NodeId;
    const before = node(h, id);
    const restored = restoreNode(optsFor(id, ids), h.disks.get(id) ?? emptyPersistedState());
    expect(restored.acceptor.promised).toEqual(before.acceptor.promised);
    expect(currentConfig(restored)).toEqual(currentConfig(before));
  });
});
