// Deterministic simulator for the membership core (src/core/node.ts).
//
// All nodes run in one process on one seeded Prng. Time is simulated milliseconds; a node
// ticks every tickMs. The network delays, loses, duplicates and reorders messages and cuts
// arbitrary partitions. Each node has a simulated disk: a Ready's persist ops become
// durable only when a simulated fsync completes, and a crash drops whatever was not yet
// durable. The runner carries out each Ready as the runtime must: persist -> (durable) ->
// send -> reply, in Ready order.
//
// Oracles, checked after every event:
//   agreement   no slot (epoch) decides two values: the first value any node learned for a
//               slot is recorded, across nodes and crashes, and every later one must match;
//               independently, a value durably accepted by a majority of a slot's voters is
//               "chosen" and must match too.
//   log         every node's config log is a slice of the decided log (contiguous epochs).
//   epochs      a node's epoch never goes down while it runs, and after a restart it is at
//               least the highest epoch it had sent to anyone.
//   promises    after a restart, an acceptor's promise is at least the highest ballot it
//               had answered (a restarted acceptor never breaks a promise).
//   admin       a 'committed' reply names a decided entry carrying that request; every
//               request to a node that stays up is answered within its deadline.
//   liveness    after faults stop (heal all, restart all), every member converges on the
//               same epoch, with every member active.

import {
  applyPersistOp,
  canonical,
  createNode,
  currentEpoch,
  emptyPersistedState,
  propose,
  restoreNode,
  step,
  tick,
  type AdminResult,
  type LogEntry,
  type MembershipNode,
  type Message,
  type NodeOptions,
  type PersistOp,
  type PersistedState,
  type Ready,
} from '../../src/core/node.js';
import { compareBallots, formatBallot, type Ballot } from '../../src/core/paxos.js';
import { describeChange, majority, type ClusterConfig, type ConfigChange } from '../../src/core/membership.js';
import { chance, createPrng, nextInt, nextU32, pick, type Prng } from '../../src/core/prng.js';
import { nodeId, type NodeId } from '../../src/core/types.js';
import { EventQueue } from './event-queue.js';

export interface SimOptions {
  readonly seed: number;
  /** Mutation: the runner sends a Ready's messages before its persist ops are durable. */
  readonly unsafeReplyBeforePersist?: boolean;
  /** Mutation inside the node (quorum miscounted). */
  readonly nodeMutation?: 'quorum-off-by-one' | null;
  /**
   * The direct restart checks (default on): a restarted node's epoch is not below what it
   * had sent, and its acceptor's promise is not below what it had answered. Turned off to
   * measure how fast the agreement oracle alone catches a mutation.
   */
  readonly restartChecks?: boolean;
  /** Simulated length of the fault phase and the longest allowed convergence phase. */
  readonly faultMs?: number;
  readonly settleMs?: number;
  /** Print the trace tail of a passing run too (SEED=... replays). */
  readonly traceLength?: number;
}

export interface SimStats {
  readonly seed: number;
  readonly events: number;
  readonly messages: number;
  readonly crashes: number;
  readonly epochs: number;
  readonly adminRequests: number;
  readonly settledAtMs: number;
}

export class SimViolation extends Error {
  constructor(
    readonly seed: number,
    readonly invariant: string,
    readonly trace: string,
  ) {
    super(`seed=${seed}: ${invariant}\nreplay: SEED=${seed} npm run sim\nlast events:\n${trace}`);
  }
}

const tickMs = 50;
const clusterName = 'sim';

type SimEvent =
  | { readonly kind: 'tick'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'deliver'; readonly from: NodeId; readonly to: NodeId; readonly msg: Message }
  | { readonly kind: 'fsync'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'fault' }
  | { readonly kind: 'crash'; readonly id: NodeId; readonly incarnation: number }
  | { readonly kind: 'restart'; readonly id: NodeId; readonly incarnation: number };

