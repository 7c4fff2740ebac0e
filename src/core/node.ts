// The membership node: Paxos over the config log, heartbeats, failure detection and admin
// proposals, composed into one deterministic state machine.
//
//   createNode(opts) / restoreNode(opts, persisted)   build a node record
//   step(node, msg)            a message from a peer
//   tick(node)                 one tick of the caller's monotonic clock
//   propose(node, change, id)  an admin request (POST/DELETE /v1/cluster/members)
//
// Each returns a Ready that the caller carries out in order: PERSIST, then SEND, then
// REPLY (see Ready). These functions mutate the node record they are given and nothing
// else: no I/O, no clock, no Math.random (the Prng is seeded from opts.seed).

import { assert, type Epoch, type NodeId } from './types.js';
import { createPrng, nextInt, type Prng } from './prng.js';
import * as px from './paxos.js';
import type { AcceptedValue, Ballot } from './paxos.js';
import {
  applyChange,
  failureDrivenChange,
  initialConfig,
  isChangeError,
  isMember,
  majority,
  validateConfig,
  votersOf,
  type ClusterConfig,
  type ClusterParams,
  type ConfigChange,
  type NewMember,
} from './membership.js';
import * as fdm from './failure-detector.js';

// ---------------------------------------------------------------------------------------
// Limits and timing

/** Every queue and batch of the membership node has a named maximum. */
export const membershipLimits = {
  /** Admin/failure changes waiting at the leader for their slot. */
  proposalQueueMax: 16,
  /** Admin requests this node is waiting on (its own HTTP callers). */
  pendingRequestsMax: 64,
  /** Decided configs kept in memory (and served to lagging peers). Older ones are compacted. */
  configHistoryMax: 32,
  /** Configs per `configs` message. */
  configBatchMax: 16,
  /** Messages a node may send itself while handling one input (a loop guard). */
  selfDeliveryMax: 64,
  /** Length of an admin request id. */
  requestIdLengthMax: 128,
  /** Peers remembered for push rate limiting. */
  pushTrackMax: 256,
} as const;

assert(membershipLimits.configBatchMax <= membershipLimits.configHistoryMax, 'a batch fits the history');
assert(membershipLimits.configHistoryMax >= 2, 'history keeps at least the current and previous config');

/** All durations are in ticks of the caller's monotonic clock (the runtime ticks every ~50 ms). */
export interface TimingTicks {
  /** Heartbeat period (200 ms). */
  readonly heartbeatTicks: number;
  /** Silence after which a peer, or the leader, is suspected (1 s). */
  readonly suspectTicks: number;
  /** Random extra wait before campaigning, to spread out candidates. */
  readonly electionJitterTicks: number;
  /** Retransmission period for prepare/accept/forwarded requests. */
  readonly retransmitTicks: number;
  /** A candidate that has no quorum of promises after this long backs off. */
  readonly prepareTimeoutTicks: number;
  /** An admin request completes as 'unavailable' after this long (2 s): a quick 503, not a hang. */
  readonly proposalTimeoutTicks: number;
  /** Minimum gap between two config fetches. */
  readonly fetchRetryTicks: number;
  /** Minimum gap between two config pushes to the same lagging peer. */
  readonly pushRetryTicks: number;
  /** Back-off after a collision: base * 2^collisions, capped, plus jitter. */
  readonly backoffBaseTicks: number;
  readonly backoffMaxTicks: number;
  /**
   * A member just added (incoming) that has not spoken yet is not marked down before this
   * long: it is still starting (fetching its first config, opening its store). Marking it
   * down would cost a config change, and every config change a takeover, for nothing.
   */
  readonly joinGraceTicks: number;
}

export const defaultTimingTicks: TimingTicks = {
  heartbeatTicks: 4,
  suspectTicks: 20,
  electionJitterTicks: 10,
  retransmitTicks: 4,
  prepareTimeoutTicks: 20,
  proposalTimeoutTicks: 40,
  fetchRetryTicks: 4,
  pushRetryTicks: 4,
  backoffBaseTicks: 2,
  backoffMaxTicks: 40,
  joinGraceTicks: 200,
};

export interface NodeOptions {
  readonly id: NodeId;
  readonly clusterName: string;
  /** Epoch 1 = these members, all active. Must be identical on every node. */
  readonly initialMembers: readonly NewMember[];
  readonly cluster: ClusterParams;
  /** Seeds the node's Prng (election jitter, back-off). */
  readonly seed: number;
  readonly timing?: Partial<TimingTicks>;
  /** Opaque checksum of the ring of a config, carried in heartbeats (default ''). */
  readonly ringChecksum?: (cfg: ClusterConfig) => string;
  /**
   * Hook: may the leader promote this joining member to active? Data catch-up will plug in
   * here (DESIGN.md rule 5). Default: yes, as soon as it is heard from.
   */
  readonly readyToActivate?: (id: NodeId, cfg: ClusterConfig) => boolean;
  /**
   * Hook: may the leader remove this outgoing member (end its decommission)? The
   * replication layer answers yes once the partitions' new owners hold them (rule 6).
   * Default: yes.
   */
  readonly readyToRemove?: (id: NodeId, cfg: ClusterConfig) => boolean;
  /** Check the node's invariants at the end of every handler (tests and simulator). */
  readonly checkInvariants?: boolean;
  /** Deliberately broken behaviour, only for proving that the simulator catches bugs. */
  readonly testOnlyMutation?: 'quorum-off-by-one' | null;
}

interface ResolvedOptions {
  readonly id: NodeId;
  readonly clusterName: string;
  readonly initial: LogEntry;
  readonly timing: TimingTicks;
  readonly ringChecksum: (cfg: ClusterConfig) => string;
  readonly readyToActivate: (id: NodeId, cfg: ClusterConfig) => boolean;
  readonly readyToRemove: (id: NodeId, cfg: ClusterConfig) => boolean;
  readonly checkInvariants: boolean;
  readonly mutation: 'quorum-off-by-one' | null;
}

// ---------------------------------------------------------------------------------------
// Log entries, wire messages, outputs

/** Which admin request a log entry came from, so its origin can answer its caller. */
export interface RequestRef {
  readonly origin: NodeId;
  readonly requestId: string;
}

/** The Paxos value of slot e: config e, the change that produced it, and its request. */
export interface LogEntry {
  readonly config: ClusterConfig;
  readonly change: ConfigChange;
  readonly request: RequestRef | null;
}

/**
 * Peer messages. Plain JSON (no Map, bigint or undefined); src/net validates their shape
 * (zod) before step() sees them, and step() checks their meaning.
 */
