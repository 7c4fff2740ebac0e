#!/usr/bin/env node
// Cost of a rebalance, measured from outside on real processes.
//
//   npm run build && node scripts/rebalance.mjs [--keys 100000] [--value-bytes 1024] [--rate 200] [--json]
//
// 1. Starts `ringkv local --nodes 3` on free ports in a temporary directory and loads
//    --keys keys of --value-bytes each (64 writers, through the ringkv/client library,
//    which sends each write straight to its primary).
// 2. Steady state: a client load of --rate ops/s (half strong gets, half puts over the
//    loaded keys, 8 clients) for 20 s; its latencies are the baseline. The script
//    observes the cluster in both phases alike (/metrics of each node every second,
//    /v1/cluster every 100 ms), so the monitoring load is the same.
// 3. Starts n4 with only `cluster.join`, adds it (POST /v1/cluster/members) and runs the
//    same load until the move is over (n4 active, `move` null); reports the move's wall
//    time, keys and bytes copied (from /v1/cluster `move`, last sample), throughput,
//    client p50/p99 during the move against the baseline, and the peak RSS above idle of
//    every node (sampled from /proc every 100 ms; idle = just before the add), and the
//    copy rate n4's pacer chose (ringkv_copy_rate_bytes_per_second, sampled each second).
// Prints a summary; --json prints one JSON object at the end.
// Environment: REBALANCE_ATTEMPTS=1 counts the client's attempts that were not plain
// successes, by phase and kind; REBALANCE_SLOWEST=N lists the N slowest requests of the move with every
// attempt that was not a plain success; REBALANCE_N4_NODE_ARGS sets node flags for n4,
// REBALANCE_NODE_ARGS for n1..n3 (`ringkv local --node-args`; both default to local's);
// REBALANCE_N4_OUT=FILE keeps n4's output, REBALANCE_LOCAL_OUT=FILE n1..n3's (set
// RINGKV_LOG_LEVEL=debug for the replication events, or REBALANCE_N4_LOG_LEVEL for n4 alone).

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
const { RingkvClient } = await import(join(ROOT, 'dist', 'client', 'index.js'));
const { open: openLmdb } = await import('lmdb');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const KEYS = opt('keys', 100_000);
const VALUE_BYTES = opt('value-bytes', 1024);
const RATE = opt('rate', 200);
const STEADY_MS = 20_000;
const JSON_OUT = args.includes('--json');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stderr.write(`${s}\n`);

async function portFree(port) {
  const srv = createServer();
  return new Promise((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
async function freeBase(nodes) {
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * 110) * 100 + 79; // below the ephemeral range (32768-60999)
    const ports = Array.from({ length: nodes }, (_, i) => [base + 10 * i, base + 10 * i + 1]).flat();
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
}

/**
 * Resident memory of a process in KiB: all of it, and its anonymous part (heap, buffers:
 * what a transfer could pile up). The rest is file pages: LMDB's memory map of the data
 * the node now holds, which the kernel can drop and read back at will.
 */
/** LMDB's data file of a node: its size and how much of its map the process has resident (smaps). */
const lmdbMap = (pid, nodeDir) => {
  const file = join(nodeDir, 'store', 'data.mdb');
  let fileMiB = null;
  let rssKiB = 0;
  try {
    fileMiB = +(statSync(file).size / 1024 ** 2).toFixed(1);
    const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n');
    for (let i = 0; i < smaps.length; i++) {
      if (!smaps[i].endsWith('data.mdb')) continue;
      for (let j = i + 1; j < smaps.length && !/^[0-9a-f]+-/.test(smaps[j]); j++) {
        const m = /^Rss:\s+(\d+) kB/.exec(smaps[j]);
        if (m) rssKiB += Number(m[1]);
      }
    }
  } catch {}
  return { fileMiB, rssMiB: +(rssKiB / 1024).toFixed(1) };
};
/** Page counts of the node's data B-tree (opened read-only while the node runs). */
const lmdbStats = (nodeDir) => {
  try {
    const env = openLmdb({ path: join(nodeDir, 'store'), readOnly: true, maxDbs: 4 });
    const s = env.openDB({ name: 'kv' }).getStats();
    env.close();
    return { entries: s.entryCount, leafPages: s.treeLeafPageCount, branchPages: s.treeBranchPageCount, overflowPages: s.overflowPages, pageSize: s.pageSize, depth: s.treeDepth };
  } catch (e) {
    return { error: String(e) };
  }
};
/** CPU seconds (user + system) a process has used so far. */
const cpuSeconds = (pid) => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
};
const rssKiB = (pid) => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
    return { rss: field('VmRSS'), anon: field('RssAnon') };
  } catch {
    return { rss: 0, anon: 0 };
  }
};
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