interface Batch {
  readonly ops: readonly PersistOp[];
  /** Sends and replies are held until this batch and all earlier ones are durable. */
  readonly ready: Ready | null;
  readonly durableAt: number;
}

interface SimNode {
  readonly id: NodeId;
  node: MembershipNode | null;
  incarnation: number;
  durable: PersistedState;
  disk: Batch[];
  diskBusyUntil: number;
  /** Highest epoch carried by any message this node released, across incarnations. */
  maxSentEpoch: number;
  /** Highest ballot this node answered as an acceptor (promise/accepted), across incarnations. */
  maxAnswered: Ballot | null;
  lastEpoch: number;
  checkedThrough: number;
}

interface PendingAdmin {
  readonly node: NodeId;
  readonly incarnation: number;
  readonly change: ConfigChange;
  readonly submittedAt: number;
}

interface NetParams {
  loss: number;
  dup: number;
  delayMinMs: number;
  delayMaxMs: number;
  slowChance: number;
  slowMaxMs: number;
}

export function runSim(opts: SimOptions): SimStats {
  return new Sim(opts).run();
}

class Sim {
  private readonly prng: Prng;
  private readonly q = new EventQueue<SimEvent>();
  private now = 0;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly ids: NodeId[];
  private readonly nodeOpts: Omit<NodeOptions, 'id' | 'seed'>;
  private readonly net: NetParams;
  private readonly fsyncMinMs: number;
  private readonly fsyncMaxMs: number;
  private readonly faultGapMs: number;
  /** Chance that a disk write is interrupted by a crash before its fsync completes. */
  private readonly tornWriteChance: number;
  /** Cut links, as "a|b" with a < b. Partitions need not be transitive. */
  private readonly cut = new Set<string>();
  private faultsOn = true;
  /** First value learned for each slot, canonical JSON; and the decoded entry. */
  private readonly decided = new Map<number, string>();
  private readonly decidedEntries = new Map<number, LogEntry>();
  private maxDecided = 1;
  /** Durable acceptances: slot -> ballot -> {value, acceptors}. */
  private readonly acceptances = new Map<number, Map<string, { value: string; by: Set<NodeId> }>>();
  private readonly chosen = new Map<number, string>();
  private readonly admin = new Map<string, PendingAdmin>();
  private nextRequest = 1;
  private readonly trace: string[] = [];
  private readonly traceMax: number;
  private events = 0;
  private messages = 0;
  private crashes = 0;
  private adminRequests = 0;

  constructor(private readonly opts: SimOptions) {
    this.prng = createPrng(opts.seed);
    this.traceMax = opts.traceLength ?? 30;
    const p = this.prng;
    const initialCount = chance(p, 0.75) ? 3 : 5;
    const spares = initialCount === 3 ? 2 : 1;
    this.ids = Array.from({ length: initialCount + spares }, (_, i) => nodeId(`n${i + 1}`));
    const members = this.ids.slice(0, initialCount).map((id) => memberUrls(id));
    this.nodeOpts = {
      clusterName,
      initialMembers: members,
      cluster: { replicationFactor: 3, minInSync: 2, partitions: 16, vnodesPerNode: 4 },
      ringChecksum: (cfg: ClusterConfig) => `ring-${cfg.epoch}-${cfg.members.length}`,
      checkInvariants: true,
      testOnlyMutation: opts.nodeMutation ?? null,
    };
    const lossy = chance(p, 0.7);
    this.net = {
      loss: lossy ? nextInt(p, 0, 10) / 100 : 0,
      dup: chance(p, 0.5) ? nextInt(p, 0, 5) / 100 : 0,
      delayMinMs: nextInt(p, 0, 3),
      delayMaxMs: nextInt(p, 4, 25),
      slowChance: nextInt(p, 0, 8) / 100,
      slowMaxMs: nextInt(p, 50, 400),
    };
    this.fsyncMinMs = nextInt(p, 0, 3);
    this.fsyncMaxMs = nextInt(p, 4, 40);
    this.faultGapMs = nextInt(p, 150, 900);
    this.tornWriteChance = chance(p, 0.7) ? nextInt(p, 5, 40) / 1000 : 0;
    const initialEntry = createNode({ ...this.nodeOpts, id: this.ids[0] as NodeId, seed: 0 }).log[0] as LogEntry;
    this.recordDecided(initialEntry, 'bootstrap');
  }

