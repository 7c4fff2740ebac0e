import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { testApp } from '../support/app.js';

let app: FastifyInstance;
beforeEach(async () => {
  ({ app } = await testApp({ limits: { keyBytesMax: 32, valueBytesMax: 1024, listLimitMax: 50 } }));
});
afterEach(async () => {
  await app.close();
});

const put = (key: string, body: string | Buffer, headers: Record<string, string> = {}) =>
  app.inject({ method: 'PUT', url: `/v1/kv/${key}`, payload: body, headers: { 'content-type': 'application/octet-stream', ...headers } });
const get = (key: string, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: `/v1/kv/${key}`, headers });
const del = (key: string, headers: Record<string, string> = {}) => app.inject({ method: 'DELETE', url: `/v1/kv/${key}`, headers });
const errorCode = (r: { json: () => unknown }) => (r.json() as { error: { code: string } }).error.code;

/** After any bad request, the node must still serve. */
async function stillServes(): Promise<void> {
  const w = await put('alive', 'yes');
  expect([200, 201]).toContain(w.statusCode);
  const r = await get('alive');
  expect(r.statusCode).toBe(200);
  expect(r.body).toBe('yes');
}

describe('PUT/GET/DELETE /v1/kv/{key}', () => {
  it('creates with 201, replaces with 200, and reads back bytes with the same ETag', async () => {
    const a = await put('k1', 'v1');
    expect(a.statusCode).toBe(201);
    const { key, version } = a.json() as { key: string; version: string };
    expect(key).toBe('k1');
    expect(version).toMatch(/^[0-9a-f]{16}$/);
    expect(a.headers.etag).toBe(`"${version}"`);
    expect(a.headers['x-ringkv-node']).toBe('n1');

    const g = await get('k1');
    expect(g.statusCode).toBe(200);
    expect(g.headers['content-type']).toBe('application/octet-stream');
    expect(g.body).toBe('v1');
    expect(g.headers.etag).toBe(`"${version}"`);

    const b = await put('k1', 'v2');
    expect(b.statusCode).toBe(200);
    expect(b.headers.etag).not.toBe(a.headers.etag);
    expect((await get('k1')).body).toBe('v2');
  });

  it('stores arbitrary bytes and an empty value', async () => {
    const bytes = Buffer.from([0, 255, 1, 254, 10, 13]);
    expect((await put('bin', bytes)).statusCode).toBe(201);
    expect((await get('bin')).rawPayload.equals(bytes)).toBe(true);
    expect((await app.inject({ method: 'PUT', url: '/v1/kv/empty' })).statusCode).toBe(201);
    const e = await get('empty');
    expect(e.statusCode).toBe(200);
    expect(e.rawPayload.length).toBe(0);
  });

  it('accepts any content type as raw bytes (no JSON parsing)', async () => {
    const r = await app.inject({ method: 'PUT', url: '/v1/kv/j', payload: '{"not":"parsed"', headers: { 'content-type': 'application/json' } });
    expect(r.statusCode).toBe(201);
    expect((await get('j')).body).toBe('{"not":"parsed"');
  });

  it('keys are percent-decoded UTF-8 and may contain slashes', async () => {
    expect((await put('a%2Fb%20c', 'x')).statusCode).toBe(201);
    expect((await put('dir/sub/leaf', 'y')).statusCode).toBe(201);
    expect((await put(encodeURIComponent('ключ'), 'z')).statusCode).toBe(201);
    expect((await get('a%2Fb%20c')).body).toBe('x');
    expect((await get('dir/sub/leaf')).body).toBe('y');
    expect((await get(encodeURIComponent('ключ'))).body).toBe('z');
  });

  it('GET of an absent key is 404 not_found', async () => {
    const r = await get('nope');
    expect(r.statusCode).toBe(404);
    expect(r.json()).toEqual({ error: { code: 'not_found', message: 'key "nope" not found' } });
  });

  it('GET honours If-None-Match with 304', async () => {
    const v = (await put('c', '1')).headers.etag as string;
    expect((await get('c', { 'if-none-match': v })).statusCode).toBe(304);
    expect((await get('c', { 'if-none-match': '"0000000000000000"' })).statusCode).toBe(200);
  });

  it('consistency=strong and consistency=stale are accepted; other values are not', async () => {
    await put('s', '1');
    expect((await get('s?consistency=strong')).statusCode).toBe(200);
    expect((await get('s?consistency=stale')).statusCode).toBe(200);
    const r = await get('s?consistency=maybe');
    expect(r.statusCode).toBe(400);
    expect(errorCode(r)).toBe('invalid_parameter');
  });

  it('DELETE answers 204, then 404; a deleted key reads 404 and can be re-created with a new version', async () => {
    const v1 = (await put('d', '1')).headers.etag;
    expect((await del('d')).statusCode).toBe(204);
    expect((await get('d')).statusCode).toBe(404);
    const again = await del('d');
    expect(again.statusCode).toBe(404);
    expect(errorCode(again)).toBe('not_found');
    const re = await put('d', '2');
    expect(re.statusCode).toBe(201);
    expect(re.headers.etag).not.toBe(v1); // a version never comes back after a delete
  });
});

