// The storage interface. Two engines implement it: lmdb-store.ts (the real one: fsynced,
// crash-safe) and memory-store.ts (tests only).
//
// Layout: data keys are (partition, key), so one partition is one contiguous range and
// copying it is a single range scan. Metadata (Paxos acceptor state, decided configs,
// partition logs) lives in its own keyspace.

import type { PartitionId } from '../core/types.js';
import type { VectorClock } from '../core/vector-clock.js';

/** One stored version of a key. A delete is stored as a tombstone that keeps its clock,
 *  so a later re-create gets a strictly newer version (no ETag ever comes back). A
 *  tombstone is removed after the grace period; its clock then lives on in the
 *  partition's purgedClock (core/partition.ts PartitionMeta). */
export interface StoredRecord {
  readonly value: Uint8Array | null; // null for a tombstone
  readonly clock: VectorClock;
  /** The (epoch, seq) of the replication log entry that wrote it (absent: written before replication). */
  readonly epoch?: number;
  readonly seq?: number;
  /** Tombstones: when the delete was written (primary's wall clock, ms); absent on older tombstones. */
  readonly deletedAtMs?: number;
}

export type WriteOp =
  | { readonly kind: 'put'; readonly partition: PartitionId; readonly key: string; readonly record: StoredRecord }
  | { readonly kind: 'remove'; readonly partition: PartitionId; readonly key: string }
  /** Drops every record of a partition (before a full copy). */
  | { readonly kind: 'remove-partition'; readonly partition: PartitionId }
  | { readonly kind: 'meta'; readonly key: string; readonly value: unknown }
  | { readonly kind: 'meta-remove'; readonly key: string };

export interface ScanOptions {
  readonly prefix: string;
  /** Exclusive lower bound; '' starts at the beginning of the prefix. */
  readonly after: string;
  readonly limit: number;
  readonly includeTombstones?: boolean;
}

/** The lmdb engine's write-ahead log and checkpoints, for metrics. Totals count from the open. */
export interface StoreStats {
  /** Appends to the log (each one fsynced, carrying one or more frames). */
  readonly logAppends: number;
  /** Store writes logged (one frame each). */
  readonly logFrames: number;
  readonly logBytes: number;
  /** Log segment files on disk now. */
  readonly logSegments: number;
  readonly checkpoints: number;
  /** How long the latest checkpoint took to commit (s); 0 before the first. */
  readonly lastCheckpointSeconds: number;
  /** Bytes of durable writes held in memory until their checkpoint commits. */
  readonly unflushedBytes: number;
}

export interface Store {
  readonly engine: 'lmdb' | 'memory';
  /** The latest record of key, or undefined. Synchronous: reads never wait on I/O. */
  get(partition: PartitionId, key: string): StoredRecord | undefined;
  /** Keys of one partition in ascending UTF-8 byte order, starting with prefix and > after. */
  scan(partition: PartitionId, opts: ScanOptions): { key: string; record: StoredRecord }[];
  /** Applies ops atomically and in order. Resolves once they are durable (fsynced, when
   *  the store was opened with fsync). Rejects only on an I/O failure, after which the
   *  node must stop: it no longer knows what is on disk. */
  write(ops: readonly WriteOp[]): Promise<void>;
  getMeta<T>(key: string): T | undefined;
  /** Metadata keys starting with prefix, ascending. */
  scanMeta<T>(prefix: string): { key: string; value: T }[];
  /** Number of live (non-tombstone) keys; for metrics and readiness. */
  countKeys(): number;
  /** Write-ahead log and checkpoint figures (engines that have them). */
  stats?(): StoreStats;
  /** What the open replayed from the write-ahead log (engines that have one): 0 frames after a clean close. */
  readonly recovery?: { readonly frames: number; readonly ops: number; readonly ms: number };
  close(): Promise<void>;
}
