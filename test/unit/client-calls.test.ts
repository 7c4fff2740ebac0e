// RingkvClient's call loop against scripted HTTP servers on 127.0.0.1 (node:http, in this
// process): every server counts the requests it received, so each test can say how many
// attempts reached a server, and where. Covers the retry rules end to end (503, 504,
// refused connections, a server that never answers, aborts, deadlines) and the
// partition-map refresh when an answer shows the map is out of date.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RingkvClient, RingkvError, type AttemptEvent, type RingkvClientOptions } from '../../src/client/index.js';
import { freePort } from '../support/proc.js';

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

interface FakeNode {
  readonly url: string;
  /** Requests received, as "METHOD /path". */
  readonly seen: string[];
  handler: Handler;
}

const servers: Server[] = [];
const clients: RingkvClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const s of servers.splice(0)) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function fakeNode(handler: Handler): Promise<FakeNode> {
  const node: FakeNode = { url: '', seen: [], handler };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      node.seen.push(`${req.method} ${req.url}`);
      node.handler(req, res, node.seen.length);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return Object.assign(node, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}

function client(opts: RingkvClientOptions): { kv: RingkvClient; events: AttemptEvent[] } {
  const events: AttemptEvent[] = [];
  const kv = new RingkvClient({ routing: false, retry: { baseDelayMs: 1, maxDelayMs: 5 }, ...opts, onAttempt: (e) => events.push(e) });
  clients.push(kv);
  return { kv, events };
}

function send(res: ServerResponse, status: number, body: unknown = '', headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(text);
}
const fail = (res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void =>
  send(res, status, { error: { code, message: `${code} from the fake` } }, headers);
const created = (node: string) => (_req: IncomingMessage, res: ServerResponse): void =>
  send(res, 201, { key: 'k', version: '0123456789abcdef' }, { etag: '"0123456789abcdef"', 'x-ringkv-node': node });
const never: Handler = () => {};

async function rejection(p: Promise<unknown>): Promise<RingkvError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RingkvError);
  return e as RingkvError;
}

describe('writes', () => {
  it('are retried after 503 unavailable (nothing applied), honouring Retry-After', async () => {
    const a = await fakeNode((_req, res, n) => (n <= 2 ? fail(res, 503, 'unavailable', { 'retry-after': '0' }) : created('n1')(_req, res)));
    const { kv, events } = client({ endpoints: [a.url] });
    const r = await kv.put('k', 'v');
    expect(r).toEqual({ key: 'k', version: '0123456789abcdef', created: true, node: 'n1' });
    expect(a.seen).toEqual(['PUT /v1/kv/k', 'PUT /v1/kv/k', 'PUT /v1/kv/k']);
    expect(events.map((e) => e.decision)).toEqual(['retry', 'retry', 'done']);

    const slow = await fakeNode((_req, res) => fail(res, 503, 'unavailable', { 'retry-after': '1' }));
    const t0 = performance.now();
    const e = await rejection(client({ endpoints: [slow.url] }).kv.put('k', 'v', { timeoutMs: 1500 }));
    expect(e).toMatchObject({ code: 'unavailable', status: 503, attempts: 2 });
    expect(slow.seen).toHaveLength(2); // the second attempt waited the full second
    expect(performance.now() - t0).toBeGreaterThanOrEqual(990);
  });

  it('are not retried after a 503 outside the catalogue, or the server\'s 504 timeout', async () => {
    const closing = await fakeNode((_req, res) => send(res, 503, { error: 'Service Unavailable', message: 'Service Unavailable', statusCode: 503 }));
    const e = await rejection(client({ endpoints: [closing.url] }).kv.put('k', 'v'));
    expect(e).toMatchObject({ code: 'http_503', status: 503 });
    expect(closing.seen).toHaveLength(1);

    const timedOut = await fakeNode((_req, res) => fail(res, 504, 'timeout'));
    const t = await rejection(client({ endpoints: [timedOut.url] }).kv.delete('k'));
    expect(t).toMatchObject({ code: 'timeout', status: 504, outcomeUnknown: true });
    expect(timedOut.seen).toHaveLength(1);
  });

  it('that got no answer reject with outcome_unknown after exactly one request, even with time and attempts left', async () => {
    const paused = await fakeNode(never);
    const other = await fakeNode(created('n2'));
    const { kv, events } = client({ endpoints: [paused.url, other.url] });
    const e = await rejection(kv.put('k', 'v', { timeoutMs: 300, ifMatch: '0123456789abcdef' }));
    expect(e).toMatchObject({ code: 'outcome_unknown', status: null, attempts: 1, outcomeUnknown: true });
    expect(paused.seen).toEqual(['PUT /v1/kv/k']);
    expect(other.seen).toEqual([]);
    expect(events).toMatchObject([{ error: 'attempt_timeout', sent: true, decision: 'outcome_unknown' }]);
  });

  it('are retried on another endpoint when the connection was refused (never sent)', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const live = await fakeNode(created('n2'));
    const { kv, events } = client({ endpoints: [dead, live.url] });
    expect((await kv.put('k', 'v', { ifNoneMatch: '*' })).node).toBe('n2');
    expect(events).toMatchObject([
      { origin: dead, error: 'ECONNREFUSED', sent: false, decision: 'retry' },
      { origin: live.url, status: 201, decision: 'done' },
    ]);
    expect(live.seen).toEqual(['PUT /v1/kv/k']);
  });

  it('aborted after they were sent reject with outcome_unknown; before, with aborted', async () => {
    const paused = await fakeNode(never);
    const { kv } = client({ endpoints: [paused.url] });
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('user gave up')), 100);
    const e = await rejection(kv.put('k', 'v', { signal: ac.signal }));
    expect(e).toMatchObject({ code: 'outcome_unknown', outcomeUnknown: true });
    expect(paused.seen).toHaveLength(1);
    const before = await rejection(kv.put('k', 'v', { signal: AbortSignal.abort() }));
    expect(before.code).toBe('aborted');
    expect(paused.seen).toHaveLength(1);
  });
});

