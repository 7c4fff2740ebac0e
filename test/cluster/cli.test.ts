// The ringkv command-line client against a real node, and the node's SIGTERM drain.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, kill9, MAIN, spawnRingkv, waitReady, type NodeProc } from '../support/proc.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'ringkv-cli-'));
let proc: NodeProc;
let endpoint: string;
let peerPort: number;
let clientPort: number;

beforeAll(async () => {
  clientPort = await freePort();
  peerPort = await freePort();
  endpoint = `http://127.0.0.1:${clientPort}`;
  proc = spawnRingkv(['serve'], {
    RINGKV_NODE_DATADIR: join(dir, 'data'),
    RINGKV_LISTEN_CLIENT: `127.0.0.1:${clientPort}`,
    RINGKV_LISTEN_PEER: `127.0.0.1:${peerPort}`,
  });
  await waitReady(endpoint, proc);
});
afterAll(async () => {
  await kill9(proc);
  rmSync(dir, { recursive: true, force: true });
});

async function ringkv(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, ...args], { env: { ...process.env, RINGKV_ENDPOINTS: endpoint } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('ringkv CLI', () => {
  it('put, get, cas, list, del with readable and --json output and exit codes', async () => {
    const p = await ringkv('put', 'greeting', 'hello');
    expect(p.code).toBe(0);
    expect(p.stdout).toMatch(/^created greeting version [0-9a-f]{16}\n$/);

    const g = await ringkv('get', 'greeting');
    expect(g).toMatchObject({ code: 0, stdout: 'hello' });

    const gj = JSON.parse((await ringkv('get', 'greeting', '--json')).stdout) as { key: string; value: string; version: string; node: string };
    expect(gj).toMatchObject({ key: 'greeting', value: 'hello', node: 'n1' });

    const badCas = await ringkv('cas', 'greeting', '0123456789abcdef', 'nope');
    expect(badCas.code).toBe(1);
    expect(badCas.stderr).toMatch(/precondition_failed \(412\)/);

    const cas = await ringkv('cas', 'greeting', gj.version, 'hi there', '--json');
    expect(cas.code).toBe(0);
    expect(JSON.parse(cas.stdout)).toMatchObject({ key: 'greeting', created: false });
    expect((await ringkv('get', 'greeting')).stdout).toBe('hi there');

    const co = await ringkv('put', 'greeting', 'x', '--create-only');
    expect(co.code).toBe(1);

    await ringkv('put', 'g2', 'b');
    const list = await ringkv('list', '--prefix', 'g');
    expect(list.stdout).toBe('g2\ngreeting\n');
    expect(JSON.parse((await ringkv('list', '--json', '--all')).stdout)).toEqual({ keys: ['g2', 'greeting'], cursor: null });

    expect((await ringkv('del', 'g2')).code).toBe(0);
    const missing = await ringkv('get', 'g2');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not_found \(404\)/);
    const missingJson = await ringkv('get', 'g2', '--json');
    expect(JSON.parse(missingJson.stdout)).toMatchObject({ status: 404, error: { code: 'not_found' } });
  });

  it('bench measures rates, latencies and CPU per request, of ringkv and of the bare baseline', async () => {
    const r = await ringkv('bench', '--workload', 'get', '--baseline', '--keys', '50', '--connections', '4', '--warmup-s', '0.3', '--duration-s', '1', '--json');
    expect(r.code).toBe(0);
    type Phase = { requests: number; opsPerS: number; errors: { total: number }; cpuUsPerOp: { server: number | null; client: number | null } | null };
    const out = JSON.parse(r.stdout) as { baseline: { get: Phase; put: Phase | null }; workloads: (Phase & { workload: string; baselinePercent: number })[] };
    const get = out.workloads[0]!;
    expect(get.workload).toBe('get');
    expect(get.requests).toBeGreaterThan(100);
    expect(get.errors.total).toBe(0);
    expect(get.baselinePercent).toBeGreaterThan(0);
    // Both servers report their CPU time: the node through /metrics, the baseline likewise.
    for (const phase of [get, out.baseline.get]) {
      expect(phase.cpuUsPerOp?.server).toBeGreaterThan(0);
      expect(phase.cpuUsPerOp?.client).toBeGreaterThan(0);
      // Not more than the whole machine's time per request (a sanity bound on the window).
      expect(phase.cpuUsPerOp!.server!).toBeLessThan((availableParallelism() * 1e6) / phase.opsPerS);
    }
  });

  it('usage errors exit 2; an unreachable endpoint exits 3', async () => {
    expect((await ringkv('frobnicate')).code).toBe(2);
    expect((await ringkv('get')).code).toBe(2);
    expect((await ringkv('get', 'k', '--no-such-flag')).code).toBe(2);
    const dead = await ringkv('get', 'k', '--endpoints', 'http://127.0.0.1:1');
    expect(dead.code).toBe(3);
    expect(dead.stderr).toMatch(/no endpoint answered/);
  });
});

describe('serve lifecycle', () => {
  it('a bad config stops the start with a message naming the field (exit 2)', async () => {
    const r = await run(process.execPath, [MAIN, 'serve'], {
      env: { ...process.env, RINGKV_TIMING_LEASEMS: '5000', RINGKV_NODE_DATADIR: join(dir, 'bad') },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/timing\.leaseMs: must be less than timing\.suspectAfterMs \(1000\) \(from RINGKV_TIMING_LEASEMS\)/);
  });

  it('SIGTERM drains requests in flight, exits 0, and every acknowledged write is there after restart', async () => {
    const port = await freePort();
    const env = {
      RINGKV_NODE_DATADIR: join(dir, 'drain'),
      RINGKV_LISTEN_CLIENT: `127.0.0.1:${port}`,
      RINGKV_LISTEN_PEER: `127.0.0.1:${await freePort()}`,
    };
    const base = `http://127.0.0.1:${port}`;
    const node = spawnRingkv(['serve'], env);
    await waitReady(base, node);
    const pool = new Pool(base, { connections: 16 });
    const acked = new Map<string, string>();
    const writes = Array.from({ length: 400 }, (_, i) =>
      pool
        .request({ method: 'PUT', path: `/v1/kv/drain-${i}`, body: `v${i}` })
        .then(async (r) => {
          await r.body.dump();
          if (r.statusCode === 201) acked.set(`drain-${i}`, `v${i}`);
          return r.statusCode;
        })
        .catch(() => 0),
    );
    await new Promise((r) => setTimeout(r, 20));
    node.child.kill('SIGTERM');
    const codes = await Promise.all(writes);
    const exit = await node.exited;
    await pool.close();
    expect(exit.code).toBe(0);
    expect(node.output()).toMatch(/stopped cleanly/);
    // Every request got an answer: success, or 503 once the node stopped accepting.
    expect(codes.every((c) => c === 201 || c === 503 || c === 0)).toBe(true);
    expect(acked.size).toBeGreaterThan(0);

    const again = spawnRingkv(['serve'], env);
    await waitReady(base, again);
    for (const [key, value] of acked) {
      const r = await fetch(`${base}/v1/kv/${key}`);
      expect(await r.text()).toBe(value);
    }
    await kill9(again);
  });
});
