// `ringkv bench`: a closed-loop HTTP load generator for the client API.
//
// N workers each keep exactly one request in flight: a worker sends its next request as
// soon as the previous one completes, over keep-alive undici Pools (one per node) with no
// pipelining. With --routing ring (the default) each request goes straight to its key's
// primary, as the client library routes it: the partition map comes from the library
// (src/client), and the hot path stays a raw dispatch, on the primary's pool found in a
// per-key table filled on first use. With --routing endpoints each worker keeps to one
// endpoint, which forwards the request to the primary in one hop. Every phase warms up
// first (not measured), then measures for a fixed time. Latencies go into a fixed-size
// log-linear histogram, so a long run costs no memory. With --baseline the same client
// also drives a bare fastify server (bench-baseline.ts, a separate process) and ringkv's
// rates are reported as a share of that server's: the ceiling for any fastify service on
// this machine with this client. With --etcd the same workers, keys, values and
// histogram also drive an etcd cluster through its v3 JSON gateway (bench-etcd.ts says how
// an op is spelled and judged there), before the ringkv workloads, and each ringkv
// workload is reported as a multiple of etcd's rate for the same workload, with whether
// its p99 is below etcd's.
//
// The client is one Node process. On a small machine it competes with the server for
// CPU and can itself be the bottleneck; see docs/benchmarks.md.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool, type Dispatcher } from 'undici';
import { RingkvClient, type PartitionMap } from '../client/index.js';
import { ETCD_HEALTH_PATH, etcdCodec, opsRatio, p99Below } from './bench-etcd.js';
import { endpointsFrom } from './http-client.js';
import { metricSum } from './prom-text.js';

/** The CLI's exit codes (docs/cli.md); main.ts owns the table, bench uses the same numbers. */
const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

const USAGE = `ringkv bench — closed-loop load generator for the ringkv client API

Usage: ringkv bench [options]

  --endpoints URL[,URL...]   nodes to start from (env RINGKV_ENDPOINTS; default http://127.0.0.1:7379)
  --routing R                ring: send each key to its primary, over every active member
                             (their advertised client URLs must be reachable from here);
                             endpoints: spread workers evenly over --endpoints, which
                             forward in one hop (default ring)
  --workload W               put | get | mixed | all (default all: put, then get, then mixed)
  --connections N            concurrent requests in flight, one connection each (default 64)
  --duration-s S             measured seconds per workload (default 10)
  --warmup-s S               unmeasured seconds before each workload (default 2)
  --value-bytes N            size of each PUT value (default 100)
  --keys N                   keyspace size: keys bench/0 .. bench/N-1 (default 10000)
  --mixed-read-ratio R       share of GETs in the mixed workload (default 0.9)
  --baseline                 also measure a bare fastify route in the same run and
                             report each workload as a % of its rate
  --etcd URL[,URL...]        also run the same workloads against the etcd cluster at these
                             client URLs (v3 JSON gateway: put is POST /v3/kv/put, get a
                             linearizable POST /v3/kv/range; workers round-robin over the
                             URLs), before the ringkv workloads, and report each ringkv
                             workload as a multiple of etcd's rate (× etcd) and whether its
                             p99 is below etcd's; scripts/etcd-cluster.mjs starts one
  --token TOKEN              bearer token (env RINGKV_TOKEN)
  --json                     print one JSON object instead of a table
  -h, --help                 this text

Each row also gives the CPU time per request of the servers (every active member of the
ringkv cluster, whichever --routing; every --etcd URL; the baseline), from the CPU
counter each exports on GET /metrics (ringkv_process_cpu_seconds_total; etcd's and the
baseline's process_cpu_seconds_total), read at the start and end of the measured window,
and of this client process.

Any non-2xx reply (and any 404 once the keyspace is populated) counts as an error; for
etcd, any non-200 reply, and a range reply without kvs once its keyspace is populated.
Exit codes: 0 no errors, 1 some requests failed (or an endpoint is not ready: /readyz,
etcd /health), 2 usage, 3 an endpoint (ringkv or etcd) is unreachable.`;

export type Workload = 'put' | 'get' | 'mixed';
const ALL_WORKLOADS: readonly Workload[] = ['put', 'get', 'mixed'];

interface BenchOptions {
  readonly endpoints: readonly string[];
  readonly routing: 'ring' | 'endpoints';
  readonly workloads: readonly Workload[];
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly valueBytes: number;
  readonly keys: number;
  readonly mixedReadRatio: number;
  readonly baseline: boolean;
  /** etcd client URLs to measure side by side; empty: no etcd. */
  readonly etcd: readonly string[];
  readonly json: boolean;
  readonly token: string | undefined;
}

class BenchUsageError extends Error {}

export async function bench(args: string[]): Promise<number> {
  let opts: BenchOptions | 'help';
  try {
    opts = parseOptions(args);
  } catch (e) {
    if (!(e instanceof BenchUsageError)) throw e;
    process.stderr.write(`ringkv bench: ${e.message}\nRun 'ringkv bench --help' for usage.\n`);
    return EXIT.usage;
  }
  if (opts === 'help') {
    process.stdout.write(USAGE + '\n');
    return EXIT.ok;
  }
  return runBench(opts);
}

// ---------------------------------------------------------------------------------------
// Options

