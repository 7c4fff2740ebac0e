// The client's routing, given a partition map: which partition a key is in (the server's
// documented hash), which node a request goes to, and where it goes when that node is
// avoided or the map is unknown.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PartitionMap, Router, type ClusterView } from '../../src/client/routing.js';
import { hash64Bytes, partitionOfHash } from '../../src/core/hash.js';

const url = (id: string): string => `http://10.0.0.${id.slice(1)}:7379`;

/** A GET /v1/cluster body: P partitions, primaries and preference lists cycling over the members. */
function view(opts: { epoch?: number; partitions?: number; members?: Record<string, string> } = {}): ClusterView {
  const members = opts.members ?? { n1: 'active', n2: 'active', n3: 'active' };
  const ids = Object.keys(members);
  const P = opts.partitions ?? 128;
  return {
    epoch: opts.epoch ?? 7,
    partitionCount: P,
    members: ids.map((id) => ({ id, clientUrl: url(id), status: members[id]! })),
    partitions: Array.from({ length: P }, (_, p) => {
      const preference = ids.map((_, i) => ids[(p + i) % ids.length]!);
      return { partition: p, primary: preference.find((id) => members[id] === 'active') ?? null, preference };
    }),
  };
}

const utf8 = new TextEncoder();

describe('PartitionMap', () => {
  it('puts a key in the partition the server computes (docs/hashing.md vectors)', () => {
    const map = new PartitionMap(view());
    expect(map.route('user:42').partition).toBe(76);
    expect(map.route('').partition).toBe(119);
    expect(map.route('ключ').partition).toBe(44);
    expect(new PartitionMap(view({ partitions: 1 })).route('user:42').partition).toBe(0);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.constantFrom(1, 7, 128, 4096), (key, P) => {
        expect(new PartitionMap(view({ partitions: P })).route(key).partition).toBe(partitionOfHash(hash64Bytes(utf8.encode(key)), P));
      }),
      { numRuns: 300 },
    );
  });

  it('lists the primary, then the other active members of the preference list', () => {
    const map = new PartitionMap(view({ members: { n1: 'down', n2: 'active', n3: 'active', n4: 'joining' } }));
    // Partition 0's preference is n1, n2, n3, n4: n1 is down, so n2 is the primary.
    const r = map.route(keyIn(map, 0));
    expect(r).toMatchObject({ partition: 0, primary: 'n2', candidates: ['n2', 'n3'] });
    expect(map.activeOrigins).toEqual([url('n2'), url('n3')]);
    expect(map.urlOf('n1')).toBe(url('n1'));
    expect(map.nodeAt(url('n3'))).toBe('n3');
    expect(map.nodeAt('http://elsewhere:1')).toBeUndefined();
  });

  it('has no candidates for a partition without a primary', () => {
    const map = new PartitionMap(view({ members: { n1: 'down', n2: 'down' } }));
    expect(map.route('k')).toMatchObject({ primary: null, candidates: [] });
  });

  it('takes client URLs from nodeUrls before the advertised ones, as origins', () => {
    const map = new PartitionMap(view(), { n2: 'http://127.0.0.1:7389/' });
    expect(map.urlOf('n2')).toBe('http://127.0.0.1:7389');
    expect(map.nodeAt('http://127.0.0.1:7389')).toBe('n2');
    expect(map.nodeAt(url('n2'))).toBeUndefined();
  });

  it('parses a GET /v1/cluster body, ignoring fields it does not use, and refuses malformed ones', () => {
    const body = { cluster: 'demo', self: 'n1', leader: 'n1', ringChecksum: 'x', ...view({ epoch: 3 }) };
    expect(PartitionMap.fromClusterView(JSON.parse(JSON.stringify(body))).epoch).toBe(3);
    expect(() => PartitionMap.fromClusterView({ ...body, partitions: body.partitions.slice(1) })).toThrow(/partitions must list 0\.\.127/);
    expect(() => PartitionMap.fromClusterView({ ...body, epoch: 'x' })).toThrow(/epoch must be/);
    expect(() => PartitionMap.fromClusterView({ ...body, partitionCount: 0 })).toThrow(/partitionCount must be/);
    expect(() => PartitionMap.fromClusterView(null)).toThrow(/GET \/v1\/cluster: the body is not an object/);
    expect(() => PartitionMap.fromClusterView({ ...body, members: [{ id: 'n1', status: 'active' }] })).toThrow(/members\.0 must have/);
    const broken = (i: number, change: object) => ({ ...body, partitions: body.partitions.map((p, j) => (j === i ? { ...p, ...change } : p)) });
    expect(() => PartitionMap.fromClusterView(broken(5, { primary: 1 }))).toThrow(/partitions\.5\.primary/);
    expect(() => PartitionMap.fromClusterView(broken(9, { preference: 'n1' }))).toThrow(/partitions\.9\.preference/);
    expect(() => PartitionMap.fromClusterView(broken(3, { partition: 4 }))).toThrow(/in order/);
  });
});

