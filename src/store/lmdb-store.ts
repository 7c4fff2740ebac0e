import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import type { PartitionId } from '../core/types.js';
import type { ScanOptions, Store, StoredRecord, WriteOp } from './store.js';
import { compareUtf8, inRange } from './scan.js';

interface LmdbOptions {
  readonly path: string;
  readonly fsync: boolean;
  readonly mapSizeBytes: number;
}

/** On-disk form of a record: short field names, since there is one per key. */
interface DiskRecord {
  v: Uint8Array | null;
  c: [string, number][];
  /** Replication (epoch, seq); absent in records written before replication. */
  e?: number;
  s?: number;
  /** Tombstones: deletedAtMs (absent in tombstones written before tombstone collection). */
  d?: number;
}

/**
 * The lmdb engine. Writes are group-committed by lmdb-js on its writer thread.
 * overlappingSync is off on purpose: with it on, a commit becomes visible to readers
 * before it is fsynced, and a read could observe a write that a power loss then erases.
 * With it off, the commit promise resolves only after LMDB's own fsync, so "visible"
 * implies "durable" and `write` needs no second wait.
 *
 * New stores use 16 KiB pages (`lmdbPageSize`): with 4 KiB pages a record of a 1 KiB value
 * leaves room for only one more on its page, so the data file (and the mapped memory that
 * reads fault in) is about twice the data. An existing store keeps the page size it was
 * created with.
 */
export const lmdbPageSize = 16384;

export class LmdbStore implements Store {
  readonly engine = 'lmdb' as const;
  private readonly root: RootDatabase;
  private readonly data: Database<DiskRecord, [number, string]>;
  private readonly meta: Database<unknown, string>;
  private liveKeys = 0;
  /** Live (non-tombstone) keys per partition: a dropped partition is then deleted by key alone, without decoding its records. */
  private readonly livePerPartition = new Map<number, number>();

  constructor(opts: LmdbOptions) {
    mkdirSync(opts.path, { recursive: true });
    this.root = open({
      path: opts.path,
      noSync: !opts.fsync,
      overlappingSync: false,
      mapSize: opts.mapSizeBytes,
      maxDbs: 4,
      pageSize: lmdbPageSize,
      cache: false,
    });
    this.data = this.root.openDB<DiskRecord, [number, string]>({ name: 'kv', cache: false });
    this.meta = this.root.openDB<unknown, string>({ name: 'meta', cache: false });
    for (const { key, value } of this.data.getRange({})) if (value.v !== null) this.countLive(key[0], 1);
  }

  get(partition: PartitionId, key: string): StoredRecord | undefined {
    const r = this.data.get([partition, key]);
    return r === undefined ? undefined : fromDisk(r);
  }

  scan(partition: PartitionId, opts: ScanOptions): { key: string; record: StoredRecord }[] {
    const out: { key: string; record: StoredRecord }[] = [];
    const start = compareUtf8(opts.after, opts.prefix) > 0 ? opts.after : opts.prefix;
    for (const { key, value } of this.data.getRange({ start: [partition, start], end: [partition + 1, ''] })) {
      const k = key[1];
      const verdict = inRange(k, opts);
      if (verdict === 'stop') break;
      if (verdict === 'skip') continue;
      if (value.v === null && !opts.includeTombstones) continue;
      out.push({ key: k, record: fromDisk(value) });
      if (out.length >= opts.limit) break;
    }
    return out;
  }

  write(ops: readonly WriteOp[]): Promise<void> {
    return this.root.transaction(() => {
      for (const op of ops) {
        switch (op.kind) {
          case 'put': {
            const prev = this.data.get([op.partition, op.key]);
            this.countLive(op.partition, (op.record.value !== null ? 1 : 0) - (prev !== undefined && prev.v !== null ? 1 : 0));
            const disk: DiskRecord = { v: op.record.value, c: op.record.clock as unknown as [string, number][] };
            if (op.record.epoch !== undefined) disk.e = op.record.epoch;
            if (op.record.seq !== undefined) disk.s = op.record.seq;
            if (op.record.deletedAtMs !== undefined) disk.d = op.record.deletedAtMs;
            this.data.put([op.partition, op.key], disk);
            break;
          }
          case 'remove-partition': {
            // Keys only: decoding every record made a dropped partition of 1 KiB values
            // cost ~3 times as long on the main thread (a rebalance switch drops thousands).
            const doomed = [...this.data.getKeys({ start: [op.partition, ''], end: [op.partition + 1, ''] })];
            for (const k of doomed) this.data.remove(k);
            this.countLive(op.partition, -(this.livePerPartition.get(op.partition) ?? 0));
            break;
          }
          case 'remove': {
            const prev = this.data.get([op.partition, op.key]);
            if (prev !== undefined && prev.v !== null) this.countLive(op.partition, -1);
            this.data.remove([op.partition, op.key]);
            break;
          }
          case 'meta':
            this.meta.put(op.key, op.value);
            break;
          case 'meta-remove':
            this.meta.remove(op.key);
            break;
        }
      }
    }) as Promise<void>;
  }

  private countLive(partition: number, delta: number): void {
    if (delta === 0) return;
    this.liveKeys += delta;
    const n = (this.livePerPartition.get(partition) ?? 0) + delta;
    if (n === 0) this.livePerPartition.delete(partition);
    else this.livePerPartition.set(partition, n);
  }

  getMeta<T>(key: string): T | undefined {
    return this.meta.get(key) as T | undefined;
  }

  scanMeta<T>(prefix: string): { key: string; value: T }[] {
    const out: { key: string; value: T }[] = [];
    for (const { key, value } of this.meta.getRange({ start: prefix })) {
      if (!key.startsWith(prefix)) break;
      out.push({ key, value: value as T });
    }
    return out;
  }

  countKeys(): number {
    return this.liveKeys;
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}

function fromDisk(r: DiskRecord): StoredRecord {
  const clock = r.c as unknown as StoredRecord['clock'];
  const base = r.e === undefined || r.s === undefined ? { value: r.v, clock } : { value: r.v, clock, epoch: r.e, seq: r.s };
  return r.d === undefined ? base : { ...base, deletedAtMs: r.d };
}