interface MessageBase {
  readonly from: NodeId;
  readonly clusterName: string;
  /** The sender's config epoch. */
  readonly epoch: Epoch;
}

export interface HeartbeatMsg extends MessageBase {
  readonly type: 'heartbeat';
  readonly ringChecksum: string;
  /** The sender's view of the leader (the leader's ballot), or null. */
  readonly leader: Ballot | null;
}
/** Phase 1a: promise `ballot` for every slot >= fromSlot. */
export interface PrepareMsg extends MessageBase {
  readonly type: 'prepare';
  readonly ballot: Ballot;
  readonly fromSlot: number;
}
/** Phase 1b, with the value accepted in a slot >= fromSlot, if any. */
export interface PromiseMsg extends MessageBase {
  readonly type: 'promise';
  readonly ballot: Ballot;
  readonly fromSlot: number;
  readonly accepted: AcceptedValue<LogEntry> | null;
}
/** Phase 2a. */
export interface AcceptMsg extends MessageBase {
  readonly type: 'accept';
  readonly ballot: Ballot;
  readonly slot: number;
  readonly value: LogEntry;
}
/** Phase 2b, sent to the proposer (the learner). */
export interface AcceptedMsg extends MessageBase {
  readonly type: 'accepted';
  readonly ballot: Ballot;
  readonly slot: number;
}
/** A prepare or accept for `ballot` was refused: the acceptor promised `promised`. */
export interface NackMsg extends MessageBase {
  readonly type: 'nack';
  readonly ballot: Ballot;
  readonly promised: Ballot;
}
/** Send me the decided configs from `fromEpoch` on. */
export interface FetchMsg extends MessageBase {
  readonly type: 'fetch';
  readonly fromEpoch: number;
}
/**
 * Decided configs in epoch order. 'decided': broadcast by the leader that decided the last
 * one. 'fetch-response' / 'push': catch-up; these may start past the receiver's epoch + 1
 * when the sender has compacted older ones, and the receiver then jumps ahead.
 */
export interface ConfigsMsg extends MessageBase {
  readonly type: 'configs';
  readonly reason: 'decided' | 'fetch-response' | 'push';
  readonly entries: readonly LogEntry[];
}
/** An admin request forwarded to the leader by the node that received it. */
export interface ProposeMsg extends MessageBase {
  readonly type: 'propose';
  readonly requestId: string;
  readonly change: ConfigChange;
}
/** The leader's answer to a forwarded request when it is not a commit (commits are learned). */
export interface ProposeResultMsg extends MessageBase {
  readonly type: 'propose-result';
  readonly requestId: string;
  readonly result: AdminResult;
}

export type Message =
  | HeartbeatMsg
  | PrepareMsg
  | PromiseMsg
  | AcceptMsg
  | AcceptedMsg
  | NackMsg
  | FetchMsg
  | ConfigsMsg
  | ProposeMsg
  | ProposeResultMsg;

export type MessageType = Message['type'];

export interface Envelope {
  readonly to: NodeId;
  readonly msg: Message;
}

/** What is written to disk. `restoreNode` rebuilds the node from the fold of these. */
export type PersistOp =
  /** The whole acceptor state: the promise and the accepted value. */
  | { readonly kind: 'acceptor'; readonly promised: Ballot | null; readonly accepted: AcceptedValue<LogEntry> | null }
  /** The highest round this node has used as a proposer: a restarted proposer never reuses a ballot. */
  | { readonly kind: 'proposer'; readonly round: number }
  /** A decided config (appended, or installed past a gap). */
  | { readonly kind: 'config'; readonly entry: LogEntry };

/**
 * How an admin request ends. 'committed': decided in `epoch`. 'rejected': the leader found
 * the change illegal (it will never take effect). 'unavailable': no leader or quorum was
 * reachable in time (HTTP 503 + Retry-After). After 'timeout' the change may still take
 * effect later (like an etcd timeout); after the other reasons it was never proposed.
 */
export type AdminResult =
  | { readonly status: 'committed'; readonly epoch: Epoch }
  | { readonly status: 'rejected'; readonly error: string }
  | { readonly status: 'unavailable'; readonly reason: 'no-quorum' | 'timeout' | 'busy' | 'not-member' };

export interface AdminReply {
  readonly requestId: string;
  readonly result: AdminResult;
}

export type NodeEvent =
  | { readonly type: 'learned'; readonly epoch: Epoch; readonly change: ConfigChange }
  | { readonly type: 'leader-changed'; readonly leader: NodeId | null }
  | { readonly type: 'campaign'; readonly ballot: Ballot }
  | { readonly type: 'forwarded'; readonly requestId: string; readonly to: NodeId }
  | { readonly type: 'ring-mismatch'; readonly peer: NodeId; readonly epoch: Epoch }
  /** A peer sent a config that differs from ours for the same epoch. Never expected. */
  | { readonly type: 'conflict'; readonly peer: NodeId; readonly epoch: Epoch };

/** A message from the network that was dropped, and why (operating error: log, count). */
export interface Dropped {
  readonly from: NodeId;
  readonly type: string;
  readonly reason: string;
}

/**
 * The output of step/tick/propose. The caller MUST carry it out in this order:
 *
 *   1. PERSIST: write every op in `persist` and fsync. (An acceptor's promise and accepted
 *      value are in here; replying before they are durable can break a promise on crash.)
 *   2. SEND: only then send `send` (best effort; the protocol retransmits).
 *   3. REPLY: only then complete the admin requests in `replies`.
 *
 * Readies must also be carried out in the order they were produced: the sends of a later
 * Ready must not overtake the persist of an earlier one (a heartbeat carries the epoch of a
 * config that an earlier Ready persisted). `events` and `dropped` are informational.
 */
export interface Ready {
  readonly persist: PersistOp[];
  readonly send: Envelope[];
  readonly replies: AdminReply[];
  readonly events: NodeEvent[];
  readonly dropped: Dropped[];
}

// ---------------------------------------------------------------------------------------
// Node state (a record; roles are data)

interface QueuedChange {
  readonly change: ConfigChange;
  readonly request: RequestRef | null;
}

interface PendingRequest {
  readonly change: ConfigChange;
  readonly deadlineTick: number;
  lastSentTick: number;
  sentTo: NodeId | null;
}

