// Optional client bearer tokens (auth.clientTokensFile). Scopes nest:
// read < write < admin. Tokens are compared in constant time.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyRequest } from 'fastify';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ApiError } from './errors.js';

export type Scope = 'read' | 'write' | 'admin';
const RANK: Record<Scope, number> = { read: 0, write: 1, admin: 2 };

const tokensFile = z.array(z.strictObject({ token: z.string().min(16), scope: z.enum(['read', 'write', 'admin']), name: z.string().optional() }));

/** Tokens keyed by their SHA-256, so lookup time does not depend on the token. */
export type TokenTable = ReadonlyMap<string, Scope>;

export function loadTokens(file: string): TokenTable {
  const parsed = tokensFile.safeParse(parseYaml(readFileSync(file, 'utf8')));
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new Error(`auth.clientTokensFile ${file}: entry ${i.path.join('.')}: ${i.message}`);
  }
  return new Map(parsed.data.map((t) => [digest(t.token), t.scope]));
}

const digest = (s: string): string => createHash('sha256').update(s).digest('hex');

export function requiredScope(method: string, url: string): Scope {
  if (url.startsWith('/v1/cluster') && method !== 'GET') return 'admin';
  return method === 'GET' || method === 'HEAD' ? 'read' : 'write';
}

export function authHook(tokens: TokenTable) {
  return async (req: FastifyRequest): Promise<void> => {
    if (req.url === '/healthz' || req.url === '/readyz') return;
    // The dashboard's static files hold no data (it reads GET /v1/events with a token), and
    // a browser's CORS preflight never carries one.
    if (req.routeOptions.url === '/ui' || req.routeOptions.url === '/ui/*' || req.method === 'OPTIONS') return;
    const h = req.headers.authorization;
    if (h === undefined || !h.startsWith('Bearer ')) throw new ApiError('unauthorized', 'missing bearer token');
    const d = digest(h.slice(7).trim());
    let scope: Scope | undefined;
    for (const [k, s] of tokens) if (timingSafeEqual(Buffer.from(k), Buffer.from(d))) scope = s;
    if (scope === undefined) throw new ApiError('unauthorized', 'unknown bearer token');
    const need = requiredScope(req.method, req.url);
    if (RANK[scope] < RANK[need]) throw new ApiError('forbidden', `this token has scope ${scope}; ${need} is needed`);
  };
}
