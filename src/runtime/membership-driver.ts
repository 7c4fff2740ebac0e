// Drives the pure membership node (core/node.ts) with a real clock, disk and network.
//
// Every Ready is carried out strictly in order, and each one as PERSIST (one atomic,
// fsynced store write) -> SEND -> REPLY. Readies are chained, so the sends of a later
// Ready never overtake the persist of an earlier one: an acceptor's promise is on disk
// before any message that depends on it leaves this process.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { buildRing, type Ring } from '../core/ring.js';
import type { ClusterConfig, ConfigChange, NewMember } from '../core/membership.js';
import { describeChange } from '../core/membership.js';
import * as core from '../core/node.js';
import type { AdminResult, Message, PersistOp, Ready } from '../core/node.js';
import type { NodeId } from '../core/types.js';
import type { RepMessage } from '../core/replication.js';
import type { PeerTransport } from '../net/peer-transport.js';
import type { Store, WriteOp } from '../store/store.js';
import { LogOnce } from '../net/peer-auth.js';

const META_ACCEPTOR = 'paxos/acceptor';
const META_PROPOSER = 'paxos/proposer';
const META_CONFIG = 'paxos/config/';

const configKey = (epoch: number): string => META_CONFIG + String(epoch).padStart(15, '0');

export interface DriverOptions {
  readonly id: NodeId;
  readonly clusterName: string;
  readonly initialMembers: readonly NewMember[];
  readonly cluster: { replicationFactor: number; minInSync: number; partitions: number; vnodesPerNode: number };
  readonly heartbeatMs: number;
  readonly suspectAfterMs: number;
  readonly store: Store;
  readonly transport: PeerTransport;
  readonly logger: Logger;
}

/** The runtime tick: the core counts time in ticks of this many milliseconds. */
export function tickMsFor(heartbeatMs: number): number {
  return Math.max(10, Math.floor(heartbeatMs / 4));
}

export class MembershipDriver extends EventEmitter {
  readonly node: core.MembershipNode;
  readonly tickMs: number;
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private readonly waiting = new Map<string, (r: AdminResult) => void>();
  private nextRequest = 0;
  private ringCache: { epoch: number; ring: Ring } | null = null;
  private readonly logOnce = new LogOnce();
  private stopped = false;

  constructor(private readonly opts: DriverOptions) {
    super();
    this.tickMs = tickMsFor(opts.heartbeatMs);
    const persisted = MembershipDriver.loadPersisted(opts.store);
    this.node = core.restoreNode(
      {
        id: opts.id,
        clusterName: opts.clusterName,
        initialMembers: opts.initialMembers,
        cluster: opts.cluster,
        // Jitter only needs to differ between nodes and restarts; it decides nothing.
        seed: (Date.now() ^ (process.pid << 8)) >>> 0,
        timing: {
          heartbeatTicks: Math.max(1, Math.round(opts.heartbeatMs / this.tickMs)),
          suspectTicks: Math.max(2, Math.ceil(opts.suspectAfterMs / this.tickMs)),
        },
        ringChecksum: (cfg) => this.ringFor(cfg).checksum,
      },
      persisted,
    );
  }

  static loadPersisted(store: Store): core.PersistedState {
    let s = core.emptyPersistedState();
    const acc = store.getMeta<{ promised: core.PersistedState['promised']; accepted: core.PersistedState['accepted'] }>(META_ACCEPTOR);
    if (acc !== undefined) s = core.applyPersistOp(s, { kind: 'acceptor', promised: acc.promised, accepted: acc.accepted });
    const round = store.getMeta<number>(META_PROPOSER);
    if (round !== undefined) s = core.applyPersistOp(s, { kind: 'proposer', round });
    for (const { value } of store.scanMeta<core.LogEntry>(META_CONFIG)) s = core.applyPersistOp(s, { kind: 'config', entry: value });
    return s;
  }

