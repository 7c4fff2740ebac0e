// Deterministic simulator for the replication layer (src/core/replication.ts) composed with
// the REAL membership core (src/core/node.ts), in the style of sim.ts.
//
// One seeded Prng drives everything: network (delay, loss, duplication, reordering,
// partitions), disks (a Ready's ops are durable only after its simulated fsync; a crash
// drops the rest), crashes and restarts, SIGSTOP-like pauses (a paused node runs nothing;
// on resume it first delivers every tick it missed, then what arrived meanwhile), and
// clients issuing put / cas / create / delete / strong get with unique values through
// random nodes (not_primary -> retry at the named node).
//
// The store a node reads (StoreView) is read-your-writes: persist ops are visible at once,
// durable only after the fsync; a crash rolls it back to the durable state.
//
// Oracles, after every event:
//   single-server  at most one running node may serve (canServe) a partition at any instant
//   acked-durable  every acknowledged write is on the disk of every active member of the
//                  partition's preference list in the latest decided config (version
//                  descends from the acked one), unless that member is mid-copy
//   conflicts      no version conflict (concurrent clocks) anywhere
// At the end: every member active and every partition served again (liveness), and the
// client history is linearizable (test/support/linearizability.ts).

import {
  applyPersistOp,
  currentConfig,
  emptyPersistedState,
  type Message,
  type PersistOp,
  type PersistedState,
} from '../../src/core/node.js';
import {
  applyRepPersistOp,
  canServe,
  createKvNode,
  isRepMessage,
  stepKv,
  submitKv,
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
import { buildRing } from '../../src/core/ring.js';
import { partitionOf } from '../../src/core/hash.js';
import type { ClusterConfig } from '../../src/core/membership.js';
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

type AnyMsg = Message | RepMessage;

type SimEvent =
  | { readonly kind: 'tick'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'deliver'; readonly from: NodeId; readonly to: NodeId; readonly msg: AnyMsg }
  | { readonly kind: 'fsync'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'fault' }
  | { readonly kind: 'restart'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'resume'; readonly id: NodeId; readonly incarnation: number }
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

interface SimNode {
  readonly id: NodeId;
  node: KvNode | null;
  incarnation: number;
  durableMembership: PersistedState;
  durableMetas: Map<number, PartitionMeta>;
  durableRecords: Records;
  liveRecords: Records;
  disk: Batch[];
  diskBusyUntil: number;
  paused: boolean;
  frozen: SimEvent[];
  pausedAt: number;
  /** requestId -> client attempt */
  readonly requests: Map<string, { client: number; attempt: number }>;
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

export function runRepSim(opts: RepSimOptions): RepSimStats {
  return new RepSim(opts).run();
}

class RepSim {
  private readonly prng: Prng;
  private readonly q = new EventQueue<SimEvent>();
  private now = 0;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly ids: NodeId[];
  private readonly members: { id: NodeId; peerUrl: string; clientUrl: string }[];
  private readonly net: { loss: number; dup: number; delayMinMs: number; delayMaxMs: number; slowChance: number; slowMaxMs: number };
  private readonly fsyncMaxMs: number;
  private readonly faultGapMs: number;
  private readonly cut = new Set<string>();
  private faultsOn = true;
  private clientsOn = true;
  private readonly clients: ClientState[] = [];
  private readonly history: HistoryRecorder;
  private nextRequest = 1;
  private readonly trace: string[] = [];
  private readonly traceMax: number;
  /** Highest acknowledged version per key (clocks of one key must form a chain). */
  private readonly acked = new Map<string, VectorClock>();
  private readonly clockOfVersion = new Map<string, VectorClock>();
  private latest: ClusterConfig | null = null;
  private stats = { events: 0, crashes: 0, pauses: 0, ops: 0, acked: 0, unknown: 0, copies: 0 };

  constructor(private readonly opts: RepSimOptions) {
    this.prng = createPrng(opts.seed);
    this.traceMax = opts.traceLength ?? 40;
    const p = this.prng;
    const n = chance(p, 0.7) ? 3 : 4;
    this.ids = Array.from({ length: n }, (_, i) => nodeId(`n${i + 1}`));
    this.members = this.ids.map((id) => ({ id, peerUrl: `http://${id}:7380`, clientUrl: `http://${id}:7379` }));
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
    this.history = new HistoryRecorder(() => this.now);
    for (let c = 0; c < 3; c++) this.clients.push({ id: c, op: null, handle: null, kind: 'get', attempt: 0, hops: 0, seen: new Map(), counter: 0 });
  }

  run(): RepSimStats {
    const faultMs = this.opts.faultMs ?? 10_000;
    const settleMs = this.opts.settleMs ?? 20_000;
    for (const id of this.ids) this.start(id);
    this.q.push(this.faultGapMs, { kind: 'fault' });
    for (const c of this.clients) this.q.push(nextInt(this.prng, 100, 600), { kind: 'client-next', client: c.id });
    this.runUntil(faultMs);
    this.faultsOn = false;
    this.cut.clear();
    this.note('faults stop: heal all, resume all, restart all');
    for (const s of this.nodes.values()) {
      if (s.paused) this.resume(s);
      if (s.node === null) this.start(s.id);
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
      nodes: this.ids.length,
      ...this.stats,
      epochs: this.latest?.epoch ?? 1,
      settledAtMs,
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
        this.output(s, tickKv(s.node));
        this.q.push(this.now + tickMs, ev);
        return;
      }
      case 'deliver': {
        const s = this.sim(ev.to);
        if (s.node === null || this.isCut(ev.from, ev.to)) return;
        if (!isRepMessage(ev.msg) || ev.msg.type !== 'rep-heartbeat') this.note(`${ev.from}->${ev.to} ${describe(ev.msg)}`);
        this.output(s, stepKv(s.node, ev.msg));
        return;
      }
      case 'fsync': {
        const s = this.sim(ev.id);
        if (s.incarnation === ev.incarnation) this.drainDisk(s);
        return;
      }
      case 'restart': {
        const s = this.sim(ev.id);
        if (s.node === null && s.incarnation === ev.incarnation && this.faultsOn) this.start(s.id);
        return;
      }
      case 'resume': {
        const s = this.sim(ev.id);
        if (s.paused && s.incarnation === ev.incarnation) this.resume(s);
        return;
      }
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

  private start(id: NodeId): void {
    let s = this.nodes.get(id);
    if (s === undefined) {
      s = {
        id,
        node: null,
        incarnation: 0,
        durableMembership: emptyPersistedState(),
        durableMetas: new Map(),
        durableRecords: new Map(),
        liveRecords: new Map(),
        disk: [],
        diskBusyUntil: 0,
        paused: false,
        frozen: [],
        pausedAt: 0,
        requests: new Map(),
      };
      this.nodes.set(id, s);
    }
    const fresh = s.incarnation === 0;
    s.incarnation += 1;
    s.liveRecords = cloneRecords(s.durableRecords);
    const seed = nextU32(this.prng);
    const sn = s;
    const store: StoreView = {
      get: (p, key) => sn.liveRecords.get(p)?.get(key),
      scan: (p, after, limit) => {
        const m = sn.liveRecords.get(p);
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
        },
        replication: { seed: seed ^ 0x5bd1e995, checkInvariants: true, testOnlyMutation: this.opts.mutation ?? null },
      },
      { membership: fresh ? null : s.durableMembership, metas: s.durableMetas },
      store,
    );
    s.node = node;
    this.onLearned(currentConfig(node.membership));
    this.note(`${id} ${fresh ? 'starts' : 'restarts'} at epoch ${currentConfig(node.membership).epoch}`);
    this.output(s, ready);
    this.q.push(this.now + nextInt(this.prng, 1, tickMs), { kind: 'tick', id, incarnation: s.incarnation });
  }

  private crash(s: SimNode): void {
    this.stats.crashes += 1;
    this.note(`${s.id} CRASHES (drops ${s.disk.length} unsynced batches)`);
    s.node = null;
    s.disk = [];
    s.paused = false;
    s.frozen = [];
    s.requests.clear();
    s.incarnation += 1;
    s.liveRecords = cloneRecords(s.durableRecords);
    this.q.push(this.now + nextInt(this.prng, 50, 2000), { kind: 'restart', id: s.id, incarnation: s.incarnation });
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
    const missed = Math.floor((this.now - s.pausedAt) / tickMs);
    this.note(`${s.id} RESUMES after ${this.now - s.pausedAt} ms (${missed} ticks)`);
    for (let i = 0; i < missed && s.node !== null; i++) this.output(s, tickKv(s.node));
    const frozen = s.frozen;
    s.frozen = [];
    for (const ev of frozen) this.handle(ev);
    if (s.node !== null) this.q.push(this.now + tickMs, { kind: 'tick', id: s.id, incarnation: s.incarnation });
  }

  /** Carry out a Ready: persist (visible at once, durable after fsync) -> send -> reply. */
  private output(s: SimNode, r: KvReady): void {
    const ops: AnyOp[] = [...r.membership.persist.map((op) => ({ layer: 'm' as const, op })), ...r.rep.persist.map((op) => ({ layer: 'r' as const, op }))];
    for (const e of r.rep.events) {
      this.note(`${s.id} event ${JSON.stringify(e)}`);
      if (e.type === 'version-conflict') this.fail(`conflicts: ${s.id} saw concurrent versions of ${e.key} in partition ${e.partition}`);
      if (e.type === 'copy') this.stats.copies += 1;
    }
    for (const e of r.membership.events) if (e.type === 'learned') this.onLearned(currentConfig(s.node!.membership));
    for (const a of ops) {
      if (a.layer === 'r') {
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
          applyRepPersistOp(s.durableMetas, a.op);
          applyRecordOp(s.durableRecords, a.op);
        }
      }
      if (b.ready !== null && s.node !== null) this.release(s, b.ready);
    }
  }

  private release(s: SimNode, r: KvReady): void {
    for (const env of r.membership.send) this.transmit(s.id, env.to, env.msg);
    for (const env of r.rep.send) this.transmit(s.id, env.to, env.msg);
    for (const reply of r.rep.replies) {
      const req = s.requests.get(reply.requestId);
      if (req === undefined) continue;
      s.requests.delete(reply.requestId);
      if (reply.result.status === 'ok' && reply.result.value === undefined) this.onAck(s, req.client, reply.result.version);
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

  private onLearned(cfg: ClusterConfig): void {
    if (this.latest === null || cfg.epoch > this.latest.epoch) {
      this.latest = cfg;
      this.note(`epoch ${cfg.epoch}: ${cfg.members.map((m) => `${m.id}:${m.status}`).join(' ')}`);
    }
  }

  // -------------------------------------------------------------------------------------
  // Faults

  private injectFault(): void {
    const p = this.prng;
    const all = [...this.nodes.values()];
    const up = all.filter((s) => s.node !== null && !s.paused);
    const down = all.filter((s) => s.node === null);
    const roll = nextInt(p, 0, 99);
    if (roll < 22) {
      if (up.length > 0) this.crash(pick(p, up));
    } else if (roll < 34) {
      if (down.length > 0) this.start(pick(p, down).id);
    } else if (roll < 50) {
      this.partition();
    } else if (roll < 64) {
      this.cut.clear();
      this.note('heal');
    } else if (roll < 84) {
      // Prefer pausing a node that is serving something: the SIGSTOP'd primary case.
      const serving = up.filter((s) => s.node !== null && s.node.rep.partitions.some((ps) => canServe(s.node!.rep, ps.id)));
      const target = serving.length > 0 && chance(p, 0.8) ? pick(p, serving) : up.length > 0 ? pick(p, up) : null;
      if (target !== null) this.pause(target, nextInt(p, 200, 3000));
    }
  }

  private partition(): void {
    const p = this.prng;
    this.cut.clear();
    const groups = this.ids.map(() => nextInt(p, 0, 1));
    for (let i = 0; i < this.ids.length; i++) {
      for (let j = i + 1; j < this.ids.length; j++) {
        if (groups[i] !== groups[j] || chance(p, 0.1)) this.cut.add(linkKey(this.ids[i]!, this.ids[j]!));
      }
    }
    this.note(`partition: cut ${[...this.cut].join(' ') || '(nothing)'}`);
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
    this.clientSend(c, pick(p, this.ids));
  }

  private clientSend(c: ClientState, to: NodeId): void {
    c.attempt += 1;
    this.q.push(this.now + nextInt(this.prng, 1, 5), { kind: 'client-send', client: c.id, attempt: c.attempt, to });
    if (c.hops === 0) this.q.push(this.now + clientTimeoutMs, { kind: 'client-timeout', client: c.id, attempt: c.attempt });
  }

  private clientArrive(client: number, attempt: number, to: NodeId): void {
    const c = this.clients[client]!;
    const s = this.sim(to);
    if (c.op === null || s.node === null) return; // lost: the client times out
    const requestId = `q${this.nextRequest++}`;
    s.requests.set(requestId, { client, attempt });
    this.note(`client ${client} -> ${to} ${requestId} op #${c.handle?.id} ${c.kind} ${c.op.key}`);
    this.output(s, submitKv(s.node, requestId, c.op));
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
  private onAck(s: SimNode, client: number, version: string): void {
    const c = this.clients[client]!;
    const key = c.op?.key;
    if (key === undefined) return;
    const clock = this.clockOfVersion.get(version);
    if (clock === undefined) this.fail(`acked-durable: ${s.id} acknowledged unknown version ${version} of ${key}`);
    this.stats.acked += 1;
    const prev = this.acked.get(key);
    if (prev === undefined || compare(clock, prev) === 'after') this.acked.set(key, clock);
    else if (compare(clock, prev) === 'concurrent') this.fail(`conflicts: acknowledged versions of ${key} are concurrent`);
    this.checkAckedDurable();
  }

  private checkInvariants(): void {
    // single-server
    const servers = new Map<number, NodeId>();
    for (const s of this.nodes.values()) {
      if (s.node === null || s.paused) continue;
      for (const ps of s.node.rep.partitions) {
        if (!canServe(s.node.rep, ps.id)) continue;
        const other = servers.get(ps.id);
        if (other !== undefined) this.fail(`single-server: ${other} and ${s.id} can both serve partition ${ps.id}`);
        servers.set(ps.id, s.id);
      }
    }
    this.checkAckedDurable();
  }

  private checkAckedDurable(): void {
    const cfg = this.latest;
    if (cfg === null || this.acked.size === 0) return;
    const ring = buildRing(cfg);
    for (const [key, clock] of this.acked) {
      const p = partitionOf(key, cfg.partitions);
      for (const id of ring.preference(p)) {
        if (cfg.members.find((m) => m.id === id)?.status !== 'active') continue;
        const s = this.sim(id);
        const meta = s.durableMetas.get(p);
        if (meta !== undefined && meta.pos === null) continue; // mid-copy
        const rec = s.durableRecords.get(p)?.get(key);
        if (rec === undefined || !descends(rec.clock, clock)) {
          this.fail(`acked-durable: ${id} (active in epoch ${cfg.epoch}) lacks the acknowledged version of ${key} on disk`);
        }
      }
    }
  }

  private notConverged(): string | null {
    const cfg = this.latest;
    if (cfg === null) return 'no config';
    for (const m of cfg.members) {
      const s = this.sim(m.id);
      if (s.node === null) return `${m.id} down`;
      if (m.status !== 'active') return `${m.id} is ${m.status} in epoch ${cfg.epoch}`;
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
    for (const s of this.nodes.values()) {
      if (s.node === null) continue;
      const rep = s.node.rep;
      lines.push(`${s.id} epoch ${rep.cfg?.epoch} now ${rep.now}`);
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

  private fail(invariant: string): never {
    throw new RepSimViolation(this.opts.seed, invariant, this.trace.slice(-this.traceMax).join('\n'));
  }

  private sim(id: NodeId): SimNode {
    const s = this.nodes.get(id);
    if (s === undefined) throw new Error(`unknown node ${id}`);
    return s;
  }
}

function applyRecordOp(records: Records, op: RepPersistOp): void {
  if (op.kind === 'partition-reset') records.delete(op.partition);
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
