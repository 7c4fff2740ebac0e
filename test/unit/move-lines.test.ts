// `ringkv cluster status` renders GET /v1/cluster's `move` (docs/rebalancing.md#progress):
// what moves, how far, ETA, and a progress bar only on a terminal.
import { describe, expect, it } from 'vitest';
import { moveLines } from '../../src/cli/cluster-status.js';

const move = { member: 'n4', kind: 'add' as const, partitionsMoving: 84, partitionCopies: 84, partitionCopiesConfirmed: 21, keysCopied: 1200, bytesCopied: 3 * 1024 ** 2, etaSeconds: 9 };

describe('cluster status: the move in progress', () => {
  it('says what moves and how far, with an ETA', () => {
    expect(moveLines(move, false)).toEqual(['moving: adding n4: 84 partitions change owners; 21/84 new copies confirmed, 1200 keys (3.0 MiB) copied, about 9 s left']);
  });
  it('draws a progress bar on a terminal, and says decommissioning for a removal', () => {
    const lines = moveLines({ ...move, kind: 'decommission', member: 'n2', etaSeconds: null }, true);
    expect(lines[0]).toBe('moving: decommissioning n2: 84 partitions change owners; 21/84 new copies confirmed, 1200 keys (3.0 MiB) copied');
    expect(lines[1]).toBe(`  [${'#'.repeat(8)}${'-'.repeat(22)}] 25%`);
  });
  it('prints nothing when nothing moves', () => {
    expect(moveLines(null, true)).toEqual([]);
  });
});
