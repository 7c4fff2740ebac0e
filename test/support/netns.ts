// A real ringkv cluster whose nodes each run in their own Linux network namespace, so that
// a test can cut the network between them (a real partition: packets silently dropped,
// TCP connections left hanging) instead of only killing or pausing processes.
//
// Topology (all names and addresses unique per cluster, from a random suffix <u>):
//
//   rk<u>-hub            one namespace holding the bridge `br0` ("the switch"); node i's
//                        peer link ends there as port `p<i>`
//   rk<u>-n<i>           node i: `lo`, `peer0` (198.19.<y>.<i>/24, on the hub bridge; the
//                        node listens and advertises its peer API there) and `client0`
//                        (198.18.<y>.<4i+2>/30), a veth pair to the ROOT namespace, whose
//                        root end `rk<u>c<i>` is 198.18.<y>.<4i+1>/30. The test process
//                        (root namespace) reaches node i's client API directly on its
//                        client address, with no forwarding and no sysctl in the root
//                        namespace. The client links never carry peer traffic, so cutting
//                        peer links leaves every client API reachable by the test.
//
// 198.18.0.0/15 is the benchmarking range (RFC 2544); the /24 is picked so that it overlaps
// no route of the root namespace. Partitions are made with `ip` alone (no iptables/nft):
//   isolate(id)     node id's hub port goes down (its peer link is cut; its peer0 loses
//                   carrier, packets to and from it are dropped)
//   split(groups)   each group after the first gets its own bridge in the hub and its
//                   members' ports move there: groups can talk inside, not across
//   heal()          every port up and back on br0
//
// Each node is `ip netns exec rk<u>-n<i> node dist/cli/main.js serve --config FILE` (ip
// execs node in place, so the spawned pid is the node; it is started under
// `setpriv --pdeathsig KILL` when setpriv exists, so a killed test process takes its nodes
// with it). stop() heals, kills the nodes, deletes the root-side veth ends and every
// namespace (which destroys the other links) and the data directory; handlers do the same
// synchronously if the test process exits, or gets SIGTERM (how vitest ends its workers),
// SIGINT or SIGHUP, without calling stop() (after a SIGKILL only the nodes die, by
// pdeathsig). Nothing else in the root namespace is touched: no sysctl, no route or
// interface the cluster did not create.

import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { pollView, type ClusterView } from './cluster.js';
import { MAIN, waitReady, type NodeProc } from './proc.js';

const firstExisting = (paths: readonly string[]): string | null => paths.find((p) => existsSync(p)) ?? null;
const IP = firstExisting(['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip']);
const SETPRIV = firstExisting(['/usr/bin/setpriv', '/bin/setpriv']);

/** Signals whose default action ends the process: the cluster is destroyed first. */
const EXIT_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/** Every node listens on the same ports, each in its own namespace. */
const CLIENT_PORT = 7379;
const PEER_PORT = 7380;

const needs = 'the network partition suite needs root and iproute2 (`ip netns`, veth and bridge links)';

