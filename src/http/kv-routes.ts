// PUT/GET/DELETE /v1/kv/{key} and GET /v1/kv?prefix=&limit=&cursor= (DESIGN.md §1).

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Config } from '../config/schema.js';
import type { Consistency, GetResult, KvService, Precondition } from '../runtime/kv-service.js';
import { ApiError } from './errors.js';

const KV_PREFIX = '/v1/kv/';
const VERSION = /^[0-9a-f]{16}$/;

const consistency = z.enum(['strong', 'stale']).default('strong');
const getQuery = z.strictObject({ consistency });
const noQuery = z.strictObject({});
const listQuery = z.strictObject({
  prefix: z.string().default(''),
  limit: z.string().regex(/^\d{1,9}$/, 'must be a positive integer').optional(),
  cursor: z.string().regex(/^[A-Za-z0-9_-]*$/, 'must be a cursor returned by a previous page').optional(),
  consistency,
});

export interface KvRoutesOptions {
  readonly kv: KvService;
  readonly config: Config;
  /** '' for the client API; '/peer' when the peer API serves requests forwarded to this node. */
  readonly urlPrefix?: string;
}

export async function kvRoutes(app: FastifyInstance, opts: KvRoutesOptions): Promise<void> {
  const { kv, config } = opts;
  const limits = config.limits;
  const base = opts.urlPrefix ?? '';
  const keyOffset = (base + KV_PREFIX).length;
  const parseKey = (req: FastifyRequest): string => parseKeyAt(req, keyOffset, limits.keyBytesMax);

  const sendGet = (reply: FastifyReply, key: string, noneMatch: '*' | string[] | undefined, r: GetResult): FastifyReply => {
    reply.header('x-ringkv-node', r.servedBy);
    if (!r.found) throw new ApiError('not_found', `key ${JSON.stringify(key)} not found`);
    reply.header('etag', `"${r.version}"`);
    if (noneMatch !== undefined && (noneMatch === '*' || noneMatch.includes(r.version))) return reply.code(304).send();
    return reply.type('application/octet-stream').send(Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength));
  };
  // Not an async function: most gets are answered at once (getNow), without a promise.
  app.get(base + KV_PREFIX + '*', (req, reply) => {
    const key = parseKey(req);
    const q = parseQuery(getQuery, req.query);
    const noneMatch = parseEtagList(req.headers['if-none-match'], 'If-None-Match');
    const now = kv.getNow?.(key, q.consistency) ?? null;
    if (now !== null) {
      sendGet(reply, key, noneMatch, now);
      return;
    }
    return kv.get(key, q.consistency).then((r) => sendGet(reply, key, noneMatch, r));
  });

  app.put(base + KV_PREFIX + '*', async (req, reply) => {
    const key = parseKey(req);
    parseQuery(noQuery, req.query);
    const cond = parsePrecondition(req, true);
    const body = req.body instanceof Buffer ? req.body : Buffer.alloc(0);
    const r = await kv.put(key, body, cond);
    reply.header('x-ringkv-node', r.servedBy).header('etag', `"${r.version}"`);
    return reply.code(r.created ? 201 : 200).send({ key, version: r.version });
  });

  app.delete(base + KV_PREFIX + '*', async (req, reply) => {
    const key = parseKey(req);
    parseQuery(noQuery, req.query);
    const cond = parsePrecondition(req, false);
    const r = await kv.delete(key, cond);
    return reply.header('x-ringkv-node', r.servedBy).code(204).send();
  });

  const emptyKey = async (): Promise<never> => {
    throw new ApiError('invalid_key', 'the key is empty: use /v1/kv/{key}');
  };
  app.put(base + '/v1/kv', emptyKey);
  app.delete(base + '/v1/kv', emptyKey);

  app.get(base + '/v1/kv', async (req, reply) => {
    const q = parseQuery(listQuery, req.query);
    const limit = q.limit === undefined ? Math.min(100, limits.listLimitMax) : Number(q.limit);
    if (limit < 1 || limit > limits.listLimitMax) {
      throw new ApiError('invalid_parameter', `limit must be between 1 and ${limits.listLimitMax}`);
    }
    if (Buffer.byteLength(q.prefix) > limits.keyBytesMax) {
      throw new ApiError('invalid_parameter', `prefix is longer than limits.keyBytesMax (${limits.keyBytesMax} bytes)`);
    }
    const after = q.cursor === undefined ? '' : decodeCursor(q.cursor);
    const page = await kv.list(q.prefix, after, limit, q.consistency as Consistency);
    return { keys: page.keys, cursor: page.next === null ? null : Buffer.from(page.next, 'utf8').toString('base64url') };
  });
}

