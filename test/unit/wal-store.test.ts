// The lmdb engine's write-ahead log: what a reader sees is what the memory engine (the
// model) would show after the same writes, whichever of them are still in the log's memory
// layer, being checkpointed, or in the B-tree; acknowledged writes survive kill -9; a torn
// last append is dropped, corruption elsewhere stops the open with its place.
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { partitionId } from '../../src/core/types.js';
import type { VectorClock } from '../../src/core/vector-clock.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { Store, WriteOp } from '../../src/store/store.js';
import { encodeRecord } from '../../src/store/record-codec.js';
import { FRAME_HEADER_BYTES, readWal, WriteAheadLog } from '../../src/store/wal.js';
import { encodeOps } from '../../src/store/wal-ops.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'ringkv-wal-'));
  dirs.push(d);
  return d;
};

const KEYS = ['', 'a', 'ab', 'b', 'é', '😀', 'z'];
const PARTS = [0, 1, 2];

const opArb: fc.Arbitrary<WriteOp> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...PARTS), fc.constantFrom(...KEYS), fc.option(fc.string({ maxLength: 6 }), { freq: 4 }), fc.nat(50)).map(
    ([p, key, v, n]): WriteOp => ({
      kind: 'put',
      partition: partitionId(p),
      key,
      record: { value: v === null ? null : new TextEncoder().encode(v), clock: [['n1', n + 1]] as unknown as VectorClock, epoch: 1, seq: n },
    }),
  ) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...PARTS), fc.constantFrom(...KEYS)).map(([p, key]): WriteOp => ({ kind: 'remove', partition: partitionId(p), key })) },
  { weight: 1, arbitrary: fc.constantFrom(...PARTS).map((p): WriteOp => ({ kind: 'remove-partition', partition: partitionId(p) })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('m/1', 'm/2', 'n/1'), fc.nat(9)).map(([key, n]): WriteOp => ({ kind: 'meta', key, value: { n, list: [n, 'x'] } })) },
  // A byte-string value (as partition metas are) is logged as it is, not as MessagePack.
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('m/1', 'm/2', 'n/1'), fc.uint8Array({ maxLength: 40 })).map(([key, b]): WriteOp => ({ kind: 'meta', key, value: Buffer.from(b) })) },
  { weight: 1, arbitrary: fc.constantFrom('m/1', 'm/2', 'n/1').map((key): WriteOp => ({ kind: 'meta-remove', key })) },
);

type Step = { kind: 'write'; ops: WriteOp[]; wait: boolean } | { kind: 'settle' } | { kind: 'reopen' } | { kind: 'crash' };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.array(opArb, { minLength: 1, maxLength: 5 }), fc.boolean()).map(([ops, wait]): Step => ({ kind: 'write', ops, wait })) },
  { weight: 2, arbitrary: fc.constant<Step>({ kind: 'settle' }) },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: 'reopen' }) },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: 'crash' }) },
);

/** Everything a reader can see, in a comparable form. */
/** A byte-string meta value as plain numbers: engines may hand back a Buffer or a Uint8Array. */
const bytesAsArray = (v: unknown): unknown => (v instanceof Uint8Array ? { bytes: [...v] } : v);

function view(s: Store): unknown {
  const dec = (v: Uint8Array | null): string | null => (v === null ? null : new TextDecoder().decode(v));
  return {
    count: s.countKeys(),
    gets: PARTS.flatMap((p) => KEYS.map((k) => { const r = s.get(partitionId(p), k); return r === undefined ? null : [dec(r.value), r.clock]; })),
    scans: PARTS.flatMap((p) =>
      [true, false].flatMap((includeTombstones) =>
        [{ prefix: '', after: '' }, { prefix: 'a', after: '' }, { prefix: '', after: 'ab' }].map((o) =>
          s.scan(partitionId(p), { ...o, limit: 3, includeTombstones }).map((r) => [r.key, dec(r.record.value)]),
        ),
      ),
    ),
    meta: ['m/1', 'm/2', 'n/1'].map((k) => bytesAsArray(s.getMeta(k) ?? null)),
    scanMeta: s.scanMeta('m/').map(({ key, value }) => ({ key, value: bytesAsArray(value) })),
  };
}

