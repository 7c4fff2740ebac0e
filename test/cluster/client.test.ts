// The client library (ringkv/client) against real processes from `ringkv local` (3 nodes):
//   (a) with the partition map, every key request goes straight to the key's primary: the
//       attempt's target and X-Ringkv-Node equal the primary of /v1/placement, and each
//       node's client API counted exactly the PUTs of the keys it is primary of (a request
//       sent to another node would have been counted there, and forwarded);
//   (b) a write whose outcome is unknown is never retried: with the primary paused
//       (SIGSTOP) a put with a short timeout rejects with outcome_unknown, and a counting
//       TCP proxy in front of the primary (its client URL, through `nodeUrls`) saw exactly
//       one attempt, and no other node got one (the paused node's own request counter is
//       no witness: a request whose client went away is not counted);
//   (c) reads ride through a kill -9 of the primary: every read of its keys, issued right
//       after the kill, succeeds (retried through refused connections and 503s until
//       failover), and the client ends up routing to the new primaries.

import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingkvClient, RingkvError, type AttemptEvent, type PartitionMap } from '../../src/client/index.js';
import { allActive, LocalCluster } from '../support/cluster.js';
import { metricSamples, pidOf, placement } from '../support/workload.js';

/** PUT /v1/kv/* requests the client API of the node at `base` has answered. */
async function kvPuts(base: string): Promise<number> {
  const samples = await metricSamples(base, 'ringkv_http_requests_total');
  return samples.filter((s) => s.labels.route === '/v1/kv/*' && s.labels.method === 'PUT').reduce((a, s) => a + s.value, 0);
}

/** `count` keys named `${prefix}-<i>` whose primary in `map` satisfies pred. */
function keysWithPrimary(map: PartitionMap, prefix: string, count: number, pred: (primary: string) => boolean): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    if (i > 5000) throw new Error(`not enough keys for ${prefix}`);
    const primary = map.route(`${prefix}-${i}`).primary;
    if (primary !== null && pred(primary)) out.push(`${prefix}-${i}`);
  }
  return out;
}

