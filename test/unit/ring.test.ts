import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { buildRing, vnodeToken, type MemberStatus, type Ring, type RingConfig, type RingMember } from '../../src/core/ring.js';
import { hash64, partitionOfHash, partitionStart } from '../../src/core/hash.js';
import { nodeId, partitionId, type NodeId, type PartitionId } from '../../src/core/types.js';

const ids = (n: number): NodeId[] => Array.from({ length: n }, (_, i) => nodeId(`n${i + 1}`));
const members = (list: readonly NodeId[], status: MemberStatus = 'active'): RingMember[] =>
  list.map((id) => ({ id, status, placement: 'owner' }));
const defaults = (list: readonly RingMember[]): RingConfig => ({
  partitions: 128,
  vnodesPerNode: 64,
  replicationFactor: 3,
  members: list,
});
const allPartitions = (ring: Ring): PartitionId[] =>
  Array.from({ length: ring.partitions }, (_, p) => partitionId(p));
const lists = (ring: Ring): NodeId[][] => allPartitions(ring).map((p) => [...ring.preference(p)]);

/** A deliberately naive ring: linear scans over all tokens, no binary search. */
function naivePreference(cfg: RingConfig, p: number): NodeId[] {
  const tokens = cfg.members
    .flatMap((m) => Array.from({ length: cfg.vnodesPerNode }, (_, i) => ({ t: hash64(`${m.id}#${i}`), n: m.id })))
    .sort((a, b) => (a.t === b.t ? a.n.localeCompare(b.n) : a.t < b.t ? -1 : 1));
  const start = partitionStart(partitionId(p), cfg.partitions);
  let from = tokens.findIndex((x) => x.t >= start);
  if (from < 0) from = 0;
  const out: NodeId[] = [];
  for (let k = 0; k < tokens.length; k++) {
    const n = tokens[(from + k) % tokens.length]!.n;
    if (!out.includes(n) && out.length < cfg.replicationFactor) out.push(n);
  }
  return out;
}

// Random small configs: ids from a pool, small V so that properties run fast.
const pool = ['a', 'b', 'c', 'n1', 'n2', 'n3', 'n4', 'n5', 'node-7', 'x9'].map(nodeId);
const arbConfig: fc.Arbitrary<RingConfig> = fc.record({
  partitions: fc.constantFrom(1, 2, 7, 16, 128, 1000),
  vnodesPerNode: fc.integer({ min: 1, max: 16 }),
  replicationFactor: fc.integer({ min: 1, max: 5 }),
  members: fc.uniqueArray(fc.constantFrom(...pool), { minLength: 1, maxLength: 7 }).map((l) => members(l)),
});

describe('ring at the defaults (P=128, V=64, RF=3)', () => {
  it('balances primaries and replicas over n1..n5 within 1.25x of the mean', () => {
    const ring = buildRing(defaults(members(ids(5))));
    const primary = new Map<NodeId, number>();
    const owned = new Map<NodeId, number>();
    for (const p of allPartitions(ring)) {
      const first = ring.preference(p)[0]!;
      primary.set(first, (primary.get(first) ?? 0) + 1);
      for (const n of ring.preference(p)) owned.set(n, (owned.get(n) ?? 0) + 1);
    }
    // Measured: primaries 24/23/23/29/29 (mean 25.6), replicas 73/87/73/69/82 (mean 76.8).
    expect(Math.max(...primary.values())).toBeLessThanOrEqual(1.25 * (128 / 5));
    expect(Math.max(...owned.values())).toBeLessThanOrEqual(1.25 * ((128 * 3) / 5));
    expect(primary.size).toBe(5);
  });

  it('gives every partition RF distinct members', () => {
    for (const n of [1, 2, 3, 5, 8]) {
      const ring = buildRing(defaults(members(ids(n))));
      for (const list of lists(ring)) {
        expect(list).toHaveLength(Math.min(3, n));
        expect(new Set(list).size).toBe(list.length);
      }
    }
  });

  it('keeps the same table across versions (rolling upgrades compare checksums)', () => {
    const ring = buildRing(defaults(members(ids(3))));
    expect(ring.checksum).toMatchInlineSnapshot(`"db17dd6963d5fd63"`);
    expect(ring.preference(partitionId(0))).toMatchInlineSnapshot(`
      [
        "n3",
        "n2",
        "n1",
      ]
    `);
    expect(ring.primaryOf(partitionId(0))).toBe('n3');
  });
});

