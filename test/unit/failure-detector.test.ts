import { describe, expect, it } from 'vitest';
import { ageTicks, createFailureDetector, isAlive, livenessOf, onHeard, trackPeers } from '../../src/core/failure-detector.js';
import { nodeId } from '../../src/core/types.js';

const n2 = nodeId('n2');
const n3 = nodeId('n3');

describe('failure detector', () => {
  it('suspects a peer after suspectTicks of silence, and clears on the next message', () => {
    const fd = createFailureDetector(5);
    trackPeers(fd, [n2, n3], 0);
    expect(livenessOf(fd, n2, 5)).toBe('alive'); // grace period from tracking
    expect(livenessOf(fd, n2, 6)).toBe('suspect');
    onHeard(fd, n2, 6);
    expect(livenessOf(fd, n2, 11)).toBe('alive');
    expect(ageTicks(fd, n2, 11)).toBe(5);
    expect(livenessOf(fd, n3, 11)).toBe('suspect');
  });

  it('ignores untracked peers and forgets removed ones', () => {
    const fd = createFailureDetector(5);
    trackPeers(fd, [n2], 0);
    onHeard(fd, n3, 1);
    expect(ageTicks(fd, n3, 1)).toBeNull();
    expect(isAlive(fd, n3, 1)).toBe(false);
    trackPeers(fd, [n3], 10); // n2 removed, n3 added with a fresh grace period
    expect(ageTicks(fd, n2, 10)).toBeNull();
    expect(isAlive(fd, n3, 15)).toBe(true);
  });

  it('never moves a heard time backwards', () => {
    const fd = createFailureDetector(3);
    trackPeers(fd, [n2], 0);
    onHeard(fd, n2, 10);
    onHeard(fd, n2, 4);
    expect(ageTicks(fd, n2, 10)).toBe(0);
  });

  it('rejects a meaningless suspicion timeout', () => {
    expect(() => createFailureDetector(0)).toThrow();
  });
});
