// The replication core's view of the store (core/partition.ts StoreView) over the real
// Store, with a write-behind overlay: the core must see its own writes at once
// (read-your-writes), while the Store only shows what is durable. Every Ready's record /
// partition-reset ops are staged here synchronously, before the Ready's atomic store
// write is queued, and dropped from the overlay once that write is fsynced.
//
// A crash loses the overlay with the process; the node restarts from the disk, which is
// exactly what the core expects (nothing was sent or replied before it was durable).

import { normalizeMeta } from '../core/partition.js';
import type { KvRecord, PartitionMeta, RepPersistOp, StoreView } from '../core/replication.js';
import type { Epoch, PartitionId, Seq } from '../core/types.js';
import { compareUtf8 } from '../store/scan.js';
import { decodePartitionMeta, encodePartitionMeta, isEncodedPartitionMeta } from '../store/meta-codec.js';
import type { Store, StoredRecord, WriteOp } from '../store/store.js';

export const META_PARTITION = 'rep/partition/';
export const partitionMetaKey = (p: number): string => META_PARTITION + String(p).padStart(8, '0');

/**
 * Partition metadata as persisted by earlier runs (restart): meta-codec.ts's layout, or,
 * from builds before it, the core's PartitionMeta object as MessagePack. Metas written
 * before tombstone collection lack the purge fields and read as "nothing collected",
 * metas written before copy targets read as "no target".
 */
export function loadPartitionMetas(store: Store): Map<number, PartitionMeta> {
  const out = new Map<number, PartitionMeta>();
  for (const { key, value } of store.scanMeta<unknown>(META_PARTITION)) {
    const meta = isEncodedPartitionMeta(value) ? decodePartitionMeta(value) : normalizeMeta(value as PartitionMeta);
    out.set(Number(key.slice(META_PARTITION.length)), meta);
  }
  return out;
}

/** A stored record as the core sees it. Records from before replication sit at (0, 0). */
export function toKvRecord(r: StoredRecord | undefined): KvRecord | undefined {
  if (r === undefined) return undefined;
  const out = { value: r.value, clock: r.clock, epoch: (r.epoch ?? 0) as Epoch, seq: (r.seq ?? 0) as Seq };
  return r.deletedAtMs === undefined ? out : { ...out, deletedAtMs: r.deletedAtMs };
}

function toStored(r: KvRecord): StoredRecord {
  const out = { value: r.value, clock: r.clock, epoch: r.epoch, seq: r.seq };
  return r.deletedAtMs === undefined ? out : { ...out, deletedAtMs: r.deletedAtMs };
}

/** The store write ops for one Ready's replication persist ops, in order. */
export function repWriteOps(ops: readonly RepPersistOp[]): WriteOp[] {
  return ops.map((op): WriteOp => {
    switch (op.kind) {
      case 'record':
        return { kind: 'put', partition: op.partition, key: op.key, record: toStored(op.record) };
      case 'partition-meta':
        return { kind: 'meta', key: partitionMetaKey(op.partition), value: encodePartitionMeta(op.meta) };
      case 'partition-reset':
        return { kind: 'remove-partition', partition: op.partition };
      case 'record-delete':
        return { kind: 'remove', partition: op.partition, key: op.key };
    }
  });
}

interface PartitionOverlay {
  /** Newest staged record per key (null: a staged record-delete) and the generation (Ready) that staged it. */
  readonly records: Map<string, { record: KvRecord | null; gen: number }>;
  /** A staged partition-reset not yet durable: the disk's records are gone for the core. */
  resetGen: number | null;
}

export class OverlayStoreView implements StoreView {
  private readonly parts = new Map<number, PartitionOverlay>();
  private gen = 0;

  constructor(private readonly store: Store) {}

  get(partition: PartitionId, key: string): KvRecord | undefined {
    const o = this.parts.get(partition);
    const hit = o?.records.get(key);
    if (hit !== undefined) return hit.record ?? undefined;
    if (o !== undefined && o.resetGen !== null) return undefined;
    return toKvRecord(this.store.get(partition, key));
  }

  scan(partition: PartitionId, after: string | null, limit: number): { key: string; record: KvRecord }[] {
    const o = this.parts.get(partition);
    const merged = new Map<string, KvRecord>();
    if (o === undefined || o.resetGen === null) {
      // Staged deletions hide store keys: read that many more, so `limit` survive.
      let hidden = 0;
      if (o !== undefined) for (const { record } of o.records.values()) if (record === null) hidden++;
      for (const { key, record } of this.store.scan(partition, { prefix: '', after: after ?? '', limit: limit + hidden, includeTombstones: true })) {
        merged.set(key, toKvRecord(record)!);
      }
    }
    if (o !== undefined) {
      for (const [key, { record }] of o.records) {
        if (after !== null && compareUtf8(key, after) <= 0) continue;
        if (record === null) merged.delete(key);
        else merged.set(key, record);
      }
    }
    // The store's first `limit + hidden` keys plus every overlay key after `after`, less the
    // staged deletions, contain the union's first `limit` keys.
    return [...merged.keys()]
      .sort(compareUtf8)
      .slice(0, limit)
      .map((key) => ({ key, record: merged.get(key)! }));
  }

  /** Is anything of this key not durable yet: a staged record or delete, or a reset of its partition? */
  holdsStaged(partition: number, key: string): boolean {
    const o = this.parts.get(partition);
    return o !== undefined && (o.resetGen !== null || o.records.has(key));
  }

  /** Stage one Ready's ops (visible at once). Returns the generation to settle once durable. */
  stage(ops: readonly RepPersistOp[]): number {
    const gen = ++this.gen;
    for (const op of ops) {
      if (op.kind === 'partition-meta') continue;
      let o = this.parts.get(op.partition);
      if (o === undefined) this.parts.set(op.partition, (o = { records: new Map(), resetGen: null }));
      if (op.kind === 'partition-reset') {
        o.records.clear();
        o.resetGen = gen;
      } else if (op.kind === 'record-delete') {
        o.records.set(op.key, { record: null, gen });
      } else {
        o.records.set(op.key, { record: op.record, gen });
      }
    }
    return gen;
  }

  /** Every generation up to `gen` is durable: the store shows it now. */
  settle(gen: number): void {
    for (const [p, o] of this.parts) {
      for (const [key, r] of o.records) if (r.gen <= gen) o.records.delete(key);
      if (o.resetGen !== null && o.resetGen <= gen) o.resetGen = null;
      if (o.records.size === 0 && o.resetGen === null) this.parts.delete(p);
    }
  }
}
