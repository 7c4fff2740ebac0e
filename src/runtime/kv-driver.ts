// Drives the composed membership + replication node (core/replication.ts createKvNode)
// with a real clock, disk and network.
//
// Every KvReady is carried out as PERSIST -> SEND -> REPLY:
//   * its replication records are staged in the write-behind overlay at once, so the core
//     reads its own writes immediately (OverlayStoreView);
//   * the Readies of one event-loop turn are carried out together: their membership and
//     replication ops go to the store in ONE atomic write (one LMDB transaction, fsynced),
//     in the order they were produced, queued at the end of the turn so that the writes
//     of consecutive turns group-commit too;
//   * their sends and replies, in order, wait for that write AND for every earlier
//     turn's sends and replies: nothing leaves before what it depends on is durable, and
//     order is kept.
//
// Time: the core counts ticks of `tickMs`. Before any message or request is handed to the
// core, every tick that has elapsed is delivered first (after a GC pause or SIGSTOP the
// core must judge leases on a clock that has moved on).

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { buildRing, type Ring } from '../core/ring.js';
import { partitionOf } from '../core/hash.js';
import type { ClusterConfig, ConfigChange, NewMember } from '../core/membership.js';
import { describeChange } from '../core/membership.js';
import * as core from '../core/node.js';
import type { AdminResult, Message } from '../core/node.js';
import {
  canServe,
  createKvNode,
  moveProgress,
  proposeKv,
  repairKv,
  replicationLag,
  setCopyRate,
  stepKv,
  submitKv,
  readNowKv,
  tickKv,
  type ClientOp,
  type ClientResult,
  type KvNode,
  type KvReady,
  type LearnProgress,
  type RepEvent,
  type RepMessage,
} from '../core/replication.js';
import { partitionId, type NodeId } from '../core/types.js';
import { LogOnce } from '../net/peer-auth.js';
import type { PeerTransport } from '../net/peer-transport.js';
import type { Store, WriteOp } from '../store/store.js';
import { loadMembershipState, membershipWriteOps, tickMsFor, type DriverOptions } from './membership-state.js';
import { loadPartitionMetas, OverlayStoreView, repWriteOps } from './rep-store.js';
import { copyRequestKey, CopyPacer } from './copy-pacer.js';

export interface KvDriverOptions extends DriverOptions {
  readonly leaseMs: number;
  /** Throttle of catch-up copies into this node (value bytes per second): the ceiling. */
  readonly transferBytesPerSecond: number;
  /** Queueing delay (ms) copies may add before they slow down (copy-pacer.ts); 0 = a fixed rate. */
  readonly transferTargetDelayMs: number;
  /** Period of the background anti-entropy pass; 0 = only on request (repair()). */
  readonly antiEntropyIntervalMs: number;
  /** Tombstones are collected this long after their delete (wall-clock ms). */
  readonly tombstoneGraceMs: number;
  /** Called for every replication event (metrics); see RepEventInfo. */
  readonly onRepEvent?: (e: RepEvent, info: RepEventInfo) => void;
}

/** What the driver adds to a replication event. */
export interface RepEventInfo {
  /** A 'serving' event for a partition another node was the primary of in the previous config. */
  readonly failover: boolean;
  /**
   * For a failover away from a node that is no longer active: milliseconds from the last
   * message heard from the old primary to the moment this node serves (its lease wait
   * included). It overstates the outage by at most one heartbeat period.
   */
  readonly failoverMs: number | null;
}

/** Store writes a driver keeps in flight before it gathers turns into the next one. */
const maxWritesInFlight = 1;

