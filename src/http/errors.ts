// The error catalogue: every error the API returns has a stable code, an HTTP status and
// a message. Clients match on `code`; the message is for people and may change.

export const ERRORS = {
  invalid_key: 400,
  invalid_header: 400,
  invalid_parameter: 400,
  invalid_body: 400,
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  route_not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  precondition_failed: 412,
  misdirected: 421,
  value_too_large: 413,
  headers_too_large: 431,
  unsupported_media_type: 415,
  too_many_requests: 429,
  internal: 500,
  unavailable: 503,
  timeout: 504,
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Seconds, for 503 and 429. */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.status = ERRORS[code];
  }

  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

export function isApiError(e: unknown): e is ApiError {
  return e instanceof ApiError;
}
