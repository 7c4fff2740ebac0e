// The node configuration: one YAML file per node, every field overridable from the
// environment (see load.ts). Every field has a default and a one-line reason. The shape
// is part of the public contract (docs/configuration.md); fields may be added, never
// renamed.

import { z } from 'zod';
import { NODE_ID_PATTERN } from '../core/types.js';

const nodeIdSchema = z
  .string()
  .regex(NODE_ID_PATTERN, 'must match [a-z0-9-]{1,32}');

/** host:port, where host may be a name, an IPv4 address or a bracketed IPv6 address. */
const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port, e.g. 0.0.0.0:7379')
  .refine((s) => {
    const port = Number(s.slice(s.lastIndexOf(':') + 1));
    return port >= 0 && port <= 65535;
  }, 'port must be 0..65535');

const httpUrl = z
  .string()
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.pathname === '/' && !u.search;
    } catch {
      return false;
    }
  }, 'must be an http(s) URL with no path, e.g. http://n1:7380')
  .transform((s) => s.replace(/\/$/, ''));

const memberSchema = z.strictObject({
  id: nodeIdSchema,
  peer: httpUrl,
  client: httpUrl,
});

export const configSchema = z
  .strictObject({
    node: z
      .strictObject({
        id: nodeIdSchema.default('n1'), // unique within the cluster
        dataDir: z.string().min(1).default('./data/n1'), // holds the store; one node per directory
      })
      .prefault({}),
    listen: z
      .strictObject({
        client: listenAddress.default('127.0.0.1:7379'), // client API (kv, cluster, metrics)
        peer: listenAddress.default('127.0.0.1:7380'), // peer API (Paxos, heartbeats, replication)
      })
      .prefault({}),
    advertise: z
      .strictObject({
        client: httpUrl.optional(), // how clients/other nodes reach the client API; default derived from listen
        peer: httpUrl.optional(), // how other nodes reach the peer API; default derived from listen
      })
      .prefault({}),
    cluster: z
      .strictObject({
        name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 of [A-Za-z0-9._-]').default('ringkv'), // peers with another name are refused
        secretFile: z.string().min(1).nullable().default(null), // file holding the peer secret; or env RINGKV_CLUSTER_SECRET
        initialMembers: z.array(memberSchema).default([]), // same list on every node; empty = a single-node cluster of this node
        join: httpUrl.nullable().default(null), // peer URL of a live member, for a node added later
        replicationFactor: z.number().int().min(1).max(7).default(3), // copies of each partition
        minInSync: z.number().int().min(1).max(7).default(2), // copies that must hold a write before it is acknowledged
        partitions: z.number().int().min(1).max(4096).default(128), // fixed for the life of the cluster
        vnodesPerNode: z.number().int().min(1).max(1024).default(64), // ring tokens per member
      })
      .prefault({}),
    timing: z
      .strictObject({
        heartbeatMs: z.number().int().min(10).max(60_000).default(200), // heartbeat period
        suspectAfterMs: z.number().int().min(50).max(600_000).default(1000), // silence before a peer is suspected
        leaseMs: z.number().int().min(20).max(600_000).default(800), // primary lease; heartbeatMs < leaseMs < suspectAfterMs
        requestTimeoutMs: z.number().int().min(50).max(600_000).default(5000), // forwarded and admin requests give up after this
        antiEntropyIntervalMs: z.number().int().min(0).max(7 * 24 * 3600_000).default(600_000), // each primary compares its partitions with its replicas this often; 0 = only on `ringkv repair`
        tombstoneGraceMs: z.number().int().min(1000).max(365 * 24 * 3600_000).default(86_400_000), // a delete's tombstone is kept this long, then collected; >= 2 x antiEntropyIntervalMs
      })
      .prefault({}),
    storage: z
      .strictObject({
        engine: z.enum(['lmdb', 'memory']).default('lmdb'), // memory is for tests only: it forgets everything on exit
        fsync: z.boolean().default(true), // sync the write-ahead log per append and LMDB per checkpoint; false trades durability on power loss for speed
        mapSizeBytes: z.number().int().min(1 << 20).default(8 * 1024 ** 3), // lmdb address-space reservation (not disk usage)
      })
      .prefault({}),
    limits: z
      .strictObject({
        keyBytesMax: z.number().int().min(1).max(1024).default(512), // UTF-8 bytes of a key
        valueBytesMax: z.number().int().min(0).max(64 * 1024 ** 2).default(1024 * 1024), // bytes of a value (request body)
        headerBytesMax: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024), // total request header bytes
        listLimitMax: z.number().int().min(1).max(100_000).default(1000), // largest page of GET /v1/kv
        inflightRequestsMax: z.number().int().min(1).max(1_000_000).default(10_000), // client requests in progress before 503
        transferBytesPerSecond: z.number().int().min(1024).default(32 * 1024 ** 2), // ceiling of value bytes/s a node receives in partition copies while catching up or rebalancing
        transferTargetDelayMs: z.number().int().min(0).max(10_000).default(2), // queueing delay copies may add before they slow down (0 = always the ceiling)
        eventStreamsMax: z.number().int().min(0).max(10_000).default(32), // open GET /v1/events streams before 503
        heapGrowingPercent: z.number().int().min(0).max(1000).default(30), // V8 runs a full GC once its heap grows this far (%) past the live data; 0 = V8's adaptive default (up to 4x)
      })
      .prefault({}),
    auth: z
      .strictObject({
        clientTokensFile: z.string().min(1).nullable().default(null), // YAML list of {token, scope: read|write|admin}; null = open client API
      })
      .prefault({}),
    log: z
      .strictObject({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'), // pino level
        format: z.enum(['json', 'pretty']).default('json'), // pretty is for humans at a terminal
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    const t = c.timing;
    if (!(t.heartbeatMs < t.leaseMs)) {
      ctx.addIssue({ code: 'custom', path: ['timing', 'leaseMs'], message: `must be greater than timing.heartbeatMs (${t.heartbeatMs})` });
    }
    if (!(t.leaseMs < t.suspectAfterMs)) {
      ctx.addIssue({ code: 'custom', path: ['timing', 'leaseMs'], message: `must be less than timing.suspectAfterMs (${t.suspectAfterMs})` });
    }
    // Every tombstone must live through a whole anti-entropy pass on every replica, or a
    // replica that missed the delete could hand the old value back to the primary.
    if (t.antiEntropyIntervalMs > 0 && t.tombstoneGraceMs < 2 * t.antiEntropyIntervalMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['timing', 'tombstoneGraceMs'],
        message: `must be at least 2 x timing.antiEntropyIntervalMs (${2 * t.antiEntropyIntervalMs}) when anti-entropy runs periodically`,
      });
    }
    const cl = c.cluster;
    if (cl.minInSync > cl.replicationFactor) {
      ctx.addIssue({ code: 'custom', path: ['cluster', 'minInSync'], message: `must be at most cluster.replicationFactor (${cl.replicationFactor})` });
    }
    const ids = new Set<string>();
    cl.initialMembers.forEach((m, i) => {
      if (ids.has(m.id)) ctx.addIssue({ code: 'custom', path: ['cluster', 'initialMembers', i, 'id'], message: `duplicate member id ${m.id}` });
      ids.add(m.id);
    });
    if (cl.initialMembers.length > 0 && cl.join === null && !ids.has(c.node.id)) {
      ctx.addIssue({ code: 'custom', path: ['cluster', 'initialMembers'], message: `must include this node (node.id = ${c.node.id}) unless cluster.join is set` });
    }
    if (cl.initialMembers.length > 0 && cl.join !== null) {
      ctx.addIssue({ code: 'custom', path: ['cluster', 'join'], message: 'set either cluster.initialMembers (bootstrap) or cluster.join (added later), not both' });
    }
    if (c.listen.client === c.listen.peer && !c.listen.client.endsWith(':0')) {
      ctx.addIssue({ code: 'custom', path: ['listen', 'peer'], message: 'must differ from listen.client' });
    }
  });

export type Config = z.infer<typeof configSchema>;
export type MemberSeed = z.infer<typeof memberSchema>;