describe('misuse', () => {
  it('a request undici refuses to send throws a TypeError at once; a closed client rejects with aborted', async () => {
    const a = await fakeNode(created('n1'));
    const { kv } = client({ endpoints: [a.url], token: 'bad\ntoken' });
    await expect(kv.put('k', 'v')).rejects.toThrow(TypeError);
    const { kv: closed } = client({ endpoints: [a.url] });
    await closed.close();
    expect((await rejection(closed.get('k'))).code).toBe('aborted');
    expect(a.seen).toEqual([]);
  });
});

describe('reads', () => {
  it('are retried after no answer, on another endpoint, within readAttemptTimeoutMs', async () => {
    const paused = await fakeNode(never);
    const live = await fakeNode((_req, res) => res.writeHead(200, { etag: '"0123456789abcdef"', 'x-ringkv-node': 'n2' }).end('hello'));
    const { kv, events } = client({ endpoints: [paused.url, live.url], readAttemptTimeoutMs: 150 });
    const r = await kv.get('a/b c', { consistency: 'stale' });
    expect(r).toMatchObject({ key: 'a/b c', version: '0123456789abcdef', node: 'n2' });
    expect(r!.value.toString()).toBe('hello');
    expect(live.seen).toEqual(['GET /v1/kv/a%2Fb%20c?consistency=stale']);
    expect(events.map((e) => [e.error ?? e.status, e.decision])).toEqual([['attempt_timeout', 'retry'], [200, 'done']]);
  });

  it('are retried on 503 and 504 until maxAttempts, then reject with the last answer', async () => {
    const a = await fakeNode((_req, res, n) => fail(res, n % 2 === 1 ? 503 : 504, n % 2 === 1 ? 'unavailable' : 'timeout'));
    const e = await rejection(client({ endpoints: [a.url], retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 } }).kv.get('k'));
    expect(e).toMatchObject({ code: 'unavailable', status: 503, attempts: 3 });
    expect(a.seen).toHaveLength(3);
  });

  it('return null for a missing key; delete says deleted: false', async () => {
    const a = await fakeNode((_req, res) => fail(res, 404, 'not_found', { 'x-ringkv-node': 'n1' }));
    const { kv } = client({ endpoints: [a.url] });
    expect(await kv.get('k')).toBeNull();
    expect(await kv.delete('k')).toEqual({ key: 'k', deleted: false, node: 'n1' });
  });

  it('list pages follow the cursor to the end', async () => {
    const pages: Record<string, unknown> = { '': { keys: ['a', 'b'], cursor: 'Yg' }, Yg: { keys: ['c'], cursor: null } };
    const a = await fakeNode((req, res) => send(res, 200, pages[new URL(req.url!, 'http://x').searchParams.get('cursor') ?? '']));
    const { kv } = client({ endpoints: [a.url] });
    const keys: string[] = [];
    for await (const k of kv.keys({ prefix: 'p', limit: 2 })) keys.push(k);
    expect(keys).toEqual(['a', 'b', 'c']);
    expect(a.seen).toEqual(['GET /v1/kv?prefix=p&limit=2', 'GET /v1/kv?prefix=p&limit=2&cursor=Yg']);
  });

  it('reject with unreachable when nothing answers, and deadline_exceeded when time ran out', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const e = await rejection(client({ endpoints: [dead], retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1 } }).kv.get('k'));
    expect(e).toMatchObject({ code: 'unreachable', status: null, attempts: 3 });
    expect(e.message).toMatch(/no endpoint answered:\n {2}http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED: .* \(3 times\)/);

    const paused = await fakeNode(never);
    const late = await rejection(client({ endpoints: [paused.url] }).kv.list({ timeoutMs: 200 }));
    expect(late).toMatchObject({ code: 'deadline_exceeded', status: null });
  });
});

