// The one error type of the client. A call that fails rejects with a RingkvError whose
// `code` is either the server's stable code (docs/api.md: `not_found`,
// `precondition_failed`, `unavailable`, ...) with its HTTP `status`, or one of the client's
// own codes below with `status` null. Callers match on `code`; messages are for people.

/** Codes the client itself produces, when no usable answer came from the server. */
export const CLIENT_ERROR_CODES = {
  /** A write may or may not have been applied: it was sent and no answer came back. */
  outcome_unknown: 'outcome_unknown',
  /** No endpoint could be reached (connections refused, reset, or not answering). */
  unreachable: 'unreachable',
  /** The call's deadline (timeoutMs) passed before any answer that ends it. */
  deadline_exceeded: 'deadline_exceeded',
  /** The caller's AbortSignal fired, or the client was closed, before the call ended (and no write was in doubt). */
  aborted: 'aborted',
  /** The server answered with a body the client cannot understand. */
  invalid_response: 'invalid_response',
} as const;

export type ClientErrorCode = keyof typeof CLIENT_ERROR_CODES;

export interface RingkvErrorDetails {
  /** The node that served the answer (X-Ringkv-Node), when there was one. */
  readonly node?: string | null;
  /** How many requests the call sent or tried to send. */
  readonly attempts?: number;
  readonly cause?: unknown;
}

export class RingkvError extends Error {
  override readonly name = 'RingkvError';
  readonly node: string | null;
  readonly attempts: number;

  constructor(
    /** The server's error code, or a ClientErrorCode. */
    readonly code: string,
    message: string,
    /** The HTTP status of the server's answer; null for the client's own codes. */
    readonly status: number | null,
    details: RingkvErrorDetails = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.node = details.node ?? null;
    this.attempts = details.attempts ?? 1;
  }

  /**
   * True when a write may have taken effect although the call failed: the client lost the
   * answer (`outcome_unknown`), or the server said so itself (504 `timeout`). Read the key
   * to find out; the client never retries such a write.
   */
  get outcomeUnknown(): boolean {
    return this.code === CLIENT_ERROR_CODES.outcome_unknown || (this.status === 504 && this.code === 'timeout');
  }
}

/**
 * The `{"error": {"code", "message"}}` body of an error answer. A body in another shape
 * (a proxy's page, fastify's own 503 while a node shuts down) gets the code `http_<status>`
 * and the start of the body as its message.
 */
export function parseErrorBody(status: number, body: Uint8Array): { code: string; message: string } {
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } } | null;
    const e = parsed?.error;
    if (e !== null && typeof e === 'object' && typeof e.code === 'string') {
      return { code: e.code, message: typeof e.message === 'string' ? e.message : '' };
    }
  } catch {
    // not JSON: fall through
  }
  return { code: `http_${status}`, message: text.slice(0, 200) };
}
