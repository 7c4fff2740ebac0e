import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import type { PartitionId } from '../core/types.js';
import type { ScanOptions, Store, StoreStats, StoredRecord, WriteOp } from './store.js';
import { compareUtf8, inRange } from './scan.js';
import { decodeRecord, encodeRecord, isLiveRecord } from './record-codec.js';
import { FRAME_HEADER_BYTES, readWal, WriteAheadLog } from './wal.js';
import { Arena } from './arena.js';
import { decodeOps, encodeOps } from './wal-ops.js';

interface LmdbOptions {
  readonly path: string;
  readonly fsync: boolean;
  readonly mapSizeBytes: number;
  /** How long durable writes may wait in memory before a checkpoint carries them into the B-tree (ms). */
  readonly checkpointIntervalMs?: number;
  /**
   * A checkpoint failed (LMDB full, an I/O error): every later write fails. Acknowledged
   * writes are safe in the log and replay at the next open (after the map is enlarged, if
   * it was full).
   */
  readonly onFailure?: (e: Error) => void;
}

/**
 * New stores use 16 KiB pages (`lmdbPageSize`): with 4 KiB pages a record of a 1 KiB value
 * leaves room for only one more on its page, so the data file (and the mapped memory that
 * reads fault in) is about twice the data. An existing store keeps the page size it was
 * created with.
 */
export const lmdbPageSize = 16384;

/** Checkpoint early when the records waiting in memory hold this many bytes. */
const CHECKPOINT_BYTES = 32 * 1024 * 1024;
const CHECKPOINT_KEY = 'checkpoint-lsn';

/** In a layer's record maps: the key was removed. Any other value is a position in the layer's arena. */
const REMOVED = -1;

/**
 * Durable writes not yet in the B-tree. A key maps to the position of its newest record
 * in `arena` (REMOVED: removed); `reset` says the partition was dropped here, which hides
 * every older record of it. The records are kept encoded, in the arena, so that a layer is
 * a few buffers and maps of numbers for the garbage collector, not objects per write.
 */
interface Layer {
  readonly parts: Map<number, { readonly recs: Map<string, number>; reset: boolean }>;
  readonly arena: Arena;
  /** Metadata: the value, or null when removed. */
  readonly meta: Map<string, { readonly value: unknown; readonly bytes: Buffer } | null>;
  lastLsn: number;
  bytes: number;
}

const newLayer = (): Layer => ({ parts: new Map(), arena: new Arena(), meta: new Map(), lastLsn: 0, bytes: 0 });
const isEmpty = (l: Layer): boolean => l.parts.size === 0 && l.meta.size === 0;

/** The key's entry in layer l: a position, REMOVED, 'dropped' (its partition was), or undefined (older layers decide). */
function lookupIn(l: Layer | null, partition: number, key: string): number | 'dropped' | undefined {
  const part = l?.parts.get(partition);
  if (part === undefined) return undefined;
  const pos = part.recs.get(key);
  if (pos !== undefined) return pos;
  return part.reset ? 'dropped' : undefined;
}

/**
 * The key's newest durable record in layer l: its encoding (a view into the arena), null
 * when the layer says there is none (removed, or its partition dropped), undefined when
 * the layer does not decide.
 */
function bytesIn(l: Layer | null, partition: number, key: string): Buffer | null | undefined {
  const pos = lookupIn(l, partition, key);
  if (pos === undefined) return undefined;
  return pos === 'dropped' || pos === REMOVED ? null : l!.arena.view(pos);
}

/**
 * The lmdb engine: a write-ahead log in front of an LMDB B-tree, as etcd keeps a WAL in
 * front of bbolt.
 *
 * - `write` appends the write's ops as one frame to the log (wal.ts; group-committed,
 *   fsynced) and resolves once the frame is on disk. Only then do readers see it: from
 *   here on it sits in the memory layer `mem`, which every read consults first.
 * - A checkpoint moves `mem` into LMDB in one transaction, fsynced, together with the last
 *   LSN it holds; while that runs the layer is `flushing`, still read, and new writes
 *   gather in a fresh `mem`. Log segments whose frames are all checkpointed are deleted.
 * - Opening replays the frames after the checkpointed LSN into LMDB (the ops overwrite or
 *   remove whole keys, so replaying a frame twice changes nothing), then starts an empty log.
 *
 * Why: with random keys every put dirties its own B-tree page, and fsyncing LMDB on the
 * acknowledgement path wrote a 16 KiB page per put, twice synced per commit. Now a put
 * costs a few hundred sequential bytes on that path, and the checkpoint writes each page
 * once for all the puts that touched it since the last one.
 *
 * LMDB itself keeps fsync on (its commits are crash-safe on their own, so the log only has
 * to cover what came after the last checkpoint); with `fsync: false` (`storage.fsync`)
 * neither the log nor LMDB syncs, and a power loss can take acknowledged writes.
 */
