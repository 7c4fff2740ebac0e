// Tombstone collection on real processes: three `ringkv serve` nodes (ringkv local) with
// timing.tombstoneGraceMs = 1500 and periodic anti-entropy off. A delete's tombstone is
// collected on every replica after the grace (ringkv_tombstones_purged_total grows on
// each; at the end the LMDB files hold no record of the deleted keys); a re-created key
// gets an ETag it never had, and If-Match with the old one answers 412. A replica killed
// -9 while keys are deleted and collected comes back, catches up, and serves them as
// deleted (a delta catch-up would have missed the collected tombstones and kept the old
// values: it takes a full copy instead).

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/core/hash.js';
import { partitionId } from '../../src/core/types.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { allActive, LocalCluster } from '../support/cluster.js';
import { metric, placement, sleep } from '../support/workload.js';

const GRACE_MS = 1500;
const ENV = { RINGKV_TIMING_TOMBSTONE_GRACE_MS: String(GRACE_MS), RINGKV_TIMING_ANTI_ENTROPY_INTERVAL_MS: '0' };

describe('tombstone collection (real processes)', () => {
  let c: LocalCluster;
  const saved = new Map<string, string | undefined>();
  beforeAll(async () => {
    // `ringkv local` and restarted nodes inherit the environment: every node gets the grace.
    for (const [k, v] of Object.entries(ENV)) {
      saved.set(k, process.env[k]);
      process.env[k] = v;
    }
    c = await LocalCluster.start(3);
  });
  afterAll(async () => {
    await c?.stop();
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  /** A request through node `via` (then the others), retried while the cluster answers 503/504 or not at all. */
  const request = async (method: string, key: string, opts: { body?: string; headers?: Record<string, string>; accept: number[]; via?: string }): Promise<Response> => {
    const order = opts.via === undefined ? c.ids() : [opts.via, ...c.ids().filter((x) => x !== opts.via)];
    for (let attempt = 0; ; attempt++) {
      const node = order[attempt % order.length]!;
      const r = await fetch(`${c.client(node)}/v1/kv/${key}`, { method, body: opts.body, headers: opts.headers, signal: AbortSignal.timeout(3000) }).catch(() => null);
      if (r !== null && opts.accept.includes(r.status)) return r;
      if (attempt > 60) throw new Error(`${method} ${key}: ${r?.status} ${await r?.text()}`);
      await sleep(100);
    }
  };
  const purged = async (id: string): Promise<number> => metric(c.client(id), 'ringkv_tombstones_purged_total');
  const waitPurged = async (ids: readonly string[], atLeast: Map<string, number>, timeoutMs: number): Promise<Map<string, number>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const now = new Map<string, number>();
      for (const id of ids) now.set(id, await purged(id));
      if (ids.every((id) => now.get(id)! >= atLeast.get(id)!)) return now;
      if (Date.now() > deadline) throw new Error(`tombstones not collected within ${timeoutMs} ms: ${JSON.stringify([...now])}, wanted ${JSON.stringify([...atLeast])}`);
      await sleep(100);
    }
  };
  const deleted: string[] = [];

  it('collects a tombstone on every replica; the re-created key gets a new ETag, and the old one answers 412', { timeout: 60_000 }, async () => {
    const key = 'tomb-a';
    const pl = await placement(c, key);
    expect([...pl.preference].sort()).toEqual(c.ids()); // RF 3 on 3 nodes: every node holds it
    const before = new Map<string, number>();
    for (const id of c.ids()) before.set(id, await purged(id));

    const put1 = await request('PUT', key, { body: 'one', accept: [201] });
    const etag1 = put1.headers.get('etag')!;
    const put2 = await request('PUT', key, { body: 'two', headers: { 'if-match': etag1 }, accept: [200] });
    const etag2 = put2.headers.get('etag')!;
    await request('DELETE', key, { headers: { 'if-match': etag2 }, accept: [204] });
    const deletedAt = Date.now();
    deleted.push(key);
    // Within the grace the tombstone is kept (a stale read on each node says 404 either way).
    expect(await purged(pl.primary!)).toBe(before.get(pl.primary!));

    const want = new Map([...before].map(([id, n]) => [id, n + 1] as const));
    const after = await waitPurged(c.ids(), want, 15_000);
    const collectedMs = Date.now() - deletedAt;
    expect(collectedMs).toBeGreaterThanOrEqual(GRACE_MS);

    // Re-create: If-Match with either old ETag fails; a plain create gets a new ETag.
    for (const old of [etag1, etag2]) {
      const r = await request('PUT', key, { body: 'stale-cas', headers: { 'if-match': old }, accept: [412] });
      expect(r.status).toBe(412);
    }
    const d = await request('DELETE', key, { headers: { 'if-match': etag2 }, accept: [412, 404] });
    expect([412, 404]).toContain(d.status);
    const created = await request('PUT', key, { body: 'three', headers: { 'if-none-match': '*' }, accept: [201] });
    const etag3 = created.headers.get('etag')!;
    expect(etag3).not.toBe(etag1);
    expect(etag3).not.toBe(etag2);
    const got = await request('GET', key, { accept: [200] });
    expect(await got.text()).toBe('three');
    expect(got.headers.get('etag')).toBe(etag3);
    console.log(
      `tombstones: collected on ${c.ids().length} nodes within ${collectedMs} ms of the delete (grace ${GRACE_MS} ms); ` +
        `purged_total ${JSON.stringify(Object.fromEntries(after))}; ETags ${etag1} ${etag2} -> re-created ${etag3}`,
    );
  });

  it('a replica killed while keys are deleted and collected keeps them deleted after it catches up', { timeout: 120_000 }, async () => {
    const victim = 'n3';
    const gone = Array.from({ length: 30 }, (_, i) => `gone-${i}`);
    const kept = Array.from({ length: 10 }, (_, i) => `kept-${i}`);
    for (const k of [...gone, ...kept]) await request('PUT', k, { body: `v1-${k}`, accept: [200, 201] });
    // Every node has the values (a write is acknowledged once every in-sync copy holds it).
    for (const k of gone.slice(0, 3)) {
      const r = await fetch(`${c.client(victim)}/v1/kv/${k}?consistency=stale`);
      expect(r.status).toBe(200);
    }
    c.kill9(victim);
    await c.waitFor('n1', (v) => v.members.find((m) => m.id === victim)?.status === 'down', 15_000);
    const before = new Map<string, number>();
    for (const id of ['n1', 'n2']) before.set(id, await purged(id));
    for (const k of gone) await request('DELETE', k, { via: 'n1', accept: [204] });
    deleted.push(...gone);
    for (const k of kept) await request('PUT', k, { body: `v2-${k}`, via: 'n1', accept: [200] });
    // n1 and n2 hold every partition: each collects all 30 tombstones.
    const want = new Map([...before].map(([id, n]) => [id, n + gone.length] as const));
    const after = await waitPurged(['n1', 'n2'], want, 20_000);

    // The victim's disk still has the old values of the deleted keys.
    const disk = new LmdbStore({ path: join(c.dir, victim, 'store'), fsync: true, mapSizeBytes: 8 * 1024 ** 3 });
    const onDisk = gone.filter((k) => disk.get(partitionId(partitionOf(k, 128)), k)?.value != null).length;
    await disk.close();
    expect(onDisk).toBe(gone.length);

    const victimBefore = 0; // a new process: its counter starts at 0
    await c.restart(victim);
    for (const id of c.ids()) await c.waitFor(id, allActive(3), 30_000);
    const problems: string[] = [];
    for (const k of gone) {
      const r = await fetch(`${c.client(victim)}/v1/kv/${k}?consistency=stale`, { signal: AbortSignal.timeout(3000) });
      if (r.status !== 404 || r.headers.get('x-ringkv-node') !== victim) problems.push(`${k}: ${r.status} from ${r.headers.get('x-ringkv-node')}: ${await r.text()}`);
    }
    for (const k of kept) {
      const r = await fetch(`${c.client(victim)}/v1/kv/${k}?consistency=stale`, { signal: AbortSignal.timeout(3000) });
      const body = await r.text();
      if (r.status !== 200 || body !== `v2-${k}`) problems.push(`${k}: ${r.status} ${body}`);
    }
    const victimPurged = (await purged(victim)) - victimBefore;
    console.log(
      `tombstones: ${gone.length} keys deleted and collected while ${victim} was down (n1/n2 purged_total ${JSON.stringify(Object.fromEntries(after))}); ` +
        `after its restart: ${gone.length - problems.filter((p) => p.startsWith('gone')).length}/${gone.length} read as deleted on it, ` +
        `${kept.length - problems.filter((p) => p.startsWith('kept')).length}/${kept.length} kept keys current; it collected ${victimPurged} itself`,
    );
    expect(problems).toEqual([]);
  });

  it('leaves no record of the deleted keys on any disk', { timeout: 60_000 }, async () => {
    // The victim got a full copy (nothing to collect); give every node one more sweep pass.
    await sleep(GRACE_MS);
    for (const id of c.ids()) c.kill9(id);
    await sleep(500);
    const left: string[] = [];
    for (const id of c.ids()) {
      const store = new LmdbStore({ path: join(c.dir, id, 'store'), fsync: true, mapSizeBytes: 8 * 1024 ** 3 });
      for (const k of deleted.filter((k) => k !== 'tomb-a')) if (store.get(partitionId(partitionOf(k, 128)), k) !== undefined) left.push(`${id}/${k}`);
      const a = store.get(partitionId(partitionOf('tomb-a', 128)), 'tomb-a');
      if (a?.value == null) left.push(`${id}/tomb-a (re-created, then ${a === undefined ? 'missing' : 'a tombstone'})`);
      await store.close();
    }
    expect(left).toEqual([]);
  });
});