export class KvDriver extends EventEmitter {
  readonly node: KvNode;
  readonly tickMs: number;
  readonly view: OverlayStoreView;
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private lastTick = 0;
  private readonly waitingAdmin = new Map<string, (r: AdminResult) => void>();
  private readonly waitingClient = new Map<string, (r: ClientResult) => void>();
  private nextRequest = 0;
  private ringCache: { epoch: number; ring: Ring } | null = null;
  /** The ring of the config before the current one (to tell failovers from re-takeovers). */
  private prevRing: Ring | null = null;
  private trackedCfg: ClusterConfig | null = null;
  private readonly logOnce = new LogOnce();
  private stopped = false;
  private started = false;
  private pendingReadies: KvReady[] = [];
  /** The Readies of this event-loop turn, carried out together at its end (flushTurn). */
  private turn: { ops: WriteOp[]; gen: number; readies: KvReady[] } | null = null;
  /** A flushTurn is scheduled (setImmediate) for `turn`. */
  private flushScheduled = false;
  /** Store writes issued and not durable yet (group commit: see apply). */
  private writesInFlight = 0;
  readonly pacer: CopyPacer;
  private pacedRate: number;

  constructor(private readonly opts: KvDriverOptions) {
    super();
    this.tickMs = tickMsFor(opts.heartbeatMs);
    this.view = new OverlayStoreView(opts.store);
    this.pacer = new CopyPacer({ maxBytesPerS: opts.transferBytesPerSecond, targetDelayMs: opts.transferTargetDelayMs });
    this.pacedRate = this.pacer.bytesPerS();
    const persisted = loadMembershipState(opts.store);
    const metas = loadPartitionMetas(opts.store);
    const heartbeatTicks = Math.max(1, Math.round(opts.heartbeatMs / this.tickMs));
    const suspectTicks = Math.max(heartbeatTicks + 2, Math.ceil(opts.suspectAfterMs / this.tickMs));
    const leaseTicks = Math.min(suspectTicks - 1, Math.max(heartbeatTicks + 1, Math.floor(opts.leaseMs / this.tickMs)));
    const seed = (Date.now() ^ (process.pid << 8)) >>> 0;
    const { node, ready } = createKvNode(
      {
        membership: {
          id: opts.id,
          clusterName: opts.clusterName,
          initialMembers: opts.initialMembers,
          cluster: opts.cluster,
          // Jitter only needs to differ between nodes and restarts; it decides nothing.
          seed,
          timing: { heartbeatTicks, suspectTicks, joinGraceTicks: Math.ceil(10_000 / this.tickMs) },
          ringChecksum: (cfg) => this.ringFor(cfg).checksum,
        },
        replication: {
          seed: (seed ^ 0x5bd1e995) >>> 0,
          copyBytesPerTick: (this.pacedRate * this.tickMs) / 1000,
          antiEntropyIntervalTicks: opts.antiEntropyIntervalMs === 0 ? undefined : Math.ceil(opts.antiEntropyIntervalMs / this.tickMs),
          tombstoneGraceMs: opts.tombstoneGraceMs,
          timing: { heartbeatTicks, leaseTicks, suspectTicks, retransmitTicks: heartbeatTicks, writeTimeoutTicks: Math.max(leaseTicks + 1, Math.ceil(2000 / this.tickMs)) },
        },
      },
      { membership: persisted, metas },
      this.view,
    );
    this.node = node;
    // Held until start(): the transport and peer listener are not up yet.
    this.pendingReadies.push(ready);
  }

