// RingkvClient: the typed client of the ringkv client API (docs/api.md, docs/client.md).
//
// Every call runs the same loop: pick a target (routing.ts), send one attempt
// (transport.ts), then let retry.ts decide whether the answer ends the call, whether to
// try again, or whether a write's outcome is unknown. Around that loop the client keeps
// its partition map fresh: it fetches GET /v1/cluster in the background when it has no
// map, and again when the map proved wrong (an answer served by another node than the
// primary it was sent to, a 503 or 421, or a node that did not answer). A retry waits
// for a refresh in flight, so it goes where the new map says.

import { CLIENT_ERROR_CODES, parseErrorBody, RingkvError } from './errors.js';
import { decide, DEFAULT_RETRY_POLICY, parseRetryAfter, type AttemptOutcome, type Decision, type OpKind, type RetryPolicy } from './retry.js';
import { originOf, PartitionMap, Router, type Target } from './routing.js';
import { Transport, TransportError, type Answer, type Exchange, type Headers } from './transport.js';

export interface RingkvClientOptions {
  /** Client URLs of some nodes (or of a load balancer in front of them): where to start. */
  readonly endpoints: readonly string[];
  /** Bearer token, when the nodes require one (auth.clientTokensFile). */
  readonly token?: string;
  /** Default deadline of a whole call, every attempt and wait included. Default 10000. */
  readonly timeoutMs?: number;
  /**
   * The longest a read waits for one attempt before trying elsewhere, so that a paused
   * node costs one attempt and not the whole call. Writes wait up to their deadline:
   * a write that timed out is not retried anyway. Default 2000.
   */
  readonly readAttemptTimeoutMs?: number;
  /** TCP connect timeout; a connect that timed out sent nothing. Default 2000. */
  readonly connectTimeoutMs?: number;
  /** Attempts and backoff (retry.ts). Default 8 attempts, waits capped at 50 ms doubling to 1000 ms. */
  readonly retry?: Partial<RetryPolicy>;
  /**
   * true (default): learn the partition map and send each key's requests to its primary.
   * false: send every request to the endpoints, which forward it in one hop; for one-shot
   * programs, where fetching the map would double the requests.
   */
  readonly routing?: boolean;
  /** Client URLs that replace the ones the members advertise, by node id (NAT, port mappings). */
  readonly nodeUrls?: Readonly<Record<string, string>>;
  /** Keep-alive connections per node at most. Default 64. */
  readonly connectionsPerNode?: number;
  /**
   * Idle keep-alive connections are closed after this. Default 10000: well below the
   * server's (72 s), so that the client closes an idle connection before the server does;
   * a write sent on a connection the server is closing would have an unknown outcome.
   */
  readonly keepAliveTimeoutMs?: number;
  /** A node that failed to answer is passed over this long. Default 1000. */
  readonly avoidMs?: number;
  /** Called after every attempt: for logs, metrics and tests. */
  readonly onAttempt?: (e: AttemptEvent) => void;
}

/** What one attempt did. */
export interface AttemptEvent {
  readonly op: 'get' | 'put' | 'delete' | 'list' | 'request';
  readonly method: Exchange['method'];
  readonly path: string;
  readonly key: string | null;
  /** 1 for the first attempt of a call. */
  readonly attempt: number;
  /** The origin the attempt was sent to. */
  readonly origin: string;
  /** The node at that origin, when the partition map knows it. */
  readonly target: string | null;
  /** True when the target is the key's primary in the map. */
  readonly primary: boolean;
  /** The answer's status; null when no answer came. */
  readonly status: number | null;
  /** The answer's X-Ringkv-Node. */
  readonly servedBy: string | null;
  /** The transport error code when no answer came (ECONNREFUSED, attempt_timeout, ...). */
  readonly error: string | null;
  /** False only if the request surely never left the client. */
  readonly sent: boolean;
  readonly decision: Decision['action'];
}

export interface CallOptions {
  /** This call's deadline, instead of the client's timeoutMs. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export type Consistency = 'strong' | 'stale';

export interface GetOptions extends CallOptions {
  /** strong (default): the primary under its lease, linearizable. stale: any copy. */
  readonly consistency?: Consistency;
}

export interface PutOptions extends CallOptions {
  /** Write only if the current version is one of these (or, with '*', if the key exists). */
  readonly ifMatch?: string | readonly string[];
  /** '*': create only; 412 precondition_failed if the key exists. */
  readonly ifNoneMatch?: '*';
}

export interface DeleteOptions extends CallOptions {
  readonly ifMatch?: string | readonly string[];
}

