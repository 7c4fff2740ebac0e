// The client API server: fastify with the kv, ops (health/metrics) and, later, cluster
// route plugins. Everything that can be checked before work starts (limits, headers,
// query parameters, auth) is checked here, at the edge.

import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { ClusterEvents } from '../runtime/events.js';
import type { KvService } from '../runtime/kv-service.js';
import { ApiError } from './errors.js';
import { eventsRoutes } from './events-routes.js';
import { kvRoutes } from './kv-routes.js';
import type { LatencySeries, Metrics } from './metrics.js';
import { opsRoutes } from './ops-routes.js';
import { uiRoutes } from './ui-routes.js';
import type { TokenTable } from './auth.js';
import { authHook } from './auth.js';

export interface ClientAppDeps {
  readonly config: Config;
  readonly nodeId: string;
  readonly kv: KvService;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly tokens: TokenTable | null;
  /** Readiness: null when ready, else the reason. */
  readonly notReadyReason: () => string | null;
  /** Registers further route plugins (cluster, placement) on the same app. */
  readonly extraRoutes?: (app: FastifyInstance) => void;
  /** The cluster events behind GET /v1/events (absent: no such route). */
  readonly events?: ClusterEvents;
}

export function buildClientApp(deps: ClientAppDeps): FastifyInstance {
  const { config } = deps;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // Per-request log lines cost more than the request at high rates; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: building one (its bindings serialised to a string) cost
    // more than a GET. Nothing logs through request.log; errors are logged with the URL.
    childLoggerFactory: (logger) => logger,
    bodyLimit: config.limits.valueBytesMax,
    // Keys are matched by a wildcard; a percent-encoded key may be 3x its byte length.
    routerOptions: { maxParamLength: config.limits.keyBytesMax * 3 + 64 },
    http: { maxHeaderSize: config.limits.headerBytesMax },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // The router rejects a URL that is not valid percent-encoding before any hook runs.
    frameworkErrors: (err, req, reply) => {
      sendError(toApiError(err, config, deps.logger, req), reply);
    },
  });

  // Values are raw bytes whatever the Content-Type; nothing is parsed as JSON or forms.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  // Callback-style hooks: an async hook costs a promise and a microtask per request.
  let inflight = 0;
  const leave = (): void => {
    inflight--;
  };
  const counts = new RequestCounts(deps.metrics);
  app.addHook('onRequest', (_req, reply, done) => {
    // 'close' comes once per response, also when the client leaves first (onResponse does not).
    reply.raw.on('close', leave);
    if (++inflight > config.limits.inflightRequestsMax) {
      done(new ApiError('unavailable', `more than ${config.limits.inflightRequestsMax} requests in progress`, 1));
      return;
    }
    done();
  });
  if (deps.tokens !== null) app.addHook('onRequest', authHook(deps.tokens));
  app.addHook('onResponse', (req, reply, done) => {
    counts.add(req.routeOptions.url ?? 'unmatched', req.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  app.setErrorHandler((err: FastifyError | ApiError, req, reply) => sendError(toApiError(err, config, deps.logger, req), reply));
  app.setNotFoundHandler((req, reply) =>
    sendError(new ApiError('route_not_found', `no route ${req.method} ${req.url.split('?')[0]}`), reply),
  );

  app.register(opsRoutes, { metrics: deps.metrics, notReadyReason: deps.notReadyReason, beforeScrape: () => counts.flush() });
  app.register(kvRoutes, { kv: deps.kv, config });
  deps.extraRoutes?.(app);
  if (deps.events) app.register(eventsRoutes, { events: deps.events, metrics: deps.metrics, flushCounts: () => counts.flush(), streamsMax: config.limits.eventStreamsMax });
  app.register(uiRoutes);
  return app;
}

/**
 * Request counts by (route, method, code) and latencies by (route, method), kept in plain
 * maps on the hot path (label hashing per request costs more than the count itself): the
 * counts are added to the prom-client counter when /metrics is scraped, the latencies go
 * straight into their series (metrics.ts RequestLatency).
 */
class RequestCounts {
  private readonly byRoute = new Map<string, Map<string, { readonly codes: Map<number, number>; readonly latency: LatencySeries }>>();
  constructor(private readonly metrics: Metrics) {}

  add(route: string, method: string, status: number, seconds: number): void {
    let byMethod = this.byRoute.get(route);
    if (byMethod === undefined) this.byRoute.set(route, (byMethod = new Map()));
    let e = byMethod.get(method);
    if (e === undefined) byMethod.set(method, (e = { codes: new Map(), latency: this.metrics.latency.series(route, method) }));
    e.codes.set(status, (e.codes.get(status) ?? 0) + 1);
    this.metrics.latency.observe(e.latency, seconds);
  }

  flush(): void {
    for (const [route, byMethod] of this.byRoute) {
      for (const [method, e] of byMethod) {
        for (const [code, n] of e.codes) if (n > 0) this.metrics.requests.inc({ route, method, code: String(code) }, n);
        e.codes.clear();
      }
    }
  }
}

export function sendError(e: ApiError, reply: FastifyReply): FastifyReply {
  if (e.retryAfterS !== undefined) reply.header('retry-after', String(e.retryAfterS));
  return reply.code(e.status).type('application/json').send(e.toJSON());
}

/** Maps fastify's own errors (body too large, bad content) onto the catalogue. */
function toApiError(err: FastifyError | ApiError, config: Config, log: Logger, req: FastifyRequest): ApiError {
  if (err instanceof ApiError) return err;
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('value_too_large', `value exceeds limits.valueBytesMax (${config.limits.valueBytesMax} bytes)`);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError('invalid_request', 'Content-Length does not match the body');
    case 'FST_ERR_CTP_EMPTY_TYPE':
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('unsupported_media_type', err.message);
    case 'FST_ERR_BAD_URL':
      return new ApiError('invalid_key', 'the URL is not valid percent-encoded UTF-8');
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new ApiError('invalid_request', err.message);
  }
  log.error({ err, url: req.url, method: req.method }, 'unhandled error in request');
  return new ApiError('internal', 'internal error');
}
