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
// - The primary of p is the first `active` member of its preference list, passing over an
//   outgoing one when another is active: a decommission moves primaries off the leaving
//   node at its start (a handover, while it is alive), so its removal moves none.
// - Only owners and outgoing members place tokens (membership.ts `Placement`). While a
//   member is incoming or outgoing, the ring also computes the preference lists of the
//   config after the move; `learners(p)` are the members that will own p then but do not
//   now: they copy p from its primary (rule 5) before one config change switches (rule 6).
//
// Token positions are bigints: the ring is built only when the config changes, so
// clarity beats speed here. The per-request path is `partitionOf` (hash.ts) plus an
// array lookup.

import { hash64, hashHex, partitionStart, PARTITIONS_MAX } from './hash.js';
import { assert, partitionId, type NodeId, type PartitionId } from './types.js';

export { partitionOf } from './hash.js';

export type MemberStatus = 'active' | 'down' | 'joining';
export type Placement = 'owner' | 'incoming' | 'outgoing';

export interface RingMember {
  readonly id: NodeId;
  readonly status: MemberStatus;
  readonly placement: Placement;
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
  /** The first active member of p's preference list (an outgoing one only if no other is active), or undefined. */
  primaryOf(p: PartitionId): NodeId | undefined;
  /** Members that will own p once the move in progress switches, and do not own it now. */
  learners(p: PartitionId): readonly NodeId[];
  /** The preference list of p once the move in progress switches (= preference(p) if nothing moves). */
  next(p: PartitionId): readonly NodeId[];
}

/** The token of a member's i-th virtual node. */
export function vnodeToken(id: NodeId, i: number): bigint {
  return hash64(`${id}#${i}`);
}

const NONE: readonly NodeId[] = Object.freeze([]);

export function buildRing(cfg: RingConfig): Ring {
  assertConfig(cfg);
  const owners = cfg.members.filter((m) => m.placement !== 'incoming');
  const tokens = sortedTokens(owners, cfg.vnodesPerNode);
  const want = Math.min(cfg.replicationFactor, owners.length);
  const active = new Set(cfg.members.filter((m) => m.status === 'active').map((m) => m.id));
  const outgoing = new Set(cfg.members.filter((m) => m.placement === 'outgoing').map((m) => m.id));
  // The ring after the move in progress, if any.
  const moving = cfg.members.some((m) => m.placement !== 'owner');
  const after = cfg.members.filter((m) => m.placement !== 'outgoing');
  const afterTokens = moving ? sortedTokens(after, cfg.vnodesPerNode) : tokens;
  const afterWant = Math.min(cfg.replicationFactor, after.length);

  const preferences: (readonly NodeId[])[] = [];
  const primaries: (NodeId | undefined)[] = [];
  const learners: (readonly NodeId[])[] = [];
  const nexts: (readonly NodeId[])[] = [];
  for (let p = 0; p < cfg.partitions; p++) {
    const start = partitionStart(partitionId(p), cfg.partitions);
    const list = walkClockwise(tokens, firstTokenAtOrAfter(tokens, start), want);
    preferences.push(Object.freeze(list));
    primaries.push(list.find((id) => active.has(id) && !outgoing.has(id)) ?? list.find((id) => active.has(id)));
    if (!moving) {
      learners.push(NONE);
      nexts.push(preferences[p]!);
      continue;
    }
    const next = Object.freeze(walkClockwise(afterTokens, firstTokenAtOrAfter(afterTokens, start), afterWant));
    nexts.push(next);
    const learning = next.filter((id) => !list.includes(id));
    learners.push(learning.length === 0 ? NONE : Object.freeze(learning));
  }

  const checkPartition = (p: PartitionId): void => {
    assert(Number.isInteger(p) && p >= 0 && p < cfg.partitions, `partition ${p} out of [0, ${cfg.partitions})`);
  };

  return {
    partitions: cfg.partitions,
    replicationFactor: cfg.replicationFactor,
    tokens,
    checksum: checksumOf(cfg, preferences, primaries, learners),
    preference(p) {
      checkPartition(p);
      return preferences[p]!;
    },
    primaryOf(p) {
      checkPartition(p);
      return primaries[p];
    },
    learners(p) {
      checkPartition(p);
      return learners[p]!;
    },
    next(p) {
      checkPartition(p);
      return nexts[p]!;
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

function sortedTokens(members: readonly RingMember[], vnodesPerNode: number): readonly RingToken[] {
  const tokens: RingToken[] = [];
  for (const m of members) {
    for (let i = 0; i < vnodesPerNode; i++) {
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
// partition, followed by "+<id>,..." when p has learners. It is independent of the order
// in which members were listed.
function checksumOf(
  cfg: RingConfig,
  preferences: readonly (readonly NodeId[])[],
  primaries: readonly (NodeId | undefined)[],
  learners: readonly (readonly NodeId[])[],
): string {
  const parts = [`P=${cfg.partitions};RF=${cfg.replicationFactor}`];
  for (let p = 0; p < preferences.length; p++) {
    const l = learners[p]!;
    parts.push(`${p}:${primaries[p] ?? '-'}:${preferences[p]!.join(',')}${l.length === 0 ? '' : `+${l.join(',')}`}`);
  }
  return hashHex(parts.join('|'));
}
