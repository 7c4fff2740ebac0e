// `ringkv bench --etcd`: the etcd side of a side-by-side run. bench.ts drives etcd with
// the same closed-loop workers, keys, values and histogram as ringkv; this file only says
// how a bench op is spelled for etcd's v3 JSON gateway (grpc-gateway, served on every
// client URL of etcd 3.4) and how its reply is judged:
//
//   put: POST /v3/kv/put   {"key": base64(key), "value": base64(value)}  -> 200
//   get: POST /v3/kv/range {"key": base64(key)}                         -> 200 with "kvs"
//
// A range is linearizable (etcd's default: no "serializable" field), so it goes through
// the leader's read index, like a ringkv strong GET goes through its primary's lease. A
// range without `kvs` for a key bench populated is an error, as a ringkv 404 is.
// Everything here is pure apart from the op cache; test/unit/bench-etcd.test.ts covers it.

import type { Op, OpCodec, Reply } from './bench.js';

export const ETCD_PUT_PATH = '/v3/kv/put';
export const ETCD_RANGE_PATH = '/v3/kv/range';
/** The endpoint checked before the run: 200 `{"health":"true"}` on a healthy member, 503 otherwise. */
export const ETCD_HEALTH_PATH = '/health';

/** The error label of a 200 range reply without `kvs`: the key is missing. */
export const ETCD_NOT_FOUND = '200 without kvs';

const b64 = (bytes: string | Uint8Array): string => (typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes)).toString('base64');

/** The body of `POST /v3/kv/put` (base64 keeps it free of JSON escapes). */
export function etcdPutBody(key: string, value: Uint8Array): Buffer {
  return Buffer.from(`{"key":"${b64(key)}","value":"${b64(value)}"}`, 'latin1');
}

/** The body of a linearizable `POST /v3/kv/range` of one key. */
export function etcdRangeBody(key: string): Buffer {
  return Buffer.from(`{"key":"${b64(key)}"}`, 'latin1');
}

const QUOTE = 0x22;
const COLON = 0x3a;
const OPEN = 0x5b;
const BRACE = 0x7b;
const KVS = Buffer.from('"kvs"', 'latin1');
const isSpace = (c: number | undefined): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * Whether a range reply holds at least one key-value: a non-empty `"kvs": [...]`. The
 * gateway omits `kvs` when nothing matched (and `[]` is accepted as empty too). No JSON
 * parse on the hot path: keys and values are base64 and the header's fields are numbers,
 * so `"kvs"` can only appear as that field's name.
 */
export function rangeHasKvs(body: Uint8Array | string): boolean {
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  let i = buf.indexOf(KVS);
  if (i === -1) return false;
  // Only a field name counts: a JSON string that is a value is followed by , } or ] instead.
  i += KVS.length;
  while (isSpace(buf[i])) i++;
  if (buf[i] !== COLON) return false;
  i++;
  while (isSpace(buf[i])) i++;
  if (buf[i] !== OPEN) return false;
  i++;
  while (isSpace(buf[i])) i++;
  return buf[i] === BRACE; // the first kv; `]` would be an empty list
}

/** ringkv's rate over etcd's for the same workload (null without an etcd rate). */
export function opsRatio(ringkvOpsPerS: number, etcdOpsPerS: number | null | undefined): number | null {
  return etcdOpsPerS === null || etcdOpsPerS === undefined || !(etcdOpsPerS > 0) ? null : ringkvOpsPerS / etcdOpsPerS;
}

/** Whether ringkv's p99 is strictly below etcd's (null without an etcd figure). */
export function p99Below(ringkvP99Ns: number, etcdP99Ns: number | null | undefined): boolean | null {
  return etcdP99Ns === null || etcdP99Ns === undefined ? null : ringkvP99Ns < etcdP99Ns;
}

/** How a put or range reply is judged: null for a success, else the error's label. */
export function etcdReplyError(op: Pick<Op, 'write'>, reply: Reply): string | null {
  if (reply.status !== 200) return String(reply.status);
  if (op.write) return null;
  return reply.body !== null && rangeHasKvs(reply.body) ? null : ETCD_NOT_FOUND;
}

/** Bodies cached per key up to about this many bytes; keys beyond are encoded per request. */
const OP_CACHE_BYTES = 32 * 1024 * 1024;

/**
 * The etcd ops over keys `${prefix}0` .. `${prefix}${keys-1}`. Key k's put carries
 * values[k % values.length], so a key's put op never changes: ops are built on first use
 * and kept (up to OP_CACHE_BYTES of bodies), so the steady state costs an array read.
 */
export function etcdCodec(prefix: string, values: readonly Buffer[], keys: number, mixedLabel: string): OpCodec {
  const valueB64 = values.map((v) => v.toString('base64'));
  const putTail = valueB64.map((v) => `","value":"${v}"}`);
  const bodyBytes = 64 + prefix.length * 2 + (valueB64[0]?.length ?? 0);
  const cached = Math.min(keys, Math.floor(OP_CACHE_BYTES / bodyBytes));
  const puts: (Op | undefined)[] = new Array<Op | undefined>(cached);
  const gets: (Op | undefined)[] = new Array<Op | undefined>(cached);
  const keyB64 = (k: number): string => b64(prefix + k);
  const makePut = (k: number): Op => ({
    method: 'POST',
    path: ETCD_PUT_PATH,
    body: Buffer.from(`{"key":"${keyB64(k)}${putTail[k % putTail.length]!}`, 'latin1'),
    key: k,
    write: true,
    readReply: false,
  });
  const makeGet = (k: number): Op => ({ method: 'POST', path: ETCD_RANGE_PATH, body: etcdRangeBody(prefix + k), key: k, write: false, readReply: true });
  return {
    name: 'etcd',
    label: (w) => (w === 'put' ? 'etcd put' : w === 'get' ? 'etcd get (linearizable)' : `etcd ${mixedLabel}`),
    putOp: (k) => (k < cached ? (puts[k] ??= makePut(k)) : makePut(k)),
    getOp: (k) => (k < cached ? (gets[k] ??= makeGet(k)) : makeGet(k)),
    check: etcdReplyError,
  };
}
