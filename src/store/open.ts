import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { LmdbStore } from './lmdb-store.js';
import { MemoryStore } from './memory-store.js';
import type { Store } from './store.js';

export function openStore(config: Config): Store {
  if (config.storage.engine === 'memory') return new MemoryStore();
  return new LmdbStore({
    path: join(config.node.dataDir, 'store'),
    fsync: config.storage.fsync,
    mapSizeBytes: config.storage.mapSizeBytes,
  });
}
