// When the client tries again, and when it must not. Pure: the randomness and the time
// left are passed in, so every decision can be tested.
//
// The rule is "retry only what cannot have taken effect, or what has no effect":
// - Reads (get, list) have no effect: they are retried after any failure to get an
//   answer (connection refused or reset, attempt timeout) and after 503, 504, 421, 429.
// - Writes (put, cas, create-only put, delete) are retried only when the request surely
//   had no effect: it was never written to a socket (connection refused, connect timeout,
//   DNS failure), or the server answered 503 `unavailable` or 421 `misdirected`, which it
//   sends before doing anything (docs/api.md). A write that was sent and got no answer
//   (timeout, reset) has an unknown outcome and is never retried: if the first one did
//   apply, a plain put sent again could overwrite a write made by someone else in
//   between, and a conditional one (If-Match, create-only) would fail with 412 and report
//   as failed a write that happened. The server's own 504 `timeout` is unknown too.
// - Waits between attempts grow exponentially with full jitter (a uniform wait in
//   [0, min(maxDelayMs, baseDelayMs * 2^(n-1))]), and are at least what Retry-After asks.
//   A retry that would start after the call's deadline is not made.

export type OpKind = 'read' | 'write';

export interface RetryPolicy {
  /** Attempts per call, the first one included. */
  readonly maxAttempts: number;
  /** The cap of the first wait; each later cap doubles. */
  readonly baseDelayMs: number;
  /** The largest cap. */
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 8, baseDelayMs: 50, maxDelayMs: 1000 };

/** What one attempt came to. */
export type AttemptOutcome =
  | {
      readonly kind: 'answer';
      readonly status: number;
      /** The error code of the body, for an error answer. */
      readonly code: string | null;
      /** Retry-After in ms, when the answer had one. */
      readonly retryAfterMs: number | null;
    }
  | {
      /** No answer: a connection error or the attempt's timeout. */
      readonly kind: 'no_answer';
      /** False only if the request was surely never written to a socket. */
      readonly sent: boolean;
    };

export type Decision =
  /** The answer ends the call (success or an error to report as it is). */
  | { readonly action: 'done' }
  /** Try again after delayMs. */
  | { readonly action: 'retry'; readonly delayMs: number }
  /** A retry was allowed, but no attempt or no time is left. */
  | { readonly action: 'give_up' }
  /** A write was sent and got no answer: report outcome_unknown, never retry. */
  | { readonly action: 'outcome_unknown' };

/** Whether this outcome may be retried at all, ignoring attempts and time. */
export function retryable(op: OpKind, o: AttemptOutcome): boolean | 'outcome_unknown' {
  if (o.kind === 'no_answer') return op === 'read' || !o.sent ? true : 'outcome_unknown';
  if (op === 'read') return o.status === 503 || o.status === 504 || o.status === 421 || o.status === 429;
  return (o.status === 503 && o.code === 'unavailable') || (o.status === 421 && o.code === 'misdirected');
}

/** The wait before attempt `attempt + 1`: full jitter over an exponentially growing cap. */
export function backoffMs(attempt: number, policy: RetryPolicy, random: () => number): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.floor(random() * cap);
}

/**
 * What to do after attempt number `attempt` (1-based) of a call with `remainingMs` left
 * before its deadline.
 */
export function decide(
  op: OpKind,
  outcome: AttemptOutcome,
  attempt: number,
  remainingMs: number,
  policy: RetryPolicy,
  random: () => number,
): Decision {
  const r = retryable(op, outcome);
  if (r === 'outcome_unknown') return { action: 'outcome_unknown' };
  if (!r) return { action: 'done' };
  if (attempt >= policy.maxAttempts) return { action: 'give_up' };
  const asked = outcome.kind === 'answer' ? (outcome.retryAfterMs ?? 0) : 0;
  const delayMs = Math.max(backoffMs(attempt, policy, random), asked);
  if (delayMs >= remainingMs) return { action: 'give_up' };
  return { action: 'retry', delayMs };
}

/**
 * Retry-After as milliseconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3). Null if
 * absent or malformed; never negative.
 */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return null;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  // Only the IMF-fixdate form: Date.parse alone would read "1.5" as a day in 2001.
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(t)) return null;
  const date = Date.parse(t);
  return Number.isNaN(date) ? null : Math.max(0, date - nowMs);
}