describe('preconditions', () => {
  it('If-Match makes PUT a compare-and-set', async () => {
    const v1 = (await put('cas', 'a')).headers.etag as string;
    const ok = await put('cas', 'b', { 'if-match': v1 });
    expect(ok.statusCode).toBe(200);
    const stale = await put('cas', 'c', { 'if-match': v1 });
    expect(stale.statusCode).toBe(412);
    expect(errorCode(stale)).toBe('precondition_failed');
    expect((await get('cas')).body).toBe('b');
  });

  it('If-Match on an absent key is 412; If-Match: * needs the key to exist', async () => {
    expect((await put('absent', 'x', { 'if-match': '"0123456789abcdef"' })).statusCode).toBe(412);
    expect((await put('absent', 'x', { 'if-match': '*' })).statusCode).toBe(412);
    await put('present', 'x');
    expect((await put('present', 'y', { 'if-match': '*' })).statusCode).toBe(200);
    expect((await get('absent')).statusCode).toBe(404);
  });

  it('If-Match accepts a list of versions', async () => {
    const v = (await put('l', 'a')).headers.etag as string;
    expect((await put('l', 'b', { 'if-match': `"0123456789abcdef", ${v}` })).statusCode).toBe(200);
  });

  it('If-None-Match: * makes PUT create-only', async () => {
    expect((await put('once', 'a', { 'if-none-match': '*' })).statusCode).toBe(201);
    const r = await put('once', 'b', { 'if-none-match': '*' });
    expect(r.statusCode).toBe(412);
    expect(errorCode(r)).toBe('precondition_failed');
    expect((await get('once')).body).toBe('a');
  });

  it('DELETE honours If-Match', async () => {
    const v = (await put('dm', 'a')).headers.etag as string;
    await put('dm', 'b');
    const r = await del('dm', { 'if-match': v });
    expect(r.statusCode).toBe(412);
    expect((await get('dm')).body).toBe('b');
    const cur = (await get('dm')).headers.etag as string;
    expect((await del('dm', { 'if-match': cur })).statusCode).toBe(204);
  });

  it('concurrent compare-and-sets on one version: exactly one wins', async () => {
    const v = (await put('race', '0')).headers.etag as string;
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => put('race', String(i + 1), { 'if-match': v })));
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes.filter((c) => c === 200)).toHaveLength(1);
    expect(codes.filter((c) => c === 412)).toHaveLength(9);
  });
});