export class LmdbStore implements Store {
  readonly engine = 'lmdb' as const;
  private readonly root: RootDatabase;
  /** Records in record-codec.ts's binary layout, keyed by (partition, key). */
  private readonly data: Database<Buffer, [number, string]>;
  private readonly meta: Database<unknown, string>;
  private readonly walDb: Database<number, string>;
  private readonly wal: WriteAheadLog;
  private mem: Layer = newLayer();
  private flushing: Layer | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private checkpointDone: Promise<void> = Promise.resolve();
  private readonly checkpointIntervalMs: number;
  private readonly path: string;
  private readonly onFailure: ((e: Error) => void) | undefined;
  private failed: Error | null = null;
  private closed = false;
  private checkpoints = 0;
  private lastCheckpointSeconds = 0;
  /** What the open replayed from the log. */
  recovery = { frames: 0, ops: 0, ms: 0 };
  private liveKeys = 0;
  /** Live (non-tombstone) keys per partition: a dropped partition is then counted out without reading it. */
  private readonly livePerPartition = new Map<number, number>();

  constructor(opts: LmdbOptions) {
    mkdirSync(opts.path, { recursive: true });
    this.path = opts.path;
    this.onFailure = opts.onFailure;
    this.checkpointIntervalMs = opts.checkpointIntervalMs ?? 100;
    this.root = open({
      path: opts.path,
      noSync: !opts.fsync,
      // Checkpoints wait for their commit to be durable before the log is released.
      overlappingSync: false,
      mapSize: opts.mapSizeBytes,
      maxDbs: 4,
      pageSize: lmdbPageSize,
      cache: false,
    });
    this.data = this.root.openDB<Buffer, [number, string]>({ name: 'kv', encoding: 'binary', cache: false });
    this.meta = this.root.openDB<unknown, string>({ name: 'meta', cache: false });
    this.walDb = this.root.openDB<number, string>({ name: 'wal', cache: false });
    let lastLsn: number;
    try {
      lastLsn = this.replay(opts.path);
    } catch (e) {
      void this.root.close();
      throw e;
    }
    WriteAheadLog.removeAll(opts.path);
    this.wal = new WriteAheadLog(opts.path, opts.fsync, lastLsn + 1);
    for (const { key, value } of this.data.getRange({})) if (isLiveRecord(value)) this.countLive(key[0], 1);
  }

  /** Carries the log's frames after the checkpoint into LMDB (one synced transaction). Returns the last LSN seen. */
  private replay(dir: string): number {
    const started = performance.now();
    const checkpointed = this.walDb.get(CHECKPOINT_KEY) ?? 0;
    const frames = readWal(dir).filter((f) => f.lsn > checkpointed);
    if (frames.length === 0) return checkpointed;
    const last = frames[frames.length - 1]!.lsn;
    let count = 0;
    this.root.transactionSync(() => {
      for (const f of frames) {
        for (const op of decodeOps(f.payload)) {
          count++;
          switch (op.kind) {
            case 'put':
              this.data.putSync([op.partition, op.key], op.bytes);
              break;
            case 'remove':
              this.data.removeSync([op.partition, op.key]);
              break;
            case 'remove-partition':
              for (const k of this.data.getKeys({ start: [op.partition, ''], end: [op.partition + 1, ''] })) this.data.removeSync(k);
              break;
            case 'meta':
              this.meta.putSync(op.key, this.metaCodec().decode(op.bytes));
              break;
            case 'meta-bytes':
              this.meta.putSync(op.key, Buffer.from(op.bytes));
              break;
            case 'meta-remove':
              this.meta.removeSync(op.key);
              break;
          }
        }
      }
      this.walDb.putSync(CHECKPOINT_KEY, last);
    });
    this.recovery = { frames: frames.length, ops: count, ms: Math.round(performance.now() - started) };
    return last;
  }

  /** The meta database's own MessagePack encoder: a logged value replays to exactly what a direct put would store. */
  private metaCodec(): { encode(v: unknown): Uint8Array; decode(b: Uint8Array): unknown } {
    return (this.meta as unknown as { encoder: { encode(v: unknown): Uint8Array; decode(b: Uint8Array): unknown } }).encoder;
  }

  /** The key's newest durable record, encoded, from the newest layer that decides it; undefined when none does (LMDB decides). */
  private layered(partition: number, key: string): Buffer | null | undefined {
    const b = bytesIn(this.mem, partition, key);
    return b !== undefined ? b : bytesIn(this.flushing, partition, key);
  }

