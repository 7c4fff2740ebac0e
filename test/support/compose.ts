// docker-compose.yml run as local processes, for machines without a Docker engine.
//
// Everything comes from docker-compose.yml and the config files it mounts: the services,
// their profiles, their `serve --config /app/config/nK.yaml` commands (read through the
// `./config:/app/config` bind mount, so the node runs the very file the container would),
// the published ports, the secret and the data volume. Only what cannot work outside
// Docker is overridden, with RINGKV_* environment variables:
//   - addresses: the compose network's `http://nK:7379` / `http://nK:7380` become
//     127.0.0.1 ports. Each node's client port is its published host port plus one offset
//     for the whole topology (7379 + offset, 7389 + offset, ...), its peer port the same
//     distance above as in the container (+1); the listeners, the advertise URLs,
//     `initialMembers` and `cluster.join` are translated alike;
//   - the data directory (/data, the service's named volume): a temp directory per node;
//   - the secret file (/run/secrets/ringkv, the compose secret): a temp copy of the file
//     compose mounts there (config/dev-secret).
// One-shot services (an entrypoint ending in `/bin/sh -c`) run their script with the local
// `sh`, with compose's `$$` escapes undone and the URLs in their environment translated.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { kill9, MAIN, portFree, TEST_PORT_MAX, waitReady, type NodeProc } from './proc.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ComposeService {
  readonly hostname?: string;
  readonly command?: string | string[];
  readonly entrypoint?: string | string[];
  readonly ports?: string[];
  readonly volumes?: string[];
  readonly secrets?: (string | { source: string; target?: string })[];
  readonly profiles?: string[];
  readonly environment?: Record<string, string>;
  readonly depends_on?: Record<string, { condition: string }>;
  readonly restart?: string;
}

export interface ComposeFile {
  readonly name?: string;
  readonly services: Record<string, ComposeService>;
  readonly secrets: Record<string, { file: string }>;
}

/** docker-compose.yml as compose reads it (`<<: *node` merge keys resolved). */
function readCompose(): ComposeFile {
  return parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as ComposeFile;
}

const words = (x: string | string[] | undefined): string[] => (Array.isArray(x) ? x : (x ?? '').trim().split(/\s+/).filter((w) => w !== ''));

/** A service in the default profile (none) or in `profile`. */
const inProfile = (s: ComposeService, profile: string | null): boolean =>
  profile === null ? s.profiles === undefined : (s.profiles ?? []).includes(profile);

/** The image's ENTRYPOINT (Dockerfile), around which a node service may put Node.js flags. */
const IMAGE_ENTRY_HEAD = ['/usr/bin/tini', '--', 'node'];
const IMAGE_CLI = '/app/dist/cli/main.js';

/**
 * The Node.js flags a service's entrypoint adds to the image's (`tini -- node FLAGS cli`),
 * [] for the image's own, or null when the entrypoint does not run the CLI.
 */
function nodeFlagsOf(s: ComposeService): string[] | null {
  if (s.entrypoint === undefined) return [];
  const e = words(s.entrypoint);
  const head = e.slice(0, IMAGE_ENTRY_HEAD.length);
  if (head.join(' ') !== IMAGE_ENTRY_HEAD.join(' ') || e.at(-1) !== IMAGE_CLI) return null;
  return e.slice(IMAGE_ENTRY_HEAD.length, -1);
}

/** A service that runs `ringkv serve` (through the image's entrypoint, maybe with Node.js flags). */
const isNode = (s: ComposeService): boolean => nodeFlagsOf(s) !== null && words(s.command)[0] === 'serve';

/** Compose interpolates `${VAR}` and `$VAR` from the host; `$$` is a literal `$`. */
function uninterpolate(text: string): string {
  const lone = text.replace(/\$\$/g, '').match(/\$[{A-Za-z_]/);
  if (lone !== null) throw new Error(`docker-compose.yml uses host interpolation (${lone[0]}...), which this test does not reproduce`);
  return text.replace(/\$\$/g, '$');
}

/** The host file behind a container path, through the service's bind mounts (`./x:/y[:ro]`). */
function hostPathOf(s: ComposeService, containerPath: string): string {
  for (const v of s.volumes ?? []) {
    const [source = '', target = ''] = v.split(':');
    if (!source.startsWith('.') && !source.startsWith('/')) continue; // a named volume
    if (containerPath === target || containerPath.startsWith(target + '/')) return join(ROOT, source, containerPath.slice(target.length));
  }
  throw new Error(`${containerPath} is not under a bind mount`);
}

interface NodeConfig {
  node: { id: string; dataDir: string };
  listen: { client: string; peer: string };
  advertise: { client: string; peer: string };
  cluster: { secretFile: string; initialMembers?: { id: string; peer: string; client: string }[]; join?: string | null };
}

export interface ComposeNode {
  readonly name: string;
  readonly service: ComposeService;
  /** `serve --config <host path>`: the compose command with the config path read through its mount. */
  readonly args: string[];
  /** The Node.js flags of its entrypoint, given to the local process too. */
  readonly nodeFlags: string[];
  readonly config: NodeConfig;
  readonly client: string;
  readonly peer: string;
}

const portOf = (hostPort: string): number => Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));