export interface ListOptions extends CallOptions {
  readonly prefix?: string;
  /** Keys per page (server default 100, at most limits.listLimitMax). */
  readonly limit?: number;
  /** From a previous page; null or absent for the first page. */
  readonly cursor?: string | null;
  readonly consistency?: Consistency;
}

export interface GetResult {
  readonly key: string;
  readonly value: Buffer;
  readonly version: string;
  /** The node that served the read (X-Ringkv-Node). */
  readonly node: string | null;
}

export interface PutResult {
  readonly key: string;
  readonly version: string;
  /** true: 201, the key did not exist; false: 200, a value was replaced. */
  readonly created: boolean;
  readonly node: string | null;
}

export interface DeleteResult {
  readonly key: string;
  /** false when the key did not exist (404 not_found). */
  readonly deleted: boolean;
  readonly node: string | null;
}

export interface ListPage {
  /** Keys in ascending UTF-8 byte order. */
  readonly keys: readonly string[];
  /** Pass to the next list call; null on the last page. */
  readonly cursor: string | null;
}

/** Any answer of the server, as `request` returns it. */
export interface RawAnswer extends Answer {
  /** The origin that answered. */
  readonly origin: string;
  /** X-Ringkv-Node: the node that served it. */
  readonly node: string | null;
  /** Attempts the call made, this one included. */
  readonly attempts: number;
}

export interface RequestOptions extends CallOptions {
  readonly body?: Uint8Array | string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A partition map refresh is not started sooner than this after the previous one. */
const mapRefreshIntervalMinMs = 100;
const KV_PATH = '/v1/kv/';

interface Call {
  readonly op: AttemptEvent['op'];
  readonly kind: OpKind;
  readonly key: string | null;
  readonly exchange: Exchange;
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
}

export class RingkvClient {
  private readonly router: Router;
  private readonly transport: Transport;
  private readonly policy: RetryPolicy;
  private readonly timeoutMs: number;
  private readonly readAttemptTimeoutMs: number;
  private readonly routing: boolean;
  private readonly nodeUrls: Readonly<Record<string, string>>;
  private readonly onAttempt: ((e: AttemptEvent) => void) | undefined;
  private readonly auth: Readonly<Record<string, string>>;
  private refreshing: Promise<void> | null = null;
  private readonly refreshAbort = new AbortController();
  private mapStale = true;
  private lastRefreshAt = -Infinity;
  private closed = false;