describe('Router', () => {
  const seeds = ['http://seed-a:7379', 'http://seed-b:7379'];

  it('without a map, goes to the seeds in order, then round-robin', () => {
    const r = new Router(seeds, 1000);
    expect([r.pick('k', 0), r.pick(null, 0), r.pick('k', 0)].map((t) => t.origin)).toEqual([seeds[0], seeds[1], seeds[0]]);
    expect(r.pick('k', 0)).toMatchObject({ node: null, primary: false });
  });

  it('sends a keyed request to its primary, and a request without a key to any endpoint', () => {
    const r = new Router(seeds, 1000);
    const map = new PartitionMap(view());
    r.setMap(map);
    for (let i = 0; i < 200; i++) {
      const key = `key-${i}`;
      const primary = map.route(key).primary!;
      expect(r.pick(key, 0)).toEqual({ origin: url(primary), node: primary, primary: true });
    }
    const anyTargets = new Set(Array.from({ length: 5 }, () => r.pick(null, 0).origin));
    expect(anyTargets).toEqual(new Set([...seeds, url('n1'), url('n2'), url('n3')]));
  });

  it('passes over an avoided primary to the next active member of the preference list, until avoidMs is over', () => {
    const r = new Router(seeds, 1000);
    const map = new PartitionMap(view());
    r.setMap(map);
    const key = keyIn(map, 0); // preference n1, n2, n3
    r.avoid(url('n1'), 100);
    expect(r.pick(key, 500)).toEqual({ origin: url('n2'), node: 'n2', primary: false });
    r.avoid(url('n2'), 100);
    expect(r.pick(key, 500)).toEqual({ origin: url('n3'), node: 'n3', primary: false });
    // Every candidate avoided: any endpoint that is not.
    r.avoid(url('n3'), 100);
    expect(seeds).toContain(r.pick(key, 500).origin);
    // n1's avoidance ends at 1100; an answer from n2 ends its avoidance at once.
    expect(r.pick(key, 1100).origin).toBe(url('n1'));
    r.avoid(url('n1'), 1100);
    r.answered(url('n2'));
    expect(r.pick(key, 1200).origin).toBe(url('n2'));
  });

  it('when every endpoint is avoided, picks the one freed first', () => {
    const r = new Router(seeds, 1000);
    r.avoid(seeds[1]!, 0);
    r.avoid(seeds[0]!, 10);
    expect(r.pick('k', 20).origin).toBe(seeds[1]);
    expect(r.endpointsByPreference(20)).toEqual(seeds);
    r.answered(seeds[1]!);
    expect(r.endpointsByPreference(20)).toEqual([seeds[1], seeds[0]]);
  });

  it('keeps the newer map when an older epoch arrives from a lagging node', () => {
    const r = new Router(seeds, 1000);
    expect(r.setMap(new PartitionMap(view({ epoch: 5 })))).toBe(true);
    expect(r.setMap(new PartitionMap(view({ epoch: 4, members: { n1: 'down', n2: 'active', n3: 'active' } })))).toBe(false);
    expect(r.partitionMap?.epoch).toBe(5);
    expect(r.setMap(new PartitionMap(view({ epoch: 5 })))).toBe(true);
  });

  it('needs an endpoint', () => {
    expect(() => new Router([], 1000)).toThrow(/at least one endpoint/);
  });
});

/** A key whose partition is p. */
function keyIn(map: PartitionMap, p: number): string {
  for (let i = 0; ; i++) if (map.route(`k${i}`).partition === p) return `k${i}`;
}