function run(file: string, args: string[], env: Record<string, string>): NodeProc {
  // The caller's RINGKV_* variables are left out: the node would take them as overrides.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RINGKV_')));
  const child = spawn(file, args, { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  return { child, output: () => out, exited };
}

export class ComposeTopology {
  readonly procs = new Map<string, NodeProc>();
  private readonly oneShots: NodeProc[] = [];

  private constructor(
    readonly compose: ComposeFile,
    readonly nodes: ReadonlyMap<string, ComposeNode>,
    readonly dir: string,
    private readonly secretFile: string,
  ) {}

  /** Reads docker-compose.yml and every node's config; picks free 127.0.0.1 ports. */
  static async create(): Promise<ComposeTopology> {
    const compose = readCompose();
    const specs = Object.entries(compose.services)
      .filter(([, s]) => isNode(s))
      .map(([name, service]) => {
        const args = words(service.command);
        const at = args.indexOf('--config') + 1;
        const configFile = hostPathOf(service, args[at]!);
        const config = parse(readFileSync(configFile, 'utf8')) as NodeConfig;
        const ports = (service.ports ?? []).map((p) => ({ host: Number(p.split(':').at(-2)), container: Number(p.split(':').at(-1)) }));
        const published = ports.find((p) => p.container === portOf(config.listen.client));
        if (published === undefined) throw new Error(`${name}: the client port ${config.listen.client} is not published`);
        return { name, service, args: args.map((a, i) => (i === at ? configFile : a)), nodeFlags: nodeFlagsOf(service)!, config, published: published.host };
      });
    // One offset for the topology, so the nodes keep compose's 7379, 7389, ... spacing.
    let offset = 0;
    const layout = (o: number) => specs.map((s) => [s.published + o, s.published + o + portOf(s.config.listen.peer) - portOf(s.config.listen.client)]).flat();
    for (let attempt = 0; ; attempt++) {
      // The published ports (7379, ...) moved up, staying below the ephemeral range.
      offset = 10_000 + 100 * Math.floor((Math.random() * (TEST_PORT_MAX - 10_000 - Math.max(...specs.map((x) => x.published)) - 100)) / 100);
      if ((await Promise.all(layout(offset).map(portFree))).every(Boolean)) break;
      if (attempt > 50) throw new Error('no free port range');
    }
    const nodes = new Map<string, ComposeNode>();
    for (const s of specs) {
      const client = s.published + offset;
      const peer = client + portOf(s.config.listen.peer) - portOf(s.config.listen.client);
      nodes.set(s.name, { name: s.name, service: s.service, args: s.args, nodeFlags: s.nodeFlags, config: s.config, client: `http://127.0.0.1:${client}`, peer: `http://127.0.0.1:${peer}` });
    }
    const dir = mkdtempSync(join(tmpdir(), 'ringkv-compose-'));
    // The compose secret, at the path the nodes' configs name (cluster.secretFile).
    const secretName = Object.keys(compose.secrets)[0]!;
    const secretFile = join(dir, 'secret');
    copyFileSync(resolve(ROOT, compose.secrets[secretName]!.file), secretFile);
    return new ComposeTopology(compose, nodes, dir, secretFile);
  }

  /** Service names in a profile (null: the default one), in file order. */
  services(profile: string | null, which: 'nodes' | 'one-shots'): string[] {
    return Object.entries(this.compose.services)
      .filter(([, s]) => inProfile(s, profile) && isNode(s) === (which === 'nodes'))
      .map(([name]) => name);
  }

  node(name: string): ComposeNode {
    const n = this.nodes.get(name);
    if (n === undefined) throw new Error(`no node service ${name}`);
    return n;
  }

  /** A compose-network URL (`http://n1:7380`, by hostname or service name) as its 127.0.0.1 URL. */
  localUrl(url: string): string {
    const u = new URL(url);
    for (const n of this.nodes.values()) {
      if (u.hostname !== n.name && u.hostname !== n.service.hostname) continue;
      if (Number(u.port) === portOf(n.config.listen.client)) return n.client;
      if (Number(u.port) === portOf(n.config.listen.peer)) return n.peer;
    }
    throw new Error(`${url} is no node's client or peer port on the compose network`);
  }

  /** The RINGKV_* overrides that stand in for Docker; see the top of this file. */
  nodeEnv(name: string): Record<string, string> {
    const { config, service, client, peer } = this.node(name);
    const volume = (service.volumes ?? []).find((v) => v.split(':')[1] === config.node.dataDir);
    if (volume === undefined) throw new Error(`${name}: no volume at node.dataDir ${config.node.dataDir}`);
    const secret = (service.secrets ?? []).map((x) => (typeof x === 'string' ? x : (x.target ?? x.source)));
    if (!secret.map((t) => posix.join('/run/secrets', t)).includes(config.cluster.secretFile)) throw new Error(`${name}: no compose secret at ${config.cluster.secretFile}`);
    const members = config.cluster.initialMembers ?? [];
    const dataDir = join(this.dir, name);
    mkdirSync(dataDir, { recursive: true });
    return {
      RINGKV_LISTEN_CLIENT: new URL(client).host,
      RINGKV_LISTEN_PEER: new URL(peer).host,
      RINGKV_ADVERTISE_CLIENT: this.localUrl(config.advertise.client),
      RINGKV_ADVERTISE_PEER: this.localUrl(config.advertise.peer),
      ...(members.length > 0
        ? { RINGKV_CLUSTER_INITIAL_MEMBERS: JSON.stringify(members.map((m) => ({ id: m.id, peer: this.localUrl(m.peer), client: this.localUrl(m.client) }))) }
        : {}),
      ...(config.cluster.join ? { RINGKV_CLUSTER_JOIN: this.localUrl(config.cluster.join) } : {}),
      RINGKV_NODE_DATA_DIR: dataDir,
      RINGKV_CLUSTER_SECRETFILE: this.secretFile,
    };
  }

  /** `docker compose start <name>`: the compose command and the overrides (same data dir on a restart). */
  start(name: string): NodeProc {
    const n = this.node(name);
    if (n.service.environment !== undefined) throw new Error(`${name}: node services have no environment in docker-compose.yml; this test would not apply it`);
    const p = run(process.execPath, [...n.nodeFlags, MAIN, ...n.args], this.nodeEnv(name));
    this.procs.set(name, p);
    return p;
  }

  waitReady(name: string, timeoutMs = 45_000): Promise<void> {
    return waitReady(this.node(name).client, this.procs.get(name), timeoutMs);
  }

  /** `docker kill`: SIGKILL, as the container's PID 1 would get it. */
  kill9(name: string): Promise<void> {
    return kill9(this.procs.get(name)!);
  }

  /**
   * Runs a one-shot service's script as its container would (`/bin/sh -c SCRIPT`), with its
   * environment: the compose-network URLs translated, and `cli` in place of the image's
   * `node /app/dist/cli/main.js` in the variable that names it.
   */
  runOneShot(name: string, cliVariable: string): NodeProc {
    const s = this.compose.services[name]!;
    const entry = words(s.entrypoint);
    if (entry.slice(-2).join(' ') !== '/bin/sh -c') throw new Error(`${name}: the entrypoint ${JSON.stringify(entry)} does not end in /bin/sh -c`);
    if (!Array.isArray(s.command) || s.command.length !== 1) throw new Error(`${name}: the command must be one script string`);
    const script = uninterpolate(s.command[0]!);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(s.environment ?? {})) env[k] = uninterpolate(String(v)).replace(/https?:\/\/[a-z0-9-]+:\d+/g, (u) => this.localUrl(u));
    if (env[cliVariable] !== 'node /app/dist/cli/main.js') throw new Error(`${name}: ${cliVariable} is ${env[cliVariable]}, not the image's CLI`);
    env[cliVariable] = `${process.execPath} ${MAIN}`;
    const p = run('/bin/sh', ['-c', script], env);
    this.oneShots.push(p);
    return p;
  }

  logs(): string {
    return [...this.procs.entries()].map(([name, p]) => p.output().replace(/^/gm, `[${name}] `)).join('\n');
  }

  async stop(): Promise<void> {
    for (const p of [...this.procs.values(), ...this.oneShots]) await kill9(p);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
