// A node's replication layer over all partitions (DESIGN §3 "Replication", rules 1-5 and
// 7): primary-backup per partition, fenced by the membership config epoch, with leases,
// takeover, catch-up before promotion and vector-clock versions. Pure and deterministic,
// in the style of node.ts:
//
//   createReplication(opts, metas, store)   build (or rebuild after a restart)
//   setConfig(rep, cfg)                      the membership layer learned a new config
//   step(rep, msg) / tick(rep)               a peer message / one tick of the monotonic clock
//   submit(rep, requestId, op)               a client operation (get / put / delete)
//
// Each returns a RepReady that the caller carries out in order: PERSIST (records and
// partition metadata, fsynced), then SEND, then REPLY. The StoreView passed in must be
// read-your-writes (see partition.ts). The composition with the membership node (one
// Ready for both, config changes fed through, `readyToActivate` wired) is at the end of
// this file (createKvNode / stepKv / tickKv / submitKv).
//
// Time: after a stall (SIGSTOP, a long GC) the driver must deliver every elapsed tick
// before handing the node any message or request, so that leases are judged on a clock
// that has advanced. Leases are measured from the tick at which their request was sent.

import { buildRing, partitionOf, type Ring } from './ring.js';
import { assert, epoch as toEpoch, partitionId, seq as toSeq, type Epoch, type NodeId, type PartitionId, type Seq } from './types.js';
import { createPrng, nextU32, type Prng } from './prng.js';
import { clockToString, EMPTY_CLOCK, increment, merge, versionOf, type VectorClock } from './vector-clock.js';
import type { ClusterConfig, Member } from './membership.js';
import {
  createNode,
  currentConfig,
  restoreNode,
  step as stepMembership,
  tick as tickMembership,
  propose as proposeMembership,
  type MembershipNode,
  type Message,
  type NodeOptions,
  type PersistedState,
  type Ready,
} from './node.js';
import type { ConfigChange } from './membership.js';
import { antiEntropyLimits, digestOf, digestsEqual, nextRange, rangeRecords } from './anti-entropy.js';
import {
  comparePositions,
  conflictWinner,
  emptyMeta,
  emptyPosition,
  extendHistory,
  historyUpTo,
  judgeIncoming,
  maxPosition,
  normalizeMeta,
  onHistory,
  tombstoneExpired,
  type AeRound,
  type Entry,
  type FollowerProgress,
  type HistoryEntry,
  type KvRecord,
  type LogPosition,
  type PartitionMeta,
  type PartitionState,
  type PrimaryState,
  type Role,
  type StoreView,
} from './partition.js';

export type { KvRecord, StoreView, PartitionMeta, LogPosition, HistoryEntry } from './partition.js';

// ---------------------------------------------------------------------------------------
// Limits and timing

export const replicationLimits = {
  /** Entries per append message. */
  replicationBatchMax: 32,
  /** Entries sent to one follower and not yet acknowledged (the pipeline depth). */
  inflightEntriesMax: 128,
  /** Client writes waiting for commit on one partition. */
  pendingWritesMax: 128,
  /** Deferred 412/404 answers waiting for in-flight writes to commit, per partition. */
  pendingReadsMax: 128,
  /** Recent entries the primary keeps in memory for resends; older ones mean a new catch-up. */
  tailMax: 512,
  /** Records per copy chunk (delta or full copy). */
  copyChunkMax: 64,
  /** Value bytes per copy chunk: a chunk ends after the record that reaches it. */
  copyChunkBytesMax: 512 * 1024,
  /**
   * Partitions a node copies at once (chunk requests in flight). Without a bound, a new
   * node asks for a chunk of every partition it learns at the same time, and the burst
   * (128 chunks, encoded and applied at once) holds both event loops long enough to starve
   * heartbeats.
   */
  copyConcurrencyMax: 4,
  /** Ticks of unused transfer budget a learner may bank (a burst of one second). */
  copyBurstTicks: 20,
  /**
   * Partitions a node drops per tick after it stops owning them (rule 6), per 128
   * partitions of the cluster. A drop deletes every record of the partition in one store
   * write; a switch that drops them all at once held the node's event loop for 100-290 ms
   * (a quarter of the data of a 3-node cluster growing to 4), which its clients saw.
   */
  dropsPerTickPer128: 1,
  /**
   * Messages from an epoch this node has not learned yet are held (not dropped) until it
   * learns it, up to this many and this many value bytes; bulk messages (copy chunks,
   * anti-entropy records) are never held. Held longer than suspectTicks, they are dropped.
   */
  /**
   * A client op that reaches a primary still taking over waits up to this many ticks for it
   * to serve (a rebalance switch takes a few round trips) before it is refused.
   */
  parkTicks: 10,
  earlyMessagesMax: 1024,
  earlyBytesMax: 8 * 1024 * 1024,
  /** Epochs remembered in a partition's history. Older positions get a full copy. */
  historyMax: 64,
  keyLengthMax: 512,
  requestIdLengthMax: 128,
  /**
   * Tombstone collection: records (plus one per partition visited) the sweep examines per
   * tick. At 20 ticks/s that is about 5,000 records a second, whatever the data size.
   */
  sweepRecordsPerTick: 256,
  /** ... and value bytes it reads per tick (it reads whole records, in scans of at most copyChunkMax). */
  sweepBytesPerTick: 1024 * 1024,
  /** A new sweep pass starts at most this often (ms of wall time); also at most every grace/4. */
  sweepPassMaxMs: 60_000,
} as const;

/** How long a tombstone is kept when RepOptions.tombstoneGraceMs is not given (24 h). */
export const defaultTombstoneGraceMs = 86_400_000;

assert(replicationLimits.replicationBatchMax <= replicationLimits.inflightEntriesMax, 'a batch fits the pipeline');
assert(replicationLimits.pendingWritesMax <= replicationLimits.tailMax, 'every uncommitted entry stays in the tail');
assert(replicationLimits.inflightEntriesMax <= replicationLimits.tailMax, 'the pipeline is resent from the tail');

export interface RepTiming {
  /** Lease requests go out with every heartbeat (200 ms). */
  readonly heartbeatTicks: number;
  /** A lease lasts this long from the tick its request was sent (800 ms). */
  readonly leaseTicks: number;
  /** The failure detector's suspicion timeout; leases must be shorter (1 s). */
  readonly suspectTicks: number;
  /** Resend period for sync, catch-up, copy requests and unacknowledged appends. */
  readonly retransmitTicks: number;
  /** A client write not acknowledged after this long answers 'timeout' (outcome unknown). */
  readonly writeTimeoutTicks: number;
}

export const defaultRepTiming: RepTiming = {
  heartbeatTicks: 4,
  leaseTicks: 16,
  suspectTicks: 20,
  retransmitTicks: 4,
  writeTimeoutTicks: 40,
};

export type RepMutation =
  | 'ack-before-replicated'
  | 'read-without-lease'
  | 'switch-before-caught-up'
  | 'drop-before-switch'
  /** Catch-up and pulls by delta ignore collected tombstones (purgedUpTo): a returning replica keeps a value whose delete was collected. */
  | 'delta-ignores-purges'
  /** A write to a key without a record starts from the empty clock, not from purgedClock: a re-created key can reuse an old ETag. */
  | 'new-key-ignores-purges'
  | null;

export interface RepOptions {
  readonly id: NodeId;
  readonly clusterName: string;
  readonly seed: number;
  readonly timing?: Partial<RepTiming>;
  readonly checkInvariants?: boolean;
  /** Deliberately broken behaviour, only to prove that the simulator catches it. */
  readonly testOnlyMutation?: RepMutation;
  /**
   * Throttle of a learner's catch-up copies (value bytes per tick; default unlimited). A
   * new primary's takeover pull is never throttled: writes wait for it.
   */
  readonly copyBytesPerTick?: number;
  /** Every this many ticks each primary compares its partitions with its followers (default: never; see requestRepair). */
  readonly antiEntropyIntervalTicks?: number;
  /**
   * Tombstones are collected this many ms (of the wall time given to tick / submit) after
   * their delete (default 24 h). Without a wall time nothing is ever collected.
   */
  readonly tombstoneGraceMs?: number;
}

/** A node's catch-up progress, carried in its heartbeats (GET /v1/cluster shows it). */
export interface LearnProgress {
  /** Partitions it learns in the current epoch, and how many the primaries confirmed. */
  readonly partitions: number;
  readonly confirmed: number;
  /** Records and value bytes received by catch-up copies since it started. */
  readonly keys: number;
  readonly bytes: number;
}

// ---------------------------------------------------------------------------------------
// Messages, persist ops, client operations, outputs

interface RepBase {
  readonly from: NodeId;
  readonly clusterName: string;
  /** The sender's config epoch (rule 1: fencing). */
  readonly epoch: Epoch;
}
interface PartBase extends RepBase {
  readonly partition: PartitionId;
  /** Identifies one primary incarnation's term in this epoch. */
  readonly session: number;
}

/** Node level, every heartbeat: a lease request, plus catch-up status for readyToActivate. */
export interface RepHeartbeatMsg extends RepBase {
  readonly type: 'rep-heartbeat';
  readonly nonce: number;
  readonly leaseId: number;
  /** The epoch for which the sender is caught up on every partition it joins (0: not). */
  readonly caughtUpEpoch: number;
  /** Positions of partitions without any active member, for orphan recovery. */
  readonly orphans: readonly (readonly [number, LogPosition | null])[];
  readonly progress: LearnProgress;
}
/** A lease for the sender's current epoch (granted only at equal epochs). */
export interface RepLeaseMsg extends RepBase {
  readonly type: 'rep-lease';
  readonly nonce: number;
  readonly leaseId: number;
}
/** Primary -> follower: adopt this epoch and session, report your position. */
export interface RepSyncMsg extends PartBase {
  readonly type: 'rep-sync';
}
export interface RepSyncOkMsg extends PartBase {
  readonly type: 'rep-sync-ok';
  /** The epoch in which the sender was this partition's serving primary when it adopted the next one, or null (handover, rule 3). */
  readonly servedIn: number | null;
  /** Ticks until every lease the sender granted to an older primary of the partition has run out (rule 3). */
  readonly leaseFence: number;
  readonly pos: LogPosition | null;
  readonly history: readonly HistoryEntry[];
}
/** Primary -> follower: how you catch up; live entries from liveFrom + 1 follow as appends. */
export interface RepCatchupMsg extends PartBase {
  readonly type: 'rep-catchup';
  readonly mode: 'none' | 'delta' | 'full';
  readonly fromSeq: Seq;
  readonly liveFrom: Seq;
  readonly liveFromEpoch: Epoch;
  readonly history: readonly HistoryEntry[];
}
/** Ask a node at the same epoch for a chunk of its partition (records with seq > fromSeq for a delta). */
export interface RepCopyReqMsg extends PartBase {
  readonly type: 'rep-copy-req';
  readonly mode: 'delta' | 'full';
  readonly fromSeq: Seq;
  readonly after: string | null;
}
export interface RepCopyChunkMsg extends PartBase {
  readonly type: 'rep-copy-chunk';
  /**
   * The request this answers (mode, fromSeq, after), echoed: a copy that switched from
   * delta to full in the same session must not take a late delta chunk for a full one.
   */
  readonly mode: 'delta' | 'full';
  readonly fromSeq: Seq;
  readonly after: string | null;
  readonly records: readonly (readonly [string, KvRecord])[];
  /** Cursor for the next chunk, or null when this was the last. */
  readonly next: string | null;
  readonly pos: LogPosition;
  readonly history: readonly HistoryEntry[];
  /** The source's collected tombstones (PartitionMeta.purgedClock / purgedUpTo) when it sent this chunk. */
  readonly purgedClock: VectorClock;
  readonly purgedUpTo: LogPosition;
}
export interface RepAppendMsg extends PartBase {
  readonly type: 'rep-append';
  readonly entries: readonly Entry[];
}
/**
 * Follower -> primary: persisted contiguously up to `acked`; `resync`: I do not know your
 * session; `copying`: I still copy another partition I learn (do not wait for me yet).
 */
export interface RepAckMsg extends PartBase {
  readonly type: 'rep-ack';
  readonly acked: Seq;
  readonly caughtUp: boolean;
  readonly resync: boolean;
  readonly copying: boolean;
}
/** Primary -> learner: you hold everything committed; from now on I wait for your acks. */
export interface RepConfirmMsg extends PartBase {
  readonly type: 'rep-confirm';
}

/** Anti-entropy, primary -> follower: the digest of your records with keys in (after, upTo]. */
export interface RepAeReqMsg extends PartBase {
  readonly type: 'rep-ae-req';
  readonly round: number;
  readonly after: string | null;
  readonly upTo: string | null;
}
export interface RepAeDigestMsg extends PartBase {
  readonly type: 'rep-ae-digest';
  readonly round: number;
  readonly count: number;
  readonly sum: number;
  readonly overflow: boolean;
}
/** The digests differ: the primary's records of the range (apply what descends from yours). */
export interface RepAePushMsg extends PartBase {
  readonly type: 'rep-ae-push';
  readonly round: number;
  readonly after: string | null;
  readonly upTo: string | null;
  readonly records: readonly (readonly [string, KvRecord])[];
}
/** The follower's records of the range that the push lacked, or that are newer or concurrent. */
export interface RepAeBackMsg extends PartBase {
  readonly type: 'rep-ae-back';
  readonly round: number;
  readonly repaired: number;
  readonly records: readonly (readonly [string, KvRecord])[];
}

export type RepMessage =
  | RepAeReqMsg
  | RepAeDigestMsg
  | RepAePushMsg
  | RepAeBackMsg
  | RepHeartbeatMsg
  | RepLeaseMsg
  | RepSyncMsg
  | RepSyncOkMsg
  | RepCatchupMsg
  | RepCopyReqMsg
  | RepCopyChunkMsg
  | RepAppendMsg
  | RepAckMsg
  | RepConfirmMsg;

export interface RepEnvelope {
  readonly to: NodeId;
  readonly msg: RepMessage;
}

/** What the replication layer writes. Records go to the data store, metas to its metadata. */
export type RepPersistOp =
  | { readonly kind: 'record'; readonly partition: PartitionId; readonly key: string; readonly record: KvRecord }
  | { readonly kind: 'partition-meta'; readonly partition: PartitionId; readonly meta: PartitionMeta }
  /** Drop every record of the partition (before a full copy). */
  | { readonly kind: 'partition-reset'; readonly partition: PartitionId }
  /** Tombstone collection: remove the key's record (an expired tombstone) from the data store. */
  | { readonly kind: 'record-delete'; readonly partition: PartitionId; readonly key: string };