describe('routing', () => {
  it('sends keys to their primaries and refreshes the map when an answer comes from another node', async () => {
    // Two fake nodes; n1 is the primary of every partition in epoch 1, n2 in epoch 2.
    let epoch = 1;
    const nodes: FakeNode[] = [];
    const clusterView = () => ({
      epoch,
      partitionCount: 4,
      members: nodes.map((n, i) => ({ id: `n${i + 1}`, clientUrl: n.url, status: 'active' })),
      partitions: [0, 1, 2, 3].map((p) => ({ partition: p, primary: `n${epoch}`, preference: epoch === 1 ? ['n1', 'n2'] : ['n2', 'n1'] })),
    });
    const node = (id: string): Handler => (req, res) => {
      if (req.url === '/v1/cluster') return send(res, 200, clusterView());
      // Whoever gets the request, the primary of the current epoch serves it (a forward).
      send(res, 200, 'v', { etag: '"0123456789abcdef"', 'x-ringkv-node': `n${epoch}`, 'x-fake-node': id });
    };
    nodes.push(await fakeNode(node('n1')), await fakeNode(node('n2')));
    const { kv, events } = client({ endpoints: [nodes[1]!.url], routing: true });

    expect((await kv.refreshMap())?.epoch).toBe(1);
    await kv.get('k1');
    expect(events.at(-1)).toMatchObject({ origin: nodes[0]!.url, target: 'n1', primary: true, servedBy: 'n1' });

    epoch = 2; // the cluster moved on; the client's map says n1
    const seenBefore = nodes.map((n) => n.seen.filter((s) => s === 'GET /v1/cluster').length);
    expect((await kv.get('k2'))?.node).toBe('n2'); // sent to n1, served by n2: forwarded
    await new Promise((r) => setTimeout(r, 150)); // the refresh runs on the next call after the minimum interval
    await kv.get('k3');
    await expect.poll(() => kv.partitionMap?.epoch).toBe(2);
    const seenAfter = nodes.map((n) => n.seen.filter((s) => s === 'GET /v1/cluster').length);
    expect(seenAfter[0]! + seenAfter[1]! - seenBefore[0]! - seenBefore[1]!).toBe(1);
    await kv.get('k4');
    expect(events.at(-1)).toMatchObject({ origin: nodes[1]!.url, target: 'n2', primary: true, servedBy: 'n2' });
  });

  it('without a map yet, sends the first request to an endpoint and fetches the map in the background', async () => {
    const a = await fakeNode((req, res) =>
      req.url === '/v1/cluster'
        ? send(res, 200, { epoch: 1, partitionCount: 1, members: [{ id: 'n1', clientUrl: a.url, status: 'active' }], partitions: [{ partition: 0, primary: 'n1', preference: ['n1'] }] })
        : created('n1')(req, res),
    );
    const { kv, events } = client({ endpoints: [a.url], routing: true });
    await kv.put('k', 'v');
    expect(events[0]).toMatchObject({ target: null, primary: false });
    await expect.poll(() => kv.partitionMap?.epoch).toBe(1);
    await kv.put('k', 'v');
    expect(events[1]).toMatchObject({ target: 'n1', primary: true });
    expect(a.seen.filter((s) => s === 'GET /v1/cluster')).toHaveLength(1);
  });
});
