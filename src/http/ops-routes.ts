import type { FastifyInstance } from 'fastify';
import { ApiError } from './errors.js';
import type { Metrics } from './metrics.js';

export interface OpsRoutesOptions {
  readonly metrics: Metrics;
  readonly notReadyReason: () => string | null;
  /** Brings counters kept off the hot path up to date. */
  readonly beforeScrape?: () => void;
}

/** /healthz (the process answers), /readyz (it should receive traffic), /metrics. */
export async function opsRoutes(app: FastifyInstance, opts: OpsRoutesOptions): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async () => {
    const reason = opts.notReadyReason();
    if (reason !== null) throw new ApiError('unavailable', `not ready: ${reason}`, 1);
    return { status: 'ready' };
  });

  app.get('/metrics', async (_req, reply) => {
    opts.beforeScrape?.();
    const text = await opts.metrics.registry.metrics();
    return reply.type(opts.metrics.registry.contentType).send(text);
  });
}
