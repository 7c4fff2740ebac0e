// The records of one node for unit tests of the pure replication core: a StoreView over a
// plain map (read-your-writes by construction) and the persist ops applied to it.

import type { KvRecord, StoreView } from '../../src/core/partition.js';
import type { RepPersistOp } from '../../src/core/replication.js';

/** Records by `${partition}/${key}`. */
export type MemoryRecords = Map<string, KvRecord>;

export function memoryStoreView(data: MemoryRecords): StoreView {
  return {
    get: (p, key) => data.get(`${p}/${key}`),
    scan: (p, after, limit) =>
      [...data.entries()]
        .filter(([k]) => k.startsWith(`${p}/`) && (after === null || k.slice(`${p}/`.length) > after))
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .slice(0, limit)
        .map(([k, record]) => ({ key: k.slice(`${p}/`.length), record })),
  };
}

/** The record ops of a Ready (metas are folded separately, with applyRepPersistOp). */
export function applyRecordOps(data: MemoryRecords, ops: readonly RepPersistOp[]): void {
  for (const op of ops) {
    if (op.kind === 'record') data.set(`${op.partition}/${op.key}`, op.record);
    if (op.kind === 'record-delete') data.delete(`${op.partition}/${op.key}`);
    if (op.kind === 'partition-reset') for (const k of [...data.keys()]) if (k.startsWith(`${op.partition}/`)) data.delete(k);
  }
}
