import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { configSchema, type Config } from '../../src/config/schema.js';
import { nodeId } from '../../src/core/types.js';
import { buildClientApp } from '../../src/http/client-app.js';
import { Metrics } from '../../src/http/metrics.js';
import type { TokenTable } from '../../src/http/auth.js';
import { LocalKv } from '../../src/runtime/local-kv.js';
import { MemoryStore } from '../../src/store/memory-store.js';

export interface TestApp {
  app: FastifyInstance;
  store: MemoryStore;
  config: Config;
}

/** A client API over the memory engine, for app.inject() tests of the HTTP layer. */
export async function testApp(overrides: Record<string, unknown> = {}, tokens: TokenTable | null = null): Promise<TestApp> {
  const config = configSchema.parse({ storage: { engine: 'memory' }, ...overrides });
  const store = new MemoryStore();
  const id = nodeId(config.node.id);
  const kv = new LocalKv(store, id, config.cluster.partitions, (e) => {
    throw e;
  });
  const app = buildClientApp({
    config,
    nodeId: id,
    kv,
    metrics: new Metrics(id, () => store.countKeys()),
    logger: pino({ level: 'silent' }),
    tokens,
    notReadyReason: () => null,
  });
  await app.ready();
  return { app, store, config };
}