function parseOptions(args: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args,
    options: {
      endpoints: { type: 'string' },
      routing: { type: 'string', default: 'ring' },
      workload: { type: 'string', default: 'all' },
      connections: { type: 'string', default: '64' },
      'duration-s': { type: 'string', default: '10' },
      'warmup-s': { type: 'string', default: '2' },
      'value-bytes': { type: 'string', default: '100' },
      keys: { type: 'string', default: '10000' },
      'mixed-read-ratio': { type: 'string', default: '0.9' },
      baseline: { type: 'boolean', default: false },
      etcd: { type: 'string' },
      token: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  const w = values.workload;
  if (w !== 'all' && !(ALL_WORKLOADS as readonly string[]).includes(w)) {
    throw new BenchUsageError('--workload must be put, get, mixed or all');
  }
  if (values.routing !== 'ring' && values.routing !== 'endpoints') throw new BenchUsageError('--routing must be ring or endpoints');
  const endpoints = endpointsFrom(values.endpoints);
  if (endpoints.length === 0) throw new BenchUsageError('--endpoints is empty');
  const etcd = values.etcd === undefined ? [] : endpointsFrom(values.etcd, {});
  if (values.etcd !== undefined && etcd.length === 0) throw new BenchUsageError('--etcd is empty');
  for (const e of [...endpoints, ...etcd]) {
    if (!/^https?:\/\/[^/]+$/.test(e)) throw new BenchUsageError(`endpoint ${JSON.stringify(e)} must look like http://host:port`);
  }
  return {
    endpoints,
    routing: values.routing,
    workloads: w === 'all' ? ALL_WORKLOADS : [w as Workload],
    connections: integer(values.connections, '--connections', 1, 10_000),
    durationS: seconds(values['duration-s'], '--duration-s', false),
    warmupS: seconds(values['warmup-s'], '--warmup-s', true),
    valueBytes: integer(values['value-bytes'], '--value-bytes', 0, 64 * 1024 ** 2),
    keys: integer(values.keys, '--keys', 1, 100_000_000),
    mixedReadRatio: ratio(values['mixed-read-ratio'], '--mixed-read-ratio'),
    baseline: values.baseline,
    etcd,
    json: values.json,
    token: values.token ?? process.env.RINGKV_TOKEN,
  };
}

function integer(s: string, name: string, min: number, max: number): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < min || n > max) throw new BenchUsageError(`${name} must be an integer from ${min} to ${max}`);
  return n;
}

function seconds(s: string, name: string, zeroOk: boolean): number {
  const n = Number(s);
  if (!/^\d+(\.\d+)?$/.test(s) || (!zeroOk && n === 0) || n > 86_400) {
    throw new BenchUsageError(`${name} must be a number of seconds${zeroOk ? '' : ' above 0'}`);
  }
  return n;
}

function ratio(s: string, name: string): number {
  const n = Number(s);
  if (!/^\d+(\.\d+)?$/.test(s) || n > 1) throw new BenchUsageError(`${name} must be a number from 0 to 1`);
  return n;
}

// ---------------------------------------------------------------------------------------
// Latency histogram

/**
 * HdrHistogram's log-linear layout over integer nanoseconds. Values below 2^SUB_BITS are
 * counted exactly; above that, each power-of-two range [2^k, 2^(k+1)) is split into
 * 2^(SUB_BITS-1) equal buckets, so a bucket is at most 1/128 (< 0.8 %) of its values.
 * The array is fixed (under 5,000 buckets up to ~73 minutes), whatever the sample count.
 */
export class LatencyHistogram {
  private static readonly SUB_BITS = 8;
  private static readonly SUB_COUNT = 1 << LatencyHistogram.SUB_BITS; // 256
  private static readonly HALF = LatencyHistogram.SUB_COUNT / 2; // 128
  private static readonly MAX_NS = 2 ** 42 - 1;
  private readonly counts = new Float64Array(LatencyHistogram.SUB_COUNT + 35 * LatencyHistogram.HALF);
  count = 0;
  maxNs = 0;
  private sumNs = 0;

  record(ns: number): void {
    const v = Math.min(Math.max(0, Math.round(ns)), LatencyHistogram.MAX_NS);
    this.counts[LatencyHistogram.indexOf(v)]!++;
    this.count++;
    this.sumNs += v;
    if (v > this.maxNs) this.maxNs = v;
  }

  meanNs(): number {
    return this.count === 0 ? 0 : this.sumNs / this.count;
  }

  /** The value at quantile q (0..1]: the middle of its bucket, never above the true max. */
  percentileNs(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        const { low, width } = LatencyHistogram.bucketOf(i);
        return Math.min(low + (width - 1) / 2, this.maxNs);
      }
    }
    return this.maxNs;
  }

  private static indexOf(v: number): number {
    if (v < LatencyHistogram.SUB_COUNT) return v;
    const hi = Math.floor(v / 2 ** 32);
    const msb = hi > 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(v);
    const shift = msb - (LatencyHistogram.SUB_BITS - 1); // >= 1
    const mantissa = Math.floor(v / 2 ** shift); // in [HALF, SUB_COUNT)
    return LatencyHistogram.SUB_COUNT + (shift - 1) * LatencyHistogram.HALF + (mantissa - LatencyHistogram.HALF);
  }

  private static bucketOf(i: number): { low: number; width: number } {
    if (i < LatencyHistogram.SUB_COUNT) return { low: i, width: 1 };
    const k = i - LatencyHistogram.SUB_COUNT;
    const shift = Math.floor(k / LatencyHistogram.HALF) + 1;
    const mantissa = LatencyHistogram.HALF + (k % LatencyHistogram.HALF);
    return { low: mantissa * 2 ** shift, width: 2 ** shift };
  }
}

// ---------------------------------------------------------------------------------------
// Sending one request

