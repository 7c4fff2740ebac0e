// Deterministic simulator for the replication layer (src/core/replication.ts) composed with
// the REAL membership core (src/core/node.ts), in the style of sim.ts.
//
// One seeded Prng drives everything: network (delay, loss, duplication, reordering,
// partitions), disks (a Ready's ops are durable only after its simulated fsync; a crash
// drops the rest), crashes and restarts, SIGSTOP-like pauses (a paused node runs nothing;
// on resume it first delivers every tick it missed, then what arrived meanwhile), clients
// issuing put / cas / create / delete / strong get with unique values through random nodes
// (not_primary -> retry at the named node), and, in 3 seeds of 4, membership changes
// (rule 6) interleaved with those faults, as admin proposals sent to a random node (half of
// them, while a partition stands, to a node cut off from every quorum):
//   add            a spare node (n4/n5 or n5/n6) joins: like src/runtime/join.ts it polls a
//                  member for the latest decided config entry and, once that entry lists
//                  it, persists it as its first config and starts;
//   decommission   of a live owner, or of a dead one (crashed; half the time it stays down
//                  until faults stop); the leader removes it once its partitions' future
//                  owners caught up;
//   remove         of the incoming member (cancels an add), or of an owner (illegal);
//   noop.
// At most one member moves at a time, so many proposals are refused: that is recorded, not
// a failure. A node removed from the cluster keeps running as a non-member for 1..4 s and
// then stops for good.
//
// The store a node reads (StoreView) is read-your-writes: persist ops are visible at once,
// durable only after the fsync; a crash rolls it back to the durable state.
//
// Oracles, after every event (a failure names the seed, the invariant and the last events):
//   single-server    at most one running node may serve (canServe) a partition at any instant
//   owner-serves     a node serves a partition (canServe, or a strong read / write answered)
//                    only as its primary in its own config (before or after the input that
//                    produced the answer): a non-owner, a learner or a removed node never does
//   acked-durable    every acknowledged write is on the disk of every active member of the
//                    partition's preference list in the latest decided config (version
//                    descends from the acked one), unless that member is mid-copy
//   min-copies       at every committed epoch, for as long as it is the latest: every
//                    acknowledged write is on the disk of at least minInSync members that own
//                    its partition in that epoch: its preference list (whatever their status:
//                    a crashed member's disk keeps its copy) and its learners (future owners;
//                    a learner confirmed in an earlier epoch holds what was committed then).
//                    Only what is on disk counts, so an old owner's copy dropped before the
//                    switch is decided no longer counts. One allowance: a member in the
//                    middle of a full copy counts for what it held before the core wiped it
//                    (it re-fetches from a holder); that window is a known gap, see
//                    heldBeforeWipe
//   switch           when an epoch is decided that makes a member a new owner of a partition
//                    (an added member's tokens placed, or a decommissioned member removed),
//                    that member already holds every acknowledged write of the partition on
//                    disk: a learner confirmed in the previous epoch holds everything committed
//                    in it. This catches a switch before the future owners caught up even
//                    when the other owners still hold minInSync copies
//   dropped          a running node that neither owns nor learns a partition in its config
//                    holds no record of it once its paced drops had time to run (rule 6:
//                    old copies are dropped, by the core, a few partitions per tick)
//   ring/config      every node runs only decided configs, identical for an epoch on every
//                    node, and computes the same ring checksum for it; the membership layer
//                    reports no ring mismatch or config conflict in heartbeats
//   minority         an admin change sent to a node cut off from every quorum (no node it
//                    can reach hears a majority of the voters) is never decided, nor answered
//                    `committed`, while that partition stands (it answers unavailable; or
//                    rejected, with no effect, when it still leads and finds the change illegal
//                    in its own, possibly stale, config: counted as cutOffRejected); every
//                    `committed` answer names the decided entry that carries the request
//   conflicts        no version conflict (concurrent clocks) anywhere
//   purge            tombstone collection (every node, a grace of 150..800 ms per seed)
//                    removes only a key's newest record, only if it is a tombstone whose
//                    grace has run out. An acknowledged version counts as held by a node
//                    whose disk has no record of the key at all once a tombstone that
//                    descends from it was collected somewhere (the delete is then the
//                    absence); a node holding an older VALUE still fails acked-durable
//                    (a delete resurrected by a catch-up that missed a collected tombstone)
//   etag-unique      a version (ETag) of a key never names two different writes: no two
//                    acknowledged writes, nor a read and another write, share one (a key
//                    re-created after its tombstone was collected gets a new version)
// At the end: every member active and an owner (no move left unfinished), every partition
// served again (liveness), and the client history is linearizable
// (test/support/linearizability.ts).

import { isDeepStrictEqual } from 'node:util';
import {
  applyPersistOp,
  currentConfig,
  currentEntry,
  emptyPersistedState,
  type AdminReply,
  type LogEntry,
  type Message,
  type PersistOp,
  type PersistedState,
} from '../../src/core/node.js';
import {
  applyRepPersistOp,
  canServe,
  createKvNode,
  isRepMessage,
  proposeKv,
  replicationLimits,
  stepKv,
  submitKv,
  readNowKv,
  tickKv,
  type ClientOp,
  type ClientResult,
  type KvNode,
  type KvReady,
  type KvRecord,
  type PartitionMeta,
  type RepMessage,
  type RepMutation,
  type RepPersistOp,
  type StoreView,
} from '../../src/core/replication.js';
import { buildRing, type Ring } from '../../src/core/ring.js';
import { partitionOf } from '../../src/core/hash.js';
import { describeChange, isMember, majority, validateConfig, type ClusterConfig, type ConfigChange, type NewMember } from '../../src/core/membership.js';
import { chance, createPrng, nextInt, nextU32, pick, type Prng } from '../../src/core/prng.js';
import { nodeId, type NodeId, type PartitionId } from '../../src/core/types.js';
import { compare, descends, versionOf, type VectorClock } from '../../src/core/vector-clock.js';
import { checkLinearizable, formatCheckResult, HistoryRecorder, type KvInput, type OpHandle } from '../support/linearizability.js';
import { EventQueue } from './event-queue.js';

export interface RepSimOptions {
  readonly seed: number;
  readonly mutation?: RepMutation;
  readonly faultMs?: number;
  readonly settleMs?: number;
  readonly traceLength?: number;
}

export interface RepSimStats {
  readonly seed: number;
  /** Initial members; the spares that may be added come on top. */
  readonly nodes: number;
  readonly events: number;
  readonly crashes: number;
  readonly pauses: number;
  readonly epochs: number;
  readonly ops: number;
  readonly acked: number;
  readonly unknown: number;
  readonly copies: number;
  readonly settledAtMs: number;
  /** Admin membership proposals, and how they ended (the rest got no answer: their node crashed). */
  readonly proposals: number;
  readonly proposalsCutOff: number;
  /** Proposals a node cut off from every quorum answered `rejected` (no effect) while still cut off. */
  readonly cutOffRejected: number;
  readonly committed: number;
  readonly refused: number;
  readonly unavailable: number;
  readonly timeouts: number;
  /** Switches decided: an added member's tokens placed, or a decommissioned member removed. */
  readonly switches: number;
  /** Added nodes that started, and removed nodes that stopped for good. */
  readonly joined: number;
  readonly retired: number;
  /** Members of the last config. */
  readonly members: number;
  /** The tombstone grace of this run (ms) and the tombstones collected (over all nodes). */
  readonly graceMs: number;
  readonly purged: number;
}

export class RepSimViolation extends Error {
  constructor(
    readonly seed: number,
    readonly invariant: string,
    readonly trace: string,
  ) {
    super(`seed=${seed}: ${invariant}\nreplay: SEED=${seed} npx vitest run test/sim/replication-seeds\nlast events:\n${trace}`);
  }
}

