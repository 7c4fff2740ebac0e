// Cluster events for the live views (GET /v1/events, the dashboard, `cluster status
// --watch`): a small typed emitter fed by the runtime.
//
// The runtime calls `configChanged()` whenever the driver learns a config. Everything an
// epoch change means is derived here by comparing the new config and ring with the last
// ones seen: member status changes, partitions whose owners (preference list) changed, and
// partitions whose primary changed. Member heartbeat ages are polled while anyone listens.
// Timers run only while there is at least one subscriber.

import type { ClusterConfig, MemberStatus } from '../core/membership.js';
import type { Ring } from '../core/ring.js';
import { partitionId, type NodeId } from '../core/types.js';
import type { clusterView } from '../http/cluster-routes.js';

/** What the events are computed from (KvDriver). */
export interface ClusterEventsSource {
  config(): ClusterConfig;
  ring(): Ring;
  leader(): NodeId | null;
  heartbeatAgeMs(id: NodeId): number | null;
}

/** The cluster facts of GET /v1/cluster, plus the ring's vnode tokens. */
export type ClusterFacts = ReturnType<typeof clusterView> & {
  readonly ring: { readonly tokens: readonly { readonly token: string; readonly node: string }[] };
};

/** A member whose status changed; `null` means "not a member" (added or removed). */
export interface MemberChange {
  readonly id: string;
  readonly from: MemberStatus | null;
  readonly to: MemberStatus | null;
}

export interface MemberLiveness {
  readonly id: string;
  readonly status: MemberStatus;
  /** Since this node last heard from the member; 0 for the node itself, null if never heard. */
  readonly heartbeatAgeMs: number | null;
}

export type ClusterEvent =
  | { readonly type: 'epoch'; readonly data: ClusterFacts & { readonly previousEpoch: number; readonly changes: readonly MemberChange[] } }
  | { readonly type: 'partition-move'; readonly data: { readonly epoch: number; readonly partition: number; readonly from: readonly string[]; readonly to: readonly string[] } }
  | {
      readonly type: 'primary';
      readonly data: { readonly epoch: number; readonly partition: number; readonly old: string | null; readonly new: string | null; readonly failover: boolean };
    }
  | { readonly type: 'members'; readonly data: { readonly epoch: number; readonly leader: string | null; readonly members: readonly MemberLiveness[] } };

export type ClusterEventListener = (e: ClusterEvent) => void;

/** What the last config seen looked like, to tell what the next one changed. */
interface Seen {
  readonly epoch: number;
  readonly statuses: ReadonlyMap<string, MemberStatus>;
  readonly preferences: readonly (readonly string[])[];
  readonly primaries: readonly (string | null)[];
}

export class ClusterEvents {
  private readonly listeners = new Set<ClusterEventListener>();
  private seen: Seen;
  private membersTimer: NodeJS.Timeout | null = null;
  private lastMembers = '';
  private tokensOf: { ring: Ring; tokens: ClusterFacts['ring']['tokens'] } | null = null;

  constructor(
    private readonly self: NodeId,
    private readonly source: ClusterEventsSource,
    /** The GET /v1/cluster body. */
    private readonly view: () => ReturnType<typeof clusterView>,
    /** How often member heartbeat ages are compared and sent (when they changed). */
    private readonly membersIntervalMs = 500,
  ) {
    this.seen = this.describe(source.config(), source.ring());
  }

  /** GET /v1/cluster plus the ring's tokens (64-bit positions as 16 hex digits). */
  facts(): ClusterFacts {
    const ring = this.source.ring();
    if (this.tokensOf?.ring !== ring) {
      this.tokensOf = { ring, tokens: ring.tokens.map((t) => ({ token: t.token.toString(16).padStart(16, '0'), node: t.node })) };
    }
    return { ...this.view(), ring: { tokens: this.tokensOf.tokens } };
  }

  /** The client URL of every member of the current config. */
  memberClientUrls(): string[] {
    return this.source.config().members.map((m) => m.clientUrl);
  }

  /** Calls `listener` for every event from now on; returns the unsubscribe function. */
  subscribe(listener: ClusterEventListener): () => void {
    this.listeners.add(listener);
    if (this.membersTimer === null) {
      this.lastMembers = '';
      this.membersTimer = setInterval(() => this.pollMembers(), this.membersIntervalMs);
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.membersTimer !== null) {
        clearInterval(this.membersTimer);
        this.membersTimer = null;
      }
    };
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  /** The runtime learned a config (maybe several epochs at once, maybe the same one again). */
  configChanged(): void {
    const cfg = this.source.config();
    if (cfg.epoch === this.seen.epoch) return;
    const before = this.seen;
    const now = this.describe(cfg, this.source.ring());
    this.seen = now;
    if (this.listeners.size === 0) return;

    const changes: MemberChange[] = [];
    for (const id of new Set([...before.statuses.keys(), ...now.statuses.keys()])) {
      const from = before.statuses.get(id) ?? null;
      const to = now.statuses.get(id) ?? null;
      if (from !== to) changes.push({ id, from, to });
    }
    changes.sort((a, b) => (a.id < b.id ? -1 : 1));
    this.emit({ type: 'epoch', data: { ...this.facts(), previousEpoch: before.epoch, changes } });
    const partitions = Math.min(before.primaries.length, now.primaries.length);
    for (let p = 0; p < partitions; p++) {
      const from = before.preferences[p]!;
      const to = now.preferences[p]!;
      if (from.join() !== to.join()) this.emit({ type: 'partition-move', data: { epoch: now.epoch, partition: p, from, to } });
    }
    for (let p = 0; p < partitions; p++) {
      const old = before.primaries[p]!;
      const next = now.primaries[p]!;
      if (old === next) continue;
      const failover = old !== null && now.statuses.get(old) !== 'active';
      this.emit({ type: 'primary', data: { epoch: now.epoch, partition: p, old, new: next, failover } });
    }
  }

  private describe(cfg: ClusterConfig, ring: Ring): Seen {
    const preferences: (readonly string[])[] = [];
    const primaries: (string | null)[] = [];
    for (let p = 0; p < cfg.partitions; p++) {
      preferences.push(ring.preference(partitionId(p)));
      primaries.push(ring.primaryOf(partitionId(p)) ?? null);
    }
    return { epoch: cfg.epoch, statuses: new Map(cfg.members.map((m) => [m.id, m.status])), preferences, primaries };
  }

  private pollMembers(): void {
    const cfg = this.source.config();
    const data = {
      epoch: cfg.epoch,
      leader: this.source.leader(),
      members: cfg.members.map((m) => ({ id: m.id, status: m.status, heartbeatAgeMs: m.id === this.self ? 0 : this.source.heartbeatAgeMs(m.id) })),
    };
    const text = JSON.stringify(data);
    if (text === this.lastMembers) return;
    this.lastMembers = text;
    this.emit({ type: 'members', data });
  }

  private emit(e: ClusterEvent): void {
    for (const l of this.listeners) l(e);
  }
}
