// The client API over the replication layer. Every key operation is submitted to the
// local replication core first: if this node is the partition's primary it answers
// (after the write is persisted on every in-sync copy); otherwise the core says
// `not_primary {primary}` (no effect) and the request is forwarded in one hop over the
// peer API, where the primary submits it to its own core (PrimaryOnlyKv). A primary that
// disagrees answers 421; the forwarder waits briefly for a newer config and retries once.
//
// A forward goes only to a primary heard from (heartbeats) within the lease: one silent
// for longer cannot hold a lease from this node, and on the minority side of a partition
// the request would only hang, so it is answered 503 at once. A forward in flight is
// abandoned as soon as its primary falls silent for that long: a read then answers 503
// (no effect), a write 504 (it may have reached the primary).
//
// Results: ok -> 200/201/204 with the version; not_found -> 404; precondition_failed ->
// 412; unavailable -> 503 + Retry-After (no effect); timeout -> 504 (outcome unknown).

import type { Logger } from 'pino';
import type { ClientOp, ClientResult, UnavailableReason } from '../core/replication.js';
import type { NodeId } from '../core/types.js';
import { ApiError } from '../http/errors.js';
import type { PeerTransport } from '../net/peer-transport.js';
import { conditionHeaders, etagOf, errorOf, peerUrl, relay, servedBy, type ClusterKv } from './cluster-kv.js';
import type { KvDriver } from './kv-driver.js';
import type { Consistency, DeleteResult, GetResult, KvService, ListResult, Precondition, PutResult } from './kv-service.js';

/** How long a node waits to learn a newer config after a 421 before giving up. */
const catchUpWaitMs = 500;

/** Connection errors that prove the request never reached the peer (no effect). */
const notSentCodes = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

function toOp(key: string, kind: 'get', consistency: Consistency): ClientOp;
function toOp(key: string, kind: 'put', value: Uint8Array, cond: Precondition): ClientOp;
function toOp(key: string, kind: 'delete', cond: Precondition): ClientOp;
function toOp(key: string, kind: 'get' | 'put' | 'delete', a: Consistency | Uint8Array | Precondition, b?: Precondition): ClientOp {
  if (kind === 'get') return { type: 'get', key, consistency: a as Consistency };
  if (kind === 'put') {
    const cond = b!;
    if (cond.ifNoneMatch !== undefined && cond.ifNoneMatch !== '*') throw new ApiError('invalid_header', 'If-None-Match on PUT supports only *');
    return {
      type: 'put',
      key,
      value: a as Uint8Array,
      ...(cond.ifMatch !== undefined ? { ifMatch: cond.ifMatch } : {}),
      ...(cond.ifNoneMatch !== undefined ? { ifNoneMatch: '*' as const } : {}),
    };
  }
  const cond = a as Precondition;
  if (cond.ifNoneMatch !== undefined) throw new ApiError('invalid_header', 'If-None-Match is not supported on DELETE');
  return { type: 'delete', key, ...(cond.ifMatch !== undefined ? { ifMatch: cond.ifMatch } : {}) };
}

/**
 * Retry-After (s) of a 503 for a partition that cannot serve. A takeover (a primary handing
 * over at a rebalance switch, or a new one syncing) or a lease being renewed usually ends
 * in milliseconds: 0 lets a client retry on its own short backoff instead of waiting a
 * whole second.
 */
export function retryAfterSeconds(reason: UnavailableReason): number {
  return reason === 'takeover' || reason === 'no-lease' ? 0 : 1;
}

/** Errors common to every operation. Returns only for ok / not_found / precondition_failed / not_primary. */
function failIfError(key: string, r: ClientResult): void {
  switch (r.status) {
    case 'unavailable':
      if (r.reason === 'invalid') throw new ApiError('invalid_key', `key ${JSON.stringify(key)} is not valid for replication`);
      throw new ApiError('unavailable', `the partition of ${JSON.stringify(key)} cannot serve now (${r.reason}); retry`, retryAfterSeconds(r.reason));
    case 'timeout':
      throw new ApiError('timeout', 'the write was not acknowledged in time; it may still take effect');
    default:
      return;
  }
}