describe('bad input gets a precise 4xx and the node keeps serving', () => {
  const cases: [string, () => Promise<{ statusCode: number; json: () => unknown }>, number, string][] = [
    ['empty key (PUT /v1/kv/)', () => put('', 'x'), 400, 'invalid_key'],
    ['empty key (PUT /v1/kv)', () => app.inject({ method: 'PUT', url: '/v1/kv', payload: 'x' }), 400, 'invalid_key'],
    ['key over the limit', () => put('k'.repeat(33), 'x'), 400, 'invalid_key'],
    ['multi-byte key over the limit', () => put(encodeURIComponent('я'.repeat(17)), 'x'), 400, 'invalid_key'],
    ['non-UTF-8 key', () => put('%FF%FE', 'x'), 400, 'invalid_key'],
    ['broken percent-encoding', () => get('abc%2'), 400, 'invalid_key'],
    ['oversized body', () => put('big', Buffer.alloc(1025)), 413, 'value_too_large'],
    ['malformed If-Match', () => put('m', 'x', { 'if-match': 'not-quoted' }), 400, 'invalid_header'],
    ['weak If-Match', () => put('m', 'x', { 'if-match': 'W/"0123456789abcdef"' }), 400, 'invalid_header'],
    ['If-Match with a bad version', () => put('m', 'x', { 'if-match': '"xyz"' }), 400, 'invalid_header'],
    ['If-None-Match with a version on PUT', () => put('m', 'x', { 'if-none-match': '"0123456789abcdef"' }), 400, 'invalid_header'],
    ['unknown query parameter on GET', () => get('m?foo=1'), 400, 'invalid_parameter'],
    ['unknown query parameter on PUT', () => put('m?ttl=5', 'x'), 400, 'invalid_parameter'],
    ['unknown query parameter on list', () => app.inject({ method: 'GET', url: '/v1/kv?pefix=a' }), 400, 'invalid_parameter'],
    ['list limit 0', () => app.inject({ method: 'GET', url: '/v1/kv?limit=0' }), 400, 'invalid_parameter'],
    ['list limit over the max', () => app.inject({ method: 'GET', url: '/v1/kv?limit=51' }), 400, 'invalid_parameter'],
    ['list limit not a number', () => app.inject({ method: 'GET', url: '/v1/kv?limit=ten' }), 400, 'invalid_parameter'],
    ['list bad cursor', () => app.inject({ method: 'GET', url: '/v1/kv?cursor=!!' }), 400, 'invalid_parameter'],
    ['unknown route', () => app.inject({ method: 'GET', url: '/v2/kv/a' }), 404, 'route_not_found'],
  ];
  for (const [name, send, status, code] of cases) {
    it(`${name} → ${status} ${code}`, async () => {
      const r = await send();
      expect(r.statusCode).toBe(status);
      const body = r.json() as { error: { code: string; message: string } };
      expect(body.error.code).toBe(code);
      expect(body.error.message.length).toBeGreaterThan(5);
      await stillServes();
    });
  }

  it('an oversized body stores nothing', async () => {
    await put('big', Buffer.alloc(1025));
    expect((await get('big')).statusCode).toBe(404);
  });
});

describe('GET /v1/kv (list)', () => {
  it('pages through keys in order with a cursor, filtered by prefix', async () => {
    for (let i = 0; i < 25; i++) await put(`user/${String(i).padStart(2, '0')}`, 'x');
    await put('other', 'x');
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/v1/kv?prefix=user%2F&limit=10${cursor ? `&cursor=${cursor}` : ''}`;
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode).toBe(200);
      const page = r.json() as { keys: string[]; cursor: string | null };
      seen.push(...page.keys);
      cursor = page.cursor;
      pages++;
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `user/${String(i).padStart(2, '0')}`));
  });

  it('omits deleted keys and returns cursor null at the end', async () => {
    await put('a', '1');
    await put('b', '1');
    await del('a');
    const r = await app.inject({ method: 'GET', url: '/v1/kv' });
    expect(r.json()).toEqual({ keys: ['b', 'alive'].filter((k) => k !== 'alive'), cursor: null });
  });
});

describe('ops routes', () => {
  it('/healthz and /readyz answer 200', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ method: 'GET', url: '/readyz' })).json()).toEqual({ status: 'ready' });
  });

  it('/metrics has request counts and latency histograms per route in Prometheus format', async () => {
    await put('m1', 'x');
    await get('m1');
    await get('missing');
    const r = await app.inject({ method: 'GET', url: '/metrics' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toContain('text/plain');
    expect(r.body).toMatch(/ringkv_http_requests_total\{route="\/v1\/kv\/\*",method="PUT",code="201",node="n1"\} 1/);
    expect(r.body).toMatch(/ringkv_http_requests_total\{route="\/v1\/kv\/\*",method="GET",code="404",node="n1"\} 1/);
    expect(r.body).toMatch(/ringkv_http_request_duration_seconds_count\{route="\/v1\/kv\/\*",method="GET",node="n1"\} 2/);
    expect(r.body).toMatch(/ringkv_http_request_duration_seconds_bucket\{le="\+Inf",route="\/v1\/kv\/\*",method="GET",node="n1"\} 2/);
    expect(r.body).toMatch(/# TYPE ringkv_http_request_duration_seconds histogram/);
    expect(r.body).toMatch(/ringkv_keys\{node="n1"\} 1/);
    expect(r.body).toMatch(/ringkv_version_conflicts_total\{node="n1"\} 0/);
  });
});
