// GET /ui: the dashboard (docs/dashboard.md). Its few static files are read once, when the
// routes are registered, from dist/ui (the build compiles src/ui/*.ts there and copies the
// HTML and CSS beside them). The files hold no cluster data, so they are served without a
// token (auth.ts); the page reads everything from GET /v1/events.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

const TYPES: ReadonlyMap<string, string> = new Map([
  ['.html', 'text/html; charset=utf-8'],
  ['.css', 'text/css; charset=utf-8'],
  ['.js', 'text/javascript; charset=utf-8'],
]);

// The page talks to its own node and, when that node dies, to the other members.
const CSP = "default-src 'self'; connect-src 'self' http: https:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/** The dashboard's files by name, or null when they were not built (running from src/). */
function loadAssets(dir: URL): ReadonlyMap<string, Asset> | null {
  const assets = new Map<string, Asset>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  for (const name of names) {
    const type = TYPES.get(extname(name));
    if (type === undefined) continue;
    const body = readFileSync(new URL(name, dir));
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"` });
  }
  return assets.has('index.html') && assets.has('app.js') ? assets : null;
}

export async function uiRoutes(app: FastifyInstance): Promise<void> {
  const assets = loadAssets(new URL('../ui/', import.meta.url));

  const serve = (name: string, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (assets === null) throw new ApiError('route_not_found', 'the dashboard is not built: run npm run build');
    const a = assets.get(name);
    if (a === undefined) throw new ApiError('route_not_found', `no dashboard file ${name}`);
    reply
      .header('etag', a.etag)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', CSP);
    if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
    return reply.type(a.type).send(a.body);
  };

  app.get('/ui', (req, reply) => serve('index.html', req, reply));
  app.get<{ Params: { '*': string } }>('/ui/*', (req, reply) => serve(req.params['*'] === '' ? 'index.html' : req.params['*'], req, reply));
}