  start(): void {
    this.timer = setInterval(() => this.apply(core.tick(this.node)), this.tickMs);
    this.apply(core.tick(this.node));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const [, resolve] of this.waiting) resolve({ status: 'unavailable', reason: 'timeout' });
    this.waiting.clear();
    await this.chain;
  }

  deliver(msg: Message | RepMessage): void {
    if (this.stopped || msg.type.startsWith('rep-')) return;
    this.apply(core.step(this.node, msg as Message));
  }

  /** An admin change. Resolves within the core's proposal timeout, never hangs. */
  propose(change: ConfigChange): Promise<AdminResult> {
    if (this.stopped) return Promise.resolve({ status: 'unavailable', reason: 'timeout' });
    const requestId = `${this.opts.id}-${process.pid}-${++this.nextRequest}`;
    return new Promise((resolve) => {
      this.waiting.set(requestId, resolve);
      this.apply(core.propose(this.node, change, requestId));
    });
  }

  config(): ClusterConfig {
    return core.currentConfig(this.node);
  }

  ring(): Ring {
    return this.ringFor(this.config());
  }

  leader(): NodeId | null {
    return core.leaderOf(this.node);
  }

  heartbeatAgeMs(id: NodeId): number | null {
    const t = core.heartbeatAgeTicks(this.node, id);
    return t === null ? null : t * this.tickMs;
  }

  private ringFor(cfg: ClusterConfig): Ring {
    if (this.ringCache?.epoch !== cfg.epoch) this.ringCache = { epoch: cfg.epoch, ring: buildRing(cfg) };
    return this.ringCache.ring;
  }

  private apply(r: Ready): void {
    this.report(r);
    if (r.persist.length === 0 && r.send.length === 0 && r.replies.length === 0) return;
    this.chain = this.chain.then(async () => {
      if (r.persist.length > 0) await this.opts.store.write(r.persist.flatMap(membershipWriteOps));
      for (const { to, msg } of r.send) {
        const url = this.peerUrlOf(to);
        if (url !== null) this.opts.transport.send(url, msg);
      }
      for (const { requestId, result } of r.replies) {
        const resolve = this.waiting.get(requestId);
        this.waiting.delete(requestId);
        resolve?.(result);
      }
    });
    this.chain.catch((e: unknown) => {
      // Acceptor state that cannot reach the disk must never be acted on: stop the node.
      this.opts.logger.fatal({ err: e }, 'cannot persist membership state; stopping');
      process.exit(70);
    });
  }

  private peerUrlOf(id: NodeId): string | null {
    // A message may go to a member of an older or newer config than ours (e.g. a removed
    // node being told it was removed): look in every config we remember.
    for (let i = this.node.log.length - 1; i >= 0; i--) {
      const m = this.node.log[i]!.config.members.find((x) => x.id === id);
      if (m) return m.peerUrl;
    }
    return this.opts.initialMembers.find((m) => m.id === id)?.peerUrl ?? null;
  }

  private report(r: Ready): void {
    const log = this.opts.logger;
    for (const e of r.events) {
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
    for (const d of r.dropped) {
      if (this.logOnce.first(`drop-${d.from}-${d.type}-${d.reason}`)) log.warn({ from: d.from, type: d.type, reason: d.reason }, 'dropped peer message');
    }
  }
}

/** The store ops for one membership persist op. */
export function membershipWriteOps(op: PersistOp): WriteOp[] {
  switch (op.kind) {
    case 'acceptor':
      return [{ kind: 'meta', key: META_ACCEPTOR, value: { promised: op.promised, accepted: op.accepted } }];
    case 'proposer':
      return [{ kind: 'meta', key: META_PROPOSER, value: op.round }];
    case 'config': {
      const e = op.entry.config.epoch;
      const old = e - core.membershipLimits.configHistoryMax;
      const ops: WriteOp[] = [{ kind: 'meta', key: configKey(e), value: op.entry }];
      if (old >= 1) ops.push({ kind: 'meta-remove', key: configKey(old) });
      return ops;
    }
  }
}
