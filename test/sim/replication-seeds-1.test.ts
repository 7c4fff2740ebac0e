// Replication simulator, shard 1 of the seed range (see replication-seeds.ts).
import { describe, it } from 'vitest';
import { defineRepShard } from './replication-seeds.js';

describe('replication simulator, shard 1', () => {
  defineRepShard(1, it);
});
