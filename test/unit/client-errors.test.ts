// The client's errors: the server's JSON error body becomes a RingkvError with the stable
// code, the HTTP status and the message; other bodies get a stand-in code.

import { describe, expect, it } from 'vitest';
import { CLIENT_ERROR_CODES, parseErrorBody, RingkvError } from '../../src/client/errors.js';

const body = (x: unknown): Buffer => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x));

describe('parseErrorBody', () => {
  it('reads the catalogue body {error: {code, message}}', () => {
    expect(parseErrorBody(412, body({ error: { code: 'precondition_failed', message: 'If-Match failed: current version is c038aa6b9b58b393' } }))).toEqual({
      code: 'precondition_failed',
      message: 'If-Match failed: current version is c038aa6b9b58b393',
    });
    expect(parseErrorBody(503, body({ error: { code: 'unavailable' } }))).toEqual({ code: 'unavailable', message: '' });
  });

  it('gives other bodies the code http_<status> and the start of the body as message', () => {
    // What fastify itself answers while a node shuts down: not the catalogue shape.
    const closing = '{"error":"Service Unavailable","message":"Service Unavailable","statusCode":503}';
    expect(parseErrorBody(503, body(closing))).toEqual({ code: 'http_503', message: closing });
    expect(parseErrorBody(502, body('<html>bad gateway</html>'))).toEqual({ code: 'http_502', message: '<html>bad gateway</html>' });
    expect(parseErrorBody(431, Buffer.alloc(0))).toEqual({ code: 'http_431', message: '' });
    expect(parseErrorBody(500, body('null'))).toEqual({ code: 'http_500', message: 'null' });
    expect(parseErrorBody(500, body('x'.repeat(1000))).message).toHaveLength(200);
  });

  it('reads a body that is a view into a larger buffer', () => {
    const whole = Buffer.from(`xxxx${JSON.stringify({ error: { code: 'not_found', message: 'm' } })}yyyy`);
    expect(parseErrorBody(404, whole.subarray(4, whole.length - 4))).toEqual({ code: 'not_found', message: 'm' });
  });
});

describe('RingkvError', () => {
  it('carries code, status, message, node and attempts', () => {
    const e = new RingkvError('not_found', 'key "k" not found', 404, { node: 'n2' });
    expect(e).toBeInstanceOf(Error);
    expect(e).toMatchObject({ name: 'RingkvError', code: 'not_found', status: 404, message: 'key "k" not found', node: 'n2', attempts: 1 });
    const cause = new Error('socket hang up');
    const u = new RingkvError(CLIENT_ERROR_CODES.outcome_unknown, 'lost', null, { attempts: 1, cause });
    expect(u).toMatchObject({ status: null, node: null });
    expect(u.cause).toBe(cause);
  });

  it('says when a write may have taken effect: outcome_unknown, or the server\'s 504 timeout', () => {
    expect(new RingkvError('outcome_unknown', '', null).outcomeUnknown).toBe(true);
    expect(new RingkvError('timeout', '', 504).outcomeUnknown).toBe(true);
    expect(new RingkvError('unavailable', '', 503).outcomeUnknown).toBe(false);
    expect(new RingkvError('unreachable', '', null).outcomeUnknown).toBe(false);
    expect(new RingkvError('aborted', '', null).outcomeUnknown).toBe(false);
  });
});
