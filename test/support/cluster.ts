// A real local cluster for tests: `ringkv local` starts the nodes (exactly what
// `npm start` runs); the test can kill -9 a node, restart it from its config file, and
// ask any node for its view of the cluster.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, portFree, spawnRingkv, TEST_PORT_MAX, TEST_PORT_MIN, waitReady, type NodeProc } from './proc.js';

export interface ClusterView {
  epoch: number;
  leader: string | null;
  members: { id: string; status: string; heartbeatAgeMs: number | null; primaryPartitions: number }[];
  partitions: { partition: number; primary: string | null; preference: string[] }[];
}

/** A base port whose node ports (base+10i, base+10i+1) are all free right now. */
async function freeBase(nodes: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = TEST_PORT_MIN + Math.floor((Math.random() * (TEST_PORT_MAX - TEST_PORT_MIN - 10 * nodes)) / 100) * 100 + 79;
    const ports = Array.from({ length: nodes }, (_, i) => [base + 10 * i, base + 10 * i + 1]).flat();
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free port range');
}

/**
 * Polls `view(id)` every 50 ms until pred holds, or fails after timeoutMs with the last
 * view seen (a node that is busy or restarting just misses a round).
 */
export async function pollView(view: (id: string) => Promise<ClusterView>, id: string, pred: (v: ClusterView) => boolean, timeoutMs: number): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs;
  let last: ClusterView | null = null;
  for (;;) {
    try {
      last = await view(id);
      if (pred(last)) return last;
    } catch {
      // node busy or restarting
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last view of ${id}: ${JSON.stringify(last?.members)} epoch ${last?.epoch}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class LocalCluster {
  readonly pids = new Map<string, number>();
  private readonly restarted = new Map<string, NodeProc>();
  private constructor(
    readonly n: number,
    readonly base: number,
    readonly dir: string,
    readonly local: ChildProcess,
    private out: { text: string },
  ) {}

  /** `spare`: also keep the ports of that many more nodes (n+1, ...) free, for nodes added later. */
  static async start(n: number, spare = 0): Promise<LocalCluster> {
    const base = await freeBase(n + spare);
    const dir = mkdtempSync(join(tmpdir(), 'ringkv-cluster-'));
    const local = spawn(process.execPath, [MAIN, 'local', '--nodes', String(n), '--base-port', String(base), '--data', dir, '--log-format', 'json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = { text: '' };
    local.stdout!.on('data', (d: Buffer) => (out.text += d.toString()));
    local.stderr!.on('data', (d: Buffer) => (out.text += d.toString()));
    const c = new LocalCluster(n, base, dir, local, out);
    try {
      const deadline = Date.now() + 20_000;
      while (c.pids.size < n) {
        for (const m of out.text.matchAll(/^\s+(n\d+)\s+client \S+\s+peer \S+\s+pid (\d+)$/gm)) c.pids.set(m[1]!, Number(m[2]));
        if (Date.now() > deadline) throw new Error(`ringkv local did not start:\n${out.text}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      // Readiness includes every primary's first takeover; a loaded machine needs time.
      await Promise.all(c.ids().map((id) => waitReady(c.client(id), undefined, 45_000)));
    } catch (e) {
      await c.stop(); // never leave node processes behind a failed start
      throw e;
    }
    return c;
  }

  ids(): string[] {
    return Array.from({ length: this.n }, (_, i) => `n${i + 1}`);
  }

  client(id: string): string {
    return `http://127.0.0.1:${this.base + 10 * (Number(id.slice(1)) - 1)}`;
  }

  peer(id: string): string {
    return `http://127.0.0.1:${this.base + 10 * (Number(id.slice(1)) - 1) + 1}`;
  }

  secret(): string {
    return readFileSync(join(this.dir, 'cluster-secret'), 'utf8').trim();
  }

  logs(): string {
    return this.out.text + [...this.restarted.values()].map((p) => p.output()).join('');
  }

  async view(id: string): Promise<ClusterView> {
    const r = await fetch(`${this.client(id)}/v1/cluster`, { signal: AbortSignal.timeout(3000) });
    return (await r.json()) as ClusterView;
  }

  kill9(id: string): void {
    const restarted = this.restarted.get(id);
    if (restarted) {
      restarted.child.kill('SIGKILL');
      this.restarted.delete(id);
      return;
    }
    process.kill(this.pids.get(id)!, 'SIGKILL');
  }

  /** Starts a killed node again from the config file `ringkv local` wrote for it. */
  async restart(id: string): Promise<void> {
    const p = spawnRingkv(['serve', '--config', join(this.dir, id, 'ringkv.yaml')], { RINGKV_CLUSTER_SECRET: this.secret() });
    this.restarted.set(id, p);
    await waitReady(this.client(id), p, 45_000);
  }

  /** Polls until pred holds for the view of node `id`, or fails with the last view. */
  waitFor(id: string, pred: (v: ClusterView) => boolean, timeoutMs: number): Promise<ClusterView> {
    return pollView((x) => this.view(x), id, pred, timeoutMs);
  }

  async stop(): Promise<void> {
    for (const p of this.restarted.values()) p.child.kill('SIGKILL');
    for (const pid of this.pids.values()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already dead
      }
    }
    this.local.kill('SIGKILL');
    if (this.local.exitCode === null) await once(this.local, 'exit').catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export const statusOf = (v: ClusterView, id: string): string | undefined => v.members.find((m) => m.id === id)?.status;

/** Every one of n members is active. */
export const allActive = (n: number) => (v: ClusterView): boolean => v.members.length === n && v.members.every((m) => m.status === 'active');