describe('lmdb store with its write-ahead log', () => {
  it('shows exactly what the memory engine shows, across checkpoints and reopens (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 25 }), fc.constantFrom(1, 1_000_000), async (steps, interval) => {
        let dir = tmp();
        const open = (): LmdbStore => new LmdbStore({ path: dir, fsync: false, mapSizeBytes: 32 * 1024 * 1024, checkpointIntervalMs: interval });
        let s = open();
        const model = new MemoryStore();
        let inFlight: Promise<void>[] = [];
        try {
          for (const step of steps) {
            if (step.kind === 'write') {
              inFlight.push(s.write(step.ops));
              await model.write(step.ops);
              if (!step.wait) continue;
              await Promise.all(inFlight);
            } else if (step.kind === 'settle') {
              await Promise.all(inFlight);
              await new Promise((r) => setTimeout(r, 5));
            } else if (step.kind === 'reopen' || interval === 1) {
              await Promise.all(inFlight);
              await s.close();
              s = open();
            } else {
              // A crash: the files as they are (no checkpoint ran: the interval is long), opened
              // as a copy while the first store still runs; the copy must replay its log.
              await Promise.all(inFlight);
              const copy = tmp();
              cpSync(dir, copy, { recursive: true });
              await s.close();
              rmSync(dir, { recursive: true, force: true });
              dir = copy;
              s = open();
            }
            inFlight = [];
            expect(view(s)).toEqual(view(model));
          }
          await Promise.all(inFlight);
          expect(view(s)).toEqual(view(model));
        } finally {
          await s.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 60 },
    );
  }, 60_000);

  it('keeps every acknowledged write through kill -9, and drops a torn last append', async () => {
    const dir = tmp();
    const storeJs = fileURLToPath(new URL('../../dist/store/lmdb-store.js', import.meta.url));
    // A child writes batches as fast as it can (fsync on), prints each batch once it is
    // acknowledged, and is killed with SIGKILL while writes are in flight.
    const script = `
      import { LmdbStore } from ${JSON.stringify(storeJs)};
      const s = new LmdbStore({ path: ${JSON.stringify(dir)}, fsync: true, mapSizeBytes: 64 * 1024 * 1024, checkpointIntervalMs: 20 });
      const rec = (i) => ({ value: Buffer.from('v' + i), clock: [['n1', i + 1]], epoch: 1, seq: i + 1 });
      let i = 0;
      const one = async () => {
        for (;;) {
          const b = i++;
          const ops = [0, 1, 2, 3].map((j) => ({ kind: 'put', partition: (b * 4 + j) % 7, key: 'k' + (b * 4 + j), record: rec(b * 4 + j) }));
          if (b % 50 === 49) ops.push({ kind: 'remove-partition', partition: 6 });
          ops.push({ kind: 'meta', key: 'batch/' + String(b).padStart(8, '0'), value: { b } });
          await s.write(ops);
          process.stdout.write('acked ' + b + '\\n');
        }
      };
      for (let c = 0; c < 8; c++) one();
    `;
    const file = join(dir, '..', `wal-child-${process.pid}-${Date.now()}.mjs`);
    writeFileSync(file, script);
    dirs.push(file);
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked: number[] = [];
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) if (l.startsWith('acked ')) acked.push(Number(l.slice(6)));
      if (acked.length >= 3000 && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    });
    await new Promise((r) => child.on('exit', r));
    expect(acked.length).toBeGreaterThanOrEqual(3000);
    // The log still holds frames (nothing closed it); a torn append at its end is dropped.
    const segments = readdirSync(dir).filter((n) => n.startsWith('wal-')).sort();
    expect(segments.length).toBeGreaterThan(0);
    // The torn frame goes where the next append would have: after the last frame, over
    // the zeroed space the log prepares ahead of its appends.
    const last = join(dir, segments[segments.length - 1]!);
    const bytes = readFileSync(last);
    let end = 0;
    while (end + FRAME_HEADER_BYTES <= bytes.length && bytes.readUInt32LE(end) !== 0) end += FRAME_HEADER_BYTES + bytes.readUInt32LE(end);
    expect(bytes.subarray(end).every((b) => b === 0)).toBe(true); // what follows the frames is zeros
    const torn = Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
    const out = Buffer.alloc(Math.max(bytes.length, end + torn.length));
    bytes.copy(out);
    torn.copy(out, end);
    writeFileSync(last, out);

    const s = new LmdbStore({ path: dir, fsync: true, mapSizeBytes: 64 * 1024 * 1024 });
    try {
      for (const b of acked) {
        expect(s.getMeta(`batch/${String(b).padStart(8, '0')}`)).toEqual({ b });
        for (let j = 0; j < 4; j++) {
          const k = b * 4 + j;
          const p = k % 7;
          if (p === 6) continue; // dropped by a later remove-partition, maybe
          expect(new TextDecoder().decode(s.get(partitionId(p), `k${k}`)!.value!)).toBe(`v${k}`);
        }
      }
      expect(s.recovery.frames).toBeGreaterThan(0);
      expect(s.recovery.ops).toBeGreaterThanOrEqual(s.recovery.frames);
      // The replay went into the B-tree and the log was started afresh.
      expect(readdirSync(dir).filter((n) => n.startsWith('wal-')).length).toBe(1);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('appends into zeroed space ahead of them (fsync on), and reads every frame back across segments that end in zeros', async () => {
    const dir = tmp();
    const payload = (i: number): Buffer => {
      const b = Buffer.alloc(FRAME_HEADER_BYTES + 4 + 300 * i, i);
      b.writeUInt32LE(0, FRAME_HEADER_BYTES);
      return b;
    };
    const w1 = new WriteAheadLog(dir, true, 1);
    const first = [1, 2, 3].map((i) => w1.append(payload(i), () => undefined).done);
    await Promise.all(first);
    await w1.idle();
    w1.close();
    const [seg1] = readdirSync(dir).filter((n) => n.startsWith('wal-'));
    const bytes = readFileSync(join(dir, seg1!));
    const framesEnd = [1, 2, 3].reduce((n, i) => n + payload(i).length, 0);
    // The segment was zero-filled ahead of the appends: a MiB of it, zeros after the frames.
    expect(bytes.length).toBeGreaterThanOrEqual(1024 * 1024);
    expect(bytes.subarray(framesEnd).every((b) => b === 0)).toBe(true);
    // A later segment: the zeros that end the first one are not mistaken for corruption.
    const w2 = new WriteAheadLog(dir, true, 4);
    await Promise.all([4, 5].map((i) => w2.append(payload(i), () => undefined).done));
    await w2.idle();
    w2.close();
    const frames = readWal(dir);
    expect(frames.map((f) => f.lsn)).toEqual([1, 2, 3, 4, 5]);
    for (const f of frames) expect(f.payload.equals(payload(f.lsn).subarray(FRAME_HEADER_BYTES))).toBe(true);
  });

  // Large appends around the zero-fill: one that reaches past a fill in flight waits for it,
  // one that reaches past the filled space extends the file, and fills start again after it.
  // (The race the wait prevents, zeros landing after a frame they overlap, is a matter of
  // thread timing; this test checks the outcome of these paths, it cannot force the race.)
  it('reads back large appends that reach past the zero-filled space', async () => {
    const dir = tmp();
    const frame = (bytes: number, fill: number): Buffer => {
      const b = Buffer.alloc(bytes, fill);
      b.writeUInt32LE(1, FRAME_HEADER_BYTES); // the log does not read its payloads
      return b;
    };
    const wal = new WriteAheadLog(dir, true, 1);
    // The first fill (1 MiB from 0) is in flight from the constructor on: these cross it.
    const sizes = [700 * 1024, 2 * 1024 * 1024, 300 * 1024, 5000, 1500 * 1024];
    const frames = sizes.map((n, i) => frame(n, 0x11 * (i + 1)));
    await Promise.all(frames.map((f) => wal.append(f, () => undefined).done));
    await wal.idle();
    wal.close();
    const read = readWal(dir);
    expect(read.map((f) => f.lsn)).toEqual([1, 2, 3, 4, 5]);
    for (const f of read) expect(f.payload.equals(frames[f.lsn - 1]!.subarray(FRAME_HEADER_BYTES))).toBe(true);
  });

  it('refuses to open when a frame before the last segment is corrupt, naming the file and byte', async () => {
    const dir = tmp();
    const wal = new WriteAheadLog(dir, false, 1);
    const rec = { value: new TextEncoder().encode('v'), clock: [['n1', 1]] as unknown as VectorClock, epoch: 1, seq: 1 };
    const ops: WriteOp[] = [{ kind: 'put', partition: partitionId(0), key: 'a', record: rec }];
    await wal.append(encodeOps(ops, [encodeRecord(rec)], FRAME_HEADER_BYTES), () => undefined).done;
    await wal.idle();
    wal.close();
    const segment = readdirSync(dir).find((n) => n.startsWith('wal-'))!;
    // Intact, it replays.
    let s = new LmdbStore({ path: dir, fsync: false, mapSizeBytes: 32 * 1024 * 1024 });
    expect(new TextDecoder().decode(s.get(partitionId(0), 'a')!.value!)).toBe('v');
    await s.close();
    // Damaged, with a later segment after it: corruption, not a torn tail.
    const w2 = new WriteAheadLog(dir, false, 1);
    await w2.append(encodeOps(ops, [encodeRecord(rec)], FRAME_HEADER_BYTES), () => undefined).done;
    w2.close();
    writeFileSync(join(dir, 'wal-00000000000000ff.log'), Buffer.alloc(0));
    const bytes = readFileSync(join(dir, segment));
    bytes[20]! ^= 0xff;
    writeFileSync(join(dir, segment), bytes);
    expect(() => new LmdbStore({ path: dir, fsync: false, mapSizeBytes: 32 * 1024 * 1024 })).toThrow(`${join(dir, segment)} is corrupt at byte 0: a CRC mismatch`);
    s = new LmdbStore({ path: join(dir, 'other'), fsync: false, mapSizeBytes: 32 * 1024 * 1024 }); // the node still opens stores
    await s.close();
  });

  it('counts its appends, writes, bytes and checkpoints, and empties the memory layer at each checkpoint', async () => {
    const dir = tmp();
    const s = new LmdbStore({ path: dir, fsync: false, mapSizeBytes: 32 * 1024 * 1024, checkpointIntervalMs: 5 });
    const rec = { value: new TextEncoder().encode('value'), clock: [['n1', 1]] as unknown as VectorClock, epoch: 1, seq: 1 };
    // Ten writes issued at once: the first goes out alone, the other nine wait and share the next append.
    await Promise.all(Array.from({ length: 10 }, (_, i) => s.write([{ kind: 'put', partition: partitionId(0), key: `k${i}`, record: rec }])));
    const a = s.stats();
    expect(a.logFrames).toBe(10);
    expect(a.logAppends).toBe(2);
    expect(a.logBytes).toBeGreaterThan(10 * 16);
    expect(a.unflushedBytes).toBeGreaterThan(0);
    expect(a.logSegments).toBe(1);
    await new Promise((r) => setTimeout(r, 100));
    const b = s.stats();
    expect(b.checkpoints).toBe(1);
    expect(b.unflushedBytes).toBe(0);
    expect(b.lastCheckpointSeconds).toBeGreaterThan(0);
    expect(s.countKeys()).toBe(10);
    await s.close();
  });
});
