import { expect } from 'vitest';
// Seed selection for the simulator tests.
//
//   npm test                 CI budget: seeds 1..defaultSeedCount, split over the sim-seeds-*
//                            files so that vitest runs them on both cores
//   SEEDS=<count> npm run sim  more seeds
//   SEED=<n> npm run sim       replay exactly one seed, printing its trace
//   SEED_BASE=<n>              start somewhere else (explore new seeds)

import { runSim, SimViolation, type SimOptions, type SimStats } from './sim.js';

export const defaultSeedCount = 2000;
/** Files that share the seed range; each takes every shardCount-th chunk. */
export const shardCount = 2;
export const chunkSize = 100;

export function replaySeed(): number | null {
  const s = process.env['SEED'];
  return s === undefined || s === '' ? null : Number.parseInt(s, 10);
}

export function seedCount(): number {
  const s = process.env['SEEDS'];
  return s === undefined || s === '' ? defaultSeedCount : Number.parseInt(s, 10);
}

export function seedBase(): number {
  const s = process.env['SEED_BASE'];
  return s === undefined || s === '' ? 1 : Number.parseInt(s, 10);
}

/** Chunks [first, last] of the seed range that belong to this shard. */
export function chunksFor(shard: number): Array<readonly [number, number]> {
  const base = seedBase();
  const count = seedCount();
  const chunks: Array<readonly [number, number]> = [];
  for (let i = 0, c = 0; i < count; i += chunkSize, c++) {
    if (c % shardCount === shard) chunks.push([base + i, base + Math.min(count, i + chunkSize) - 1]);
  }
  return chunks;
}

export function runSeeds(first: number, last: number, extra: Omit<SimOptions, 'seed'> = {}): SimStats[] {
  const stats: SimStats[] = [];
  for (let seed = first; seed <= last; seed++) stats.push(runSim({ ...extra, seed }));
  return stats;
}

/** Run seeds until one fails; returns the violation and how many seeds it took. */
export function findViolation(
  first: number,
  maxSeeds: number,
  extra: Omit<SimOptions, 'seed'>,
): { violation: SimViolation; seedsRun: number } | null {
  for (let i = 0; i < maxSeeds; i++) {
    try {
      runSim({ ...extra, seed: first + i, traceLength: 0 });
    } catch (e) {
      if (e instanceof SimViolation) return { violation: e, seedsRun: i + 1 };
      throw e;
    }
  }
  return null;
}

/** Declare this shard's chunks as vitest tests (or the replay of SEED, in shard 0). */
export function defineShard(shard: number, it: ItFn): void {
  const replay = replaySeed();
  if (replay !== null) {
    if (shard !== 0) {
      // The other shards check that the replay itself is deterministic.
      it(`seed=${replay} replays identically`, () => {
        expect(JSON.stringify(runSim({ seed: replay, traceLength: 0 }))).toBe(JSON.stringify(runSim({ seed: replay, traceLength: 0 })));
      }, 240_000);
      return;
    }
    it(`replays seed=${replay}`, () => {
      const stats = runSim({ seed: replay, traceLength: 40 });
      console.log(`seed=${replay} passed`, stats);
    }, 120_000);
    return;
  }
  for (const [first, last] of chunksFor(shard)) {
    it(`seeds ${first}..${last}`, () => {
      runSeeds(first, last);
    }, 120_000);
  }
}

interface ItFn {
  (name: string, fn: () => void, timeoutMs?: number): void;
}