  get(partition: PartitionId, key: string): StoredRecord | undefined {
    const l = this.layered(partition, key);
    if (l === null) return undefined;
    // A view into the layer's arena, or into lmdb's reused read buffer: decoded (value copied out) at once.
    const b = l !== undefined ? l : this.data.getBinaryFast([partition, key]);
    return b === undefined ? undefined : decodeRecord(b);
  }

  /** Is the key's newest durable record live? */
  private isLive(partition: number, key: string): boolean {
    const l = this.layered(partition, key);
    const b = l !== undefined ? l : this.data.getBinaryFast([partition, key]);
    return b !== undefined && b !== null && isLiveRecord(b);
  }

  scan(partition: PartitionId, opts: ScanOptions): { key: string; record: StoredRecord }[] {
    // The layers' entries for this partition, newest first; `hidden`: LMDB's records of it were dropped.
    const over = new Map<string, StoredRecord | null>();
    let hidden = false;
    for (let l: Layer | null = this.mem; l !== null && !hidden; l = l === this.mem ? this.flushing : null) {
      const part = l.parts.get(partition);
      if (part === undefined) continue;
      for (const [k, pos] of part.recs) if (!over.has(k) && inRange(k, opts) === 'take') over.set(k, pos === REMOVED ? null : decodeRecord(l.arena.view(pos)));
      hidden = part.reset;
    }
    const extra = [...over.keys()].sort(compareUtf8);
    let x = 0;
    const out: { key: string; record: StoredRecord }[] = [];
    const take = (key: string, record: StoredRecord | null): boolean => {
      if (record !== null && (opts.includeTombstones || record.value !== null)) out.push({ key, record });
      return out.length >= opts.limit;
    };
    if (!hidden) {
      const start = compareUtf8(opts.after, opts.prefix) > 0 ? opts.after : opts.prefix;
      for (const { key, value } of this.data.getRange({ start: [partition, start], end: [partition + 1, ''] })) {
        const k = key[1];
        const verdict = inRange(k, opts);
        if (verdict === 'stop') break;
        if (verdict === 'skip') continue;
        for (; x < extra.length && compareUtf8(extra[x]!, k) < 0; x++) if (take(extra[x]!, over.get(extra[x]!)!)) return out;
        if (x < extra.length && extra[x] === k) {
          if (take(k, over.get(k)!)) return out;
          x++;
          continue;
        }
        if (!opts.includeTombstones && !isLiveRecord(value)) continue;
        if (take(k, decodeRecord(value))) return out;
      }
    }
    for (; x < extra.length; x++) if (take(extra[x]!, over.get(extra[x]!)!)) return out;
    return out;
  }

  write(ops: readonly WriteOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    if (this.failed !== null) return Promise.reject(this.failed);
    // Everything is encoded before anything is logged: a record that cannot be stored
    // fails the whole write, not half of it. A byte-string meta value (a partition's meta,
    // meta-codec.ts) is logged as it is; the checkpoint encodes it for the meta database.
    const encoded = ops.map((op) => (op.kind === 'put' ? encodeRecord(op.record) : op.kind === 'meta' ? this.encodeMeta(op.value) : null));
    const { lsn, done } = this.wal.append(encodeOps(ops, encoded, FRAME_HEADER_BYTES), () => this.apply(ops, encoded, lsn));
    return done;
  }

  private encodeMeta(v: unknown): Buffer {
    if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    return Buffer.from(this.metaCodec().encode(v));
  }

