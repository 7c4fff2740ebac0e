// `ringkv local --nodes N`: a whole cluster as local processes on 127.0.0.1, data under
// ./data. Each node is a real `ringkv serve` child with its own config file, exactly as
// in production; this command only writes the configs, starts the children, prefixes
// their logs and stops them on Ctrl-C.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';

export interface LocalNodeSpec {
  id: string;
  client: number;
  peer: number;
}

/** Ports: node i (0-based) uses base+10i for clients and base+10i+1 for peers, so the
 *  defaults match docker-compose.yml's published ports (7379, 7389, 7399). */
export function localTopology(nodes: number, basePort: number): LocalNodeSpec[] {
  return Array.from({ length: nodes }, (_, i) => ({ id: `n${i + 1}`, client: basePort + 10 * i, peer: basePort + 10 * i + 1 }));
}

export function localConfig(spec: LocalNodeSpec, all: LocalNodeSpec[], dataRoot: string): Record<string, unknown> {
  return {
    node: { id: spec.id, dataDir: join(dataRoot, spec.id) },
    listen: { client: `127.0.0.1:${spec.client}`, peer: `127.0.0.1:${spec.peer}` },
    advertise: { client: `http://127.0.0.1:${spec.client}`, peer: `http://127.0.0.1:${spec.peer}` },
    cluster: {
      name: 'local',
      initialMembers: all.map((m) => ({ id: m.id, peer: `http://127.0.0.1:${m.peer}`, client: `http://127.0.0.1:${m.client}` })),
      replicationFactor: Math.min(3, all.length),
      minInSync: Math.min(2, all.length),
    },
  };
}

/**
 * Node.js flags for nodes that share one machine's CPUs (the default of --node-args).
 * V8's parallel and concurrent GC run on helper threads, which here compete with the
 * other nodes' main threads; a replicated put waits for every in-sync replica, so any
 * node's delay reaches its tail. With the GC on each node's own main thread, three nodes
 * on two vCPUs gave the same puts/s with p99 18.8-21.3 ms instead of 26.3-26.8 ms
 * (docs/benchmarks.md). docker-compose.yml passes the same flag.
 */
export const SHARED_CPU_NODE_ARGS = '--single-threaded-gc';

export async function local(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      nodes: { type: 'string', default: '3' },
      'base-port': { type: 'string', default: '7379' },
      data: { type: 'string', default: './data' },
      'log-format': { type: 'string' },
      'node-args': { type: 'string', default: SHARED_CPU_NODE_ARGS },
    },
  });
  const n = Number(values.nodes);
  const basePort = Number(values['base-port']);
  if (!Number.isInteger(n) || n < 1 || n > 9) throw new Error('--nodes must be 1..9');
  if (!Number.isInteger(basePort) || basePort < 1 || basePort > 65000) throw new Error('--base-port must be a port number');
  const dataRoot = resolve(values.data);
  mkdirSync(dataRoot, { recursive: true });
  // One secret per data directory, kept so that restarts agree with each other.
  const secretFile = join(dataRoot, 'cluster-secret');
  if (!existsSync(secretFile)) writeFileSync(secretFile, randomBytes(24).toString('base64url') + '\n', { mode: 0o600 });
  const secret = readFileSync(secretFile, 'utf8').trim();

  const topology = localTopology(n, basePort);
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  // Node.js flags for every node (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof": a profile is
  // written when the node exits). Given flags replace the default; "" passes none.
  const nodeArgs = values['node-args'].split(' ').filter((a) => a !== '');
  const pretty = values['log-format'] ?? (process.stdout.isTTY ? 'pretty' : 'json');
  const children = new Map<string, ChildProcess>();
  for (const spec of topology) {
    mkdirSync(join(dataRoot, spec.id), { recursive: true });
    const file = join(dataRoot, spec.id, 'ringkv.yaml');
    writeFileSync(file, stringify(localConfig(spec, topology, dataRoot)));
    const child = spawn(process.execPath, [...nodeArgs, main, 'serve', '--config', file, '--log-format', pretty], {
      env: { ...process.env, RINGKV_CLUSTER_SECRET: secret },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.set(spec.id, child);
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => process.stdout.write(`[${spec.id}] ${line}\n`));
    }
    child.on('exit', (code, signal) => {
      children.delete(spec.id);
      process.stdout.write(`[${spec.id}] exited (${signal ?? `code ${code}`})\n`);
      if (children.size === 0) process.exit(0);
    });
  }
  process.stdout.write(
    `ringkv local: ${n} node(s), data in ${dataRoot}\n` +
      topology.map((s) => `  ${s.id}  client http://127.0.0.1:${s.client}  peer http://127.0.0.1:${s.peer}  pid ${children.get(s.id)?.pid ?? '?'}`).join('\n') +
      `\nexport RINGKV_ENDPOINTS=${topology.map((s) => `http://127.0.0.1:${s.client}`).join(',')}\nCtrl-C stops every node.\n`,
  );
  const stopAll = (): void => {
    for (const c of children.values()) c.kill('SIGTERM');
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  return new Promise<number>(() => {
    // runs until every child has exited (see the exit handler above)
  });
}
