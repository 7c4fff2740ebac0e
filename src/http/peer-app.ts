// The peer API server (its own port). Every call is authenticated with the cluster secret
// and the cluster name; the auth hook is registered only here, never on the client API.
// Bad input from a peer gets a 4xx, is logged once per (peer, reason), and changes nothing.

import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Config } from '../config/schema.js';
import { partitionId, type PartitionId } from '../core/types.js';
import type { LogEntry, Message } from '../core/node.js';
import { LogOnce, PeerAuthenticator } from '../net/peer-auth.js';
import { Unpackr } from 'msgpackr';
import { MESSAGES_PATH, MSGPACK_CONTENT_TYPE } from '../net/peer-transport.js';
import { servePeerStreams } from '../net/peer-stream.js';
import { batchSchema, parseMessage } from '../net/wire.js';
import { parseRepMessage } from '../net/rep-wire.js';
import { DecodedBatch } from '../net/batch-codec.js';
import type { RepMessage } from '../core/replication.js';
import type { KvService, ListResult } from '../runtime/kv-service.js';
import { ApiError } from './errors.js';
import { kvRoutes } from './kv-routes.js';
import { sendError } from './client-app.js';

export const LIST_PATH = '/peer/v1/list';
/** GET: the latest decided config entry; how a node started with cluster.join learns the cluster. */
export const CONFIG_PATH = '/peer/v1/config';

export const listRequestSchema = z.strictObject({
  prefix: z.string().max(4096),
  after: z.string().max(4096),
  limit: z.number().int().min(1).max(100_000),
  partitions: z.array(z.number().int().min(0).max(1 << 21)).max(1 << 16),
});

/** Reads MessagePack batches as plain objects (a `__proto__` key is renamed, never assigned). */
const peerUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export interface PeerAppDeps {
  readonly config: Config;
  readonly secret: string | null;
  readonly logger: Logger;
  readonly deliver: (msg: Message | RepMessage) => void;
  /** Serves forwarded key requests; refuses (421) keys this node is not primary for. */
  readonly primaryKv: KvService;
  /** Lists the given partitions; refuses (421) any this node is not primary for. */
  readonly listPartitions: (partitions: readonly PartitionId[], prefix: string, after: string, limit: number) => ListResult;
  /** The latest decided config log entry. */
  readonly latestConfig: () => LogEntry;
}

/** The peer API, and how many message streams other nodes have open to it. */
export type PeerApp = FastifyInstance & { readonly inboundStreams: () => number };