const tickMs = 50;
const clusterName = 'sim';
const clientTimeoutMs = 2500;
const keys = ['a', 'b', 'c', 'd'];
const sparesPerRun = 2;
/** How often a node waiting to be added asks a member for the latest config (join.ts retryMs). */
const joinPollMs = 250;

type AnyMsg = Message | RepMessage;

type SimEvent =
  | { readonly kind: 'tick'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'deliver'; readonly from: NodeId; readonly to: NodeId; readonly msg: AnyMsg }
  | { readonly kind: 'fsync'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'fault' }
  | { readonly kind: 'restart'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'resume'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'join-poll'; readonly id: NodeId }
  | { readonly kind: 'retire'; readonly id: NodeId }
  | { readonly kind: 'client-send'; readonly client: number; readonly attempt: number; readonly to: NodeId }
  | { readonly kind: 'client-reply'; readonly client: number; readonly attempt: number; readonly from: NodeId; readonly result: ClientResult }
  | { readonly kind: 'client-timeout'; readonly client: number; readonly attempt: number }
  | { readonly kind: 'client-next'; readonly client: number };

type AnyOp = { readonly layer: 'm'; readonly op: PersistOp } | { readonly layer: 'r'; readonly op: RepPersistOp };

interface Batch {
  readonly ops: readonly AnyOp[];
  readonly ready: KvReady | null;
  readonly durableAt: number;
}

type Records = Map<number, Map<string, KvRecord>>;

/**
 * outside: a spare, never added; joining: being added, polls a member for its first config;
 * live: started at least once (running or crashed); retired: removed and stopped for good.
 */
type Phase = 'outside' | 'joining' | 'live' | 'retired';

interface SimNode {
  readonly id: NodeId;
  phase: Phase;
  node: KvNode | null;
  incarnation: number;
  /** Decommissioned while dead and not restarted until faults stop (the machine is gone). */
  lost: boolean;
  durableMembership: PersistedState;
  durableMetas: Map<number, PartitionMeta>;
  durableRecords: Records;
  /**
   * What a partition durably held before the core wiped it to take a full copy, while that
   * copy is incomplete (durable position null): see min-copies.
   */
  readonly wiped: Records;
  liveRecords: Records;
  disk: Batch[];
  diskBusyUntil: number;
  paused: boolean;
  frozen: SimEvent[];
  pausedAt: number;
  /** When the node's next tick is due: a resume replays every tick due meanwhile, in phase. */
  nextTickAt: number;
  /** requestId -> client attempt */
  /** Requests in flight at this node: the reply may come after the client gave up and moved on. */
  readonly requests: Map<string, { client: number; attempt: number; key: string; op: ClientOp; opId: number | undefined }>;
  /** The epoch whose config and ring this incarnation was last checked against. */
  checkedEpoch: number;
}

interface ClientState {
  readonly id: number;
  op: ClientOp | null;
  handle: OpHandle | null;
  kind: KvInput['type'];
  attempt: number;
  hops: number;
  /** Versions this client saw per key (for cas / conditional delete). */
  readonly seen: Map<string, string>;
  counter: number;
}

/** An admin membership proposal, and the partition in place when it was sent. */
interface AdminRequest {
  readonly change: ConfigChange;
  readonly to: NodeId;
  readonly cutGen: number;
  /** No node that `to` could reach then heard a majority of the voters. */
  readonly cutOff: boolean;
}

export function runRepSim(opts: RepSimOptions): RepSimStats {
  return new RepSim(opts).run();
}

class RepSim {
  private readonly prng: Prng;
  private readonly q = new EventQueue<SimEvent>();
  private now = 0;
  private readonly nodes = new Map<NodeId, SimNode>();
  /** Initial members, then the spares that may be added. */
  private readonly initial: NodeId[];
  private readonly spares: NodeId[];
  private readonly pool: NodeId[];
  private readonly members: NewMember[];
  private readonly changes: boolean;
  private readonly net: { loss: number; dup: number; delayMinMs: number; delayMaxMs: number; slowChance: number; slowMaxMs: number };
  private readonly fsyncMaxMs: number;
  private readonly faultGapMs: number;
  private readonly cut = new Set<string>();
  /** Bumped whenever the set of cut links changes. */
  private cutGen = 0;
  private faultsOn = true;
  private clientsOn = true;
  private readonly clients: ClientState[] = [];
  private readonly history: HistoryRecorder;
  private nextRequest = 1;
  private nextAdmin = 1;
  private readonly admin = new Map<string, AdminRequest>();
  private readonly trace: string[] = [];
  private readonly traceMax: number;
  /** Highest acknowledged version per key (clocks of one key must form a chain). */
  private readonly acked = new Map<string, VectorClock>();
  /** Clocks of the tombstones collected anywhere, per key (see purge). */
  private readonly purgedTombs = new Map<string, VectorClock[]>();
  /** etag-unique: `${key}\0${version}` -> the write it names. */
  private readonly versionNames = new Map<string, string>();
  private readonly graceMs: number;
  private readonly clockOfVersion = new Map<string, VectorClock>();
  /** Every decided config entry, by epoch (the first one any node learned). */
  private readonly decided = new Map<number, LogEntry>();
  private latest: ClusterConfig | null = null;
  /** The simulator's own ring per decided epoch, for its checks. */
  private readonly rings = new Map<number, Ring>();
  /** The ring checksum the first node to run an epoch computed for it. */
  private readonly ringSums = new Map<number, { checksum: string; node: NodeId }>();
  private readonly retiring = new Set<NodeId>();
  private stats = {
    events: 0,
    crashes: 0,
    pauses: 0,
    ops: 0,
    acked: 0,
    unknown: 0,
    copies: 0,
    proposals: 0,
    proposalsCutOff: 0,
    cutOffRejected: 0,
    committed: 0,
    refused: 0,
    unavailable: 0,
    timeouts: 0,
    switches: 0,
    joined: 0,
    retired: 0,
    purged: 0,
  };

  constructor(private readonly opts: RepSimOptions) {
    this.prng = createPrng(opts.seed);
    this.traceMax = opts.traceLength ?? 40;
    const p = this.prng;
    const n = chance(p, 0.5) ? 3 : 4;
    this.initial = Array.from({ length: n }, (_, i) => nodeId(`n${i + 1}`));
    this.spares = Array.from({ length: sparesPerRun }, (_, i) => nodeId(`n${n + i + 1}`));
    this.pool = [...this.initial, ...this.spares];
    this.members = this.initial.map(urls);
    this.changes = chance(p, 0.75);
    this.net = {
      loss: chance(p, 0.6) ? nextInt(p, 0, 8) / 100 : 0,
      dup: chance(p, 0.5) ? nextInt(p, 0, 5) / 100 : 0,
      delayMinMs: nextInt(p, 0, 3),
      delayMaxMs: nextInt(p, 4, 20),
      slowChance: nextInt(p, 0, 6) / 100,
      slowMaxMs: nextInt(p, 50, 300),
    };
    this.fsyncMaxMs = nextInt(p, 2, 25);
    this.faultGapMs = nextInt(p, 300, 1200);
    // Short enough that tombstones are collected while replicas are down or cut off.
    this.graceMs = nextInt(p, 150, 800);
    this.history = new HistoryRecorder(() => this.now);
    for (let c = 0; c < 3; c++) this.clients.push({ id: c, op: null, handle: null, kind: 'get', attempt: 0, hops: 0, seen: new Map(), counter: 0 });
    for (const id of this.pool) {
      this.nodes.set(id, {
        id,
        phase: this.initial.includes(id) ? 'live' : 'outside',
        node: null,
        incarnation: 0,
        lost: false,
        durableMembership: emptyPersistedState(),
        durableMetas: new Map(),
        durableRecords: new Map(),
        wiped: new Map(),
        liveRecords: new Map(),
        disk: [],
        diskBusyUntil: 0,
        paused: false,
        frozen: [],
        pausedAt: 0,
        nextTickAt: 0,
        requests: new Map(),
        checkedEpoch: 0,
      });
    }
  }

