import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import type { PeerStats } from '../net/peer-transport.js';
import type { StoreStats } from '../store/store.js';

/** One registry per node (tests run several nodes in one process). */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'code'>;
  readonly latency: RequestLatency;
  readonly versionConflicts: Counter;
  readonly keys: Gauge;
  readonly failovers: Counter;
  readonly takeovers: Counter;
  readonly failoverSeconds: Histogram;
  readonly leaseExpiries: Counter<'peer'>;
  readonly repairs: Counter<'where'>;
  readonly antiEntropyPasses: Counter;
  readonly tombstonesPurged: Counter;

  /** Set by the runtime once replication runs: partitions this node leads, serving, and their copies. */
  replication: (() => { primaries: number; serving: number; inSyncMin: number; lag: ReadonlyMap<number, number>; copyRate: number }) | null = null;

  /** Set by the runtime: outbound traffic per peer, and the message streams peers have open to this node. */
  peers: (() => { outbound: readonly PeerStats[]; inboundStreams: number }) | null = null;

  /** Set by the runtime once membership runs: the cluster facts exported as gauges. */
  cluster: (() => { epoch: number; isLeader: boolean; members: Map<string, number> }) | null = null;

  constructor(nodeId: string, countKeys: () => number, storeStats: () => StoreStats | undefined = () => undefined) {
    this.registry.setDefaultLabels({ node: nodeId });
    collectDefaultMetrics({ register: this.registry, prefix: 'ringkv_' });
    this.requests = new Counter({
      name: 'ringkv_http_requests_total',
      help: 'Client API requests, by route, method and status code.',
      labelNames: ['route', 'method', 'code'],
      registers: [this.registry],
    });
    this.latency = new RequestLatency(this.registry, [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]);
    this.versionConflicts = new Counter({
      name: 'ringkv_version_conflicts_total',
      help: 'Concurrent vector clocks seen for one key: evidence of split brain; must stay 0.',
      registers: [this.registry],
    });
    this.keys = new Gauge({
      name: 'ringkv_keys',
      help: 'Live keys stored on this node (all partitions it holds).',
      registers: [this.registry],
      collect() {
        this.set(countKeys());
      },
    });
    this.failovers = new Counter({
      name: 'ringkv_partition_failovers_total',
      help: 'Partitions this node started serving as primary after another node had been their primary.',
      registers: [this.registry],
    });
    this.takeovers = new Counter({
      name: 'ringkv_partition_takeovers_total',
      help: 'Takeovers completed by this node (every config change makes a primary take over again).',
      registers: [this.registry],
    });
    this.failoverSeconds = new Histogram({
      name: 'ringkv_failover_seconds',
      help: 'Failovers taken by this node: from the last message heard from the dead primary to serving (lease wait included).',
      buckets: [0.5, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 5, 10],
      registers: [this.registry],
    });
    this.leaseExpiries = new Counter({
      name: 'ringkv_lease_expiries_total',
      help: 'Leases granted to this node by a peer that ran out without renewal (the peer is dead, paused or cut off), by peer.',
      labelNames: ['peer'],
      registers: [this.registry],
    });
    this.repairs = new Counter({
      name: 'ringkv_repairs_total',
      help: 'Records anti-entropy rewrote on a follower or on this primary (by where), in partitions this node leads.',
      labelNames: ['where'],
      registers: [this.registry],
    });
    this.antiEntropyPasses = new Counter({
      name: 'ringkv_anti_entropy_passes_total',
      help: 'Anti-entropy passes finished (one per partition this node leads, all of its in-sync followers compared).',
      registers: [this.registry],
    });
    this.tombstonesPurged = new Counter({
      name: 'ringkv_tombstones_purged_total',
      help: 'Expired tombstones this node removed from its copies (timing.tombstoneGraceMs after their delete), primary or replica.',
      registers: [this.registry],
    });
    const rview = () => this.replication?.();
    // A gauge of one value read at each scrape from a runtime view; left unset while the view is not there yet.
    const scalar = (name: string, help: string, read: () => number | undefined) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          const v = read();
          if (v !== undefined) this.set(v);
        },
      });
    new Gauge({
      name: 'ringkv_replication_lag_entries',
      help: 'Per partition this node is the serving primary of: writes its slowest follower has not yet persisted.',
      labelNames: ['partition'],
      registers: [this.registry],
      collect() {
        const v = rview();
        this.reset(); // partitions this node no longer leads disappear
        if (v) for (const [p, lag] of v.lag) this.set({ partition: String(p) }, lag);
      },
    });
    new Gauge({
      name: 'ringkv_partitions_primary',
      help: 'Partitions this node is the primary of, and how many of them are serving.',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const v = rview();
        if (!v) return;
        this.set({ state: 'assigned' }, v.primaries);
        this.set({ state: 'serving' }, v.serving);
      },
    });
    scalar('ringkv_in_sync_replicas_min', 'The fewest in-sync copies (primary included) of any partition this node is the primary of.', () => rview()?.inSyncMin);
    scalar(
      'ringkv_copy_rate_bytes_per_second',
      'The rate this node may receive partition copies at now: limits.transferBytesPerSecond, lowered while copies queue behind other work.',
      () => rview()?.copyRate,
    );
    const peers = () => this.peers?.();
    // Per-peer figures kept by the transport, copied at each scrape (a counter's total too:
    // reset, then added once). Counters and gauges alike have reset() and inc().
    const perPeer = (name: string, help: string, pick: (s: PeerStats) => number) => ({
      name,
      help,
      labelNames: ['peer'] as const,
      registers: [this.registry],
      collect(this: Counter<'peer'> | Gauge<'peer'>) {
        const v = peers();
        if (!v) return;
        this.reset();
        for (const s of v.outbound) this.inc({ peer: s.peer }, pick(s));
      },
    });
    new Counter(perPeer('ringkv_peer_messages_sent_total', 'Protocol messages written to the stream to each peer (peer API URL).', (s) => s.messagesSent));
    new Counter(perPeer('ringkv_peer_messages_dropped_total', 'Protocol messages dropped because the queue to a peer was full (the protocol resends what matters).', (s) => s.messagesDropped));
    new Counter(perPeer('ringkv_peer_stream_opens_total', 'Message streams opened to each peer.', (s) => s.streamOpens));
    new Counter(perPeer('ringkv_peer_stream_failures_total', 'Message streams to each peer that failed to open, or were lost or replaced once open.', (s) => s.streamFailures));
    new Gauge(perPeer('ringkv_peer_stream_up', '1 while the message stream to a peer is open.', (s) => (s.streamOpen ? 1 : 0)));
    new Gauge(perPeer('ringkv_peer_queued_messages', 'Protocol messages waiting for the stream to a peer.', (s) => s.queued));
    scalar('ringkv_peer_streams_inbound', 'Message streams other nodes have open to this node.', () => peers()?.inboundStreams);
    // The store's totals are kept by the store: copied at each scrape, as the per-peer ones.
    const storeTotal = (name: string, help: string, pick: (s: StoreStats) => number) =>
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          const s = storeStats();
          if (s === undefined) return;
          this.reset();
          this.inc(pick(s));
        },
      });
    storeTotal('ringkv_store_log_appends_total', 'Fsynced appends to the write-ahead log (each carries one or more store writes).', (s) => s.logAppends);
    storeTotal('ringkv_store_log_writes_total', 'Store writes logged, one frame each (a write carries the ops of one or more event-loop turns).', (s) => s.logFrames);
    storeTotal('ringkv_store_log_bytes_total', 'Bytes appended to the write-ahead log.', (s) => s.logBytes);
    storeTotal('ringkv_store_checkpoints_total', 'Checkpoints committed: durable writes carried from memory into LMDB.', (s) => s.checkpoints);
    scalar('ringkv_store_log_segments', 'Write-ahead log segment files on disk.', () => storeStats()?.logSegments);
    scalar('ringkv_store_last_checkpoint_seconds', 'How long the latest checkpoint took to commit into LMDB (fsync included).', () => storeStats()?.lastCheckpointSeconds);
    scalar('ringkv_store_unflushed_bytes', 'Bytes of durable writes held in memory until their checkpoint commits.', () => storeStats()?.unflushedBytes);
    const view = () => this.cluster?.();
    scalar('ringkv_cluster_epoch', 'The membership config epoch this node is at.', () => view()?.epoch);
    scalar('ringkv_cluster_is_leader', '1 if this node is the Paxos leader of the membership log.', () => {
      const v = view();
      return v === undefined ? undefined : v.isLeader ? 1 : 0;
    });
    new Gauge({
      name: 'ringkv_cluster_members',
      help: 'Members of the current config, by status.',
      labelNames: ['status'],
      registers: [this.registry],
      collect() {
        const v = view();
        if (!v) return;
        for (const status of ['active', 'down', 'joining', 'leaving']) this.set({ status }, v.members.get(status) ?? 0);
      },
    });
  }
}

