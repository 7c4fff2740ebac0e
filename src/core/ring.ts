// The consistent-hash ring with virtual nodes (DESIGN §3 "Ring and partitions"): Dynamo's
// strategy 3, fixed equal partitions whose preference lists come from vnode tokens.
//
// The ring is a pure function of the membership config: every node that holds the same
// config epoch computes the same table, and heartbeats carry `checksum` to prove it.
//
// - The 64-bit hash space is cut into P equal partitions; partition p covers
//   [p*2^64/P, (p+1)*2^64/P) and a key lands in floor(hash64(key) * P / 2^64).
// - Each member of the config, whatever its status, puts V tokens at hash64(`${id}#${i}`).
//   Status never moves tokens: a node that is down keeps its place, so marking it down
//   and back up moves no data. Only adding or removing a member moves tokens.
// - The preference list of p is the first RF distinct members met walking clockwise from
//   the start of p (the first token >= start, wrapping). Equal tokens are ordered by
//   node id, so the walk is a total order.
// - The primary of p is the first `active` member of its preference list.
//
// Token positions are bigints: the ring is built only when the config changes, so
// clarity beats speed here. The per-request path is `partitionOf` (hash.ts) plus an
// array lookup.

import { hash64, hashHex, partitionStart, PARTITIONS_MAX } from './hash.js';
import { assert, partitionId, type NodeId, type PartitionId } from './types.js';

export { partitionOf } from './hash.js';

export type MemberStatus = 'active' | 'down' | 'joining' | 'leaving';

export interface RingMember {
  readonly id: NodeId;
  readonly status: MemberStatus;
}

export interface RingConfig {
  readonly partitions: number;
  readonly vnodesPerNode: number;
  readonly replicationFactor: number;
  readonly members: readonly RingMember[];
}

export interface RingToken {
  readonly token: bigint;
  readonly node: NodeId;
}

export interface Ring {
  readonly partitions: number;
  readonly replicationFactor: number;
  /** All vnode tokens, sorted by (token, node id). For drawing and debugging. */
  readonly tokens: readonly RingToken[];
  /**
   * Identifies the whole table: 16 hex digits of hash64 over every partition's preference
   * list and primary. Equal checksums mean equal answers from `preference` and `primaryOf`.
   */
  readonly checksum: string;
  /** The first min(RF, members) distinct members clockwise from the start of p. */
  preference(p: PartitionId): readonly NodeId[];
  /** The first active member of p's preference list, or undefined if none is active. */
  primaryOf(p: PartitionId): NodeId | undefined;
}

/** The token of a member's i-th virtual node. */
export function vnodeToken(id: NodeId, i: number): bigint {
  return hash64(`${id}#${i}`);
}

export function buildRing(cfg: RingConfig): Ring {
  assertConfig(cfg);
  const tokens = sortedTokens(cfg);
  const want = Math.min(cfg.replicationFactor, cfg.members.length);
  const active = new Set(cfg.members.filter((m) => m.status === 'active').map((m) => m.id));

  const preferences: (readonly NodeId[])[] = [];
  const primaries: (NodeId | undefined)[] = [];
  for (let p = 0; p < cfg.partitions; p++) {
    const start = partitionStart(partitionId(p), cfg.partitions);
    const list = walkClockwise(tokens, firstTokenAtOrAfter(tokens, start), want);
    preferences.push(Object.freeze(list));
    primaries.push(list.find((id) => active.has(id)));
  }

  const checkPartition = (p: PartitionId): void => {
    assert(Number.isInteger(p) && p >= 0 && p < cfg.partitions, `partition ${p} out of [0, ${cfg.partitions})`);
  };

  return {
    partitions: cfg.partitions,
    replicationFactor: cfg.replicationFactor,
    tokens,
    checksum: checksumOf(cfg, preferences, primaries),
    preference(p) {
      checkPartition(p);
      return preferences[p]!;
    },
    primaryOf(p) {
      checkPartition(p);
      return primaries[p];
    },
  };
}

// Config errors are programmer errors here: the membership module validates configs
// before they are decided, so the ring only asserts.
function assertConfig(cfg: RingConfig): void {
  assert(
    Number.isInteger(cfg.partitions) && cfg.partitions >= 1 && cfg.partitions <= PARTITIONS_MAX,
    `partitions must be an integer in [1, ${PARTITIONS_MAX}]`,
  );
  assert(Number.isInteger(cfg.vnodesPerNode) && cfg.vnodesPerNode >= 1, `vnodesPerNode must be a positive integer`);
  assert(
    Number.isInteger(cfg.replicationFactor) && cfg.replicationFactor >= 1,
    `replicationFactor must be a positive integer`,
  );
  const ids = new Set(cfg.members.map((m) => m.id));
  assert(ids.size === cfg.members.length, 'ring members must have distinct ids');
}

function sortedTokens(cfg: RingConfig): readonly RingToken[] {
  const tokens: RingToken[] = [];
  for (const m of cfg.members) {
    for (let i = 0; i < cfg.vnodesPerNode; i++) {
      tokens.push(Object.freeze({ token: vnodeToken(m.id, i), node: m.id }));
    }
  }
  tokens.sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  return Object.freeze(tokens);
}

/** Index of the first token >= start, or tokens.length if there is none (wrap to 0). */
function firstTokenAtOrAfter(tokens: readonly RingToken[], start: bigint): number {
  let lo = 0;
  let hi = tokens.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (tokens[mid]!.token < start) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function walkClockwise(tokens: readonly RingToken[], from: number, want: number): NodeId[] {
  const list: NodeId[] = [];
  for (let step = 0; step < tokens.length && list.length < want; step++) {
    const node = tokens[(from + step) % tokens.length]!.node;
    if (!list.includes(node)) list.push(node);
  }
  return list;
}

// Canonical text: "P=<P>;RF=<RF>", then one "|<p>:<primary or ->:<id>,<id>,..." per
// partition. It is independent of the order in which members were listed.
function checksumOf(
  cfg: RingConfig,
  preferences: readonly (readonly NodeId[])[],
  primaries: readonly (NodeId | undefined)[],
): string {
  const parts = [`P=${cfg.partitions};RF=${cfg.replicationFactor}`];
  for (let p = 0; p < preferences.length; p++) {
    parts.push(`${p}:${primaries[p] ?? '-'}:${preferences[p]!.join(',')}`);
  }
  return hashHex(parts.join('|'));
}
