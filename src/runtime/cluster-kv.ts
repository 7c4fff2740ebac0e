// Routes every key to its primary: the first active member of the key's partition's
// preference list in this node's current config. Local keys go to the local engine;
// others are forwarded in one hop over the peer API, and the primary's answer (including
// who served it) is passed back.
//
// The primary re-checks ownership against its own config (PrimaryGuard): a forward based
// on a stale config is refused with 421 and retried once after this node catches up.

import type { Logger } from 'pino';
import { partitionOf } from '../core/hash.js';
import type { Ring } from '../core/ring.js';
import { partitionId, type NodeId, type PartitionId } from '../core/types.js';
import type { ClusterConfig } from '../core/membership.js';
import { ApiError, ERRORS, type ErrorCode } from '../http/errors.js';
import { LIST_PATH } from '../http/peer-app.js';
import type { PeerTransport } from '../net/peer-transport.js';
import { compareUtf8 } from '../store/scan.js';
import type { Consistency, DeleteResult, GetResult, KvService, ListResult, Precondition, PutResult } from './kv-service.js';
import type { LocalKv } from './local-kv.js';

export interface Topology {
  config(): ClusterConfig;
  ring(): Ring;
}

/** How long a node waits to learn a newer config after a 421 before giving up. */
const catchUpWaitMs = 500;

export function primaryFor(topology: Topology, key: string): { partition: PartitionId; primary: NodeId | undefined } {
  const partition = partitionOf(key, topology.config().partitions);
  return { partition, primary: topology.ring().primaryOf(partition) };
}

export class ClusterKv implements KvService {
  constructor(
    private readonly self: NodeId,
    private readonly topology: Topology,
    private readonly local: LocalKv,
    private readonly transport: PeerTransport,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  get(key: string, consistency: Consistency): Promise<GetResult> {
    return this.route(key, () => this.local.get(key, consistency), async (url) => {
      const r = await this.forward(url, 'GET', key, consistency === 'stale' ? '?consistency=stale' : '', {});
      if (r.status === 200) return { found: true, value: r.body, version: etagOf(r.headers), servedBy: servedBy(r.headers) };
      if (r.status === 404 && errorOf(r.body)?.code === 'not_found') return { found: false, servedBy: servedBy(r.headers) };
      throw relay(r);
    });
  }

  put(key: string, value: Uint8Array, cond: Precondition): Promise<PutResult> {
    return this.route(key, () => this.local.put(key, value, cond), async (url) => {
      const r = await this.forward(url, 'PUT', key, '', conditionHeaders(cond), Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      if (r.status === 200 || r.status === 201) return { created: r.status === 201, version: etagOf(r.headers), servedBy: servedBy(r.headers) };
      throw relay(r);
    });
  }

  delete(key: string, cond: Precondition): Promise<DeleteResult> {
    return this.route(key, () => this.local.delete(key, cond), async (url) => {
      const r = await this.forward(url, 'DELETE', key, '', conditionHeaders(cond));
      if (r.status === 204) return { servedBy: servedBy(r.headers) };
      throw relay(r);
    });
  }

  /** Scatter-gather: each primary lists its own partitions; the pages are merged in order. */
  async list(prefix: string, after: string, limit: number, _consistency: Consistency): Promise<ListResult> {
    const cfg = this.topology.config();
    const ring = this.topology.ring();
    const byPrimary = new Map<NodeId, PartitionId[]>();
    for (let p = 0; p < cfg.partitions; p++) {
      const primary = ring.primaryOf(partitionId(p));
      if (primary === undefined) throw new ApiError('unavailable', `partition ${p} has no active member`, 1);
      let list = byPrimary.get(primary);
      if (!list) byPrimary.set(primary, (list = []));
      list.push(partitionId(p));
    }
    const pages = await Promise.all(
      [...byPrimary].map(async ([id, partitions]): Promise<ListResult> => {
        if (id === this.self) return this.local.listPartitions(partitions, prefix, after, limit);
        const url = peerUrl(cfg, id);
        const r = await this.call(url, {
          method: 'POST',
          path: LIST_PATH,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prefix, after, limit, partitions }),
        });
        if (r.status !== 200) throw relay(r);
        return JSON.parse(r.body.toString('utf8')) as ListResult;
      }),
    );
    // A page that was cut short bounds what we may return: keys after its last one are unknown.
    const keys = pages.flatMap((p) => p.keys).sort(compareUtf8);
    let bound: string | null = null;
    for (const p of pages) if (p.next !== null && (bound === null || compareUtf8(p.next, bound) < 0)) bound = p.next;
    const upTo = bound === null ? keys : keys.filter((k) => compareUtf8(k, bound!) <= 0);
    const page = upTo.slice(0, limit);
    const more = upTo.length > limit || bound !== null;
    return { keys: page, next: more && page.length > 0 ? page[page.length - 1]! : null };
  }

