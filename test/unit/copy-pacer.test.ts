import { describe, expect, it } from 'vitest';
import { copyRequestKey, CopyPacer } from '../../src/runtime/copy-pacer.js';

const MiB = 1024 ** 2;

/** Drives a pacer: per window of 250 ms, `perWindow` chunks each taking rtt(window) ms. */
function drive(p: CopyPacer, windows: number, rtt: (w: number) => number, start = { t: 0, w: 0 }, perWindow = 4): { t: number; w: number } {
  let { t, w } = start;
  for (let i = 0; i < windows; i++, w++) {
    for (let j = 0; j < perWindow; j++) {
      const key = copyRequestKey('n1', { partition: j, session: 1, mode: 'full', fromSeq: 0, after: `k${w}` });
      p.requestSent(key, t);
      p.chunkReceived(key, t + rtt(w));
      t += 250 / perWindow;
    }
    p.update(t);
  }
  return { t, w };
}

describe('copy pacer', () => {
  it('starts at the floor and climbs to the ceiling while round trips stay at their base', () => {
    const p = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10 });
    expect(p.bytesPerS()).toBe(512 * 1024);
    drive(p, 40, () => 3);
    expect(p.bytesPerS()).toBe(32 * MiB);
    expect(p.queueingMs).toBe(0);
  });

  it('backs off to the floor while chunks queue well past the target, and climbs back after', () => {
    const p = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10 });
    let at = drive(p, 40, () => 3);
    expect(p.bytesPerS()).toBe(32 * MiB);
    at = drive(p, 3, () => 3 + 30, at); // 30 ms of queueing: at least halve each window
    expect(p.bytesPerS()).toBeLessThanOrEqual(4 * MiB);
    at = drive(p, 20, () => 33, at);
    expect(p.bytesPerS()).toBe(512 * 1024);
    expect(p.queueingMs).toBe(30);
    drive(p, 40, () => 3, at);
    expect(p.bytesPerS()).toBe(32 * MiB);
  });

  it('backs off when a tenth of the chunks queue past the target, though the median does not', () => {
    const p = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10 });
    let at = drive(p, 40, () => 3, undefined, 10);
    expect(p.bytesPerS()).toBe(32 * MiB);
    // One chunk in ten of every window waits 40 ms (a stall on one node); the other nine take the base.
    let n = 0;
    at = drive(p, 12, () => (n++ % 10 === 9 ? 43 : 3), at, 10);
    expect(p.bytesPerS()).toBe(512 * 1024);
    expect(p.queueingMs).toBe(40);
    // With the median as the window's delay, the same tail is ignored.
    const median = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10, delayPercentile: 0.5 });
    at = drive(median, 40, () => 3, undefined, 10);
    drive(median, 12, () => (n++ % 10 === 9 ? 43 : 3), at, 10);
    expect(median.bytesPerS()).toBe(32 * MiB);
  });

  it('holds near the rate at which queueing meets the target, for minutes (the base does not creep up)', () => {
    const p = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10 });
    // Queueing grows with the rate: 1 ms per MiB/s above 4 MiB/s; the equilibrium is 14 MiB/s.
    let at = drive(p, 1, () => 3);
    const rates: number[] = [];
    let probes = 0;
    for (let i = 0; i < 1200; i++) {
      const rate = p.bytesPerS();
      if (rate === 512 * 1024) probes++;
      rates.push(rate);
      at = drive(p, 1, () => 3 + Math.max(0, rate / MiB - 4), at);
    }
    // Five minutes: a two-window probe at the floor every 20 s re-measures the base.
    expect(probes).toBeGreaterThanOrEqual(2 * 14);
    expect(probes).toBeLessThanOrEqual(2 * 16);
    const late = rates.slice(-400).filter((r) => r > 512 * 1024);
    const mean = late.reduce((a, b) => a + b, 0) / late.length;
    expect(mean).toBeGreaterThan(10 * MiB);
    expect(mean).toBeLessThan(18 * MiB);
  });

  it('measures the base before its own load: copies that queue from their first chunk back off at once', () => {
    const p = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10 });
    // Chunks take 3 ms at the floor, and 33 ms at any higher rate (the copy saturates a CPU).
    const rttNow = () => (p.bytesPerS() <= 512 * 1024 ? 3 : 33);
    let at = drive(p, 12, rttNow);
    // It hovers at the floor (one step above it queues again).
    for (let i = 0; i < 20; i++) {
      at = drive(p, 1, rttNow, at);
      expect(p.bytesPerS()).toBeLessThanOrEqual(640 * 1024);
    }
  });

  it('probes again when copies resume after an idle spell', () => {
    const p = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10 });
    const at = drive(p, 40, () => 3);
    expect(p.bytesPerS()).toBe(32 * MiB);
    for (let t = at.t; t < at.t + 6_000; t += 50) p.update(t); // idle for 6 s
    p.requestSent('again', at.t + 6_000);
    expect(p.bytesPerS()).toBe(512 * 1024);
    p.update(at.t + 6_600);
    expect(p.bytesPerS()).toBe(32 * MiB);
  });

  it('keeps the rate when no chunk arrives, and ignores chunks it did not time', () => {
    const idle = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10 });
    idle.chunkReceived('unknown', 5);
    for (let t = 0; t < 10_000; t += 50) idle.update(t);
    expect(idle.bytesPerS()).toBe(512 * 1024);
    expect(idle.queueingMs).toBeNull();
    // Climbed part of the way, then no chunk for 10 s: the rate stays where it was.
    const p = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10 });
    const at = drive(p, 8, () => 3);
    const rate = p.bytesPerS();
    expect(rate).toBeGreaterThan(512 * 1024);
    expect(rate).toBeLessThan(32 * MiB);
    p.chunkReceived('unknown', at.t + 5);
    for (let t = at.t; t < at.t + 10_000; t += 50) p.update(t);
    expect(p.bytesPerS()).toBe(rate);
  });

  it('forgets the lowest round trip after its history, so a slower path is not taken for queueing forever', () => {
    const p = new CopyPacer({ maxBytesPerS: 32 * MiB, targetDelayMs: 10, baseHistoryMs: 6_000 });
    let at = drive(p, 4, () => 2);
    at = drive(p, 20, () => 40, at); // a new, slower path (e.g. another source)
    expect(p.bytesPerS()).toBe(512 * 1024);
    drive(p, 60, () => 40, at); // once the old base ages out, 40 ms is the base
    expect(p.queueingMs).toBe(0);
    expect(p.bytesPerS()).toBe(32 * MiB);
  });

  it('with targetDelayMs 0 copies always at the ceiling', () => {
    const p = new CopyPacer({ maxBytesPerS: 8 * MiB, targetDelayMs: 0 });
    expect(p.bytesPerS()).toBe(8 * MiB);
    drive(p, 10, () => 500);
    expect(p.bytesPerS()).toBe(8 * MiB);
  });

  it('never goes above a ceiling lower than the floor', () => {
    const p = new CopyPacer({ maxBytesPerS: 16 * 1024, targetDelayMs: 10 });
    expect(p.bytesPerS()).toBe(16 * 1024);
    drive(p, 10, () => 3);
    expect(p.bytesPerS()).toBe(16 * 1024);
  });

  it('matches a chunk to its request by peer, partition, session, mode, position and cursor', () => {
    const m = { partition: 3, session: 7, mode: 'delta', fromSeq: 12, after: null };
    expect(copyRequestKey('n1', m)).toBe(copyRequestKey('n1', { ...m }));
    expect(copyRequestKey('n1', m)).not.toBe(copyRequestKey('n2', m));
    expect(copyRequestKey('n1', m)).not.toBe(copyRequestKey('n1', { ...m, after: 'a' }));
    expect(copyRequestKey('n1', m)).not.toBe(copyRequestKey('n1', { ...m, mode: 'full' }));
  });
});
