import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import type { PartitionId } from '../core/types.js';
import type { ScanOptions, Store, StoredRecord, WriteOp } from './store.js';
import { compareUtf8, inRange } from './scan.js';
import { decodeRecord, encodeRecord, isLiveRecord } from './record-codec.js';

interface LmdbOptions {
  readonly path: string;
  readonly fsync: boolean;
  readonly mapSizeBytes: number;
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
  /** Records in record-codec.ts's binary layout, keyed by (partition, key). */
  private readonly data: Database<Buffer, [number, string]>;
  private readonly meta: Database<unknown, string>;
  private liveKeys = 0;
  /** Live (non-tombstone) keys per partition: a dropped partition is then deleted by key alone, without decoding its records. */
  private readonly livePerPartition = new Map<number, number>();
  /**
   * What writes issued but not yet committed did, per partition: the liveness of each key
   * they wrote, and whether they dropped the partition. The live-key count is kept at the
   * moment a write is issued, and a read outside a transaction sees only committed data,
   * so a key's previous liveness comes from here first. Entries leave when their write is
   * committed (`gen` tells whether a later write took the entry over).
   */
  private readonly pending = new Map<number, { keys: Map<string, { live: boolean; gen: number }>; resetGen: number | null }>();
  /** (gen, partition, key) of every pending entry in issue order (key null: a drop), from `issuedHead` on. */
  private issued: { gen: number; partition: number; key: string | null }[] = [];
  private issuedHead = 0;
  private gen = 0;
  /** The promise of the last write handed to lmdb-js. */
  private lastIssued: Promise<unknown> = Promise.resolve();

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
    this.data = this.root.openDB<Buffer, [number, string]>({ name: 'kv', encoding: 'binary', cache: false });
    this.meta = this.root.openDB<unknown, string>({ name: 'meta', cache: false });
    for (const { key, value } of this.data.getRange({})) if (isLiveRecord(value)) this.countLive(key[0], 1);
  }

  get(partition: PartitionId, key: string): StoredRecord | undefined {
    // A view into lmdb's reused read buffer, decoded (value copied out) at once.
    const b = this.data.getBinaryFast([partition, key]);
    return b === undefined ? undefined : decodeRecord(b);
  }

  scan(partition: PartitionId, opts: ScanOptions): { key: string; record: StoredRecord }[] {
    const out: { key: string; record: StoredRecord }[] = [];
    const start = compareUtf8(opts.after, opts.prefix) > 0 ? opts.after : opts.prefix;
    for (const { key, value } of this.data.getRange({ start: [partition, start], end: [partition + 1, ''] })) {
      const k = key[1];
      const verdict = inRange(k, opts);
      if (verdict === 'stop') break;
      if (verdict === 'skip') continue;
      if (!opts.includeTombstones && !isLiveRecord(value)) continue;
      out.push({ key: k, record: decodeRecord(value) });
      if (out.length >= opts.limit) break;
    }
    return out;
  }

  write(ops: readonly WriteOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    const gen = ++this.gen;
    // Puts and removes issued in one synchronous run are committed in one LMDB transaction
    // (lmdb-js batches an event turn's writes, in order, on its writer thread), with no
    // round trip to the main thread. No transaction callbacks: they do not keep their
    // place among the plain writes queued around them. Records are encoded before anything
    // is issued: a record that cannot be stored fails the whole write, not half of it.
    const encoded = ops.map((op) => (op.kind === 'put' ? encodeRecord(op.record) : null));
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const issued = op.kind === 'remove-partition' ? this.dropPartition(op.partition, gen) : this.writeOne(op, encoded[i]!, gen);
      if (issued !== null) this.lastIssued = issued;
    }
    // Commits complete in issue order: the last write issued (maybe an earlier call's, if
    // this one issued none) resolves once all of this call's writes are durable.
    const written = this.lastIssued.then(() => this.settle(gen));
    return written;
  }

  /**
   * Removes every record of a partition: the keys on disk (keys only: decoding every record
   * made a dropped partition of 1 KiB values cost ~3 times as long, and a rebalance switch
   * drops thousands) and the keys of writes issued but not committed yet, which the disk
   * does not show. Removing a key that is not there is a no-op.
   */
  private dropPartition(partition: number, gen: number): Promise<unknown> | null {
    this.countLive(partition, -(this.livePerPartition.get(partition) ?? 0));
    const pend = this.pendingOf(partition);
    const doomed = new Set<string>(pend.keys.keys());
    for (const k of this.data.getKeys({ start: [partition, ''], end: [partition + 1, ''] })) doomed.add(k[1]);
    pend.keys.clear();
    pend.resetGen = gen;
    this.issued.push({ gen, partition, key: null });
    let done: Promise<unknown> | null = null;
    for (const k of doomed) done = this.data.remove([partition, k]);
    return done;
  }

  private writeOne(op: Exclude<WriteOp, { kind: 'remove-partition' }>, record: Buffer | null, gen: number): Promise<unknown> {
    switch (op.kind) {
      case 'put': {
        const live = op.record.value !== null;
        this.countLive(op.partition, (live ? 1 : 0) - (this.wasLive(op.partition, op.key) ? 1 : 0));
        this.setPending(op.partition, op.key, live, gen);
        return this.data.put([op.partition, op.key], record!);
      }
      case 'remove': {
        if (this.wasLive(op.partition, op.key)) this.countLive(op.partition, -1);
        this.setPending(op.partition, op.key, false, gen);
        return this.data.remove([op.partition, op.key]);
      }
      case 'meta':
        return this.meta.put(op.key, op.value);
      case 'meta-remove':
        return this.meta.remove(op.key);
    }
  }

  /** Was the key live after every write issued so far? */
  private wasLive(partition: number, key: string): boolean {
    const pend = this.pending.get(partition);
    if (pend !== undefined) {
      const hit = pend.keys.get(key);
      if (hit !== undefined) return hit.live;
      if (pend.resetGen !== null) return false;
    }
    const b = this.data.getBinaryFast([partition, key]);
    return b !== undefined && isLiveRecord(b);
  }

  private pendingOf(partition: number): { keys: Map<string, { live: boolean; gen: number }>; resetGen: number | null } {
    let pend = this.pending.get(partition);
    if (pend === undefined) this.pending.set(partition, (pend = { keys: new Map(), resetGen: null }));
    return pend;
  }

  private setPending(partition: number, key: string, live: boolean, gen: number): void {
    this.pendingOf(partition).keys.set(key, { live, gen });
    this.issued.push({ gen, partition, key });
  }

  /** The writes up to generation `gen` are committed (in order): reads outside a transaction see them now. */
  private settle(gen: number): void {
    const q = this.issued;
    let h = this.issuedHead;
    for (; h < q.length && q[h]!.gen <= gen; h++) {
      const { partition, key } = q[h]!;
      const pend = this.pending.get(partition);
      if (pend === undefined) continue;
      if (key === null) {
        if (pend.resetGen !== null && pend.resetGen <= gen) pend.resetGen = null;
      } else {
        const e = pend.keys.get(key);
        if (e !== undefined && e.gen <= gen) pend.keys.delete(key);
      }
      if (pend.keys.size === 0 && pend.resetGen === null) this.pending.delete(partition);
    }
    if (h === q.length) {
      this.issued = [];
      h = 0;
    } else if (h > 1024 && h * 2 > q.length) {
      this.issued = q.slice(h);
      h = 0;
    }
    this.issuedHead = h;
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