  run(): RepSimStats {
    const faultMs = this.opts.faultMs ?? 10_000;
    const settleMs = this.opts.settleMs ?? 20_000;
    for (const id of this.initial) this.start(id);
    this.q.push(this.faultGapMs, { kind: 'fault' });
    for (const c of this.clients) this.q.push(nextInt(this.prng, 100, 600), { kind: 'client-next', client: c.id });
    this.runUntil(faultMs);
    this.faultsOn = false;
    this.setCut([]);
    this.note('faults stop: heal all, resume all, restart every member, stop removed nodes');
    for (const s of this.nodes.values()) {
      if (s.paused) this.resume(s);
      if (s.phase !== 'live' || s.node !== null) continue;
      if (this.isMember(s.id)) this.start(s.id);
      else this.retire(s);
    }
    const deadline = faultMs + settleMs;
    let settledAtMs = -1;
    let stable = 0;
    while (this.now < deadline) {
      this.runUntil(Math.min(deadline, this.now + 250));
      stable = this.notConverged() === null ? stable + 1 : 0;
      if (stable >= 2) {
        settledAtMs = this.now - faultMs;
        break;
      }
    }
    if (settledAtMs < 0) this.fail(`liveness: not converged ${settleMs} ms after faults stopped: ${this.notConverged() ?? ''}\n${this.dump()}`);
    // Let the last client operations finish, then check the history.
    this.clientsOn = false;
    this.runUntil(this.now + clientTimeoutMs + 500);
    const result = checkLinearizable(this.history.history(), { maxStepsPerKey: 2_000_000 });
    if (result.ok === false) this.fail(`linearizability: ${formatCheckResult(result)}`);
    return {
      seed: this.opts.seed,
      nodes: this.initial.length,
      ...this.stats,
      epochs: this.latest?.epoch ?? 1,
      settledAtMs,
      members: this.latest?.members.length ?? 0,
      graceMs: this.graceMs,
    };
  }

  // -------------------------------------------------------------------------------------
  // Event loop

  private runUntil(t: number): void {
    for (;;) {
      const next = this.q.peek();
      if (next === undefined || next.at > t) break;
      const top = this.q.pop()!;
      this.now = top.at;
      this.stats.events += 1;
      this.handle(top.item);
      this.checkInvariants();
    }
    this.now = Math.max(this.now, t);
  }

  private frozenFor(ev: SimEvent): SimNode | null {
    const id = ev.kind === 'deliver' ? ev.to : ev.kind === 'tick' || ev.kind === 'fsync' ? ev.id : ev.kind === 'client-send' ? ev.to : null;
    if (id === null) return null;
    const s = this.sim(id);
    return s.paused ? s : null;
  }

  private handle(ev: SimEvent): void {
    const frozen = this.frozenFor(ev);
    if (frozen !== null) {
      if (ev.kind !== 'tick') frozen.frozen.push(ev); // missed ticks are replayed on resume
      return;
    }
    switch (ev.kind) {
      case 'tick': {
        const s = this.sim(ev.id);
        if (s.node === null || s.incarnation !== ev.incarnation) return;
        this.input(s, (n) => tickKv(n, this.now));
        s.nextTickAt = this.now + tickMs;
        this.q.push(s.nextTickAt, ev);
        return;
      }
      case 'deliver': {
        const s = this.sim(ev.to);
        if (s.node === null || this.isCut(ev.from, ev.to)) return;
        if (!isRepMessage(ev.msg) || ev.msg.type !== 'rep-heartbeat') this.note(`${ev.from}->${ev.to} ${describe(ev.msg)}`);
        const msg = ev.msg;
        this.input(s, (n) => stepKv(n, msg));
        return;
      }
      case 'fsync': {
        const s = this.sim(ev.id);
        if (s.incarnation === ev.incarnation) this.drainDisk(s);
        return;
      }
      case 'restart': {
        const s = this.sim(ev.id);
        if (s.node === null && s.incarnation === ev.incarnation && this.faultsOn && s.phase === 'live' && !s.lost) this.start(s.id);
        return;
      }
      case 'resume': {
        const s = this.sim(ev.id);
        if (s.paused && s.incarnation === ev.incarnation) this.resume(s);
        return;
      }
      case 'join-poll':
        this.joinPoll(this.sim(ev.id));
        return;
      case 'retire':
        this.retire(this.sim(ev.id));
        return;
      case 'fault':
        if (!this.faultsOn) return;
        this.injectFault();
        this.q.push(this.now + nextInt(this.prng, Math.floor(this.faultGapMs / 2), this.faultGapMs * 2), ev);
        return;
      case 'client-next':
        this.clientNext(this.clients[ev.client]!);
        return;
      case 'client-send':
        this.clientArrive(ev.client, ev.attempt, ev.to);
        return;
      case 'client-reply':
        this.clientReply(ev.client, ev.attempt, ev.from, ev.result);
        return;
      case 'client-timeout': {
        const c = this.clients[ev.client]!;
        if (c.handle === null || c.attempt !== ev.attempt) return;
        this.note(`client ${c.id} op #${c.handle.id} times out: unknown outcome`);
        this.finishOp(c, null);
        return;
      }
    }
  }

  // -------------------------------------------------------------------------------------
  // Nodes, disks, network

  /** Start (or restart) a node from its durable state; an added node's first config is already there. */
  private start(id: NodeId): void {
    const s = this.sim(id);
    const first = s.incarnation === 0;
    s.incarnation += 1;
    s.lost = false;
    s.checkedEpoch = 0;
    s.liveRecords = cloneRecords(s.durableRecords);
    const seed = nextU32(this.prng);
    const store: StoreView = {
      get: (p, key) => s.liveRecords.get(p)?.get(key),
      scan: (p, after, limit) => {
        const m = s.liveRecords.get(p);
        if (m === undefined) return [];
        return [...m.keys()]
          .filter((k) => after === null || k > after)
          .sort()
          .slice(0, limit)
          .map((k) => ({ key: k, record: m.get(k)! }));
      },
    };
    const { node, ready } = createKvNode(
      {
        membership: {
          id,
          clusterName,
          initialMembers: this.members,
          cluster: { replicationFactor: 3, minInSync: 2, partitions: 8, vnodesPerNode: 4 },
          seed,
          checkInvariants: true,
          // As the runtime does (KvDriver): heartbeats carry the ring checksum of the sender's epoch.
          ringChecksum: (cfg) => buildRing(cfg).checksum,
        },
        replication: { seed: seed ^ 0x5bd1e995, checkInvariants: true, testOnlyMutation: this.opts.mutation ?? null, tombstoneGraceMs: this.graceMs },
      },
      { membership: s.durableMembership, metas: s.durableMetas },
      store,
    );
    s.node = node;
    this.learned(currentEntry(node.membership));
    this.note(`${id} ${first ? 'starts' : 'restarts'} at epoch ${currentConfig(node.membership).epoch}`);
    this.output(s, ready, null);
    s.nextTickAt = this.now + nextInt(this.prng, 1, tickMs);
    this.q.push(s.nextTickAt, { kind: 'tick', id, incarnation: s.incarnation });
    this.scheduleRetire(s);
  }

