// Anti-entropy (DESIGN §3 rule 7): a primary compares each in-sync follower's copy of a
// partition with its own, one key range at a time, and repairs differences with the
// vector-clock rule. Replication and catch-up keep copies identical; this is the safety
// net for what they cannot see (a copy damaged on disk, a bug).
//
// A range is (after, upTo]: up to `aeChunkMax` of the primary's keys in ascending order
// (upTo null: to the end of the partition). Its digest is order-independent: the count of
// records and the sum (mod 2^32) of FNV-1a over "key \0 clock \0 t|v" of each record
// (tombstones included, so a repair never resurrects a delete while its tombstone exists:
// a tombstone's clock descends from the value it deleted; once tombstones are collected
// after the grace period, see docs/rebalancing.md "Anti-entropy and the tombstone
// grace"). Equal clocks name the same write, so values are not
// hashed. A mismatch makes the primary push its records of the range; the follower applies
// those that descend from its own, and sends back the ones it holds that the push did not
// cover or that are newer or concurrent; the primary applies those by the same rule.
//
// Everything here is pure: the replication layer (replication.ts) owns the messages.

import type { KvRecord, StoreView } from './partition.js';
import type { PartitionId } from './types.js';
import { clockToString } from './vector-clock.js';

export const antiEntropyLimits = {
  /** The primary's keys per compared range. */
  aeChunkMax: 256,
  /** A follower scans at most this many keys for one range (it may hold extra keys). */
  aeScanMax: 1024,
} as const;

export interface RangeDigest {
  readonly count: number;
  readonly sum: number;
  /** The follower hit aeScanMax before the end of the range: treat as a mismatch. */
  readonly overflow: boolean;
}

export function digestsEqual(a: RangeDigest, b: RangeDigest): boolean {
  return !a.overflow && !b.overflow && a.count === b.count && a.sum === b.sum;
}

/** The records of partition p with keys in (after, upTo], at most `limit`, and whether more remain. */
export function rangeRecords(
  store: StoreView,
  p: PartitionId,
  after: string | null,
  upTo: string | null,
  limit: number,
): { records: { key: string; record: KvRecord }[]; overflow: boolean } {
  const scanned = store.scan(p, after, limit + 1);
  const records: { key: string; record: KvRecord }[] = [];
  for (const r of scanned) {
    if (upTo !== null && r.key > upTo) return { records, overflow: false };
    if (records.length === limit) return { records, overflow: true };
    records.push(r);
  }
  return { records, overflow: false };
}

export function digestOf(records: readonly { key: string; record: KvRecord }[], overflow: boolean): RangeDigest {
  let sum = 0;
  for (const { key, record } of records) sum = (sum + fnv1a(`${key}\0${clockToString(record.clock)}\0${record.value === null ? 't' : 'v'}`)) >>> 0;
  return { count: records.length, sum, overflow };
}

/** The next range of the primary's own keys after `after`. */
export function nextRange(store: StoreView, p: PartitionId, after: string | null): { after: string | null; upTo: string | null } {
  const scanned = store.scan(p, after, antiEntropyLimits.aeChunkMax);
  return { after, upTo: scanned.length < antiEntropyLimits.aeChunkMax ? null : scanned[scanned.length - 1]!.key };
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
