// One ringkv node: store, membership (Paxos + heartbeats), routing, the client API and
// the peer API. This is the thin shell: it owns sockets, disk and timers; the protocol
// decisions are made in src/core.

import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.js';
import { splitHostPort } from '../config/load.js';
import type { NewMember } from '../core/membership.js';
import { nodeId as toNodeId, type NodeId } from '../core/types.js';
import { loadTokens } from '../http/auth.js';
import { buildClientApp } from '../http/client-app.js';
import { clusterRoutes, clusterView } from '../http/cluster-routes.js';
import { Metrics } from '../http/metrics.js';
import { buildPeerApp, type PeerApp } from '../http/peer-app.js';
import { PeerTransport } from '../net/peer-transport.js';
import { lockDataDir } from '../store/dir-lock.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { partitionId } from '../core/types.js';
import { ClusterKv, PrimaryGuard } from './cluster-kv.js';
import { ClusterEvents } from './events.js';
import { waitUntilAdded } from './join.js';
import { KvDriver } from './kv-driver.js';
import { loadMembershipState, membershipWriteOps } from './membership-state.js';
import { LocalKv } from './local-kv.js';
import { ReplicatedKv } from './replicated-kv.js';

export interface RunningNode {
  readonly id: string;
  readonly clientApp: FastifyInstance;
  readonly peerApp: PeerApp;
  readonly store: Store;
  readonly driver: KvDriver;
  /** The bound client address (port resolved when 0 was asked for). */
  readonly clientAddress: { host: string; port: number };
  /** Stops taking requests, drains the ones in flight, closes the store. Idempotent. */
  close(): Promise<void>;
}

/** The members of epoch 1. Without initialMembers a node is a cluster of one. */
function bootstrapMembers(loaded: LoadedConfig): NewMember[] {
  const { config, advertise } = loaded;
  if (config.cluster.initialMembers.length === 0) {
    return [{ id: toNodeId(config.node.id), peerUrl: advertise.peer, clientUrl: advertise.client }];
  }
  return config.cluster.initialMembers.map((m) => ({ id: toNodeId(m.id), peerUrl: m.peer, clientUrl: m.client }));
}

