// One ringkv node: store + engine + client API (+ peer API once clustered). This is the
// thin shell: it owns sockets, disk and timers, and nothing here decides protocol.

import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.js';
import { splitHostPort } from '../config/load.js';
import { nodeId as toNodeId } from '../core/types.js';
import { loadTokens } from '../http/auth.js';
import { buildClientApp } from '../http/client-app.js';
import { Metrics } from '../http/metrics.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { LocalKv } from './local-kv.js';

export interface RunningNode {
  readonly id: string;
  readonly clientApp: FastifyInstance;
  readonly store: Store;
  /** The bound client address (port resolved when 0 was asked for). */
  readonly clientAddress: { host: string; port: number };
  /** Stops taking requests, drains the ones in flight, closes the store. Idempotent. */
  close(): Promise<void>;
}

export async function startNode(loaded: LoadedConfig, logger: Logger): Promise<RunningNode> {
  const { config } = loaded;
  const id = toNodeId(config.node.id);
  const store = openStore(config);
  let stopping = false;
  let fatal = false;
  const kv = new LocalKv(store, id, config.cluster.partitions, (e) => {
    if (fatal) return;
    fatal = true;
    logger.fatal({ err: e }, 'storage write failed; stopping so that no acknowledgement is given for data not on disk');
    process.exitCode = 70;
    void close();
  });
  const metrics = new Metrics(id, () => store.countKeys());
  const tokens = config.auth.clientTokensFile === null ? null : loadTokens(config.auth.clientTokensFile);
  const clientApp = buildClientApp({
    config,
    nodeId: id,
    kv,
    metrics,
    logger,
    tokens,
    notReadyReason: () => (stopping ? 'shutting down' : null),
  });
  const { host, port } = splitHostPort(config.listen.client);
  await clientApp.listen({ host, port });
  const bound = clientApp.server.address();
  const clientAddress = typeof bound === 'object' && bound !== null ? { host: bound.address, port: bound.port } : { host, port };
  logger.info(
    { client: `${clientAddress.host}:${clientAddress.port}`, engine: store.engine, dataDir: config.node.dataDir },
    'ringkv node serving',
  );

  let closing: Promise<void> | null = null;
  function close(): Promise<void> {
    closing ??= (async () => {
      stopping = true;
      logger.info('draining in-flight requests');
      await clientApp.close();
      await store.close();
      logger.info('stopped cleanly');
    })();
    return closing;
  }
  return { id, clientApp, store, clientAddress, close };
}