  run(): SimStats {
    const faultMs = this.opts.faultMs ?? 15_000;
    const settleMs = this.opts.settleMs ?? 30_000;
    for (const id of this.ids) this.start(id, true);
    this.q.push(this.faultGapMs, { kind: 'fault' });
    this.runUntil(faultMs);
    // Faults stop: heal, restart everything, and give the cluster time to converge.
    this.faultsOn = false;
    this.cut.clear();
    this.note('faults stop: heal all, restart all');
    for (const s of this.nodes.values()) if (s.node === null) this.start(s.id, false);
    const deadline = faultMs + settleMs;
    let stableChecks = 0;
    let settledAtMs = -1;
    while (this.now < deadline) {
      this.runUntil(Math.min(deadline, this.now + 250));
      const why = this.notConverged();
      stableChecks = why === null ? stableChecks + 1 : 0;
      if (stableChecks >= 3) {
        settledAtMs = this.now - faultMs;
        break;
      }
    }
    if (settledAtMs < 0) this.fail(`liveness: no convergence ${settleMs} ms after faults stopped: ${this.notConverged() ?? ''}`);
    return {
      seed: this.opts.seed,
      events: this.events,
      messages: this.messages,
      crashes: this.crashes,
      epochs: this.maxDecided,
      adminRequests: this.adminRequests,
      settledAtMs,
    };
  }

  // -------------------------------------------------------------------------------------
  // Event loop

  private runUntil(t: number): void {
    for (;;) {
      const next = this.q.peek();
      if (next === undefined || next.at > t) break;
      const top = this.q.pop() as typeof next;
      this.now = top.at;
      this.events += 1;
      this.handleEvent(top.item);
      this.checkAdminDeadlines();
    }
    this.now = Math.max(this.now, t);
  }

  private handleEvent(ev: SimEvent): void {
    switch (ev.kind) {
      case 'tick': {
        const s = this.sim(ev.id);
        if (s.node === null || s.incarnation !== ev.incarnation) return;
        this.output(s, tick(s.node));
        this.q.push(this.now + tickMs, ev);
        return;
      }
      case 'deliver': {
        const s = this.sim(ev.to);
        if (s.node === null || this.isCut(ev.from, ev.to)) return;
        this.note(`${ev.from}->${ev.to} ${describeMsg(ev.msg)}`);
        this.output(s, step(s.node, ev.msg));
        return;
      }
      case 'fsync': {
        const s = this.sim(ev.id);
        if (s.incarnation !== ev.incarnation) return;
        this.drainDisk(s);
        return;
      }
      case 'crash': {
        const s = this.sim(ev.id);
        if (s.node !== null && s.incarnation === ev.incarnation && this.faultsOn) this.crash(s, 400);
        return;
      }
      case 'restart': {
        const s = this.sim(ev.id);
        if (s.node === null && s.incarnation === ev.incarnation && this.faultsOn) this.start(s.id, false);
        return;
      }
      case 'fault':
        if (!this.faultsOn) return;
        this.injectFault();
        this.q.push(this.now + nextInt(this.prng, Math.floor(this.faultGapMs / 3), this.faultGapMs * 2), ev);
        return;
    }
  }

  // -------------------------------------------------------------------------------------
  // Nodes, disks, network

