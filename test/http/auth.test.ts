import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { testApp } from '../support/app.js';

const h = (s: string) => createHash('sha256').update(s).digest('hex');
const READ = 'read-token-0123456789';
const WRITE = 'write-token-0123456789';

let app: FastifyInstance;
afterEach(async () => {
  await app.close();
});

describe('client bearer tokens', () => {
  it('no token is 401, read token reads but cannot write (403), write token writes', async () => {
    ({ app } = await testApp({}, new Map([[h(READ), 'read'], [h(WRITE), 'write']])));
    const none = await app.inject({ method: 'GET', url: '/v1/kv/a' });
    expect(none.statusCode).toBe(401);
    expect((none.json() as { error: { code: string } }).error.code).toBe('unauthorized');
    const wrong = await app.inject({ method: 'GET', url: '/v1/kv/a', headers: { authorization: 'Bearer nope-nope-nope-nope' } });
    expect(wrong.statusCode).toBe(401);
    const ro = await app.inject({ method: 'PUT', url: '/v1/kv/a', payload: 'x', headers: { authorization: `Bearer ${READ}` } });
    expect(ro.statusCode).toBe(403);
    expect((ro.json() as { error: { code: string } }).error.code).toBe('forbidden');
    const rw = await app.inject({ method: 'PUT', url: '/v1/kv/a', payload: 'x', headers: { authorization: `Bearer ${WRITE}` } });
    expect(rw.statusCode).toBe(201);
    const r = await app.inject({ method: 'GET', url: '/v1/kv/a', headers: { authorization: `Bearer ${READ}` } });
    expect(r.body).toBe('x');
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });
});
