// The small HTTP client the CLI uses: tries each endpoint in turn until one answers.

import { request } from 'undici';

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  readonly endpoint: string;
}

export class UnreachableError extends Error {
  override name = 'UnreachableError';
}

export function endpointsFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  const text = flag ?? env.RINGKV_ENDPOINTS ?? 'http://127.0.0.1:7379';
  return text
    .split(',')
    .map((s) => s.trim().replace(/\/$/, ''))
    .filter((s) => s !== '');
}

export async function call(
  endpoints: readonly string[],
  method: 'GET' | 'PUT' | 'DELETE' | 'POST',
  path: string,
  opts: { body?: Uint8Array | string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Reply> {
  const errors: string[] = [];
  for (const endpoint of endpoints) {
    try {
      const res = await request(endpoint + path, {
        method,
        headers: opts.headers,
        body: opts.body,
        headersTimeout: opts.timeoutMs ?? 10_000,
        bodyTimeout: opts.timeoutMs ?? 10_000,
      });
      const body = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, headers: res.headers, body, endpoint };
    } catch (e) {
      errors.push(`${endpoint}: ${(e as Error).message}`);
    }
  }
  throw new UnreachableError(`no endpoint answered:\n  ${errors.join('\n  ')}`);
}

/** The `{error: {code, message}}` body of a failed reply, or a stand-in. */
export function errorOf(r: Reply): { code: string; message: string } {
  try {
    const parsed = JSON.parse(r.body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } };
    if (parsed.error && typeof parsed.error.code === 'string') {
      return { code: parsed.error.code, message: String(parsed.error.message ?? '') };
    }
  } catch {
    // not JSON: fall through
  }
  return { code: `http_${r.status}`, message: r.body.toString('utf8').slice(0, 200) };
}

export const encodeKey = (key: string): string => encodeURIComponent(key);
