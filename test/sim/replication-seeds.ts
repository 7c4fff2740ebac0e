import { expect } from 'vitest';
// Seed selection for the replication simulator, read the same way as seeds.ts:
//   npm run sim                 CI budget: seeds 1..repDefaultSeedCount over two files (both cores)
//   SEED=<n> npm run sim        replay one seed, with its trace
//   SEEDS=<count> / SEED_BASE=<n>   more seeds / other seeds
import { replaySeed, seedBase } from './seeds.js';
import { runRepSim, RepSimViolation, type RepSimOptions } from './replication-sim.js';

export const repDefaultSeedCount = 200;
const shardCount = 2;
const chunkSize = 25;

function repSeedCount(): number {
  const s = process.env['SEEDS'];
  return s === undefined || s === '' ? repDefaultSeedCount : Number.parseInt(s, 10);
}

export function findRepViolation(first: number, maxSeeds: number, extra: Omit<RepSimOptions, 'seed'>): { violation: RepSimViolation; seedsRun: number } | null {
  for (let i = 0; i < maxSeeds; i++) {
    try {
      runRepSim({ ...extra, seed: first + i, traceLength: 0 });
    } catch (e) {
      if (e instanceof RepSimViolation) return { violation: e, seedsRun: i + 1 };
      throw e;
    }
  }
  return null;
}

interface ItFn {
  (name: string, fn: () => void, timeoutMs?: number): void;
}

export function defineRepShard(shard: number, it: ItFn): void {
  const replay = replaySeed();
  if (replay !== null) {
    if (shard !== 0) {
      // The other shards check that the replay itself is deterministic.
      it(`replication: seed=${replay} replays identically`, () => {
        expect(JSON.stringify(runRepSim({ seed: replay, traceLength: 0 }))).toBe(JSON.stringify(runRepSim({ seed: replay, traceLength: 0 })));
      }, 240_000);
      return;
    }
    it(`replication: replays seed=${replay}`, () => {
      console.log(`seed=${replay} passed`, runRepSim({ seed: replay, traceLength: 60 }));
    }, 120_000);
    return;
  }
  const base = seedBase();
  const count = repSeedCount();
  for (let i = 0, c = 0; i < count; i += chunkSize, c++) {
    if (c % shardCount !== shard) continue;
    const first = base + i;
    const last = base + Math.min(count, i + chunkSize) - 1;
    it(`replication seeds ${first}..${last}`, () => {
      for (let seed = first; seed <= last; seed++) runRepSim({ seed });
    }, 120_000);
  }
}