export interface MembershipNode {
  readonly opts: ResolvedOptions;
  readonly id: NodeId;
  /** Ticks since this incarnation started. */
  now: number;
  readonly prng: Prng;
  /** Decided configs, contiguous and ascending; the last one is current. */
  log: LogEntry[];
  acceptor: px.AcceptorState<LogEntry>;
  /** Highest proposer round handed to persist; ballots never exceed it. */
  persistedRound: number;
  /** Highest round seen in any ballot: the next campaign goes above it. */
  maxRoundSeen: number;
  proposer: px.ProposerState<LogEntry>;
  lastProposerSendTick: number;
  /** Changes waiting at the leader (only while leading). */
  queue: QueuedChange[];
  /** The queued change that the inflight value came from, if it was ours. */
  inflightOwn: QueuedChange | null;
  /** Our view of the leader: its ballot (ballot.id is the leader). */
  leader: Ballot | null;
  leaderSeenTick: number;
  electionDeadlineTick: number;
  collisions: number;
  readonly fd: fdm.FailureDetector;
  readonly requests: Map<string, PendingRequest>;
  lastFetchTick: number;
  readonly pushedTick: Map<NodeId, number>;
  nextHeartbeatTick: number;
  ringCache: { epoch: number; checksum: string } | null;
  /** Messages to self, handled before the current input returns (same Ready). */
  readonly selfQueue: Message[];
}

/** Everything restoreNode needs, as folded from PersistOps by applyPersistOp. */
export interface PersistedState {
  readonly promised: Ballot | null;
  readonly accepted: AcceptedValue<LogEntry> | null;
  readonly round: number;
  readonly log: readonly LogEntry[];
}

export function emptyPersistedState(): PersistedState {
  return { promised: null, accepted: null, round: 0, log: [] };
}

/** Fold one op into the persisted state, compacting the config log as the node does. */
export function applyPersistOp(s: PersistedState, op: PersistOp): PersistedState {
  switch (op.kind) {
    case 'acceptor':
      return { ...s, promised: op.promised, accepted: op.accepted };
    case 'proposer':
      return { ...s, round: Math.max(s.round, op.round) };
    case 'config': {
      const last = s.log[s.log.length - 1];
      const e = op.entry.config.epoch;
      if (last !== undefined && e <= last.config.epoch) return s;
      const log = last !== undefined && e === last.config.epoch + 1 ? [...s.log, op.entry] : [op.entry];
      return { ...s, log: log.slice(-membershipLimits.configHistoryMax) };
    }
  }
}

// ---------------------------------------------------------------------------------------
// Construction

export function createNode(opts: NodeOptions): MembershipNode {
  return restoreNode(opts, emptyPersistedState());
}

/** Rebuild a node after a restart from what reached the disk. Promises are kept. */
export function restoreNode(opts: NodeOptions, persisted: PersistedState): MembershipNode {
  const resolved = resolveOptions(opts);
  const log = persisted.log.length > 0 ? [...persisted.log] : [resolved.initial];
  const last = log[log.length - 1];
  assert(last !== undefined, 'log is not empty');
  const round = Math.max(persisted.round, persisted.promised?.round ?? 0);
  const prng = createPrng(opts.seed);
  const node: MembershipNode = {
    opts: resolved,
    id: opts.id,
    now: 0,
    prng,
    log,
    acceptor: px.pruneAccepted({ promised: persisted.promised, accepted: persisted.accepted }, last.config.epoch),
    persistedRound: round,
    maxRoundSeen: round,
    proposer: px.idleProposer,
    lastProposerSendTick: 0,
    queue: [],
    inflightOwn: null,
    leader: null,
    leaderSeenTick: 0,
    electionDeadlineTick: nextInt(prng, 0, resolved.timing.electionJitterTicks),
    collisions: 0,
    fd: fdm.createFailureDetector(resolved.timing.suspectTicks),
    requests: new Map(),
    lastFetchTick: -Infinity,
    pushedTick: new Map(),
    nextHeartbeatTick: 0,
    ringCache: null,
    selfQueue: [],
  };
  fdm.trackPeers(node.fd, peersOf(node), 0);
  checkInvariants(node);
  return node;
}

function resolveOptions(opts: NodeOptions): ResolvedOptions {
  const timing: TimingTicks = { ...defaultTimingTicks, ...opts.timing };
  for (const [k, v] of Object.entries(timing)) {
    assert(Number.isSafeInteger(v) && v >= 1, `timing.${k} must be a positive integer`);
  }
  assert(timing.heartbeatTicks < timing.suspectTicks, 'heartbeatTicks < suspectTicks');
  assert(timing.retransmitTicks < timing.proposalTimeoutTicks, 'retransmitTicks < proposalTimeoutTicks');
  const config = initialConfig(opts.initialMembers, opts.cluster);
  return {
    id: opts.id,
    clusterName: opts.clusterName,
    initial: { config, change: { kind: 'noop' }, request: null },
    timing,
    ringChecksum: opts.ringChecksum ?? (() => ''),
    readyToActivate: opts.readyToActivate ?? (() => true),
    readyToRemove: opts.readyToRemove ?? (() => true),
    checkInvariants: opts.checkInvariants ?? false,
    mutation: opts.testOnlyMutation ?? null,
  };
}

// ---------------------------------------------------------------------------------------
// Read-only views (for the HTTP layer and tests)

export function currentEntry(node: MembershipNode): LogEntry {
  const e = node.log[node.log.length - 1];
  assert(e !== undefined, 'log is never empty');
  return e;
}

export function currentConfig(node: MembershipNode): ClusterConfig {
  return currentEntry(node).config;
}

export function currentEpoch(node: MembershipNode): Epoch {
  return currentConfig(node).epoch;
}

/** The leader this node believes in and has heard from recently, or null. */
export function leaderOf(node: MembershipNode): NodeId | null {
  return leaderIsLive(node) && node.leader !== null ? node.leader.id : null;
}

export function isLeader(node: MembershipNode): boolean {
  return node.proposer.phase === 'leading';
}

/** Ticks since a member was last heard from (null for self or an untracked id). */
export function heartbeatAgeTicks(node: MembershipNode, id: NodeId): number | null {
  return fdm.ageTicks(node.fd, id, node.now);
}

// ---------------------------------------------------------------------------------------
// Inputs

/** A message from a peer. Bad messages are dropped and listed in Ready.dropped. */
export function step(node: MembershipNode, msg: Message): Ready {
  const out = newReady();
  if (msg.clusterName !== node.opts.clusterName) {
    drop(out, msg, 'wrong cluster name');
  } else if (msg.from === node.id) {
    drop(out, msg, 'claims to come from this node');
  } else {
    handle(node, out, msg);
  }
  return finish(node, out);
}

/** One tick of the caller's monotonic clock. */
export function tick(node: MembershipNode): Ready {
  const out = newReady();
  node.now += 1;
  onTick(node, out);
  return finish(node, out);
}

