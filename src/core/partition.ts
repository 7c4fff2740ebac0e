// One partition's replicated state, as plain data (roles are data, not classes), plus the
// pure rules that decide what a node may do with it. replication.ts drives these records.
//
// A partition's data is its own compacted log: every stored record carries the (epoch,
// seq) of the entry that wrote it, so "every record with seq > s" is a delta for a copy
// that stopped at s. `history` (epoch -> first seq, Kafka's leader-epoch cache) says
// which (epoch, seq) positions are on this node's log; a follower whose position is not
// on the primary's history has a divergent (never committed) suffix and takes a full
// copy instead of a delta.

import { compare, clockToString, EMPTY_CLOCK, type VectorClock } from './vector-clock.js';
import { assert, type Epoch, type NodeId, type PartitionId, type Seq } from './types.js';
import type { ClientOp } from './replication.js';

/** One stored version of a key. value null = tombstone (keeps its clock). */
export interface KvRecord {
  readonly value: Uint8Array | null;
  readonly clock: VectorClock;
  /** The epoch and seq of the entry that wrote this version. */
  readonly epoch: Epoch;
  readonly seq: Seq;
  /**
   * Tombstones only: the primary's wall clock (ms) when it wrote the delete. Replicated
   * with the record; the tombstone is collected `tombstoneGraceMs` later. Absent on a
   * tombstone written before collection existed (or by a core not given the time): the
   * sweep stamps it with its own clock the first time it sees it.
   */
  readonly deletedAtMs?: number;
}

/** Read-only view of this node's data, passed into the core (like etcd raft's Storage). */
export interface StoreView {
  /**
   * The newest record of key in partition. Read-your-writes: it must reflect every
   * `record` / `partition-reset` persist op the core has returned so far, durable or not
   * (the runtime keeps a write-behind overlay until the fsync completes).
   */
  get(partition: PartitionId, key: string): KvRecord | undefined;
  /** Up to `limit` records of a partition in ascending key order, keys > after (null: from the start). Tombstones included. */
  scan(partition: PartitionId, after: string | null, limit: number): { key: string; record: KvRecord }[];
}

/** A position in a partition's log: the (epoch, seq) of its last entry. seq 0 = empty. */
export interface LogPosition {
  readonly epoch: Epoch;
  readonly seq: Seq;
}

export interface HistoryEntry {
  readonly epoch: Epoch;
  readonly startSeq: Seq;
}

/** What a node keeps on disk about one partition besides its records. */
export interface PartitionMeta {
  /** Position of the last entry this node holds, or null while a full copy is incomplete. */
  readonly pos: LogPosition | null;
  /** Epoch start seqs of this node's log, ascending; at most historyMax. */
  readonly history: readonly HistoryEntry[];
  /**
   * On a primary: the learners it confirmed in `epoch` (from then on it waits for their
   * acknowledgements). Must survive a restart within the epoch.
   */
  readonly confirmed: { readonly epoch: Epoch; readonly learners: readonly NodeId[] } | null;
  /**
   * The merge of the clocks of every tombstone collected from this copy of the partition
   * (by this node, or by the source of a full copy it took). A write to a key that has no
   * record starts from it, so it is strictly after every collected version: an ETag never
   * comes back after delete -> collect -> re-create.
   */
  readonly purgedClock: VectorClock;
  /**
   * The highest (epoch, seq) of a collected tombstone. A delta ("records with seq > s")
   * from a position before it could miss a delete, so such a follower gets a full copy.
   */
  readonly purgedUpTo: LogPosition;
  /**
   * While a copy is incomplete (pos null): the position, on its source's log, that the copy
   * set out to reach; null once pos is set again (or when unknown). Every log that contains
   * it (it is on the log's history) holds everything committed that this node was counted
   * on to hold. So when the copy loses its source, this node, as a new primary, may take a
   * copy from any node whose log contains it, a learner included (takeover fallback).
   */
  readonly copyTarget: LogPosition | null;
}

export const emptyPosition: LogPosition = { epoch: 0 as Epoch, seq: 0 as Seq };

export function emptyMeta(): PartitionMeta {
  return { pos: emptyPosition, history: [], confirmed: null, purgedClock: EMPTY_CLOCK, purgedUpTo: emptyPosition, copyTarget: null };
}

/**
 * A meta as stored by any version: metas written before tombstone collection lack the
 * purge fields, metas written before copy targets lack copyTarget (an incomplete copy
 * then has no fallback source: it waits for a commit-set member, as before).
 */
export function normalizeMeta(m: Partial<PartitionMeta> & Pick<PartitionMeta, 'pos' | 'history' | 'confirmed'>): PartitionMeta {
  return { ...m, purgedClock: m.purgedClock ?? EMPTY_CLOCK, purgedUpTo: m.purgedUpTo ?? emptyPosition, copyTarget: m.copyTarget ?? null };
}

