// The lmdb engine's memory-layer arena (store/arena.ts): every entry reads back as it was
// added, whatever the mix of sizes, and positions stay small integers.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Arena } from '../../src/store/arena.js';

describe('Arena', () => {
  it('gives back every entry as added, across chunk boundaries and entries of their own chunk', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof({ weight: 20, arbitrary: fc.integer({ min: 0, max: 4000 }) }, { weight: 1, arbitrary: fc.integer({ min: 200_000, max: 1_500_000 }) }), { minLength: 1, maxLength: 300 }),
        (sizes) => {
          const arena = new Arena();
          const entries = sizes.map((n, i) => {
            const b = Buffer.alloc(n, i % 251);
            if (n > 0) b[n - 1] = 255 - (i % 251); // the last byte differs from the fill: an off-by-one shows
            return { b, pos: arena.add(b) };
          });
          expect(new Set(entries.map((e) => e.pos)).size).toBe(entries.length);
          for (const { b, pos } of entries) expect(arena.view(pos).equals(b)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('copies: changing the added buffer later changes nothing', () => {
    const arena = new Arena();
    const b = Buffer.from('record bytes');
    const pos = arena.add(b);
    b.fill(0);
    expect(arena.view(pos).toString()).toBe('record bytes');
  });

  it('keeps positions below 2^30 for a full layer of small records (V8 small integers)', () => {
    const arena = new Arena();
    const rec = Buffer.alloc(150, 7);
    let last = 0;
    // 40 MiB of records: more than a layer holds before it is checkpointed (32 MiB).
    for (let i = 0; i < (40 * 1024 * 1024) / 154; i++) last = arena.add(rec);
    expect(last).toBeLessThan(2 ** 30);
    expect(Number.isInteger(last)).toBe(true);
    expect(arena.view(last).equals(rec)).toBe(true);
  });
});