export class ReplicatedKv implements KvService {
  /**
   * @param forward false on the peer API: a request for a partition this node is not the
   *   primary of is refused with 421 rather than forwarded again.
   */
  constructor(
    private readonly self: NodeId,
    private readonly driver: KvDriver,
    private readonly lister: ClusterKv | null,
    private readonly transport: PeerTransport,
    private readonly timeoutMs: number,
    /** A forward needs its primary heard from within this long (timing.leaseMs). */
    private readonly leaseMs: number,
    private readonly log: Logger,
    private readonly forward: boolean,
  ) {}

  getNow(key: string, consistency: Consistency): GetResult | null {
    const r = this.driver.answerNow(toOp(key, 'get', consistency));
    if (r === null || r.status === 'not_primary') return null;
    failIfError(key, r);
    return this.getResult(r);
  }

  private getResult(r: ClientResult): GetResult {
    if (r.status === 'ok') return { found: true, value: r.value ?? new Uint8Array(), version: r.version, servedBy: this.self };
    if (r.status === 'not_found') return { found: false, servedBy: this.self };
    throw new ApiError('internal', `unexpected result ${r.status} for a get`);
  }

  get(key: string, consistency: Consistency): Promise<GetResult> {
    return this.run<GetResult>(
      key,
      toOp(key, 'get', consistency),
      (r) => this.getResult(r),
      async (url, signal) => {
        const res = await this.call(url, 'GET', key, consistency === 'stale' ? '?consistency=stale' : '', {}, undefined, true, signal);
        if (res.status === 200) return { found: true, value: res.body, version: etagOf(res.headers), servedBy: servedBy(res.headers) };
        if (res.status === 404 && errorOf(res.body)?.code === 'not_found') return { found: false, servedBy: servedBy(res.headers) };
        throw relay(res);
      },
    );
  }

  put(key: string, value: Uint8Array, cond: Precondition): Promise<PutResult> {
    return this.run<PutResult>(
      key,
      toOp(key, 'put', value, cond),
      (r) => {
        if (r.status === 'ok') return { created: r.created, version: r.version, servedBy: this.self };
        if (r.status === 'precondition_failed') throw new ApiError('precondition_failed', 'the precondition does not hold');
        throw new ApiError('not_found', `key ${JSON.stringify(key)} not found`);
      },
      async (url, signal) => {
        const body = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        const res = await this.call(url, 'PUT', key, '', { ...conditionHeaders(cond), 'content-type': 'application/octet-stream' }, body, false, signal);
        if (res.status === 200 || res.status === 201) return { created: res.status === 201, version: etagOf(res.headers), servedBy: servedBy(res.headers) };
        throw relay(res);
      },
    );
  }

  delete(key: string, cond: Precondition): Promise<DeleteResult> {
    return this.run<DeleteResult>(
      key,
      toOp(key, 'delete', cond),
      (r) => {
        if (r.status === 'ok') return { servedBy: this.self };
        if (r.status === 'precondition_failed') throw new ApiError('precondition_failed', 'If-Match failed');
        throw new ApiError('not_found', `key ${JSON.stringify(key)} not found`);
      },
      async (url, signal) => {
        const res = await this.call(url, 'DELETE', key, '', conditionHeaders(cond), undefined, false, signal);
        if (res.status === 204) return { servedBy: servedBy(res.headers) };
        throw relay(res);
      },
    );
  }

  list(prefix: string, after: string, limit: number, consistency: Consistency): Promise<ListResult> {
    if (this.lister === null) throw new ApiError('route_not_found', 'list over the peer API is POST /peer/v1/list');
    return this.lister.list(prefix, after, limit, consistency);
  }