/** The key is everything after /v1/kv/ in the raw URL, percent-decoded as UTF-8. */
export function parseKeyAt(req: FastifyRequest, offset: number, keyBytesMax: number): string {
  const url = req.url;
  const q = url.indexOf('?');
  const raw = url.slice(offset, q === -1 ? undefined : q);
  if (raw === '') throw new ApiError('invalid_key', 'the key is empty');
  // Raw bytes outside printable ASCII reach us as latin1 characters: refuse rather than guess.
  if (/[^\x21-\x7e]/.test(raw)) throw new ApiError('invalid_key', 'the key must be percent-encoded in the URL');
  let key = raw;
  if (raw.includes('%')) {
    try {
      key = decodeURIComponent(raw);
    } catch {
      throw new ApiError('invalid_key', 'the key is not valid percent-encoded UTF-8');
    }
  }
  const bytes = Buffer.byteLength(key);
  if (bytes > keyBytesMax) {
    throw new ApiError('invalid_key', `the key is ${bytes} bytes; limits.keyBytesMax is ${keyBytesMax}`);
  }
  return key;
}

const emptyQueryResults = new Map<z.ZodType, unknown>();

function parseQuery<T extends z.ZodType>(schema: T, query: unknown): z.infer<T> {
  // Most requests have no query string: reuse the schema's result for {} (its defaults).
  const q = (query ?? {}) as Record<string, unknown>;
  let noKeys = true;
  for (const _ in q) {
    noKeys = false;
    break;
  }
  if (noKeys) {
    let cached = emptyQueryResults.get(schema);
    if (cached === undefined) emptyQueryResults.set(schema, (cached = schema.parse({})));
    return cached as z.infer<T>;
  }
  const r = schema.safeParse(q);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    throw new ApiError('invalid_parameter', `unknown query parameter ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`);
  }
  throw new ApiError('invalid_parameter', `query parameter ${issue.path.join('.')}: ${issue.message}`);
}

function parsePrecondition(req: FastifyRequest, isPut: boolean): Precondition {
  const ifMatch = parseEtagList(req.headers['if-match'], 'If-Match');
  const ifNoneMatch = parseEtagList(req.headers['if-none-match'], 'If-None-Match');
  if (isPut && ifNoneMatch !== undefined && ifNoneMatch !== '*') {
    throw new ApiError('invalid_header', 'If-None-Match on PUT supports only *');
  }
  const cond: { ifMatch?: Precondition['ifMatch']; ifNoneMatch?: Precondition['ifNoneMatch'] } = {};
  if (ifMatch !== undefined) cond.ifMatch = ifMatch;
  if (ifNoneMatch !== undefined) cond.ifNoneMatch = ifNoneMatch;
  return cond;
}

/** Parses `*` or a comma-separated list of strong ETags `"0123456789abcdef"`. */
export function parseEtagList(header: string | string[] | undefined, name: string): '*' | string[] | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header.join(',') : header;
  if (text.trim() === '*') return '*';
  const out: string[] = [];
  for (const part of text.split(',')) {
    const t = part.trim();
    const m = /^"([^"]*)"$/.exec(t);
    if (m === null || !VERSION.test(m[1]!)) {
      throw new ApiError(
        'invalid_header',
        `${name} must be * or a list of quoted versions like "0123456789abcdef"; got ${JSON.stringify(t.slice(0, 40))}`,
      );
    }
    out.push(m[1]!);
  }
  return out;
}

function decodeCursor(cursor: string): string {
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (Buffer.from(key, 'utf8').toString('base64url') !== cursor) {
    throw new ApiError('invalid_parameter', 'cursor is not one returned by a previous page');
  }
  return key;
}

export type { FastifyReply };