/**
 * An admin request. Exactly one AdminReply with this requestId comes out, in this Ready or
 * a later one, at most proposalTimeoutTicks later. `requestId` must be unique among this
 * node's pending requests (the caller generates it).
 */
export function propose(node: MembershipNode, change: ConfigChange, requestId: string): Ready {
  const out = newReady();
  onPropose(node, out, change, requestId);
  return finish(node, out);
}

function newReady(): Ready {
  return { persist: [], send: [], replies: [], events: [], dropped: [] };
}

function finish(node: MembershipNode, out: Ready): Ready {
  let delivered = 0;
  for (let msg = node.selfQueue.shift(); msg !== undefined; msg = node.selfQueue.shift()) {
    delivered += 1;
    assert(delivered <= membershipLimits.selfDeliveryMax, 'self-delivery loop');
    handle(node, out, msg);
  }
  checkInvariants(node);
  return out;
}

function drop(out: Ready, msg: Message, reason: string): void {
  out.dropped.push({ from: msg.from, type: String(msg.type), reason });
}

// ---------------------------------------------------------------------------------------
// Message handling

function handle(node: MembershipNode, out: Ready, msg: Message): void {
  if (!isEpochNumber(msg.epoch)) return drop(out, msg, 'bad epoch');
  if (msg.from !== node.id) fdm.onHeard(node.fd, msg.from, node.now);
  switch (msg.type) {
    case 'configs':
      return onConfigs(node, out, msg);
    case 'fetch':
      return onFetch(node, out, msg);
    case 'propose':
      return onForwardedPropose(node, out, msg);
    case 'propose-result':
      return onProposeResult(node, out, msg);
    default:
      break;
  }
  // Everything else depends on the config, so it is only acted on at equal epochs: a
  // sender that is ahead makes us fetch first (it retransmits); one that is behind is
  // sent what it lacks.
  const mine = currentEpoch(node);
  // A message to ourselves queued before we learned a config in the same input is stale.
  if (msg.from === node.id && msg.epoch !== mine) return;
  if (msg.epoch > mine) {
    requestFetch(node, out, msg.from);
    return drop(out, msg, `sender is at epoch ${msg.epoch}, we are at ${mine}: fetching configs first`);
  }
  if (msg.epoch < mine) {
    pushConfigs(node, out, msg.from, msg.epoch);
    if (msg.type !== 'heartbeat') drop(out, msg, `sender is behind (epoch ${msg.epoch} < ${mine})`);
    return;
  }
  switch (msg.type) {
    case 'heartbeat':
      return onHeartbeat(node, out, msg);
    case 'prepare':
      return onPrepare(node, out, msg);
    case 'promise':
      return onPromise(node, out, msg);
    case 'accept':
      return onAccept(node, out, msg);
    case 'accepted':
      return onAccepted(node, out, msg);
    case 'nack':
      return onNack(node, out, msg);
  }
}

function onHeartbeat(node: MembershipNode, out: Ready, msg: HeartbeatMsg): void {
  const cfg = currentConfig(node);
  if (msg.ringChecksum !== ringChecksumOf(node, cfg)) {
    out.events.push({ type: 'ring-mismatch', peer: msg.from, epoch: cfg.epoch });
  }
  const claim = msg.leader;
  if (claim === null) return;
  if (!isBallot(claim)) return drop(out, msg, 'bad leader ballot');
  noteRound(node, claim.round);
  if (claim.id !== msg.from) return; // only the leader itself vouches for its liveness
  if (px.compareBallots(claim, node.leader) < 0) return;
  const mine = px.currentBallot(node.proposer);
  if (mine !== null && px.compareBallots(mine, claim) < 0) stepDown(node, out, true);
  if (mine !== null && px.compareBallots(mine, claim) > 0) return;
  setLeader(node, out, claim);
  node.leaderSeenTick = node.now;
}

function onPrepare(node: MembershipNode, out: Ready, msg: PrepareMsg): void {
  if (!isBallot(msg.ballot) || msg.ballot.id !== msg.from) return drop(out, msg, 'bad ballot');
  if (msg.fromSlot !== currentEpoch(node) + 1) return drop(out, msg, 'prepare for a slot that is not open');
  noteRound(node, msg.ballot.round);
  const r = px.onPrepare(node.acceptor, msg.ballot, msg.fromSlot);
  if (!r.ok) {
    if (r.promised !== null) send(node, out, msg.from, { type: 'nack', ballot: msg.ballot, promised: r.promised });
    return;
  }
  if (r.changed) {
    node.acceptor = r.state;
    persistAcceptor(node, out);
  }
  send(node, out, msg.from, { type: 'promise', ballot: msg.ballot, fromSlot: msg.fromSlot, accepted: r.report });
  if (msg.from !== node.id) {
    // Someone else campaigns above us: stop competing and give it time to win.
    const mine = px.currentBallot(node.proposer);
    if (mine !== null && px.compareBallots(mine, msg.ballot) < 0) stepDown(node, out, false);
    postponeElection(node);
  }
}

function onPromise(node: MembershipNode, out: Ready, msg: PromiseMsg): void {
  if (!isBallot(msg.ballot) || msg.ballot.id !== node.id) return drop(out, msg, 'promise for a ballot not ours');
  const report = msg.accepted;
  if (report !== null && !isAcceptedValue(report, msg.fromSlot)) return drop(out, msg, 'bad accepted value');
  const before = node.proposer;
  node.proposer = px.onPromise(before, msg.from, msg.ballot, msg.fromSlot, report);
  if (before.phase === 'preparing' && node.proposer.phase === 'leading') becomeLeader(node, out);
}

function onAccept(node: MembershipNode, out: Ready, msg: AcceptMsg): void {
  if (!isBallot(msg.ballot) || msg.ballot.id !== msg.from) return drop(out, msg, 'bad ballot');
  if (msg.slot !== currentEpoch(node) + 1) return drop(out, msg, 'accept for a slot that is not open');
  if (!isEntry(msg.value) || msg.value.config.epoch !== msg.slot) return drop(out, msg, 'bad value');
  noteRound(node, msg.ballot.round);
  const r = px.onAccept(node.acceptor, msg.ballot, msg.slot, msg.value);
  if (!r.ok) {
    if (r.promised !== null) send(node, out, msg.from, { type: 'nack', ballot: msg.ballot, promised: r.promised });
    return;
  }
  if (r.changed) {
    node.acceptor = r.state;
    persistAcceptor(node, out);
  }
  send(node, out, msg.from, { type: 'accepted', ballot: msg.ballot, slot: msg.slot });
  if (msg.from !== node.id) {
    const mine = px.currentBallot(node.proposer);
    if (mine !== null && px.compareBallots(mine, msg.ballot) < 0) stepDown(node, out, false);
    if (px.compareBallots(msg.ballot, node.leader) >= 0) {
      setLeader(node, out, msg.ballot);
      node.leaderSeenTick = node.now;
    }
  }
}

