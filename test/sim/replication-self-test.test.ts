// The replication simulator must be deterministic and must catch known-broken variants of
// the protocol within the CI seed budget; otherwise a green run proves nothing. Each case
// runs seeds from 1 until the first violation and prints how many it took.
import { describe, expect, it } from 'vitest';
import { findRepViolation, repDefaultSeedCount } from './replication-seeds.js';
import { runRepSim } from './replication-sim.js';
import type { RepMutation } from '../../src/core/replication.js';

/** Rule 6 mutations need a run with a decommission that moves data: a few more seeds. */
const moveMutationSeedsMax = 40;

function expectCaught(mutation: RepMutation, maxSeeds: number, invariant?: RegExp): void {
  const found = findRepViolation(1, maxSeeds, { mutation });
  expect(found, `${mutation} was not caught in ${maxSeeds} seeds`).not.toBeNull();
  expect(found?.violation.message).toMatch(/seed=\d+/);
  console.log(`${mutation} caught after ${found?.seedsRun} seed(s): ${found?.violation.invariant.split('\n')[0]}`);
  if (invariant !== undefined) expect(found?.violation.invariant).toMatch(invariant);
}

describe('replication simulator self-test', () => {
  it('replays a seed exactly', () => {
    expect(runRepSim({ seed: 5 })).toEqual(runRepSim({ seed: 5 }));
  });

  it('catches a primary that acknowledges a write before its replicas persisted it', () => {
    expectCaught('ack-before-replicated', repDefaultSeedCount);
  }, 120_000);

  it('catches a primary that serves without a lease', () => {
    expectCaught('read-without-lease', repDefaultSeedCount);
  }, 120_000);

  it('catches a decommission that switches ownership before the new owners caught up', () => {
    expectCaught('switch-before-caught-up', moveMutationSeedsMax, /^switch: /);
  }, 120_000);

  it('catches an outgoing member that drops its copies before the switch is decided', () => {
    expectCaught('drop-before-switch', moveMutationSeedsMax);
  }, 120_000);

  it('catches a delta catch-up that ignores collected tombstones (a returning replica keeps a deleted value)', () => {
    expectCaught('delta-ignores-purges', repDefaultSeedCount, /^(acked-durable|linearizability|switch|min-copies): /);
  }, 120_000);

  it('catches a re-created key that reuses the version of a collected one', () => {
    expectCaught('new-key-ignores-purges', repDefaultSeedCount, /^(etag-unique|acked-durable|linearizability|conflicts): /);
  }, 120_000);
});
