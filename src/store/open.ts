import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { LmdbStore } from './lmdb-store.js';
import { MemoryStore } from './memory-store.js';
import type { Store } from './store.js';

/** `onFailure`: the store can no longer write (the node must stop; see Store.write). */
export function openStore(config: Config, onFailure?: (e: Error) => void): Store {
  if (config.storage.engine === 'memory') return new MemoryStore();
  return new LmdbStore({
    path: join(config.node.dataDir, 'store'),
    fsync: config.storage.fsync,
    mapSizeBytes: config.storage.mapSizeBytes,
    ...(onFailure === undefined ? {} : { onFailure }),
  });
}
