// The CLI's HTTP plumbing, on top of the client library (src/client): the endpoints from
// --endpoints or RINGKV_ENDPOINTS, a client for one command, and `call` for the commands
// that have no typed method (placement, cluster status/add/remove).

import { parseErrorBody, RingkvClient } from '../client/index.js';

/**
 * Attempts per command. Waits between attempts are short after a refused connection
 * (an unreachable cluster is reported within a second) and follow Retry-After (1 s)
 * after a 503, so a command rides out a failover (about 2 s) without hammering.
 */
const CLI_ATTEMPTS_MAX = 5;

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  readonly endpoint: string;
}

export function endpointsFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  const text = flag ?? env.RINGKV_ENDPOINTS ?? 'http://127.0.0.1:7379';
  return text
    .split(',')
    .map((s) => s.trim().replace(/\/$/, ''))
    .filter((s) => s !== '');
}

/**
 * A client for one command. Routing is off: a command makes one or a few requests, and
 * fetching the partition map first would double them; the nodes forward each request to
 * its key's primary in one hop. Endpoints are tried in the order given.
 */
export function cliClient(endpoints: readonly string[], opts: { token?: string | undefined; timeoutMs: number }): RingkvClient {
  return new RingkvClient({
    endpoints,
    ...(opts.token === undefined ? {} : { token: opts.token }),
    timeoutMs: opts.timeoutMs,
    routing: false,
    retry: { maxAttempts: CLI_ATTEMPTS_MAX },
    connectionsPerNode: 1,
  });
}

/**
 * One request through the client library (GETs retried like reads, others like writes);
 * any answer is returned, whatever its status. Rejects with a RingkvError when no answer
 * ends the call.
 */
export async function call(
  endpoints: readonly string[],
  method: 'GET' | 'PUT' | 'DELETE' | 'POST',
  path: string,
  opts: { body?: Uint8Array | string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Reply> {
  const client = cliClient(endpoints, { timeoutMs: opts.timeoutMs ?? 10_000 });
  try {
    const a = await client.request(method, path, {
      ...(opts.body === undefined ? {} : { body: opts.body }),
      ...(opts.headers === undefined ? {} : { headers: opts.headers }),
    });
    return { status: a.status, headers: a.headers, body: a.body, endpoint: a.origin };
  } finally {
    await client.close();
  }
}

/** The `{error: {code, message}}` body of a failed reply, or a stand-in. */
export function errorOf(r: Reply): { code: string; message: string } {
  return parseErrorBody(r.status, r.body);
}

export const encodeKey = (key: string): string => encodeURIComponent(key);