export type Precondition = { readonly ifMatch?: readonly string[] | '*'; readonly ifNoneMatch?: '*' };

export type ClientOp =
  | { readonly type: 'get'; readonly key: string; readonly consistency: 'strong' | 'stale' }
  | ({ readonly type: 'put'; readonly key: string; readonly value: Uint8Array } & Precondition)
  | { readonly type: 'delete'; readonly key: string; readonly ifMatch?: readonly string[] | '*' };

export type UnavailableReason = 'no-primary' | 'takeover' | 'too-few-in-sync' | 'no-lease' | 'busy' | 'invalid';

/**
 * How a client operation ends. 'unavailable' and 'not_primary' guarantee no effect.
 * 'timeout': the outcome is unknown (the write may still commit), like an etcd timeout.
 */
export type ClientResult =
  | { readonly status: 'ok'; readonly version: string; readonly created: boolean; readonly value?: Uint8Array }
  | { readonly status: 'not_found' }
  | { readonly status: 'precondition_failed' }
  | { readonly status: 'unavailable'; readonly reason: UnavailableReason }
  | { readonly status: 'not_primary'; readonly primary: NodeId | null }
  | { readonly status: 'timeout' };

export interface ClientReply {
  readonly requestId: string;
  readonly result: ClientResult;
}

export type RepEvent =
  | { readonly type: 'version-conflict'; readonly partition: PartitionId; readonly key: string }
  | { readonly type: 'serving'; readonly partition: PartitionId; readonly epoch: Epoch; readonly atTick: number }
  | { readonly type: 'copy'; readonly partition: PartitionId; readonly mode: 'delta' | 'full'; readonly role: 'primary' | 'follower' }
  | { readonly type: 'caught-up'; readonly partition: PartitionId; readonly epoch: Epoch }
  | { readonly type: 'confirmed'; readonly partition: PartitionId; readonly learner: NodeId; readonly epoch: Epoch }
  /** Anti-entropy repaired `count` records of the partition on `where` (compared with `peer`). */
  | { readonly type: 'repaired'; readonly partition: PartitionId; readonly peer: NodeId; readonly where: 'follower' | 'primary'; readonly count: number }
  /** Anti-entropy compared the partition with every in-sync follower. */
  | { readonly type: 'ae-done'; readonly partition: PartitionId }
  /** This node no longer owns the partition in `epoch`: its copy was deleted (rule 6). */
  | { readonly type: 'dropped'; readonly partition: PartitionId; readonly epoch: Epoch }
  /** The lease `peer` granted us ran out without a renewal (the peer is dead, paused or cut off). */
  | { readonly type: 'lease-expired'; readonly peer: NodeId }
  /** The sweep removed `count` expired tombstones of the partition from this node's copy. */
  | { readonly type: 'tombstones-purged'; readonly partition: PartitionId; readonly count: number };

export interface RepDropped {
  readonly from: NodeId;
  readonly type: string;
  readonly reason: string;
}

/**
 * The output of every call. The caller MUST carry it out in order: 1. PERSIST every op and
 * fsync; 2. SEND; 3. REPLY. Readies are carried out in the order produced. A replica's ack
 * leaving before its persist is durable would let the primary acknowledge a write that a
 * crash then erases (the simulator's mutation test proves the check catches that).
 */
export interface RepReady {
  readonly persist: RepPersistOp[];
  readonly send: RepEnvelope[];
  readonly replies: ClientReply[];
  readonly events: RepEvent[];
  readonly dropped: RepDropped[];
}

// ---------------------------------------------------------------------------------------
// The node's replication record

export interface Replication {
  readonly id: NodeId;
  readonly clusterName: string;
  readonly timing: RepTiming;
  readonly mutation: RepMutation;
  readonly checkInvariants: boolean;
  readonly store: StoreView;
  readonly prng: Prng;
  /** Distinguishes this incarnation's lease requests from a previous one's. */
  readonly nonce: number;
  now: number;
  cfg: ClusterConfig | null;
  ring: Ring | null;
  adoptedTick: number;
  partitions: PartitionState[];
  /** Lease granted to us, per peer, valid while now < value (current epoch only). */
  readonly leaseUntil: Map<NodeId, number>;
  /** The epoch each peer last said it is caught up for. */
  readonly peerCaughtUp: Map<NodeId, number>;
  /** Each peer's incarnation nonce: a change means it restarted. */
  readonly peerNonce: Map<NodeId, number>;
  /** Orphan partitions: peer -> (epoch, position) reports. */
  readonly orphanReports: Map<number, Map<NodeId, { epoch: number; pos: LogPosition | null }>>;
  nextHeartbeatTick: number;
  conflicts: number;
  /** Value bytes a learner may still copy now (the throttle's token bucket). */
  copyBudget: number;
  /** The throttle now (setCopyRate may change it while copies run). */
  copyBytesPerTick: number;
  /** Records and value bytes received by catch-up copies (progress). */
  readonly copied: { keys: number; bytes: number };
  /** Each peer's catch-up progress from its last heartbeat. */
  readonly peerProgress: Map<NodeId, LearnProgress>;
  /** Messages from a newer epoch than ours, in arrival order, delivered once we adopt it. */
  early: { readonly msg: RepMessage; readonly bytes: number; readonly tick: number }[];
  earlyBytes: number;
  readonly aeIntervalTicks: number;
  nextAeTick: number;
  /** The tick of the last lease granted to each peer in the current epoch. */
  readonly grantedAt: Map<NodeId, number>;
  aeRounds: number;
  /** The latest wall-clock time (ms) given to tick / submit; null until one is given. Never goes back. */
  wallMs: number | null;
  readonly tombstoneGraceMs: number;
  /** inSyncReplicas per partition for the current config (cleared when a config is adopted). */
  readonly isrCache: Map<PartitionId, readonly NodeId[]>;
  /** Tombstone collection: where the pass in progress stands (null: between passes). */
  sweep: { partition: number; after: string | null } | null;
  /** Wall time at which the next sweep pass may start. */
  nextSweepAtMs: number;
}

export function createReplication(opts: RepOptions, metas: ReadonlyMap<number, PartitionMeta>, store: StoreView): Replication {
  const timing: RepTiming = { ...defaultRepTiming, ...opts.timing };
  for (const [k, v] of Object.entries(timing)) assert(Number.isSafeInteger(v) && v >= 1, `timing.${k} must be a positive integer`);
  const tombstoneGraceMs = opts.tombstoneGraceMs ?? defaultTombstoneGraceMs;
  assert(Number.isSafeInteger(tombstoneGraceMs) && tombstoneGraceMs >= 1, 'tombstoneGraceMs must be a positive integer');
  assert(timing.heartbeatTicks < timing.leaseTicks, 'heartbeatTicks < leaseTicks');
  assert(timing.leaseTicks < timing.suspectTicks, 'leaseTicks < suspectTicks (rule 3)');
  const prng = createPrng(opts.seed);
  const rep: Replication = {
    id: opts.id,
    clusterName: opts.clusterName,
    timing,
    mutation: opts.testOnlyMutation ?? null,
    checkInvariants: opts.checkInvariants ?? false,
    store,
    prng,
    nonce: nextU32(prng),
    now: 0,
    cfg: null,
    ring: null,
    adoptedTick: 0,
    partitions: [],
    leaseUntil: new Map(),
    peerCaughtUp: new Map(),
    peerNonce: new Map(),
    orphanReports: new Map(),
    nextHeartbeatTick: 0,
    conflicts: 0,
    copyBudget: 0,
    copyBytesPerTick: opts.copyBytesPerTick ?? Infinity,
    copied: { keys: 0, bytes: 0 },
    peerProgress: new Map(),
    early: [],
    earlyBytes: 0,
    grantedAt: new Map(),
    aeIntervalTicks: opts.antiEntropyIntervalTicks ?? Infinity,
    nextAeTick: opts.antiEntropyIntervalTicks ?? Infinity,
    aeRounds: 0,
    wallMs: null,
    tombstoneGraceMs,
    sweep: null,
    isrCache: new Map(),
    nextSweepAtMs: -Infinity,
  };
  restoredMetas.set(rep, metas);
  return rep;
}

// Metas read from disk, consumed when the first config arrives (the partition count comes from it).
const restoredMetas = new WeakMap<Replication, ReadonlyMap<number, PartitionMeta>>();

/** Fold a persist op into the stored partition metadata (records belong to the data store). */
export function applyRepPersistOp(metas: Map<number, PartitionMeta>, op: RepPersistOp): void {
  if (op.kind === 'partition-meta') metas.set(op.partition, op.meta);
}

// ---------------------------------------------------------------------------------------
// Views (HTTP layer, membership leader, simulator)

export function roleOf(rep: Replication, p: number): Role {
  return rep.partitions[p]?.role ?? 'none';
}

/** May this node, right now, acknowledge writes and serve strong reads for p? */
export function canServe(rep: Replication, p: number): boolean {
  const ps = rep.partitions[p];
  if (ps === undefined || ps.primary === null) return false;
  return servingGate(rep, ps) === null;
}

/**
 * Changes a learner's copy throttle (value bytes per tick; Infinity = unthrottled). The
 * runtime lowers it while copies slow down the traffic they share machines with (see
 * runtime/copy-pacer.ts). Budget banked at the old rate is capped to the new burst, so a
 * lower rate takes effect at once. Takeover pulls are never throttled.
 */
export function setCopyRate(rep: Replication, bytesPerTick: number): void {
  assert(bytesPerTick > 0, 'a copy rate is positive');
  rep.copyBytesPerTick = bytesPerTick;
  rep.copyBudget = Math.min(rep.copyBudget, bytesPerTick * replicationLimits.copyBurstTicks);
}

/**
 * Replication lag of every partition this node is the serving primary of: the entries
 * its slowest follower (in-sync replica or catching-up learner) has yet to persist.
 */
export function replicationLag(rep: Replication): Map<PartitionId, number> {
  const out = new Map<PartitionId, number>();
  for (const ps of rep.partitions) {
    const pr = ps.primary;
    if (pr === null || pr.phase !== 'serving') continue;
    const head = ps.meta.pos?.seq ?? 0;
    let lag = 0;
    for (const f of pr.followers.values()) lag = Math.max(lag, head - f.acked);
    out.set(ps.id, lag);
  }
  return out;
}

/** readyToActivate for the membership leader: has `id` reported itself caught up for cfg's epoch? */
/**
 * readyToRemove for the membership leader: may the outgoing member's tokens leave the
 * ring? Yes once every member that learns a partition in cfg (its future owner) has
 * reported itself caught up for cfg's epoch (rule 6).
 */
export function moveCaughtUp(rep: Replication, cfg: ClusterConfig): boolean {
  if (rep.mutation === 'switch-before-caught-up') return true; // TEST-ONLY mutation: remove before the new owners hold the data
  if (rep.cfg === null || rep.cfg.epoch !== cfg.epoch || rep.ring === null) return false;
  const learners = new Set<NodeId>();
  for (let p = 0; p < cfg.partitions; p++) for (const id of rep.ring.learners(partitionId(p))) learners.add(id);
  for (const id of learners) if (!isCaughtUp(rep, id, cfg)) return false;
  return switchKeepsCopies(rep, cfg);
}

/**
 * Would the switch of the move in progress leave every partition at least
 * min(minInSync, owners) members that hold everything committed? The switch drops the
 * copies of members that stop owning, so it must not count on a member that is down, or
 * joining and not caught up. A holder is an in-sync replica or the primary (an active
 * owner now), or a member caught up for this epoch (its learner roles confirmed).
 */
/**
 * May the add of `id` be cancelled (the incoming member removed)? Its copies go, and as a
 * confirmed learner it may hold writes the commit set counted: every partition it learns
 * must keep min(minInSync, owners) in-sync holders without it.
 */
export function cancelKeepsCopies(rep: Replication, cfg: ClusterConfig, id: NodeId): boolean {
  const ring = rep.ring;
  if (rep.cfg === null || rep.cfg.epoch !== cfg.epoch || ring === null) return false;
  for (let p = 0; p < cfg.partitions; p++) {
    const pid = partitionId(p);
    if (!ring.learners(pid).includes(id)) continue;
    const now = ring.preference(pid);
    if (now.filter((m) => statusOf(rep, m) === 'active').length < Math.min(cfg.minInSync, now.length)) return false;
  }
  return true;
}

export function switchKeepsCopies(rep: Replication, cfg: ClusterConfig): boolean {
  const ring = rep.ring;
  if (rep.cfg === null || rep.cfg.epoch !== cfg.epoch || ring === null) return false;
  for (let p = 0; p < cfg.partitions; p++) {
    const pid = partitionId(p);
    const now = ring.preference(pid);
    const next = ring.next(pid);
    if (next === now) continue;
    const holds = (m: NodeId): boolean => {
      const st = statusOf(rep, m);
      if (st === 'active' && now.includes(m)) return true;
      return (st === 'active' || st === 'joining') && isCaughtUp(rep, m, cfg);
    };
    if (next.filter(holds).length < Math.min(cfg.minInSync, next.length)) return false;
  }
  return true;
}

export function isCaughtUp(rep: Replication, id: NodeId, cfg: ClusterConfig): boolean {
  if (id === rep.id) return rep.cfg !== null && rep.cfg.epoch === cfg.epoch && caughtUpEpoch(rep) === cfg.epoch;
  return rep.peerCaughtUp.get(id) === cfg.epoch;
}

export function metaOf(rep: Replication, p: number): PartitionMeta | undefined {
  return rep.partitions[p]?.meta;
}

// ---------------------------------------------------------------------------------------
// Inputs

