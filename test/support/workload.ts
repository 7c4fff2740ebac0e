// A reusable client workload for real-process fault tests, and the checks to run after it.
//
// runWorkload: N concurrent clients (default 8) at a target total rate (default 200 ops/s)
// do put / get / cas (If-Match) on a small key set with unique values, through random
// live nodes, with a client timeout (default 1 s). Every op goes into a HistoryRecorder:
//   2xx / 404 / 412           known outcome
//   503                       no effect (ringkv refuses before anything happens): dropped
//   timeout, connection error, any other status (504, 500, ...)   unknown outcome
// Reads with an unknown outcome are dropped by the checker.
//
// After the run (and after healing the cluster):
//   finalReads            a strong read of every key (recorded too), retried through 503s
//   lostWrites            every acknowledged write is readable: the final value comes from a
//                         write that no acknowledged write strictly followed
//   versionConflicts      ringkv_version_conflicts_total of each live node
//   checkReplicas         every copy (primary + replicas from /v1/placement) holds the same
//                         key -> (value, ETag) map: a digest per node per partition computed
//                         client-side from `?consistency=stale` reads, retried until equal
// and rec.check() for linearizability (see linearizability.ts).

import { createHash } from 'node:crypto';
import { LocalCluster } from './cluster.js';
import { HistoryRecorder, type KvOp } from './linearizability.js';
import { promSamples, type PromSample } from '../../src/cli/prom-text.js';