describe('ring structure', () => {
  it('matches a naive reference implementation', () => {
    fc.assert(
      fc.property(arbConfig, (cfg) => {
        const ring = buildRing(cfg);
        for (let p = 0; p < cfg.partitions; p++) {
          expect(ring.preference(partitionId(p))).toEqual(naivePreference(cfg, p));
        }
      }),
      { numRuns: 60 },
    );
  });

  it('lists V tokens per member, sorted by (token, node)', () => {
    const cfg = defaults(members(ids(4)));
    const ring = buildRing(cfg);
    expect(ring.tokens).toHaveLength(4 * 64);
    for (let i = 1; i < ring.tokens.length; i++) {
      const a = ring.tokens[i - 1]!;
      const b = ring.tokens[i]!;
      expect(a.token < b.token || (a.token === b.token && a.node < b.node)).toBe(true);
    }
    expect(ring.tokens.filter((t) => t.node === 'n2').map((t) => t.token).sort()).toEqual(
      Array.from({ length: 64 }, (_, i) => vnodeToken(nodeId('n2'), i)).sort(),
    );
  });

  it('starts each walk at the first token at or after the partition start', () => {
    const ring = buildRing(defaults(members(ids(5))));
    for (const p of allPartitions(ring)) {
      const start = partitionStart(p, 128);
      const first = ring.tokens.find((t) => t.token >= start) ?? ring.tokens[0]!;
      expect(ring.preference(p)[0]).toBe(first.node);
      expect(partitionOfHash(start, 128)).toBe(p);
    }
  });

  it('handles an empty ring and a single member', () => {
    const empty = buildRing(defaults([]));
    expect(empty.preference(partitionId(5))).toEqual([]);
    expect(empty.primaryOf(partitionId(5))).toBeUndefined();
    const one = buildRing(defaults(members([nodeId('solo')])));
    for (const list of lists(one)) expect(list).toEqual(['solo']);
  });

  it('asserts on out-of-range partitions and bad configs', () => {
    const ring = buildRing(defaults(members(ids(3))));
    expect(() => ring.preference(partitionId(128))).toThrow();
    expect(() => ring.primaryOf(partitionId(-1))).toThrow();
    expect(() => buildRing({ ...defaults(members(ids(3))), partitions: 0 })).toThrow();
    expect(() => buildRing({ ...defaults(members(ids(3))), vnodesPerNode: 0 })).toThrow();
    expect(() => buildRing(defaults(members([nodeId('n1'), nodeId('n1')])))).toThrow();
  });
});

describe('determinism', () => {
  it('does not depend on build count or member order', () => {
    fc.assert(
      fc.property(arbConfig, fc.integer(), (cfg, seed) => {
        const shuffled = [...cfg.members].sort((a, b) => ((hash64(`${seed}${a.id}`) < hash64(`${seed}${b.id}`)) ? -1 : 1));
        const a = buildRing(cfg);
        const b = buildRing(cfg);
        const c = buildRing({ ...cfg, members: shuffled });
        expect(lists(b)).toEqual(lists(a));
        expect(lists(c)).toEqual(lists(a));
        expect(b.checksum).toBe(a.checksum);
        expect(c.checksum).toBe(a.checksum);
        expect(c.tokens).toEqual(a.tokens);
      }),
      { numRuns: 50 },
    );
  });

  it('changes the checksum when any answer changes', () => {
    const base = defaults(members(ids(5)));
    const ring = buildRing(base);
    expect(ring.checksum).toMatch(/^[0-9a-f]{16}$/);
    expect(buildRing({ ...base, replicationFactor: 2 }).checksum).not.toBe(ring.checksum);
    expect(buildRing({ ...base, members: members(ids(6)) }).checksum).not.toBe(ring.checksum);
    const n1Down = base.members.map((m) => (m.id === 'n1' ? { ...m, status: 'down' as const } : m));
    expect(buildRing({ ...base, members: n1Down }).checksum).not.toBe(ring.checksum);
  });
});

