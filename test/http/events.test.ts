// GET /v1/events (src/http/events-routes.ts) and the emitter behind it (src/runtime/events.ts):
// the snapshot comes first, events have the documented shapes, a closed stream leaves no
// subscriber or timer behind, the stream cap answers 503, server close ends open streams,
// CORS admits members' origins only; through a real node: auth and the in-flight count.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { applyChange, initialConfig, isChangeError, type ClusterConfig, type ConfigChange } from '../../src/core/membership.js';
import { buildRing, type Ring } from '../../src/core/ring.js';
import { nodeId } from '../../src/core/types.js';
import { sendError } from '../../src/http/client-app.js';
import { clusterView } from '../../src/http/cluster-routes.js';
import { ApiError } from '../../src/http/errors.js';
import { eventsRoutes } from '../../src/http/events-routes.js';
import { Metrics } from '../../src/http/metrics.js';
import { ClusterEvents } from '../../src/runtime/events.js';
import { startNode, type RunningNode } from '../../src/runtime/node.js';
import { SseParser } from '../../src/ui/sse.js';

// ------------------------------------------------------------------ a stream reader

interface Received {
  readonly type: string;
  readonly data: Record<string, unknown>;
}

interface Stream {
  readonly status: number;
  readonly headers: Headers;
  readonly events: Received[];
  /** SSE comment lines (keep-alive pings) seen so far. */
  comments(): number;
  /** The first event of this type after the `after`-th event. */
  next(type: string, after?: number, timeoutMs?: number): Promise<Received>;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

async function open(url: string, headers: Record<string, string> = {}): Promise<Stream> {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  const events: Received[] = [];
  let comments = 0;
  const parser = new SseParser((type, data) => events.push({ type, data: JSON.parse(data) as Record<string, unknown> }));
  const ended = (async () => {
    if (res.body === null) return;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        const text = decoder.decode(chunk, { stream: true });
        comments += (text.match(/^:/gm) ?? []).length;
        parser.push(text);
      }
    } catch {
      // aborted by close()
    }
  })();
  return {
    status: res.status,
    headers: res.headers,
    events,
    comments: () => comments,
    ended,
    async next(type, after = 0, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const e = events.slice(after).find((x) => x.type === type);
        if (e !== undefined) return e;
        if (Date.now() > deadline) throw new Error(`no ${type} event within ${timeoutMs} ms; got ${events.map((x) => x.type).join(',')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close: () => abort.abort(),
  };
}

const until = async (pred: () => boolean, timeoutMs = 2000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

// ------------------------------------------------------------------ a fake three-node cluster

const n = (id: string) => ({ id: nodeId(id), peerUrl: `http://127.0.0.1:1${id.slice(1)}`, clientUrl: `http://127.0.0.1:2${id.slice(1)}` });

/** The route plugin alone, over ClusterEvents driven by configs the test changes. */
async function fakeCluster(streamsMax = 2) {
  let cfg: ClusterConfig = initialConfig([n('n1'), n('n2'), n('n3')], { replicationFactor: 3, minInSync: 2, partitions: 16, vnodesPerNode: 8 });
  let ring: Ring = buildRing(cfg);
  const driver = {
    config: () => cfg,
    ring: () => ring,
    leader: () => nodeId('n1'),
    heartbeatAgeMs: () => 100,
    propose: () => Promise.resolve({ status: 'unavailable' as const, reason: 'timeout' as const }),
    moveProgress: () => new Map(),
    repair: () => Promise.resolve({ partitions: 0, done: 0, repaired: 0 }),
  };
  const config = configSchema.parse({ cluster: { name: 'fake' } });
  const events = new ClusterEvents(nodeId('n1'), driver, () => clusterView({ config, self: nodeId('n1'), driver }), 50);
  const metrics = new Metrics('n1', () => 0);
  const app = Fastify();
  app.setErrorHandler((e, _req, reply) => sendError(e instanceof ApiError ? e : new ApiError('internal', String(e)), reply));
  await app.register(eventsRoutes, { events, metrics, flushCounts: () => undefined, streamsMax, pingMs: 100, ratesMs: 100 });
  app.get('/boom', async (_req, reply) => {
    metrics.requests.inc({ route: '/boom', method: 'GET', code: '503' });
    return reply.code(503).send();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const change = (c: ConfigChange): void => {
    const next = applyChange(cfg, c);
    if (isChangeError(next)) throw new Error(next.error);
    cfg = next;
    ring = buildRing(cfg);
    events.configChanged();
  };
  return { app, url, events, change, metrics };
}

describe('GET /v1/events', () => {
  let f: Awaited<ReturnType<typeof fakeCluster>>;
  const streams: Stream[] = [];
  const stream = async (headers: Record<string, string> = {}): Promise<Stream> => {
    const s = await open(`${f.url}/v1/events`, headers);
    streams.push(s);
    return s;
  };
  beforeAll(async () => {
    f = await fakeCluster();
  });
  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    await until(() => f.events.subscribers === 0);
  });
  afterAll(async () => {
    // fetch (undici) may have opened a connection it never sent a request on; server.close()
    // would wait for that one's headers timeout.
    const closed = f.app.close();
    f.app.server.closeAllConnections();
    await closed;
  });

  it('starts with a snapshot: the cluster facts, the ring tokens, the rates', async () => {
    const s = await stream();
    expect(s.status).toBe(200);
    expect(s.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(s.headers.get('cache-control')).toBe('no-cache, no-transform');
    const first = await s.next('snapshot');
    expect(s.events[0]).toBe(first);
    expect(first.data).toMatchObject({ cluster: 'fake', self: 'n1', epoch: 1, leader: 'n1', replicationFactor: 3, partitionCount: 16, rates: null });
    expect(first.data.members).toEqual([
      expect.objectContaining({ id: 'n1', peerUrl: 'http://127.0.0.1:11', clientUrl: 'http://127.0.0.1:21', status: 'active', heartbeatAgeMs: 0, primaryPartitions: expect.any(Number) }),
      expect.objectContaining({ id: 'n2', status: 'active', heartbeatAgeMs: 100 }),
      expect.objectContaining({ id: 'n3', status: 'active' }),
    ]);
    expect(first.data.partitions).toHaveLength(16);
    expect((first.data.partitions as unknown[])[0]).toMatchObject({ partition: 0, primary: expect.stringMatching(/^n[123]$/), preference: expect.any(Array) });
    const tokens = (first.data.ring as { tokens: { token: string; node: string }[] }).tokens;
    expect(tokens).toHaveLength(3 * 8);
    for (const t of tokens) expect(t).toEqual({ token: expect.stringMatching(/^[0-9a-f]{16}$/), node: expect.stringMatching(/^n[123]$/) });
    expect(tokens.map((t) => t.token)).toEqual(tokens.map((t) => t.token).sort());
  });

  it('sends members and rates events, and keep-alive comments', async () => {
    const s = await stream();
    const members = await s.next('members');
    expect(members.data).toEqual({
      epoch: 1,
      leader: 'n1',
      members: [
        { id: 'n1', status: 'active', heartbeatAgeMs: 0 },
        { id: 'n2', status: 'active', heartbeatAgeMs: 100 },
        { id: 'n3', status: 'active', heartbeatAgeMs: 100 },
      ],
    });
    await s.next('rates');
    for (let i = 0; i < 3; i++) await fetch(`${f.url}/boom`);
    await until(() => s.events.some((e) => e.type === 'rates' && (e.data.errorsPerSec as number) > 0));
    const rates = s.events.filter((e) => e.type === 'rates').at(-1)!;
    expect(Object.keys(rates.data).sort()).toEqual(['errorsPerSec', 'requestsPerSec']);
    expect(rates.data.requestsPerSec).toBeGreaterThanOrEqual(rates.data.errorsPerSec as number);
    await until(() => s.comments() > 0);
    // Unchanged liveness is not sent again.
    const count = s.events.filter((e) => e.type === 'members').length;
    await new Promise((r) => setTimeout(r, 200));
    expect(s.events.filter((e) => e.type === 'members')).toHaveLength(count);
  });

  it('a member going down: an epoch event, then a primary event per partition it led', async () => {
    const s = await stream();
    const snap = (await s.next('snapshot')).data as { partitions: { partition: number; primary: string }[] };
    const led = snap.partitions.filter((p) => p.primary === 'n2').map((p) => p.partition);
    expect(led.length).toBeGreaterThan(0);
    f.change({ kind: 'mark-down', id: nodeId('n2') });
    const epoch = await s.next('epoch');
    expect(epoch.data).toMatchObject({ epoch: 2, previousEpoch: 1, changes: [{ id: 'n2', from: 'active', to: 'down' }] });
    expect((epoch.data.members as { id: string; status: string }[]).find((m) => m.id === 'n2')?.status).toBe('down');
    expect((epoch.data.partitions as { primary: string }[]).some((p) => p.primary === 'n2')).toBe(false);
    expect((epoch.data.ring as { tokens: unknown[] }).tokens).toHaveLength(24);
    await until(() => s.events.filter((e) => e.type === 'primary').length === led.length);
    const primaries = s.events.filter((e) => e.type === 'primary');
    expect(s.events.indexOf(primaries[0]!)).toBeGreaterThan(s.events.indexOf(epoch));
    expect(primaries.map((e) => e.data.partition)).toEqual(led);
    for (const e of primaries) expect(e.data).toEqual({ epoch: 2, partition: expect.any(Number), old: 'n2', new: expect.stringMatching(/^n[13]$/), failover: true });
    expect(s.events.some((e) => e.type === 'partition-move')).toBe(false); // status never moves tokens

    // Back: the same partitions return to n2, which was never gone, so no failover.
    const mark = s.events.length;
    f.change({ kind: 'mark-joining', id: nodeId('n2') });
    f.change({ kind: 'mark-active', id: nodeId('n2') });
    await until(() => s.events.filter((e, i) => i >= mark && e.type === 'primary').length === led.length);
    for (const e of s.events.slice(mark).filter((x) => x.type === 'primary')) expect(e.data).toMatchObject({ epoch: 4, new: 'n2', failover: false });
  });

  it('a member added and placed on the ring: partition-move events name the old and new owners', async () => {
    const s = await stream();
    await s.next('snapshot');
    f.change({ kind: 'add', member: n('n4') });
    const added = await s.next('epoch');
    expect(added.data.changes).toEqual([{ id: 'n4', from: null, to: 'joining' }]);
    const mark = s.events.length;
    f.change({ kind: 'mark-active', id: nodeId('n4') });
    const move = await s.next('partition-move', mark);
    expect(move.data).toEqual({ epoch: expect.any(Number), partition: expect.any(Number), from: expect.any(Array), to: expect.arrayContaining(['n4']) });
    expect(move.data.from).not.toContain('n4');
  });

  it('refuses streams beyond limits.eventStreamsMax with 503, and frees the slot on disconnect', async () => {
    const a = await stream();
    await stream();
    const refused = await fetch(`${f.url}/v1/events`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(await refused.json()).toEqual({ error: { code: 'unavailable', message: 'this node already serves 2 event streams (limits.eventStreamsMax); try another node' } });
    a.close();
    await until(() => f.events.subscribers === 1);
    const again = await stream();
    expect(again.status).toBe(200);
  });

  it('leaves no subscriber or timer behind once its streams close', async () => {
    await until(() => f.events.subscribers === 0);
    const before = timeouts();
    const a = await stream();
    const b = await stream();
    await a.next('rates');
    expect(f.events.subscribers).toBe(2);
    expect(timeouts()).toBeGreaterThan(before);
    a.close();
    b.close();
    await until(() => f.events.subscribers === 0);
    await until(() => timeouts() <= before);
  });

  it('admits the members’ client origins by CORS, and no other', async () => {
    const member = await stream({ origin: 'http://127.0.0.1:22' });
    expect(member.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:22');
    expect(member.headers.get('vary')).toBe('origin');
    const other = await stream({ origin: 'http://evil.example' });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const preflight = await fetch(`${f.url}/v1/events`, { method: 'OPTIONS', headers: { origin: 'http://127.0.0.1:23', 'access-control-request-headers': 'authorization' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:23');
    expect(preflight.headers.get('access-control-allow-headers')).toBe('authorization');
  });
});

describe('server close', () => {
  it('ends open streams, so that close() does not wait for them', async () => {
    const f = await fakeCluster();
    const s = await open(`${f.url}/v1/events`);
    await s.next('snapshot');
    const t0 = Date.now();
    await f.app.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    await s.ended;
    expect(f.events.subscribers).toBe(0);
  });
});

describe('through a node', () => {
  let node: RunningNode;
  let dir: string;
  let base: string;
  const read = 'a-long-random-read-token';
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ringkv-events-'));
    writeFileSync(join(dir, 'tokens.yaml'), `- { token: "${read}", scope: read }\n`);
    const loaded = loadConfig(null, {
      RINGKV_STORAGE_ENGINE: 'memory',
      RINGKV_LISTEN_CLIENT: '127.0.0.1:0',
      RINGKV_LISTEN_PEER: '127.0.0.1:0',
      RINGKV_AUTH_CLIENTTOKENSFILE: join(dir, 'tokens.yaml'),
      RINGKV_LIMITS_INFLIGHTREQUESTSMAX: '3',
    });
    node = await startNode(loaded, pino({ level: 'silent' }));
    base = `http://127.0.0.1:${node.clientAddress.port}`;
  });
  afterAll(async () => {
    await node.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('needs the same read scope as GET /v1/cluster; the dashboard files need none', async () => {
    const none = await fetch(`${base}/v1/events`);
    expect(none.status).toBe(401);
    const s = await open(`${base}/v1/events`, { authorization: `Bearer ${read}` });
    expect(s.status).toBe(200);
    expect((await s.next('snapshot')).data).toMatchObject({ self: 'n1', epoch: 1, members: [expect.objectContaining({ id: 'n1', status: 'active' })] });
    s.close();
    // Tests run from src/, where the dashboard is not built: it is found, not refused.
    const ui = await fetch(`${base}/ui`);
    expect(ui.status).not.toBe(401);
  });

  it('a stream the client drops no longer counts as a request in progress', async () => {
    for (let i = 0; i < 5; i++) {
      const s = await open(`${base}/v1/events`, { authorization: `Bearer ${read}` });
      await s.next('snapshot');
      s.close();
      await s.ended;
    }
    // limits.inflightRequestsMax is 3: five leaked streams would make this a 503.
    await new Promise((r) => setTimeout(r, 100)); // the server sees the disconnects
    const r = await fetch(`${base}/v1/cluster`, { headers: { authorization: `Bearer ${read}` } });
    expect(r.status).toBe(200);
  });
});
