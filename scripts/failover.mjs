#!/usr/bin/env node
// Failover window of a 3-node local cluster, measured from outside with plain HTTP.
//
//   npm run build && node scripts/failover.mjs [--rounds 5] [--nodes 3] [--interval-ms 20]
//
// Starts `node dist/cli/main.js local --nodes N` on free ports in a temporary directory,
// then, each round: picks a fresh key, asks /v1/placement for its primary, runs a write
// loop (a PUT every --interval-ms, 1 s client timeout, each through a surviving node,
// round-robin) until writes succeed steadily, kill -9s the primary, and measures the window from the kill to the first
// 2xx PUT to that key that was *sent* after the kill; then restarts the node from the
// config file `ringkv local` wrote and waits until every member is active again (on every
// node's view) before the next round. Prints the windows and min/median/max; --json prints
// one JSON object at the end too. Uses nothing but Node (no ringkv imports).

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const ROUNDS = opt('rounds', 5);
const NODES = opt('nodes', 3);
const INTERVAL_MS = opt('interval-ms', 20);
const TIMEOUT_MS = 1000;
const JSON_OUT = args.includes('--json');
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stderr.write(`${s}\n`);

function portFree(port) {
  const srv = createServer();
  return new Promise((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function freeBase(n) {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 110) * 100 + 37; // below the ephemeral range (32768-60999)
    const ports = Array.from({ length: n }, (_, i) => [base + 10 * i, base + 10 * i + 1]).flat();
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free port range');
}

const base = await freeBase(NODES);
const dir = mkdtempSync(join(tmpdir(), 'ringkv-failover-'));
const ids = Array.from({ length: NODES }, (_, i) => `n${i + 1}`);
const client = (id) => `http://127.0.0.1:${base + 10 * (Number(id.slice(1)) - 1)}`;
const pids = new Map();
const restarted = new Map(); // id -> ChildProcess
let out = '';
const local = spawn(process.execPath, [MAIN, 'local', '--nodes', String(NODES), '--base-port', String(base), '--data', dir, '--log-format', 'json'], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
local.stdout.on('data', (d) => (out += d));
local.stderr.on('data', (d) => (out += d));

function cleanup() {
  for (const p of restarted.values()) p.kill('SIGKILL');
  for (const pid of pids.values()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  local.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

async function get(url, timeoutMs = 3000) {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: r.status, body: await r.text() };
}

async function waitReady(id, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await get(`${client(id)}/readyz`, 1000)).status === 200) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${id} not ready after ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function allActive(timeoutMs = 60_000) {
  const t = performance.now();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let ok = true;
    for (const id of ids) {
      try {
        const v = JSON.parse((await get(`${client(id)}/v1/cluster`, 1000)).body);
        if (v.members.length !== NODES || !v.members.every((m) => m.status === 'active')) ok = false;
      } catch {
        ok = false;
      }
    }
    if (ok) return performance.now() - t;
    if (Date.now() > deadline) throw new Error(`members not all active after ${timeoutMs} ms`);
    await sleep(100);
  }
}

const fmt = (ms) => `${Math.round(ms)} ms`;
const windows = [];
const details = [];
try {
  const deadline = Date.now() + 20_000;
  while (pids.size < NODES) {
    for (const m of out.matchAll(/^\s+(n\d+)\s+client \S+\s+peer \S+\s+pid (\d+)$/gm)) pids.set(m[1], Number(m[2]));
    if (Date.now() > deadline) throw new Error(`ringkv local did not start:\n${out}`);
    await sleep(50);
  }
  await Promise.all(ids.map((id) => waitReady(id)));
  await allActive();
  const secret = readFileSync(join(dir, 'cluster-secret'), 'utf8').trim();
  log(`cluster of ${NODES} up on ports ${base}.., data ${dir}`);

  for (let round = 1; round <= ROUNDS; round++) {
    const key = `failover-${round}-${Math.random().toString(36).slice(2, 8)}`;
    const place = JSON.parse((await get(`${client(ids[0])}/v1/placement/${key}`)).body);
    const victim = place.primary;
    const survivors = ids.filter((id) => id !== victim);

    let stop = false;
    let killedAt = Infinity;
    let firstOk = Infinity;
    let sent = 0;
    let okBefore = 0;
    let lastOkAt = -Infinity;
    const statuses = {};
    const inflight = new Set();
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        const via = survivors[i % survivors.length];
        const call = performance.now();
        sent++;
        const p = fetch(`${client(via)}/v1/kv/${key}`, { method: 'PUT', body: `r${round}-${i}`, signal: AbortSignal.timeout(TIMEOUT_MS) })
          .then(async (r) => {
            await r.arrayBuffer();
            statuses[r.status] = (statuses[r.status] ?? 0) + 1;
            if (r.status >= 200 && r.status < 300) {
              if (call >= killedAt) firstOk = Math.min(firstOk, performance.now());
              else {
                okBefore++;
                lastOkAt = performance.now();
              }
            }
          })
          .catch((e) => {
            const k = e?.name === 'TimeoutError' ? 'timeout' : 'error';
            statuses[k] = (statuses[k] ?? 0) + 1;
          })
          .finally(() => inflight.delete(p));
        inflight.add(p);
        await sleep(INTERVAL_MS);
      }
    })();

    // The loop first runs against a healthy primary: at least 10 acknowledged writes and
    // one in the last 100 ms (after a restart the partition may still be in takeover).
    const healthyBy = Date.now() + 20_000;
    while (!(okBefore >= 10 && performance.now() - lastOkAt < 100)) {
      if (Date.now() > healthyBy) throw new Error(`round ${round}: writes to ${key} not healthy before the kill (${JSON.stringify(statuses)})`);
      await sleep(5);
    }
    const pid = restarted.get(victim)?.pid ?? pids.get(victim);
    process.kill(pid, 'SIGKILL');
    killedAt = performance.now();
    restarted.delete(victim);
    pids.delete(victim);
    const giveUp = killedAt + 30_000;
    while (firstOk === Infinity && performance.now() < giveUp) await sleep(10);
    stop = true;
    await loop;
    await Promise.all(inflight);
    const windowMs = firstOk - killedAt;
    windows.push(windowMs);

    // Restarted with `ringkv local`'s node flags, as the nodes it started (src/cli/local.ts).
    const child = spawn(process.execPath, ['--single-threaded-gc', MAIN, 'serve', '--config', join(dir, victim, 'ringkv.yaml')], {
      env: { ...process.env, RINGKV_CLUSTER_SECRET: secret, RINGKV_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    restarted.set(victim, child);
    const restartAt = performance.now();
    await waitReady(victim);
    const rejoinMs = await allActive();
    const d = { round, key, victim, windowMs: Math.round(windowMs), okBefore, sent, statuses, rejoinMs: Math.round(performance.now() - restartAt) };
    details.push(d);
    log(`round ${round}: killed primary ${victim} of ${key}: first write ok ${fmt(windowMs)} after the kill; ` +
      `puts sent ${sent} (${okBefore} ok before the kill), statuses ${JSON.stringify(statuses)}; restarted, all active again after ${fmt(d.rejoinMs)} (${fmt(rejoinMs)} of waiting for active)`);
    await sleep(500);
  }
  const sorted = [...windows].sort((a, b) => a - b);
  const median = sorted.length % 2 === 1 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  console.log(`failover windows (kill -9 of the primary -> first 2xx PUT sent after it): ${windows.map(fmt).join(', ')}`);
  console.log(`min ${fmt(sorted[0])}, median ${fmt(median)}, max ${fmt(sorted[sorted.length - 1])}`);
  if (JSON_OUT) console.log(JSON.stringify({ nodes: NODES, intervalMs: INTERVAL_MS, timeoutMs: TIMEOUT_MS, windowsMs: windows.map(Math.round), min: Math.round(sorted[0]), median: Math.round(median), max: Math.round(sorted[sorted.length - 1]), rounds: details }));
} catch (e) {
  log(String(e?.stack ?? e));
  process.exitCode = 1;
} finally {
  cleanup();
}
