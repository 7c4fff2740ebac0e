import { partitionOf } from '../core/hash.js';
import { partitionId, type NodeId, type PartitionId } from '../core/types.js';
import { EMPTY_CLOCK, increment, versionOf } from '../core/vector-clock.js';
import { ApiError } from '../http/errors.js';
import { compareUtf8 } from '../store/scan.js';
import type { Store, StoredRecord } from '../store/store.js';
import type { Consistency, DeleteResult, GetResult, KvService, ListResult, Precondition, PutResult } from './kv-service.js';

/**
 * The single-node engine: every partition of the ring is local.
 *
 * Reads go straight to the store, which exposes only committed (and therefore fsynced,
 * see LmdbStore) records: a read never observes a write that a crash could take back.
 * Writes to one key are ordered through `pending`: a conditional write checks its
 * precondition against the newest write in flight for that key, not only against what
 * is already on disk, so two concurrent compare-and-sets cannot both succeed.
 */
export class LocalKv implements KvService {
  private readonly pending = new Map<string, { record: StoredRecord; done: Promise<void> }>();

  constructor(
    private readonly store: Store,
    private readonly nodeId: NodeId,
    private readonly partitions: number,
    private readonly onStorageFailure: (e: unknown) => void,
  ) {}

  get(key: string, _consistency: Consistency): Promise<GetResult> {
    const r = this.store.get(partitionOf(key, this.partitions), key);
    if (r === undefined || r.value === null) return Promise.resolve({ found: false, servedBy: this.nodeId });
    return Promise.resolve({ found: true, value: r.value, version: versionOf(r.clock), servedBy: this.nodeId });
  }

  async put(key: string, value: Uint8Array, cond: Precondition): Promise<PutResult> {
    const partition = partitionOf(key, this.partitions);
    const cur = this.latest(partition, key);
    checkPrecondition(cur, cond);
    const record: StoredRecord = { value, clock: increment(cur?.clock ?? EMPTY_CLOCK, this.nodeId) };
    await this.commit(partition, key, record);
    return { created: cur === undefined || cur.value === null, version: versionOf(record.clock), servedBy: this.nodeId };
  }

  async delete(key: string, cond: Precondition): Promise<DeleteResult> {
    const partition = partitionOf(key, this.partitions);
    const cur = this.latest(partition, key);
    checkPrecondition(cur, cond);
    if (cur === undefined || cur.value === null) throw new ApiError('not_found', `key ${JSON.stringify(key)} not found`);
    await this.commit(partition, key, { value: null, clock: increment(cur.clock, this.nodeId) });
    return { servedBy: this.nodeId };
  }

  list(prefix: string, after: string, limit: number, _consistency: Consistency): Promise<ListResult> {
    return Promise.resolve(this.listPartitions(Array.from({ length: this.partitions }, (_, p) => partitionId(p)), prefix, after, limit));
  }

  /** Keys of the given partitions, merged into one UTF-8-ordered page. */
  listPartitions(partitions: readonly PartitionId[], prefix: string, after: string, limit: number): ListResult {
    const keys: string[] = [];
    for (const p of partitions) {
      for (const { key } of this.store.scan(p, { prefix, after, limit: limit + 1 })) keys.push(key);
    }
    keys.sort(compareUtf8);
    const page = keys.slice(0, limit);
    return { keys: page, next: keys.length > limit ? page[page.length - 1]! : null };
  }

  private latest(partition: ReturnType<typeof partitionOf>, key: string): StoredRecord | undefined {
    return this.pending.get(key)?.record ?? this.store.get(partition, key);
  }

  private commit(partition: ReturnType<typeof partitionOf>, key: string, record: StoredRecord): Promise<void> {
    const done = this.store.write([{ kind: 'put', partition, key, record }]);
    const entry = { record, done };
    this.pending.set(key, entry);
    return done.then(
      () => {
        if (this.pending.get(key) === entry) this.pending.delete(key);
      },
      (e: unknown) => {
        this.onStorageFailure(e);
        throw new ApiError('internal', 'storage failure; the node is stopping');
      },
    );
  }
}

export function checkPrecondition(cur: StoredRecord | undefined, cond: Precondition): void {
  const exists = cur !== undefined && cur.value !== null;
  const version = exists ? versionOf(cur.clock) : null;
  if (cond.ifMatch !== undefined) {
    const ok = version !== null && (cond.ifMatch === '*' || cond.ifMatch.includes(version));
    if (!ok) {
      throw new ApiError(
        'precondition_failed',
        exists ? `If-Match failed: current version is ${version}` : 'If-Match failed: the key does not exist',
      );
    }
  }
  if (cond.ifNoneMatch !== undefined) {
    const hit = version !== null && (cond.ifNoneMatch === '*' || cond.ifNoneMatch.includes(version));
    if (hit) throw new ApiError('precondition_failed', `If-None-Match failed: the key exists with version ${version}`);
  }
}