  /** A logged write is durable: it enters the memory layer (readers see it from now on). */
  private apply(ops: readonly WriteOp[], encoded: readonly (Buffer | null)[], lsn: number): void {
    const l = this.mem;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      switch (op.kind) {
        case 'put': {
          const live = op.record.value !== null;
          this.countLive(op.partition, (live ? 1 : 0) - (this.isLive(op.partition, op.key) ? 1 : 0));
          // Copied into the arena: the record must not pin the caller's buffer (a whole
          // request or copy chunk) until the checkpoint.
          this.partOf(l, op.partition).recs.set(op.key, l.arena.add(encoded[i]!));
          l.bytes += encoded[i]!.length + op.key.length;
          break;
        }
        case 'remove':
          if (this.isLive(op.partition, op.key)) this.countLive(op.partition, -1);
          this.partOf(l, op.partition).recs.set(op.key, REMOVED);
          l.bytes += op.key.length;
          break;
        case 'remove-partition': {
          this.countLive(op.partition, -(this.livePerPartition.get(op.partition) ?? 0));
          const part = this.partOf(l, op.partition);
          part.recs.clear();
          part.reset = true;
          break;
        }
        case 'meta':
          l.meta.set(op.key, { value: op.value, bytes: encoded[i]! });
          l.bytes += encoded[i]!.length;
          break;
        case 'meta-remove':
          l.meta.set(op.key, null);
          break;
      }
    }
    l.lastLsn = lsn;
    if (l.bytes >= CHECKPOINT_BYTES) this.checkpoint();
    else if (this.checkpointTimer === null && this.flushing === null) this.scheduleCheckpoint();
  }

  private partOf(l: Layer, partition: number) {
    let part = l.parts.get(partition);
    if (part === undefined) l.parts.set(partition, (part = { recs: new Map(), reset: false }));
    return part;
  }

  private scheduleCheckpoint(): void {
    if (this.closed || this.checkpointTimer !== null) return;
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = null;
      this.checkpoint();
    }, this.checkpointIntervalMs);
    this.checkpointTimer.unref();
  }

  /**
   * Moves the memory layer into LMDB: its puts and removes issued in one synchronous run,
   * which lmdb-js commits as one transaction, fsynced, with the layer's last LSN. One at a
   * time; a layer that fills meanwhile waits for this one.
   */
  private checkpoint(): void {
    if (this.flushing !== null || isEmpty(this.mem) || this.failed !== null) return;
    if (this.checkpointTimer !== null) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
    const l = this.mem;
    this.mem = newLayer();
    this.flushing = l;
    let last: Promise<unknown> = Promise.resolve();
    for (const [p, part] of l.parts) {
      if (part.reset) for (const k of this.data.getKeys({ start: [p, ''], end: [p + 1, ''] })) if (!part.recs.has(k[1])) last = this.data.remove(k);
      for (const [k, pos] of part.recs) last = pos === REMOVED ? this.data.remove([p, k]) : this.data.put([p, k], l.arena.view(pos));
    }
    for (const [k, e] of l.meta) last = e === null ? this.meta.remove(k) : this.meta.put(k, e.value);
    last = this.walDb.put(CHECKPOINT_KEY, l.lastLsn);
    const started = performance.now();
    this.checkpointDone = last.then(
      () => {
        this.checkpoints++;
        this.lastCheckpointSeconds = (performance.now() - started) / 1000;
        this.flushing = null;
        this.wal.release(l.lastLsn);
        if (!isEmpty(this.mem)) {
          if (this.mem.bytes >= CHECKPOINT_BYTES || this.closed) this.checkpoint();
          else this.scheduleCheckpoint();
        }
      },
      (e: unknown) => {
        // LMDB could not commit: what it holds is unknown. Every later write fails, and
        // the node stops (Store.write's contract); the log still has every acknowledged write.
        this.failed = e instanceof Error ? e : new Error(String(e));
        this.onFailure?.(this.failed);
      },
    );
  }

  private countLive(partition: number, delta: number): void {
    if (delta === 0) return;
    this.liveKeys += delta;
    const n = (this.livePerPartition.get(partition) ?? 0) + delta;
    if (n === 0) this.livePerPartition.delete(partition);
    else this.livePerPartition.set(partition, n);
  }

  getMeta<T>(key: string): T | undefined {
    let e = this.mem.meta.get(key); // null (removed) decides too
    if (e === undefined) e = this.flushing?.meta.get(key);
    if (e !== undefined) return e === null ? undefined : (e.value as T);
    return this.meta.get(key) as T | undefined;
  }

  scanMeta<T>(prefix: string): { key: string; value: T }[] {
    const all = new Map<string, unknown>();
    for (const { key, value } of this.meta.getRange({ start: prefix })) {
      if (!key.startsWith(prefix)) break;
      all.set(key, value);
    }
    for (const l of [this.flushing, this.mem]) {
      if (l === null) continue;
      for (const [k, e] of l.meta) {
        if (!k.startsWith(prefix)) continue;
        if (e === null) all.delete(k);
        else all.set(k, e.value);
      }
    }
    return [...all.keys()].sort(compareUtf8).map((key) => ({ key, value: all.get(key) as T }));
  }

  countKeys(): number {
    return this.liveKeys;
  }

  stats(): StoreStats {
    return {
      logAppends: this.wal.appends,
      logFrames: this.wal.frames,
      logBytes: this.wal.bytes,
      logSegments: this.wal.segmentCount,
      checkpoints: this.checkpoints,
      lastCheckpointSeconds: this.lastCheckpointSeconds,
      unflushedBytes: this.mem.bytes + (this.flushing?.bytes ?? 0),
    };
  }

  /** Every durable write into LMDB, then the log is empty: a clean close leaves no frames to replay. */
  async close(): Promise<void> {
    this.closed = true;
    await this.wal.idle();
    await this.checkpointDone;
    this.checkpoint();
    await this.checkpointDone;
    if (this.checkpointTimer !== null) clearTimeout(this.checkpointTimer);
    this.wal.close();
    if (this.failed === null) WriteAheadLog.removeAll(this.path);
    await this.root.close();
  }
}