export function buildPeerApp(deps: PeerAppDeps): PeerApp {
  const { config, logger } = deps;
  // Replication batches carry values (base64 in JSON): room for a copy chunk of large values.
  const bodyLimit = Math.max(config.limits.valueBytesMax * 2 * 64, 16 * 1024 * 1024);
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request (client-app.ts says why).
    childLoggerFactory: (logger) => logger,
    bodyLimit,
    routerOptions: { maxParamLength: config.limits.keyBytesMax * 3 + 64 },
    forceCloseConnections: true,
    frameworkErrors: (err, _req, reply) => {
      sendError(new ApiError('invalid_request', err.message), reply);
    },
  });
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.addContentTypeParser(MSGPACK_CONTENT_TYPE, { parseAs: 'buffer' }, (_req, body, done) => {
    try {
      done(null, peerUnpackr.unpack(body as Buffer));
    } catch (e) {
      done(new ApiError('invalid_request', `malformed MessagePack body: ${(e as Error).message}`), undefined);
    }
  });

  const auth = new PeerAuthenticator(deps.secret, config.cluster.name);
  const once = new LogOnce();
  const complainAbout = (who: string, reason: string, extra: Record<string, unknown> = {}): void => {
    if (once.first(`${who}|${reason}`)) logger.warn({ peer: who, reason, ...extra }, 'refused peer request (logged once per peer and reason)');
  };
  const complain = (req: FastifyRequest, reason: string, extra: Record<string, unknown> = {}): void =>
    complainAbout(`${req.ip} ${String(req.headers['x-ringkv-from'] ?? '?')}`, reason, extra);

  /**
   * Checks a batch of protocol messages (a POST body or a stream frame) and delivers it:
   * all of it, or, when any message is malformed, none of it. `sender` is the node a
   * stream was opened by (a POST names its sender only in the batch).
   */
  const acceptBatch = (body: unknown, sender: string | null, complainAs: (reason: string, extra?: Record<string, unknown>) => void): ApiError | null => {
    // A stream frame's batch was shaped by its decoder (the schema's rules); a POST body is checked here.
    const batch = body instanceof DecodedBatch ? { success: true as const, data: body } : batchSchema.safeParse(body);
    if (!batch.success) {
      complainAs('malformed message batch');
      return new ApiError('invalid_request', `malformed message batch: ${batch.error.issues[0]?.message ?? ''}`);
    }
    if (sender !== null && batch.data.from !== sender) {
      complainAs('batch sender differs from stream sender');
      return new ApiError('invalid_request', `batch from ${batch.data.from} on the stream of ${sender}`);
    }
    const msgs: (Message | RepMessage)[] = [];
    for (const raw of batch.data.messages) {
      const isRep = typeof raw === 'object' && raw !== null && typeof (raw as { type?: unknown }).type === 'string' && (raw as { type: string }).type.startsWith('rep-');
      const m = isRep ? parseRepMessage(raw) : parseMessage(raw);
      if (!m.ok) {
        complainAs('malformed message', { error: m.error });
        return new ApiError('invalid_request', `malformed message: ${m.error}`);
      }
      if (m.msg.from !== batch.data.from) {
        complainAs('message sender differs from batch sender');
        return new ApiError('invalid_request', 'message sender differs from batch sender');
      }
      if (m.msg.clusterName !== config.cluster.name) {
        complainAs('message for another cluster');
        return new ApiError('forbidden', `message for cluster ${JSON.stringify(m.msg.clusterName)}`);
      }
      msgs.push(m.msg);
    }
    for (const m of msgs) deps.deliver(m);
    return null;
  };

  app.addHook('onRequest', async (req, reply) => {
    const r = auth.check(req.headers);
    if (!r.ok) {
      complain(req, r.reason);
      return sendError(new ApiError(r.code, r.reason), reply);
    }
  });

  app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, req, reply) => {
    if (err instanceof ApiError) return sendError(err, reply);
    if (err.statusCode !== undefined && err.statusCode < 500) {
      complain(req, err.code ?? err.message);
      return sendError(new ApiError('invalid_request', err.message), reply);
    }
    logger.error({ err, url: req.url }, 'peer request failed');
    return sendError(new ApiError('internal', 'internal error'), reply);
  });

  app.post(MESSAGES_PATH, async (req, reply) => {
    const err = acceptBatch(req.body, null, (reason, extra) => complain(req, reason, extra));
    if (err !== null) throw err;
    return reply.code(204).send();
  });

  // GET /peer/v1/stream with `Upgrade: ringkv-peer/2`: the long-lived message stream that
  // other nodes send protocol messages on (net/peer-stream.ts).
  const streams = servePeerStreams(app.server, {
    auth,
    frameBytesMax: bodyLimit,
    logger,
    complain: complainAbout,
    onBatch: (from, batch) => acceptBatch(batch, from, (reason, extra) => complainAbout(`stream ${from}`, reason, extra)),
  });
  // Upgraded sockets are not the HTTP server's any more: close them before it waits for them.
  app.addHook('preClose', (done) => {
    streams.close();
    done();
  });

  app.post(LIST_PATH, async (req) => {
    const q = listRequestSchema.safeParse(req.body);
    if (!q.success) throw new ApiError('invalid_request', `malformed list request: ${q.error.issues[0]?.message ?? ''}`);
    return deps.listPartitions(q.data.partitions.map(partitionId), q.data.prefix, q.data.after, q.data.limit);
  });

  app.get(CONFIG_PATH, async () => ({ entry: deps.latestConfig() }));

  app.register(kvRoutes, { kv: deps.primaryKv, config, urlPrefix: '/peer' });
  app.setNotFoundHandler((req, reply) => sendError(new ApiError('route_not_found', `no peer route ${req.method} ${req.url}`), reply));
  return Object.assign(app, { inboundStreams: () => streams.open() });
}
