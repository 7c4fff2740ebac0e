// The docker-compose topology works, run without Docker: one `ringkv serve` per compose
// service, each with the very config file docker-compose.yml mounts for it and its compose
// command, overriding only what needs Docker (addresses, /data, /run/secrets/ringkv; see
// test/support/compose.ts). Services, commands, profiles and published ports are read from
// docker-compose.yml, so the test fails when compose and the configs drift apart.
//
//   default profile: the README walkthrough. A put, a get and a compare-and-set over HTTP
//     (statuses, ETag, X-Ringkv-Node); `ringkv cluster status`; kill -9 of n1 (for
//     `docker kill ringkv-n1-1`); the same get still answers, and status shows n1 down with
//     no partition left on it within ~3 s (4 s asserted, for a busy machine); n1 started
//     again (`docker compose start n1`) rejoins as active.
//   profile five: n4 and n5 (cluster.join configs) started, then the one-shot add-members
//     service's own script run with sh; it adds n4, then n5 (retrying while n4's data
//     moves) and exits 0; both end active, and each serves `?consistency=stale` reads of
//     keys written before they joined, for the partitions /v1/placement gives them.

import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { ComposeTopology } from '../support/compose.js';
import { MAIN } from '../support/proc.js';
import { sleep } from '../support/workload.js';

interface Status {
  epoch: number;
  members: { id: string; status: string; placement: string }[];
  partitions: { partition: number; primary: string | null; preference: string[] }[];
  move: unknown;
}

const runFile = promisify(execFile);

/** The ringkv CLI, as `node dist/cli/main.js ARGS`. */
async function ringkv(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await runFile(process.execPath, [MAIN, ...args], { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** One HTTP request, as curl would make it. */
async function http(url: string, init: RequestInit = {}): Promise<{ status: number; etag: string | null; node: string | null; body: string }> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
  return { status: r.status, etag: r.headers.get('etag'), node: r.headers.get('x-ringkv-node'), body: await r.text() };
}

async function view(url: string): Promise<Status | null> {
  try {
    return (await (await fetch(`${url}/v1/cluster`, { signal: AbortSignal.timeout(3000) })).json()) as Status;
  } catch {
    return null;
  }
}

/** Polls until pred holds on the view of every url (null: node not answering), or throws with the last views. */
async function until(urls: string[], pred: (v: Status) => boolean, timeoutMs: number, what: string): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const views = await Promise.all(urls.map(view));
    if (views.every((v) => v !== null && pred(v))) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) {
      throw new Error(`${what}: not within ${timeoutMs} ms; members ${JSON.stringify(views.map((v) => v?.members.map((m) => `${m.id}:${m.status}:${m.placement}`)))}`);
    }
    await sleep(50);
  }
}

const statusOf = (v: Status, id: string) => v.members.find((m) => m.id === id)?.status;

let t: ComposeTopology;

beforeAll(async () => {
  t = await ComposeTopology.create();
});

afterAll(async () => {
  await t?.stop();
});

/** On failure, the node logs go to a temp file (the topology's own directory is removed). */
function keepLogsOnFailure(): void {
  onTestFailed(() => {
    const file = join(tmpdir(), `ringkv-compose-${Date.now()}.log`);
    writeFileSync(file, t.logs());
    console.log(`node logs in ${file}`);
  });
}

