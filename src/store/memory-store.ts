import type { PartitionId } from '../core/types.js';
import { compareUtf8, inRange } from './scan.js';
import type { ScanOptions, Store, StoredRecord, WriteOp } from './store.js';

/** In-memory engine, for tests only: it forgets everything when the process exits. */
export class MemoryStore implements Store {
  readonly engine = 'memory' as const;
  private readonly partitions = new Map<PartitionId, Map<string, StoredRecord>>();
  private readonly meta = new Map<string, unknown>();

  get(partition: PartitionId, key: string): StoredRecord | undefined {
    return this.partitions.get(partition)?.get(key);
  }

  scan(partition: PartitionId, opts: ScanOptions): { key: string; record: StoredRecord }[] {
    const part = this.partitions.get(partition);
    if (!part) return [];
    const out: { key: string; record: StoredRecord }[] = [];
    for (const key of [...part.keys()].sort(compareUtf8)) {
      const verdict = inRange(key, opts);
      if (verdict === 'stop') break;
      if (verdict === 'skip') continue;
      const record = part.get(key)!;
      if (record.value === null && !opts.includeTombstones) continue;
      out.push({ key, record });
      if (out.length >= opts.limit) break;
    }
    return out;
  }

  write(ops: readonly WriteOp[]): Promise<void> {
    for (const op of ops) {
      switch (op.kind) {
        case 'put': {
          let part = this.partitions.get(op.partition);
          if (!part) this.partitions.set(op.partition, (part = new Map()));
          part.set(op.key, op.record);
          break;
        }
        case 'remove':
          this.partitions.get(op.partition)?.delete(op.key);
          break;
        case 'remove-partition':
          this.partitions.delete(op.partition);
          break;
        case 'meta':
          this.meta.set(op.key, structuredClone(op.value));
          break;
        case 'meta-remove':
          this.meta.delete(op.key);
          break;
      }
    }
    return Promise.resolve();
  }

  getMeta<T>(key: string): T | undefined {
    return this.meta.get(key) as T | undefined;
  }

  scanMeta<T>(prefix: string): { key: string; value: T }[] {
    return [...this.meta.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => compareUtf8(a, b))
      .map(([key, value]) => ({ key, value: value as T }));
  }

  countKeys(): number {
    let n = 0;
    for (const part of this.partitions.values()) for (const r of part.values()) if (r.value !== null) n++;
    return n;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
