// Replication simulator, shard 0 of the seed range (see replication-seeds.ts).
import { describe, it } from 'vitest';
import { defineRepShard } from './replication-seeds.js';

describe('replication simulator, shard 0', () => {
  defineRepShard(0, it);
});