  private start(id: NodeId, fresh: boolean): void {
    let s = this.nodes.get(id);
    if (s === undefined) {
      s = {
        id,
        node: null,
        incarnation: 0,
        durable: emptyPersistedState(),
        disk: [],
        diskBusyUntil: 0,
        maxSentEpoch: 0,
        maxAnswered: null,
        lastEpoch: 0,
        checkedThrough: 0,
      };
      this.nodes.set(id, s);
    }
    const seed = nextU32(this.prng);
    const node = fresh ? createNode({ ...this.nodeOpts, id, seed }) : restoreNode({ ...this.nodeOpts, id, seed }, s.durable);
    s.incarnation += 1;
    s.node = node;
    s.checkedThrough = 0;
    this.note(`${id} ${fresh ? 'starts' : 'restarts'} at epoch ${currentEpoch(node)} promised ${formatBallot(node.acceptor.promised)}`);
    const epoch = currentEpoch(node);
    const restartChecks = this.opts.restartChecks ?? true;
    if (restartChecks && epoch < s.maxSentEpoch) this.fail(`epochs: ${id} restarted at epoch ${epoch} after sending epoch ${s.maxSentEpoch}`);
    if (restartChecks && compareBallots(node.acceptor.promised, s.maxAnswered) < 0) {
      this.fail(
        `promises: ${id} restarted with promise ${formatBallot(node.acceptor.promised)} after answering ballot ${formatBallot(s.maxAnswered)}`,
      );
    }
    s.lastEpoch = epoch;
    this.checkLog(s);
    this.q.push(this.now + nextInt(this.prng, 1, tickMs), { kind: 'tick', id, incarnation: s.incarnation });
  }

  private crash(s: SimNode, downMaxMs: number): void {
    this.crashes += 1;
    this.note(`${s.id} CRASHES (drops ${s.disk.length} unsynced batches)`);
    s.node = null;
    s.disk = [];
    s.incarnation += 1;
    for (const [key, a] of this.admin) if (a.node === s.id) this.admin.delete(key);
    this.q.push(this.now + nextInt(this.prng, 20, downMaxMs), { kind: 'restart', id: s.id, incarnation: s.incarnation });
  }

  /** Carry out a Ready: persist -> (durable) -> send -> reply, in Ready order. */
  private output(s: SimNode, r: Ready): void {
    this.afterStep(s);
    const unsafe = this.opts.unsafeReplyBeforePersist ?? false;
    if (unsafe) {
      this.release(s, r);
      if (r.persist.length > 0) this.enqueueDisk(s, r.persist, null);
      return;
    }
    if (r.persist.length === 0 && s.disk.length === 0) {
      this.release(s, r);
      return;
    }
    this.enqueueDisk(s, r.persist, r);
  }

  private enqueueDisk(s: SimNode, ops: readonly PersistOp[], ready: Ready | null): void {
    let durableAt = s.diskBusyUntil;
    if (ops.length > 0) {
      durableAt = Math.max(this.now, s.diskBusyUntil) + nextInt(this.prng, this.fsyncMinMs, this.fsyncMaxMs);
      s.diskBusyUntil = durableAt;
      this.q.push(durableAt, { kind: 'fsync', id: s.id, incarnation: s.incarnation });
      if (this.faultsOn && chance(this.prng, this.tornWriteChance)) {
        // kill -9 while the write is in flight: everything not yet fsynced is lost.
        const at = nextInt(this.prng, this.now, Math.max(this.now, durableAt - 1));
        this.q.push(at, { kind: 'crash', id: s.id, incarnation: s.incarnation });
      }
    }
    s.disk.push({ ops, ready, durableAt });
  }

  private drainDisk(s: SimNode): void {
    while (s.disk.length > 0) {
      const b = s.disk[0] as Batch;
      if (b.durableAt > this.now) break;
      s.disk.shift();
      for (const op of b.ops) {
        s.durable = applyPersistOp(s.durable, op);
        if (op.kind === 'acceptor' && op.accepted !== null) this.recordAcceptance(s.id, op.accepted.slot, op.accepted.ballot, op.accepted.value);
      }
      if (b.ready !== null && s.node !== null) this.release(s, b.ready);
    }
  }

