// The simulator must be deterministic, and it must catch known-broken variants of the
// protocol within the CI seed budget; otherwise a green run proves nothing.
import { describe, expect, it } from 'vitest';
import { defaultSeedCount, findViolation } from './seeds.js';
import { runSim, SimViolation } from './sim.js';

describe('simulator self-test', () => {
  it('replays a seed exactly', () => {
    expect(runSim({ seed: 7 })).toEqual(runSim({ seed: 7 }));
  });

  it('catches an acceptor that replies before its promise/accept is durable (agreement oracle alone)', () => {
    const found = findViolation(1, defaultSeedCount, { unsafeReplyBeforePersist: true, restartChecks: false });
    expect(found, 'reply-before-persist was not caught').not.toBeNull();
    expect(found?.violation.invariant).toMatch(/^agreement/);
    expect(found?.violation.message).toMatch(/seed=\d+/);
    console.log(`reply-before-persist caught by the agreement oracle after ${found?.seedsRun} seed(s): ${found?.violation.invariant}`);
  }, 120_000);

  it('catches the same bug at once with the restart checks (broken promise / epoch going back)', () => {
    const found = findViolation(1, defaultSeedCount, { unsafeReplyBeforePersist: true });
    expect(found).not.toBeNull();
    expect(found?.violation.invariant).toMatch(/^(promises|epochs)/);
    console.log(`reply-before-persist caught by the restart checks after ${found?.seedsRun} seed(s): ${found?.violation.invariant}`);
  }, 120_000);

  it('catches a quorum miscounted by one', () => {
    const found = findViolation(1, defaultSeedCount, { nodeMutation: 'quorum-off-by-one' });
    expect(found).not.toBeNull();
    expect(found?.violation).toBeInstanceOf(SimViolation);
    console.log(`quorum-off-by-one caught after ${found?.seedsRun} seed(s): ${found?.violation.invariant}`);
  }, 120_000);
});
