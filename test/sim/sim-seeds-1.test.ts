// Seeded simulator runs, shard 1 of the CI seed range (see seeds.ts). Two files so that
// vitest runs the shards in parallel, one per core.
import { describe, it } from 'vitest';
import { defineShard } from './seeds.js';

describe('membership simulator, shard 1', () => {
  defineShard(1, it);
});