  private crash(s: SimNode): void {
    this.stats.crashes += 1;
    this.note(`${s.id} CRASHES (drops ${s.disk.length} unsynced batches)`);
    this.stop(s);
    this.q.push(this.now + nextInt(this.prng, 50, 2000), { kind: 'restart', id: s.id, incarnation: s.incarnation });
  }

  /** The process ends: what was not durable is gone. */
  private stop(s: SimNode): void {
    s.node = null;
    s.disk = [];
    s.paused = false;
    s.frozen = [];
    s.requests.clear();
    s.incarnation += 1;
    s.liveRecords = cloneRecords(s.durableRecords);
  }

  private pause(s: SimNode, ms: number): void {
    this.stats.pauses += 1;
    s.paused = true;
    s.pausedAt = this.now;
    this.note(`${s.id} PAUSED for ${ms} ms`);
    this.q.push(this.now + ms, { kind: 'resume', id: s.id, incarnation: s.incarnation });
  }

  /** SIGCONT: the clock has moved on; the node sees every missed tick before anything else. */
  private resume(s: SimNode): void {
    s.paused = false;
    // Every tick that fell due while paused, as the runtime delivers them (KvDriver counts
    // elapsed time exactly): a node whose tick count fell behind real time would think its
    // leases last longer than they do.
    let missed = 0;
    for (; s.nextTickAt <= this.now; s.nextTickAt += tickMs) missed += 1;
    this.note(`${s.id} RESUMES after ${this.now - s.pausedAt} ms (${missed} ticks)`);
    for (let i = 0; i < missed && s.node !== null; i++) this.input(s, (n) => tickKv(n, this.now));
    const frozen = s.frozen;
    s.frozen = [];
    for (const ev of frozen) this.handle(ev);
    if (s.node !== null) this.q.push(s.nextTickAt, { kind: 'tick', id: s.id, incarnation: s.incarnation });
  }

  /** Hand the node one input, remembering the config it held before (see owner-serves). */
  private input(s: SimNode, f: (node: KvNode) => KvReady): void {
    const node = s.node!;
    const before = node.rep.cfg;
    this.output(s, f(node), before);
  }

  /** Carry out a Ready: persist (visible at once, durable after fsync) -> send -> reply. */
  private output(s: SimNode, r: KvReady, before: ClusterConfig | null): void {
    const ops: AnyOp[] = [...r.membership.persist.map((op) => ({ layer: 'm' as const, op })), ...r.rep.persist.map((op) => ({ layer: 'r' as const, op }))];
    for (const e of r.rep.events) {
      this.note(`${s.id} event ${JSON.stringify(e)}`);
      if (e.type === 'version-conflict') this.fail(`conflicts: ${s.id} saw concurrent versions of ${e.key} in partition ${e.partition}`);
      if (e.type === 'copy') this.stats.copies += 1;
    }
    for (const e of r.membership.events) {
      if (e.type === 'learned') {
        const entry = s.node!.membership.log.find((x) => x.config.epoch === e.epoch);
        if (entry !== undefined) this.learned(entry);
      } else if (e.type === 'ring-mismatch' || e.type === 'conflict') {
        this.fail(`ring/config: ${s.id} reports ${e.type} with ${e.peer} at epoch ${e.epoch}`);
      }
    }
    this.checkServedReplies(s, r, before);
    for (const a of ops) {
      if (a.layer === 'r') {
        if (a.op.kind === 'record-delete') this.onPurge(s, a.op.partition, a.op.key);
        applyRecordOp(s.liveRecords, a.op);
        if (a.op.kind === 'record') this.clockOfVersion.set(versionOf(a.op.record.clock), a.op.record.clock);
      }
    }
    if (ops.length === 0 && s.disk.length === 0) {
      this.release(s, r);
      return;
    }
    let durableAt = s.diskBusyUntil;
    if (ops.length > 0) {
      durableAt = Math.max(this.now, s.diskBusyUntil) + nextInt(this.prng, 0, this.fsyncMaxMs);
      s.diskBusyUntil = durableAt;
      this.q.push(durableAt, { kind: 'fsync', id: s.id, incarnation: s.incarnation });
    }
    s.disk.push({ ops, ready: r, durableAt });
  }

  private drainDisk(s: SimNode): void {
    while (s.disk.length > 0) {
      const b = s.disk[0]!;
      if (b.durableAt > this.now) break;
      s.disk.shift();
      for (const a of b.ops) {
        if (a.layer === 'm') s.durableMembership = applyPersistOp(s.durableMembership, a.op);
        else {
          if (a.op.kind === 'partition-reset') keepWiped(s, a.op.partition);
          applyRepPersistOp(s.durableMetas, a.op);
          applyRecordOp(s.durableRecords, a.op);
          if (a.op.kind === 'partition-meta' && a.op.meta.pos !== null) s.wiped.delete(a.op.partition);
        }
      }
      if (b.ready !== null && s.node !== null) this.release(s, b.ready);
    }
  }

  private release(s: SimNode, r: KvReady): void {
    for (const env of r.membership.send) this.transmit(s.id, env.to, env.msg);
    for (const env of r.rep.send) this.transmit(s.id, env.to, env.msg);
    for (const reply of r.membership.replies) this.adminReply(s, reply);
    for (const reply of r.rep.replies) {
      const req = s.requests.get(reply.requestId);
      if (req === undefined) continue;
      s.requests.delete(reply.requestId);
      if (reply.result.status === 'ok' && reply.result.value === undefined) this.onAck(s, req, reply.result.version);
      this.q.push(this.now + nextInt(this.prng, 1, 5), { kind: 'client-reply', client: req.client, attempt: req.attempt, from: s.id, result: reply.result });
    }
  }