  private async route<T>(key: string, local: () => Promise<T>, remote: (peerUrl: string) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const epochBefore = this.topology.config().epoch;
      const { partition, primary } = primaryFor(this.topology, key);
      if (primary === undefined) throw new ApiError('unavailable', `partition ${partition} has no active member`, 1);
      if (primary === this.self) return local();
      try {
        return await remote(peerUrl(this.topology.config(), primary));
      } catch (e) {
        if (!(e instanceof ApiError) || e.code !== 'misdirected' || attempt > 0) throw e;
        // The primary we picked disagrees: our config is behind. Give it a moment to catch up.
        if (!(await this.waitForNewerEpoch(epochBefore))) {
          throw new ApiError('unavailable', `primary ${primary} refused partition ${partition} and no newer config arrived`, 1);
        }
      }
    }
  }

  private async waitForNewerEpoch(epoch: number): Promise<boolean> {
    const deadline = Date.now() + catchUpWaitMs;
    while (Date.now() < deadline) {
      if (this.topology.config().epoch > epoch) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  private forward(url: string, method: 'GET' | 'PUT' | 'DELETE', key: string, query: string, headers: Record<string, string>, body?: Buffer) {
    const h: Record<string, string> = { ...headers };
    if (body !== undefined) h['content-type'] = 'application/octet-stream';
    return this.call(url, { method, path: `/peer/v1/kv/${encodeURIComponent(key)}${query}`, headers: h, ...(body !== undefined ? { body } : {}) });
  }

  private async call(url: string, opts: Parameters<PeerTransport['request']>[1]) {
    try {
      return await this.transport.request(url, { ...opts, timeoutMs: this.timeoutMs });
    } catch (e) {
      const err = e as Error & { code?: string };
      this.log.debug({ peer: url, err: err.message }, 'forward failed');
      if (err.code === 'UND_ERR_HEADERS_TIMEOUT' || err.code === 'UND_ERR_BODY_TIMEOUT') {
        // The primary may have applied it: say so, like etcd's "request timed out".
        throw new ApiError('timeout', `the primary at ${url} did not answer within ${this.timeoutMs} ms; the outcome is unknown`);
      }
      throw new ApiError('unavailable', `the primary at ${url} is unreachable (${err.code ?? err.message})`, 1);
    }
  }
}

/** Serves forwarded requests only for keys this node is the primary of in its config. */
export class PrimaryGuard implements KvService {
  constructor(
    private readonly self: NodeId,
    private readonly topology: Topology,
    private readonly local: LocalKv,
  ) {}

  private check(key: string): void {
    const { partition, primary } = primaryFor(this.topology, key);
    if (primary !== this.self) {
      throw new ApiError(
        'misdirected',
        `node ${this.self} is not the primary of partition ${partition} in epoch ${this.topology.config().epoch} (primary: ${primary ?? 'none'})`,
      );
    }
  }

  get(key: string, c: Consistency): Promise<GetResult> {
    this.check(key);
    return this.local.get(key, c);
  }
  put(key: string, v: Uint8Array, cond: Precondition): Promise<PutResult> {
    this.check(key);
    return this.local.put(key, v, cond);
  }
  delete(key: string, cond: Precondition): Promise<DeleteResult> {
    this.check(key);
    return this.local.delete(key, cond);
  }
  list(): Promise<ListResult> {
    throw new ApiError('route_not_found', 'list over the peer API is POST /peer/v1/list');
  }

  listPartitions(partitions: readonly PartitionId[], prefix: string, after: string, limit: number): ListResult {
    const ring = this.topology.ring();
    for (const p of partitions) {
      if (ring.primaryOf(p) !== this.self) throw new ApiError('misdirected', `node ${this.self} is not the primary of partition ${p}`);
    }
    return this.local.listPartitions(partitions, prefix, after, limit);
  }
}

export function peerUrl(cfg: ClusterConfig, id: NodeId): string {
  const m = cfg.members.find((x) => x.id === id);
  if (!m) throw new ApiError('unavailable', `no member ${id} in epoch ${cfg.epoch}`, 1);
  return m.peerUrl;
}

export function conditionHeaders(cond: Precondition): Record<string, string> {
  const h: Record<string, string> = {};
  const fmt = (v: '*' | readonly string[]): string => (v === '*' ? '*' : v.map((x) => `"${x}"`).join(', '));
  if (cond.ifMatch !== undefined) h['if-match'] = fmt(cond.ifMatch);
  if (cond.ifNoneMatch !== undefined) h['if-none-match'] = fmt(cond.ifNoneMatch);
  return h;
}

export type Headers = Record<string, string | string[] | undefined>;
export const etagOf = (h: Headers): string => String(h.etag ?? '').replace(/"/g, '');
export const servedBy = (h: Headers): string => String(h['x-ringkv-node'] ?? '');

export function errorOf(body: Buffer): { code: string; message: string } | null {
  try {
    const e = (JSON.parse(body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } }).error;
    return e && typeof e.code === 'string' ? { code: e.code, message: String(e.message ?? '') } : null;
  } catch {
    return null;
  }
}

/** Turns the primary's error answer into the same error for our caller. */
export function relay(r: { status: number; headers: Headers; body: Buffer }): ApiError {
  const e = errorOf(r.body);
  if (e !== null && e.code in ERRORS) {
    const retry = r.headers['retry-after'];
    return new ApiError(e.code as ErrorCode, e.message, retry === undefined ? undefined : Number(retry));
  }
  return new ApiError('internal', `unexpected answer ${r.status} from the primary`);
}