  private release(s: SimNode, r: Ready): void {
    for (const env of r.send) {
      const msg = env.msg;
      if (msg.epoch > s.maxSentEpoch) s.maxSentEpoch = msg.epoch;
      if ((msg.type === 'promise' || msg.type === 'accepted') && compareBallots(msg.ballot, s.maxAnswered) > 0) {
        s.maxAnswered = msg.ballot;
      }
      this.transmit(s, env.to, msg);
    }
    for (const reply of r.replies) this.onAdminReply(s, reply.requestId, reply.result);
  }

  private transmit(from: SimNode, to: NodeId, msg: Message): void {
    const dest = this.nodes.get(to);
    if (dest === undefined) return; // a node id the sim never started
    this.messages += 1;
    const p = this.prng;
    if (this.isCut(from.id, to)) return;
    if (chance(p, this.net.loss)) return;
    // A real network serialises: the receiver must never share objects with the sender.
    const wire = JSON.parse(JSON.stringify(msg)) as Message;
    const copies = chance(p, this.net.dup) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = chance(p, this.net.slowChance)
        ? nextInt(p, this.net.delayMaxMs, this.net.slowMaxMs)
        : nextInt(p, this.net.delayMinMs, this.net.delayMaxMs);
      this.q.push(this.now + delay, { kind: 'deliver', from: from.id, to, msg: wire });
    }
  }

  // -------------------------------------------------------------------------------------
  // Workload

  private injectFault(): void {
    const p = this.prng;
    const all = [...this.nodes.values()];
    const up = all.filter((s) => s.node !== null);
    const down = all.filter((s) => s.node === null);
    const roll = nextInt(p, 0, 99);
    if (roll < 28) {
      if (up.length > 0) this.crash(pick(p, up), 1500);
    } else if (roll < 40) {
      if (down.length > 0) this.start(pick(p, down).id, false);
    } else if (roll < 55) {
      this.partition(all.map((s) => s.id));
    } else if (roll < 65) {
      this.cut.clear();
      this.note('heal');
    } else {
      this.submitAdmin(up);
    }
  }

  private submitAdmin(up: SimNode[]): void {
    const p = this.prng;
    if (up.length === 0) return;
    const latest = this.decidedEntries.get(this.maxDecided)?.config;
    if (latest === undefined) return;
    const memberIds = latest.members.map((m) => m.id);
    const outsiders = this.ids.filter((id) => !memberIds.includes(id));
    let change: ConfigChange;
    const roll = nextInt(p, 0, 9);
    if (roll < 4 && outsiders.length > 0) change = { kind: 'add', member: memberUrls(pick(p, outsiders)) };
    else if (roll < 8) change = { kind: 'remove', id: pick(p, memberIds) };
    else if (roll < 9) change = { kind: 'noop' };
    else change = { kind: 'mark-active', id: pick(p, memberIds) }; // usually illegal: exercises rejection
    // Bias toward nodes that reach at most half of the others: proposals on the minority
    // side must end quickly as 'unavailable', never hang.
    const minority = up.filter((s) => this.ids.filter((o) => !this.isCut(s.id, o)).length * 2 <= this.ids.length);
    const target = minority.length > 0 && chance(p, 0.5) ? pick(p, minority) : pick(p, up);
    const node = target.node;
    if (node === null) return;
    const requestId = `r${this.nextRequest++}`;
    this.adminRequests += 1;
    this.admin.set(`${target.id}/${requestId}`, { node: target.id, incarnation: target.incarnation, change, submittedAt: this.now });
    this.note(`admin ${requestId} '${describeChange(change)}' submitted to ${target.id}`);
    this.output(target, propose(node, change, requestId));
  }

  private onAdminReply(s: SimNode, requestId: string, result: AdminResult): void {
    const key = `${s.id}/${requestId}`;
    const pending = this.admin.get(key);
    this.note(`admin ${requestId} at ${s.id}: ${JSON.stringify(result)}`);
    if (pending === undefined) this.fail(`admin: reply for unknown or already answered request ${key}`);
    this.admin.delete(key);
    if (result.status === 'committed') {
      const entry = this.decidedEntries.get(result.epoch);
      const req = entry?.request;
      if (req === undefined || req === null || req.origin !== s.id || req.requestId !== requestId) {
        this.fail(`admin: ${key} reported committed in epoch ${result.epoch}, but that entry is not this request`);
      }
    }
  }

  private checkAdminDeadlines(): void {
    if (this.admin.size === 0) return;
    const limitMs = (this.nodeOpts.timing?.proposalTimeoutTicks ?? 40) * tickMs + 2 * tickMs + this.fsyncMaxMs * 4;
    for (const [key, a] of this.admin) {
      if (this.now - a.submittedAt > limitMs) this.fail(`admin: request ${key} not answered within ${limitMs} ms`);
    }
  }

  /** Groups (transitive), a bridge node that sees both sides, or random cut links. */
  private partition(ids: readonly NodeId[]): void {
    const p = this.prng;
    this.cut.clear();
    const style = nextInt(p, 0, 2);
    if (style === 2) {
      for (let i = 0; i < ids.length; i++) {
        for (let j = i + 1; j < ids.length; j++) if (chance(p, 0.35)) this.cut.add(linkKey(ids[i] as NodeId, ids[j] as NodeId));
      }
    } else {
      const groups = ids.map(() => nextInt(p, 0, 1));
      const bridge = style === 1 ? nextInt(p, 0, ids.length - 1) : -1;
      for (let i = 0; i < ids.length; i++) {
        for (let j = i + 1; j < ids.length; j++) {
          if (i === bridge || j === bridge || groups[i] === groups[j]) continue;
          this.cut.add(linkKey(ids[i] as NodeId, ids[j] as NodeId));
        }
      }
    }
    this.note(`partition: cut ${[...this.cut].join(' ') || '(nothing)'}`);
  }

  private isCut(a: NodeId, b: NodeId): boolean {
    return this.cut.size > 0 && this.cut.has(linkKey(a, b));
  }

  // -------------------------------------------------------------------------------------
  // Oracles

  private afterStep(s: SimNode): void {
    const node = s.node;
    if (node === null) return;
    const epoch = currentEpoch(node);
    if (epoch < s.lastEpoch) this.fail(`epochs: ${s.id} went from epoch ${s.lastEpoch} to ${epoch}`);
    s.lastEpoch = epoch;
    if (epoch > s.checkedThrough) this.checkLog(s);
  }

  /** The node's log is contiguous and every entry in it is the decided value of its slot. */
  private checkLog(s: SimNode): void {
    const node = s.node;
    if (node === null) return;
    let prev = -1;
    for (const entry of node.log) {
      const e = entry.config.epoch;
      if (prev >= 0 && e !== prev + 1) this.fail(`log: ${s.id} has a gap between epochs ${prev} and ${e}`);
      prev = e;
      if (e <= s.checkedThrough) continue;
      this.recordDecided(entry, s.id);
    }
    s.checkedThrough = prev;
  }

  private recordDecided(entry: LogEntry, by: string): void {
    const e = entry.config.epoch;
    const value = canonical(entry);
    const first = this.decided.get(e);
    if (first === undefined) {
      this.decided.set(e, value);
      this.decidedEntries.set(e, entry);
      if (e > this.maxDecided) this.maxDecided = e;
      this.note(`decided epoch ${e}: ${describeChange(entry.change)} (first learned by ${by})`);
      const c = this.chosen.get(e);
      if (c !== undefined && c !== value) this.fail(`agreement: slot ${e} learned a value other than the chosen one`);
    } else if (first !== value) {
      const firstEntry = this.decidedEntries.get(e);
      const was = firstEntry === undefined ? '?' : describeChange(firstEntry.change);
      this.fail(`agreement: slot ${e} decided two different values (${by} learned '${describeChange(entry.change)}', first was '${was}')`);
    }
  }

  private recordAcceptance(id: NodeId, slot: number, ballot: Ballot, value: LogEntry): void {
    let bySlot = this.acceptances.get(slot);
    if (bySlot === undefined) {
      bySlot = new Map();
      this.acceptances.set(slot, bySlot);
    }
    const key = formatBallot(ballot);
    let rec = bySlot.get(key);
    const v = canonical(value);
    if (rec === undefined) {
      rec = { value: v, by: new Set() };
      bySlot.set(key, rec);
    } else if (rec.value !== v) {
      this.fail(`agreement: ballot ${key} carried two values in slot ${slot}`);
    }
    rec.by.add(id);
    const prevConfig = this.decidedEntries.get(slot - 1)?.config;
    if (prevConfig === undefined) return;
    const voters = prevConfig.members.map((m) => m.id);
    const votes = voters.filter((x) => rec.by.has(x)).length;
    if (votes < majority(voters.length)) return;
    const chosen = this.chosen.get(slot);
    if (chosen === undefined) {
      this.chosen.set(slot, v);
      const d = this.decided.get(slot);
      if (d !== undefined && d !== v) this.fail(`agreement: slot ${slot} chose a value other than the one learned`);
    } else if (chosen !== v) {
      this.fail(`agreement: slot ${slot} chose two values (a majority durably accepted each)`);
    }
  }

  private notConverged(): string | null {
    const latest = this.decidedEntries.get(this.maxDecided)?.config;
    if (latest === undefined) return 'no decided config';
    for (const m of latest.members) {
      const s = this.nodes.get(m.id);
      if (s === undefined || s.node === null) return `${m.id} is not running`;
      const e = currentEpoch(s.node);
      if (e !== latest.epoch) return `${m.id} is at epoch ${e}, latest is ${latest.epoch}`;
      if (m.status !== 'active') return `${m.id} is ${m.status} in epoch ${latest.epoch} although alive`;
    }
    return null;
  }

  // -------------------------------------------------------------------------------------
  // Trace

  private note(line: string): void {
    if (this.traceMax <= 0) return;
    this.trace.push(`${String(this.now).padStart(6)}ms ${line}`);
    if (this.trace.length > this.traceMax * 2) this.trace.splice(0, this.trace.length - this.traceMax);
  }

  private fail(invariant: string): never {
    throw new SimViolation(this.opts.seed, invariant, this.trace.slice(-this.traceMax).join('\n'));
  }

  private sim(id: NodeId): SimNode {
    const s = this.nodes.get(id);
    if (s === undefined) throw new Error(`unknown node ${id}`);
    return s;
  }
}

function linkKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

function memberUrls(id: NodeId): { id: NodeId; peerUrl: string; clientUrl: string } {
  return { id, peerUrl: `http://${id}:7380`, clientUrl: `http://${id}:7379` };
}

function describeMsg(m: Message): string {
  switch (m.type) {
    case 'heartbeat':
      return `heartbeat e${m.epoch} leader=${formatBallot(m.leader)}`;
    case 'prepare':
      return `prepare ${formatBallot(m.ballot)} from slot ${m.fromSlot}`;
    case 'promise':
      return `promise ${formatBallot(m.ballot)}${m.accepted ? ` (accepted ${formatBallot(m.accepted.ballot)})` : ''}`;
    case 'accept':
      return `accept ${formatBallot(m.ballot)} slot ${m.slot}: ${describeChange(m.value.change)}`;
    case 'accepted':
      return `accepted ${formatBallot(m.ballot)} slot ${m.slot}`;
    case 'nack':
      return `nack ${formatBallot(m.ballot)} (promised ${formatBallot(m.promised)})`;
    case 'fetch':
      return `fetch from ${m.fromEpoch}`;
    case 'configs':
      return `configs(${m.reason}) ${m.entries.map((e) => e.config.epoch).join(',')}`;
    case 'propose':
      return `propose ${m.requestId} ${describeChange(m.change)}`;
    case 'propose-result':
      return `propose-result ${m.requestId} ${m.result.status}`;
  }
}