/** What the workload and the checks use of a cluster: a LocalCluster, or a NetnsCluster (netns.ts). */
export type ClusterClient = Pick<LocalCluster, 'n' | 'ids' | 'client'>;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const unquote = (etag: string | null): string => (etag ?? '').replace(/^W\//, '').replace(/"/g, '');

/** Extra facts about one recorded op that the history itself does not carry. */
export interface OpMeta {
  readonly id: number;
  readonly kind: 'put' | 'get' | 'cas';
  readonly key: string;
  /** The node the request was sent to. */
  readonly via: string;
  /** HTTP status, or null: timeout / connection error. */
  readonly status: number | null;
  /** X-Ringkv-Node of the answer: who served it. */
  readonly servedBy: string | null;
  readonly call: number;
  readonly ret: number | null;
}

export interface WorkloadOptions {
  readonly keys: readonly string[];
  readonly durationMs: number;
  /** Default 8. */
  readonly clients?: number;
  /** Target total ops/s over all clients. Default 200. */
  readonly rate?: number;
  /** Client timeout per request (AbortSignal.timeout). Default 1000 ms. */
  readonly timeoutMs?: number;
  /** Fractions of puts and cas ops; the rest are strong gets. Default 0.45 / 0.2. */
  readonly putRatio?: number;
  readonly casRatio?: number;
  /** Nodes to send requests to, asked before every op (default: all). */
  readonly targets?: () => readonly string[];
  /** After a transport error a node is avoided this long. Default 500 ms. */
  readonly avoidMs?: number;
  /**
   * Requests a client may have in flight (default 4): each client sends on its schedule
   * (clients / rate apart) unless this many of its requests are still open, so slow
   * answers do not throttle the rate as a purely closed loop would.
   */
  readonly maxInflightPerClient?: number;
}

export interface WorkloadStats {
  ops: number;
  acked: number;
  casOk: number;
  casFailed: number;
  unavailable: number;
  unknown: number;
  reads: number;
  byStatus: Record<string, number>;
}

export class Workload {
  readonly rec = new HistoryRecorder();
  readonly meta: OpMeta[] = [];
  readonly stats: WorkloadStats = { ops: 0, acked: 0, casOk: 0, casFailed: 0, unavailable: 0, unknown: 0, reads: 0, byStatus: {} };
  /** Latest version seen per key (any client): what cas ops expect. */
  private readonly lastVersion = new Map<string, string>();
  private readonly avoidUntil = new Map<string, number>();
  readonly t0 = performance.now();

  constructor(
    readonly c: ClusterClient,
    readonly opts: WorkloadOptions,
  ) {}

  private pickNode(): string {
    const all = this.opts.targets?.() ?? this.c.ids();
    const ok = all.filter((id) => (this.avoidUntil.get(id) ?? 0) < performance.now());
    const from = ok.length > 0 ? ok : all;
    return from[Math.floor(Math.random() * from.length)]!;
  }

  private count(status: number | null): void {
    const k = status === null ? 'error' : String(status);
    this.stats.byStatus[k] = (this.stats.byStatus[k] ?? 0) + 1;
  }

  /** One op, recorded. */
  async op(client: number, kind: 'put' | 'get' | 'cas', key: string, value: string, via = this.pickNode()): Promise<void> {
    const timeoutMs = this.opts.timeoutMs ?? 1000;
    const url = `${this.c.client(via)}/v1/kv/${encodeURIComponent(key)}`;
    const expected = kind === 'cas' ? this.lastVersion.get(key) : undefined;
    if (kind === 'cas' && expected === undefined) kind = 'put';
    const h = this.rec.invoke(
      client,
      key,
      kind === 'get' ? { type: 'get' } : kind === 'put' ? { type: 'put', value } : { type: 'cas', expectedVersion: expected!, value },
    );
    this.stats.ops++;
    let status: number | null = null;
    let servedBy: string | null = null;
    let ret: number | null = null;
    try {
      const init: RequestInit =
        kind === 'get'
          ? { signal: AbortSignal.timeout(timeoutMs) }
          : {
              method: 'PUT',
              body: value,
              headers: kind === 'cas' ? { 'if-match': `"${expected}"` } : {},
              signal: AbortSignal.timeout(timeoutMs),
            };
      const r = await fetch(url, init);
      const body = await r.text();
      status = r.status;
      servedBy = r.headers.get('x-ringkv-node');
      const version = unquote(r.headers.get('etag'));
      if (kind === 'get') {
        this.stats.reads++;
        if (status === 200) ret = h.ok({ type: 'found', value: body, version }).ret;
        else if (status === 404) ret = h.ok({ type: 'absent' }).ret;
        else if (status === 503) h.discard();
        else h.unknown();
        if (status === 200) this.lastVersion.set(key, version);
      } else if (status === 200 || status === 201) {
        ret = h.ok({ type: 'written', version, created: status === 201 }).ret;
        this.lastVersion.set(key, version);
        this.stats.acked++;
        if (kind === 'cas') this.stats.casOk++;
      } else if (kind === 'cas' && (status === 412 || status === 404)) {
        // 412: the version did not match or the key is absent (404 would mean the same).
        ret = h.ok({ type: 'failed' }).ret;
        this.stats.casFailed++;
      } else if (status === 503) {
        h.discard();
        this.stats.unavailable++;
      } else {
        h.unknown();
        this.stats.unknown++;
      }
    } catch {
      h.unknown();
      if (kind !== 'get') this.stats.unknown++;
      this.avoidUntil.set(via, performance.now() + (this.opts.avoidMs ?? 500));
    }
    this.count(status);
    this.meta.push({ id: h.id, kind, key, via, status, servedBy, call: h.call, ret });
  }

  /** Runs the clients until durationMs has passed since the start of run(). */
  async run(): Promise<void> {
    const clients = this.opts.clients ?? 8;
    const interval = (1000 * clients) / (this.opts.rate ?? 200);
    const putRatio = this.opts.putRatio ?? 0.45;
    const casRatio = this.opts.casRatio ?? 0.2;
    const start = performance.now();
    const keys = this.opts.keys;
    const maxInflight = this.opts.maxInflightPerClient ?? 4;
    const client = async (ci: number) => {
      let n = 0;
      let next = start + Math.random() * interval;
      const inflight = new Set<Promise<void>>();
      while (performance.now() - start < this.opts.durationMs && !this.stopped) {
        await sleep(Math.max(0, next - performance.now()));
        while (inflight.size >= maxInflight) await Promise.race(inflight);
        next = Math.max(next + interval, performance.now() - interval); // no catch-up bursts
        const key = keys[Math.floor(Math.random() * keys.length)]!;
        const x = Math.random();
        const kind = x < putRatio ? 'put' : x < putRatio + casRatio ? 'cas' : 'get';
        const p: Promise<void> = this.op(ci, kind, key, `c${ci}-${n++}`).finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await Promise.all(inflight);
    };
    await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
    this.runMs = performance.now() - start;
  }

  /** Wall time of run(). */
  runMs = 0;
  private stopped = false;

  /** Ends run() early: no new ops; the ones in flight finish. */
  stop(): void {
    this.stopped = true;
  }

  /** A strong read of every key, recorded (client id 1000), retried through 503s and errors. */
  async finalReads(timeoutMs = 20_000): Promise<Map<string, KvOp>> {
    const finals = new Map<string, KvOp>();
    const deadline = performance.now() + timeoutMs;
    for (const key of this.opts.keys) {
      for (let attempt = 0; ; attempt++) {
        const via = this.c.ids()[attempt % this.c.n]!;
        const h = this.rec.invoke(1000, key, { type: 'get' });
        let status: number | null = null;
        try {
          const r = await fetch(`${this.c.client(via)}/v1/kv/${encodeURIComponent(key)}`, { signal: AbortSignal.timeout(3000) });
          const body = await r.text();
          status = r.status;
          if (r.status === 200) {
            finals.set(key, h.ok({ type: 'found', value: body, version: unquote(r.headers.get('etag')) }));
            break;
          }
          if (r.status === 404) {
            finals.set(key, h.ok({ type: 'absent' }));
            break;
          }
          h.discard();
        } catch {
          h.unknown();
        }
        if (performance.now() > deadline) throw new Error(`${key}: no answer to a final read within ${timeoutMs} ms (last ${status})`);
        await sleep(100);
      }
    }
    return finals;
  }

  /**
   * Acknowledged writes that are not readable: per key, the final value must come from a
   * write (put or cas) that no acknowledged write strictly followed (called after it
   * returned); an acknowledged key must not read as absent or as a value nobody wrote.
   */
  lostWrites(finals: ReadonlyMap<string, KvOp>): { key: string; why: string }[] {
    const history = this.rec.history();
    const lost: { key: string; why: string }[] = [];
    for (const key of this.opts.keys) {
      const writes = history.filter((op) => op.key === key && (op.input.type === 'put' || op.input.type === 'cas'));
      const acked = writes.filter((op) => op.output?.type === 'written');
      const f = finals.get(key)?.output;
      const value = f?.type === 'found' ? f.value : null;
      const src = value === null ? undefined : writes.find((op) => 'value' in op.input && op.input.value === value);
      if (src === undefined) {
        if (acked.length > 0) lost.push({ key, why: `final read ${JSON.stringify(f)} is not from any write; ${acked.length} acknowledged` });
        continue;
      }
      if (src.output?.type === 'failed') {
        lost.push({ key, why: `final value ${value} is from a cas that failed` });
        continue;
      }
      const later = src.ret === null ? undefined : acked.find((q) => q.call > src.ret!);
      if (later !== undefined) lost.push({ key, why: `final value ${value} (returned at ${src.ret!.toFixed(0)}) but ${'value' in later.input ? later.input.value : '?'} was acknowledged later (called at ${later.call.toFixed(0)})` });
    }
    return lost;
  }

  summary(): string {
    const s = this.stats;
    const lat = this.meta.filter((m) => m.ret !== null && m.kind !== 'get').map((m) => m.ret! - m.call).sort((a, b) => a - b);
    const q = (f: number) => (lat.length === 0 ? NaN : lat[Math.min(lat.length - 1, Math.floor(f * lat.length))]!).toFixed(0);
    return `${(s.ops / (this.runMs / 1000)).toFixed(0)} ops/s, write latency p50 ${q(0.5)} / p99 ${q(0.99)} ms; ops ${s.ops} (reads ${s.reads}), acked writes ${s.acked} (cas ok ${s.casOk}, cas 412 ${s.casFailed}), 503 ${s.unavailable}, unknown writes ${s.unknown}, statuses ${JSON.stringify(s.byStatus)}`;
  }
}

/** Every sample of metric `name` on the node at `base`, with its labels. */
export async function metricSamples(base: string, name: string): Promise<PromSample[]> {
  const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
  return promSamples(text, name);
}

/** The sum of every sample of metric `name` (all label values) on the node at `base`. */
export async function metric(base: string, name: string): Promise<number> {
  return (await metricSamples(base, name)).reduce((a, s) => a + s.value, 0);
}

/** ringkv_version_conflicts_total of each node in `ids`. */
export async function versionConflicts(c: ClusterClient, ids: readonly string[] = c.ids()): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const id of ids) out[id] = await metric(c.client(id), 'ringkv_version_conflicts_total');
  return out;
}