describe('primaryOf', () => {
  it('is the first active member of the preference list', () => {
    const base = defaults(members(ids(5)));
    const ring = buildRing(base);
    for (const p of allPartitions(ring)) expect(ring.primaryOf(p)).toBe(ring.preference(p)[0]);

    const p = partitionId(17);
    const [first, second, third] = ring.preference(p);
    for (const status of ['down', 'joining'] as const) {
      const changed = buildRing({
        ...base,
        members: base.members.map((m) => (m.id === first ? { ...m, status } : m)),
      });
      expect(changed.preference(p)).toEqual(ring.preference(p)); // status never moves tokens
      expect(changed.primaryOf(p)).toBe(second);
    }
    const twoDown = buildRing({
      ...base,
      members: base.members.map((m) => (m.id === first || m.id === second ? { ...m, status: 'down' as const } : m)),
    });
    expect(twoDown.primaryOf(p)).toBe(third);
  });

  it('is undefined when no member of the list is active', () => {
    const ring = buildRing(defaults([...members(ids(3), 'down')]));
    for (const p of allPartitions(ring)) expect(ring.primaryOf(p)).toBeUndefined();
  });

  it('never picks a non-active member', () => {
    const statuses = fc.constantFrom<MemberStatus>('active', 'down', 'joining');
    fc.assert(
      fc.property(arbConfig, fc.array(statuses, { minLength: 7, maxLength: 7 }), (cfg, st) => {
        const withStatus = { ...cfg, members: cfg.members.map((m, i) => ({ ...m, status: st[i]! })) };
        const ring = buildRing(withStatus);
        const active = new Set(withStatus.members.filter((m) => m.status === 'active').map((m) => m.id));
        for (let p = 0; p < cfg.partitions; p++) {
          const list = ring.preference(partitionId(p));
          expect(ring.primaryOf(partitionId(p))).toBe(list.find((n) => active.has(n)));
        }
      }),
      { numRuns: 50 },
    );
  });
});

describe('minimal movement', () => {
  // Consistent hashing: a new member's tokens are inserted into the clockwise walk and
  // nothing else moves, so every old list is the new list without the new member, as far
  // as it goes.
  const expectOnlyInsertion = (before: NodeId[][], after: NodeId[][], added: NodeId): number => {
    let changed = 0;
    for (let p = 0; p < before.length; p++) {
      const old = before[p]!;
      const now = after[p]!;
      if (now.join() === old.join()) continue;
      changed++;
      expect(now).toContain(added);
      const rest = now.filter((n) => n !== added);
      expect(old.slice(0, rest.length)).toEqual(rest);
    }
    return changed;
  };

  it('adding n6 changes only the lists that now include it', () => {
    const before = lists(buildRing(defaults(members(ids(5)))));
    const after = lists(buildRing(defaults(members(ids(6)))));
    const changed = expectOnlyInsertion(before, after, nodeId('n6'));
    expect(changed).toBeGreaterThan(0);
    expect(after.filter((l) => l.includes(nodeId('n6')))).toHaveLength(changed);
  });

  it('removing a member changes only the lists that contained it', () => {
    const before = lists(buildRing(defaults(members(ids(5)))));
    const gone = nodeId('n3');
    const after = lists(buildRing(defaults(members(ids(5).filter((n) => n !== gone)))));
    expect(expectOnlyInsertion(after, before, gone)).toBe(before.filter((l) => l.includes(gone)).length);
    for (const list of after) expect(list).not.toContain(gone);
  });

  it('holds for any config and any added member', () => {
    fc.assert(
      fc.property(arbConfig, fc.constantFrom(...pool), (cfg, extra) => {
        fc.pre(!cfg.members.some((m) => m.id === extra));
        const before = lists(buildRing(cfg));
        const after = lists(buildRing({ ...cfg, members: [...cfg.members, { id: extra, status: 'active', placement: 'owner' }] }));
        expectOnlyInsertion(before, after, extra);
      }),
      { numRuns: 60 },
    );
  });
});