function onAccepted(node: MembershipNode, out: Ready, msg: AcceptedMsg): void {
  if (!isBallot(msg.ballot)) return drop(out, msg, 'bad ballot');
  const { state, decided } = px.onAccepted(node.proposer, msg.from, msg.ballot, msg.slot);
  node.proposer = state;
  if (decided !== null) onDecided(node, out, decided);
}

function onNack(node: MembershipNode, out: Ready, msg: NackMsg): void {
  if (!isBallot(msg.ballot) || !isBallot(msg.promised)) return drop(out, msg, 'bad ballot');
  noteRound(node, msg.promised.round);
  const mine = px.currentBallot(node.proposer);
  if (mine === null || !px.ballotEquals(mine, msg.ballot)) return;
  if (px.compareBallots(msg.promised, mine) <= 0) return;
  node.collisions += 1;
  stepDown(node, out, true);
}

/** This node, as leader and learner, saw a quorum accept `entry`. */
function onDecided(node: MembershipNode, out: Ready, entry: LogEntry): void {
  const previous = currentConfig(node);
  learnEntry(node, out, entry, false);
  const targets = new Set<NodeId>([...votersOf(previous), ...votersOf(entry.config)]);
  targets.delete(node.id);
  for (const to of targets) send(node, out, to, { type: 'configs', reason: 'decided', entries: [entry] });
  tryPropose(node, out);
}

function onConfigs(node: MembershipNode, out: Ready, msg: ConfigsMsg): void {
  if (!Array.isArray(msg.entries) || msg.entries.length > membershipLimits.configBatchMax) {
    return drop(out, msg, 'bad configs batch');
  }
  for (const entry of msg.entries) {
    if (!isEntry(entry)) return drop(out, msg, 'bad config entry');
    const e = entry.config.epoch;
    const mine = currentEpoch(node);
    if (e <= mine) {
      const held = node.log.find((x) => x.config.epoch === e);
      if (held !== undefined && canonical(held) !== canonical(entry)) {
        out.events.push({ type: 'conflict', peer: msg.from, epoch: e });
      }
      continue;
    }
    if (e === mine + 1 || msg.reason !== 'decided') {
      learnEntry(node, out, entry, e > mine + 1);
      continue;
    }
    requestFetch(node, out, msg.from);
    break;
  }
  if (msg.epoch > currentEpoch(node)) requestFetch(node, out, msg.from);
  tryPropose(node, out);
}

function onFetch(node: MembershipNode, out: Ready, msg: FetchMsg): void {
  if (!isEpochNumber(msg.fromEpoch)) return drop(out, msg, 'bad fromEpoch');
  const entries = entriesFrom(node, msg.fromEpoch);
  if (entries.length > 0) send(node, out, msg.from, { type: 'configs', reason: 'fetch-response', entries });
}

function onForwardedPropose(node: MembershipNode, out: Ready, msg: ProposeMsg): void {
  if (!isRequestId(msg.requestId) || !isChange(msg.change)) return drop(out, msg, 'bad propose');
  if (node.proposer.phase !== 'leading') return drop(out, msg, 'not the leader');
  enqueue(node, out, { change: msg.change, request: { origin: msg.from, requestId: msg.requestId } });
  tryPropose(node, out);
}

function onProposeResult(node: MembershipNode, out: Ready, msg: ProposeResultMsg): void {
  if (!isRequestId(msg.requestId) || !isAdminResult(msg.result)) return drop(out, msg, 'bad propose-result');
  const pending = node.requests.get(msg.requestId);
  if (pending === undefined || pending.sentTo !== msg.from) return; // late or stale answer
  completeRequest(node, out, msg.requestId, msg.result);
}

// ---------------------------------------------------------------------------------------
// Ticks

function onTick(node: MembershipNode, out: Ready): void {
  const t = node.opts.timing;
  if (node.now >= node.nextHeartbeatTick) {
    sendHeartbeats(node, out);
    node.nextHeartbeatTick = node.now + t.heartbeatTicks;
  }
  if (node.leader !== null && node.leader.id !== node.id && node.now - node.leaderSeenTick > t.suspectTicks) {
    setLeader(node, out, null);
  }
  onProposerTick(node, out);
  onRequestsTick(node, out);
}

function onProposerTick(node: MembershipNode, out: Ready): void {
  const t = node.opts.timing;
  const p = node.proposer;
  if (p.phase === 'idle') {
    maybeCampaign(node, out);
  } else if (p.phase === 'preparing') {
    if (node.now - p.startedTick > t.prepareTimeoutTicks) {
      node.collisions += 1;
      stepDown(node, out, true);
    } else if (node.now - node.lastProposerSendTick >= t.retransmitTicks) {
      node.lastProposerSendTick = node.now;
      for (const v of p.voters) {
        if (!p.promisedBy.includes(v)) send(node, out, v, { type: 'prepare', ballot: p.ballot, fromSlot: p.fromSlot });
      }
    }
  } else {
    // Check quorum: a leader that cannot hear a majority of voters steps down, so that the
    // nodes with it stop forwarding to it and answer 'unavailable' quickly.
    const voters = votersOf(currentConfig(node));
    if (aliveCount(node, voters) < quorumOf(node, voters.length)) {
      stepDown(node, out, false);
      return;
    }
    tryPropose(node, out);
    const inflight = node.proposer.phase === 'leading' ? node.proposer.inflight : null;
    if (inflight !== null && node.now - inflight.lastSentTick >= t.retransmitTicks && node.proposer.phase === 'leading') {
      node.proposer = { ...node.proposer, inflight: { ...inflight, lastSentTick: node.now } };
      const { slot, ballot, voters: tallyVoters, acks } = inflight.tally;
      for (const v of tallyVoters) {
        if (!acks.includes(v)) send(node, out, v, { type: 'accept', ballot, slot, value: inflight.value });
      }
    }
  }
}

function onRequestsTick(node: MembershipNode, out: Ready): void {
  for (const [requestId, r] of [...node.requests]) {
    if (node.now >= r.deadlineTick) completeRequest(node, out, requestId, { status: 'unavailable', reason: 'timeout' });
    else dispatchRequest(node, out, requestId, r);
  }
}