export interface Placement {
  partition: number;
  primary: string | null;
  replicas: string[];
  preference: string[];
  epoch: number;
}

export async function placement(c: ClusterClient, key: string, via = c.ids()[0]!): Promise<Placement> {
  const r = await fetch(`${c.client(via)}/v1/placement/${encodeURIComponent(key)}`, { signal: AbortSignal.timeout(3000) });
  if (!r.ok) throw new Error(`placement of ${key} via ${via}: ${r.status}`);
  return (await r.json()) as Placement;
}

export interface ReplicaCheck {
  ok: boolean;
  attempts: number;
  elapsedMs: number;
  /** partition -> node -> digest (last attempt). */
  digests: Record<number, Record<string, string>>;
  problems: string[];
}

/**
 * Every copy is identical: for each key, placement (asked of `via`) names the primary and
 * replicas; each of them answers a `?consistency=stale` read from its own store
 * (X-Ringkv-Node must be itself). Per node per partition the digest is a hash of the
 * sorted key -> (ETag, value hash) pairs of the keys. Requires every preference member
 * to be a replica or the primary (the cluster healed). Retried until `timeoutMs`.
 */
export async function checkReplicas(c: ClusterClient, keys: readonly string[], timeoutMs = 10_000, via = c.ids()[0]!): Promise<ReplicaCheck> {
  const start = performance.now();
  let attempts = 0;
  for (;;) {
    attempts++;
    const problems: string[] = [];
    const digests: Record<number, Record<string, string>> = {};
    try {
      const byPartition = new Map<number, { holders: string[]; keys: string[] }>();
      for (const key of keys) {
        const p = await placement(c, key, via);
        const holders = [...(p.primary === null ? [] : [p.primary]), ...p.replicas].sort();
        if (p.primary === null || holders.length !== p.preference.length) problems.push(`${key}: partition ${p.partition} has primary ${p.primary}, replicas ${p.replicas.join(',')} of ${p.preference.join(',')}`);
        const e = byPartition.get(p.partition) ?? { holders, keys: [] };
        e.keys.push(key);
        byPartition.set(p.partition, e);
      }
      for (const [partition, { holders, keys: pkeys }] of byPartition) {
        digests[partition] = {};
        for (const node of holders) {
          const lines: string[] = [];
          for (const key of [...pkeys].sort()) {
            const r = await fetch(`${c.client(node)}/v1/kv/${encodeURIComponent(key)}?consistency=stale`, { signal: AbortSignal.timeout(3000) });
            const body = await r.text();
            const served = r.headers.get('x-ringkv-node');
            if (served !== node) problems.push(`${key}: stale read on ${node} served by ${served} (${r.status})`);
            if (r.status === 200) lines.push(`${key}\t${unquote(r.headers.get('etag'))}\t${createHash('sha256').update(body).digest('hex').slice(0, 16)}`);
            else if (r.status === 404) lines.push(`${key}\tabsent`);
            else problems.push(`${key}: stale read on ${node} answered ${r.status}`);
          }
          digests[partition]![node] = createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 12);
        }
        const distinct = new Set(Object.values(digests[partition]!));
        if (distinct.size > 1) problems.push(`partition ${partition}: digests differ ${JSON.stringify(digests[partition])}`);
      }
    } catch (e) {
      problems.push(`error: ${(e as Error).message}`);
    }
    const elapsedMs = performance.now() - start;
    if (problems.length === 0) return { ok: true, attempts, elapsedMs, digests, problems };
    if (elapsedMs > timeoutMs) return { ok: false, attempts, elapsedMs, digests, problems };
    await sleep(200);
  }
}

/**
 * The pid of node `id`: LocalCluster keeps restarted nodes in a private map (its child
 * process), the others in `pids`.
 */
export function pidOf(c: LocalCluster, id: string): number {
  const restarted = (c as unknown as { restarted: Map<string, { child: { pid?: number } }> }).restarted.get(id);
  const pid = restarted?.child.pid ?? c.pids.get(id);
  if (pid === undefined) throw new Error(`no pid for ${id}`);
  return pid;
}