/** One request of a workload, ready to send; the same shape for ringkv, etcd and the baseline. */
export interface Op {
  readonly method: 'GET' | 'PUT' | 'POST';
  readonly path: string;
  readonly body: Buffer | null;
  /** The bench key index; -1 for an op on no key (the baseline's /noop, a preflight). */
  readonly key: number;
  /** A write: its success marks `key` as written, and it counts for the populate loop. */
  readonly write: boolean;
  /** Whether success depends on the reply's body: send() then collects it. */
  readonly readReply: boolean;
}

/** A reply: its status, and its body if the op asked for it (`readReply`). */
export interface Reply {
  readonly status: number;
  readonly body: Buffer | null;
}

/**
 * How one system's workload ops are spelled and judged. ringkv's is below; etcd's is in
 * bench-etcd.ts. Everything else (workers, routing, populate, histogram) is shared.
 */
export interface OpCodec {
  /** '' for ringkv; a prefix for messages about another system's keyspace. */
  readonly name: string;
  readonly label: (w: Workload) => string;
  /** The put of key k (its value: values[k % VALUE_VARIANTS]). */
  readonly putOp: (key: number) => Op;
  readonly getOp: (key: number) => Op;
  /** Null if the reply is a success for the op, else the error's label (a status, say). */
  readonly check: (op: Op, reply: Reply) => string | null;
}

type Outcome = Reply | string; // a reply, or a transport error's code

const noop = (): void => {};

/** One request through undici's dispatcher, skipping the Readable body that request() builds. */
function send(pool: Dispatcher, op: Op, headers: Record<string, string>): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let status = 0;
    const chunks: Buffer[] | null = op.readReply ? [] : null;
    pool.dispatch(
      { path: op.path, method: op.method, body: op.body, headers },
      {
        onRequestStart: noop,
        onResponseStart: (_c, statusCode) => {
          status = statusCode;
        },
        onResponseData: chunks === null ? noop : (_c, chunk) => void chunks.push(chunk),
        onResponseEnd: () =>
          resolve({ status, body: chunks === null ? null : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) }),
        onResponseError: (_c, err) => reject(err),
      },
    );
  });
}