function sendHeartbeats(node: MembershipNode, out: Ready): void {
  const cfg = currentConfig(node);
  const p = node.proposer;
  const leader = p.phase === 'leading' ? p.ballot : leaderIsLive(node) ? node.leader : null;
  const ringChecksum = ringChecksumOf(node, cfg);
  // A node that is not (or no longer) a member still heartbeats the members it knows of:
  // they answer with the configs it lacks, which is how it learns it was added or removed.
  for (const m of cfg.members) {
    if (m.id !== node.id) send(node, out, m.id, { type: 'heartbeat', ringChecksum, leader });
  }
}

// ---------------------------------------------------------------------------------------
// Admin requests

function onPropose(node: MembershipNode, out: Ready, change: ConfigChange, requestId: string): void {
  assert(isRequestId(requestId), 'request id is a non-empty bounded string');
  assert(!node.requests.has(requestId), `request id ${requestId} is unique`);
  const cfg = currentConfig(node);
  const voters = votersOf(cfg);
  const reply = (result: AdminResult): void => {
    out.replies.push({ requestId, result });
  };
  if (!isMember(cfg, node.id)) return reply({ status: 'unavailable', reason: 'not-member' });
  if (node.requests.size >= membershipLimits.pendingRequestsMax) return reply({ status: 'unavailable', reason: 'busy' });
  // Fail fast: if we cannot hear a quorum, nothing can be decided; answer now (a quick 503).
  if (aliveCount(node, voters) < quorumOf(node, voters.length)) return reply({ status: 'unavailable', reason: 'no-quorum' });
  const pending: PendingRequest = {
    change,
    deadlineTick: node.now + node.opts.timing.proposalTimeoutTicks,
    lastSentTick: -Infinity,
    sentTo: null,
  };
  node.requests.set(requestId, pending);
  dispatchRequest(node, out, requestId, pending);
  tryPropose(node, out);
}

/** Queue locally if we lead, else (re)send to the live leader. Without one, wait. */
function dispatchRequest(node: MembershipNode, out: Ready, requestId: string, r: PendingRequest): void {
  if (node.proposer.phase === 'leading') {
    r.sentTo = node.id;
    enqueue(node, out, { change: r.change, request: { origin: node.id, requestId } });
    return;
  }
  const leader = leaderOf(node);
  if (leader === null || leader === node.id) return;
  if (r.sentTo === leader && node.now - r.lastSentTick < node.opts.timing.retransmitTicks) return;
  if (r.sentTo !== leader) out.events.push({ type: 'forwarded', requestId, to: leader });
  r.sentTo = leader;
  r.lastSentTick = node.now;
  send(node, out, leader, { type: 'propose', requestId, change: r.change });
}

function enqueue(node: MembershipNode, out: Ready, q: QueuedChange): void {
  const req = q.request;
  if (req !== null) {
    const decidedIn = decidedEpochOf(node, req);
    if (decidedIn !== null) return respond(node, out, req, { status: 'committed', epoch: decidedIn });
    const p = node.proposer;
    const inflightReq = p.phase === 'leading' && p.inflight !== null ? p.inflight.value.request : null;
    if (sameRequest(inflightReq, req) || node.queue.some((x) => sameRequest(x.request, req))) return;
  }
  if (node.queue.length >= membershipLimits.proposalQueueMax) {
    if (req !== null) respond(node, out, req, { status: 'unavailable', reason: 'busy' });
    return;
  }
  node.queue.push(q);
}

function respond(node: MembershipNode, out: Ready, req: RequestRef, result: AdminResult): void {
  if (req.origin === node.id) completeRequest(node, out, req.requestId, result);
  else send(node, out, req.origin, { type: 'propose-result', requestId: req.requestId, result });
}

function completeRequest(node: MembershipNode, out: Ready, requestId: string, result: AdminResult): void {
  if (!node.requests.delete(requestId)) return;
  out.replies.push({ requestId, result });
}

function decidedEpochOf(node: MembershipNode, req: RequestRef): Epoch | null {
  for (const e of node.log) if (sameRequest(e.request, req)) return e.config.epoch;
  return null;
}

// ---------------------------------------------------------------------------------------
// Proposer / leader

function maybeCampaign(node: MembershipNode, out: Ready): void {
  const cfg = currentConfig(node);
  if (!isMember(cfg, node.id) || leaderIsLive(node) || node.now < node.electionDeadlineTick) return;
  // Pre-vote in spirit: a node that cannot hear a quorum would only disrupt the majority
  // with ever higher rounds when the partition heals.
  const voters = votersOf(cfg);
  if (aliveCount(node, voters) < quorumOf(node, voters.length)) return;
  startPrepare(node, out);
}

function startPrepare(node: MembershipNode, out: Ready): void {
  const cfg = currentConfig(node);
  const voters = votersOf(cfg);
  const round = Math.max(node.maxRoundSeen, node.persistedRound) + 1;
  // The round is on disk before the prepare leaves, so a restart never reuses a ballot.
  node.persistedRound = round;
  node.maxRoundSeen = round;
  out.persist.push({ kind: 'proposer', round });
  const ballot: Ballot = { round, id: node.id };
  node.proposer = px.startPrepare(ballot, cfg.epoch + 1, voters, quorumOf(node, voters.length), node.now);
  node.queue = [];
  node.inflightOwn = null;
  node.lastProposerSendTick = node.now;
  out.events.push({ type: 'campaign', ballot });
  for (const v of voters) send(node, out, v, { type: 'prepare', ballot, fromSlot: cfg.epoch + 1 });
}

function becomeLeader(node: MembershipNode, out: Ready): void {
  const p = node.proposer;
  assert(p.phase === 'leading', 'leading after a quorum of promises');
  node.collisions = 0;
  setLeader(node, out, p.ballot);
  node.leaderSeenTick = node.now;
  sendHeartbeats(node, out); // announce at once: followers stop campaigning and forward to us
  for (const [requestId, r] of node.requests) dispatchRequest(node, out, requestId, r);
  tryPropose(node, out);
}