export function setConfig(rep: Replication, cfg: ClusterConfig): RepReady {
  const out = newReady();
  if (rep.cfg !== null && cfg.epoch <= rep.cfg.epoch) return out;
  if (rep.cfg === null) initPartitions(rep, cfg.partitions);
  assert(rep.partitions.length === cfg.partitions, 'partition count is fixed for the life of the cluster');
  const prevRing = rep.ring;
  const prevEpoch = rep.cfg?.epoch ?? null;
  // Leaving an epoch: a lease granted in it to the primary of a partition may outlive the
  // epoch by up to leaseTicks; remember until when, per partition (rule 3).
  if (prevRing !== null) {
    for (const ps of rep.partitions) {
      const x = prevRing.primaryOf(ps.id);
      const at = x === undefined || x === rep.id ? undefined : rep.grantedAt.get(x);
      if (at !== undefined) ps.leaseFence = Math.max(ps.leaseFence, at + rep.timing.leaseTicks);
    }
  }
  rep.grantedAt.clear();
  rep.cfg = cfg;
  rep.ring = buildRing(cfg);
  rep.isrCache.clear();
  rep.adoptedTick = rep.now;
  // Leases are kept: a grant says "I back you as the primary of what you lead", and a
  // partition keeps serving under it only while this node stays its primary. Whoever takes
  // a partition over waits out every grant made before its sync (rule 3), whatever its
  // epoch. Ask for fresh grants (and report catch-up) at the new epoch at once.
  rep.nextHeartbeatTick = rep.now;
  for (const ps of rep.partitions) {
    const role = computeRole(rep, ps.id);
    if (rep.mutation === 'drop-before-switch' && role === 'replica' && selfMember(rep)?.placement === 'outgoing' && holdsData(ps)) {
      // TEST-ONLY mutation: an outgoing replica drops its copy before its removal (the switch) is decided.
      out.persist.push({ kind: 'partition-reset', partition: ps.id });
      writeMeta(out, ps, emptyMeta());
      out.events.push({ type: 'dropped', partition: ps.id, epoch: cfg.epoch });
    }
    // A handover (rule 3): this node served p in the epoch it leaves and stops now, so the
    // next primary, whose sync it answers from the new epoch, has no lease of it to wait
    // out. Only once its own lease wait was over: before that, older grants may still run.
    const served = ps.role === 'primary' && ps.primary !== null && ps.primary.phase === 'serving' && rep.now >= ps.primary.serveAfterTick;
    ps.servedIn = served && role !== 'primary' && prevEpoch !== null ? prevEpoch : null;
    if (ps.role === 'primary' && role === 'primary' && ps.primary?.phase === 'serving') {
      continueTerm(rep, out, ps);
      continue;
    }
    const follows = (r: Role): boolean => r === 'replica' || r === 'learner';
    const samePrimary = prevRing !== null && prevRing.primaryOf(ps.id) === rep.ring.primaryOf(ps.id);
    if (follows(ps.role) && follows(role) && samePrimary && ps.follower !== null) {
      // Keep the stream; a learner is confirmed again by its (continuing) primary.
      ps.role = role;
      ps.confirmedEpoch = 0;
      continue;
    }
    endRoles(rep, out, ps);
    ps.role = role;
    if (ps.role === 'primary') startTakeover(rep, out, ps);
  }
  deliverEarly(rep, out);
  return finish(rep, out);
}

/**
 * One tick of the monotonic clock. `wallMs`: the wall-clock time now (Date.now() in the
 * runtime, simulated time in the simulator), for tombstone collection only; it never
 * decides anything about leases or roles. Without it nothing is collected.
 */
export function tick(rep: Replication, wallMs?: number): RepReady {
  const out = newReady();
  rep.now += 1;
  observeWall(rep, wallMs);
  if (rep.cfg === null) return out;
  // The budget may go negative (a chunk is counted when it arrives): no chunk-size floor.
  const burst = rep.copyBytesPerTick * replicationLimits.copyBurstTicks;
  rep.copyBudget = Math.min(burst, rep.copyBudget + rep.copyBytesPerTick);
  // A grant is valid while now < until: it lapses on exactly one tick.
  for (const [peer, until] of rep.leaseUntil) if (until === rep.now) out.events.push({ type: 'lease-expired', peer });
  if (rep.early.length > 0 && rep.now - rep.early[0]!.tick > rep.timing.suspectTicks) {
    // An epoch we have not learned in this long: the senders retransmit what still matters.
    for (const h of rep.early) out.dropped.push({ from: h.msg.from, type: String(h.msg.type), reason: 'newer epoch: config not learned in time' });
    rep.early = [];
    rep.earlyBytes = 0;
  }
  if (rep.now >= rep.nextAeTick) {
    startRepair(rep, out);
    rep.nextAeTick = rep.now + rep.aeIntervalTicks;
  }
  if (rep.now >= rep.nextHeartbeatTick) {
    sendHeartbeats(rep, out);
    rep.nextHeartbeatTick = rep.now + rep.timing.heartbeatTicks;
  }
  for (const ps of rep.partitions) {
    if (ps.primary !== null) onPrimaryTick(rep, out, ps, ps.primary);
    else if (ps.follower !== null) onFollowerTick(rep, out, ps);
    else if (ps.role === 'learner') onOrphanTick(rep, out, ps);
  }
  dropReleased(rep, out);
  sweepTombstones(rep, out);
  return finish(rep, out);
}

/** A copy this node holds but neither owns nor learns in its config: it waits for its drop. */
function isReleased(rep: Replication, ps: PartitionState): boolean {
  return ps.role === 'none' && holdsData(ps) && !preference(rep, ps.id).includes(rep.id) && !learnersOf(rep, ps.id).includes(rep.id);
}

/**
 * Rule 6, the last step: once ownership has switched away from this node (or it was
 * removed), drop its old copies, a few partitions per tick (replicationLimits.
 * dropsPerTickPer128) so that a switch does not stop the node's event loop for the whole
 * of the data it gave away. Until its drop a released partition keeps its records and
 * meta, like the copy of a node that was down: nothing reads it (role none), and if the
 * partition comes back to this node first, the catch-up starts from that position.
 */
function dropReleased(rep: Replication, out: RepReady): void {
  let budget = Math.max(1, Math.round((rep.partitions.length * replicationLimits.dropsPerTickPer128) / 128));
  for (const ps of rep.partitions) {
    if (budget === 0) return;
    if (!isReleased(rep, ps)) continue;
    out.persist.push({ kind: 'partition-reset', partition: ps.id });
    writeMeta(out, ps, emptyMeta());
    out.events.push({ type: 'dropped', partition: ps.id, epoch: rep.cfg!.epoch });
    budget--;
  }
}

function observeWall(rep: Replication, wallMs: number | undefined): void {
  if (wallMs === undefined || !Number.isFinite(wallMs)) return;
  rep.wallMs = rep.wallMs === null ? wallMs : Math.max(rep.wallMs, wallMs);
}

export function step(rep: Replication, msg: RepMessage): RepReady {
  const out = newReady();
  deliver(rep, out, msg);
  return finish(rep, out);
}

function deliver(rep: Replication, out: RepReady, msg: RepMessage): void {
  const drop = (reason: string): void => {
    out.dropped.push({ from: msg.from, type: String(msg.type), reason });
  };
  if (msg.clusterName !== rep.clusterName) return drop('wrong cluster name');
  if (msg.from === rep.id) return drop('claims to come from this node');
  const cfg = rep.cfg;
  if (cfg === null) return drop('no config yet');
  if (!Number.isSafeInteger(msg.epoch)) return drop('bad epoch');
  // Rule 1: only equal epochs. Behind: refuse (the sender learns newer configs through
  // membership). Ahead: we will learn it through membership; until then the message is
  // held (bounded), so that a config change does not cost a retransmission period.
  if (msg.epoch < cfg.epoch) return drop('older epoch (fenced)');
  if (msg.epoch > cfg.epoch) return holdEarly(rep, msg) ? undefined : drop('newer epoch: config not learned yet');
  if (msg.type === 'rep-heartbeat') onHeartbeat(rep, out, msg);
  else if (msg.type === 'rep-lease') onLease(rep, msg);
  else {
    const ps = rep.partitions[msg.partition];
    if (ps === undefined || !Number.isInteger(msg.partition)) return drop('bad partition');
    handlePartitionMsg(rep, out, ps, msg);
  }
}

/** Holds a message from a newer epoch if it is small and there is room. Holding is only a delay. */
function holdEarly(rep: Replication, msg: RepMessage): boolean {
  if (msg.type === 'rep-copy-chunk' || msg.type === 'rep-ae-push' || msg.type === 'rep-ae-back') return false;
  let bytes = 0;
  if (msg.type === 'rep-append' && Array.isArray(msg.entries)) for (const e of msg.entries) bytes += recordBytes(e.record);
  if (rep.early.length >= replicationLimits.earlyMessagesMax || rep.earlyBytes + bytes > replicationLimits.earlyBytesMax) return false;
  rep.early.push({ msg, bytes, tick: rep.now });
  rep.earlyBytes += bytes;
  return true;
}

/** After adopting an epoch: deliver the held messages of it, in order; drop older ones, keep newer ones. */
function deliverEarly(rep: Replication, out: RepReady): void {
  if (rep.early.length === 0) return;
  const held = rep.early;
  rep.early = [];
  rep.earlyBytes = 0;
  for (const h of held) {
    if (h.msg.epoch > rep.cfg!.epoch) {
      rep.early.push(h);
      rep.earlyBytes += h.bytes;
    } else deliver(rep, out, h.msg);
  }
}

/**
 * A client operation. Exactly one ClientReply with this requestId comes out, now or later.
 * `wallMs`: the wall-clock time now; a delete records it in its tombstone (deletedAtMs).
 */
export function submit(rep: Replication, requestId: string, op: ClientOp, wallMs?: number): RepReady {
  const out = newReady();
  observeWall(rep, wallMs);
  onClientOp(rep, out, requestId, op);
  return finish(rep, out);
}

function newReady(): RepReady {
  return { persist: [], send: [], replies: [], events: [], dropped: [] };
}

function finish(rep: Replication, out: RepReady): RepReady {
  if (rep.checkInvariants) checkRepInvariants(rep);
  return out;
}

// ---------------------------------------------------------------------------------------
// Roles

function initPartitions(rep: Replication, count: number): void {
  const metas = restoredMetas.get(rep) ?? new Map<number, PartitionMeta>();
  for (let p = 0; p < count; p++) {
    const stored = metas.get(p);
    rep.partitions.push({ id: partitionId(p), meta: stored === undefined ? emptyMeta() : normalizeMeta(stored), role: 'none', primary: null, follower: null, confirmedEpoch: 0, orphanPull: null, servedIn: null, leaseFence: rep.now + rep.timing.leaseTicks });
  }
}

function selfMember(rep: Replication): Member | undefined {
  return rep.cfg?.members.find((m) => m.id === rep.id);
}

function statusOf(rep: Replication, id: NodeId): Member['status'] | undefined {
  return rep.cfg?.members.find((m) => m.id === id)?.status;
}

function preference(rep: Replication, p: PartitionId): readonly NodeId[] {
  return rep.ring === null ? [] : rep.ring.preference(p);
}

function primaryIdOf(rep: Replication, p: PartitionId): NodeId | null {
  return rep.ring?.primaryOf(p) ?? null;
}

function computeRole(rep: Replication, p: PartitionId): Role {
  const status = selfMember(rep)?.status;
  if (!preference(rep, p).includes(rep.id)) {
    // A future owner of p (an incoming member, or a successor of an outgoing one) copies it now.
    return learnersOf(rep, p).includes(rep.id) && (status === 'active' || status === 'joining') ? 'learner' : 'none';
  }
  if (primaryIdOf(rep, p) === rep.id) return 'primary';
  if (status === 'active') return 'replica';
  if (status === 'joining') return 'learner';
  return 'none';
}

/** Members that will own p once the move in progress switches (rule 6), and do not now. */
function learnersOf(rep: Replication, p: PartitionId): readonly NodeId[] {
  return rep.ring === null ? [] : rep.ring.learners(p);
}

/** Does `id` catch up on p rather than replicate it: a joining owner, or a future owner that is alive? */
function isLearner(rep: Replication, p: PartitionId, id: NodeId): boolean {
  const st = statusOf(rep, id);
  if (preference(rep, p).includes(id)) return st === 'joining';
  return learnersOf(rep, p).includes(id) && (st === 'active' || st === 'joining');
}

/** Has this node any state for p (records or a log position)? */
function holdsData(ps: PartitionState): boolean {
  return ps.meta.pos === null || comparePositions(ps.meta.pos, emptyPosition) !== 0 || ps.meta.history.length > 0;
}

/**
 * In-sync replicas of p in the current config: the other active members of its preference
 * list. A function of the config alone, asked on every write, ack and strong read, so it is
 * computed once per config.
 */
function inSyncReplicas(rep: Replication, p: PartitionId): readonly NodeId[] {
  let isr = rep.isrCache.get(p);
  if (isr === undefined) rep.isrCache.set(p, (isr = preference(rep, p).filter((id) => id !== rep.id && statusOf(rep, id) === 'active')));
  return isr;
}

/** Whose acknowledgements a commit needs (besides the primary's): in-sync replicas and confirmed learners. */
function commitSet(rep: Replication, ps: PartitionState, pr: PrimaryState): readonly NodeId[] {
  const isr = inSyncReplicas(rep, ps.id);
  if (pr.confirmed.length === 0) return isr;
  const set = [...isr];
  for (const l of pr.confirmed) if (!set.includes(l)) set.push(l);
  return set;
}

/** Leave whatever role p had: unanswered writes get 'timeout' (they may still commit elsewhere). */
function endRoles(rep: Replication, out: RepReady, ps: PartitionState): void {
  const pr = ps.primary;
  if (pr !== null) {
    for (const w of pr.writes) out.replies.push({ requestId: w.requestId, result: { status: 'timeout' } });
    for (const r of pr.reads) out.replies.push({ requestId: r.requestId, result: { status: 'timeout' } });
    // Parked ops were never applied: a plain refusal.
    for (const p of pr.parked) out.replies.push({ requestId: p.requestId, result: { status: 'unavailable', reason: 'takeover' } });
  }
  ps.primary = null;
  ps.follower = null;
  ps.confirmedEpoch = 0;
  ps.orphanPull = null;
}

// ---------------------------------------------------------------------------------------
// Primary: a config change that leaves this node the primary

/**
 * The primary of p stays the same across a config change and was serving: it keeps its
 * log, commit point, pending writes and follower streams (no takeover, no lease wait).
 * Followers that left the preference list (or went down) are dropped; new ones are synced
 * and caught up while it serves. A member enters the in-sync set only as a confirmed
 * learner (mark-active, or a rebalance switch), so it already holds everything committed.
 * The new epoch starts a history entry, as a takeover's would.
 */