describe('docker-compose.yml as local processes', () => {
  it('default profile: put, get, CAS, cluster status, kill -9 of n1, failover, n1 rejoins', async () => {
    keepLogsOnFailure();
    const founders = t.services(null, 'nodes');
    expect(founders).toEqual(['n1', 'n2', 'n3']); // the README speaks of these
    expect(t.compose.name).toBe('ringkv'); // so n1's container is ringkv-n1-1 (README: docker kill ringkv-n1-1)
    expect(t.services(null, 'one-shots')).toEqual([]);
    const [n1, n2, n3] = founders.map((id) => t.node(id).client) as [string, string, string];
    for (const id of founders) t.start(id);
    await Promise.all(founders.map((id) => t.waitReady(id)));
    await until([n1, n2, n3], (v) => founders.every((id) => statusOf(v, id) === 'active'), 30_000, 'n1, n2, n3 active');

    // curl -i -X PUT localhost:7379/v1/kv/greeting --data-binary hello. On a busy machine a
    // fresh cluster may still be settling: 503 (nothing done) and 504 (outcome unknown) are
    // retried; after a 504 the put may already have created the key (200 then).
    let put = await http(`${n1}/v1/kv/greeting`, { method: 'PUT', body: 'hello' });
    const created = [201];
    for (let attempt = 0; (put.status === 503 || put.status === 504) && attempt < 20; attempt++) {
      if (put.status === 504) created.push(200);
      await sleep(250);
      put = await http(`${n1}/v1/kv/greeting`, { method: 'PUT', body: 'hello' });
    }
    expect(created).toContain(put.status);
    expect(put.etag).toMatch(/^"[0-9a-f]{16}"$/);
    expect(JSON.parse(put.body)).toEqual({ key: 'greeting', version: put.etag!.slice(1, -1) });
    const placement = JSON.parse((await http(`${n1}/v1/placement/greeting`)).body) as { primary: string; replicas: string[] };
    expect(put.node).toBe(placement.primary); // the key's primary answers, wherever the request went
    expect(placement.replicas.length).toBe(2);

    // curl -i localhost:7389/v1/kv/greeting
    const get = await http(`${n2}/v1/kv/greeting`);
    expect(get).toEqual({ status: 200, etag: put.etag, node: placement.primary, body: 'hello' });

    // curl -i -X PUT localhost:7399/v1/kv/greeting -H 'If-Match: "<etag>"' --data-binary hi, twice
    const cas = await http(`${n3}/v1/kv/greeting`, { method: 'PUT', body: 'hi', headers: { 'if-match': put.etag! } });
    expect(cas.status).toBe(200);
    expect(cas.etag).toMatch(/^"[0-9a-f]{16}"$/);
    expect(cas.etag).not.toBe(put.etag);
    expect(cas.node).toBe(placement.primary);
    const again = await http(`${n3}/v1/kv/greeting`, { method: 'PUT', body: 'hi', headers: { 'if-match': put.etag! } });
    expect(again.status).toBe(412);
    expect(JSON.parse(again.body).error.code).toBe('precondition_failed');

    // ringkv cluster status
    const endpoints = ['--endpoints', [n1, n2, n3].join(',')];
    const status = await ringkv('cluster', 'status', ...endpoints);
    console.log(status.stdout);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^cluster demo +epoch \d+ +leader n\d/);
    for (const id of founders) expect(status.stdout).toMatch(new RegExp(`^${id}( \\*)? +active +.* partitions +${t.node(id).client}$`, 'm'));

    // docker kill ringkv-n1-1
    const killedAt = performance.now();
    await t.kill9('n1');

    // The same get still answers (through n2), within a few seconds.
    let after: Awaited<ReturnType<typeof http>> | null = null;
    while (performance.now() - killedAt < 10_000) {
      after = await http(`${n2}/v1/kv/greeting`).catch(() => null);
      if (after?.status === 200) break;
      await sleep(100);
    }
    const readAfterMs = performance.now() - killedAt;
    expect(after).toMatchObject({ status: 200, etag: cas.etag, body: 'hi' });
    expect(after!.node).not.toBe('n1');

    // Status shows n1 down and every partition with a primary other than n1.
    await until([n2, n3], (v) => statusOf(v, 'n1') === 'down' && v.partitions.every((p) => p.primary !== null && p.primary !== 'n1'), 10_000, 'n1 down, its partitions moved');
    const failoverMs = performance.now() - killedAt;
    const down = await ringkv('cluster', 'status', ...endpoints);
    const downJson = JSON.parse((await ringkv('cluster', 'status', '--json', ...endpoints)).stdout) as Status;
    console.log(`kill -9 n1: the get answered ${readAfterMs.toFixed(0)} ms after the kill; n1 down with new primaries after ${failoverMs.toFixed(0)} ms\n${down.stdout}`);
    expect(down.stdout).toMatch(/^n1 +down +.* 0 partitions/m);
    expect(statusOf(downJson, 'n1')).toBe('down');
    expect(downJson.partitions.filter((p) => p.primary === 'n1')).toEqual([]);
    expect(failoverMs).toBeLessThan(4000); // ~1 s to suspect n1, then one Paxos change; slack for a busy machine

    // docker compose start n1: same config, same data; it rejoins and is active again.
    t.start('n1');
    await t.waitReady('n1');
    await until([n1, n2, n3], (v) => founders.every((id) => statusOf(v, id) === 'active'), 30_000, 'n1 active again');
    const back = await ringkv('cluster', 'status', ...endpoints);
    console.log(back.stdout);
    expect(back.stdout).toMatch(/^n1( \*)? +active /m);
    expect((await http(`${n1}/v1/kv/greeting`)).body).toBe('hi');
  }, 100_000);

  it('profile five: add-members adds n4, then n5; both end active and hold moved data', async () => {
    keepLogsOnFailure();
    const joiners = t.services('five', 'nodes');
    const oneShots = t.services('five', 'one-shots');
    expect(joiners).toEqual(['n4', 'n5']);
    expect(oneShots).toEqual(['add-members']);
    const adder = t.compose.services['add-members']!;
    expect(adder.restart).toBe('no');
    expect(adder.depends_on).toEqual({ n1: { condition: 'service_healthy' }, n4: { condition: 'service_started' }, n5: { condition: 'service_started' } });
    for (const id of joiners) expect(t.node(id).config.cluster.join).toBe('http://n1:7380');

    // Data written before the nodes join; some of it must move to them.
    const founders = t.services(null, 'nodes');
    const keys = Array.from({ length: 120 }, (_, i) => `k-${i}`);
    for (const [i, key] of keys.entries()) {
      for (let attempt = 0; ; attempt++) {
        const r = await http(`${t.node(founders[(i + attempt) % founders.length]!).client}/v1/kv/${key}`, { method: 'PUT', body: `v-${key}` }).catch(() => null);
        if (r?.status === 200 || r?.status === 201) break;
        if (attempt > 30) throw new Error(`put ${key}: ${r?.status}`);
        await sleep(200);
      }
    }

    // depends_on: n1 is healthy (ready) already; n4 and n5 are started, then the adder runs.
    for (const id of joiners) t.start(id);
    const t0 = performance.now();
    const add = t.runOneShot('add-members', 'CLI');
    const exit = await Promise.race([add.exited, sleep(90_000).then(() => null)]);
    console.log(`add-members (${(performance.now() - t0).toFixed(0)} ms):\n${add.output()}`);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(add.output()).toMatch(/^added n4 \(joining\) in epoch \d+$/m);
    expect(add.output()).toMatch(/^added n5 \(joining\) in epoch \d+$/m);

    const all = [...founders, ...joiners];
    const urls = all.map((id) => t.node(id).client);
    await Promise.all(joiners.map((id) => t.waitReady(id, 60_000)));
    const settleMs = await until(urls, (v) => v.move === null && all.every((id) => statusOf(v, id) === 'active'), 60_000, 'n4 and n5 active, nothing moving');
    console.log(`all five active and nothing moving ${(performance.now() - t0).toFixed(0)} ms after add-members started (waited ${settleMs.toFixed(0)} ms once it had exited and n4, n5 were ready)`);
    const status = await ringkv('cluster', 'status', '--endpoints', urls.join(','));
    console.log(status.stdout);
    for (const id of all) expect(status.stdout).toMatch(new RegExp(`^${id}( \\*)? +active `, 'm'));

    // Each new node holds the keys of the partitions it now owns, and serves them itself.
    const v = (await view(urls[0]!))!;
    expect(v.partitions.every((p) => p.preference.length === 3)).toBe(true);
    for (const id of joiners) {
      const owned: string[] = [];
      for (const key of keys) {
        const p = JSON.parse((await http(`${urls[0]}/v1/placement/${key}`)).body) as { preference: string[] };
        if (p.preference.includes(id)) owned.push(key);
      }
      expect(owned.length, `${id} owns some of the ${keys.length} keys`).toBeGreaterThan(0);
      for (const key of owned) {
        const r = await http(`${t.node(id).client}/v1/kv/${key}?consistency=stale`);
        expect({ key, status: r.status, node: r.node, body: r.body }).toEqual({ key, status: 200, node: id, body: `v-${key}` });
      }
      console.log(`${id}: holds and serves all ${owned.length} of the ${keys.length} keys it owns`);
    }
  }, 150_000);
});