  private transmit(from: NodeId, to: NodeId, msg: AnyMsg): void {
    if (!this.nodes.has(to)) return;
    const p = this.prng;
    if (this.isCut(from, to) || chance(p, this.net.loss)) return;
    const wire = structuredClone(msg);
    const copies = chance(p, this.net.dup) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = chance(p, this.net.slowChance) ? nextInt(p, this.net.delayMaxMs, this.net.slowMaxMs) : nextInt(p, this.net.delayMinMs, this.net.delayMaxMs);
      this.q.push(this.now + delay, { kind: 'deliver', from, to, msg: wire });
    }
  }

  // -------------------------------------------------------------------------------------
  // Decided configs

  /** A node learned (or started with) a decided entry: agreement, then the first-decision checks. */
  private learned(entry: LogEntry): void {
    const e = entry.config.epoch;
    const known = this.decided.get(e);
    if (known !== undefined) {
      if (JSON.stringify(known) !== JSON.stringify(entry)) this.fail(`ring/config: two different configs learned for epoch ${e}`);
      return;
    }
    const problem = validateConfig(entry.config);
    if (problem !== null) this.fail(`ring/config: epoch ${e} is invalid: ${problem}`);
    this.decided.set(e, structuredClone(entry));
    const prev = this.decided.get(e - 1);
    if (prev !== undefined) this.checkSwitch(prev.config, entry);
    const req = entry.request === null ? undefined : this.admin.get(entry.request.requestId);
    if (req !== undefined && req.to === entry.request?.origin && req.cutOff && req.cutGen === this.cutGen) {
      this.fail(`minority: ${describeChange(req.change)}, sent to ${req.to} while it was cut off from every quorum, was decided in epoch ${e} while that partition stands`);
    }
    if (this.latest === null || e > this.latest.epoch) {
      this.latest = entry.config;
      this.note(`epoch ${e} (${describeChange(entry.change)}): ${entry.config.members.map((m) => `${m.id}:${m.status}${m.placement === 'owner' ? '' : `/${m.placement}`}`).join(' ')}`);
      for (const s of this.nodes.values()) this.scheduleRetire(s);
    }
  }

  /**
   * switch: the members that epoch `entry` makes new owners of a partition must already hold
   * every acknowledged write of it on disk (they were confirmed learners in the epoch before).
   */
  private checkSwitch(prev: ClusterConfig, entry: LogEntry): void {
    const cfg = entry.config;
    const before = this.ringOf(prev);
    const after = this.ringOf(cfg);
    let switched = false;
    for (let p = 0; p < cfg.partitions && !switched; p++) {
      switched = after.preference(p as PartitionId).some((id) => !before.preference(p as PartitionId).includes(id));
    }
    if (!switched) return;
    this.stats.switches += 1;
    for (const [key, clock] of this.acked) {
      const p = partitionOf(key, cfg.partitions);
      for (const id of after.preference(p)) {
        if (before.preference(p).includes(id) || this.holds(id, p, key, clock)) continue;
        this.fail(`switch: epoch ${cfg.epoch} (${describeChange(entry.change)}) makes ${id} an owner of partition ${p}, but ${id} does not hold the acknowledged version of ${key} on disk`);
      }
    }
  }

  private ringOf(cfg: ClusterConfig): Ring {
    let r = this.rings.get(cfg.epoch);
    if (r === undefined) {
      r = buildRing(cfg);
      this.rings.set(cfg.epoch, r);
    }
    return r;
  }

  private isMember(id: NodeId): boolean {
    return this.latest !== null && isMember(this.latest, id);
  }

  /** A started node that is no longer a member keeps running as a non-member for a while, then stops. */
  private scheduleRetire(s: SimNode): void {
    if (s.phase !== 'live' || this.isMember(s.id) || this.retiring.has(s.id)) return;
    this.retiring.add(s.id);
    this.q.push(this.now + nextInt(this.prng, 1000, 4000), { kind: 'retire', id: s.id });
  }

  private retire(s: SimNode): void {
    if (s.phase !== 'live' || this.isMember(s.id)) return;
    this.note(`${s.id} (removed from the cluster) stops for good`);
    this.stats.retired += 1;
    this.stop(s);
    s.phase = 'retired';
  }

  // -------------------------------------------------------------------------------------
  // Membership changes

  /** A node being added polls a member for the latest decided entry, and starts once it is listed (join.ts). */
  private joinPoll(s: SimNode): void {
    if (s.phase !== 'joining') return;
    const cfg = this.latest!;
    const contacts = cfg.members.map((m) => this.sim(m.id)).filter((c) => c.id !== s.id && c.node !== null && !c.paused && !this.isCut(s.id, c.id));
    if (contacts.length > 0) {
      const c = pick(this.prng, contacts);
      const entry = currentEntry(c.node!.membership);
      if (isMember(entry.config, s.id)) {
        s.durableMembership = applyPersistOp(emptyPersistedState(), { kind: 'config', entry: structuredClone(entry) });
        s.phase = 'live';
        this.stats.joined += 1;
        this.note(`${s.id} fetched epoch ${entry.config.epoch} from ${c.id}, which lists it: it starts`);
        this.start(s.id);
        return;
      }
    }
    this.q.push(this.now + joinPollMs, { kind: 'join-poll', id: s.id });
  }

  private changeMembership(): void {
    const p = this.prng;
    const cfg = this.latest!;
    const owners = cfg.members.filter((m) => m.placement === 'owner').map((m) => this.sim(m.id));
    const roll = nextInt(p, 0, 99);
    const spare = this.spares.map((id) => this.sim(id)).find((s) => (s.phase === 'outside' || s.phase === 'joining') && !isMember(cfg, s.id));
    if (roll < 40 && spare !== undefined) {
      // The operator starts the new node and adds it (a retry if it is already waiting).
      if (spare.phase === 'outside') {
        spare.phase = 'joining';
        this.q.push(this.now + nextInt(p, 0, 2 * joinPollMs), { kind: 'join-poll', id: spare.id });
      }
      this.proposeChange({ kind: 'add', member: urls(spare.id) });
    } else if (roll < 65) {
      if (owners.length > 0) this.proposeChange({ kind: 'decommission', id: pick(p, owners).id });
    } else if (roll < 85) {
      // Removal of a dead node: decommission a member that is down (crash one if none is).
      const dead = owners.filter((s) => s.node === null);
      const live = owners.filter((s) => s.node !== null);
      const target = dead.length > 0 ? pick(p, dead) : live.length > 0 ? pick(p, live) : null;
      if (target === null) return;
      if (target.node !== null) this.crash(target);
      if (chance(p, 0.5)) {
        target.lost = true;
        this.note(`${target.id} is gone: it stays down until faults stop`);
      }
      this.proposeChange({ kind: 'decommission', id: target.id });
    } else {
      const incoming = cfg.members.find((m) => m.placement === 'incoming');
      if (roll < 92 && incoming !== undefined) this.proposeChange({ kind: 'remove', id: incoming.id });
      // Illegal for an owner (it is decommissioned, not removed); but if it is outgoing by the
      // time the leader gets to it, this ends its decommission (seed 1293 of 1..2000).
      else if (roll < 96 && owners.length > 0) this.proposeChange({ kind: 'remove', id: pick(p, owners).id });
      else this.proposeChange({ kind: 'noop' });
    }
  }

  /** Send an admin proposal to a running member; while a partition stands, half of them to a node cut off from every quorum. */
  private proposeChange(change: ConfigChange): void {
    const p = this.prng;
    const cfg = this.latest!;
    const running = cfg.members.map((m) => this.sim(m.id)).filter((s) => s.node !== null && !s.paused);
    if (running.length === 0) return;
    const cutOff = running.filter((s) => this.cutOffFromQuorum(s.id, cfg));
    const target = cutOff.length > 0 && chance(p, 0.5) ? pick(p, cutOff) : pick(p, running);
    const isCutOff = cutOff.includes(target);
    const requestId = `m${this.nextAdmin++}`;
    this.admin.set(requestId, { change, to: target.id, cutGen: this.cutGen, cutOff: isCutOff });
    this.stats.proposals += 1;
    if (isCutOff) this.stats.proposalsCutOff += 1;
    this.note(`admin -> ${target.id} ${requestId} ${describeChange(change)}${isCutOff ? ' (cut off from every quorum)' : ''}`);
    this.input(target, (n) => proposeKv(n, change, requestId));
  }

  /**
   * Can nothing `id` proposes be decided while the current cut stands? A proposal goes at
   * most one hop (to the leader), and the leader's accepts one more: it is hopeless when no
   * node connected to `id` has direct links to a majority of the voters.
   */
  private cutOffFromQuorum(id: NodeId, cfg: ClusterConfig): boolean {
    if (this.cut.size === 0) return false;
    const voters = cfg.members.map((m) => m.id);
    const need = majority(voters.length);
    const seen = new Set<NodeId>([id]);
    const stack = [id];
    for (let a = stack.pop(); a !== undefined; a = stack.pop()) {
      for (const b of this.pool) {
        if (seen.has(b) || this.isCut(a, b)) continue;
        seen.add(b);
        stack.push(b);
      }
    }
    for (const l of seen) if (voters.filter((v) => v === l || !this.isCut(l, v)).length >= need) return false;
    return true;
  }

  private adminReply(s: SimNode, reply: AdminReply): void {
    const req = this.admin.get(reply.requestId);
    if (req === undefined || req.to !== s.id) return;
    const r = reply.result;
    this.note(`admin <- ${s.id} ${reply.requestId} ${describeChange(req.change)}: ${JSON.stringify(r)}`);
    if (req.cutOff && req.cutGen === this.cutGen) {
      if (r.status === 'committed') this.fail(`minority: ${s.id} answered ${describeChange(req.change)} committed, cut off from every quorum since it was sent`);
      // A leader that has not stepped down yet judges the change against its own, possibly stale, config.
      if (r.status === 'rejected') this.stats.cutOffRejected += 1;
    }
    if (r.status === 'rejected') this.stats.refused += 1;
    else if (r.status === 'unavailable') {
      if (r.reason === 'timeout') this.stats.timeouts += 1;
      else this.stats.unavailable += 1;
    } else {
      this.stats.committed += 1;
      const entry = this.decided.get(r.epoch);
      if (entry?.request?.requestId !== reply.requestId || entry.request.origin !== s.id) {
        this.fail(`minority: ${s.id} answered ${reply.requestId} committed in epoch ${r.epoch}, but that epoch decided ${entry === undefined ? 'nothing known' : describeChange(entry.change)}`);
      }
    }
  }

  // -------------------------------------------------------------------------------------
  // Faults

  private injectFault(): void {
    const p = this.prng;
    const all = [...this.nodes.values()];
    const up = all.filter((s) => s.node !== null && !s.paused);
    const down = all.filter((s) => s.phase === 'live' && s.node === null && !s.lost);
    const roll = nextInt(p, 0, 99);
    if (roll < 20) {
      if (up.length > 0) this.crash(pick(p, up));
    } else if (roll < 31) {
      if (down.length > 0) this.start(pick(p, down).id);
    } else if (roll < 45) {
      this.partition();
    } else if (roll < 57) {
      this.setCut([]);
      this.note('heal');
    } else if (roll < 75) {
      // Prefer pausing a node that is serving something: the SIGSTOP'd primary case.
      const serving = up.filter((s) => s.node !== null && s.node.rep.partitions.some((ps) => canServe(s.node!.rep, ps.id)));
      const target = serving.length > 0 && chance(p, 0.8) ? pick(p, serving) : up.length > 0 ? pick(p, up) : null;
      if (target !== null) this.pause(target, nextInt(p, 200, 3000));
    } else if (this.changes) {
      this.changeMembership();
    }
  }

  private partition(): void {
    const p = this.prng;
    const ids = this.pool;
    const groups = ids.map(() => nextInt(p, 0, 1));
    const links: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      for (let j = i + 1; j < ids.length; j++) {
        if (groups[i] !== groups[j] || chance(p, 0.1)) links.push(linkKey(ids[i]!, ids[j]!));
      }
    }
    this.setCut(links);
    this.note(`partition: cut ${links.join(' ') || '(nothing)'}`);
  }

  private setCut(links: readonly string[]): void {
    this.cut.clear();
    for (const l of links) this.cut.add(l);
    this.cutGen += 1;
  }

  private isCut(a: NodeId, b: NodeId): boolean {
    return this.cut.size > 0 && this.cut.has(linkKey(a, b));
  }

  // -------------------------------------------------------------------------------------
  // Clients

  private clientNext(c: ClientState): void {
    if (!this.clientsOn || c.handle !== null) return;
    const p = this.prng;
    const key = pick(p, keys);
    const value = `c${c.id}-${++c.counter}`;
    const bytes = new TextEncoder().encode(value);
    const seen = c.seen.get(key);
    const roll = nextInt(p, 0, 99);
    let input: KvInput;
    let op: ClientOp;
    if (roll < 35) {
      input = { type: 'get' };
      op = { type: 'get', key, consistency: 'strong' };
    } else if (roll < 60) {
      input = { type: 'put', value };
      op = { type: 'put', key, value: bytes };
    } else if (roll < 75 && seen !== undefined) {
      input = { type: 'cas', expectedVersion: seen, value };
      op = { type: 'put', key, value: bytes, ifMatch: [seen] };
    } else if (roll < 85) {
      input = { type: 'create', value };
      op = { type: 'put', key, value: bytes, ifNoneMatch: '*' };
    } else if (roll < 92 && seen !== undefined) {
      input = { type: 'delete', expectedVersion: seen };
      op = { type: 'delete', key, ifMatch: [seen] };
    } else {
      input = { type: 'delete' };
      op = { type: 'delete', key };
    }
    c.op = op;
    c.kind = input.type;
    c.hops = 0;
    c.handle = this.history.invoke(c.id, key, input);
    this.stats.ops += 1;
    // Any node the client may know of: members, and removed nodes until they stop.
    this.clientSend(c, pick(p, this.pool.filter((id) => this.sim(id).phase === 'live')));
  }

  private clientSend(c: ClientState, to: NodeId): void {
    c.attempt += 1;
    this.q.push(this.now + nextInt(this.prng, 1, 5), { kind: 'client-send', client: c.id, attempt: c.attempt, to });
    if (c.hops === 0) this.q.push(this.now + clientTimeoutMs, { kind: 'client-timeout', client: c.id, attempt: c.attempt });
  }

  private clientArrive(client: number, attempt: number, to: NodeId): void {
    const c = this.clients[client]!;
    const s = this.sim(to);
    const op = c.op;
    if (op === null || s.node === null) return; // lost: the client times out
    const requestId = `q${this.nextRequest++}`;
    s.requests.set(requestId, { client, attempt, key: op.key, op, opId: c.handle?.id });
    this.note(`client ${client} -> ${to} ${requestId} op #${c.handle?.id} ${c.kind} ${op.key}`);
    // The driver answers a get with readNow when no Ready is outstanding: it must say
    // exactly what submit says at once (and null only where submit holds the get back).
    const now = readNowKv(s.node, op);
    this.input(s, (n) => {
      const r = submitKv(n, requestId, op, this.now);
      const replied = r.rep.replies.find((x) => x.requestId === requestId);
      if (now !== null ? replied === undefined || !isDeepStrictEqual(replied.result, now) : op.type === 'get' && replied !== undefined) {
        this.fail(`readNow on ${s.id} said ${JSON.stringify(now)}, submit ${JSON.stringify(replied?.result ?? null)} for ${op.type} ${op.key}`);
      }
      return r;
    });
  }

  private clientReply(client: number, attempt: number, from: NodeId, r: ClientResult): void {
    const c = this.clients[client]!;
    if (c.handle === null || c.attempt !== attempt) return;
    this.note(`client ${client} <- ${from} op #${c.handle.id}: ${JSON.stringify(r, (k, v: unknown) => (k === 'value' ? undefined : v))}`);
    const op = c.op!;
    switch (r.status) {
      case 'not_primary':
        if (r.primary !== null && c.hops < 3) {
          c.hops += 1;
          // A retry of an attempt that had no effect: same history op, same timeout.
          c.attempt += 1;
          this.q.push(this.now + nextInt(this.prng, 1, 5), { kind: 'client-send', client: c.id, attempt: c.attempt, to: r.primary });
          this.q.push(this.now + clientTimeoutMs, { kind: 'client-timeout', client: c.id, attempt: c.attempt });
          return;
        }
        return this.finishOp(c, 'discard');
      case 'unavailable':
        return this.finishOp(c, 'discard');
      case 'timeout':
        return this.finishOp(c, null);
      case 'precondition_failed':
        c.handle.ok({ type: 'failed' });
        return this.finishOp(c, 'done');
      case 'not_found':
        c.handle.ok(c.kind === 'get' ? { type: 'absent' } : { type: 'not_found' });
        if (c.kind === 'get') c.seen.delete(op.key);
        return this.finishOp(c, 'done');
      case 'ok':
        if (c.kind === 'get') {
          this.nameVersion(op.key, r.version, `the value ${new TextDecoder().decode(r.value)}`);
          c.handle.ok({ type: 'found', value: new TextDecoder().decode(r.value), version: r.version });
          c.seen.set(op.key, r.version);
        } else if (c.kind === 'delete') {
          c.handle.ok({ type: 'deleted' });
          c.seen.delete(op.key);
        } else {
          c.handle.ok({ type: 'written', version: r.version, created: r.created });
          c.seen.set(op.key, r.version);
        }
        return this.finishOp(c, 'done');
    }
  }

  /** outcome null: unknown. */
  private finishOp(c: ClientState, outcome: 'done' | 'discard' | null): void {
    if (c.handle === null) return;
    if (outcome === null) {
      c.handle.unknown();
      this.stats.unknown += 1;
    } else if (outcome === 'discard') c.handle.discard();
    c.handle = null;
    c.op = null;
    c.attempt += 1;
    this.q.push(this.now + nextInt(this.prng, 0, 60), { kind: 'client-next', client: c.id });
  }

  // -------------------------------------------------------------------------------------
  // Oracles

  /** A write was acknowledged (released after the primary's persist): remember its clock. */
  /**
   * A write acknowledged by `s`. The request's own key and op, not the client's current
   * ones: the reply may be released after the client timed out and moved on to another op
   * (a paused node answers when it resumes).
   */
  private onAck(s: SimNode, req: { key: string; op: ClientOp; opId: number | undefined }, version: string): void {
    const key = req.key;
    const clock = this.clockOfVersion.get(version);
    if (clock === undefined) this.fail(`acked-durable: ${s.id} acknowledged unknown version ${version} of ${key}`);
    const op = req.op;
    this.nameVersion(key, version, op.type === 'put' ? `the value ${new TextDecoder().decode(op.value)}` : `the delete of op #${req.opId}`);
    this.stats.acked += 1;
    const prev = this.acked.get(key);
    if (prev === undefined || compare(clock, prev) === 'after') this.acked.set(key, clock);
    else if (compare(clock, prev) === 'concurrent') this.fail(`conflicts: acknowledged versions of ${key} are concurrent`);
    this.checkAckedDurable();
  }

  /**
   * owner-serves, for answers: a strong read or a write answered (ok, not_found,
   * precondition_failed) comes from the partition's primary in the node's config before or
   * after the input that produced it (a reply can precede a config change in one Ready).
   */
  private checkServedReplies(s: SimNode, r: KvReady, before: ClusterConfig | null): void {
    const after = s.node!.rep.cfg;
    for (const reply of r.rep.replies) {
      const st = reply.result.status;
      if (st !== 'ok' && st !== 'not_found' && st !== 'precondition_failed') continue;
      const req = s.requests.get(reply.requestId);
      if (req === undefined) continue;
      const cfgs = [before, after].filter((c): c is ClusterConfig => c !== null);
      const p = partitionOf(req.key, cfgs[0]!.partitions);
      if (cfgs.some((c) => this.ringOf(c).primaryOf(p) === s.id)) continue;
      this.fail(`owner-serves: ${s.id} answered ${st} for ${req.key} (partition ${p}) without being its primary in epoch ${cfgs.map((c) => c.epoch).join(' or ')}`);
    }
  }

  private checkInvariants(): void {
    const servers = new Map<number, NodeId>();
    for (const s of this.nodes.values()) {
      if (s.node === null) continue;
      const rep = s.node.rep;
      this.checkConfigAndRing(s);
      this.checkDropped(s);
      if (s.paused) continue;
      for (const ps of rep.partitions) {
        if (!canServe(rep, ps.id)) continue;
        if (rep.ring?.primaryOf(ps.id) !== s.id) this.fail(`owner-serves: ${s.id} can serve partition ${ps.id} but is not its primary in epoch ${rep.cfg?.epoch}`);
        const other = servers.get(ps.id);
        if (other !== undefined) this.fail(`single-server: ${other} and ${s.id} can both serve partition ${ps.id}`);
        servers.set(ps.id, s.id);
      }
    }
    this.checkAckedDurable();
    this.checkMinCopies();
  }

  /** ring/config: a node runs decided configs only, equal to everyone's, and computes the same ring for each. */
  private checkConfigAndRing(s: SimNode): void {
    const { cfg, ring } = s.node!.rep;
    if (cfg === null || ring === null || cfg.epoch === s.checkedEpoch) return;
    s.checkedEpoch = cfg.epoch;
    const entry = this.decided.get(cfg.epoch);
    if (entry === undefined || JSON.stringify(entry.config) !== JSON.stringify(cfg)) {
      this.fail(`ring/config: ${s.id} runs a config for epoch ${cfg.epoch} that differs from the decided one`);
    }
    const first = this.ringSums.get(cfg.epoch);
    if (first === undefined) this.ringSums.set(cfg.epoch, { checksum: ring.checksum, node: s.id });
    else if (first.checksum !== ring.checksum) {
      this.fail(`ring/config: ${s.id} computes ring ${ring.checksum} for epoch ${cfg.epoch}, ${first.node} computed ${first.checksum}`);
    }
  }

  /** dropped: a node keeps records only of partitions it owns or learns in its own config (rule 6). */
  private checkDropped(s: SimNode): void {
    const { cfg, ring, partitions, now, adoptedTick } = s.node!.rep;
    if (cfg === null || ring === null) return;
    // Drops are paced (replicationLimits.dropsPerTickPer128): all are done within this many ticks of adopting the config.
    const perTick = Math.max(1, Math.round((partitions.length * replicationLimits.dropsPerTickPer128) / 128));
    if (now - adoptedTick <= Math.ceil(partitions.length / perTick)) return;
    for (const ps of partitions) {
      // A future owner keeps what it copied while it is down (it is still in learners).
      if (ps.role === 'learner' || ring.preference(ps.id).includes(s.id) || ring.learners(ps.id).includes(s.id)) continue;
      const held = s.liveRecords.get(ps.id)?.size ?? 0;
      if (held > 0) this.fail(`dropped: ${s.id} neither owns nor learns partition ${ps.id} in epoch ${cfg.epoch} but still holds ${held} record(s)`);
    }
  }

  private holds(id: NodeId, p: PartitionId, key: string, clock: VectorClock): boolean {
    const rec = this.sim(id).durableRecords.get(p)?.get(key);
    if (rec !== undefined) return descends(rec.clock, clock);
    // No record at all: fine once a delete at or after that version was collected.
    return this.purgedTombs.get(key)?.some((t) => descends(t, clock)) ?? false;
  }

  /**
   * purge: `s` collects the record of `key`: it must be the key's newest record, a
   * tombstone whose grace has run out (by the simulated clock every node shares).
   */
  private onPurge(s: SimNode, p: number, key: string): void {
    const rec = s.liveRecords.get(p)?.get(key);
    if (rec === undefined || rec.value !== null) this.fail(`purge: ${s.id} collects ${key} (partition ${p}), whose newest record is ${rec === undefined ? 'missing' : 'a value'}`);
    if (rec.deletedAtMs === undefined || rec.deletedAtMs + this.graceMs > this.now) {
      this.fail(`purge: ${s.id} collects the tombstone of ${key} deleted at ${rec.deletedAtMs} ms, before its grace (${this.graceMs} ms) ran out`);
    }
    this.stats.purged += 1;
    const list = this.purgedTombs.get(key) ?? [];
    list.push(rec.clock);
    this.purgedTombs.set(key, list);
  }

  /** etag-unique: a version of `key` names one write only. */
  private nameVersion(key: string, version: string, what: string): void {
    const k = `${key}\0${version}`;
    const prev = this.versionNames.get(k);
    if (prev === undefined) this.versionNames.set(k, what);
    else if (prev !== what) this.fail(`etag-unique: version ${version} of ${key} names both ${prev} and ${what}`);
  }

  private checkAckedDurable(): void {
    const cfg = this.latest;
    if (cfg === null || this.acked.size === 0) return;
    const ring = this.ringOf(cfg);
    for (const [key, clock] of this.acked) {
      const p = partitionOf(key, cfg.partitions);
      for (const id of ring.preference(p)) {
        if (cfg.members.find((m) => m.id === id)?.status !== 'active') continue;
        const meta = this.sim(id).durableMetas.get(p);
        if (meta !== undefined && meta.pos === null) continue; // mid-copy
        if (!this.holds(id, p, key, clock)) {
          this.fail(`acked-durable: ${id} (active in epoch ${cfg.epoch}) lacks the acknowledged version of ${key} on disk`);
        }
      }
    }
  }

  /**
   * min-copies: in the latest decided config, every acknowledged write is on the disk of at
   * least minInSync of its partition's owners: the preference list (whatever the status: a
   * crashed member's disk keeps its copy) and the learners (future owners, which hold what
   * they were confirmed for in an earlier epoch and keep receiving; the continuing primary
   * confirms them again only after it adopted the new epoch). Only what is on disk counts.
   */
  private checkMinCopies(): void {
    const cfg = this.latest;
    if (cfg === null || this.acked.size === 0) return;
    const ring = this.ringOf(cfg);
    for (const [key, clock] of this.acked) {
      const p = partitionOf(key, cfg.partitions);
      const owners = [...ring.preference(p), ...ring.learners(p)];
      const holders = owners.filter((id) => this.holds(id, p, key, clock) || this.heldBeforeWipe(id, p, key, clock));
      if (holders.length < cfg.minInSync) {
        this.fail(`min-copies: in epoch ${cfg.epoch} the acknowledged version of ${key} (partition ${p}) is on the disk of ${holders.length} of its owners and learners [${owners.join(',')}] (${holders.join(',') || 'none'}), fewer than minInSync=${cfg.minInSync}`);
      }
    }
  }

  /**
   * A member in the middle of a full copy (durable position null) that wiped a copy holding
   * the write: the core re-fetches its log from a holder, so it is not a copy lost by a
   * premature drop. It is, however, a window with fewer than minInSync copies on disk (a
   * disk lost then would lose the write); docs/replication.md's staging-copy idea closes it.
   */
  private heldBeforeWipe(id: NodeId, p: PartitionId, key: string, clock: VectorClock): boolean {
    const s = this.sim(id);
    if (s.durableMetas.get(p)?.pos !== null) return false;
    const rec = s.wiped.get(p)?.get(key);
    return rec !== undefined && descends(rec.clock, clock);
  }

  private notConverged(): string | null {
    const cfg = this.latest;
    if (cfg === null) return 'no config';
    for (const m of cfg.members) {
      const s = this.sim(m.id);
      if (s.node === null) return `${m.id} ${s.phase === 'joining' ? 'has not started (no config listing it fetched yet)' : 'down'}`;
      if (m.status !== 'active') return `${m.id} is ${m.status} in epoch ${cfg.epoch}`;
      if (m.placement !== 'owner') return `${m.id} is ${m.placement} in epoch ${cfg.epoch}: the move has not finished`;
      if (currentConfig(s.node.membership).epoch !== cfg.epoch) return `${m.id} lags`;
    }
    for (let p = 0; p < cfg.partitions; p++) {
      let served = false;
      for (const s of this.nodes.values()) if (s.node !== null && canServe(s.node.rep, p)) served = true;
      if (!served) return `partition ${p} not served`;
    }
    return null;
  }

  /** Per-node replication state, for liveness failures. */
  private dump(): string {
    const lines: string[] = [];
    const cfg = this.latest;
    if (cfg !== null) lines.push(`latest epoch ${cfg.epoch}: ${cfg.members.map((m) => `${m.id}:${m.status}/${m.placement}`).join(' ')}`);
    for (const s of this.nodes.values()) {
      if (s.node === null) {
        lines.push(`${s.id} ${s.phase}, not running`);
        continue;
      }
      const rep = s.node.rep;
      lines.push(`${s.id} ${s.phase} epoch ${rep.cfg?.epoch} now ${rep.now}`);
      for (const ps of rep.partitions) {
        const pr = ps.primary;
        const f = pr === null ? '' : [...pr.followers.values()].map((x) => `${x.id}{sync:${x.syncOk} str:${x.streaming} cu:${x.caughtUp} ack:${x.acked} mode:${x.catchupMode}}`).join(' ');
        const fo = ps.follower === null ? '' : ` follower{copy:${ps.follower.copy === null ? '-' : `${ps.follower.copy.mode}/${ps.follower.copy.done}`} next:${ps.follower.liveNext}}`;
        lines.push(`  p${ps.id} ${ps.role} pos=${JSON.stringify(ps.meta.pos)} conf=${ps.confirmedEpoch}${pr === null ? '' : ` phase=${pr.phase} commit=${pr.commitSeq} confirmed=${pr.confirmed.join(',')} ${f}`}${fo}`);
      }
    }
    return lines.join('\n');
  }

  // -------------------------------------------------------------------------------------

  private note(line: string): void {
    if (this.traceMax <= 0) return;
    this.trace.push(`${String(this.now).padStart(6)}ms ${line}`);
    if (this.trace.length > this.traceMax * 2) this.trace.splice(0, this.trace.length - this.traceMax);
  }

  /** Fails the seed: the invariant, every decided config change (the trace may not reach back to them), the last events. */
  private fail(invariant: string): never {
    const changes = [...this.decided.values()]
      .filter((e) => e.config.epoch > 1)
      .map((e) => `e${e.config.epoch} ${describeChange(e.change)}${e.request === null ? '' : ` (${e.request.requestId} via ${e.request.origin})`}`);
    throw new RepSimViolation(this.opts.seed, invariant, [`decided: ${changes.join(', ') || 'nothing'}`, ...this.trace.slice(-this.traceMax)].join('\n'));
  }

  private sim(id: NodeId): SimNode {
    const s = this.nodes.get(id);
    if (s === undefined) throw new Error(`unknown node ${id}`);
    return s;
  }
}

