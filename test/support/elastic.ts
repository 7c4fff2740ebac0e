// A LocalCluster that grows and shrinks: nodes n4, n5, ... are started with `ringkv serve`
// and a config that names only `cluster.join` (an existing member's peer URL), then added
// with POST /v1/cluster/members; members leave with DELETE /v1/cluster/members/{id}.
// `ids()` is the current member list as the test drove it, so workloads and checks follow.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { type ClusterView, type LocalCluster } from './cluster.js';
import { kill9, spawnRingkv, waitReady, type NodeProc } from './proc.js';
import { sleep } from './workload.js';

export class ElasticCluster {
  members: string[];
  readonly procs = new Map<string, NodeProc>();

  constructor(readonly c: LocalCluster) {
    this.members = c.ids();
  }

  get n(): number {
    return this.members.length;
  }

  ids(): string[] {
    return [...this.members];
  }

  client(id: string): string {
    return this.c.client(id); // base + 10(i-1): LocalCluster.start(n, spare) kept these free
  }

  peer(id: string): string {
    return this.c.peer(id);
  }

  view(id = this.members[0]!): Promise<ClusterView & { move: unknown }> {
    return this.c.view(id) as Promise<ClusterView & { move: unknown }>;
  }

  /** Starts node `id` with a join config (`extra` merges into it) without adding it. */
  spawn(id: string, extra: Record<string, unknown> = {}): NodeProc {
    const dir = join(this.c.dir, id);
    mkdirSync(dir, { recursive: true });
    const url = (u: string) => new URL(u);
    const cfg = {
      node: { id, dataDir: dir },
      listen: { client: url(this.client(id)).host, peer: url(this.peer(id)).host },
      cluster: { name: 'local', join: this.peer(this.members[0]!) },
      ...extra,
    };
    writeFileSync(join(dir, 'ringkv.yaml'), stringify(cfg));
    const p = spawnRingkv(['serve', '--config', join(dir, 'ringkv.yaml')], { RINGKV_CLUSTER_SECRET: this.c.secret() });
    this.procs.set(id, p);
    return p;
  }

  /** POST /v1/cluster/members via a current member; returns the HTTP status and body. */
  async add(id: string): Promise<{ status: number; body: unknown }> {
    const r = await fetch(`${this.client(this.members[0]!)}/v1/cluster/members`, {
      method: 'POST',
      body: JSON.stringify({ id, peer: this.peer(id), client: this.client(id) }),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: r.status, body: await r.json() };
  }

  /** DELETE /v1/cluster/members/{id} via a member other than `id`. */
  async remove(id: string): Promise<{ status: number; body: unknown }> {
    const via = this.members.find((m) => m !== id)!;
    const r = await fetch(`${this.client(via)}/v1/cluster/members/${id}`, { method: 'DELETE', signal: AbortSignal.timeout(10_000) });
    return { status: r.status, body: await r.json() };
  }

  /** Waits until every listed member sees `pred` (views from members that answer). */
  async waitView(pred: (v: ClusterView & { move: unknown }) => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let last = '';
    for (;;) {
      const views = await Promise.all(this.members.map((id) => this.view(id).catch(() => null)));
      const answered = views.filter((v) => v !== null);
      if (answered.length > 0 && answered.every(pred)) return;
      last = JSON.stringify(answered[0]?.members.map((m) => `${m.id}:${m.status}:${(m as { placement?: string }).placement}`));
      if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; last members ${last}`);
      await sleep(100);
    }
  }

  /** Adds `id` (already spawned) and waits until it is an active owner and nothing moves. */
  async addAndWait(id: string, timeoutMs = 60_000): Promise<number> {
    const t0 = performance.now();
    const r = await this.add(id);
    if (r.status !== 200) throw new Error(`add ${id}: ${r.status} ${JSON.stringify(r.body)}`);
    await this.waitAdded(id, timeoutMs);
    return performance.now() - t0;
  }

  /** After a successful add of `id`: waits until it is ready, an active owner, and nothing moves. */
  async waitAdded(id: string, timeoutMs = 60_000): Promise<void> {
    await waitReady(this.client(id), this.procs.get(id), timeoutMs);
    if (!this.members.includes(id)) this.members.push(id);
    await this.waitView((v) => v.move === null && v.members.some((m) => m.id === id && m.status === 'active'), timeoutMs, `${id} active`);
  }

  /** Decommissions `id` and waits until no member lists it; then stops its process. */
  async removeAndWait(id: string, timeoutMs = 60_000): Promise<number> {
    const t0 = performance.now();
    const r = await this.remove(id);
    if (r.status !== 200) throw new Error(`remove ${id}: ${r.status} ${JSON.stringify(r.body)}`);
    this.members = this.members.filter((m) => m !== id);
    await this.waitView((v) => v.move === null && !v.members.some((m) => m.id === id), timeoutMs, `${id} removed`);
    return performance.now() - t0;
  }

  async kill9(id: string): Promise<void> {
    const p = this.procs.get(id);
    if (p !== undefined) await kill9(p);
    else this.c.kill9(id);
  }

  logs(): string {
    return this.c.logs() + [...this.procs.entries()].map(([id, p]) => p.output().replace(/^/gm, `[${id}] `)).join('\n');
  }

  async stop(): Promise<void> {
    for (const p of this.procs.values()) await kill9(p);
    await this.c.stop();
  }
}
