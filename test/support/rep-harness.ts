// A script-like harness for the replication core: three nodes (n1..n3), a hand-driven
// network (deliver everything, in order, unless cut or lost), a memory store per node,
// and Readies carried out at once (persist, then send, then reply). Tests extend it with
// the helpers their scripts read best with.
import { applyChange, initialConfig, isChangeError, type ClusterConfig, type ConfigChange } from '../../src/core/membership.js';
import {
  applyRepPersistOp,
  createReplication,
  setConfig,
  step,
  submit,
  tick,
  type ClientOp,
  type ClientResult,
  type KvRecord,
  type PartitionMeta,
  type RepEnvelope,
  type RepEvent,
  type RepOptions,
  type RepReady,
  type Replication,
} from '../../src/core/replication.js';
import { partitionOf } from '../../src/core/hash.js';
import { nodeId, type NodeId } from '../../src/core/types.js';
import { applyRecordOps, memoryStoreView } from './memory-records.js';

export const harnessIds = ['n1', 'n2', 'n3'].map(nodeId);
export const harnessParams = { replicationFactor: 3, minInSync: 2, partitions: 4, vnodesPerNode: 4 };
/** One key in each partition of the harness: harnessKeys[p] is in partition p. */
export const harnessKeys: readonly string[] = Array.from({ length: harnessParams.partitions }, (_, p) => {
  for (let i = 0; ; i++) if (partitionOf(`k${i}`, harnessParams.partitions) === p) return `k${i}`;
});

export interface RepHarnessOptions {
  /** Options every node's core is created with (beyond id, cluster name, seed, invariants). */
  readonly rep?: Partial<Pick<RepOptions, 'tombstoneGraceMs' | 'testOnlyMutation'>>;
  /** A wall clock (ms) that ticks move by 50 ms and submits carry; null: none is passed. */
  readonly wallStartMs?: number | null;
}

export class RepHarness {
  readonly reps = new Map<NodeId, Replication>();
  readonly data = new Map<NodeId, Map<string, KvRecord>>();
  readonly metas = new Map<NodeId, Map<number, PartitionMeta>>();
  readonly down = new Set<NodeId>();
  readonly cut = new Set<NodeId>();
  readonly wire: RepEnvelope[] = [];
  readonly replies: { node: NodeId; id: string; result: ClientResult }[] = [];
  readonly events: { node: NodeId; event: RepEvent }[] = [];
  /** Messages of these types are lost. */
  readonly lose = new Set<string>();
  /** Called with every message about to be delivered (a test may inject messages of its own). */
  beforeDeliver: ((env: RepEnvelope) => void) | null = null;
  /** Messages this returns true for are held back (in `held`) until `release()`. */
  hold: ((env: RepEnvelope) => boolean) | null = null;
  readonly held: RepEnvelope[] = [];
  cfg: ClusterConfig = initialConfig(harnessIds.map((id) => ({ id, peerUrl: `http://${id}`, clientUrl: `http://${id}` })), harnessParams);
  /** The wall clock every node reads (ms), or null. */
  wall: number | null;
  private n = 0;

  constructor(private readonly opts: RepHarnessOptions = {}) {
    this.wall = opts.wallStartMs ?? null;
    for (const id of harnessIds) this.boot(id);
  }

  /** Starts (or restarts from its disk) a node. */
  boot(id: NodeId): void {
    if (!this.data.has(id)) this.data.set(id, new Map());
    if (!this.metas.has(id)) this.metas.set(id, new Map());
    const rep = createReplication({ id, clusterName: 't', seed: this.n++ + 7, checkInvariants: true, ...this.opts.rep }, this.metas.get(id)!, memoryStoreView(this.data.get(id)!));
    this.reps.set(id, rep);
    this.down.delete(id);
    this.apply(id, setConfig(rep, this.cfg));
  }

  apply(id: NodeId, r: RepReady): void {
    for (const op of r.persist) applyRepPersistOp(this.metas.get(id)!, op);
    applyRecordOps(this.data.get(id)!, r.persist);
    for (const event of r.events) this.events.push({ node: id, event });
    for (const env of r.send) if (!this.cut.has(id) && !this.cut.has(env.to) && !this.lose.has(env.msg.type)) this.wire.push(env);
    for (const rep of r.replies) this.replies.push({ node: id, id: rep.requestId, result: rep.result });
  }

  /** Delivers messages until the network is quiet (bounded). */
  flush(): void {
    for (let i = 0; i < 10_000 && this.wire.length > 0; i++) {
      const env = this.wire.shift()!;
      if (this.hold?.(env) === true) {
        this.held.push(env);
        continue;
      }
      this.beforeDeliver?.(env);
      const rep = this.reps.get(env.to);
      if (rep === undefined || this.down.has(env.to) || this.cut.has(env.to) || this.cut.has(env.msg.from)) continue;
      this.apply(env.to, step(rep, env.msg));
    }
  }

  /** k ticks on every running node (and 50 ms each of the wall clock, if there is one). */
  ticks(k: number): void {
    for (let i = 0; i < k; i++) {
      if (this.wall !== null) this.wall += 50;
      for (const [id, rep] of this.reps) if (!this.down.has(id)) this.apply(id, tick(rep, this.wall ?? undefined));
      this.flush();
    }
  }

  /** Stops holding messages back and delivers those held. */
  release(): void {
    this.hold = null;
    this.wire.push(...this.held.splice(0));
    this.flush();
  }

  change(c: ConfigChange): void {
    const next = applyChange(this.cfg, c);
    if (isChangeError(next)) throw new Error(next.error);
    this.cfg = next;
    for (const [id, rep] of this.reps) if (!this.down.has(id)) this.apply(id, setConfig(rep, next));
    this.flush();
  }

  /** Submits and returns the request id (the reply may come later). */
  submit(node: NodeId, op: ClientOp): string {
    const id = `r${this.n++}`;
    this.apply(node, submit(this.reps.get(node)!, id, op, this.wall ?? undefined));
    this.flush();
    return id;
  }

  client(node: NodeId, op: ClientOp): ClientResult | 'pending' {
    return this.reply(this.submit(node, op));
  }

  reply(id: string): ClientResult | 'pending' {
    return this.replies.find((r) => r.id === id)?.result ?? 'pending';
  }
}