function continueTerm(rep: Replication, out: RepReady, ps: PartitionState): void {
  const pr = ps.primary!;
  const cfg = rep.cfg!;
  const want = new Set<NodeId>();
  for (const id of [...preference(rep, ps.id), ...learnersOf(rep, ps.id)]) {
    const st = statusOf(rep, id);
    if (id !== rep.id && (st === 'active' || st === 'joining')) want.add(id);
  }
  for (const id of [...pr.followers.keys()]) if (!want.has(id)) pr.followers.delete(id);
  for (const id of want) {
    if (pr.followers.has(id)) continue;
    const f = newFollowerProgress(rep, id);
    pr.followers.set(id, f);
    sendSync(rep, out, ps, f);
  }
  pr.confirmed = pr.confirmed.filter((l) => want.has(l) && isLearner(rep, ps.id, l));
  // Entries in flight went out at the old epoch, and a follower that adopted this one first
  // refused them: send them again now, not a retransmission period later.
  for (const f of pr.followers.values()) {
    if (!f.streaming || f.sentUpTo <= f.acked) continue;
    f.sentUpTo = f.acked;
    sendAppends(rep, out, ps, f);
  }
  const pos = ps.meta.pos!;
  writeMeta(out, ps, {
    ...ps.meta,
    history: extendHistory(ps.meta.history, cfg.epoch, toSeq(pos.seq + 1), replicationLimits.historyMax),
    confirmed: { epoch: cfg.epoch, learners: [...pr.confirmed] },
  });
  // Followers at the new epoch need the confirmation again; the commit set may have shrunk.
  for (const l of pr.confirmed) send(rep, out, l, { type: 'rep-confirm', partition: ps.id, session: pr.followers.get(l)!.session });
  advanceCommit(rep, out, ps);
}

// ---------------------------------------------------------------------------------------
// Primary: takeover (rule 4)

function startTakeover(rep: Replication, out: RepReady, ps: PartitionState): void {
  const cfg = rep.cfg;
  assert(cfg !== null, 'a config');
  const followers = new Map<NodeId, FollowerProgress>();
  for (const id of [...preference(rep, ps.id), ...learnersOf(rep, ps.id)]) {
    const st = statusOf(rep, id);
    if (id === rep.id || (st !== 'active' && st !== 'joining')) continue;
    followers.set(id, newFollowerProgress(rep, id));
  }
  const confirmed = ps.meta.confirmed !== null && ps.meta.confirmed.epoch === cfg.epoch ? [...ps.meta.confirmed.learners] : [];
  ps.primary = {
    session: nextU32(rep.prng),
    phase: 'sync',
    adoptedTick: rep.now,
    lastSyncOkTick: rep.now,
    pull: null,
    takeoverSeq: toSeq(0),
    serveAfterTick: Infinity,
    handover: false,
    fenceTick: 0,
    commitSeq: toSeq(0),
    followers,
    tail: [],
    inflight: new Map(),
    writes: [],
    reads: [],
    confirmed: confirmed.filter((l) => isLearner(rep, ps.id, l)),
    ae: null,
    aeQueue: [],
    parked: [],
  };
  for (const f of followers.values()) sendSync(rep, out, ps, f);
  advanceTakeover(rep, out, ps);
}

function newFollowerProgress(rep: Replication, id: NodeId): FollowerProgress {
  return {
    id,
    session: nextU32(rep.prng),
    catchupMode: 'full',
    syncOk: false,
    lastSyncSentTick: -Infinity,
    pos: null,
    history: [],
    streaming: false,
    liveFrom: toSeq(0),
    lastCatchupSentTick: -Infinity,
    acked: toSeq(0),
    caughtUp: false,
    copying: false,
    sentUpTo: toSeq(0),
    lastSendTick: -Infinity,
  };
}

function sendSync(rep: Replication, out: RepReady, ps: PartitionState, f: FollowerProgress): void {
  f.lastSyncSentTick = rep.now;
  send(rep, out, f.id, { type: 'rep-sync', partition: ps.id, session: f.session });
}

function advanceTakeover(rep: Replication, out: RepReady, ps: PartitionState): void {
  const pr = ps.primary;
  if (pr === null) return;
  const must = commitSet(rep, ps, pr);
  if (pr.phase === 'sync') {
    if (!must.every((id) => pr.followers.get(id)?.syncOk === true)) return;
    const best = pullSource(ps, pr, must);
    if (best !== null && best.pos !== null) {
      const mine = ps.meta.pos;
      const mode = mine !== null && onHistory(best.history, best.pos, mine) ? 'delta' : 'full';
      pr.phase = 'pull';
      pr.pull = { source: best.id, mode, fromSeq: mine === null || mode === 'full' ? toSeq(0) : mine.seq, after: null, lastReqTick: rep.now };
      // The source's log holds everything committed: if it goes away mid-copy, any log
      // that contains its position will do instead (pullSource, next takeover).
      if (mode === 'full') {
        out.persist.push({ kind: 'partition-reset', partition: ps.id });
        writeMeta(out, ps, { ...ps.meta, pos: null, history: [], copyTarget: best.pos });
      } else {
        writeMeta(out, ps, { ...ps.meta, pos: null, copyTarget: best.pos });
      }
      out.events.push({ type: 'copy', partition: ps.id, mode, role: 'primary' });
      sendPullReq(rep, out, ps);
      return;
    }
    if (ps.meta.pos === null) return; // nobody we may copy from holds a complete copy: stay unavailable
    beginAlign(rep, out, ps);
    return;
  }
  if (pr.phase === 'align') {
    const aligned = must.every((id) => {
      const f = pr.followers.get(id);
      return f !== undefined && f.caughtUp && f.acked >= pr.takeoverSeq;
    });
    if (!aligned) return;
    pr.commitSeq = pr.takeoverSeq;
    // Rule 3: wait out any lease granted for an older epoch by us (until we adopted this
    // one) or by an in-sync replica (until it answered our sync). +1 for tick granularity.
    // A handover from the previous epoch's serving primary leaves no lease to wait out.
    // Otherwise only what we and the in-sync replicas granted to older primaries of this
    // partition (each reported its own fence when it answered our sync). +1 for tick granularity.
    pr.serveAfterTick = pr.handover ? rep.now : Math.max(rep.now, ps.leaseFence, pr.fenceTick) + 1;
    pr.phase = 'serving';
    const cfg = rep.cfg!;
    out.events.push({ type: 'serving', partition: ps.id, epoch: cfg.epoch, atTick: pr.serveAfterTick });
    releaseParked(rep, out, ps);
  }
}

/**
 * Whose log a new primary pulls at takeover, or null to keep its own. The most advanced log
 * among us and the commit set wins (ties: ours, then the first of the commit set): it holds
 * everything committed.
 *
 * While our own copy is incomplete (pos null: a catch-up or an earlier pull lost its
 * source), any synced follower whose log contains our copy target qualifies too, learners
 * included. That log holds everything our complete copy would have held, which is
 * everything committed: the target was a position of the primary's log (a catch-up) or of
 * the best log of a takeover (a pull), both of which hold everything committed, and
 * nothing could commit since without us, a commit-set member that was not caught up. A
 * learner whose log does not contain the target is never trusted (no unclean election).
 */
function pullSource(ps: PartitionState, pr: PrimaryState, must: readonly NodeId[]): FollowerProgress | null {
  const mine = ps.meta.pos;
  const target = ps.meta.copyTarget;
  const others = [...pr.followers.keys()].filter((id) => !must.includes(id));
  let best: FollowerProgress | null = null;
  for (const id of [...must, ...others]) {
    const f = pr.followers.get(id)!;
    if (!f.syncOk || f.pos === null) continue;
    const trusted = must.includes(id) || (mine === null && target !== null && onHistory(f.history, f.pos, target));
    if (trusted && comparePositions(f.pos, best === null ? mine : best.pos) > 0) best = f;
  }
  return best;
}

function sendPullReq(rep: Replication, out: RepReady, ps: PartitionState): void {
  const pr = ps.primary!;
  const pull = pr.pull!;
  pull.lastReqTick = rep.now;
  send(rep, out, pull.source, { type: 'rep-copy-req', partition: ps.id, session: pr.session, mode: pull.mode, fromSeq: pull.fromSeq, after: pull.after });
}

/** Our log is the most advanced: mark the new epoch in the history and bring the followers to it. */
function beginAlign(rep: Replication, out: RepReady, ps: PartitionState): void {
  const pr = ps.primary!;
  const pos = ps.meta.pos;
  assert(pos !== null, 'a complete log before aligning');
  const cfg = rep.cfg!;
  writeMeta(out, ps, { ...ps.meta, history: extendHistory(ps.meta.history, cfg.epoch, toSeq(pos.seq + 1), replicationLimits.historyMax) });
  pr.takeoverSeq = pos.seq;
  pr.commitSeq = toSeq(0);
  pr.phase = 'align';
  for (const f of pr.followers.values()) if (f.syncOk) startCatchup(rep, out, ps, f);
  advanceTakeover(rep, out, ps);
}

/** Tell a synced follower how it catches up: nothing, a delta, or a full copy (rule 5). */
function startCatchup(rep: Replication, out: RepReady, ps: PartitionState, f: FollowerProgress): void {
  const pr = ps.primary!;
  const mine = ps.meta.pos;
  assert(mine !== null, 'the primary holds a complete log');
  let mode: 'none' | 'delta' | 'full' = 'full';
  if (f.pos !== null && onHistory(ps.meta.history, mine, f.pos)) mode = comparePositions(f.pos, mine) === 0 ? 'none' : 'delta';
  // A delta sends records with seq > the follower's position: a tombstone collected after
  // that position is not among them, and the follower would keep the value it deleted.
  if (mode === 'delta' && f.pos !== null && comparePositions(f.pos, ps.meta.purgedUpTo) < 0 && rep.mutation !== 'delta-ignores-purges') mode = 'full';
  f.streaming = true;
  f.catchupMode = mode;
  f.liveFrom = mine.seq;
  f.acked = mine.seq;
  f.sentUpTo = mine.seq;
  f.caughtUp = false;
  sendCatchup(rep, out, ps, f, mine.epoch);
  void pr;
}

function sendCatchup(rep: Replication, out: RepReady, ps: PartitionState, f: FollowerProgress, liveFromEpoch: Epoch): void {
  f.lastCatchupSentTick = rep.now;
  send(rep, out, f.id, {
    type: 'rep-catchup',
    partition: ps.id,
    session: f.session,
    mode: f.catchupMode,
    fromSeq: f.catchupMode === 'delta' && f.pos !== null ? f.pos.seq : toSeq(0),
    liveFrom: f.liveFrom,
    liveFromEpoch,
    history: historyUpTo(ps.meta.history, f.liveFrom),
  });
}

function resync(rep: Replication, out: RepReady, ps: PartitionState, f: FollowerProgress): void {
  Object.assign(f, newFollowerProgress(rep, f.id));
  sendSync(rep, out, ps, f);
}

// ---------------------------------------------------------------------------------------
// Primary: commit (rule 2) and leases (rule 3)

/** Why the primary may not serve right now, or null if it may. */
function servingGate(rep: Replication, ps: PartitionState): UnavailableReason | null {
  const pr = ps.primary;
  const cfg = rep.cfg;
  if (pr === null || cfg === null) return 'no-primary';
  if (pr.phase !== 'serving' || rep.now < pr.serveAfterTick) return 'takeover';
  const set = commitSet(rep, ps, pr);
  if (set.length + 1 < cfg.minInSync) return 'too-few-in-sync';
  if (rep.mutation === 'read-without-lease') return null;
  for (const id of set) if ((rep.leaseUntil.get(id) ?? -Infinity) <= rep.now) return 'no-lease';
  return null;
}

function advanceCommit(rep: Replication, out: RepReady, ps: PartitionState): void {
  const pr = ps.primary;
  if (pr === null || pr.phase !== 'serving' || ps.meta.pos === null) return;
  let target = ps.meta.pos.seq;
  if (rep.mutation !== 'ack-before-replicated') {
    const set = commitSet(rep, ps, pr);
    // Too few copies: nothing commits, but learners can still be confirmed (and restore them).
    if (set.length + 1 < rep.cfg!.minInSync) target = pr.commitSeq;
    for (const id of set) {
      const f = pr.followers.get(id);
      target = f !== undefined && f.caughtUp ? toSeq(Math.min(target, f.acked)) : pr.commitSeq;
    }
  }
  if (target > pr.commitSeq) {
    for (const e of pr.tail) {
      if (e.seq <= pr.commitSeq || e.seq > target) continue;
      const inf = pr.inflight.get(e.key);
      if (inf === undefined) continue;
      inf.seqs.shift();
      // Apply after commit: readers now see this entry's value.
      if (inf.seqs.length === 0) pr.inflight.delete(e.key);
      else inf.before = e.record;
    }
    pr.commitSeq = target;
  }
  flushReplies(rep, out, ps, pr);
  confirmLearners(rep, out, ps, pr);
  trimTail(pr);
}

/** Answer what the commit point allows, but only under a valid lease. */
function flushReplies(rep: Replication, out: RepReady, ps: PartitionState, pr: PrimaryState): void {
  if (servingGate(rep, ps) !== null) return;
  while (pr.writes.length > 0 && pr.writes[0]!.seq <= pr.commitSeq) {
    const w = pr.writes.shift()!;
    out.replies.push({ requestId: w.requestId, result: { status: 'ok', version: w.version, created: w.created } });
  }
  for (let i = 0; i < pr.reads.length; ) {
    const r = pr.reads[i]!;
    if (r.waitSeq <= pr.commitSeq) {
      pr.reads.splice(i, 1);
      out.replies.push({ requestId: r.requestId, result: { status: r.result } });
    } else i++;
  }
}

/** Rule 5: a learner that holds everything committed is confirmed; the primary waits for it from now on. */
function confirmLearners(rep: Replication, out: RepReady, ps: PartitionState, pr: PrimaryState): void {
  const cfg = rep.cfg!;
  let changed = false;
  for (const f of pr.followers.values()) {
    if (!isLearner(rep, ps.id, f.id) || pr.confirmed.includes(f.id)) continue;
    if (!f.caughtUp || f.acked < pr.commitSeq) continue;
    // Still copying elsewhere: wait, unless this partition cannot commit without it.
    if (f.copying && commitSet(rep, ps, pr).length + 1 >= cfg.minInSync) continue;
    pr.confirmed.push(f.id);
    changed = true;
    out.events.push({ type: 'confirmed', partition: ps.id, learner: f.id, epoch: cfg.epoch });
  }
  if (changed) writeMeta(out, ps, { ...ps.meta, confirmed: { epoch: cfg.epoch, learners: [...pr.confirmed] } });
  // Tell the new ones at once; the tick repeats it for every confirmed learner (lost messages).
  if (!changed) return;
  for (const l of pr.confirmed) {
    const f = pr.followers.get(l);
    if (f !== undefined) send(rep, out, l, { type: 'rep-confirm', partition: ps.id, session: f.session });
  }
}

function trimTail(pr: PrimaryState): void {
  let floor = pr.commitSeq;
  for (const f of pr.followers.values()) if (f.streaming) floor = toSeq(Math.min(floor, f.acked));
  while (pr.tail.length > 0) {
    const first = pr.tail[0]!;
    if (first.seq > pr.commitSeq) break;
    if (first.seq > floor && pr.tail.length <= replicationLimits.tailMax) break;
    pr.tail.shift();
  }
}

