// The replication simulator must be deterministic and must catch known-broken variants of
// the protocol within the CI seed budget; otherwise a green run proves nothing.
import { describe, expect, it } from 'vitest';
import { findRepViolation, repDefaultSeedCount } from './replication-seeds.js';
import { runRepSim } from './replication-sim.js';

describe('replication simulator self-test', () => {
  it('replays a seed exactly', () => {
    expect(runRepSim({ seed: 5 })).toEqual(runRepSim({ seed: 5 }));
  });

  it('catches a primary that acknowledges a write before its replicas persisted it', () => {
    const found = findRepViolation(1, repDefaultSeedCount, { mutation: 'ack-before-replicated' });
    expect(found, 'ack-before-replicated was not caught').not.toBeNull();
    expect(found?.violation.message).toMatch(/seed=\d+/);
    console.log(`ack-before-replicated caught after ${found?.seedsRun} seed(s): ${found?.violation.invariant.split('\n')[0]}`);
  }, 120_000);

  it('catches a primary that serves without a lease', () => {
    const found = findRepViolation(1, repDefaultSeedCount, { mutation: 'read-without-lease' });
    expect(found, 'read-without-lease was not caught').not.toBeNull();
    console.log(`read-without-lease caught after ${found?.seedsRun} seed(s): ${found?.violation.invariant.split('\n')[0]}`);
  }, 120_000);
});