function transportCode(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? code : e instanceof Error ? e.name : 'error';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------
// Load targets

interface Target {
  /** The origins loaded, with one pool each. */
  readonly origins: readonly string[];
  readonly pools: readonly Pool[];
  /**
   * Ring routing: the pool of a bench key's primary (undefined if the map names none).
   * Null: every worker keeps to its own pool.
   */
  readonly poolOfKey: ((key: number) => Pool | undefined) | null;
  /** The headers of a request without a body, and of one with a body. */
  readonly headers: Record<string, string>;
  readonly bodyHeaders: Record<string, string>;
}

/** One pool per origin with up to `perPool` connections. */
function makeTarget(
  origins: readonly string[],
  perPool: number,
  h: { token?: string | undefined; contentType: string },
  poolOfKey: ((pools: readonly Pool[]) => Target['poolOfKey']) | null = null,
): Target {
  const pools = origins.map(
    (e) =>
      new Pool(e, {
        connections: perPool,
        pipelining: 1,
        keepAliveTimeout: 60_000,
        keepAliveMaxTimeout: 60_000,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      }),
  );
  const auth: Record<string, string> = h.token === undefined ? {} : { authorization: `Bearer ${h.token}` };
  return { origins, pools, poolOfKey: poolOfKey?.(pools) ?? null, headers: auth, bodyHeaders: { ...auth, 'content-type': h.contentType } };
}

const RINGKV_CONTENT_TYPE = 'application/octet-stream';

/** Worker i's pool when an op has no routed pool. */
const ownPool = (t: Target, i: number): Pool => t.pools[i % t.pools.length]!;

/** The pool an op goes to: its key's primary with ring routing, else the worker's own. */
const poolFor = (t: Target, op: Op, own: Pool): Pool => (op.key >= 0 && t.poolOfKey !== null ? t.poolOfKey(op.key) : undefined) ?? own;

const headersFor = (t: Target, op: Op): Record<string, string> => (op.body === null ? t.headers : t.bodyHeaders);

/**
 * Ring routing: the partition map from the client library, every active member loaded,
 * and each bench key sent to its primary. Each worker may reach any member, so every
 * pool may open up to `connections` connections (undici opens them as needed).
 */
async function ringTarget(opts: BenchOptions): Promise<Target | PreflightProblem> {
  const map = await fetchMap(opts);
  if (map === null) return { unreachable: true, message: `no endpoint answered GET /v1/cluster (${opts.endpoints.join(', ')})` };
  const origins = map.activeOrigins;
  if (origins.length === 0 || origins.length >= NO_ROUTE) {
    return { unreachable: false, message: `the partition map of epoch ${map.epoch} has ${origins.length} active members with usable client URLs` };
  }
  process.stderr.write(`  routing: each key to its primary, epoch ${map.epoch}: ${origins.map((o) => `${map.nodeAt(o)} ${o}`).join(', ')}\n`);
  return makeTarget(origins, opts.connections, { token: opts.token, contentType: RINGKV_CONTENT_TYPE }, (pools) => routeKeys(map, origins, pools, opts.keys));
}

/** The cluster's partition map, from the first of --endpoints that gives one; null if none does. */
async function fetchMap(opts: BenchOptions): Promise<PartitionMap | null> {
  const client = new RingkvClient({ endpoints: opts.endpoints, ...(opts.token === undefined ? {} : { token: opts.token }), timeoutMs: 5000 });
  try {
    return await client.refreshMap();
  } finally {
    await client.close();
  }
}

/**
 * Where the CPU of ringkv's servers is read: every node that does work for the requests.
 * With ring routing those are the target's origins; with --routing endpoints, the other
 * members forward and replicate too, so they are read from the cluster's map (the
 * endpoints alone when it has none). The second target, if any, is for /metrics only.
 */
async function ringkvCpuTarget(opts: BenchOptions, target: Target): Promise<Target> {
  if (opts.routing === 'ring') return target;
  const map = await fetchMap(opts).catch(() => null);
  const origins = map === null ? [] : map.activeOrigins;
  return origins.length === 0 ? target : makeTarget(origins, 1, { token: opts.token, contentType: RINGKV_CONTENT_TYPE });
}

/** In routeKeys' table: the key's partition has no primary with a pool. */
const NO_ROUTE = 255;

/**
 * The pool of bench key k's primary. A table of one byte per key (0: not yet computed,
 * else 1 + the pool index, or NO_ROUTE) is filled on first use, so the steady state costs
 * an array read per request, and a large keyspace costs nothing up front.
 */
function routeKeys(map: PartitionMap, origins: readonly string[], pools: readonly Pool[], keys: number): (k: number) => Pool | undefined {
  const index = new Map(origins.map((o, i) => [o, i]));
  const table = new Uint8Array(keys);
  return (k) => {
    let i = table[k]!;
    if (i === 0) {
      const primary = map.route(KEY_PREFIX + k).primary;
      const at = primary === null ? undefined : index.get(map.urlOf(primary) ?? '');
      table[k] = i = at === undefined ? NO_ROUTE : at + 1;
    }
    return i === NO_ROUTE ? undefined : pools[i - 1];
  };
}

async function closeTarget(t: Target): Promise<void> {
  await Promise.all(t.pools.map((p) => p.close()));
}

interface PreflightProblem {
  readonly unreachable: boolean;
  readonly message: string;
}

/** Checks that every origin answers `GET path` with a 200 before minutes of load are spent on it. */
async function preflight(t: Target, path: string): Promise<PreflightProblem | null> {
  for (const [i, pool] of t.pools.entries()) {
    const where = `${t.origins[i]}${path}`;
    try {
      const { status } = await send(pool, { method: 'GET', path, body: null, key: -1, write: false, readReply: false }, t.headers);
      if (status !== 200) return { unreachable: false, message: `GET ${where} answered ${status}` };
    } catch (e) {
      return { unreachable: true, message: `${where} is unreachable (${transportCode(e)}: ${(e as Error).message})` };
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------
// Running one phase

interface PhaseSpec {
  readonly label: string;
  readonly next: () => Op;
  /** Null if a reply is a success for this op, else the error's label. */
  readonly check: (op: Op, reply: Reply) => string | null;
  readonly onSuccess?: (op: Op) => void;
}

interface PhaseResult {
  readonly label: string;
  readonly requests: number;
  readonly durationS: number;
  readonly opsPerS: number;
  readonly latency: LatencyHistogram;
  readonly errors: ReadonlyMap<string, number>;
  readonly errorCount: number;
  /** CPU seconds used over the measured window: by the servers (null: not known) and by this process. */
  readonly cpu: { readonly serverS: number | null; readonly clientS: number } | null;
}

/**
 * Runs `connections` closed-loop workers for warmupS + durationS against any target:
 * ringkv (routed or not), etcd or the baseline. A request is measured when it completes
 * inside the measured window; requests still in flight at its end are not counted, and
 * none are started after it.
 */
async function runPhase(target: Target, spec: PhaseSpec, opts: BenchOptions, progress: Progress, serverCpu: CpuSampler | null): Promise<PhaseResult> {
  const latency = new LatencyHistogram();
  const errors = new Map<string, number>();
  let errorCount = 0;
  let completed = 0;
  const t0 = process.hrtime.bigint();
  const measureStart = t0 + BigInt(Math.round(opts.warmupS * 1e9));
  const measureEnd = measureStart + BigInt(Math.round(opts.durationS * 1e9));

  const worker = async (own: Pool): Promise<void> => {
    for (;;) {
      const start = process.hrtime.bigint();
      if (start >= measureEnd) return;
      const op = spec.next();
      let outcome: Outcome;
      try {
        outcome = await send(poolFor(target, op, own), op, headersFor(target, op));
      } catch (e) {
        outcome = transportCode(e);
      }
      const end = process.hrtime.bigint();
      const error = typeof outcome === 'string' ? outcome : spec.check(op, outcome);
      if (error === null) spec.onSuccess?.(op);
      completed++;
      if (end >= measureStart && end < measureEnd) {
        latency.record(Number(end - start));
        if (error !== null) {
          errorCount++;
          errors.set(error, (errors.get(error) ?? 0) + 1);
        }
      }
      // A refused connection fails at once: do not spin the CPU the server needs.
      if (typeof outcome === 'string') await sleep(10);
    }
  };

  // CPU marks at the start and the end of the measured window (the end: once the last
  // request started inside it has completed).
  const mark = async (): Promise<CpuMark> => ({ clientS: clientCpuSeconds(), serverS: serverCpu === null ? null : await serverCpu() });
  let startMark: Promise<CpuMark> | null = null;
  const startTimer = setTimeout(() => {
    startMark = mark();
  }, opts.warmupS * 1000);

  const stopProgress = progress.start(spec.label, opts, () => completed);
  const workers: Promise<void>[] = [];
  for (let i = 0; i < opts.connections; i++) workers.push(worker(ownPool(target, i)));
  await Promise.all(workers);
  stopProgress();
  clearTimeout(startTimer);
  const endMark = await mark();
  const begin = startMark === null ? null : await (startMark as Promise<CpuMark>);
  const cpu =
    begin === null
      ? null
      : { clientS: endMark.clientS - begin.clientS, serverS: begin.serverS === null || endMark.serverS === null ? null : endMark.serverS - begin.serverS };

  const requests = latency.count;
  return { label: spec.label, requests, durationS: opts.durationS, opsPerS: requests / opts.durationS, latency, errors, errorCount, cpu };
}

// ---------------------------------------------------------------------------------------
// CPU per request

/** CPU seconds used so far by the server processes behind a target, summed; null when one of them does not say. */
type CpuSampler = () => Promise<number | null>;

interface CpuMark {
  readonly clientS: number;
  readonly serverS: number | null;
}

/** This process's CPU seconds so far (user + system, all threads). */
function clientCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/**
 * Samples the servers behind a target: `GET path` on every origin at once, each reply's
 * `metric` summed. ringkv nodes export prom-client's process metrics under the ringkv_
 * prefix, etcd exports Go's, and the baseline serves the same line.
 */
function cpuSampler(t: Target, path: string, metric: string): CpuSampler {
  const op: Op = { method: 'GET', path, body: null, key: -1, write: false, readReply: true };
  return async () => {
    const values = await Promise.all(
      t.pools.map(async (pool) => {
        try {
          const r = await send(pool, op, t.headers);
          return r.status === 200 && r.body !== null ? metricSum(r.body.toString('utf8'), metric) : null;
        } catch {
          return null;
        }
      }),
    );
    return values.some((v) => v === null) ? null : values.reduce<number>((a, v) => a + v!, 0);
  };
}

const RINGKV_CPU_METRIC = 'ringkv_process_cpu_seconds_total';
/** The name prometheus' process collector uses (etcd, the baseline). */
export const PROCESS_CPU_METRIC = 'process_cpu_seconds_total';

/** Writes every key not yet written, as fast as the workers go; nothing is measured. */
async function populate(target: Target, work: Workloads, opts: BenchOptions): Promise<number> {
  let cursor = 0;
  let failures = 0;
  const nextMissing = (): number => {
    while (cursor < opts.keys && work.written[cursor] === 1) cursor++;
    return cursor < opts.keys ? cursor++ : -1;
  };
  const worker = async (own: Pool): Promise<void> => {
    for (let k = nextMissing(); k !== -1; k = nextMissing()) {
      const op = work.codec.putOp(k);
      try {
        const reply = await send(poolFor(target, op, own), op, headersFor(target, op));
        if (work.codec.check(op, reply) === null) work.written[k] = 1;
        else failures++;
      } catch {
        failures++;
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < opts.connections; i++) workers.push(worker(ownPool(target, i)));
  await Promise.all(workers);
  return failures;
}

// ---------------------------------------------------------------------------------------
// Workloads

const KEY_PREFIX = 'bench/';
const KEY_PATH_PREFIX = '/v1/kv/' + encodeURIComponent(KEY_PREFIX);
const VALUE_VARIANTS = 16;

/** A few random values, reused: generating one per request would load the client. */
const benchValues = (opts: BenchOptions): Buffer[] => Array.from({ length: VALUE_VARIANTS }, () => randomBytes(opts.valueBytes));

const mixedLabel = (opts: BenchOptions): string => `mixed (${Math.round(opts.mixedReadRatio * 100)}% get)`;

/** ringkv's client API: PUT and (strong) GET /v1/kv/bench%2F<n>. */
function ringkvCodec(opts: BenchOptions, values: readonly Buffer[]): OpCodec {
  return {
    name: '',
    label: (w) => (w === 'mixed' ? mixedLabel(opts) : w),
    // The decimal digits of `key` need no percent-encoding.
    putOp: (key) => ({ method: 'PUT', path: KEY_PATH_PREFIX + key, body: values[key % VALUE_VARIANTS]!, key, write: true, readReply: false }),
    getOp: (key) => ({ method: 'GET', path: KEY_PATH_PREFIX + key, body: null, key, write: false, readReply: false }),
    check: (op, { status }) => ((op.write ? status === 200 || status === 201 : status === 200) ? null : String(status)),
  };
}

/** The op generators over keys bench/0 .. bench/keys-1 of one system, and which keys hold a value. */
class Workloads {
  readonly written: Uint8Array;
  private putCursor = 0;

  constructor(
    private readonly opts: BenchOptions,
    readonly codec: OpCodec,
  ) {
    this.written = new Uint8Array(opts.keys);
  }

  isPopulated(): boolean {
    return this.written.every((b) => b === 1);
  }

  spec(w: Workload): PhaseSpec {
    const { codec } = this;
    const onSuccess = (op: Op): void => {
      if (op.write) this.written[op.key] = 1;
    };
    const randomKey = (): number => Math.floor(Math.random() * this.opts.keys);
    const base = { label: codec.label(w), check: codec.check };
    switch (w) {
      case 'put':
        // Round-robin, so a put phase that runs long enough populates the whole keyspace.
        return {
          ...base,
          onSuccess,
          next: () => {
            const k = this.putCursor;
            this.putCursor = (k + 1) % this.opts.keys;
            return codec.putOp(k);
          },
        };
      case 'get':
        return { ...base, next: () => codec.getOp(randomKey()) };
      case 'mixed':
        return {
          ...base,
          onSuccess,
          next: () => (Math.random() < this.opts.mixedReadRatio ? codec.getOp(randomKey()) : codec.putOp(randomKey())),
        };
    }
  }
}

function baselineSpecs(opts: BenchOptions): { get: PhaseSpec; put: PhaseSpec } {
  const body = randomBytes(opts.valueBytes);
  const check = (_op: Op, { status }: Reply): string | null => (status === 200 ? null : String(status));
  const get: Op = { method: 'GET', path: '/noop', body: null, key: -1, write: false, readReply: false };
  const put: Op = { method: 'PUT', path: '/noop', body, key: -1, write: false, readReply: false };
  return {
    get: { label: 'baseline GET /noop', check, next: () => get },
    put: { label: 'baseline PUT /noop', check, next: () => put },
  };
}

// ---------------------------------------------------------------------------------------
// The baseline server process

interface BaselineServer {
  readonly origin: string;
  stop(): Promise<void>;
}

async function startBaseline(): Promise<BaselineServer> {
  const script = fileURLToPath(new URL('./bench-baseline.js', import.meta.url));
  const child: ChildProcess = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      lines.close();
      const parsed = JSON.parse(line) as { port?: unknown };
      if (typeof parsed.port === 'number') resolve(parsed.port);
      else reject(new Error(`bench-baseline printed ${JSON.stringify(line)}, not {"port":N}`));
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`bench-baseline exited (${code}) before it listened`)));
  });
  return {
    origin: `http://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Progress on stderr

interface Progress {
  /** Starts reporting a phase; returns the function that ends it. */
  start(label: string, opts: BenchOptions, completed: () => number): () => void;
}

function makeProgress(): Progress {
  const tty = process.stderr.isTTY === true;
  return {
    start(label, opts, completed) {
      const startMs = Date.now();
      const totalS = opts.warmupS + opts.durationS;
      if (!tty) process.stderr.write(`  ${label}: ${opts.warmupS}s warmup + ${opts.durationS}s measured ...\n`);
      if (!tty) return () => {};
      let last = completed();
      const timer = setInterval(() => {
        const now = completed();
        const elapsedS = (Date.now() - startMs) / 1000;
        const stage = elapsedS < opts.warmupS ? 'warmup' : 'measuring';
        process.stderr.write(
          `\r\x1b[K  ${label}: ${stage} ${Math.floor(elapsedS)}/${totalS}s, ${fmtInt(now - last)} req/s`,
        );
        last = now;
      }, 1000);
      return () => {
        clearInterval(timer);
        process.stderr.write('\r\x1b[K');
      };
    },
  };
}

// ---------------------------------------------------------------------------------------
// The run

interface WorkloadResult {
  readonly workload: Workload;
  readonly result: PhaseResult;
  readonly baselineOpsPerS: number | null;
}

interface BenchReport {
  readonly baseline: { get: PhaseResult | null; put: PhaseResult | null } | null;
  /** The same workloads against etcd (--etcd), or null. */
  readonly etcd: readonly WorkloadResult[] | null;
  readonly workloads: readonly WorkloadResult[];
}

async function runBench(opts: BenchOptions): Promise<number> {
  const progress = makeProgress();
  announce(opts);
  const routed =
    opts.routing === 'ring'
      ? await ringTarget(opts)
      : makeTarget(opts.endpoints, Math.ceil(opts.connections / opts.endpoints.length), { token: opts.token, contentType: RINGKV_CONTENT_TYPE });
  if (!('pools' in routed)) {
    process.stderr.write(`ringkv bench: ${routed.message}\n`);
    return routed.unreachable ? EXIT.unreachable : EXIT.failed;
  }
  const target = routed;
  // Workers round-robin over etcd's client URLs; a member forwards writes to its leader.
  const etcdTarget =
    opts.etcd.length === 0 ? null : makeTarget(opts.etcd, Math.ceil(opts.connections / opts.etcd.length), { contentType: 'application/json' });
  try {
    const problem = await preflight(target, '/readyz');
    if (problem !== null) {
      const hint = opts.routing === 'ring' && problem.unreachable ? ' (a member\'s advertised client URL; --routing endpoints loads only --endpoints)' : '';
      process.stderr.write(`ringkv bench: ${problem.message}${hint}\n`);
      return problem.unreachable ? EXIT.unreachable : EXIT.failed;
    }
    if (etcdTarget !== null) {
      const etcdProblem = await preflight(etcdTarget, ETCD_HEALTH_PATH);
      if (etcdProblem !== null) {
        process.stderr.write(`ringkv bench: etcd: ${etcdProblem.message}\n`);
        return etcdProblem.unreachable ? EXIT.unreachable : EXIT.failed;
      }
    }
    const baseline = opts.baseline ? await measureBaseline(opts, progress) : null;
    const values = benchValues(opts);
    const etcd =
      etcdTarget === null
        ? null
        : await runWorkloads(etcdTarget, new Workloads(opts, etcdCodec(KEY_PREFIX, values, opts.keys, mixedLabel(opts))), opts, baseline, progress, cpuSampler(etcdTarget, '/metrics', PROCESS_CPU_METRIC));
    const cpuTarget = await ringkvCpuTarget(opts, target);
    let workloads: WorkloadResult[];
    try {
      workloads = await runWorkloads(target, new Workloads(opts, ringkvCodec(opts, values)), opts, baseline, progress, cpuSampler(cpuTarget, '/metrics', RINGKV_CPU_METRIC));
    } finally {
      if (cpuTarget !== target) await closeTarget(cpuTarget);
    }
    const report: BenchReport = { baseline, etcd, workloads };
    process.stdout.write(opts.json ? JSON.stringify(toJson(report, opts)) + '\n' : renderTable(report, opts));
    const failed = [...workloads, ...(etcd ?? [])].some((w) => w.result.errorCount > 0);
    return failed ? EXIT.failed : EXIT.ok;
  } finally {
    await closeTarget(target);
    if (etcdTarget !== null) await closeTarget(etcdTarget);
  }
}

/** Every workload of opts against one system, populating its keyspace before the first read. */
async function runWorkloads(
  target: Target,
  work: Workloads,
  opts: BenchOptions,
  baseline: BenchReport['baseline'],
  progress: Progress,
  cpu: CpuSampler,
): Promise<WorkloadResult[]> {
  const results: WorkloadResult[] = [];
  for (const w of opts.workloads) {
    if (w !== 'put' && !work.isPopulated()) await populateWithNotice(target, work, opts);
    const result = await runPhase(target, work.spec(w), opts, progress, cpu);
    results.push({ workload: w, result, baselineOpsPerS: baselineRateFor(w, baseline, opts.mixedReadRatio) });
  }
  return results;
}

function announce(opts: BenchOptions): void {
  const phase = opts.warmupS + opts.durationS;
  const baselinePhases = opts.baseline ? baselineNeeds(opts.workloads).length : 0;
  const etcdPhases = opts.etcd.length > 0 ? opts.workloads.length : 0;
  process.stderr.write(
    `ringkv bench: ${opts.workloads.join(', ')} against ${opts.endpoints.join(', ')}\n` +
      `  ${opts.connections} connections (closed loop, no pipelining), ${opts.warmupS}s warmup + ${opts.durationS}s per workload, ` +
      `${opts.valueBytes}-byte values, ${opts.keys} keys` +
      (opts.workloads.includes('mixed') ? `, mixed read ratio ${opts.mixedReadRatio}` : '') +
      '\n' +
      (opts.baseline ? `  baseline: bare fastify (${baselineNeeds(opts.workloads).join(' and ')} /noop) in a child process first\n` : '') +
      (etcdPhases > 0 ? `  etcd: the same workloads against ${opts.etcd.join(', ')} (v3 JSON gateway, linearizable ranges) before ringkv's\n` : '') +
      `  about ${Math.ceil((opts.workloads.length + baselinePhases + etcdPhases) * phase)}s of load; ` +
      `client and server share ${availableParallelism()} CPUs\n`,
  );
}

function baselineNeeds(workloads: readonly Workload[]): ('GET' | 'PUT')[] {
  const needs: ('GET' | 'PUT')[] = [];
  if (workloads.includes('get') || workloads.includes('mixed')) needs.push('GET');
  if (workloads.includes('put') || workloads.includes('mixed')) needs.push('PUT');
  return needs;
}

async function measureBaseline(opts: BenchOptions, progress: Progress): Promise<NonNullable<BenchReport['baseline']>> {
  const server = await startBaseline();
  const target = makeTarget([server.origin], opts.connections, { contentType: RINGKV_CONTENT_TYPE });
  try {
    const problem = await preflight(target, '/noop');
    if (problem !== null) throw new Error(`bench-baseline: ${problem.message}`);
    const specs = baselineSpecs(opts);
    const needs = baselineNeeds(opts.workloads);
    const cpu = cpuSampler(target, '/metrics', PROCESS_CPU_METRIC);
    const get = needs.includes('GET') ? await runPhase(target, specs.get, opts, progress, cpu) : null;
    const put = needs.includes('PUT') ? await runPhase(target, specs.put, opts, progress, cpu) : null;
    return { get, put };
  } finally {
    await closeTarget(target);
    await server.stop();
  }
}

async function populateWithNotice(target: Target, work: Workloads, opts: BenchOptions): Promise<void> {
  const missing = work.written.reduce((n, b) => n + (b === 1 ? 0 : 1), 0);
  const which = work.codec.name === '' ? '' : `${work.codec.name} `;
  process.stderr.write(`  populating ${fmtInt(missing)} ${which}keys (not measured) ...\n`);
  const failures = await populate(target, work, opts);
  if (failures > 0) process.stderr.write(`  warning: ${failures} ${which}populate writes failed; gets of those keys will count as errors\n`);
}

/**
 * The baseline rate a workload is compared with. Mixed is compared with the blend of the
 * baseline GET and PUT rates at the same read ratio: if each op costs 1/rate seconds of
 * the shared capacity, a mix costs the weighted sum of those.
 */
function baselineRateFor(w: Workload, baseline: BenchReport['baseline'], readRatio: number): number | null {
  if (baseline === null) return null;
  const g = baseline.get?.opsPerS ?? 0;
  const p = baseline.put?.opsPerS ?? 0;
  switch (w) {
    case 'get':
      return g > 0 ? g : null;
    case 'put':
      return p > 0 ? p : null;
    case 'mixed':
      return g > 0 && p > 0 ? 1 / (readRatio / g + (1 - readRatio) / p) : null;
  }
}

// ---------------------------------------------------------------------------------------
// Output

const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtMs = (ns: number): string => (ns / 1e6).toFixed(2);

function phaseJson(r: PhaseResult): object {
  return {
    requests: r.requests,
    durationS: r.durationS,
    opsPerS: Math.round(r.opsPerS),
    latencyMs: {
      mean: ms(r.latency.meanNs()),
      p50: ms(r.latency.percentileNs(0.5)),
      p99: ms(r.latency.percentileNs(0.99)),
      p999: ms(r.latency.percentileNs(0.999)),
      max: ms(r.latency.maxNs),
    },
    errors: { total: r.errorCount, byStatus: Object.fromEntries(r.errors) },
    // CPU time per measured request, in µs: the servers' (null when they do not say) and this client's.
    cpuUsPerOp: r.cpu === null ? null : { server: usPerOp(r.cpu.serverS, r.requests), client: usPerOp(r.cpu.clientS, r.requests) },
  };
}

function usPerOp(cpuS: number | null, requests: number): number | null {
  return cpuS === null || requests === 0 ? null : Math.round((cpuS / requests) * 1e7) / 10;
}

function workloadJson(w: WorkloadResult): object {
  return {
    workload: w.workload,
    ...phaseJson(w.result),
    baselineOpsPerS: w.baselineOpsPerS === null ? null : Math.round(w.baselineOpsPerS),
    baselinePercent: w.baselineOpsPerS === null ? null : Math.round((w.result.opsPerS / w.baselineOpsPerS) * 1000) / 10,
  };
}

/** ringkv's workload w against etcd's: the rate ratio and whether its p99 is lower. */
function versusEtcd(w: WorkloadResult, etcd: BenchReport['etcd']): { ratio: number | null; p99Below: boolean | null } {
  const e = etcd?.find((x) => x.workload === w.workload)?.result;
  if (e === undefined) return { ratio: null, p99Below: null };
  return { ratio: opsRatio(w.result.opsPerS, e.opsPerS), p99Below: e.requests === 0 ? null : p99Below(w.result.latency.percentileNs(0.99), e.latency.percentileNs(0.99)) };
}

function toJson(report: BenchReport, opts: BenchOptions): object {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpus: availableParallelism(),
    options: {
      endpoints: opts.endpoints,
      routing: opts.routing,
      workloads: opts.workloads,
      connections: opts.connections,
      durationS: opts.durationS,
      warmupS: opts.warmupS,
      valueBytes: opts.valueBytes,
      keys: opts.keys,
      mixedReadRatio: opts.mixedReadRatio,
      etcd: opts.etcd,
    },
    baseline:
      report.baseline === null
        ? null
        : {
            get: report.baseline.get === null ? null : phaseJson(report.baseline.get),
            put: report.baseline.put === null ? null : phaseJson(report.baseline.put),
          },
    etcd: report.etcd === null ? null : { endpoints: opts.etcd, workloads: report.etcd.map(workloadJson) },
    workloads: report.workloads.map((w) => {
      const vs = versusEtcd(w, report.etcd);
      return {
        ...workloadJson(w),
        // ringkv ops/s ÷ etcd ops/s for the same workload, and whether ringkv's p99 is lower.
        vsEtcd: vs.ratio === null ? null : Math.round(vs.ratio * 1000) / 1000,
        p99BelowEtcd: vs.p99Below,
      };
    }),
  };
}

function renderTable(report: BenchReport, opts: BenchOptions): string {
  const withEtcd = report.etcd !== null;
  const header = ['workload', 'ops/s', 'p50 ms', 'p99 ms', 'p999 ms', 'max ms', 'errors', 'server µs/op', 'client µs/op', '% of baseline', ...(withEtcd ? ['× etcd', 'p99 < etcd'] : [])];
  const fmtUs = (cpuS: number | null | undefined, requests: number): string => {
    const us = cpuS === undefined ? null : usPerOp(cpuS, requests);
    return us === null ? '–' : us.toFixed(1);
  };
  const row = (r: PhaseResult, pct: string, etcd: string[]): string[] => [
    r.label,
    fmtInt(r.opsPerS),
    fmtMs(r.latency.percentileNs(0.5)),
    fmtMs(r.latency.percentileNs(0.99)),
    fmtMs(r.latency.percentileNs(0.999)),
    fmtMs(r.latency.maxNs),
    fmtInt(r.errorCount),
    fmtUs(r.cpu?.serverS, r.requests),
    fmtUs(r.cpu?.clientS, r.requests),
    pct,
    ...(withEtcd ? etcd : []),
  ];
  const pctOf = (w: WorkloadResult): string => (w.baselineOpsPerS === null ? '' : `${((w.result.opsPerS / w.baselineOpsPerS) * 100).toFixed(1)} %`);
  const rows: string[][] = [];
  if (report.baseline !== null) {
    for (const r of [report.baseline.get, report.baseline.put]) if (r !== null) rows.push(row(r, '', ['', '']));
  }
  for (const w of report.etcd ?? []) rows.push(row(w.result, pctOf(w), ['', '']));
  for (const w of report.workloads) {
    const vs = versusEtcd(w, report.etcd);
    rows.push(row(w.result, pctOf(w), [vs.ratio === null ? '' : `${vs.ratio.toFixed(2)}×`, vs.p99Below === null ? '' : vs.p99Below ? 'yes' : 'no']));
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  const out = [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];

  const all = [
    ...(report.baseline === null ? [] : [report.baseline.get, report.baseline.put]),
    ...(report.etcd ?? []).map((w) => w.result),
    ...report.workloads.map((w) => w.result),
  ];
  for (const r of all) {
    if (r === null || r.errorCount === 0) continue;
    const detail = [...r.errors].map(([status, n]) => `${status} x${fmtInt(n)}`).join(', ');
    out.push(`errors in ${r.label}: ${detail}`);
  }
  if (report.workloads.some((w) => w.workload === 'mixed') && report.baseline !== null) {
    out.push(`mixed is compared with the baseline GET/PUT rates blended at read ratio ${opts.mixedReadRatio}`);
  }
  if (withEtcd) {
    out.push(
      `× etcd: ringkv ops/s ÷ etcd ops/s for the same workload; p99 < etcd: whether ringkv's p99 is below etcd's. ` +
        `etcd ${opts.etcd.join(',')} through its v3 JSON gateway (get: linearizable range), workers round-robin over its URLs`,
    );
  }
  out.push(
    'server µs/op: CPU time (user + system) of the servers (every ringkv member, every etcd URL, the baseline: from their /metrics), per request measured; ' +
      'client µs/op: this process\'s; – where a server does not export its CPU time',
  );
  out.push(
    `${opts.connections} connections, ${opts.durationS}s measured after ${opts.warmupS}s warmup per row; ` +
      `${opts.valueBytes}-byte values; ${opts.keys} keys; Node ${process.version}; ${availableParallelism()} CPUs shared by client and server`,
  );
  return out.join('\n') + '\n';
}