function sendAppends(rep: Replication, out: RepReady, ps: PartitionState, f: FollowerProgress): void {
  const pr = ps.primary!;
  if (!f.streaming || ps.meta.pos === null) return;
  const last = ps.meta.pos.seq;
  const upTo = Math.min(last, f.acked + replicationLimits.inflightEntriesMax);
  let from = f.sentUpTo + 1;
  if (from > upTo) return;
  const first = pr.tail[0];
  if (first === undefined || first.seq > from) {
    resync(rep, out, ps, f); // the entries it needs left the tail: catch up again
    return;
  }
  while (from <= upTo) {
    const to = Math.min(upTo, from + replicationLimits.replicationBatchMax - 1);
    const entries = pr.tail.slice(from - first.seq, to - first.seq + 1);
    send(rep, out, f.id, { type: 'rep-append', partition: ps.id, session: f.session, entries });
    from = to + 1;
  }
  f.sentUpTo = toSeq(upTo);
  f.lastSendTick = rep.now;
}

function onPrimaryTick(rep: Replication, out: RepReady, ps: PartitionState, pr: PrimaryState): void {
  const t = rep.timing;
  releaseParked(rep, out, ps);
  for (const f of pr.followers.values()) {
    if (!f.syncOk) {
      if (rep.now - f.lastSyncSentTick >= t.retransmitTicks) sendSync(rep, out, ps, f);
      continue;
    }
    if (!f.streaming) continue;
    if (!f.caughtUp && rep.now - f.lastCatchupSentTick >= 2 * t.retransmitTicks) {
      // The follower drives its copy; resending the announcement is idempotent. The epoch
      // of the entry at liveFrom is the last history epoch starting at or before it.
      let e = ps.meta.pos!.epoch;
      for (const h of ps.meta.history) if (h.startSeq <= f.liveFrom) e = h.epoch;
      sendCatchup(rep, out, ps, f, e);
    }
    if (pr.confirmed.includes(f.id) && rep.now % t.heartbeatTicks === 0) {
      send(rep, out, f.id, { type: 'rep-confirm', partition: ps.id, session: f.session });
    }
    if (f.sentUpTo > f.acked && rep.now - f.lastSendTick >= t.retransmitTicks) f.sentUpTo = f.acked;
    sendAppends(rep, out, ps, f);
  }
  if (pr.phase === 'pull' && pr.pull !== null && rep.now - pr.pull.lastReqTick >= t.retransmitTicks) sendPullReq(rep, out, ps);
  if (pr.phase === 'serving') driveAntiEntropy(rep, out, ps, pr);
  // Deadlines: the outcome of a timed-out write is unknown (it may still commit).
  for (let i = 0; i < pr.writes.length; ) {
    const w = pr.writes[i]!;
    if (rep.now >= w.deadlineTick) {
      pr.writes.splice(i, 1);
      out.replies.push({ requestId: w.requestId, result: { status: 'timeout' } });
    } else i++;
  }
  for (let i = 0; i < pr.reads.length; ) {
    const r = pr.reads[i]!;
    if (rep.now >= r.deadlineTick) {
      pr.reads.splice(i, 1);
      out.replies.push({ requestId: r.requestId, result: { status: 'timeout' } });
    } else i++;
  }
  advanceCommit(rep, out, ps);
}

// ---------------------------------------------------------------------------------------
// Messages

function handlePartitionMsg(rep: Replication, out: RepReady, ps: PartitionState, msg: Exclude<RepMessage, RepHeartbeatMsg | RepLeaseMsg>): void {
  switch (msg.type) {
    case 'rep-sync':
      return onSync(rep, out, ps, msg);
    case 'rep-sync-ok':
      return onSyncOk(rep, out, ps, msg);
    case 'rep-catchup':
      return onCatchup(rep, out, ps, msg);
    case 'rep-copy-req':
      return onCopyReq(rep, out, ps, msg);
    case 'rep-copy-chunk':
      return onCopyChunk(rep, out, ps, msg);
    case 'rep-append':
      return onAppend(rep, out, ps, msg);
    case 'rep-ack':
      return onAck(rep, out, ps, msg);
    case 'rep-confirm':
      return onConfirm(rep, out, ps, msg);
    case 'rep-ae-req':
      return onAeReq(rep, out, ps, msg);
    case 'rep-ae-digest':
      return onAeDigest(rep, out, ps, msg);
    case 'rep-ae-push':
      return onAePush(rep, out, ps, msg);
    case 'rep-ae-back':
      return onAeBack(rep, out, ps, msg);
  }
}

function onHeartbeat(rep: Replication, out: RepReady, msg: RepHeartbeatMsg): void {
  // Rule 3: grant only for our own (equal) epoch; step() already refused other epochs.
  send(rep, out, msg.from, { type: 'rep-lease', nonce: msg.nonce, leaseId: msg.leaseId });
  rep.grantedAt.set(msg.from, rep.now);
  const before = rep.peerNonce.get(msg.from);
  rep.peerNonce.set(msg.from, msg.nonce);
  if (before !== undefined && before !== msg.nonce) {
    // The peer restarted: its follower sessions are gone; start its streams again.
    for (const ps of rep.partitions) {
      const f = ps.primary?.followers.get(msg.from);
      if (f !== undefined && f.syncOk) resync(rep, out, ps, f);
    }
  }
  rep.peerCaughtUp.set(msg.from, msg.caughtUpEpoch);
  rep.peerProgress.set(msg.from, msg.progress);
  if (!Array.isArray(msg.orphans)) return;
  for (const item of msg.orphans) {
    const [p, pos] = item;
    if (!Number.isInteger(p) || p < 0 || p >= rep.partitions.length) continue;
    let m = rep.orphanReports.get(p);
    if (m === undefined) rep.orphanReports.set(p, (m = new Map()));
    m.set(msg.from, { epoch: msg.epoch, pos });
  }
}

function onLease(rep: Replication, msg: RepLeaseMsg): void {
  if (msg.nonce !== rep.nonce || !Number.isSafeInteger(msg.leaseId) || msg.leaseId > rep.now) return;
  const until = msg.leaseId + rep.timing.leaseTicks;
  if (until > (rep.leaseUntil.get(msg.from) ?? -Infinity)) rep.leaseUntil.set(msg.from, until);
}

function onSync(rep: Replication, out: RepReady, ps: PartitionState, msg: RepSyncMsg): void {
  if ((ps.role !== 'replica' && ps.role !== 'learner') || primaryIdOf(rep, ps.id) !== msg.from) {
    out.dropped.push({ from: msg.from, type: msg.type, reason: 'sender is not our primary' });
    return;
  }
  if (ps.follower === null || ps.follower.session !== msg.session || ps.follower.primary !== msg.from) {
    ps.follower = { primary: msg.from, session: msg.session, copy: null, liveNext: null, livePos: null };
  }
  send(rep, out, msg.from, { type: 'rep-sync-ok', partition: ps.id, session: msg.session, pos: ps.meta.pos, history: ps.meta.history, servedIn: ps.servedIn, leaseFence: Math.max(0, ps.leaseFence - rep.now) });
}

function onSyncOk(rep: Replication, out: RepReady, ps: PartitionState, msg: RepSyncOkMsg): void {
  const pr = ps.primary;
  const f = pr?.followers.get(msg.from);
  if (pr === null || f === undefined || msg.session !== f.session || f.syncOk) return;
  f.syncOk = true;
  // Only the primary of the epoch just before ours can have served in it; it has adopted
  // ours (it answered this sync), so it serves no more, and it could serve only after
  // every older lease had run out: nothing is left to wait for.
  if (msg.servedIn !== null && msg.servedIn === rep.cfg!.epoch - 1) pr.handover = true;
  f.pos = msg.pos;
  f.history = Array.isArray(msg.history) ? msg.history : [];
  if (commitSet(rep, ps, pr).includes(f.id)) {
    pr.lastSyncOkTick = Math.max(pr.lastSyncOkTick, rep.now);
    if (Number.isSafeInteger(msg.leaseFence) && msg.leaseFence >= 0) pr.fenceTick = Math.max(pr.fenceTick, rep.now + Math.min(msg.leaseFence, rep.timing.leaseTicks));
  }
  if (pr.phase === 'sync') advanceTakeover(rep, out, ps);
  else if (pr.phase === 'align' || pr.phase === 'serving') startCatchup(rep, out, ps, f);
}

function onCatchup(rep: Replication, out: RepReady, ps: PartitionState, msg: RepCatchupMsg): void {
  const fs = ps.follower;
  if (fs === null || fs.session !== msg.session || fs.primary !== msg.from) return askResync(rep, out, ps, msg);
  if (fs.liveNext !== null) {
    // A retransmission: repeat where we are.
    if (fs.copy === null) ackPrimary(rep, out, ps, true);
    else if (!fs.copy.done && copiesInFlight(rep) < replicationLimits.copyConcurrencyMax) sendCopyReq(rep, out, ps);
    return;
  }
  fs.liveNext = toSeq(msg.liveFrom + 1);
  fs.livePos = { epoch: msg.liveFromEpoch, seq: msg.liveFrom };
  if (msg.mode === 'none') {
    writeMeta(out, ps, { ...ps.meta, pos: { epoch: msg.liveFromEpoch, seq: msg.liveFrom }, history: historyUpTo(msg.history, msg.liveFrom) });
    out.events.push({ type: 'caught-up', partition: ps.id, epoch: rep.cfg!.epoch });
    ackPrimary(rep, out, ps, true);
    ackFinishedLearners(rep, out);
    return;
  }
  // The position is invalid until the copy completes: a crash mid-copy means a full copy.
  // The copy's target is the primary's position at liveFrom: its log holds everything
  // committed, so should this primary go away mid-copy, any log that contains that
  // position can stand in for the copy we no longer hold (pullSource).
  const copyTarget = { epoch: msg.liveFromEpoch, seq: msg.liveFrom };
  if (msg.mode === 'full') {
    out.persist.push({ kind: 'partition-reset', partition: ps.id });
    writeMeta(out, ps, { ...ps.meta, pos: null, history: [], copyTarget });
  } else {
    writeMeta(out, ps, { ...ps.meta, pos: null, copyTarget });
  }
  fs.copy = { mode: msg.mode, fromSeq: msg.fromSeq, after: null, done: false, lastReqTick: -Infinity, awaiting: false, liveFromEpoch: msg.liveFromEpoch, history: historyUpTo(msg.history, msg.liveFrom) };
  out.events.push({ type: 'copy', partition: ps.id, mode: msg.mode, role: 'follower' });
  // Else the tick asks once a copy slot (copyConcurrencyMax) is free.
  if (copiesInFlight(rep) < replicationLimits.copyConcurrencyMax) sendCopyReq(rep, out, ps);
}

/** Copies with a chunk request out, not yet answered and not yet due for a resend. */
function copiesInFlight(rep: Replication): number {
  let n = 0;
  for (const ps of rep.partitions) {
    const c = ps.follower?.copy;
    if (c && !c.done && c.awaiting && rep.now - c.lastReqTick < rep.timing.retransmitTicks) n++;
  }
  return n;
}

function sendCopyReq(rep: Replication, out: RepReady, ps: PartitionState): void {
  const fs = ps.follower!;
  const c = fs.copy!;
  c.lastReqTick = rep.now;
  c.awaiting = true;
  send(rep, out, fs.primary, { type: 'rep-copy-req', partition: ps.id, session: fs.session, mode: c.mode, fromSeq: c.fromSeq, after: c.after });
}

/** Serve a chunk of our partition to a node at the same epoch (a follower catching up, or a new primary pulling). */
function onCopyReq(rep: Replication, out: RepReady, ps: PartitionState, msg: RepCopyReqMsg): void {
  const pos = ps.meta.pos;
  if (pos === null || ps.role === 'none') return; // no complete copy to give
  const scanned = rep.store.scan(ps.id, msg.after, replicationLimits.copyChunkMax);
  let next = scanned.length < replicationLimits.copyChunkMax ? null : scanned[scanned.length - 1]!.key;
  const records: (readonly [string, KvRecord])[] = [];
  let bytes = 0;
  for (let i = 0; i < scanned.length; i++) {
    const r = scanned[i]!;
    if (msg.mode === 'full' || r.record.seq > msg.fromSeq) {
      records.push([r.key, r.record]);
      bytes += recordBytes(r.record);
    }
    if (bytes >= replicationLimits.copyChunkBytesMax && i < scanned.length - 1) {
      next = r.key; // bounded in bytes too: the rest comes in the next chunk
      break;
    }
  }
  send(rep, out, msg.from, {
    type: 'rep-copy-chunk',
    partition: ps.id,
    session: msg.session,
    mode: msg.mode,
    fromSeq: msg.fromSeq,
    after: msg.after,
    records,
    next,
    pos,
    history: ps.meta.history,
    purgedClock: ps.meta.purgedClock,
    purgedUpTo: ps.meta.purgedUpTo,
  });
}