/** If leading with nothing in flight, propose the next value for the open slot. */
function tryPropose(node: MembershipNode, out: Ready): void {
  const p = node.proposer;
  if (p.phase !== 'leading' || p.inflight !== null) return;
  const cfg = currentConfig(node);
  const slot = cfg.epoch + 1;
  const voters = votersOf(cfg);
  const quorum = quorumOf(node, voters.length);
  if (!px.holdsQuorumFor(p, slot, voters, quorum)) {
    // The voters changed enough that our promises no longer cover a quorum: phase 1 again.
    startPrepare(node, out);
    return;
  }
  let value = px.requiredValue(p, slot);
  let own: QueuedChange | null = null;
  if (value === null) {
    const next = nextChange(node, out, cfg);
    if (next === null) return;
    value = next.entry;
    own = next.own;
  }
  node.proposer = px.startAccept(p, slot, value, voters, quorum, node.now);
  node.inflightOwn = own;
  node.lastProposerSendTick = node.now;
  for (const v of voters) send(node, out, v, { type: 'accept', ballot: p.ballot, slot, value });
}

/** Who proposes what, at the leader: mark-down first, then admin requests, then returns. */
function nextChange(
  node: MembershipNode,
  out: Ready,
  cfg: ClusterConfig,
): { entry: LogEntry; own: QueuedChange } | null {
  const failure = failureDrivenChange(
    cfg,
    node.id,
    (id) => fdm.isAlive(node.fd, id, node.now) || inJoinGrace(node, cfg, id),
    (id) => node.opts.readyToActivate(id, cfg),
    (id) => node.opts.readyToRemove(id, cfg),
  );
  const candidates: QueuedChange[] = [];
  if (failure !== null && failure.kind === 'mark-down') candidates.push({ change: failure, request: null });
  for (;;) {
    const q = candidates.shift() ?? node.queue.shift() ?? (failure !== null ? { change: failure, request: null } : null);
    if (q === null) return null;
    if (q.request !== null) {
      const decidedIn = decidedEpochOf(node, q.request);
      if (decidedIn !== null) {
        respond(node, out, q.request, { status: 'committed', epoch: decidedIn });
        continue;
      }
    }
    let next = applyChange(cfg, q.change);
    // An admin `remove` takes a member off without its data (an incoming one) or ends a
    // decommission: either way only once the replication layer says the copies allow it.
    if (q.request !== null && q.change.kind === 'remove' && !isChangeError(next) && !node.opts.readyToRemove(q.change.id, cfg)) {
      next = { error: `removing ${q.change.id} now would leave some partition with fewer than minInSync copies of what is committed; its data is still moving (retry later)` };
    }
    if (isChangeError(next)) {
      if (q.request !== null) respond(node, out, q.request, { status: 'rejected', error: next.error });
      if (q.request === null) return null; // a failure-driven change that no longer applies
      continue;
    }
    return { entry: { config: next, change: q.change, request: q.request }, own: q };
  }
}

function stepDown(node: MembershipNode, out: Ready, backoff: boolean): void {
  if (node.proposer.phase === 'idle') return;
  node.proposer = px.idleProposer;
  node.queue = []; // their origins retransmit to the next leader
  node.inflightOwn = null;
  if (node.leader !== null && node.leader.id === node.id) setLeader(node, out, null);
  const t = node.opts.timing;
  const wait = backoff ? Math.min(t.backoffMaxTicks, t.backoffBaseTicks * 2 ** Math.min(node.collisions, 16)) : 0;
  node.electionDeadlineTick = node.now + wait + nextInt(node.prng, 0, t.electionJitterTicks);
}

function postponeElection(node: MembershipNode): void {
  const t = node.opts.timing;
  const until = node.now + t.suspectTicks + nextInt(node.prng, 0, t.electionJitterTicks);
  node.electionDeadlineTick = Math.max(node.electionDeadlineTick, until);
}

function setLeader(node: MembershipNode, out: Ready, leader: Ballot | null): void {
  const before = node.leader === null ? null : node.leader.id;
  node.leader = leader;
  const after = leader === null ? null : leader.id;
  if (before !== after) out.events.push({ type: 'leader-changed', leader: after });
}

function leaderIsLive(node: MembershipNode): boolean {
  if (node.leader === null) return false;
  if (node.leader.id === node.id) return node.proposer.phase === 'leading';
  return node.now - node.leaderSeenTick <= node.opts.timing.suspectTicks;
}

function noteRound(node: MembershipNode, round: number): void {
  if (round > node.maxRoundSeen) node.maxRoundSeen = round;
}

// ---------------------------------------------------------------------------------------
// Learning and catch-up

/** Store a decided config (contiguous, or a jump past compacted ones) and react to it. */
function learnEntry(node: MembershipNode, out: Ready, entry: LogEntry, jump: boolean): void {
  const e = entry.config.epoch;
  const mine = currentEpoch(node);
  assert(e === mine + 1 || (jump && e > mine + 1), 'learn the next config, or jump past compacted ones');
  if (jump) node.log = [entry];
  else {
    node.log.push(entry);
    if (node.log.length > membershipLimits.configHistoryMax) node.log.shift();
  }
  out.persist.push({ kind: 'config', entry });
  node.acceptor = px.pruneAccepted(node.acceptor, e); // restore prunes the same way; no write needed
  fdm.trackPeers(node.fd, peersOf(node), node.now);
  out.events.push({ type: 'learned', epoch: e, change: entry.change });
  if (entry.request !== null && entry.request.origin === node.id) {
    completeRequest(node, out, entry.request.requestId, { status: 'committed', epoch: e });
  }
  const p = node.proposer;
  if (p.phase === 'preparing') {
    // Our promises were for a slot that is now decided; campaign again later if needed.
    stepDown(node, out, false);
  } else if (p.phase === 'leading') {
    if (p.inflight !== null && p.inflight.tally.slot <= e) {
      const own = node.inflightOwn;
      if (own !== null && own.request !== null && !sameRequest(own.request, entry.request)) {
        node.queue.unshift(own); // someone else's value won the slot; ours goes next
      }
      node.proposer = { ...p, inflight: null };
      node.inflightOwn = null;
    }
    if (!isMember(entry.config, node.id)) stepDown(node, out, false);
  }
}

function requestFetch(node: MembershipNode, out: Ready, from: NodeId): void {
  if (node.now - node.lastFetchTick < node.opts.timing.fetchRetryTicks) return;
  node.lastFetchTick = node.now;
  send(node, out, from, { type: 'fetch', fromEpoch: currentEpoch(node) + 1 });
}

function pushConfigs(node: MembershipNode, out: Ready, to: NodeId, theirEpoch: number): void {
  const last = node.pushedTick.get(to);
  if (last !== undefined && node.now - last < node.opts.timing.pushRetryTicks) return;
  if (node.pushedTick.size >= membershipLimits.pushTrackMax) node.pushedTick.clear();
  node.pushedTick.set(to, node.now);
  const entries = entriesFrom(node, theirEpoch + 1);
  if (entries.length > 0) send(node, out, to, { type: 'configs', reason: 'push', entries });
}

