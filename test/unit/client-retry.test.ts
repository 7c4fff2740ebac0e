// The client's retry policy: what is retried (reads always, writes only when nothing can
// have been applied), how long it waits (exponential backoff, full jitter, Retry-After),
// and when it stops (attempts, deadline).

import { describe, expect, it } from 'vitest';
import { backoffMs, decide, DEFAULT_RETRY_POLICY, parseRetryAfter, retryable, type AttemptOutcome, type RetryPolicy } from '../../src/client/retry.js';
import { retryAfterSeconds } from '../../src/runtime/replicated-kv.js';

const answer = (status: number, code: string | null = null, retryAfterMs: number | null = null): AttemptOutcome => ({ kind: 'answer', status, code, retryAfterMs });
const noAnswer = (sent: boolean): AttemptOutcome => ({ kind: 'no_answer', sent });
const policy: RetryPolicy = { maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 1000 };
const max = (): number => 0.999999;
const zero = (): number => 0;

describe('what is retried', () => {
  const cases: [string, AttemptOutcome, boolean | 'outcome_unknown', boolean | 'outcome_unknown'][] = [
    // outcome                                       read   write
    ['connection refused (never sent)', noAnswer(false), true, true],
    ['timeout or reset after sending', noAnswer(true), true, 'outcome_unknown'],
    ['503 unavailable (no effect)', answer(503, 'unavailable'), true, true],
    ['503 not in the catalogue (e.g. fastify closing)', answer(503, 'http_503'), true, false],
    ['421 misdirected (refused before any work)', answer(421, 'misdirected'), true, true],
    ['504 timeout (server: outcome unknown)', answer(504, 'timeout'), true, false],
    ['429', answer(429, 'too_many_requests'), true, false],
    ['200', answer(200), false, false],
    ['201', answer(201), false, false],
    ['404 not_found', answer(404, 'not_found'), false, false],
    ['412 precondition_failed', answer(412, 'precondition_failed'), false, false],
    ['400 invalid_key', answer(400, 'invalid_key'), false, false],
    ['500 internal', answer(500, 'internal'), false, false],
  ];
  it.each(cases)('%s', (_name, outcome, read, write) => {
    expect(retryable('read', outcome)).toBe(read);
    expect(retryable('write', outcome)).toBe(write);
  });
});

describe('decide', () => {
  it('ends the call on a final answer', () => {
    expect(decide('write', answer(201), 1, 10_000, policy, max)).toEqual({ action: 'done' });
    expect(decide('read', answer(404, 'not_found'), 1, 10_000, policy, max)).toEqual({ action: 'done' });
    expect(decide('write', answer(504, 'timeout'), 1, 10_000, policy, max)).toEqual({ action: 'done' });
  });

  it('never retries a write that was sent and got no answer, whatever attempts and time are left', () => {
    expect(decide('write', noAnswer(true), 1, 10_000, policy, max)).toEqual({ action: 'outcome_unknown' });
    expect(decide('write', noAnswer(true), 5, 0, policy, max)).toEqual({ action: 'outcome_unknown' });
  });

  it('waits with full jitter under a cap that doubles from baseDelayMs up to maxDelayMs', () => {
    const caps = [1, 2, 3, 4, 5, 6].map((n) => backoffMs(n, policy, max));
    expect(caps).toEqual([99, 199, 399, 799, 999, 999]);
    expect(backoffMs(3, policy, zero)).toBe(0);
    for (let n = 1; n < 10; n++) {
      const d = backoffMs(n, policy, Math.random);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(Math.min(1000, 100 * 2 ** (n - 1)));
    }
    expect(decide('read', noAnswer(true), 2, 10_000, policy, max)).toEqual({ action: 'retry', delayMs: 199 });
  });

  it('waits at least what Retry-After asks', () => {
    expect(decide('write', answer(503, 'unavailable', 1000), 1, 10_000, policy, zero)).toEqual({ action: 'retry', delayMs: 1000 });
    expect(decide('read', answer(503, 'unavailable', 10), 3, 10_000, policy, max)).toEqual({ action: 'retry', delayMs: 399 });
  });

  it("a node's 503 for a takeover or a lease renewal asks for no wait beyond the client's own backoff; other reasons ask for 1 s", () => {
    const retryAfter = (reason: Parameters<typeof retryAfterSeconds>[0]): number | null => parseRetryAfter(String(retryAfterSeconds(reason)), 0);
    for (const reason of ['takeover', 'no-lease'] as const) {
      expect(decide('write', answer(503, 'unavailable', retryAfter(reason)), 1, 10_000, DEFAULT_RETRY_POLICY, max)).toEqual({ action: 'retry', delayMs: 49 });
    }
    for (const reason of ['no-primary', 'too-few-in-sync', 'busy'] as const) {
      expect(decide('write', answer(503, 'unavailable', retryAfter(reason)), 1, 10_000, DEFAULT_RETRY_POLICY, zero)).toEqual({ action: 'retry', delayMs: 1000 });
    }
  });

  it('gives up after maxAttempts, or when the wait would end after the deadline', () => {
    expect(decide('read', noAnswer(false), 4, 10_000, policy, zero).action).toBe('retry');
    expect(decide('read', noAnswer(false), 5, 10_000, policy, zero)).toEqual({ action: 'give_up' });
    expect(decide('write', answer(503, 'unavailable', 1000), 1, 999, policy, zero)).toEqual({ action: 'give_up' });
    expect(decide('write', answer(503, 'unavailable', 1000), 1, 1001, policy, zero).action).toBe('retry');
  });

  it('has bounded defaults', () => {
    expect(DEFAULT_RETRY_POLICY).toEqual({ maxAttempts: 8, baseDelayMs: 50, maxDelayMs: 1000 });
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  it('reads delay-seconds and HTTP dates as milliseconds', () => {
    expect(parseRetryAfter('1', now)).toBe(1000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter(['2', '9'], now)).toBe(2000);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:03 GMT', now)).toBe(3000);
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:59:00 GMT', now)).toBe(0);
  });
  it('is null when absent or malformed', () => {
    expect(parseRetryAfter(undefined, now)).toBeNull();
    expect(parseRetryAfter('soon', now)).toBeNull();
    expect(parseRetryAfter('-1', now)).toBeNull();
    expect(parseRetryAfter('1.5', now)).toBeNull();
  });
});
