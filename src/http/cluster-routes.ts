// GET /v1/cluster, GET /v1/placement/{key}, POST /v1/cluster/members,
// DELETE /v1/cluster/members/{id}.

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Config } from '../config/schema.js';
import type { AdminResult } from '../core/node.js';
import type { ConfigChange } from '../core/membership.js';
import { NODE_ID_PATTERN, partitionId, type NodeId } from '../core/types.js';
import type { Ring } from '../core/ring.js';
import type { ClusterConfig } from '../core/membership.js';
import type { LearnProgress } from '../core/replication.js';
import { primaryFor } from '../runtime/cluster-kv.js';
import { ApiError } from './errors.js';
import { parseKeyAt } from './kv-routes.js';

/** What the cluster routes need from the node's driver (KvDriver). */
export interface ClusterDriver {
  config(): ClusterConfig;
  ring(): Ring;
  leader(): NodeId | null;
  heartbeatAgeMs(id: NodeId): number | null;
  propose(change: ConfigChange): Promise<AdminResult>;
  moveProgress(): Map<NodeId, LearnProgress | null>;
  repair(timeoutMs: number): Promise<{ partitions: number; done: number; repaired: number }>;
}

/** POST /v1/cluster/repair answers by then even if some partition has not finished its pass. */
const REPAIR_TIMEOUT_MS = 120_000;

export interface ClusterRoutesOptions {
  readonly config: Config;
  readonly self: NodeId;
  readonly driver: ClusterDriver;
}

const url = z
  .string()
  .max(512)
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL')
  .transform((s) => s.replace(/\/$/, ''));

const addMemberBody = z.strictObject({
  id: z.string().regex(NODE_ID_PATTERN, 'must match [a-z0-9-]{1,32}'),
  peer: url,
  client: url,
});

export async function clusterRoutes(app: FastifyInstance, opts: ClusterRoutesOptions): Promise<void> {
  const { driver, config } = opts;

  app.get('/v1/cluster', async () => clusterView(opts));

  app.get('/v1/placement/*', async (req) => {
    const key = parseKeyAt(req, '/v1/placement/'.length, config.limits.keyBytesMax);
    const { partition, primary } = primaryFor(driver, key);
    const cfg = driver.config();
    const active = new Set(cfg.members.filter((m) => m.status === 'active').map((m) => m.id));
    return {
      key,
      partition,
      primary: primary ?? null,
      replicas: driver.ring().preference(partition).filter((id) => id !== primary && active.has(id)),
      preference: driver.ring().preference(partition),
      epoch: cfg.epoch,
    };
  });

  // Admin changes take a JSON body; the client API otherwise treats bodies as raw bytes.
  app.post('/v1/cluster/members', async (req, reply) => {
    let body: unknown;
    try {
      body = JSON.parse((req.body as Buffer | undefined)?.toString('utf8') ?? '');
    } catch {
      throw new ApiError('invalid_body', 'the body must be JSON: {"id": "n4", "peer": "http://...", "client": "http://..."}');
    }
    const parsed = addMemberBody.safeParse(body);
    if (!parsed.success) {
      const i = parsed.error.issues[0]!;
      throw new ApiError('invalid_body', `${i.path.join('.') || 'body'}: ${i.message}`);
    }
    const m = parsed.data;
    const change: ConfigChange = { kind: 'add', member: { id: m.id as NodeId, peerUrl: m.peer, clientUrl: m.client } };
    return answer(await driver.propose(change), reply);
  });

  // Anti-entropy now, on the partitions this node leads (`ringkv repair` asks every member).
  app.post('/v1/cluster/repair', async () => {
    const r = await driver.repair(REPAIR_TIMEOUT_MS);
    return { node: opts.self, partitions: r.partitions, compared: r.done, repaired: r.repaired, complete: r.done === r.partitions };
  });

  // Removing an owner is a decommission: its partitions move to the other members first,
  // and the leader removes it once they hold them. An incoming member (an add that has not
  // finished) owns nothing and is removed at once.
  app.delete<{ Params: { id: string } }>('/v1/cluster/members/:id', async (req, reply) => {
    const id = req.params.id;
    if (!NODE_ID_PATTERN.test(id)) throw new ApiError('invalid_parameter', 'member id must match [a-z0-9-]{1,32}');
    const m = driver.config().members.find((x) => x.id === id);
    if (m === undefined) throw new ApiError('conflict', `${id} is not a member of epoch ${driver.config().epoch}`);
    if (m.placement === 'outgoing') throw new ApiError('conflict', `${id} is already being decommissioned; its removal follows once its partitions have moved`);
    return answer(await driver.propose(m.placement === 'incoming' ? { kind: 'remove', id: m.id } : { kind: 'decommission', id: m.id }), reply);
  });
}