  private async run<T>(
    key: string,
    op: ClientOp,
    local: (r: ClientResult) => T,
    remote: (peerUrl: string, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const epochBefore = this.driver.config().epoch;
      const r = await this.driver.submit(op);
      failIfError(key, r);
      if (r.status !== 'not_primary') return local(r);
      if (!this.forward) {
        throw new ApiError('misdirected', `node ${this.self} is not the primary of ${JSON.stringify(key)} in epoch ${epochBefore} (primary: ${r.primary ?? 'none'})`);
      }
      if (r.primary === null) throw new ApiError('unavailable', `the partition of ${JSON.stringify(key)} has no active member`, 1);
      try {
        return await this.forwardTo(key, r.primary, op.type === 'get', remote);
      } catch (e) {
        if (!(e instanceof ApiError) || e.code !== 'misdirected' || attempt > 0) throw e;
        if (!(await this.waitForNewerEpoch(epochBefore))) {
          throw new ApiError('unavailable', `primary ${r.primary} refused ${JSON.stringify(key)} and no newer config arrived`, 1);
        }
      }
    }
  }

  /** Milliseconds the primary has been silent, if longer than the lease (else null). */
  private silentBeyondLease(primary: NodeId): number | null {
    const age = this.driver.heartbeatAgeMs(primary);
    return age !== null && age > this.leaseMs ? age : null;
  }

  /**
   * Forwards to `primary` and gives up as soon as it has been silent beyond the lease. The
   * abandoned call is also aborted, but undici may hold a request that waits for a
   * connection until its connect timeout, so the answer does not wait for that.
   */
  private async forwardTo<T>(key: string, primary: NodeId, isRead: boolean, remote: (peerUrl: string, signal: AbortSignal) => Promise<T>): Promise<T> {
    const silentFor = this.silentBeyondLease(primary);
    if (silentFor !== null) {
      throw new ApiError('unavailable', `the primary of ${JSON.stringify(key)}, ${primary}, has not been heard from for ${silentFor} ms; retry`, 1);
    }
    const abort = new AbortController();
    let watch: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<never>((_, reject) => {
      watch = setInterval(() => {
        const ms = this.silentBeyondLease(primary);
        if (ms === null) return;
        clearInterval(watch);
        abort.abort();
        reject(
          isRead
            ? new ApiError('unavailable', `the primary of ${JSON.stringify(key)}, ${primary}, fell silent (${ms} ms) before answering; retry`, 1)
            : new ApiError('timeout', `the primary of ${JSON.stringify(key)}, ${primary}, fell silent (${ms} ms) before answering; the outcome is unknown`),
        );
      }, this.driver.tickMs);
    });
    const call = remote(peerUrl(this.driver.config(), primary), abort.signal);
    call.catch(() => {}); // once abandoned, its own failure is of no interest
    try {
      return await Promise.race([call, gaveUp]);
    } finally {
      clearInterval(watch);
    }
  }

  private async waitForNewerEpoch(epoch: number): Promise<boolean> {
    const deadline = Date.now() + catchUpWaitMs;
    while (Date.now() < deadline) {
      if (this.driver.config().epoch > epoch) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  private async call(
    url: string,
    method: 'GET' | 'PUT' | 'DELETE',
    key: string,
    query: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    isRead: boolean,
    signal: AbortSignal,
  ) {
    try {
      return await this.transport.request(url, {
        method,
        path: `/peer/v1/kv/${encodeURIComponent(key)}${query}`,
        headers,
        ...(body !== undefined ? { body } : {}),
        timeoutMs: this.timeoutMs,
        signal,
      });
    } catch (e) {
      const err = e as Error & { code?: string; cause?: { code?: string } };
      const code = err.code ?? err.cause?.code ?? err.message;
      this.log.debug({ peer: url, err: err.message, code }, 'forward failed');
      if (isRead || notSentCodes.has(code)) throw new ApiError('unavailable', `the primary at ${url} is unreachable (${code})`, 1);
      // The request may have reached the primary and been applied: the outcome is unknown.
      throw new ApiError('timeout', `the primary at ${url} did not answer (${code}); the outcome is unknown`);
    }
  }
}