function onCopyChunk(rep: Replication, out: RepReady, ps: PartitionState, msg: RepCopyChunkMsg): void {
  const pr = ps.primary;
  if (pr !== null) {
    const pull = pr.pull;
    if (pr.phase !== 'pull' || pull === null || msg.session !== pr.session || msg.from !== pull.source || !answers(msg, pull)) return;
    if (pull.mode === 'delta' && deltaMissesPurges(rep, msg, pull.fromSeq)) {
      // The source collected a tombstone after our position: pull everything instead.
      out.persist.push({ kind: 'partition-reset', partition: ps.id });
      writeMeta(out, ps, { ...ps.meta, pos: null, history: [] });
      pull.mode = 'full';
      pull.fromSeq = toSeq(0);
      pull.after = null;
      out.events.push({ type: 'copy', partition: ps.id, mode: 'full', role: 'primary' });
      sendPullReq(rep, out, ps);
      return;
    }
    for (const [key, record] of msg.records) applyIncoming(rep, out, ps, key, record);
    adoptPurged(out, ps, msg, pull.mode);
    if (msg.next !== null) {
      pull.after = msg.next;
      sendPullReq(rep, out, ps);
      return;
    }
    // We now hold the source's log: adopt its position and history.
    writeMeta(out, ps, { ...ps.meta, pos: msg.pos, history: historyUpTo(msg.history, msg.pos.seq) });
    pr.pull = null;
    beginAlign(rep, out, ps);
    return;
  }
  const op = ps.orphanPull;
  if (op !== null) {
    if (msg.session !== op.session || msg.from !== op.source || !answers(msg, op)) return;
    if (comparePositions(msg.pos, op.expect) !== 0) {
      ps.orphanPull = null; // the source moved (it restarted): our copy is mixed; pos stays null, start over
      return;
    }
    // A delta only from the empty position (onOrphanTick): it misses nothing we hold.
    for (const [key, record] of msg.records) applyIncoming(rep, out, ps, key, record);
    adoptPurged(out, ps, msg, op.mode);
    if (msg.next !== null) {
      op.after = msg.next;
      sendOrphanReq(rep, out, ps);
      return;
    }
    writeMeta(out, ps, { ...ps.meta, pos: msg.pos, history: historyUpTo(msg.history, msg.pos.seq) });
    ps.orphanPull = null;
    return;
  }
  const fs = ps.follower;
  const c = fs?.copy ?? null;
  if (fs === null || c === null || c.done || msg.session !== fs.session || msg.from !== fs.primary || !answers(msg, c)) return;
  c.awaiting = false;
  if (c.mode === 'delta' && deltaMissesPurges(rep, msg, c.fromSeq)) {
    // The primary collected a tombstone after our position while we copied (its grace ran
    // out meanwhile): the delta cannot be complete. Our position is null on disk since the
    // delta began, so a new stream (resync) gives us a full copy.
    ps.follower = null;
    send(rep, out, msg.from, { type: 'rep-ack', partition: ps.id, session: msg.session, acked: toSeq(0), caughtUp: false, resync: true, copying: false });
    return;
  }
  adoptPurged(out, ps, msg, c.mode);
  for (const [key, record] of msg.records) {
    applyIncoming(rep, out, ps, key, record);
    const b = recordBytes(record);
    rep.copied.keys += 1;
    rep.copied.bytes += b;
    rep.copyBudget -= b;
  }
  if (msg.next !== null) {
    c.after = msg.next;
    // Throttled: the tick asks for the next chunk once the budget is positive again (and
    // a copy slot is free: the tick may have handed this one's to another partition).
    if (rep.copyBudget > 0 && copiesInFlight(rep) < replicationLimits.copyConcurrencyMax) sendCopyReq(rep, out, ps);
    else c.lastReqTick = -Infinity;
    return;
  }
  c.done = true;
  finishCopy(rep, out, ps);
}

/** Does the chunk answer the request this copy has outstanding (not an older one of the same session)? */
function answers(msg: RepCopyChunkMsg, want: { readonly mode: 'delta' | 'full'; readonly fromSeq: Seq; readonly after: string | null }): boolean {
  return msg.mode === want.mode && msg.fromSeq === want.fromSeq && msg.after === want.after;
}

/**
 * Can a delta copy from `fromSeq` miss a delete? Yes if the source collected a tombstone
 * written after that position (a delta sends only records with seq > fromSeq, and the
 * tombstone is gone). Positions compare by seq: fromSeq is on the source's log.
 */
function deltaMissesPurges(rep: Replication, msg: RepCopyChunkMsg, fromSeq: Seq): boolean {
  if (rep.mutation === 'delta-ignores-purges') return false; // TEST-ONLY mutation
  return msg.purgedUpTo.seq > fromSeq;
}

/**
 * A copy chunk carries the source's collected tombstones. The clock is always merged
 * (only ever larger: new writes stay after every collected version). The position: a full
 * copy replaces our log with the source's, so its purgedUpTo replaces ours; a delta keeps
 * the later of the two (both are positions on the same log).
 */
function adoptPurged(out: RepReady, ps: PartitionState, msg: RepCopyChunkMsg, mode: 'delta' | 'full'): void {
  const m = ps.meta;
  const clock = merge(m.purgedClock, msg.purgedClock);
  const upTo = mode === 'full' ? msg.purgedUpTo : maxPosition(m.purgedUpTo, msg.purgedUpTo);
  if (clockToString(clock) === clockToString(m.purgedClock) && comparePositions(upTo, m.purgedUpTo) === 0) return;
  writeMeta(out, ps, { ...m, purgedClock: clock, purgedUpTo: upTo });
}

/** The copy is complete and live entries are contiguous from liveFrom: we hold the primary's log. */
function finishCopy(rep: Replication, out: RepReady, ps: PartitionState): void {
  const fs = ps.follower!;
  const c = fs.copy!;
  writeMeta(out, ps, { ...ps.meta, pos: fs.livePos, history: c.history });
  fs.copy = null;
  out.events.push({ type: 'caught-up', partition: ps.id, epoch: rep.cfg!.epoch });
  ackPrimary(rep, out, ps, true);
  ackFinishedLearners(rep, out);
}

function onAppend(rep: Replication, out: RepReady, ps: PartitionState, msg: RepAppendMsg): void {
  const fs = ps.follower;
  if (fs === null || fs.session !== msg.session || fs.primary !== msg.from) return askResync(rep, out, ps, msg);
  if (fs.liveNext === null || !Array.isArray(msg.entries)) return;
  for (const e of msg.entries) {
    if (e.seq < fs.liveNext) continue;
    if (e.seq > fs.liveNext) break; // a gap: our ack tells the primary where to resume
    applyIncoming(rep, out, ps, e.key, e.record);
    fs.liveNext = toSeq(e.seq + 1);
    fs.livePos = { epoch: e.record.epoch, seq: e.seq };
    const history = extendHistory(fs.copy !== null ? fs.copy.history : ps.meta.history, e.record.epoch, e.seq, replicationLimits.historyMax);
    if (fs.copy !== null) fs.copy.history = history;
    else writeMeta(out, ps, { ...ps.meta, pos: fs.livePos, history });
  }
  ackPrimary(rep, out, ps, fs.copy === null);
}

/** A message from our primary in a stream we do not know (we restarted, or a sync was lost): start over. */
function askResync(rep: Replication, out: RepReady, ps: PartitionState, msg: RepCatchupMsg | RepAppendMsg | RepConfirmMsg): void {
  if ((ps.role !== 'replica' && ps.role !== 'learner') || primaryIdOf(rep, ps.id) !== msg.from) return;
  send(rep, out, msg.from, { type: 'rep-ack', partition: ps.id, session: msg.session, acked: toSeq(0), caughtUp: false, resync: true, copying: false });
}

function ackPrimary(rep: Replication, out: RepReady, ps: PartitionState, caughtUp: boolean): void {
  const fs = ps.follower!;
  send(rep, out, fs.primary, {
    type: 'rep-ack',
    partition: ps.id,
    session: fs.session,
    acked: toSeq((fs.liveNext ?? 1) - 1),
    caughtUp,
    resync: false,
    // Only an unconfirmed learner's flag matters (and only it pays for the scan).
    copying: ps.role === 'learner' && ps.confirmedEpoch !== rep.cfg!.epoch && learnerCopying(rep),
  });
}

/**
 * Does this node still copy a partition it learns (or wait for one's catch-up to be
 * announced)? While it does, its finished partitions ask not to be confirmed yet: a
 * confirmed learner is in the commit set, and one busy copying would hold up every write of
 * those partitions until the move ends (rebalancing.md, "When a learner is confirmed").
 */
function learnerCopying(rep: Replication): boolean {
  for (const ps of rep.partitions) {
    if (ps.role !== 'learner' || ps.follower === null) continue;
    if (ps.follower.copy !== null || ps.follower.liveNext === null) return true;
  }
  return false;
}

/** A learner's copy of p is complete, its stream live, and its primary has yet to confirm it. */
function awaitsConfirm(rep: Replication, ps: PartitionState): boolean {
  const fs = ps.follower;
  return ps.role === 'learner' && fs !== null && fs.copy === null && fs.liveNext !== null && ps.confirmedEpoch !== rep.cfg!.epoch;
}

/** The last copy finished: tell the primaries of the finished ones that we may be confirmed now. */
function ackFinishedLearners(rep: Replication, out: RepReady): void {
  if (learnerCopying(rep)) return;
  for (const ps of rep.partitions) if (awaitsConfirm(rep, ps)) ackPrimary(rep, out, ps, true);
}

function onAck(rep: Replication, out: RepReady, ps: PartitionState, msg: RepAckMsg): void {
  const pr = ps.primary;
  const f = pr?.followers.get(msg.from);
  if (pr === null || f === undefined || msg.session !== f.session) return;
  if (msg.resync) {
    if (f.syncOk) resync(rep, out, ps, f);
    return;
  }
  if (!f.streaming || !Number.isSafeInteger(msg.acked)) return;
  if (msg.acked > f.acked) f.acked = toSeq(Math.min(msg.acked, ps.meta.pos?.seq ?? 0));
  if (msg.caughtUp) f.caughtUp = true;
  f.copying = msg.copying;
  if (f.sentUpTo < f.acked) f.sentUpTo = f.acked;
  if (pr.phase === 'align') advanceTakeover(rep, out, ps);
  else if (pr.phase === 'serving') {
    advanceCommit(rep, out, ps);
    sendAppends(rep, out, ps, f);
  }
}

function onConfirm(rep: Replication, out: RepReady, ps: PartitionState, msg: RepConfirmMsg): void {
  const fs = ps.follower;
  if (fs === null || fs.session !== msg.session || fs.primary !== msg.from) return askResync(rep, out, ps, msg);
  if (ps.role === 'learner' && fs.copy === null && fs.liveNext !== null) ps.confirmedEpoch = rep.cfg!.epoch;
}

function onFollowerTick(rep: Replication, out: RepReady, ps: PartitionState): void {
  // Lost acks: a finished learner repeats that it is ready to be confirmed.
  if (rep.now % rep.timing.heartbeatTicks === 0 && awaitsConfirm(rep, ps) && !learnerCopying(rep)) ackPrimary(rep, out, ps, true);
  const c = ps.follower?.copy;
  if (c === null || c === undefined || c.done || rep.copyBudget <= 0 || rep.now - c.lastReqTick < rep.timing.retransmitTicks) return;
  if (copiesInFlight(rep) < replicationLimits.copyConcurrencyMax) sendCopyReq(rep, out, ps);
}

/** Value bytes of a record (what the transfer throttle counts). */
function recordBytes(r: KvRecord): number {
  return r.value === null ? 0 : r.value.byteLength;
}

function learnProgress(rep: Replication): LearnProgress {
  const epoch = rep.cfg?.epoch ?? 0;
  let partitions = 0;
  let confirmed = 0;
  for (const ps of rep.partitions) {
    if (ps.role !== 'learner') continue;
    partitions++;
    if (ps.confirmedEpoch === epoch) confirmed++;
  }
  return { partitions, confirmed, keys: rep.copied.keys, bytes: rep.copied.bytes };
}

/**
 * The move in progress as this node sees it: each future owner's catch-up progress (its
 * own, or from its last heartbeat). Empty when nothing moves.
 */
export function moveProgress(rep: Replication): Map<NodeId, LearnProgress | null> {
  const out = new Map<NodeId, LearnProgress | null>();
  if (rep.ring === null || rep.cfg === null) return out;
  for (let p = 0; p < rep.cfg.partitions; p++) {
    for (const id of rep.ring.learners(partitionId(p))) {
      if (!out.has(id)) out.set(id, id === rep.id ? learnProgress(rep) : (rep.peerProgress.get(id) ?? null));
    }
  }
  return out;
}

/** Rule 7 for replication and catch-up: apply only if the incoming version descends from ours. */
/** Returns whether the record was written. */
function applyIncoming(rep: Replication, out: RepReady, ps: PartitionState, key: string, record: KvRecord): boolean {
  const stored = rep.store.get(ps.id, key);
  const verdict = judgeIncoming(stored, record);
  if (verdict === 'skip') return false;
  if (verdict === 'conflict') {
    rep.conflicts += 1;
    out.events.push({ type: 'version-conflict', partition: ps.id, key });
    if (stored !== undefined && conflictWinner(stored, record) === stored) return false;
  }
  out.persist.push({ kind: 'record', partition: ps.id, key, record });
  return true;
}

// ---------------------------------------------------------------------------------------
// Anti-entropy (anti-entropy.ts): the primary compares ranges with each in-sync follower

/**
 * Starts a comparison pass on every partition this node serves as primary, with every
 * caught-up follower (a pass already running continues). Each partition reports
 * `ae-done` when it has compared all its followers; `partitions` says how many take part.
 */
export function requestRepair(rep: Replication): { ready: RepReady; partitions: PartitionId[] } {
  const out = newReady();
  const partitions = startRepair(rep, out);
  return { ready: finish(rep, out), partitions };
}

function startRepair(rep: Replication, out: RepReady): PartitionId[] {
  const started: PartitionId[] = [];
  for (const ps of rep.partitions) {
    const pr = ps.primary;
    if (pr === null || pr.phase !== 'serving') continue;
    started.push(ps.id);
    for (const f of pr.followers.values()) {
      if (f.streaming && f.caughtUp && !pr.aeQueue.includes(f.id) && pr.ae?.follower !== f.id) pr.aeQueue.push(f.id);
    }
    if (pr.ae === null && pr.aeQueue.length === 0) out.events.push({ type: 'ae-done', partition: ps.id });
    else if (pr.ae === null) driveAntiEntropy(rep, out, ps, pr);
  }
  return started;
}

function driveAntiEntropy(rep: Replication, out: RepReady, ps: PartitionState, pr: PrimaryState): void {
  const ae = pr.ae;
  if (ae !== null) {
    const f = pr.followers.get(ae.follower);
    if (f !== undefined && f.caughtUp) {
      if (rep.now - ae.sentTick >= 4 * rep.timing.retransmitTicks) sendAe(rep, out, ps, pr, ae); // lost: ask again (idempotent)
      return;
    }
    pr.ae = null; // the follower left or is catching up again: catch-up covers it
    if (pr.aeQueue.length === 0) out.events.push({ type: 'ae-done', partition: ps.id });
  }
  while (pr.aeQueue.length > 0) {
    const next = pr.aeQueue.shift()!;
    const f = pr.followers.get(next);
    if (f === undefined || !f.caughtUp) {
      if (pr.aeQueue.length === 0) out.events.push({ type: 'ae-done', partition: ps.id });
      continue;
    }
    const range = nextRange(rep.store, ps.id, null);
    pr.ae = { follower: next, round: ++rep.aeRounds, after: range.after, upTo: range.upTo, phase: 'digest', sentTick: rep.now };
    sendAe(rep, out, ps, pr, pr.ae);
    return;
  }
}