function answer(r: AdminResult, reply: import('fastify').FastifyReply) {
  switch (r.status) {
    case 'committed':
      return reply.code(200).send({ status: 'committed', epoch: r.epoch });
    case 'rejected':
      throw new ApiError('conflict', r.error);
    case 'unavailable':
      throw new ApiError(
        r.reason === 'timeout' ? 'timeout' : 'unavailable',
        r.reason === 'timeout'
          ? 'the change was not decided in time; it may still take effect (check GET /v1/cluster)'
          : `cannot change membership now: ${r.reason === 'no-quorum' ? 'no quorum of members is reachable' : r.reason}`,
        1,
      );
  }
}

/** When this process first saw the move of a member (for the ETA of /v1/cluster). */
const moveSeen = new Map<string, { at: number; confirmed: number }>();

function moveView(cfg: ClusterConfig, driver: ClusterDriver, partitionsMoving: number) {
  const m = cfg.members.find((x) => x.placement !== 'owner');
  if (m === undefined) return null;
  const learners = [...driver.moveProgress()].map(([id, p]) => ({ id, ...(p ?? { partitions: 0, confirmed: 0, keys: 0, bytes: 0 }), reported: p !== null }));
  const total = learners.reduce((a, l) => a + l.partitions, 0);
  const confirmed = learners.reduce((a, l) => a + l.confirmed, 0);
  const key = `${m.id}/${m.placement}`;
  const now = performance.now();
  const seen = moveSeen.get(key) ?? { at: now, confirmed };
  moveSeen.set(key, seen);
  const rate = (confirmed - seen.confirmed) / ((now - seen.at) / 1000);
  return {
    member: m.id,
    kind: m.placement === 'incoming' ? ('add' as const) : ('decommission' as const),
    partitionsMoving,
    partitionCopies: total,
    partitionCopiesConfirmed: confirmed,
    keysCopied: learners.reduce((a, l) => a + l.keys, 0),
    bytesCopied: learners.reduce((a, l) => a + l.bytes, 0),
    /** Estimated from the confirmation rate this node has seen; null until it has one. */
    etaSeconds: rate > 0 && total >= confirmed ? Math.round((total - confirmed) / rate) : null,
    learners,
  };
}

export function clusterView(opts: ClusterRoutesOptions) {
  const { driver, config, self } = opts;
  const cfg = driver.config();
  const ring = driver.ring();
  let partitionsMoving = 0;
  const partitions = Array.from({ length: cfg.partitions }, (_, p) => {
    const pref = ring.preference(partitionId(p));
    const primary = ring.primaryOf(partitionId(p)) ?? null;
    const learners = ring.learners(partitionId(p));
    if (learners.length > 0) partitionsMoving++;
    return { partition: p, primary, preference: pref, learners };
  });
  const primaries = new Map<string, number>();
  for (const p of partitions) if (p.primary) primaries.set(p.primary, (primaries.get(p.primary) ?? 0) + 1);
  return {
    cluster: config.cluster.name,
    self,
    epoch: cfg.epoch,
    leader: driver.leader(),
    replicationFactor: cfg.replicationFactor,
    minInSync: cfg.minInSync,
    partitionCount: cfg.partitions,
    vnodesPerNode: cfg.vnodesPerNode,
    ringChecksum: ring.checksum,
    members: cfg.members.map((m) => ({
      id: m.id,
      peerUrl: m.peerUrl,
      clientUrl: m.clientUrl,
      status: m.status,
      placement: m.placement,
      heartbeatAgeMs: m.id === self ? 0 : driver.heartbeatAgeMs(m.id),
      primaryPartitions: primaries.get(m.id) ?? 0,
    })),
    move: moveView(cfg, driver, partitionsMoving),
    partitions,
  };
}