/** A TCP proxy to `upstream` that keeps every byte the clients sent, to count requests. */
async function countingProxy(upstream: string): Promise<{ url: string; count: (requestLine: string) => number; close: () => Promise<void> }> {
  const { hostname, port } = new URL(upstream);
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((down) => {
    const i = received.push('') - 1;
    const up = connect(Number(port), hostname);
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        (s === down ? up : down).destroy();
      });
    }
    down.on('data', (d: Buffer) => (received[i] += d.toString('latin1')));
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    count: (line) => received.reduce((n, text) => n + text.split(`${line}\r\n`).length - 1, 0),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('RingkvClient against a 3-node cluster (ringkv local)', () => {
  let c: LocalCluster;
  beforeAll(async () => {
    c = await LocalCluster.start(3);
    await c.waitFor('n1', allActive(3), 10_000);
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('(a) sends every key request straight to its primary', { timeout: 60_000 }, async () => {
    const events: AttemptEvent[] = [];
    const kv = new RingkvClient({ endpoints: [c.client('n1')], onAttempt: (e) => events.push(e) });
    try {
      const map = (await kv.refreshMap())!;
      expect(map.epoch).toBe((await c.view('n1')).epoch);
      const keys = Array.from({ length: 60 }, (_, i) => `route-${i}`);
      const primaries = new Map<string, string>();
      for (const key of keys) primaries.set(key, (await placement(c, key)).primary!);
      expect(new Set(primaries.values()).size).toBe(3);

      const before = await Promise.all(c.ids().map((id) => kvPuts(c.client(id))));
      for (const key of keys) {
        const put = await kv.put(key, `value-${key}`);
        const got = await kv.get(key);
        expect(put.node).toBe(primaries.get(key));
        expect(got?.node).toBe(primaries.get(key));
        expect(got?.value.toString()).toBe(`value-${key}`);
      }
      const after = await Promise.all(c.ids().map((id) => kvPuts(c.client(id))));

      for (const key of keys) {
        const mine = events.filter((e) => e.key === key);
        const primary = primaries.get(key)!;
        // Every attempt goes straight to the key's primary. On a loaded machine the primary
        // may refuse one (503: its lease renewal came late; nothing applied) and the client
        // tries it again, there; any other retry would be a routing or retry-rule bug.
        for (const e of mine) expect([e.op, e.origin, e.target, e.primary]).toEqual([e.op, c.client(primary), primary, true]);
        for (const op of ['put', 'get'] as const) {
          const attempts = mine.filter((e) => e.op === op);
          expect(attempts.map((e) => e.attempt)).toEqual(attempts.map((_, i) => i + 1));
          expect(attempts.at(-1)?.servedBy).toBe(primary);
          for (const e of attempts.slice(0, -1)) expect({ status: e.status, sent: e.sent }).toMatchObject(e.status === null ? { sent: false } : { status: 503 });
        }
      }
      // Each node counted exactly the PUTs the client sent it: none went anywhere else.
      const expected = c.ids().map((id) => events.filter((e) => e.op === 'put' && e.sent && e.target === id).length);
      c.ids().forEach((id, i) => expect(expected[i]).toBeGreaterThanOrEqual(keys.filter((k) => primaries.get(k) === id).length));
      expect(after.map((n, i) => n - before[i]!)).toEqual(expected);
      console.log(`client (a): ${keys.length} keys, PUTs per node ${JSON.stringify(expected)}, every request sent to and served by its primary`);
    } finally {
      await kv.close();
    }
  });

  it('(b) a write whose outcome is unknown is never retried (SIGSTOP of the primary)', { timeout: 60_000 }, async () => {
    const victim = 'n3';
    const others = c.ids().filter((id) => id !== victim);
    const proxy = await countingProxy(c.client(victim));
    const events: AttemptEvent[] = [];
    const kv = new RingkvClient({ endpoints: [c.client('n1')], nodeUrls: { [victim]: proxy.url }, onAttempt: (e) => events.push(e) });
    const pid = pidOf(c, victim);
    let stopped = false;
    try {
      const map = (await kv.refreshMap())!;
      expect(map.urlOf(victim)).toBe(proxy.url);
      const [key] = keysWithPrimary(map, 'unknown', 1, (p) => p === victim);
      const requestLine = `PUT /v1/kv/${encodeURIComponent(key!)} HTTP/1.1`;
      await kv.put(key!, 'before'); // through the proxy, on a connection the pool keeps
      expect(proxy.count(requestLine)).toBe(1);
      const othersBefore = await Promise.all(others.map((id) => kvPuts(c.client(id))));

      process.kill(pid, 'SIGSTOP');
      stopped = true;
      const started = performance.now();
      const e = await kv.put(key!, 'during', { timeoutMs: 500 }).then(
        () => null,
        (err: unknown) => err,
      );
      const tookMs = performance.now() - started;
      expect(e).toBeInstanceOf(RingkvError);
      expect(e).toMatchObject({ code: 'outcome_unknown', status: null, attempts: 1, outcomeUnknown: true });
      expect(proxy.count(requestLine)).toBe(2); // 'before' and exactly one attempt of 'during'
      expect(events.filter((x) => x.key === key).map((x) => [x.attempt, x.target, x.error, x.sent, x.decision])).toEqual([
        [1, victim, null, true, 'done'],
        [1, victim, 'attempt_timeout', true, 'outcome_unknown'],
      ]);
      expect(await Promise.all(others.map((id) => kvPuts(c.client(id))))).toEqual(othersBefore);

      process.kill(pid, 'SIGCONT');
      stopped = false;
      // The outcome really is unknown: the write may have been applied once the victim ran again.
      const final = (await kv.get(key!, { timeoutMs: 20_000 }))?.value.toString();
      expect(['before', 'during']).toContain(final);
      expect(proxy.count(requestLine)).toBe(2); // and nothing was sent again later
      console.log(
        `client (b): put to paused primary ${victim} rejected with outcome_unknown after ${tookMs.toFixed(0)} ms; ` +
          `the proxy saw exactly 1 attempt, the other nodes none; after SIGCONT the key reads ${JSON.stringify(final)}`,
      );
    } finally {
      if (stopped) process.kill(pid, 'SIGCONT');
      await kv.close();
      await proxy.close();
    }
    for (const id of c.ids()) await c.waitFor(id, allActive(3), 30_000);
  });

  it('(c) reads ride through a kill -9 of the primary and end up routed to the new primaries', { timeout: 60_000 }, async () => {
    const victim = 'n2';
    const events: AttemptEvent[] = [];
    const kv = new RingkvClient({ endpoints: c.ids().map((id) => c.client(id)), onAttempt: (e) => events.push(e) });
    try {
      const map = (await kv.refreshMap())!;
      const keys = keysWithPrimary(map, 'failover', 20, (p) => p === victim);
      for (const key of keys) await kv.put(key, `value-${key}`);

      c.kill9(victim);
      const killedAt = performance.now();
      const reads = await Promise.allSettled(keys.map((key) => kv.get(key, { timeoutMs: 20_000 })));
      const tookMs = performance.now() - killedAt;
      const failed = reads.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
      expect(failed).toEqual([]);
      for (const [i, r] of reads.entries()) {
        const got = (r as PromiseFulfilledResult<Awaited<ReturnType<RingkvClient['get']>>>).value;
        expect(got?.value.toString()).toBe(`value-${keys[i]}`);
        expect(got?.node).not.toBe(victim);
      }
      const during = events.filter((e) => e.op === 'get');
      const attempts = Math.max(...during.map((e) => e.attempt));
      expect(attempts).toBeGreaterThan(1);
      const outcomes = [...new Set(during.map((e) => String(e.error ?? e.status)))].sort();

      // Later reads find the new map (a stale one costs a refused attempt and a refresh) ...
      for (const key of keys) await kv.get(key);
      expect(kv.partitionMap!.epoch).toBeGreaterThan(map.epoch);
      for (const key of keys) expect(kv.partitionMap!.route(key).primary).not.toBe(victim);
      // ... and then go straight to the new primaries.
      events.length = 0;
      for (const key of keys) await kv.get(key);
      expect(events.every((e) => e.attempt === 1 && e.primary && e.servedBy === e.target && e.target !== victim)).toBe(true);
      console.log(
        `client (c): killed primary ${victim}; ${keys.length} reads all succeeded within ${tookMs.toFixed(0)} ms, ` +
          `up to ${attempts} attempts each (outcomes seen: ${outcomes.join(', ')}); map epoch ${map.epoch} -> ${kv.partitionMap!.epoch}`,
      );
    } finally {
      await kv.close();
    }
  });
});