function sendAe(rep: Replication, out: RepReady, ps: PartitionState, pr: PrimaryState, ae: AeRound): void {
  const f = pr.followers.get(ae.follower)!;
  ae.sentTick = rep.now;
  if (ae.phase === 'digest') {
    send(rep, out, ae.follower, { type: 'rep-ae-req', partition: ps.id, session: f.session, round: ae.round, after: ae.after, upTo: ae.upTo });
    return;
  }
  const mine = boundedRecords(rangeRecords(rep.store, ps.id, ae.after, ae.upTo, antiEntropyLimits.aeScanMax).records);
  if (mine.truncatedAt !== null) ae.upTo = mine.truncatedAt; // bounded in bytes: the rest is the next range
  send(rep, out, ae.follower, { type: 'rep-ae-push', partition: ps.id, session: f.session, round: ae.round, after: ae.after, upTo: ae.upTo, records: mine.records });
}

/** At most copyChunkBytesMax of values (at least one record); where it cut, if it did. */
function boundedRecords(records: readonly { key: string; record: KvRecord }[]): { records: (readonly [string, KvRecord])[]; truncatedAt: string | null } {
  const out: (readonly [string, KvRecord])[] = [];
  let bytes = 0;
  for (const r of records) {
    if (out.length > 0 && bytes + recordBytes(r.record) > replicationLimits.copyChunkBytesMax) return { records: out, truncatedAt: out[out.length - 1]![0] };
    out.push([r.key, r.record]);
    bytes += recordBytes(r.record);
  }
  return { records: out, truncatedAt: null };
}

function onAeReq(rep: Replication, out: RepReady, ps: PartitionState, msg: RepAeReqMsg): void {
  const fs = ps.follower;
  if (fs === null || fs.session !== msg.session || fs.primary !== msg.from || fs.copy !== null) return;
  const r = rangeRecords(rep.store, ps.id, msg.after, msg.upTo, antiEntropyLimits.aeScanMax);
  const d = digestOf(r.records, r.overflow);
  send(rep, out, msg.from, { type: 'rep-ae-digest', partition: ps.id, session: msg.session, round: msg.round, count: d.count, sum: d.sum, overflow: d.overflow });
}

function onAeDigest(rep: Replication, out: RepReady, ps: PartitionState, msg: RepAeDigestMsg): void {
  const pr = ps.primary;
  const ae = pr?.ae ?? null;
  if (pr === null || ae === null || ae.follower !== msg.from || ae.round !== msg.round || ae.phase !== 'digest') return;
  const mine = rangeRecords(rep.store, ps.id, ae.after, ae.upTo, antiEntropyLimits.aeScanMax);
  if (digestsEqual(digestOf(mine.records, mine.overflow), { count: msg.count, sum: msg.sum, overflow: msg.overflow })) return advanceAe(rep, out, ps, pr, ae);
  ae.phase = 'push';
  sendAe(rep, out, ps, pr, ae);
}

function onAePush(rep: Replication, out: RepReady, ps: PartitionState, msg: RepAePushMsg): void {
  const fs = ps.follower;
  if (fs === null || fs.session !== msg.session || fs.primary !== msg.from || fs.copy !== null || !Array.isArray(msg.records)) return;
  const pushed = new Map<string, KvRecord>();
  let repaired = 0;
  for (const [key, record] of msg.records) {
    pushed.set(key, record);
    if (applyIncoming(rep, out, ps, key, record)) repaired++;
  }
  // Ours that the primary lacks, or that are newer or concurrent (read before this push's writes).
  const back: { key: string; record: KvRecord }[] = [];
  for (const r of rangeRecords(rep.store, ps.id, msg.after, msg.upTo, antiEntropyLimits.aeScanMax).records) {
    const theirs = pushed.get(r.key);
    if (theirs === undefined || judgeIncoming(theirs, r.record) !== 'skip') back.push(r);
  }
  send(rep, out, msg.from, { type: 'rep-ae-back', partition: ps.id, session: msg.session, round: msg.round, repaired, records: boundedRecords(back).records });
}

function onAeBack(rep: Replication, out: RepReady, ps: PartitionState, msg: RepAeBackMsg): void {
  const pr = ps.primary;
  const ae = pr?.ae ?? null;
  if (pr === null || ae === null || ae.follower !== msg.from || ae.round !== msg.round || ae.phase !== 'push' || !Array.isArray(msg.records)) return;
  let repaired = 0;
  for (const [key, record] of msg.records) if (applyIncoming(rep, out, ps, key, record)) repaired++;
  // The primary reports both sides (the follower only answers), so each repair is counted once.
  if (Number.isSafeInteger(msg.repaired) && msg.repaired > 0) out.events.push({ type: 'repaired', partition: ps.id, peer: msg.from, where: 'follower', count: msg.repaired });
  if (repaired > 0) out.events.push({ type: 'repaired', partition: ps.id, peer: msg.from, where: 'primary', count: repaired });
  advanceAe(rep, out, ps, pr, ae);
}

function advanceAe(rep: Replication, out: RepReady, ps: PartitionState, pr: PrimaryState, ae: AeRound): void {
  if (ae.upTo === null) {
    pr.ae = null;
    return finishAeFollower(rep, out, ps, pr);
  }
  const range = nextRange(rep.store, ps.id, ae.upTo);
  ae.after = range.after;
  ae.upTo = range.upTo;
  ae.phase = 'digest';
  sendAe(rep, out, ps, pr, ae);
}

function finishAeFollower(rep: Replication, out: RepReady, ps: PartitionState, pr: PrimaryState): void {
  if (pr.aeQueue.length === 0) out.events.push({ type: 'ae-done', partition: ps.id });
  else driveAntiEntropy(rep, out, ps, pr);
}

// ---------------------------------------------------------------------------------------
// Tombstone collection

/**
 * The sweep: every node walks each of its complete copies (primary or follower), a bounded
 * number of records per tick, and removes the tombstones whose grace has run out
 * (`record-delete`), recording them in the partition's purgedClock / purgedUpTo in the
 * same Ready. A tombstone is removed only while it is the key's newest record: the scan
 * reads the read-your-writes StoreView, and on a primary a key with a write in flight is
 * left alone (its tombstone may not be committed yet). A tombstone without deletedAtMs
 * (written before collection existed) is stamped with this node's clock instead, so it
 * gets the whole grace from now on. A pass restarts from partition 0 when it is done,
 * at most every min(grace / 4, sweepPassMaxMs).
 */
function sweepTombstones(rep: Replication, out: RepReady): void {
  const now = rep.wallMs;
  if (now === null || rep.partitions.length === 0) return;
  if (rep.sweep === null) {
    if (now < rep.nextSweepAtMs) return;
    rep.sweep = { partition: 0, after: null };
  }
  let records = replicationLimits.sweepRecordsPerTick;
  let bytes = replicationLimits.sweepBytesPerTick;
  while (records > 0 && bytes > 0) {
    const cur = rep.sweep;
    const ps = rep.partitions[cur.partition];
    if (ps === undefined) {
      rep.sweep = null;
      rep.nextSweepAtMs = now + Math.max(1, Math.min(replicationLimits.sweepPassMaxMs, Math.floor(rep.tombstoneGraceMs / 4)));
      return;
    }
    records -= 1; // each partition visited (or scan started) costs one
    // Mid-copy (position null): an incomplete copy is not swept; the copy brings the source's purges.
    // Nor a partition without a role: a released copy missed the writes since its release,
    // and one dropped in this tick still shows its records until this Ready is written.
    if (ps.meta.pos !== null && ps.role !== 'none') {
      if (records === 0) return; // resume here next tick
      const limit = Math.min(records, replicationLimits.copyChunkMax);
      const scanned = rep.store.scan(ps.id, cur.after, limit);
      records -= scanned.length;
      for (const r of scanned) bytes -= recordBytes(r.record);
      sweepRecords(rep, out, ps, scanned, now);
      if (scanned.length === limit) {
        cur.after = scanned[scanned.length - 1]!.key; // more may follow
        continue;
      }
    }
    cur.partition += 1;
    cur.after = null;
  }
}

function sweepRecords(rep: Replication, out: RepReady, ps: PartitionState, scanned: readonly { key: string; record: KvRecord }[], now: number): void {
  let purged = 0;
  let clock = ps.meta.purgedClock;
  let upTo = ps.meta.purgedUpTo;
  for (const { key, record } of scanned) {
    if (record.value !== null) continue;
    if (ps.primary !== null && ps.primary.inflight.has(key)) continue;
    if (record.deletedAtMs === undefined) {
      out.persist.push({ kind: 'record', partition: ps.id, key, record: { ...record, deletedAtMs: now } });
      continue;
    }
    if (!tombstoneExpired(record, now, rep.tombstoneGraceMs)) continue;
    out.persist.push({ kind: 'record-delete', partition: ps.id, key });
    clock = merge(clock, record.clock);
    upTo = maxPosition(upTo, { epoch: record.epoch, seq: record.seq });
    purged += 1;
  }
  if (purged === 0) return;
  writeMeta(out, ps, { ...ps.meta, purgedClock: clock, purgedUpTo: upTo });
  out.events.push({ type: 'tombstones-purged', partition: ps.id, count: purged });
}

// ---------------------------------------------------------------------------------------
// Heartbeats, leases, catch-up status

function sendHeartbeats(rep: Replication, out: RepReady): void {
  const cfg = rep.cfg!;
  const orphans = orphanPositions(rep);
  const caught = caughtUpEpoch(rep);
  const progress = learnProgress(rep);
  for (const m of cfg.members) {
    if (m.id === rep.id) continue;
    send(rep, out, m.id, { type: 'rep-heartbeat', nonce: rep.nonce, leaseId: rep.now, caughtUpEpoch: caught, orphans, progress });
  }
}

/** Partitions where we are a joining member and no member of the preference list is active. */
function isOrphan(rep: Replication, p: PartitionId): boolean {
  const pref = preference(rep, p);
  return pref.includes(rep.id) && pref.every((id) => statusOf(rep, id) !== 'active');
}

function orphanPositions(rep: Replication): [number, LogPosition | null][] {
  if (selfMember(rep)?.status !== 'joining') return [];
  const out: [number, LogPosition | null][] = [];
  for (const ps of rep.partitions) if (isOrphan(rep, ps.id)) out.push([ps.id, ps.meta.pos]);
  return out;
}

/**
 * Orphan recovery: no member of p's preference list is active, so no primary can confirm
 * anyone. If every member of the list is joining (all alive, none down) and has reported
 * its position for this epoch, the most advanced one holds everything ever committed (a
 * commit needed every in-sync copy) and may be activated. With a member down, wait.
 */
function orphanConfirmed(rep: Replication, ps: PartitionState): boolean {
  const cfg = rep.cfg!;
  const mine = ps.meta.pos;
  if (mine === null || !isOrphan(rep, ps.id)) return false;
  const reports = rep.orphanReports.get(ps.id);
  for (const id of preference(rep, ps.id)) {
    if (id === rep.id) continue;
    if (statusOf(rep, id) !== 'joining') return false;
    const r = reports?.get(id);
    if (r === undefined || r.epoch !== cfg.epoch) return false;
    if (comparePositions(r.pos, mine) > 0) return false;
  }
  return true;
}

/**
 * Orphan recovery, the data side: when every member of an orphan partition has reported
 * and one is strictly ahead of us, copy its log (delta if our position is on its history,
 * else full). Its position is static: no primary exists in this epoch, and members refuse
 * older epochs. Afterwards we tie with it, and either of us may be activated.
 */
function onOrphanTick(rep: Replication, out: RepReady, ps: PartitionState): void {
  const op = ps.orphanPull;
  if (op !== null) {
    if (rep.now - op.lastReqTick >= rep.timing.retransmitTicks) sendOrphanReq(rep, out, ps);
    return;
  }
  if (!isOrphan(rep, ps.id) || rep.now % rep.timing.heartbeatTicks !== 0) return;
  const reports = rep.orphanReports.get(ps.id);
  let best: { id: NodeId; pos: LogPosition } | null = null;
  for (const id of preference(rep, ps.id)) {
    if (id === rep.id) continue;
    const r = reports?.get(id);
    if (r === undefined || r.epoch !== rep.cfg!.epoch) return; // wait for everyone
    if (r.pos !== null && comparePositions(r.pos, best?.pos ?? ps.meta.pos) > 0) best = { id, pos: r.pos };
  }
  if (best === null) return;
  // The source's history is not in its report: a delta only from the empty position, else a full copy.
  const mine = ps.meta.pos;
  const mode = mine !== null && mine.seq === 0 ? 'delta' : 'full';
  if (mode === 'full') out.persist.push({ kind: 'partition-reset', partition: ps.id });
  // The source's history is unknown here: the target stays our own last complete position
  // (any log containing it holds what we held).
  writeMeta(out, ps, { ...ps.meta, pos: null, history: mode === 'full' ? [] : ps.meta.history, copyTarget: ps.meta.pos ?? ps.meta.copyTarget });
  ps.orphanPull = { source: best.id, expect: best.pos, session: nextU32(rep.prng), mode, fromSeq: toSeq(0), after: null, lastReqTick: rep.now };
  out.events.push({ type: 'copy', partition: ps.id, mode, role: 'follower' });
  sendOrphanReq(rep, out, ps);
}

function sendOrphanReq(rep: Replication, out: RepReady, ps: PartitionState): void {
  const op = ps.orphanPull!;
  op.lastReqTick = rep.now;
  send(rep, out, op.source, { type: 'rep-copy-req', partition: ps.id, session: op.session, mode: op.mode, fromSeq: op.fromSeq, after: op.after });
}

/** The epoch for which this (joining) node holds everything committed on all its partitions, else 0. */
/**
 * The epoch for which this node holds everything committed in every partition it learns
 * (a joining member: all of its partitions; an active member: those it will own after the
 * move in progress), or 0. An active member that learns nothing is trivially caught up.
 */
function caughtUpEpoch(rep: Replication): number {
  const cfg = rep.cfg;
  const status = selfMember(rep)?.status;
  if (cfg === null || (status !== 'joining' && status !== 'active')) return 0;
  for (const ps of rep.partitions) {
    const learns = ps.role === 'learner' || (status === 'joining' && preference(rep, ps.id).includes(rep.id));
    if (!learns) continue;
    if (ps.confirmedEpoch === cfg.epoch) continue;
    if (orphanConfirmed(rep, ps)) continue;
    return 0;
  }
  return cfg.epoch;
}

// ---------------------------------------------------------------------------------------
// Client operations