const base = await freeBase(4);
const dir = mkdtempSync(join(tmpdir(), 'ringkv-rebalance-'));
const client = (i) => `http://127.0.0.1:${base + 10 * (i - 1)}`;
const peer = (i) => `http://127.0.0.1:${base + 10 * (i - 1) + 1}`;
// Without REBALANCE_NODE_ARGS, n1..n3 get `ringkv local`'s default node flags.
const nodeArgs = process.env.REBALANCE_NODE_ARGS === undefined ? [] : [`--node-args=${process.env.REBALANCE_NODE_ARGS}`];
const local = spawn(process.execPath, [MAIN, 'local', '--nodes', '3', '--base-port', String(base), '--data', dir, '--log-format', 'json', ...nodeArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
let localOut = '';
local.stdout.on('data', (d) => (localOut += d));
local.stderr.on('data', (d) => (localOut += d));
const pids = new Map();
let n4 = null;
const cleanup = () => {
  for (const pid of pids.values()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  n4?.kill('SIGKILL');
  local.kill('SIGKILL');
  // REBALANCE_LOCAL_OUT=FILE: n1..n3's logs (as `ringkv local` printed them).
  if (process.env.REBALANCE_LOCAL_OUT) writeFileSync(process.env.REBALANCE_LOCAL_OUT, localOut);
  rmSync(dir, { recursive: true, force: true });
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

try {
  while (pids.size < 3) {
    for (const m of localOut.matchAll(/^\s+(n\d+)\s+client \S+\s+peer \S+\s+pid (\d+)$/gm)) pids.set(m[1], Number(m[2]));
    await sleep(50);
  }
  for (let i = 1; i <= 3; i++) {
    for (;;) {
      const ok = await fetch(`${client(i)}/readyz`).then((r) => r.ok, () => false);
      if (ok) break;
      await sleep(100);
    }
  }
  // Every attempt that was not a plain success (retries, redirects, errors), to explain slow requests.
  const attempts = [];
  const kv = new RingkvClient({
    endpoints: [client(1), client(2), client(3)],
    onAttempt: (e) => {
      if (e.attempt > 1 || e.status === null || e.status >= 300) attempts.push({ t: performance.now(), key: e.key, op: e.op, attempt: e.attempt, target: e.target, status: e.status, servedBy: e.servedBy, error: e.error, decision: e.decision });
    },
  });
  const value = 'x'.repeat(VALUE_BYTES);
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      for (;;) {
        const i = next++;
        if (i >= KEYS) return;
        // Loading only: writing the same value again after an unknown outcome is harmless.
        for (let attempt = 0; ; attempt++) {
          try {
            await kv.put(`k${i}`, value);
            break;
          } catch (e) {
            if (attempt >= 20) throw e;
            await sleep(100);
          }
        }
        if (i % 10_000 === 0) log(`loaded ${i} keys`);
      }
    }),
  );
  const loadMs = performance.now() - t0;
  log(`loaded ${KEYS} keys of ${VALUE_BYTES} B in ${(loadMs / 1000).toFixed(1)} s`);

  // A paced load of RATE ops/s; returns the latencies of the ops that finished.
  const load = (stop) => {
    const lat = [];
    const timeline = [];
    let errors = 0;
    const errorKinds = {};
    const clients = Array.from({ length: 8 }, async (_, c) => {
      const interval = (1000 * 8) / RATE;
      let t = performance.now() + Math.random() * interval;
      while (!stop.done) {
        await sleep(Math.max(0, t - performance.now()));
        t += interval;
        const key = `k${Math.floor(Math.random() * KEYS)}`;
        const s = performance.now();
        const op = Math.random() < 0.5 ? 'get' : 'put';
        try {
          if (op === 'get') await kv.get(key);
          else await kv.put(key, value);
          lat.push(performance.now() - s);
          timeline.push([s, op, performance.now() - s, key]);
        } catch (e) {
          errors++;
          const kind = e?.code ?? e?.status ?? e?.message ?? 'error';
          errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
        }
      }
      void c;
    });
    return { lat, timeline, errors: () => errors, errorKinds, done: Promise.all(clients) };
  };

  const steadyStop = { done: false };
  const cpuAtSteady = new Map([...pids].map(([id, pid]) => [id, cpuSeconds(pid)]));
  // The same observation as during the move (each node's /metrics every second, n1's
  // /v1/cluster every 100 ms), so that both phases carry the same monitoring load: a
  // scrape costs a node about 1.3 ms of its event loop, and a put waits for all three nodes.
  const steadyScrapes = setInterval(() => {
    for (const i of [1, 2, 3]) fetch(`${client(i)}/metrics`).then((r) => r.text(), () => '');
  }, 1000);
  const steadyPolls = setInterval(() => fetch(`${client(1)}/v1/cluster`).then((r) => r.text(), () => ''), 100);
  const steady = load(steadyStop);
  await sleep(STEADY_MS);
  clearInterval(steadyScrapes);
  clearInterval(steadyPolls);
  steadyStop.done = true;
  await steady.done;
  const cpuSteady = Object.fromEntries([...pids].map(([id, pid]) => [id, +(cpuSeconds(pid) - cpuAtSteady.get(id)).toFixed(1)]));

  // n4: a join config, then the add; sample RSS and the move.
  const n4dir = join(dir, 'n4');
  mkdirSync(n4dir, { recursive: true });
  writeFileSync(
    join(n4dir, 'ringkv.yaml'),
    `node: { id: n4, dataDir: ${JSON.stringify(n4dir)} }\nlisten: { client: "127.0.0.1:${base + 30}", peer: "127.0.0.1:${base + 31}" }\ncluster: { name: local, join: ${JSON.stringify(peer(1))} }\n`,
  );
  const secret = readFileSync(join(dir, 'cluster-secret'), 'utf8').trim();
  // REBALANCE_N4_NODE_ARGS: node flags for n4 (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof");
  // n4 then gets SIGTERM at the end and the script waits for it to exit. The default is
  // `ringkv local`'s for nodes that share the machine's CPUs (src/cli/local.ts).
  const n4Args = (process.env.REBALANCE_N4_NODE_ARGS ?? '--single-threaded-gc').split(' ').filter(Boolean);
  const n4Out = process.env.REBALANCE_N4_OUT ? openSync(process.env.REBALANCE_N4_OUT, 'w') : null;
  n4 = spawn(process.execPath, [...n4Args, MAIN, 'serve', '--config', join(n4dir, 'ringkv.yaml')], {
    // REBALANCE_N4_LOG_LEVEL: n4's log level alone (with REBALANCE_N4_OUT), e.g. debug for its replication events.
    env: { ...process.env, RINGKV_CLUSTER_SECRET: secret, ...(process.env.REBALANCE_N4_LOG_LEVEL ? { RINGKV_LOG_LEVEL: process.env.REBALANCE_N4_LOG_LEVEL } : {}) },
    // REBALANCE_N4_OUT=FILE: n4's stdout and stderr (its logs, and e.g. --trace-gc) go there.
    stdio: process.env.REBALANCE_N4_OUT ? ['ignore', n4Out, n4Out] : 'ignore',
  });
  await sleep(1500);
  const all = new Map([...pids, ['n4', n4.pid]]);
  const idle = new Map([...all].map(([id, pid]) => [id, rssKiB(pid)]));
  const peak = new Map([...idle].map(([id, m]) => [id, { ...m }]));
  const cpuAtAdd = new Map([...all].map(([id, pid]) => [id, cpuSeconds(pid)]));
  const sampler = setInterval(() => {
    for (const [id, pid] of all) {
      const now = rssKiB(pid);
      const p = peak.get(id);
      p.rss = Math.max(p.rss, now.rss);
      p.anon = Math.max(p.anon, now.anon);
    }
  }, 100);
  // n4's copy rate (the pacer's choice), once a second.
  const rates = [];
  const n4Lag = [];
  const heapPeak = {};
  const sourceLag = [];
  const rateSampler = setInterval(async () => {
    // The other nodes' event-loop delay (max over the last second), too.
    const sec = Math.floor((performance.now() - tAdd) / 1000);
    const texts = await Promise.all([1, 2, 3].map((i) => fetch(`${client(i)}/metrics`).then((r) => r.text(), () => '')));
    const lags = texts.map((t) => /^ringkv_nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/m.exec(t)?.[1]);
    // Major GC time so far (ms) per node, to tell a stall from a collection.
    const gcs = texts.map((t) => /^ringkv_nodejs_gc_duration_seconds_sum\{[^}]*kind="major"[^}]*\} (\S+)$/m.exec(t)?.[1]);
    sourceLag.push([sec, lags.map((l) => (l === undefined ? null : Math.round(Number(l) * 1000))), gcs.map((g) => (g === undefined ? null : Math.round(Number(g) * 1000)))]);
    const text = await fetch(`${client(4)}/metrics`).then((r) => r.text(), () => '');
    const m = /^ringkv_copy_rate_bytes_per_second(?:\{[^}]*\})? (\S+)$/m.exec(text);
    if (m) rates.push(Number(m[1]) / 1024 ** 2);
    // prom-client resets the event-loop delay histogram at each scrape: this is the last second's.
    const lag = /^ringkv_nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/m.exec(text);
    const gc = /^ringkv_nodejs_gc_duration_seconds_sum\{[^}]*kind="major"[^}]*\} (\S+)$/m.exec(text);
    if (lag) n4Lag.push([Math.floor((performance.now() - tAdd) / 1000), Math.round(Number(lag[1]) * 1000), gc ? Math.round(Number(gc[1]) * 1000) : null, m ? +(Number(m[1]) / 1024 ** 2).toFixed(1) : null]);
    for (const name of ['ringkv_nodejs_heap_size_total_bytes', 'ringkv_nodejs_external_memory_bytes']) {
      const h = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
      if (h) heapPeak[name] = Math.max(heapPeak[name] ?? 0, Number(h[1]) / 1024 ** 2);
    }
  }, 1000);
  const moveStop = { done: false };
  const during = load(moveStop);
  const tAdd = performance.now();
  const added = await fetch(`${client(1)}/v1/cluster/members`, { method: 'POST', body: JSON.stringify({ id: 'n4', peer: peer(4), client: client(4) }) });
  if (!added.ok) throw new Error(`add: ${added.status} ${await added.text()}`);
  let lastMove = null;
  const epochs = [];
  for (;;) {
    const v = await fetch(`${client(1)}/v1/cluster`).then((r) => r.json());
    if (epochs.length === 0 || epochs[epochs.length - 1][1] !== v.epoch) epochs.push([+((performance.now() - tAdd) / 1000).toFixed(1), v.epoch]);
    if (v.move !== null) lastMove = v.move;
    if (v.move === null && v.members.find((m) => m.id === 'n4')?.status === 'active') break;
    await sleep(100);
  }
  const moveMs = performance.now() - tAdd;
  const n4Map = lmdbMap(n4.pid, n4dir);
  const cpuMove = Object.fromEntries([...all].map(([id, pid]) => [id, +(cpuSeconds(pid) - cpuAtAdd.get(id)).toFixed(1)]));
  moveStop.done = true;
  await during.done;
  clearInterval(sampler);
  clearInterval(rateSampler);
  await kv.close();

  const mib = (lastMove?.bytesCopied ?? 0) / 1024 ** 2;
  const result = {
    keys: KEYS,
    valueBytes: VALUE_BYTES,
    loadSeconds: +(loadMs / 1000).toFixed(1),
    copyRateMiBPerS: rates.length === 0 ? null : { min: +Math.min(...rates).toFixed(2), median: +quantile(rates, 0.5).toFixed(2), max: +Math.max(...rates).toFixed(2) },
    move: { seconds: +(moveMs / 1000).toFixed(2), keysCopied: lastMove?.keysCopied ?? null, mibCopied: +mib.toFixed(1), mibPerSecond: +(mib / (moveMs / 1000)).toFixed(1), partitionsMoving: lastMove?.partitionsMoving ?? null },
    latencyMs: {
      steady: { ops: steady.lat.length, errors: steady.errors(), p50: +quantile(steady.lat, 0.5).toFixed(1), p99: +quantile(steady.lat, 0.99).toFixed(1) },
      duringMove: { ops: during.lat.length, errors: during.errors(), errorKinds: during.errorKinds, p50: +quantile(during.lat, 0.5).toFixed(1), p99: +quantile(during.lat, 0.99).toFixed(1) },
    },
    cpuSeconds: { steady: cpuSteady, duringMove: cpuMove },
    rssMiB: Object.fromEntries(
      [...all.keys()].map((id) => {
        const i = idle.get(id);
        const p = peak.get(id);
        const mib = (k) => +(k / 1024).toFixed(0);
        return [id, { idle: mib(i.rss), peak: mib(p.rss), aboveIdle: mib(p.rss - i.rss), anonIdle: mib(i.anon), anonPeak: mib(p.anon), anonAboveIdle: mib(p.anon - i.anon) }];
      }),
    ),
  };
  const r = result.latencyMs;
  log(`move: ${result.move.seconds} s, ${result.move.keysCopied} keys / ${result.move.mibCopied} MiB copied (last sample), ${result.move.mibPerSecond} MiB/s`);
  log(`n4 peak V8 heap / external MiB (sampled each second): ${JSON.stringify(heapPeak)}`);
  if (result.copyRateMiBPerS) log(`n4 copy rate (MiB/s, sampled each second): min ${result.copyRateMiBPerS.min}, median ${result.copyRateMiBPerS.median}, max ${result.copyRateMiBPerS.max}`);
  log(`client latency: steady p50 ${r.steady.p50} / p99 ${r.steady.p99} ms (${r.steady.ops} ops, ${r.steady.errors} errors); during the move p50 ${r.duringMove.p50} / p99 ${r.duringMove.p99} ms (${r.duringMove.ops} ops, ${r.duringMove.errors} errors ${JSON.stringify(r.duringMove.errorKinds)}); p99 ratio ${(r.duringMove.p99 / r.steady.p99).toFixed(2)}`);
  // Where the slow requests of the move fell: per second since the add, those slower than
  // twice the steady p99 (gets / puts), and when the config epoch changed.
  const slowMs = 2 * r.steady.p99;
  const perSecond = new Map();
  for (const [t, op, ms] of during.timeline) {
    if (ms <= slowMs) continue;
    const sec = Math.floor((t - tAdd) / 1000);
    const e = perSecond.get(sec) ?? { get: 0, put: 0 };
    e[op]++;
    perSecond.set(sec, e);
  }
  log(`requests slower than ${slowMs.toFixed(0)} ms during the move, by second since the add (s: gets/puts): ${[...perSecond].sort((a, b) => a[0] - b[0]).map(([sec, e]) => `${sec}: ${e.get}/${e.put}`).join(', ') || 'none'}`);
  if (process.env.REBALANCE_ATTEMPTS) {
    // Every attempt that was not a plain success, by phase (before the add, during the move) and kind.
    const kinds = new Map();
    for (const a of attempts) {
      const k = `${a.t < tAdd ? 'before add' : 'move'} ${a.op} #${a.attempt > 1 ? '2+' : '1'} ${a.target ?? '?'} ${a.status ?? a.error}`;
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    }
    log(`attempts that were not plain successes: ${JSON.stringify(Object.fromEntries(kinds))}`);
  }
  // REBALANCE_SLOWEST=N: the N slowest requests of the move, with their attempts that were not plain successes.
  const slowest = Number(process.env.REBALANCE_SLOWEST ?? 0);
  if (slowest > 0) {
    const worst = [...during.timeline].sort((a, b) => b[2] - a[2]).slice(0, slowest);
    for (const [t, op, ms, key] of worst) {
      const tries = attempts.filter((a) => a.key === key && a.t >= t && a.t <= t + ms + 1);
      log(`  +${(t - tAdd).toFixed(0)} ms ${op} ${key} ${ms.toFixed(0)} ms; attempts: ${tries.map((a) => `#${a.attempt} ${a.target ?? '?'} ${a.status ?? a.error} by ${a.servedBy ?? '-'} at +${(a.t - tAdd).toFixed(0)} -> ${a.decision}`).join('; ') || 'one, ok'}`);
    }
  }
  log(`n1/n2/n3 event-loop delay max per second (s: ms/ms/ms): ${sourceLag.map(([t, l]) => `${t}: ${l.join('/')}`).join(', ')}`);
  log(`n1/n2/n3 major GC ms in each second (s: ms/ms/ms): ${sourceLag.map(([t, , g], i) => `${t}: ${g.map((x, j) => (x === null || i === 0 || sourceLag[i - 1][2][j] === null ? '?' : x - sourceLag[i - 1][2][j])).join('/')}`).join(', ')}`);
  log(`n4 event-loop delay max per second, major GC ms so far and copy rate MiB/s (s: ms/ms/MiB/s): ${n4Lag.map(([t, l, g, r]) => `${t}: ${l}/${g}/${r}`).join(', ')}`);
  log(`config epochs (s since the add, epoch): ${epochs.map(([t, e]) => `${t}: ${e}`).join(', ')}`);
  log(`RSS MiB (idle -> peak): ${Object.entries(result.rssMiB).map(([id, x]) => `${id} ${x.idle} -> ${x.peak} (+${x.aboveIdle})`).join(', ')}`);
  // Client API answers other than 2xx/404 on every node since it started (each retry is one).
  const refused = {};
  for (let i = 1; i <= 4; i++) {
    const text = await fetch(`${client(i)}/metrics`).then((r) => r.text(), () => '');
    for (const m of text.matchAll(/^ringkv_http_requests_total\{([^}]*)\} (\S+)$/gm)) {
      const status = /code="(\d+)"/.exec(m[1])?.[1];
      const method = /method="(\w+)"/.exec(m[1])?.[1];
      const route = /route="([^"]*)"/.exec(m[1])?.[1];
      if (status === undefined || status.startsWith('2') || status === '404' || Number(m[2]) === 0) continue;
      const k = `n${i} ${method} ${route} ${status}`;
      refused[k] = (refused[k] ?? 0) + Number(m[2]);
    }
  }
  log(`client API answers other than 2xx/404 since start: ${JSON.stringify(refused)}`);
  log(`CPU seconds (user + system): steady state (${STEADY_MS / 1000} s) ${JSON.stringify(cpuSteady)}; during the move ${JSON.stringify(cpuMove)}`);
  log(`n4 at the switch: LMDB file ${n4Map.fileMiB} MiB, ${n4Map.rssMiB} MiB of its map resident; B-tree of the data: ${JSON.stringify(lmdbStats(n4dir))}`);
  log(`anonymous RSS MiB (idle -> peak): ${Object.entries(result.rssMiB).map(([id, x]) => `${id} ${x.anonIdle} -> ${x.anonPeak} (+${x.anonAboveIdle})`).join(', ')}`);
  if (JSON_OUT) process.stdout.write(JSON.stringify(result) + '\n');
  if (n4Args.length > 0) {
    const exited = new Promise((r) => n4.once('exit', r));
    n4.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
  }
  if ((process.env.REBALANCE_NODE_ARGS ?? '').trim() !== '') {
    // n1..n3 write their profiles (or whatever the flags ask for) on a clean exit.
    for (const pid of pids.values()) process.kill(pid, 'SIGTERM');
    const alive = (pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 100 && [...pids.values()].some(alive); i++) await sleep(100);
  }
} finally {
  cleanup();
}
process.exit(0);