function urls(id: NodeId): NewMember {
  return { id, peerUrl: `http://${id}:7380`, clientUrl: `http://${id}:7379` };
}

/** A partition-reset is about to reach the disk: remember what it erases (merged over earlier wipes of the same copy). */
function keepWiped(s: SimNode, p: number): void {
  const held = s.durableRecords.get(p);
  if (held === undefined) return;
  const w = s.wiped.get(p) ?? new Map<string, KvRecord>();
  for (const [k, r] of held) w.set(k, r);
  s.wiped.set(p, w);
}

function applyRecordOp(records: Records, op: RepPersistOp): void {
  if (op.kind === 'partition-reset') records.delete(op.partition);
  else if (op.kind === 'record-delete') records.get(op.partition)?.delete(op.key);
  else if (op.kind === 'record') {
    let m = records.get(op.partition);
    if (m === undefined) records.set(op.partition, (m = new Map()));
    m.set(op.key, op.record);
  }
}

function cloneRecords(r: Records): Records {
  const out: Records = new Map();
  for (const [p, m] of r) out.set(p, new Map(m));
  return out;
}

function linkKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

function describe(m: AnyMsg): string {
  const { from: _f, clusterName: _c, ...rest } = m as AnyMsg & { records?: unknown; entries?: unknown };
  const r = rest as Record<string, unknown>;
  if (Array.isArray(r['records'])) r['records'] = `${(r['records'] as unknown[]).length} records`;
  if (Array.isArray(r['entries'])) r['entries'] = (r['entries'] as { seq: number; key: string }[]).map((e) => `${e.seq}:${e.key}`).join(',');
  if ('config' in r || 'entries' in r || 'value' in r) return `${m.type} e${m.epoch}`;
  return JSON.stringify(r);
}

export type { PartitionId };