export async function startNode(loaded: LoadedConfig, logger: Logger): Promise<RunningNode> {
  const { config } = loaded;
  const id: NodeId = toNodeId(config.node.id);
  const joining = config.cluster.join !== null;
  const members = bootstrapMembers(loaded);
  // A cluster of fewer nodes than the replication factor stores fewer copies; say so.
  const replicationFactor = Math.min(config.cluster.replicationFactor, members.length);
  const minInSync = Math.min(config.cluster.minInSync, replicationFactor);
  if (!joining && (replicationFactor < config.cluster.replicationFactor || minInSync < config.cluster.minInSync)) {
    logger.warn(
      { members: members.length, replicationFactor, minInSync },
      'fewer initial members than cluster.replicationFactor: replication factor and minInSync are capped',
    );
  }

  const unlock = config.storage.engine === 'lmdb' ? lockDataDir(config.node.dataDir) : () => undefined;
  let store: Store;
  try {
    store = openStore(config, (err) => {
      // As for a write that cannot persist (KvDriver): state that cannot reach the disk must never be acted on.
      logger.fatal({ err }, 'the store cannot checkpoint into LMDB; stopping (acknowledged writes replay from the write-ahead log at the next start)');
      process.exit(70);
    });
  } catch (e) {
    unlock();
    throw e;
  }
  if (store.recovery !== undefined && store.recovery.frames > 0) {
    const r = store.recovery;
    logger.info({ frames: r.frames, ops: r.ops, ms: r.ms }, 'store recovered: replayed the write-ahead log written since the last checkpoint (the node was not stopped cleanly)');
  }
  if (joining && loadMembershipState(store).log.length === 0) {
    // First start of an added node: its first config comes from the cluster (join.ts).
    try {
      const entry = await waitUntilAdded({ join: config.cluster.join!, self: id, advertise: loaded.advertise, secret: loaded.secret, clusterName: config.cluster.name, logger });
      await store.write(membershipWriteOps({ kind: 'config', entry }));
    } catch (e) {
      await store.close();
      unlock();
      throw e;
    }
  }
  let stopping = false;
  let fatal = false;
  const transport = new PeerTransport(loaded.secret, config.cluster.name, id, logger, config.timing.requestTimeoutMs);
  const metrics = new Metrics(id, () => store.countKeys(), () => store.stats?.());
  const driver = new KvDriver({
    id,
    clusterName: config.cluster.name,
    initialMembers: members,
    cluster: { replicationFactor, minInSync, partitions: config.cluster.partitions, vnodesPerNode: config.cluster.vnodesPerNode },
    heartbeatMs: config.timing.heartbeatMs,
    suspectAfterMs: config.timing.suspectAfterMs,
    leaseMs: config.timing.leaseMs,
    transferBytesPerSecond: config.limits.transferBytesPerSecond,
    transferTargetDelayMs: config.limits.transferTargetDelayMs,
    antiEntropyIntervalMs: config.timing.antiEntropyIntervalMs,
    tombstoneGraceMs: config.timing.tombstoneGraceMs,
    store,
    transport,
    logger,
    onRepEvent: (e, info) => {
      if (e.type === 'version-conflict') metrics.versionConflicts.inc();
      else if (e.type === 'lease-expired') metrics.leaseExpiries.inc({ peer: e.peer });
      else if (e.type === 'repaired') metrics.repairs.inc({ where: e.where }, e.count);
      else if (e.type === 'ae-done') metrics.antiEntropyPasses.inc();
      else if (e.type === 'tombstones-purged') metrics.tombstonesPurged.inc(e.count);
      else if (e.type === 'serving') {
        metrics.takeovers.inc();
        if (info.failover) metrics.failovers.inc();
        if (info.failoverMs !== null) metrics.failoverSeconds.observe(info.failoverMs / 1000);
      }
    },
  });
  // LocalKv only lists partitions now (reads the durable store); writes go through replication.
  const local = new LocalKv(store, id, driver.config().partitions, (e) => {
    if (fatal) return;
    fatal = true;
    logger.fatal({ err: e }, 'storage write failed; stopping so that no acknowledgement is given for data not on disk');
    process.exitCode = 70;
    void close();
  });
  const lister = new ClusterKv(id, driver, local, transport, config.timing.requestTimeoutMs, logger);
  const kv = new ReplicatedKv(id, driver, lister, transport, config.timing.requestTimeoutMs, config.timing.leaseMs, logger, true);
  const primaryKv = new ReplicatedKv(id, driver, null, transport, config.timing.requestTimeoutMs, config.timing.leaseMs, logger, false);
  const guard = new PrimaryGuard(id, driver, local);
  metrics.replication = () => {
    const cfg = driver.config();
    const ring = driver.ring();
    const active = new Set(cfg.members.filter((m) => m.status === 'active').map((m) => m.id));
    let primaries = 0;
    let serving = 0;
    let inSyncMin = Infinity;
    for (let p = 0; p < cfg.partitions; p++) {
      if (ring.primaryOf(partitionId(p)) !== id) continue;
      primaries++;
      if (driver.canServe(p)) serving++;
      inSyncMin = Math.min(inSyncMin, ring.preference(partitionId(p)).filter((m) => active.has(m)).length);
    }
    return { primaries, serving, inSyncMin: primaries === 0 ? 0 : inSyncMin, lag: driver.replicationLag(), copyRate: driver.pacer.bytesPerS() };
  };
  // Ready once every partition this node leads has served once since the start (a
  // restarted primary first re-runs takeover and waits out the leases).
  let warmedUp = false;
  const unservedPartitions = (): number => {
    const ring = driver.ring();
    let n = 0;
    for (let p = 0; p < driver.config().partitions; p++) if (ring.primaryOf(partitionId(p)) === id && !driver.canServe(p)) n++;
    return n;
  };
  metrics.cluster = () => {
    const cfg = driver.config();
    const members = new Map<string, number>();
    for (const m of cfg.members) members.set(m.status, (members.get(m.status) ?? 0) + 1);
    return { epoch: cfg.epoch, isLeader: driver.leader() === id, members };
  };
  const tokens = config.auth.clientTokensFile === null ? null : loadTokens(config.auth.clientTokensFile);
  // GET /v1/events: fed with every config the driver learns.
  const events = new ClusterEvents(id, driver, () => clusterView({ config, self: id, driver }));
  driver.on('config', () => events.configChanged());

  const peerApp = buildPeerApp({
    config,
    secret: loaded.secret,
    logger,
    deliver: (msg) => driver.deliver(msg),
    primaryKv,
    listPartitions: (ps, prefix, after, limit) => guard.listPartitions(ps, prefix, after, limit),
    latestConfig: () => driver.latestEntry(),
  });
  metrics.peers = () => ({ outbound: transport.stats(), inboundStreams: peerApp.inboundStreams() });
  const clientApp = buildClientApp({
    config,
    nodeId: id,
    kv,
    metrics,
    logger,
    tokens,
    notReadyReason: () => {
      if (stopping) return 'shutting down';
      if (!driver.config().members.some((m) => m.id === id)) return `not a member of epoch ${driver.config().epoch}`;
      if (!warmedUp) {
        const n = unservedPartitions();
        if (n > 0) return `taking over ${n} partitions`;
        warmedUp = true;
      }
      return null;
    },
    extraRoutes: (app) => app.register(clusterRoutes, { config, self: id, driver }),
    events,
  });

  const peerAddr = splitHostPort(config.listen.peer);
  const { host, port } = splitHostPort(config.listen.client);
  try {
    await peerApp.listen({ host: peerAddr.host, port: peerAddr.port });
    driver.start();
    await clientApp.listen({ host, port });
  } catch (e) {
    await driver.stop();
    await peerApp.close();
    await transport.close();
    await store.close();
    unlock();
    throw e;
  }
  if (!joining && members.length === 1) {
    // A cluster of one: its takeover only waits out its own lease; be ready when this returns.
    const deadline = Date.now() + 2 * config.timing.leaseMs + 1000;
    while (unservedPartitions() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  }
  const bound = clientApp.server.address();
  const clientAddress = typeof bound === 'object' && bound !== null ? { host: bound.address, port: bound.port } : { host, port };
  const cfg = driver.config();
  logger.info(
    {
      client: `${clientAddress.host}:${clientAddress.port}`,
      peer: config.listen.peer,
      engine: store.engine,
      dataDir: config.node.dataDir,
      epoch: cfg.epoch,
      members: cfg.members.map((m) => m.id),
    },
    'ringkv node serving',
  );

  let closing: Promise<void> | null = null;
  function close(): Promise<void> {
    closing ??= (async () => {
      stopping = true;
      logger.info('draining in-flight requests');
      await clientApp.close();
      await driver.stop();
      await peerApp.close();
      await transport.close();
      await store.close();
      unlock();
      logger.info('stopped cleanly');
    })();
    return closing;
  }
  return { id, clientApp, peerApp, store, driver, clientAddress, close };
}