/** Runs `ip args...`; rejects with its stderr. */
function ip(args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(IP!, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Runs several `ip` commands in one process (`ip -batch -`), in order. */
const ipBatch = (commands: readonly string[], netns?: string): Promise<string> =>
  ip([...(netns === undefined ? [] : ['-n', netns]), '-batch', '-'], commands.join('\n') + '\n');

/** Throws a clear error unless this process can create network namespaces. */
export async function assertNetnsSupport(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error(`${needs}: this process is not root (uid ${process.getuid?.()})`);
  if (IP === null) throw new Error(`${needs}: no \`ip\` binary in /usr/sbin, /sbin, /usr/bin or /bin`);
  try {
    await ip(['netns', 'list']);
  } catch (e) {
    throw new Error(`${needs}: ${(e as Error).message}`);
  }
}

/** IPv4 prefix `a.b.c.d/len` as [network, len]; null for anything else ("default", IPv6). */
function parsePrefix(dst: string): [number, number] | null {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(dst);
  if (m === null) return null;
  const addr = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  return [addr, m[5] === undefined ? 32 : Number(m[5])];
}

const overlaps = (a: [number, number], b: [number, number]): boolean => {
  const len = Math.min(a[1], b[1]);
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  return ((a[0] & mask) >>> 0) === ((b[0] & mask) >>> 0);
};

/** A third octet y such that 198.18.y.0/24 overlaps no route of the root namespace. */
async function freeClientNet(): Promise<number> {
  const routes = JSON.parse(await ip(['-4', '-j', 'route', 'show', 'table', 'all'])) as { dst: string }[];
  const used = routes.map((r) => parsePrefix(r.dst)).filter((p): p is [number, number] => p !== null && p[1] > 0);
  for (let attempt = 0; attempt < 100; attempt++) {
    const y = 1 + Math.floor(Math.random() * 254);
    const net: [number, number] = [((198 << 24) | (18 << 16) | (y << 8)) >>> 0, 24];
    if (!used.some((u) => overlaps(u, net))) return y;
  }
  throw new Error('no free /24 in 198.18.0.0/16 in the root namespace');
}

export class NetnsCluster {
  readonly hub: string;
  private readonly procs = new Map<string, NodeProc>();
  private readonly onExit = (): void => this.destroySync();
  /** vitest ends its fork workers with SIGTERM: clean up, then let the signal do what it would have done. */
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.destroySync();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  private stopped = false;

  private constructor(
    readonly n: number,
    /** Random hex suffix of every name this cluster creates. */
    readonly uniq: string,
    /** Third octet of the client (198.18.y.0/24) and peer (198.19.y.0/24) networks. */
    readonly y: number,
    readonly dir: string,
    private readonly secret: string,
  ) {
    this.hub = `rk${uniq}-hub`;
  }

  /**
   * Creates the namespaces and links, writes the configs (RF min(3, n), minInSync
   * min(2, n), default timings), starts every node and waits until all are ready.
   */
  static async start(nodes: number): Promise<NetnsCluster> {
    await assertNetnsSupport();
    const c = new NetnsCluster(nodes, randomBytes(3).toString('hex'), await freeClientNet(), mkdtempSync(join(tmpdir(), 'ringkv-netns-')), randomBytes(24).toString('base64url'));
    c.watchExit(true);
    try {
      await c.createNetwork();
      for (const id of c.ids()) c.spawnNode(id);
      // Readiness includes every primary's first takeover; a loaded machine needs time.
      await Promise.all(c.ids().map((id) => waitReady(c.client(id), c.procs.get(id), 45_000)));
    } catch (e) {
      await c.stop(); // never leave namespaces or processes behind a failed start
      throw e;
    }
    return c;
  }

  ids(): string[] {
    return Array.from({ length: this.n }, (_, i) => `n${i + 1}`);
  }

  private index(id: string): number {
    const i = Number(id.slice(1));
    if (!/^n\d+$/.test(id) || i < 1 || i > this.n) throw new Error(`no node ${id}`);
    return i;
  }

  /** The namespace of node `id`. */
  netns(id: string): string {
    return `rk${this.uniq}-n${this.index(id)}`;
  }

  private rootLink(id: string): string {
    return `rk${this.uniq}c${this.index(id)}`;
  }

  private hubPort(id: string): string {
    return `p${this.index(id)}`;
  }

  /** The client API of node `id`, as the test process (root namespace) reaches it. */
  client(id: string): string {
    return `http://198.18.${this.y}.${4 * this.index(id) + 2}:${CLIENT_PORT}`;
  }

  /** The peer API of node `id`, reachable only from the other nodes' namespaces. */
  peer(id: string): string {
    return `http://198.19.${this.y}.${this.index(id)}:${PEER_PORT}`;
  }

  /** Every node's output so far, one JSON log line each (pino's `node` field names it). */
  logs(): string {
    return this.ids()
      .map((id) => this.procs.get(id)?.output() ?? '')
      .join('');
  }

  private async createNetwork(): Promise<void> {
    const namespaces = [this.hub, ...this.ids().map((id) => this.netns(id))];
    await ipBatch(namespaces.map((ns) => `netns add ${ns}`));
    await ipBatch(['link set lo up', 'link add br0 type bridge forward_delay 0', 'link set br0 up'], this.hub);
    for (const id of this.ids()) {
      const i = this.index(id);
      const ns = this.netns(id);
      // The peer link: node namespace <-> hub bridge. Created from inside the hub, so the
      // root namespace never holds it, even for a moment.
      await ipBatch([`link add ${this.hubPort(id)} type veth peer name peer0 netns ${ns}`, `link set ${this.hubPort(id)} master br0`, `link set ${this.hubPort(id)} up`], this.hub);
      // The client link: root namespace <-> node namespace.
      await ipBatch([`link add ${this.rootLink(id)} type veth peer name client0 netns ${ns}`, `addr add 198.18.${this.y}.${4 * i + 1}/30 dev ${this.rootLink(id)}`, `link set ${this.rootLink(id)} up`]);
      await ipBatch(['link set lo up', `addr add 198.19.${this.y}.${i}/24 dev peer0`, 'link set peer0 up', `addr add 198.18.${this.y}.${4 * i + 2}/30 dev client0`, 'link set client0 up'], ns);
    }
  }

  private spawnNode(id: string): void {
    const dataDir = join(this.dir, id);
    mkdirSync(dataDir, { recursive: true });
    const file = join(dataDir, 'ringkv.yaml');
    const config = {
      node: { id, dataDir },
      listen: { client: `0.0.0.0:${CLIENT_PORT}`, peer: `198.19.${this.y}.${this.index(id)}:${PEER_PORT}` },
      advertise: { client: this.client(id), peer: this.peer(id) },
      cluster: {
        name: `netns-${this.uniq}`,
        initialMembers: this.ids().map((m) => ({ id: m, peer: this.peer(m), client: this.client(m) })),
        replicationFactor: Math.min(3, this.n),
        minInSync: Math.min(2, this.n),
      },
      log: { level: 'info', format: 'json' },
    };
    writeFileSync(file, stringify(config));
    const argv = [...(SETPRIV === null ? [] : [SETPRIV, '--pdeathsig', 'KILL']), IP!, 'netns', 'exec', this.netns(id), process.execPath, MAIN, 'serve', '--config', file];
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, RINGKV_CLUSTER_SECRET: this.secret }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    this.procs.set(id, { child, output: () => out, exited });
  }

  async view(id: string): Promise<ClusterView> {
    const r = await fetch(`${this.client(id)}/v1/cluster`, { signal: AbortSignal.timeout(3000) });
    return (await r.json()) as ClusterView;
  }

  /** Polls until pred holds for the view of node `id`, or fails with the last view. */
  waitFor(id: string, pred: (v: ClusterView) => boolean, timeoutMs: number): Promise<ClusterView> {
    return pollView((x) => this.view(x), id, pred, timeoutMs);
  }

  /** Cuts node `id`'s peer link: it can reach no other node and none can reach it. */
  async isolate(id: string): Promise<void> {
    await ip(['-n', this.hub, 'link', 'set', this.hubPort(id), 'down']);
  }

  /**
   * Splits the peer network: nodes talk only to nodes of their own group. Every node must
   * be in exactly one group; the first group stays on br0.
   */
  async split(groups: readonly (readonly string[])[]): Promise<void> {
    const all = groups.flat().sort();
    if (all.join() !== this.ids().sort().join()) throw new Error(`split: groups ${JSON.stringify(groups)} must cover each node once`);
    const commands: string[] = [];
    for (let g = 1; g < groups.length; g++) {
      commands.push(`link add br${g} type bridge forward_delay 0`, `link set br${g} up`);
      for (const id of groups[g]!) commands.push(`link set ${this.hubPort(id)} master br${g}`);
    }
    await ipBatch(commands, this.hub);
  }

  /** Every peer link up and on br0; the extra bridges of split() are deleted. */
  async heal(): Promise<void> {
    const bridges = JSON.parse(await ip(['-n', this.hub, '-j', 'link', 'show', 'type', 'bridge'])) as { ifname: string }[];
    await ipBatch(
      [
        ...this.ids().flatMap((id) => [`link set ${this.hubPort(id)} master br0`, `link set ${this.hubPort(id)} up`]),
        ...bridges.filter((b) => b.ifname !== 'br0').map((b) => `link del ${b.ifname}`),
      ],
      this.hub,
    );
  }

  /**
   * What tearing down takes, once the nodes are killed: the root-side veth ends first (a
   * namespace can outlive its deletion, invisibly, while orphaned TCP sockets of killed
   * nodes still retransmit in it; deleting our end of each pair keeps the root namespace
   * clean meanwhile), then every namespace. Run with `ip -force -batch -`: errors (a link or
   * namespace that was never created) do not stop the rest.
   */
  private teardownCommands(): string {
    return [...this.ids().map((id) => `link del ${this.rootLink(id)}`), ...this.ids().map((id) => `netns del ${this.netns(id)}`), `netns del ${this.hub}`].join('\n') + '\n';
  }

  /** Kills every node, deletes every namespace and link it created, and the data. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Reconnected, the killed nodes' sockets close cleanly instead of retransmitting into a cut.
    await this.heal().catch(() => undefined);
    for (const p of this.procs.values()) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.all([...this.procs.values()].map((p) => p.exited));
    await ip(['-force', '-batch', '-'], this.teardownCommands()).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
    this.watchExit(false);
  }

  /** (Un)registers the handlers that clean up if the process ends without stop(). */
  private watchExit(on: boolean): void {
    const method = on ? 'on' : 'off';
    process[method]('exit', this.onExit);
    for (const signal of EXIT_SIGNALS) process[method](signal, this.onSignal);
  }

  /** stop() for a process that is exiting: synchronous, best-effort. */
  private destroySync(): void {
    this.watchExit(false);
    this.stopped = true;
    for (const p of this.procs.values()) p.child.kill('SIGKILL');
    // No event loop to reap them: wait (up to 5 s) until each is a zombie, so that none
    // writes into its data directory after it is removed.
    const deadline = Date.now() + 5000;
    for (const p of this.procs.values()) while (p.child.pid !== undefined && !deadOrZombie(p.child.pid) && Date.now() < deadline) sleepSync(10);
    try {
      execFileSync(IP!, ['-force', '-batch', '-'], { input: this.teardownCommands(), stdio: ['pipe', 'ignore', 'ignore'] });
    } catch {
      // some link or namespace was never created
    }
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best-effort: the process is exiting
    }
  }
}

const sleepSync = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** The process is gone, or a zombie (dead, not yet reaped). */
function deadOrZombie(pid: number): boolean {
  try {
    // /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
  } catch {
    return true;
  }
}
