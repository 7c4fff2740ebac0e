#!/usr/bin/env node
// A 3-member etcd cluster on 127.0.0.1, for `ringkv bench --etcd` (docs/benchmarks.md).
//
//   node scripts/etcd-cluster.mjs [--base-dir DIR] [--client-ports 2379,22379,32379]
//                                 [--peer-ports 2380,22380,32380] [--etcd /usr/bin/etcd]
//
// Starts three `etcd` processes (members e1, e2, e3; the binary from --etcd, default
// `etcd` on PATH; tested with Debian's etcd-server 3.4.23), each with its data directory
// under --base-dir (default: a fresh temporary directory), with etcd's defaults otherwise:
// fsync on every commit, the v3 JSON gateway on the client URLs, no auto-compaction.
// Waits until every member answers GET /health with {"health":"true"}, then prints
// one line on stdout:
//
//   ETCD_ENDPOINTS=http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379
//
// and runs until SIGINT/SIGTERM, which stop the members and remove their data directories
// (and the temporary base directory if this script made it). Members log at warn level to
// this script's stderr, prefixed with their name. If a member exits on its own, the others
// are stopped too and the script exits 1. Uses nothing but Node (no ringkv imports).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const USAGE = `Usage: node scripts/etcd-cluster.mjs [--base-dir DIR] [--client-ports P,P,P] [--peer-ports P,P,P] [--etcd PATH]`;
const HOST = '127.0.0.1';
const HEALTH_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

const log = (s) => process.stderr.write(`etcd-cluster: ${s}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let values;
try {
  ({ values } = parseArgs({
    options: {
      'base-dir': { type: 'string' },
      'client-ports': { type: 'string', default: '2379,22379,32379' },
      'peer-ports': { type: 'string', default: '2380,22380,32380' },
      etcd: { type: 'string', default: 'etcd' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  process.stderr.write(`${e.message}\n${USAGE}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

function ports(text, name) {
  const list = text.split(',').map((s) => Number(s.trim()));
  if (list.length !== 3 || !list.every((p) => Number.isInteger(p) && p > 0 && p < 65536)) {
    process.stderr.write(`--${name} must be three port numbers separated by commas\n${USAGE}\n`);
    process.exit(2);
  }
  return list;
}
const clientPorts = ports(values['client-ports'], 'client-ports');
const peerPorts = ports(values['peer-ports'], 'peer-ports');

const madeBase = values['base-dir'] === undefined;
const base = madeBase ? mkdtempSync(join(tmpdir(), 'ringkv-etcd-')) : resolve(values['base-dir']);
const members = clientPorts.map((client, i) => ({
  name: `e${i + 1}`,
  dataDir: join(base, `e${i + 1}`),
  client: `http://${HOST}:${client}`,
  peer: `http://${HOST}:${peerPorts[i]}`,
}));
for (const m of members) {
  if (existsSync(m.dataDir)) {
    log(`${m.dataDir} already exists: remove it or pick another --base-dir`);
    process.exit(2);
  }
}
mkdirSync(base, { recursive: true });
const initialCluster = members.map((m) => `${m.name}=${m.peer}`).join(',');
const token = `ringkv-bench-${process.pid}-${Date.now()}`;

const children = new Map(); // name -> ChildProcess
let stopping = false;

function startMember(m) {
  const args = [
    '--name', m.name,
    '--data-dir', m.dataDir,
    '--listen-client-urls', m.client,
    '--advertise-client-urls', m.client,
    '--listen-peer-urls', m.peer,
    '--initial-advertise-peer-urls', m.peer,
    '--initial-cluster', initialCluster,
    '--initial-cluster-state', 'new',
    '--initial-cluster-token', token,
    '--logger', 'zap',
    '--log-outputs', 'stderr',
    '--log-level', 'warn',
  ];
  const child = spawn(values.etcd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.set(m.name, child);
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => process.stderr.write(`[${m.name}] ${line}\n`));
  }
  child.once('error', (e) => {
    log(`${m.name}: cannot run ${values.etcd}: ${e.message}`);
    children.delete(m.name);
    void shutdown(1);
  });
  child.once('exit', (code, signal) => {
    children.delete(m.name);
    if (!stopping) {
      log(`${m.name} exited on its own (${signal ?? `code ${code}`}); stopping the others`);
      void shutdown(1);
    }
  });
}

async function healthy(m) {
  try {
    const r = await fetch(`${m.client}/health`, { signal: AbortSignal.timeout(1000) });
    const body = await r.text();
    return r.status === 200 && JSON.parse(body).health === 'true';
  } catch {
    return false;
  }
}

async function waitHealthy() {
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  for (;;) {
    const ok = await Promise.all(members.map(healthy));
    if (ok.every(Boolean)) return;
    if (stopping) return;
    if (Date.now() > deadline) {
      throw new Error(`not every member healthy after ${HEALTH_TIMEOUT_MS} ms: ${members.filter((_, i) => !ok[i]).map((m) => m.name).join(', ')}`);
    }
    await sleep(200);
  }
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  const running = [...children.values()];
  const exits = running.map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', r))));
  for (const c of running) c.kill('SIGTERM');
  const killer = setTimeout(() => {
    for (const c of children.values()) c.kill('SIGKILL');
  }, STOP_TIMEOUT_MS);
  await Promise.all(exits);
  clearTimeout(killer);
  for (const m of members) rmSync(m.dataDir, { recursive: true, force: true });
  if (madeBase) rmSync(base, { recursive: true, force: true });
  log(`stopped; data removed from ${base}`);
  process.exit(code);
}

process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

log(`starting ${members.map((m) => `${m.name} (client ${m.client}, peer ${m.peer})`).join(', ')}; data in ${base}`);
for (const m of members) startMember(m);
try {
  await waitHealthy();
} catch (e) {
  log(e.message);
  await shutdown(1);
}
if (!stopping) {
  process.stdout.write(`ETCD_ENDPOINTS=${members.map((m) => m.client).join(',')}\n`);
  log(`all ${members.length} members healthy; Ctrl-C (SIGINT) or SIGTERM stops them and removes their data`);
}