/** The later of two positions. */
export function maxPosition(a: LogPosition, b: LogPosition): LogPosition {
  return comparePositions(a, b) >= 0 ? a : b;
}

/**
 * Tombstone collection: may the sweep remove this record now? Only a tombstone whose grace
 * has run out (deletedAtMs + graceMs <= nowMs). A tombstone without deletedAtMs is never
 * expired (the sweep stamps it first).
 */
export function tombstoneExpired(r: KvRecord, nowMs: number, graceMs: number): boolean {
  return r.value === null && r.deletedAtMs !== undefined && r.deletedAtMs + graceMs <= nowMs;
}

/** (epoch, seq) order; null (a node mid-copy) is below everything. */
export function comparePositions(a: LogPosition | null, b: LogPosition | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1;
  return a.epoch - b.epoch || a.seq - b.seq;
}

/**
 * Is `pos` on the log described by (history, last)? The empty position is on every log.
 * If the epoch of `pos` was compacted out of the history the answer is no (a full copy,
 * which is always safe).
 */
export function onHistory(history: readonly HistoryEntry[], last: LogPosition, pos: LogPosition): boolean {
  if (pos.seq === 0) return true;
  if (pos.seq > last.seq) return false;
  const i = history.findIndex((h) => h.epoch === pos.epoch);
  if (i < 0) return false;
  const start = history[i]!.startSeq;
  const end = (history[i + 1]?.startSeq ?? last.seq + 1) - 1;
  return start <= pos.seq && pos.seq <= end;
}

/** History with epoch `epoch` starting at `startSeq` (no-op if it is already the last epoch). */
export function extendHistory(history: readonly HistoryEntry[], epoch: Epoch, startSeq: Seq, historyMax: number): HistoryEntry[] {
  const last = history[history.length - 1];
  if (last !== undefined && last.epoch === epoch) return [...history];
  assert(last === undefined || (last.epoch < epoch && last.startSeq <= startSeq), 'history grows');
  const out = [...history, { epoch, startSeq }];
  return out.slice(-historyMax);
}

/** The part of a history that describes seqs up to `lastSeq` (a copy adopting its source's). */
export function historyUpTo(history: readonly HistoryEntry[], lastSeq: Seq): HistoryEntry[] {
  return history.filter((h) => h.startSeq <= lastSeq + 1);
}

export type IncomingVerdict = 'apply' | 'skip' | 'conflict';

/**
 * Rule 7: apply an incoming version only if it descends from the stored one. 'skip' when
 * the stored one is at least as new (a copy chunk older than a live write already applied).
 * 'conflict': concurrent clocks, evidence of split brain; the caller counts it and keeps
 * the winner of `conflictWinner`.
 */
export function judgeIncoming(stored: KvRecord | undefined, incoming: KvRecord): IncomingVerdict {
  if (stored === undefined) return 'apply';
  const order = compare(incoming.clock, stored.clock);
  if (order === 'after') return 'apply';
  if (order === 'equal' || order === 'before') return 'skip';
  return 'conflict';
}

/** Deterministic tie-break for concurrent versions: higher (epoch, seq), then clock text. */
export function conflictWinner(a: KvRecord, b: KvRecord): KvRecord {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch ? a : b;
  if (a.seq !== b.seq) return a.seq > b.seq ? a : b;
  return clockToString(a.clock) >= clockToString(b.clock) ? a : b;
}

// ---------------------------------------------------------------------------------------
// In-memory per-partition state

export type Role = 'primary' | 'replica' | 'learner' | 'none';

/** One write assigned a seq by the primary. `before` is the committed value readers see until it commits. */
export interface Entry {
  readonly seq: Seq;
  readonly key: string;
  readonly record: KvRecord;
}

/** The primary's view of one follower (an in-sync replica or a learner). */
export interface FollowerProgress {
  readonly id: NodeId;
  /** This follower's stream; a new one at every resync, so old acks cannot be mistaken for new ones. */
  session: number;
  catchupMode: 'none' | 'delta' | 'full';
  syncOk: boolean;
  lastSyncSentTick: number;
  pos: LogPosition | null;
  history: readonly HistoryEntry[];
  /** Catch-up announced: live entries from liveFrom+1 are streamed to it. */
  streaming: boolean;
  liveFrom: Seq;
  lastCatchupSentTick: number;
  /** Highest seq it has persisted contiguously from liveFrom (or its caught-up position). */
  acked: Seq;
  /** Its copy/delta finished: it holds the primary's log up to `acked`. */
  caughtUp: boolean;
  /**
   * A learner that still copies another partition (its last ack said so). It is confirmed
   * only once it has finished them all, unless this partition needs it to commit at all.
   */
  copying: boolean;
  sentUpTo: Seq;
  lastSendTick: number;
}