function onClientOp(rep: Replication, out: RepReady, requestId: string, op: ClientOp): void {
  const reply = (result: ClientResult): void => {
    out.replies.push({ requestId, result });
  };
  const cfg = rep.cfg;
  if (typeof op.key !== 'string' || op.key.length === 0 || op.key.length > replicationLimits.keyLengthMax) {
    return reply({ status: 'unavailable', reason: 'invalid' });
  }
  if (cfg === null) return reply({ status: 'unavailable', reason: 'no-primary' });
  const p = partitionOf(op.key, cfg.partitions);
  const ps = rep.partitions[p]!;
  if (op.type === 'get') {
    const answer = answerGet(rep, ps, op);
    if (answer !== 'park') return reply(answer);
    // Usually a few round trips (a rebalance switch, a handover): wait for it rather than
    // refuse. (Only a takeover: parking ops that wait for a lease too broke linearizability
    // in the simulator; docs/replication.md.)
    ps.primary!.parked.push({ requestId, op, untilTick: rep.now + replicationLimits.parkTicks });
    return;
  }
  const pr = ps.primary;
  if (pr === null) return reply({ status: 'not_primary', primary: primaryIdOf(rep, ps.id) });
  const gate = servingGate(rep, ps);
  if (gate === 'takeover' && pr.parked.length < replicationLimits.pendingWritesMax) {
    pr.parked.push({ requestId, op, untilTick: rep.now + replicationLimits.parkTicks });
    return;
  }
  if (gate !== null) return reply({ status: 'unavailable', reason: gate });
  // Preconditions are checked against the newest write, in flight or not, so two
  // compare-and-sets on one version cannot both pass. A failure decided against an
  // uncommitted write waits for it to commit (else it could be a lie if that write is lost).
  // The newest version: the last write in flight for the key, else the store's. (The store
  // shows a write only once its Ready is carried out, and parked ops released together
  // share one Ready: reading the store alone would give two of them the same version.)
  const pending = pr.inflight.get(op.key);
  const newest = pending !== undefined ? inflightRecord(pr, op.key, pending.seqs[pending.seqs.length - 1]!) : rep.store.get(ps.id, op.key);
  const exists = newest !== undefined && newest.value !== null;
  const version = exists ? versionOf(newest.clock) : null;
  const ifMatch = op.ifMatch;
  let failure: 'precondition_failed' | 'not_found' | null = null;
  if (ifMatch === '*' && !exists) failure = 'precondition_failed';
  else if (Array.isArray(ifMatch) && (version === null || !ifMatch.includes(version))) failure = 'precondition_failed';
  else if (op.type === 'put' && op.ifNoneMatch === '*' && exists) failure = 'precondition_failed';
  else if (op.type === 'delete' && !exists) failure = 'not_found';
  if (failure !== null) {
    const inf = pr.inflight.get(op.key);
    if (inf === undefined) return reply({ status: failure });
    if (pr.reads.length >= replicationLimits.pendingReadsMax) return reply({ status: 'unavailable', reason: 'busy' });
    pr.reads.push({ requestId, waitSeq: inf.seqs[inf.seqs.length - 1]!, result: failure, deadlineTick: rep.now + rep.timing.writeTimeoutTicks });
    return;
  }
  if (pr.writes.length >= replicationLimits.pendingWritesMax) return reply({ status: 'unavailable', reason: 'busy' });
  const pos = ps.meta.pos!;
  const seq = toSeq(pos.seq + 1);
  // A key without a record starts from the clocks of the tombstones collected in the
  // partition: strictly after any version it had before, so no ETag is ever reused.
  const clock = increment(newest?.clock ?? (rep.mutation === 'new-key-ignores-purges' ? EMPTY_CLOCK : ps.meta.purgedClock), rep.id); // TEST-ONLY mutation: the empty clock
  const record: KvRecord =
    op.type === 'put'
      ? { value: op.value, clock, epoch: cfg.epoch, seq }
      : rep.wallMs === null
        ? { value: null, clock, epoch: cfg.epoch, seq }
        : { value: null, clock, epoch: cfg.epoch, seq, deletedAtMs: rep.wallMs };
  const entry: Entry = { seq, key: op.key, record };
  out.persist.push({ kind: 'record', partition: ps.id, key: op.key, record });
  writeMeta(out, ps, { ...ps.meta, pos: { epoch: cfg.epoch, seq } });
  pr.tail.push(entry);
  const inf = pr.inflight.get(op.key);
  if (inf === undefined) pr.inflight.set(op.key, { before: newest, seqs: [seq] });
  else inf.seqs.push(seq);
  pr.writes.push({ requestId, seq, version: versionOf(clock), created: !exists, deadlineTick: rep.now + rep.timing.writeTimeoutTicks });
  for (const f of pr.followers.values()) sendAppends(rep, out, ps, f);
  advanceCommit(rep, out, ps);
}

/** What a get on partition ps is answered now, or 'park' (wait for the takeover). Changes nothing. */
function answerGet(rep: Replication, ps: PartitionState, op: Extract<ClientOp, { type: 'get' }>): ClientResult | 'park' {
  if (op.consistency === 'stale') {
    // Any copy that is complete may answer; it may lag, never invent.
    if (ps.role === 'none' || ps.meta.pos === null) return { status: 'not_primary', primary: primaryIdOf(rep, ps.id) };
    return readResult(ps.primary !== null ? committedRecord(rep, ps, op.key) : rep.store.get(ps.id, op.key));
  }
  const pr = ps.primary;
  if (pr === null) return { status: 'not_primary', primary: primaryIdOf(rep, ps.id) };
  const gate = servingGate(rep, ps);
  if (gate === 'takeover' && pr.parked.length < replicationLimits.pendingWritesMax) return 'park';
  if (gate !== null) return { status: 'unavailable', reason: gate };
  return readResult(committedRecord(rep, ps, op.key));
}

/**
 * A get answered from the current state, without a Ready: exactly what submit would
 * reply to it at once, or null when submit must take it (a takeover would park it, or it
 * is not a get). Changes nothing. The state it reads may include records staged by a
 * Ready that is not durable yet: the caller must only use the answer when nothing of the
 * key is staged (the runtime's overlay knows; KvDriver.submit).
 */
export function readNow(rep: Replication, op: ClientOp): ClientResult | null {
  if (op.type !== 'get') return null;
  const cfg = rep.cfg;
  if (typeof op.key !== 'string' || op.key.length === 0 || op.key.length > replicationLimits.keyLengthMax) return { status: 'unavailable', reason: 'invalid' };
  if (cfg === null) return { status: 'unavailable', reason: 'no-primary' };
  const answer = answerGet(rep, rep.partitions[partitionOf(op.key, cfg.partitions)]!, op);
  return answer === 'park' ? null : answer;
}

/**
 * Client ops parked during the takeover: submitted again once it is over (they may then be
 * served, or refused for another reason); until then, those whose wait is over are refused
 * (nothing was applied).
 */
function releaseParked(rep: Replication, out: RepReady, ps: PartitionState): void {
  const pr = ps.primary;
  if (pr === null || pr.parked.length === 0) return;
  if (servingGate(rep, ps) === 'takeover') {
    while (pr.parked.length > 0 && rep.now >= pr.parked[0]!.untilTick) {
      out.replies.push({ requestId: pr.parked.shift()!.requestId, result: { status: 'unavailable', reason: 'takeover' } });
    }
    return;
  }
  const parked = pr.parked.splice(0);
  for (const p of parked) onClientOp(rep, out, p.requestId, p.op);
}

/** The record of an uncommitted entry (the tail keeps every entry after the commit point). */
function inflightRecord(pr: PrimaryState, key: string, seq: Seq): KvRecord {
  const e = pr.tail[seq - (pr.tail[0]?.seq ?? 0)];
  assert(e !== undefined && e.seq === seq && e.key === key, 'an entry in flight is in the tail');
  return e.record;
}

/** What a strong reader sees: the newest committed version (apply-after-commit). */
function committedRecord(rep: Replication, ps: PartitionState, key: string): KvRecord | undefined {
  const inf = ps.primary?.inflight.get(key);
  return inf !== undefined ? inf.before : rep.store.get(ps.id, key);
}

function readResult(r: KvRecord | undefined): ClientResult {
  if (r === undefined || r.value === null) return { status: 'not_found' };
  return { status: 'ok', version: versionOf(r.clock), created: false, value: r.value };
}

// ---------------------------------------------------------------------------------------
// Helpers

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** `body` must be a fresh object literal (every caller passes one): it becomes the message. */
function send(rep: Replication, out: RepReady, to: NodeId, body: DistributiveOmit<RepMessage, keyof RepBase>): void {
  assert(to !== rep.id, 'the replication layer never messages itself');
  // Completed in place rather than copied with a spread: one object per message, not two.
  const msg = body as unknown as { -readonly [K in keyof RepBase]: RepBase[K] };
  msg.from = rep.id;
  msg.clusterName = rep.clusterName;
  msg.epoch = rep.cfg!.epoch;
  out.send.push({ to, msg: msg as unknown as RepMessage });
}

function writeMeta(out: RepReady, ps: PartitionState, meta: PartitionMeta): void {
  // A complete copy needs no copy target (and a stale one must not outlive it).
  if (meta.pos !== null && meta.copyTarget !== null) meta = { ...meta, copyTarget: null };
  ps.meta = meta;
  // One meta op per partition per Ready: a Ready is written atomically, the last one wins.
  const i = out.persist.findIndex((op) => op.kind === 'partition-meta' && op.partition === ps.id);
  if (i >= 0) out.persist.splice(i, 1);
  out.persist.push({ kind: 'partition-meta', partition: ps.id, meta });
}

export function checkRepInvariants(rep: Replication): void {
  for (const ps of rep.partitions) {
    assert((ps.primary !== null) === (ps.role === 'primary'), 'primary state iff primary role');
    assert(ps.follower === null || ps.role === 'replica' || ps.role === 'learner', 'follower state only on followers');
    const pr = ps.primary;
    if (pr === null) continue;
    assert(pr.writes.length <= replicationLimits.pendingWritesMax, 'pending writes bounded');
    assert(pr.tail.length <= replicationLimits.tailMax + replicationLimits.pendingWritesMax, 'tail bounded');
    if (pr.phase === 'serving') {
      assert(ps.meta.pos !== null && pr.commitSeq <= ps.meta.pos.seq, 'commit point within the log');
      for (let i = 1; i < pr.tail.length; i++) assert(pr.tail[i]!.seq === pr.tail[i - 1]!.seq + 1, 'tail contiguous');
      for (const inf of pr.inflight.values()) for (const s of inf.seqs) assert(s > pr.commitSeq, 'in-flight entries are uncommitted');
    }
  }
}

// ---------------------------------------------------------------------------------------
// Composition with the membership node: one input, one combined Ready.

export interface KvNode {
  readonly membership: MembershipNode;
  readonly rep: Replication;
}

/** Carry out `membership` and `rep` as one Ready: both persists, then both sends, then both replies. */
export interface KvReady {
  readonly membership: Ready;
  readonly rep: RepReady;
}

export interface KvNodeOptions {
  readonly membership: Omit<NodeOptions, 'readyToActivate' | 'readyToRemove'>;
  readonly replication: Omit<RepOptions, 'id' | 'clusterName'>;
}

export function createKvNode(
  opts: KvNodeOptions,
  persisted: { readonly membership: PersistedState | null; readonly metas: ReadonlyMap<number, PartitionMeta> },
  store: StoreView,
): { node: KvNode; ready: KvReady } {
  const m = opts.membership;
  const rep = createReplication({ ...opts.replication, id: m.id, clusterName: m.clusterName }, persisted.metas, store);
  const nodeOpts: NodeOptions = {
    ...m,
    // An incoming member's activation is the switch of an add: it must keep enough copies too.
    readyToActivate: (id, cfg) => isCaughtUp(rep, id, cfg) && (cfg.members.find((m) => m.id === id)?.placement !== 'incoming' || switchKeepsCopies(rep, cfg)),
    readyToRemove: (id, cfg) => (cfg.members.find((m) => m.id === id)?.placement === 'incoming' ? cancelKeepsCopies(rep, cfg, id) : moveCaughtUp(rep, cfg)),
  };
  const membership = persisted.membership === null ? createNode(nodeOpts) : restoreNode(nodeOpts, persisted.membership);
  const node: KvNode = { membership, rep };
  return { node, ready: { membership: emptyMembershipReady(), rep: setConfig(rep, currentConfig(membership)) } };
}

export function stepKv(node: KvNode, msg: Message | RepMessage): KvReady {
  if (isRepMessage(msg)) return { membership: emptyMembershipReady(), rep: step(node.rep, msg) };
  return follow(node, stepMembership(node.membership, msg), null);
}

/** One tick of both layers; `wallMs` is the wall-clock time (tombstone collection only, see tick). */
export function tickKv(node: KvNode, wallMs?: number): KvReady {
  const m = tickMembership(node.membership);
  return follow(node, m, tick(node.rep, wallMs));
}

/** readNow on a node: a get answered without a Ready, or null (use submitKv). */
export function readNowKv(node: KvNode, op: ClientOp): ClientResult | null {
  return readNow(node.rep, op);
}

export function submitKv(node: KvNode, requestId: string, op: ClientOp, wallMs?: number): KvReady {
  return { membership: emptyMembershipReady(), rep: submit(node.rep, requestId, op, wallMs) };
}

export function proposeKv(node: KvNode, change: ConfigChange, requestId: string): KvReady {
  return follow(node, proposeMembership(node.membership, change, requestId), null);
}

export function repairKv(node: KvNode): { ready: KvReady; partitions: PartitionId[] } {
  const r = requestRepair(node.rep);
  return { ready: { membership: emptyMembershipReady(), rep: r.ready }, partitions: r.partitions };
}

export function isRepMessage(msg: Message | RepMessage): msg is RepMessage {
  return typeof msg.type === 'string' && msg.type.startsWith('rep-');
}

/** Feed a config learned by the membership layer to the replication layer, in the same Ready. */
function follow(node: KvNode, m: Ready, r: RepReady | null): KvReady {
  const cfg = currentConfig(node.membership);
  const rep = r ?? newReady();
  if (node.rep.cfg === null || cfg.epoch > node.rep.cfg.epoch) {
    const c = setConfig(node.rep, cfg);
    rep.persist.push(...c.persist);
    rep.send.push(...c.send);
    rep.replies.push(...c.replies);
    rep.events.push(...c.events);
  }
  return { membership: m, rep };
}

/**
 * The membership half of a replication-only Ready: one frozen value shared by every step
 * (a Ready per message or client op, and five fresh arrays each, showed in the allocation
 * profile). Readers only read a Ready.
 */
const EMPTY_MEMBERSHIP_READY: Ready = Object.freeze({
  persist: Object.freeze([]),
  send: Object.freeze([]),
  replies: Object.freeze([]),
  events: Object.freeze([]),
  dropped: Object.freeze([]),
}) as unknown as Ready;

function emptyMembershipReady(): Ready {
  return EMPTY_MEMBERSHIP_READY;
}

export { toEpoch as epochOf };