  start(): void {
    this.started = true;
    this.lastTick = performance.now();
    for (const r of this.pendingReadies) this.apply(r);
    this.pendingReadies = [];
    this.timer = setInterval(() => this.catchUpTicks(), Math.max(5, Math.floor(this.tickMs / 2)));
    this.apply(tickKv(this.node, Date.now()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const [, resolve] of this.waitingAdmin) resolve({ status: 'unavailable', reason: 'timeout' });
    this.waitingAdmin.clear();
    for (const [, resolve] of this.waitingClient) resolve({ status: 'timeout' });
    this.waitingClient.clear();
    this.flushTurn(); // this turn's writes reach the store before it closes
    await this.chain;
  }

  deliver(msg: Message | RepMessage): void {
    if (this.stopped || !this.started) return;
    if (msg.type === 'rep-copy-chunk') this.pacer.chunkReceived(copyRequestKey(msg.from, msg), performance.now());
    this.catchUpTicks();
    this.apply(stepKv(this.node, msg));
  }

  /** A client operation on the local replication layer. Always resolves (the core answers every request). */
  submit(op: ClientOp): Promise<ClientResult> {
    if (this.stopped || !this.started) return Promise.resolve({ status: 'unavailable', reason: 'no-primary' });
    this.catchUpTicks();
    const now = this.answerNow(op);
    if (now !== null) return Promise.resolve(now);
    const requestId = `${this.opts.id}-${process.pid}-c${++this.nextRequest}`;
    return new Promise((resolve) => {
      this.waitingClient.set(requestId, resolve);
      this.apply(submitKv(this.node, requestId, op, Date.now()));
    });
  }

  /**
   * The answer to a get that needs no write and no wait, or null: submit() then queues it.
   * A get whose key has nothing staged for a write shows only durable records, so it need
   * not wait behind other keys' writes (a primary's committed records are durable: its
   * appends leave only after its own write). Linearizability is per key.
   */
  answerNow(op: ClientOp): ClientResult | null {
    if (this.stopped || !this.started || op.type !== 'get') return null;
    this.catchUpTicks();
    if (this.view.holdsStaged(partitionOf(op.key, this.config().partitions), op.key)) return null;
    return readNowKv(this.node, op);
  }

  /** An admin change. Resolves within the core's proposal timeout, never hangs. */
  propose(change: ConfigChange): Promise<AdminResult> {
    if (this.stopped || !this.started) return Promise.resolve({ status: 'unavailable', reason: 'timeout' });
    this.catchUpTicks();
    const requestId = `${this.opts.id}-${process.pid}-${++this.nextRequest}`;
    return new Promise((resolve) => {
      this.waitingAdmin.set(requestId, resolve);
      this.apply(proposeKv(this.node, change, requestId));
    });
  }

  config(): ClusterConfig {
    return core.currentConfig(this.node.membership);
  }

  ring(): Ring {
    return this.ringFor(this.config());
  }

  /** The latest decided config log entry (served to nodes joining with cluster.join). */
  latestEntry(): core.LogEntry {
    const log = this.node.membership.log;
    return log[log.length - 1]!;
  }

  leader(): NodeId | null {
    return core.leaderOf(this.node.membership);
  }

  heartbeatAgeMs(id: NodeId): number | null {
    const t = core.heartbeatAgeTicks(this.node.membership, id);
    return t === null ? null : t * this.tickMs;
  }

  /** May this node acknowledge writes and serve strong reads for partition p right now? */
  canServe(p: number): boolean {
    return canServe(this.node.rep, p);
  }

  /**
   * Anti-entropy now (`ringkv repair`): compares every partition this node serves as
   * primary with each in-sync follower and repairs differences. Resolves when every one
   * of them finished its pass, or at the timeout (`done` < `partitions`).
   */
  repair(timeoutMs: number): Promise<{ partitions: number; done: number; repaired: number }> {
    if (this.stopped || !this.started) return Promise.resolve({ partitions: 0, done: 0, repaired: 0 });
    this.catchUpTicks();
    return new Promise((resolve) => {
      const waiting = new Set<number>();
      let total = 0;
      let repaired = 0;
      const onDone = (p: number) => {
        waiting.delete(p);
        if (waiting.size === 0) finish();
      };
      const onRepaired = (n: number) => (repaired += n);
      const timer = setTimeout(() => finish(), timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.off('ae-done', onDone);
        this.off('repaired', onRepaired);
        resolve({ partitions: total, done: total - waiting.size, repaired });
      };
      const { ready, partitions } = repairKv(this.node);
      total = partitions.length;
      for (const p of partitions) waiting.add(p);
      this.on('ae-done', onDone);
      this.on('repaired', onRepaired);
      this.apply(ready);
      if (waiting.size === 0) finish();
    });
  }

  /** The move in progress: each future owner's catch-up progress (null: not heard yet). */
  moveProgress(): Map<NodeId, LearnProgress | null> {
    return moveProgress(this.node.rep);
  }

  /** Entries the slowest follower lacks, per partition this node serves as primary. */
  replicationLag(): Map<number, number> {
    return replicationLag(this.node.rep);
  }

  private catchUpTicks(): void {
    if (this.stopped) return;
    const now = performance.now();
    if (now - this.lastTick < this.tickMs) return;
    const rate = this.pacer.update(now);
    if (rate !== this.pacedRate) {
      this.pacedRate = rate;
      setCopyRate(this.node.rep, (rate * this.tickMs) / 1000);
    }
    while (now - this.lastTick >= this.tickMs) {
      this.lastTick += this.tickMs;
      // The wall clock only dates deletes and expires tombstones (the core keeps it monotonic).
      this.apply(tickKv(this.node, Date.now()));
    }
  }

  private ringFor(cfg: ClusterConfig): Ring {
    if (this.ringCache?.epoch !== cfg.epoch) this.ringCache = { epoch: cfg.epoch, ring: buildRing(cfg) };
    return this.ringCache.ring;
  }

  private apply(r: KvReady): void {
    const cfg = this.config();
    if (this.trackedCfg === null || this.trackedCfg.epoch !== cfg.epoch) {
      if (this.trackedCfg !== null) this.prevRing = buildRing(this.trackedCfg);
      this.trackedCfg = cfg;
    }
    this.report(r);
    const m = r.membership;
    const rep = r.rep;
    const hasOps = m.persist.length > 0 || rep.persist.length > 0;
    if (!hasOps && m.send.length === 0 && rep.send.length === 0 && m.replies.length === 0 && rep.replies.length === 0) return;
    if (this.turn === null) {
      this.turn = { ops: [], gen: 0, readies: [] };
      // Group commit: while a store write is in flight, the turns that follow gather into
      // one, written as soon as it is durable (writeDone). Their sends and replies could not
      // leave before it anyway, and one commit of many records costs about what a commit of
      // a few does (the fsync dominates).
      if (this.writesInFlight < maxWritesInFlight) this.scheduleFlush();
    }
    const t = this.turn;
    for (const op of m.persist) t.ops.push(...membershipWriteOps(op));
    for (const op of repWriteOps(rep.persist)) t.ops.push(op);
    t.gen = this.view.stage(rep.persist);
    t.readies.push(r);
  }

  /** Carries out this turn's Readies: one store write, then their sends and replies in order. */
  private flushTurn(): void {
    const t = this.turn;
    this.turn = null;
    this.flushScheduled = false;
    if (t === null) return;
    let written: Promise<void> | null = null;
    if (t.ops.length > 0) {
      written = this.opts.store.write(t.ops);
      this.writesInFlight++;
      written.then(
        () => this.writeDone(),
        () => undefined, // handled by the chain below
      );
    }
    const prev = this.chain;
    this.chain = (async () => {
      await prev;
      if (written !== null) await written;
      this.view.settle(t.gen);
      for (const r of t.readies) this.sendAndReply(r);
    })();
    this.chain.catch((e: unknown) => {
      // State that cannot reach the disk must never be acted on: stop the node.
      this.opts.logger.fatal({ err: e }, 'cannot persist node state; stopping');
      process.exit(70);
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flushTurn());
  }

  /** A store write is durable: the turns gathered meanwhile are written now. */
  private writeDone(): void {
    this.writesInFlight--;
    if (this.turn !== null && !this.flushScheduled && !this.stopped) this.flushTurn();
  }

  private sendAndReply(r: KvReady): void {
    const m = r.membership;
    const rep = r.rep;
    for (const { to, msg } of m.send) {
      const url = this.peerUrlOf(to);
      if (url !== null) this.opts.transport.send(url, msg);
    }
    for (const { to, msg } of rep.send) {
      const url = this.peerUrlOf(to);
      if (url === null) continue;
      if (msg.type === 'rep-copy-req') this.pacer.requestSent(copyRequestKey(to, msg), performance.now());
      this.opts.transport.send(url, msg);
    }
    for (const { requestId, result } of m.replies) {
      const resolve = this.waitingAdmin.get(requestId);
      this.waitingAdmin.delete(requestId);
      resolve?.(result);
    }
    for (const { requestId, result } of rep.replies) {
      const resolve = this.waitingClient.get(requestId);
      this.waitingClient.delete(requestId);
      resolve?.(result);
    }
  }

  private peerUrlOf(id: NodeId): string | null {
    const log = this.node.membership.log;
    for (let i = log.length - 1; i >= 0; i--) {
      const mm = log[i]!.config.members.find((x) => x.id === id);
      if (mm) return mm.peerUrl;
    }
    return this.opts.initialMembers.find((x) => x.id === id)?.peerUrl ?? null;
  }

  private report(r: KvReady): void {
    const log = this.opts.logger;
    for (const e of r.membership.events) {
      switch (e.type) {
        case 'learned':
          log.info({ epoch: e.epoch, change: describeChange(e.change) }, 'config decided');
          this.emit('config', this.config());
          break;
        case 'leader-changed':
          log.info({ leader: e.leader }, 'leader changed');
          this.emit('leader', e.leader);
          break;
        case 'conflict':
          log.error({ peer: e.peer, epoch: e.epoch }, 'peer has a different config for the same epoch');
          break;
        case 'ring-mismatch':
          if (this.logOnce.first(`ring-${e.peer}-${e.epoch}`)) log.warn({ peer: e.peer, epoch: e.epoch }, 'peer computes a different ring');
          break;
        default:
          log.debug({ event: e }, 'membership event');
      }
    }
    for (const d of r.membership.dropped) {
      if (this.logOnce.first(`drop-${d.from}-${d.type}-${d.reason}`)) log.warn({ from: d.from, type: d.type, reason: d.reason }, 'dropped peer message');
    }
    for (const e of r.rep.events) {
      let failover = false;
      let failoverMs: number | null = null;
      switch (e.type) {
        case 'version-conflict':
          log.error({ partition: e.partition, key: e.key }, 'concurrent versions of a key (split brain evidence)');
          break;
        case 'serving': {
          const before = this.prevRing?.primaryOf(partitionId(e.partition));
          failover = before !== undefined && before !== this.opts.id;
          if (failover && this.config().members.find((m) => m.id === before)?.status !== 'active') {
            const silentTicks = core.heartbeatAgeTicks(this.node.membership, before!) ?? 0;
            failoverMs = (silentTicks + Math.max(0, e.atTick - this.node.rep.now)) * this.tickMs;
          }
          log.debug({ partition: e.partition, epoch: e.epoch, failover, failoverMs }, 'serving partition');
          break;
        }
        case 'ae-done':
          this.emit('ae-done', e.partition);
          break;
        case 'repaired':
          log.warn({ partition: e.partition, peer: e.peer, where: e.where, count: e.count }, 'anti-entropy repaired records');
          this.emit('repaired', e.count);
          break;
        case 'tombstones-purged':
          log.debug({ partition: e.partition, count: e.count }, 'collected expired tombstones');
          break;
        case 'lease-expired':
          if (this.logOnce.first(`lease-${e.peer}-${this.config().epoch}`)) log.info({ peer: e.peer }, 'lease from peer expired');
          break;
        default:
          log.debug({ event: e }, 'replication event');
      }
      this.opts.onRepEvent?.(e, { failover, failoverMs });
    }
    for (const d of r.rep.dropped) {
      if (this.logOnce.first(`rdrop-${d.from}-${d.type}-${d.reason}`)) log.debug({ from: d.from, type: d.type, reason: d.reason }, 'dropped replication message');
    }
  }
}
