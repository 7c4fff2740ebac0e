// GET /v1/events: the cluster as server-sent events (text/event-stream) for the dashboard
// (/ui), `ringkv cluster status --watch` and `curl -N`. Event types and fields: docs/api.md.
//
// A stream opens with a `snapshot` (the GET /v1/cluster body, the ring's vnode tokens and
// the request rates), then carries `epoch`, `partition-move`, `primary` and `members` events
// from the runtime (ClusterEvents) and a `rates` event every second computed from this
// node's request counters, plus a comment every 15 s so that proxies keep it open.
//
// Streams are capped (limits.eventStreamsMax; 503 beyond), a reader that falls behind by
// more than SLOW_READER_BYTES_MAX is dropped, and every stream is ended when the server
// closes (SIGTERM drain must not wait for them). Responses carry `Connection: close`, so
// the socket closes with the stream instead of idling until the keep-alive timeout.
// Browsers may read the stream from another member's origin (the dashboard falls back to
// another node when its own dies): members' client URLs are allowed by CORS.

import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ClusterEvent, ClusterEvents } from '../runtime/events.js';
import { ApiError } from './errors.js';
import type { Metrics } from './metrics.js';

export interface EventsRoutesOptions {
  readonly events: ClusterEvents;
  readonly metrics: Metrics;
  /** Brings the request counters (kept off the hot path) up to date. */
  readonly flushCounts: () => void;
  /** Concurrent streams this node serves (limits.eventStreamsMax). */
  readonly streamsMax: number;
  /** Period of the keep-alive comment. */
  readonly pingMs?: number;
  /** Period of the `rates` event. */
  readonly ratesMs?: number;
}

/** Bytes queued for one reader beyond which its stream is dropped. */
export const SLOW_READER_BYTES_MAX = 1024 * 1024;

export interface Rates {
  /** Client API requests answered per second (all routes and codes). */
  readonly requestsPerSec: number;
  /** Of which answered with a 5xx (unavailable, timeout, internal). */
  readonly errorsPerSec: number;
}

/** One SSE frame. JSON never contains a raw newline, so `data` is one line. */
export const sseFrame = (type: string, data: unknown): string => `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;

/** Rates from the ringkv_http_requests_total counter, between consecutive samples. */
class RateSampler {
  private last: { at: number; requests: number; errors: number } | null = null;
  /** Bumped by reset(), so that a sample still being read when the timers stop is dropped. */
  private generation = 0;
  latest: Rates | null = null;

  constructor(private readonly opts: EventsRoutesOptions) {}

  /** The rates since the previous sample (null for the first one, or after a reset). */
  async sample(): Promise<Rates | null> {
    const generation = this.generation;
    this.opts.flushCounts();
    let requests = 0;
    let errors = 0;
    for (const v of (await this.opts.metrics.requests.get()).values) {
      requests += v.value;
      if (String(v.labels.code).startsWith('5')) errors += v.value;
    }
    if (generation !== this.generation) return null;
    const at = performance.now();
    const prev = this.last;
    this.last = { at, requests, errors };
    if (prev === null) return null;
    const perSec = (n: number): number => Math.round((n * 10_000) / Math.max(1, at - prev.at)) / 10;
    this.latest = { requestsPerSec: perSec(requests - prev.requests), errorsPerSec: perSec(errors - prev.errors) };
    return this.latest;
  }

  reset(): void {
    this.generation++;
    this.last = null;
    this.latest = null;
  }
}

export async function eventsRoutes(app: FastifyInstance, opts: EventsRoutesOptions): Promise<void> {
  const { events } = opts;
  const streams = new Set<PassThrough>();
  const rates = new RateSampler(opts);
  let timers: NodeJS.Timeout[] = [];
  // Every stream gets the same event object: serialize it once (an epoch event is ~20 KB,
  // and events are emitted inside the driver's step).
  const frames = new WeakMap<ClusterEvent, string>();
  const frameOf = (e: ClusterEvent): string => {
    let text = frames.get(e);
    if (text === undefined) {
      text = sseFrame(e.type, e.data);
      frames.set(e, text);
    }
    return text;
  };

  const write = (out: PassThrough, text: string): void => {
    if (out.writableEnded || out.destroyed) return; // ended by preClose, not closed yet
    if (out.writableLength > SLOW_READER_BYTES_MAX) out.destroy();
    else out.write(text);
  };
  const broadcast = (text: string): void => {
    for (const out of streams) write(out, text);
  };
  const startTimers = (): void => {
    void rates.sample(); // the baseline
    timers = [
      setInterval(() => broadcast(': ping\n\n'), opts.pingMs ?? 15_000),
      setInterval(() => {
        void rates.sample().then((r) => {
          if (r !== null && streams.size > 0) broadcast(sseFrame('rates', r));
        });
      }, opts.ratesMs ?? 1000),
    ];
  };
  const stopTimers = (): void => {
    for (const t of timers) clearInterval(t);
    timers = [];
    rates.reset();
  };

  /** The request's Origin when it is one of the members' client URLs (CORS), else null. */
  const memberOrigin = (req: FastifyRequest): string | null => {
    const origin = req.headers.origin;
    if (origin === undefined) return null;
    for (const url of events.memberClientUrls()) {
      if (URL.canParse(url) && new URL(url).origin === origin) return origin;
    }
    return null;
  };
  const allowOrigin = (req: FastifyRequest, reply: FastifyReply): void => {
    const origin = memberOrigin(req);
    reply.header('vary', 'origin');
    if (origin !== null) reply.header('access-control-allow-origin', origin);
  };

  // The CORS preflight a browser sends before a cross-origin request with a bearer token.
  app.options('/v1/events', async (req, reply) => {
    allowOrigin(req, reply);
    return reply
      .header('access-control-allow-methods', 'GET')
      .header('access-control-allow-headers', 'authorization')
      .header('access-control-max-age', '600')
      .code(204)
      .send();
  });

  app.get('/v1/events', (req, reply) => {
    if (streams.size >= opts.streamsMax) {
      throw new ApiError('unavailable', `this node already serves ${opts.streamsMax} event streams (limits.eventStreamsMax); try another node`, 5);
    }
    const out = new PassThrough();
    // EventSource reconnects after `retry` ms (default ~3 s): a dead node is left sooner.
    out.write(`retry: 1000\n\n${sseFrame('snapshot', { ...events.facts(), rates: rates.latest })}`);
    const unsubscribe = events.subscribe((e) => write(out, frameOf(e)));
    streams.add(out);
    if (streams.size === 1) startTimers();
    // 'close' comes once, however the stream ends: server close, client gone, slow reader.
    out.once('close', () => {
      unsubscribe();
      streams.delete(out);
      if (streams.size === 0) stopTimers();
    });
    allowOrigin(req, reply);
    return reply
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-cache, no-transform')
      .header('x-accel-buffering', 'no')
      .header('connection', 'close')
      .send(out);
  });

  app.addHook('preClose', (done) => {
    for (const out of streams) out.end();
    // A reader that does not read cannot take the end of its stream: drop it.
    if (streams.size > 0) {
      setTimeout(() => {
        for (const out of streams) out.destroy();
      }, 1000).unref();
    }
    done();
  });
}
