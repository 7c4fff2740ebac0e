import { describe, it, expect } from 'vitest';
import {
  ETCD_NOT_FOUND,
  ETCD_PUT_PATH,
  ETCD_RANGE_PATH,
  etcdCodec,
  etcdPutBody,
  etcdRangeBody,
  etcdReplyError,
  opsRatio,
  p99Below,
  rangeHasKvs,
} from '../../src/cli/bench-etcd.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

// Replies as etcd 3.4.23's JSON gateway sends them (captured with curl).
const HEADER = '{"cluster_id":"6087306873143482011","member_id":"1728973173837892385","revision":"2","raft_term":"2"}';
const FOUND =
  `{"header":${HEADER},"kvs":[{"key":"YmVuY2gvMA==","create_revision":"2","mod_revision":"2","version":"1","value":"aGVsbG8="}],"count":"1"}`;
const MISSING = `{"header":${HEADER}}`;

describe('etcd request bodies', () => {
  it('put: base64 key and value in JSON', () => {
    const body = etcdPutBody('bench/0', Buffer.from('hello'));
    expect(JSON.parse(body.toString())).toEqual({ key: b64('bench/0'), value: b64('hello') });
  });

  it('put: binary and empty values survive', () => {
    const value = Buffer.from([0, 0x22, 0x5c, 0xff, 0x0a]);
    const parsed = JSON.parse(etcdPutBody('bench/7', value).toString()) as { key: string; value: string };
    expect(Buffer.from(parsed.value, 'base64')).toEqual(value);
    expect(JSON.parse(etcdPutBody('bench/7', Buffer.alloc(0)).toString())).toEqual({ key: b64('bench/7'), value: '' });
  });

  it('range: the key only, so the read is linearizable (no serializable field)', () => {
    const parsed = JSON.parse(etcdRangeBody('bench/42').toString()) as Record<string, unknown>;
    expect(parsed).toEqual({ key: b64('bench/42') });
    expect(parsed).not.toHaveProperty('serializable');
  });

  it('the codec builds the same bodies, with the value of key % variants, and caches them', () => {
    const values = [Buffer.from('v0'), Buffer.from('v1'), Buffer.from('v2')];
    const codec = etcdCodec('bench/', values, 100, 'mixed (90% get)');
    const put = codec.putOp(5);
    expect(put).toMatchObject({ method: 'POST', path: ETCD_PUT_PATH, key: 5, write: true, readReply: false });
    expect(JSON.parse(put.body!.toString())).toEqual({ key: b64('bench/5'), value: b64('v2') });
    expect(codec.putOp(5)).toBe(put);
    const get = codec.getOp(99);
    expect(get).toMatchObject({ method: 'POST', path: ETCD_RANGE_PATH, key: 99, write: false, readReply: true });
    expect(get.body).toEqual(etcdRangeBody('bench/99'));
    expect(codec.label('get')).toBe('etcd get (linearizable)');
    expect(codec.label('mixed')).toBe('etcd mixed (90% get)');
  });

  it('keys beyond the op cache are encoded per request, the same way', () => {
    const big = Buffer.alloc(1024 * 1024, 1);
    const codec = etcdCodec('bench/', [big], 1000, 'mixed');
    const op = codec.putOp(999);
    expect(JSON.parse(op.body!.toString())).toEqual({ key: b64('bench/999'), value: big.toString('base64') });
  });
});

describe('etcd range replies', () => {
  it('a reply with kvs holds the key', () => {
    expect(rangeHasKvs(FOUND)).toBe(true);
    expect(rangeHasKvs(Buffer.from(FOUND))).toBe(true);
    expect(rangeHasKvs('{"kvs" : [ {"key":"YQ=="} ]}')).toBe(true);
  });

  it('a reply without kvs, or with an empty list, does not', () => {
    expect(rangeHasKvs(MISSING)).toBe(false);
    expect(rangeHasKvs(`{"header":${HEADER},"kvs":[],"count":"0"}`)).toBe(false);
    expect(rangeHasKvs('')).toBe(false);
    // "kvs" as a string value, not a field name
    expect(rangeHasKvs('{"error":"kvs","code":3}')).toBe(false);
  });

  it('a slice of a larger buffer is read within its bounds', () => {
    const whole = Buffer.from(`${FOUND}${MISSING}`);
    expect(rangeHasKvs(whole.subarray(FOUND.length))).toBe(false);
    expect(rangeHasKvs(whole.subarray(0, FOUND.length))).toBe(true);
  });

  it('judges replies: non-200 by status, a range without kvs as not found, a put by status only', () => {
    const get = { write: false };
    const put = { write: true };
    expect(etcdReplyError(get, { status: 200, body: Buffer.from(FOUND) })).toBeNull();
    expect(etcdReplyError(get, { status: 200, body: Buffer.from(MISSING) })).toBe(ETCD_NOT_FOUND);
    expect(etcdReplyError(get, { status: 200, body: null })).toBe(ETCD_NOT_FOUND);
    expect(etcdReplyError(get, { status: 503, body: Buffer.from('{"error":"etcdserver: request timed out"}') })).toBe('503');
    expect(etcdReplyError(put, { status: 200, body: null })).toBeNull();
    expect(etcdReplyError(put, { status: 400, body: null })).toBe('400');
  });
});

describe('ringkv vs etcd', () => {
  it('ratio of rates', () => {
    expect(opsRatio(9000, 3000)).toBe(3);
    expect(opsRatio(1500, 3000)).toBe(0.5);
    expect(opsRatio(0, 3000)).toBe(0);
  });

  it('no ratio without an etcd rate', () => {
    expect(opsRatio(9000, 0)).toBeNull();
    expect(opsRatio(9000, null)).toBeNull();
    expect(opsRatio(9000, undefined)).toBeNull();
    expect(opsRatio(9000, Number.NaN)).toBeNull();
  });

  it('p99 below etcd is strict', () => {
    expect(p99Below(5e6, 8e6)).toBe(true);
    expect(p99Below(8e6, 8e6)).toBe(false);
    expect(p99Below(9e6, 8e6)).toBe(false);
    expect(p99Below(9e6, null)).toBeNull();
  });
});