/** Up to configBatchMax configs from `fromEpoch`, or from the oldest kept if compacted. */
function entriesFrom(node: MembershipNode, fromEpoch: number): LogEntry[] {
  const first = node.log.findIndex((x) => x.config.epoch >= fromEpoch);
  if (first < 0) return [];
  return node.log.slice(first, first + membershipLimits.configBatchMax);
}

// ---------------------------------------------------------------------------------------
// Helpers

function send(node: MembershipNode, out: Ready, to: NodeId, body: DistributiveOmit<Message, keyof MessageBase>): void {
  const msg = { ...body, from: node.id, clusterName: node.opts.clusterName, epoch: currentEpoch(node) } as Message;
  if (to === node.id) node.selfQueue.push(msg);
  else out.send.push({ to, msg });
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function persistAcceptor(node: MembershipNode, out: Ready): void {
  out.persist.push({ kind: 'acceptor', promised: node.acceptor.promised, accepted: node.acceptor.accepted });
}

/** An incoming member not heard from since it was added, within joinGraceTicks of that. */
function inJoinGrace(node: MembershipNode, cfg: ClusterConfig, id: NodeId): boolean {
  if (!node.fd.neverHeard.has(id) || cfg.members.find((m) => m.id === id)?.placement !== 'incoming') return false;
  const age = fdm.ageTicks(node.fd, id, node.now);
  return age !== null && age <= node.opts.timing.joinGraceTicks;
}

function peersOf(node: MembershipNode): NodeId[] {
  return votersOf(currentConfig(node)).filter((id) => id !== node.id);
}

/** Voters we heard from recently, counting ourselves. */
function aliveCount(node: MembershipNode, voters: readonly NodeId[]): number {
  return voters.filter((v) => v === node.id || fdm.isAlive(node.fd, v, node.now)).length;
}

function quorumOf(node: MembershipNode, voterCount: number): number {
  if (node.opts.mutation === 'quorum-off-by-one') return Math.max(1, Math.floor(voterCount / 2));
  return majority(voterCount);
}

function ringChecksumOf(node: MembershipNode, cfg: ClusterConfig): string {
  if (node.ringCache === null || node.ringCache.epoch !== cfg.epoch) {
    node.ringCache = { epoch: cfg.epoch, checksum: node.opts.ringChecksum(cfg) };
  }
  return node.ringCache.checksum;
}

function sameRequest(a: RequestRef | null, b: RequestRef | null): boolean {
  return a !== null && b !== null && a.origin === b.origin && a.requestId === b.requestId;
}

/** Deterministic JSON with sorted keys, for comparing values that crossed the network. */
export function canonical(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

function isEpochNumber(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function isBallot(x: unknown): x is Ballot {
  if (typeof x !== 'object' || x === null) return false;
  const b = x as { round?: unknown; id?: unknown };
  return isEpochNumber(b.round) && typeof b.id === 'string';
}

function isRequestId(x: unknown): x is string {
  return typeof x === 'string' && x.length > 0 && x.length <= membershipLimits.requestIdLengthMax;
}

const changeKinds: ReadonlySet<string> = new Set(['decommission', 'mark-down', 'mark-joining', 'mark-active', 'add', 'remove', 'noop']);

function isChange(x: unknown): x is ConfigChange {
  return typeof x === 'object' && x !== null && changeKinds.has(String((x as { kind?: unknown }).kind));
}

function isEntry(x: unknown): x is LogEntry {
  if (typeof x !== 'object' || x === null) return false;
  const e = x as { config?: unknown; change?: unknown };
  if (typeof e.config !== 'object' || e.config === null || !isChange(e.change)) return false;
  return validateConfig(e.config as ClusterConfig) === null;
}

function isAcceptedValue(x: AcceptedValue<LogEntry>, fromSlot: number): boolean {
  return isBallot(x.ballot) && x.slot === fromSlot && isEntry(x.value) && x.value.config.epoch === x.slot;
}

const unavailableReasons: ReadonlySet<string> = new Set(['no-quorum', 'timeout', 'busy', 'not-member']);

function isAdminResult(x: unknown): x is AdminResult {
  if (typeof x !== 'object' || x === null) return false;
  const r = x as { status?: unknown; epoch?: unknown; error?: unknown; reason?: unknown };
  if (r.status === 'committed') return isEpochNumber(r.epoch);
  if (r.status === 'rejected') return typeof r.error === 'string';
  if (r.status === 'unavailable') return unavailableReasons.has(String(r.reason));
  return false;
}

// ---------------------------------------------------------------------------------------
// Invariants (checked at the end of every input when opts.checkInvariants)

export function checkInvariants(node: MembershipNode): void {
  if (!node.opts.checkInvariants) return;
  assert(node.selfQueue.length === 0, 'self queue drained');
  assert(node.log.length >= 1 && node.log.length <= membershipLimits.configHistoryMax, 'log length within bounds');
  for (let i = 1; i < node.log.length; i++) {
    assert(node.log[i]?.config.epoch === (node.log[i - 1]?.config.epoch ?? 0) + 1, 'log epochs are contiguous');
  }
  const cfg = currentConfig(node);
  assert(validateConfig(cfg) === null, 'current config is valid');
  const acc = node.acceptor.accepted;
  assert(acc === null || acc.slot === cfg.epoch + 1, 'acceptor holds a value only for the open slot');
  const p = node.proposer;
  const ballot = px.currentBallot(p);
  assert(ballot === null || (ballot.id === node.id && ballot.round <= node.persistedRound), 'ballot round is persisted');
  if (p.phase === 'preparing') assert(p.fromSlot === cfg.epoch + 1, 'preparing for the open slot');
  if (p.phase === 'leading') {
    assert(p.fromSlot <= cfg.epoch + 1, 'leading from a slot not in the future');
    assert(p.inflight === null || p.inflight.tally.slot === cfg.epoch + 1, 'inflight value is for the open slot');
  }
  assert(p.phase === 'leading' || (node.queue.length === 0 && node.inflightOwn === null), 'only a leader queues');
  assert(node.queue.length <= membershipLimits.proposalQueueMax, 'proposal queue bounded');
  assert(node.requests.size <= membershipLimits.pendingRequestsMax, 'pending requests bounded');
  assert(node.leader === null || node.leader.id !== node.id || p.phase !== 'idle', 'a self-leader is not idle');
  for (const r of node.requests.values()) {
    assert(r.deadlineTick - node.now <= node.opts.timing.proposalTimeoutTicks, 'request deadlines bounded');
  }
}