export type PrimaryPhase =
  /** Asking every follower to adopt the epoch and report its position. */
  | 'sync'
  /** Pulling the most advanced log from an in-sync replica. */
  | 'pull'
  /** Bringing the in-sync replicas to the primary's log. */
  | 'align'
  /** Serving (after `serveAfterTick`, under a lease). */
  | 'serving';

export interface PendingWrite {
  readonly requestId: string;
  readonly seq: Seq;
  readonly version: string;
  readonly created: boolean;
  readonly deadlineTick: number;
}

/** A reply that depends on the committed state (a 412 / 404 decided against in-flight writes). */
export interface PendingRead {
  readonly requestId: string;
  readonly waitSeq: Seq;
  readonly result: 'precondition_failed' | 'not_found';
  readonly deadlineTick: number;
}

export interface PrimaryState {
  /** Session of the takeover pull. Follower streams have their own (FollowerProgress.session). */
  readonly session: number;
  phase: PrimaryPhase;
  readonly adoptedTick: number;
  lastSyncOkTick: number;
  pull: { source: NodeId; mode: 'delta' | 'full'; fromSeq: Seq; after: string | null; lastReqTick: number } | null;
  takeoverSeq: Seq;
  serveAfterTick: number;
  /** The primary of the previous epoch was serving and has adopted ours: no lease to wait out. */
  handover: boolean;
  /** The latest leaseFence reported by (or owned by) a member of the commit set, in our ticks. */
  fenceTick: number;
  commitSeq: Seq;
  readonly followers: Map<NodeId, FollowerProgress>;
  /** Entries not yet known to every follower, ascending and contiguous, bounded by tailMax. */
  tail: Entry[];
  /** Uncommitted entries per key (ascending), with the committed value before the oldest. */
  readonly inflight: Map<string, { before: KvRecord | undefined; seqs: Seq[] }>;
  readonly writes: PendingWrite[];
  readonly reads: PendingRead[];
  confirmed: NodeId[];
  /** Anti-entropy: the range being compared with one follower, and the followers still to compare. */
  ae: AeRound | null;
  aeQueue: NodeId[];
  /**
   * Client ops that arrived during the takeover, in arrival order: submitted again once it
   * serves, or refused (unavailable, nothing applied) at untilTick.
   */
  parked: { readonly requestId: string; readonly op: ClientOp; readonly untilTick: number }[];
}

/** One anti-entropy exchange with one follower over the key range (after, upTo]. */
export interface AeRound {
  readonly follower: NodeId;
  readonly round: number;
  after: string | null;
  upTo: string | null;
  phase: 'digest' | 'push';
  sentTick: number;
}

export interface FollowerState {
  readonly primary: NodeId;
  readonly session: number;
  /** Catch-up in progress (null when live). */
  copy: {
    mode: 'delta' | 'full';
    fromSeq: Seq;
    after: string | null;
    done: boolean;
    lastReqTick: number;
    /** A chunk request is out and unanswered (it counts against copyConcurrencyMax until it is answered or due for a resend). */
    awaiting: boolean;
    liveFromEpoch: Epoch;
    history: readonly HistoryEntry[];
  } | null;
  /** Next live seq expected (entries before it are persisted), once a catch-up was announced. */
  liveNext: Seq | null;
  /** Position of the last live entry persisted (or the catch-up's starting point). */
  livePos: LogPosition | null;
}

export interface PartitionState {
  readonly id: PartitionId;
  /** As last handed to persist. */
  meta: PartitionMeta;
  role: Role;
  primary: PrimaryState | null;
  follower: FollowerState | null;
  /** Learner: the epoch in which the primary confirmed it holds everything committed. */
  confirmedEpoch: number;
  /** Orphan recovery: copying the partition from the most advanced joining member. */
  orphanPull: { source: NodeId; expect: LogPosition; session: number; mode: 'delta' | 'full'; fromSeq: Seq; after: string | null; lastReqTick: number } | null;
  /**
   * The epoch in which this node was the serving primary of the partition when it adopted
   * the next one (it handed the partition over), else null. Not persisted: after a
   * restart a new primary waits out the leases instead.
   */
  servedIn: number | null;
  /**
   * Rule 3, precisely: until this tick a lease this node granted to a primary of the
   * partition in an older epoch may still be valid (its last grant to that node + the
   * lease). After a restart, the whole lease from the start (grants before the crash are
   * unknown).
   */
  leaseFence: number;
}