  constructor(opts: RingkvClientOptions) {
    const seeds = opts.endpoints.map((e) => {
      const origin = originOf(e);
      if (origin === null || new URL(e).pathname.replace(/\/$/, '') !== '') {
        throw new TypeError(`endpoint ${JSON.stringify(e)} must be an http(s) URL like http://host:port`);
      }
      return origin;
    });
    this.router = new Router([...new Set(seeds)], positive(opts.avoidMs ?? 1000, 'avoidMs'));
    this.transport = new Transport({
      connectionsPerNode: positive(opts.connectionsPerNode ?? 64, 'connectionsPerNode'),
      connectTimeoutMs: positive(opts.connectTimeoutMs ?? 2000, 'connectTimeoutMs'),
      keepAliveTimeoutMs: positive(opts.keepAliveTimeoutMs ?? 10_000, 'keepAliveTimeoutMs'),
    });
    this.policy = { ...DEFAULT_RETRY_POLICY, ...opts.retry };
    positive(this.policy.maxAttempts, 'retry.maxAttempts');
    this.timeoutMs = positive(opts.timeoutMs ?? 10_000, 'timeoutMs');
    this.readAttemptTimeoutMs = positive(opts.readAttemptTimeoutMs ?? 2000, 'readAttemptTimeoutMs');
    this.routing = opts.routing ?? true;
    this.nodeUrls = opts.nodeUrls ?? {};
    this.onAttempt = opts.onAttempt;
    this.auth = opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` };
  }

  /** The value and version of `key`, or null if it does not exist. */
  async get(key: string, opts: GetOptions = {}): Promise<GetResult | null> {
    const query = opts.consistency === undefined ? '' : `?consistency=${opts.consistency}`;
    const a = await this.exec(this.call('get', 'read', key, 'GET', kvPath(key) + query, this.auth, null, opts));
    if (a.status === 200) return { key, value: a.body, version: versionOf(a), node: a.node };
    if (a.status === 404 && parseErrorBody(a.status, a.body).code === 'not_found') return null;
    throw errorOf(a);
  }

  /** Stores `value`. With ifMatch it is a compare-and-set; with ifNoneMatch '*', create-only. */
  async put(key: string, value: Uint8Array | string, opts: PutOptions = {}): Promise<PutResult> {
    const headers: Record<string, string> = { ...this.auth, 'content-type': 'application/octet-stream' };
    if (opts.ifMatch !== undefined) headers['if-match'] = etagList(opts.ifMatch);
    if (opts.ifNoneMatch !== undefined) headers['if-none-match'] = opts.ifNoneMatch;
    const a = await this.exec(this.call('put', 'write', key, 'PUT', kvPath(key), headers, value, opts));
    if (a.status === 200 || a.status === 201) return { key, version: versionOf(a), created: a.status === 201, node: a.node };
    throw errorOf(a);
  }

  /** Stores `value` only if the key's current version is `version`; else 412 precondition_failed. */
  cas(key: string, version: string, value: Uint8Array | string, opts: CallOptions = {}): Promise<PutResult> {
    return this.put(key, value, { ...opts, ifMatch: version });
  }

  /** Deletes `key`; `deleted` is false if it did not exist. */
  async delete(key: string, opts: DeleteOptions = {}): Promise<DeleteResult> {
    const headers: Record<string, string> = { ...this.auth };
    if (opts.ifMatch !== undefined) headers['if-match'] = etagList(opts.ifMatch);
    const a = await this.exec(this.call('delete', 'write', key, 'DELETE', kvPath(key), headers, null, opts));
    if (a.status === 204) return { key, deleted: true, node: a.node };
    if (a.status === 404 && parseErrorBody(a.status, a.body).code === 'not_found') return { key, deleted: false, node: a.node };
    throw errorOf(a);
  }

  /** One page of keys. */
  async list(opts: ListOptions = {}): Promise<ListPage> {
    const qs = new URLSearchParams({ prefix: opts.prefix ?? '' });
    if (opts.limit !== undefined) qs.set('limit', String(opts.limit));
    if (opts.cursor !== undefined && opts.cursor !== null) qs.set('cursor', opts.cursor);
    if (opts.consistency !== undefined) qs.set('consistency', opts.consistency);
    const a = await this.exec(this.call('list', 'read', null, 'GET', `/v1/kv?${qs.toString()}`, this.auth, null, opts));
    if (a.status !== 200) throw errorOf(a);
    const page = parseJson(a) as { keys?: unknown; cursor?: unknown } | null;
    const keys = page?.keys;
    const cursor = page?.cursor;
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string') || (cursor !== null && typeof cursor !== 'string')) {
      throw new RingkvError(CLIENT_ERROR_CODES.invalid_response, 'GET /v1/kv: the body is not {keys, cursor}', null, { node: a.node });
    }
    return { keys: keys as string[], cursor: cursor as string | null };
  }

  /** Every page from opts.cursor (or the start) to the end; each page is one call. */
  async *pages(opts: ListOptions = {}): AsyncGenerator<ListPage, void, undefined> {
    let cursor = opts.cursor ?? null;
    do {
      const page = await this.list({ ...opts, cursor });
      yield page;
      cursor = page.cursor;
    } while (cursor !== null);
  }

  /** Every key with opts.prefix, page by page. */
  async *keys(opts: ListOptions = {}): AsyncGenerator<string, void, undefined> {
    for await (const page of this.pages(opts)) yield* page.keys;
  }

  /**
   * Any request to the client API (/v1/placement/..., /v1/cluster/members, ...), with the
   * same retry rules: GET as a read, any other method as a write. Every answer is
   * returned, whatever its status; only a missing answer rejects.
   */
  request(method: Exchange['method'], path: string, opts: RequestOptions = {}): Promise<RawAnswer> {
    const headers = { ...this.auth, ...opts.headers };
    return this.exec(this.call('request', method === 'GET' ? 'read' : 'write', null, method, path, headers, opts.body ?? null, opts));
  }

  /** The partition map in use, or null before the first one arrived (or with routing off). */
  get partitionMap(): PartitionMap | null {
    return this.router.partitionMap;
  }

  /** Fetches the partition map now; resolves with the map in use afterwards (null with routing off, or if no endpoint gave one). */
  async refreshMap(): Promise<PartitionMap | null> {
    if (this.refreshing !== null) await this.refreshing;
    this.mapStale = true;
    this.lastRefreshAt = -Infinity;
    this.maybeRefresh();
    if (this.refreshing !== null) await this.refreshing;
    return this.router.partitionMap;
  }

  /** Ends every keep-alive connection once the calls in flight have ended. */
  async close(): Promise<void> {
    this.closed = true;
    this.refreshAbort.abort();
    await this.transport.close();
  }

  // -------------------------------------------------------------------------------------

  private call(
    op: Call['op'],
    kind: OpKind,
    key: string | null,
    method: Exchange['method'],
    path: string,
    headers: Record<string, string>,
    body: Uint8Array | string | null,
    opts: CallOptions,
  ): Call {
    return { op, kind, key, exchange: { method, path, headers, body }, timeoutMs: opts.timeoutMs ?? this.timeoutMs, signal: opts.signal };
  }

  /** Attempts until an answer ends the call; returns that answer or throws a RingkvError. */
  private async exec(call: Call): Promise<RawAnswer> {
    const deadline = performance.now() + call.timeoutMs;
    const failures = new Map<string, number>();
    let lastAnswer: RawAnswer | null = null;
    this.maybeRefresh();
    for (let attempt = 1; ; attempt++) {
      const target = this.router.pick(call.key, performance.now());
      const tried = await this.attempt(call, target, attempt, deadline);
      const d = decide(call.kind, tried.outcome, attempt, deadline - performance.now(), this.policy, Math.random);
      this.onAttempt?.({
        op: call.op,
        method: call.exchange.method,
        path: call.exchange.path,
        key: call.key,
        attempt,
        origin: target.origin,
        target: target.node,
        primary: target.primary,
        status: tried.answer?.status ?? null,
        servedBy: tried.answer?.node ?? null,
        error: tried.failure?.code ?? null,
        sent: tried.failure?.sent ?? true,
        decision: d.action,
      });
      if (tried.failure !== null) {
        const why = `${target.origin}: ${tried.failure.code === 'attempt_timeout' ? tried.failure.message : `${tried.failure.code}: ${tried.failure.message}`}`;
        failures.set(why, (failures.get(why) ?? 0) + 1);
      }
      if (tried.answer !== null) lastAnswer = tried.answer;
      switch (d.action) {
        case 'done':
          return tried.answer!;
        case 'outcome_unknown':
          throw new RingkvError(
            CLIENT_ERROR_CODES.outcome_unknown,
            `${describe(call)} was sent to ${target.origin} and got no answer (${tried.failure!.message}); it may or may not have taken effect`,
            null,
            { attempts: attempt, cause: tried.failure },
          );
        case 'give_up':
          if (lastAnswer !== null) return { ...lastAnswer, attempts: attempt };
          throw noAnswerError(call, failures, attempt, deadline);
        case 'retry':
          if (!(await delay(d.delayMs, call.signal))) throw abortedError(call, null, attempt);
          this.maybeRefresh();
          if (this.refreshing !== null) await within(this.refreshing, Math.min(this.readAttemptTimeoutMs, deadline - performance.now()));
      }
    }
  }

  /**
   * One request to `target`, and what it says about the map and the target: a node that
   * did not answer is avoided for a while; an answer served by another node than the
   * primary it was sent to (a forward), a 503 or a 421 marks the map stale.
   */
  private async attempt(
    call: Call,
    target: Target,
    attempt: number,
    deadline: number,
  ): Promise<{ answer: RawAnswer | null; failure: TransportError | null; outcome: AttemptOutcome }> {
    const remainingMs = Math.max(1, deadline - performance.now());
    const attemptMs = call.kind === 'read' ? Math.min(remainingMs, this.readAttemptTimeoutMs) : remainingMs;
    try {
      const a = await this.transport.send(target.origin, call.exchange, attemptMs, call.signal);
      const answer: RawAnswer = { ...a, origin: target.origin, node: headerOf(a.headers, 'x-ringkv-node'), attempts: attempt };
      this.router.answered(target.origin);
      if ((target.primary && answer.node !== null && answer.node !== target.node) || a.status === 503 || a.status === 421) this.mapStale = true;
      const code = a.status >= 400 ? parseErrorBody(a.status, a.body).code : null;
      return { answer, failure: null, outcome: { kind: 'answer', status: a.status, code, retryAfterMs: parseRetryAfter(a.headers['retry-after'], Date.now()) } };
    } catch (e) {
      if (!(e instanceof TransportError)) throw e;
      if (e.code === 'aborted') throw abortedError(call, e, attempt);
      if (e.code === 'closed') throw new RingkvError(CLIENT_ERROR_CODES.aborted, `${describe(call)}: the client was closed`, null, { attempts: attempt });
      // undici refused the request itself (e.g. a header value with a newline): a bug, not an outage.
      if (e.code === 'UND_ERR_INVALID_ARG') throw new TypeError(`${describe(call)}: ${e.message}`, { cause: e });
      this.router.avoid(target.origin, performance.now());
      this.mapStale = true;
      return { answer: null, failure: e, outcome: { kind: 'no_answer', sent: e.sent } };
    }
  }

  /** Starts a map refresh if the map is missing or stale, none is running, and the last one is not too recent. */
  private maybeRefresh(): void {
    if (!this.routing || this.closed || !this.mapStale || this.refreshing !== null) return;
    if (performance.now() - this.lastRefreshAt < mapRefreshIntervalMinMs) return;
    this.mapStale = false;
    this.refreshing = this.fetchMap().finally(() => {
      this.refreshing = null;
      this.lastRefreshAt = performance.now();
    });
  }

  /** GET /v1/cluster from the endpoints in turn until one gives a usable map. Never rejects. */
  private async fetchMap(): Promise<void> {
    const exchange: Exchange = { method: 'GET', path: '/v1/cluster', headers: this.auth, body: null };
    for (const origin of this.router.endpointsByPreference(performance.now())) {
      try {
        const a = await this.transport.send(origin, exchange, this.readAttemptTimeoutMs, this.refreshAbort.signal);
        this.router.answered(origin);
        if (a.status !== 200) continue;
        this.router.setMap(PartitionMap.fromClusterView(JSON.parse(a.body.toString('utf8')), this.nodeUrls));
        return;
      } catch (e) {
        if (e instanceof TransportError) {
          if (e.code === 'aborted') return;
          this.router.avoid(origin, performance.now());
        }
        // A malformed body: try the next endpoint.
      }
    }
    this.mapStale = true; // nobody answered: try again on the next call
  }
}

function positive(n: number, name: string): number {
  if (!Number.isFinite(n) || n <= 0) throw new TypeError(`${name} must be a positive number, got ${n}`);
  return n;
}

const kvPath = (key: string): string => KV_PATH + encodeURIComponent(key);

const etagList = (v: string | readonly string[]): string =>
  v === '*' ? '*' : (typeof v === 'string' ? [v] : v).map((x) => `"${x}"`).join(', ');

function headerOf(h: Headers, name: string): string | null {
  const v = h[name];
  return v === undefined ? null : Array.isArray(v) ? (v[0] ?? null) : v;
}

function versionOf(a: RawAnswer): string {
  const etag = headerOf(a.headers, 'etag');
  if (etag === null) throw new RingkvError(CLIENT_ERROR_CODES.invalid_response, `answer ${a.status} has no ETag`, null, { node: a.node });
  return etag.replace(/"/g, '');
}

function parseJson(a: RawAnswer): unknown {
  try {
    return JSON.parse(a.body.toString('utf8'));
  } catch {
    return null;
  }
}

/** The error a non-success answer stands for. */
function errorOf(a: RawAnswer): RingkvError {
  const e = parseErrorBody(a.status, a.body);
  return new RingkvError(e.code, e.message, a.status, { node: a.node, attempts: a.attempts });
}

const describe = (call: Call): string => `${call.exchange.method} ${call.exchange.path.split('?')[0]}`;

function abortedError(call: Call, e: TransportError | null, attempts: number): RingkvError {
  if (call.kind === 'write' && e !== null && e.sent) {
    return new RingkvError(
      CLIENT_ERROR_CODES.outcome_unknown,
      `${describe(call)} was aborted after it was sent; it may or may not have taken effect`,
      null,
      { attempts, cause: call.signal?.reason },
    );
  }
  return new RingkvError(CLIENT_ERROR_CODES.aborted, `${describe(call)} was aborted`, null, { attempts, cause: call.signal?.reason });
}

function noAnswerError(call: Call, failures: ReadonlyMap<string, number>, attempts: number, deadline: number): RingkvError {
  const late = performance.now() >= deadline;
  const lines = [...failures].map(([why, n]) => (n > 1 ? `${why} (${n} times)` : why));
  return new RingkvError(
    late ? CLIENT_ERROR_CODES.deadline_exceeded : CLIENT_ERROR_CODES.unreachable,
    `${describe(call)}: no endpoint answered${late ? ` within ${call.timeoutMs} ms` : ''}:\n  ${lines.join('\n  ')}`,
    null,
    { attempts },
  );
}

/** Waits ms; false if the signal fired first. */
function delay(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Waits for p, but no longer than ms. */
async function within(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))]);
  clearTimeout(timer);
}