/** The latency histogram of one (route, method): cumulative counts per upper bound, then +Inf. */
export interface LatencySeries {
  readonly route: string;
  readonly method: string;
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * ringkv_http_request_duration_seconds, kept as plain arrays that the request path updates
 * directly (observe), and exported in Prometheus form when the registry is scraped.
 * prom-client's Histogram hashes and validates its label object on every observation,
 * which cost more per request than the rest of the metrics together.
 */
export class RequestLatency {
  readonly name = 'ringkv_http_request_duration_seconds';
  readonly help = 'Client API request latency, by route and method.';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly all: LatencySeries[] = [];

  constructor(
    registry: Registry,
    private readonly bounds: readonly number[],
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** A new series (the caller keeps it: one per route and method). */
  series(route: string, method: string): LatencySeries {
    const s: LatencySeries = { route, method, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 };
    this.all.push(s);
    return s;
  }

  observe(s: LatencySeries, seconds: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  /** The prom-client metric object (what a registry scrape formats). */
  get(): { name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] } {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const s of this.all) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += s.counts[i]!;
        values.push({ labels: { le: i < this.bounds.length ? this.bounds[i]! : '+Inf', route: s.route, method: s.method }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { route: s.route, method: s.method }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { route: s.route, method: s.method }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.all) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