describe('moves (incoming and outgoing members)', () => {
  const base = defaults(members(ids(4)));
  const withPlacement = (id: NodeId, placement: RingMember['placement'], list = base.members): RingConfig => ({
    ...base,
    members: list.map((m) => (m.id === id ? { ...m, placement } : m)),
  });

  it('an incoming member owns nothing yet and learns exactly what it will own', () => {
    const n5 = nodeId('n5');
    const incoming = buildRing({ ...base, members: [...base.members, { id: n5, status: 'joining', placement: 'incoming' }] });
    const now = buildRing(base);
    const after = buildRing({ ...base, members: [...base.members, { id: n5, status: 'active', placement: 'owner' }] });
    let learning = 0;
    for (const p of allPartitions(now)) {
      expect(incoming.preference(p)).toEqual(now.preference(p)); // owners keep serving
      expect(incoming.primaryOf(p)).toBe(now.primaryOf(p));
      const expected = after.preference(p).includes(n5) ? [n5] : [];
      expect(incoming.learners(p)).toEqual(expected);
      learning += expected.length;
    }
    expect(learning).toBeGreaterThan(0);
    expect(incoming.checksum).not.toBe(now.checksum); // learners are part of the table
  });

  it('an outgoing member keeps owning until it is removed; its successors learn', () => {
    const gone = nodeId('n2');
    const outgoing = buildRing(withPlacement(gone, 'outgoing'));
    const now = buildRing(base);
    const after = buildRing({ ...base, members: base.members.filter((m) => m.id !== gone) });
    for (const p of allPartitions(now)) {
      expect(outgoing.preference(p)).toEqual(now.preference(p));
      expect(outgoing.learners(p)).toEqual(after.preference(p).filter((id) => !now.preference(p).includes(id)));
      expect(outgoing.learners(p)).not.toContain(gone);
      // Every member that will own p either owns it now or is learning it.
      for (const id of after.preference(p)) expect([...outgoing.preference(p), ...outgoing.learners(p)]).toContain(id);
    }
  });

  it('has no learners when nothing moves', () => {
    const ring = buildRing(base);
    for (const p of allPartitions(ring)) expect(ring.learners(p)).toEqual([]);
  });
});

describe('primaries during a decommission', () => {
  it('move off the outgoing member while another owner is active, and stay put at its removal', () => {
    const base = defaults(members(ids(4)));
    const gone = nodeId('n2');
    const outgoing = buildRing({ ...base, members: base.members.map((m) => (m.id === gone ? { ...m, placement: 'outgoing' as const } : m)) });
    const removed = buildRing({ ...base, members: base.members.filter((m) => m.id !== gone) });
    for (let p = 0; p < base.partitions; p++) {
      const pid = partitionId(p);
      expect(outgoing.primaryOf(pid)).not.toBe(gone);
      expect(removed.primaryOf(pid)).toBe(outgoing.primaryOf(pid)); // the switch moves no primary
    }
    // The only active owner left: it stays the primary.
    const alone = buildRing({ ...base, members: base.members.map((m) => (m.id === gone ? { ...m, placement: 'outgoing' as const } : { ...m, status: 'down' as const })) });
    for (let p = 0; p < base.partitions; p++) {
      if (alone.preference(partitionId(p)).includes(gone)) expect(alone.primaryOf(partitionId(p))).toBe(gone);
    }
  });
});
