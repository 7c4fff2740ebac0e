// The shipped config files, docker-compose.yml and the Dockerfile must agree with each
// other and with the config loader: every sample config loads, compose mounts and
// publishes what the configs say, and a bad config is refused with a message naming the
// field. No Docker engine is needed: the files are read as text/YAML.

import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { loadConfig, splitHostPort, SECRET_BYTES_MIN, type LoadedConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { localTopology, SHARED_CPU_NODE_ARGS } from '../../src/cli/local.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CONFIG_DIR = join(ROOT, 'config');
const DEV_SECRET = join(CONFIG_DIR, 'dev-secret');
/** In the containers the secret is /run/secrets/ringkv; here it is the file compose mounts there. */
const ENV = { RINGKV_CLUSTER_SECRETFILE: DEV_SECRET };

const yamlFiles = readdirSync(CONFIG_DIR).filter((f) => f.endsWith('.yaml')).sort();
const COMPOSE_NODES = ['n1', 'n2', 'n3', 'n4', 'n5'] as const;
const BOOTSTRAP = ['n1', 'n2', 'n3'];

const load = (name: string, env: NodeJS.ProcessEnv = ENV): LoadedConfig => loadConfig(join(CONFIG_DIR, name), env);
const rawYaml = (name: string): Record<string, any> => parse(readFileSync(join(CONFIG_DIR, name), 'utf8')) as Record<string, any>;
const portOf = (addr: string): number => splitHostPort(addr).port;

// ---- docker-compose.yml, as compose reads it (with `<<: *anchor` merge keys) ----

interface ComposeService {
  image?: string;
  build?: string | { context: string };
  init?: boolean;
  restart?: string;
  stop_grace_period?: string;
  hostname?: string;
  command?: string | string[];
  entrypoint?: string | string[];
  ports?: (string | { published: number | string; target: number })[];
  volumes?: (string | { type?: string; source?: string; target: string; read_only?: boolean })[];
  secrets?: (string | { source: string; target?: string })[];
  profiles?: string[];
  depends_on?: string[] | Record<string, { condition: string }>;
}
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, ComposeService>;
  secrets: Record<string, { file: string }>;
  volumes: Record<string, unknown>;
};

const commandOf = (s: ComposeService): string[] => (Array.isArray(s.command) ? s.command : (s.command ?? '').trim().split(/\s+/));

/** Published ports as {host, container}. Short syntax: [ip:]host:container[/proto]. */
function portsOf(s: ComposeService): { host: number; container: number }[] {
  return (s.ports ?? []).map((p) => {
    if (typeof p !== 'string') return { host: Number(p.published), container: Number(p.target) };
    const parts = p.replace(/\/(tcp|udp)$/, '').split(':');
    expect(parts.length, `port ${p} must say host:container`).toBeGreaterThanOrEqual(2);
    return { host: Number(parts[parts.length - 2]), container: Number(parts[parts.length - 1]) };
  });
}

/** Mounts as {source, target, readOnly}. Short syntax: source:target[:mode]. */
function mountsOf(s: ComposeService): { source: string; target: string; readOnly: boolean }[] {
  return (s.volumes ?? []).map((v) => {
    if (typeof v !== 'string') return { source: v.source ?? '', target: v.target, readOnly: v.read_only === true };
    const [source = '', target = '', mode = ''] = v.split(':');
    return { source, target, readOnly: mode.split(',').includes('ro') };
  });
}

/** Where each secret lands in the container: /run/secrets/<target>, target defaulting to source. */
function secretsOf(s: ComposeService): { source: string; path: string }[] {
  return (s.secrets ?? []).map((x) => {
    const source = typeof x === 'string' ? x : x.source;
    const target = typeof x === 'string' ? x : (x.target ?? x.source);
    return { source, path: target.startsWith('/') ? target : posix.join('/run/secrets', target) };
  });
}

/** The host file behind a path inside the container, through the service's bind mounts. */
function hostPathOf(s: ComposeService, containerPath: string): string | null {
  for (const m of mountsOf(s)) {
    if (!m.source.startsWith('.') && !m.source.startsWith('/')) continue; // named volume
    if (containerPath === m.target || containerPath.startsWith(m.target + '/')) {
      return join(ROOT, m.source, containerPath.slice(m.target.length));
    }
  }
  return null;
}

describe('config/dev-secret', () => {
  it('is a documented dev default of at least the minimum secret length', () => {
    const secret = readFileSync(DEV_SECRET, 'utf8').trim();
    expect(Buffer.byteLength(secret)).toBeGreaterThanOrEqual(SECRET_BYTES_MIN);
    expect(secret).toMatch(/dev/); // says what it is in the value itself
  });
});

describe('config/*.yaml', () => {
  it('holds the five compose node configs and single.yaml', () => {
    expect(yamlFiles).toEqual(expect.arrayContaining([...COMPOSE_NODES.map((n) => `${n}.yaml`), 'single.yaml']));
  });

  it.each(yamlFiles)('%s loads through loadConfig', (name) => {
    const { config, secret } = load(name);
    expect(config.node.id).toMatch(/^[a-z0-9-]{1,32}$/);
    expect(secret).toBe(readFileSync(DEV_SECRET, 'utf8').trim());
  });

  it.each(COMPOSE_NODES)('%s.yaml is the compose node of that name', (id) => {
    const raw = rawYaml(`${id}.yaml`);
    expect(raw.cluster.secretFile).toBe('/run/secrets/ringkv');
    const { config, advertise } = load(`${id}.yaml`);
    expect(config.node.id).toBe(id);
    expect(config.node.dataDir).toBe('/data');
    expect(config.listen).toEqual({ client: '0.0.0.0:7379', peer: '0.0.0.0:7380' });
    expect(advertise).toEqual({ client: `http://${id}:${portOf(config.listen.client)}`, peer: `http://${id}:${portOf(config.listen.peer)}` });
    expect(config.cluster).toMatchObject({ name: 'demo', replicationFactor: 3, minInSync: 2, partitions: 128, vnodesPerNode: 64 });
    expect(config.timing).toMatchObject({ heartbeatMs: 200, suspectAfterMs: 1000, leaseMs: 800 });
    expect(config.storage).toMatchObject({ engine: 'lmdb', fsync: true });
    expect(config.log.format).toBe('json');
    if (BOOTSTRAP.includes(id)) {
      expect(config.cluster.join).toBeNull();
      expect(config.cluster.initialMembers.map((m) => m.id)).toEqual(BOOTSTRAP);
    } else {
      expect(raw.cluster.initialMembers).toBeUndefined();
      expect(config.cluster.initialMembers).toEqual([]);
      expect(config.cluster.join).toBe('http://n1:7380');
    }
  });

  it('n1, n2 and n3 have the same initialMembers', () => {
    const lists = BOOTSTRAP.map((id) => load(`${id}.yaml`).config.cluster.initialMembers);
    expect(lists[1]).toEqual(lists[0]);
    expect(lists[2]).toEqual(lists[0]);
  });

  it("every initialMembers entry and join URL is the member's hostname with the ports it listens on", () => {
    const members = load('n1.yaml').config.cluster.initialMembers;
    for (const m of members) {
      const their = load(`${m.id}.yaml`).config;
      expect(compose.services[m.id]?.hostname).toBe(m.id);
      expect(m.peer).toBe(`http://${m.id}:${portOf(their.listen.peer)}`);
      expect(m.client).toBe(`http://${m.id}:${portOf(their.listen.client)}`);
    }
    for (const id of ['n4', 'n5']) {
      const join = new URL(load(`${id}.yaml`).config.cluster.join!);
      expect(members.map((m) => m.peer)).toContain(join.origin);
    }
  });

  it('single.yaml needs no secret: loopback listeners, one copy of each key', () => {
    const { config, secret } = load('single.yaml', {});
    expect(secret).toBeNull();
    expect(splitHostPort(config.listen.client).host).toBe('127.0.0.1');
    expect(splitHostPort(config.listen.peer).host).toBe('127.0.0.1');
    expect(config.node.dataDir).toBe('./data/single');
    expect(config.cluster.initialMembers).toEqual([]);
    expect(config.cluster.join).toBeNull();
    expect(config.cluster.replicationFactor).toBe(1);
    expect(config.cluster.minInSync).toBe(1);
  });

  it('n1..n3 run as local processes on loopback with environment overrides only (docs/docker.md)', () => {
    const local = localTopology(3, 7379);
    const members = local.map((m) => ({ id: m.id, peer: `http://127.0.0.1:${m.peer}`, client: `http://127.0.0.1:${m.client}` }));
    for (const spec of local) {
      const { config, advertise, secret } = load(`${spec.id}.yaml`, {
        RINGKV_LISTEN_CLIENT: `127.0.0.1:${spec.client}`,
        RINGKV_LISTEN_PEER: `127.0.0.1:${spec.peer}`,
        RINGKV_ADVERTISE_CLIENT: `http://127.0.0.1:${spec.client}`,
        RINGKV_ADVERTISE_PEER: `http://127.0.0.1:${spec.peer}`,
        RINGKV_NODE_DATA_DIR: `./data/${spec.id}`,
        RINGKV_CLUSTER_SECRETFILE: DEV_SECRET,
        RINGKV_CLUSTER_INITIAL_MEMBERS: JSON.stringify(members),
      });
      expect(config.node.id).toBe(spec.id);
      expect(advertise.client).toBe(`http://127.0.0.1:${spec.client}`);
      expect(config.cluster.initialMembers).toEqual(members);
      expect(config.cluster).toMatchObject({ replicationFactor: 3, minInSync: 2, partitions: 128 });
      expect(secret).not.toBeNull();
    }
  });

  it('a compose config can also run with the secret from RINGKV_CLUSTER_SECRET (docker run without compose)', () => {
    const { secret } = load('n1.yaml', { RINGKV_CLUSTER_SECRETFILE: 'null', RINGKV_CLUSTER_SECRET: 'another-secret-of-enough-bytes' });
    expect(secret).toBe('another-secret-of-enough-bytes');
  });
});

/** The arguments of every `NAME ...` instruction in the Dockerfile (continuation lines joined). */
function dockerInstr(name: string): string[] {
  return readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.startsWith(name + ' '))
    .map((l) => l.slice(name.length + 1).trim());
}

describe('docker-compose.yml', () => {
  const services = compose.services;

  it('runs n1, n2, n3 by default and n4, n5 (added by add-members) in the "five" profile', () => {
    expect(Object.keys(services).filter((n) => commandOf(services[n]!)[0] === 'serve').sort()).toEqual([...COMPOSE_NODES]);
    expect(Object.keys(services).sort()).toEqual([...COMPOSE_NODES, 'add-members'].sort());
    expect(services['add-members']!.profiles).toEqual(['five']);
    for (const id of BOOTSTRAP) expect(services[id]!.profiles).toBeUndefined();
    for (const id of ['n4', 'n5']) {
      expect(services[id]!.profiles).toEqual(['five']);
      expect(services[id]!.depends_on).toEqual({ n1: { condition: 'service_healthy' } });
    }
  });

  it.each(COMPOSE_NODES)('%s: image, command, ports, volumes and secret agree with its config file', (id) => {
    const s = services[id]!;
    const { config } = load(`${id}.yaml`);
    const i = COMPOSE_NODES.indexOf(id);

    expect(s.image).toBe('ringkv:local');
    expect(s.build === '.' || (typeof s.build === 'object' && s.build.context === '.')).toBe(true);
    expect(s.hostname).toBe(id);
    expect(s.restart).toBe('no');
    expect(s.stop_grace_period).toBe('10s');
    expect(s.init).toBeUndefined(); // tini is the image's PID 1
    // The image's ENTRYPOINT with the Node.js flags of nodes that share CPUs (as `ringkv local`).
    const imageEntry = JSON.parse(dockerInstr('ENTRYPOINT')[0]!) as string[];
    expect(s.entrypoint).toEqual([...imageEntry.slice(0, -1), ...SHARED_CPU_NODE_ARGS.split(' '), imageEntry.at(-1)]);

    // command: serve --config <path>, and that path is this repo's config file via the mount.
    const cmd = commandOf(s);
    expect(cmd[0]).toBe('serve');
    const configPath = cmd[cmd.indexOf('--config') + 1]!;
    expect(configPath).toBe(`/app/config/${id}.yaml`);
    expect(hostPathOf(s, configPath)).toBe(join(CONFIG_DIR, `${id}.yaml`));
    expect(mountsOf(s).find((m) => m.target === '/app/config')).toMatchObject({ source: './config', readOnly: true });

    // ports: host 7379 + 10i (as `ringkv local`) → the container's client port; peer port unpublished.
    const ports = portsOf(s);
    expect(ports).toEqual([{ host: 7379 + 10 * i, container: portOf(config.listen.client) }]);
    expect(ports[0]!.host).toBe(localTopology(5, 7379)[i]!.client);
    expect(ports.map((p) => p.container)).not.toContain(portOf(config.listen.peer));

    // the data volume is mounted where the config keeps its data, and is a declared named volume.
    const data = mountsOf(s).find((m) => m.target === config.node.dataDir);
    expect(data).toMatchObject({ source: `${id}-data`, readOnly: false });
    expect(Object.keys(compose.volumes)).toContain(`${id}-data`);

    // the secret lands at cluster.secretFile, from config/dev-secret.
    const secrets = secretsOf(s);
    expect(secrets).toEqual([{ source: 'ringkv', path: rawYaml(`${id}.yaml`).cluster.secretFile }]);
    expect(resolve(ROOT, compose.secrets.ringkv!.file)).toBe(DEV_SECRET);
  });
});

describe('Dockerfile', () => {
  const instr = dockerInstr;

  it('agrees with the configs: exposed ports, healthcheck port, data volume, default config', () => {
    const { config } = load('n1.yaml');
    const exposed = instr('EXPOSE').join(' ').split(/\s+/).map(Number);
    expect(exposed).toEqual(expect.arrayContaining([portOf(config.listen.client), portOf(config.listen.peer)]));
    expect(instr('HEALTHCHECK')[0]).toContain(`http://127.0.0.1:${portOf(config.listen.client)}/readyz`);
    expect(instr('VOLUME')).toEqual([config.node.dataDir]);
    expect(instr('USER')).toEqual(['node']);
    expect(JSON.parse(instr('ENTRYPOINT')[0]!)).toEqual(['/usr/bin/tini', '--', 'node', '/app/dist/cli/main.js']);
    expect(JSON.parse(instr('CMD').at(-1)!)).toEqual(['serve', '--config', '/app/config/n1.yaml']);
    expect(instr('FROM').map((f) => f.split(' ')[0])).toEqual(['node:22-bookworm-slim', 'node:22-bookworm-slim']);
  });

  it('.dockerignore keeps the dev secret and local state out of the image', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    expect(ignored).toEqual(expect.arrayContaining(['config/dev-secret', 'node_modules', 'dist', 'data', '.git']));
  });
});

describe('docs/configuration.md', () => {
  const doc = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
  const defaults = configSchema.parse({}) as unknown as Record<string, Record<string, unknown>>;
  const fields = Object.entries(defaults).flatMap(([section, values]) => Object.keys(values).map((f) => [section, f] as const));
  fields.push(['advertise', 'client'], ['advertise', 'peer']);

  it.each(fields)('documents %s.%s with both environment variable names', (section, field) => {
    expect(doc).toContain(`| \`${section}.${field}\` |`);
    expect(doc).toContain(`RINGKV_${section}_${field}`.toUpperCase());
    expect(doc).toContain(`RINGKV_${section}_${field.replace(/([a-z0-9])([A-Z])/g, '$1_$2')}`.toUpperCase());
  });

  it('documents the environment variables that are not config fields', () => {
    for (const name of ['RINGKV_CLUSTER_SECRET', 'RINGKV_ENDPOINTS', 'RINGKV_TOKEN', 'RINGKV_CONFIG']) expect(doc).toContain(`| \`${name}\` |`);
  });
});

// ---- bad configs: each is refused with a message naming the field ----

describe('a bad config is refused, naming the field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ringkv-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const write = (text: string): string => {
    const file = join(dir, `c${n++}.yaml`);
    writeFileSync(file, text);
    return file;
  };
  /** A valid loopback config (no secret needed) with `extra` YAML appended or sections replaced. */
  const base = (sections: Record<string, string> = {}): string => {
    const all: Record<string, string> = {
      node: 'node:\n  id: n1\n  dataDir: ./data/n1\n',
      listen: 'listen:\n  client: 127.0.0.1:7379\n  peer: 127.0.0.1:7380\n',
      cluster: 'cluster:\n  name: t\n  replicationFactor: 3\n  minInSync: 2\n',
      timing: 'timing:\n  heartbeatMs: 200\n  suspectAfterMs: 1000\n  leaseMs: 800\n',
      ...sections,
    };
    return write(Object.values(all).join(''));
  };

  it('the base config used below is valid', () => {
    expect(loadConfig(base(), {}).config.node.id).toBe('n1');
  });

  it('(a) unknown field', () => {
    const file = base({ cluster: 'cluster:\n  name: t\n  replicationFactr: 3\n' });
    expect(() => loadConfig(file, {})).toThrow(/cluster.*replicationFactr/);
  });

  it('(b) wrong type', () => {
    const file = base({ timing: 'timing:\n  heartbeatMs: fast\n' });
    expect(() => loadConfig(file, {})).toThrow(/timing\.heartbeatMs/);
  });

  it('(b2) out of range: limits.heapGrowingPercent', () => {
    expect(loadConfig(base(), {}).config.limits.heapGrowingPercent).toBe(30);
    const file = base({ limits: 'limits:\n  heapGrowingPercent: -5\n' });
    expect(() => loadConfig(file, {})).toThrow(/limits\.heapGrowingPercent/);
  });

  it('(c) cross-field: leaseMs must be below suspectAfterMs', () => {
    const file = base({ timing: 'timing:\n  heartbeatMs: 200\n  suspectAfterMs: 1000\n  leaseMs: 2000\n' });
    expect(() => loadConfig(file, {})).toThrow(/timing\.leaseMs: must be less than timing\.suspectAfterMs/);
  });

  it('(d) cross-field: minInSync above replicationFactor', () => {
    const file = base({ cluster: 'cluster:\n  replicationFactor: 3\n  minInSync: 4\n' });
    expect(() => loadConfig(file, {})).toThrow(/cluster\.minInSync/);
  });

  it('(e) bad node id', () => {
    const file = base({ node: 'node:\n  id: N1!\n' });
    expect(() => loadConfig(file, {})).toThrow(/node\.id/);
  });

  it('(f) invalid YAML names the line', () => {
    const file = write('node:\n  id: n1\n listen: [unclosed\n');
    expect(() => loadConfig(file, {})).toThrow(/invalid YAML at line \d+/);
    const dup = write('node:\n  id: n1\n  id: n2\n');
    expect(() => loadConfig(dup, {})).toThrow(/invalid YAML at line 3/);
  });

  it('(g) duplicate initialMembers ids', () => {
    const file = base({
      cluster:
        'cluster:\n  initialMembers:\n' +
        '    - { id: n1, peer: http://127.0.0.1:7380, client: http://127.0.0.1:7379 }\n' +
        '    - { id: n1, peer: http://127.0.0.1:7390, client: http://127.0.0.1:7389 }\n',
    });
    expect(() => loadConfig(file, {})).toThrow(/cluster\.initialMembers\.1\.id: duplicate member id n1/);
  });

  it('(h) non-loopback peer listen without a secret', () => {
    const file = base({ listen: 'listen:\n  client: 0.0.0.0:7379\n  peer: 0.0.0.0:7380\n' });
    expect(() => loadConfig(file, {})).toThrow(/listen\.peer.*not a loopback address.*secret/);
    // ... and with one it starts.
    expect(loadConfig(file, { RINGKV_CLUSTER_SECRET: 'sixteen-bytes-or-more' }).secret).toBe('sixteen-bytes-or-more');
  });

  it('(i) env override with a bad value names the field and the variable', () => {
    expect(() => loadConfig(base(), { RINGKV_TIMING_HEARTBEATMS: 'abc' })).toThrow(/timing\.heartbeatMs.*RINGKV_TIMING_HEARTBEATMS/);
    expect(() => loadConfig(base(), { RINGKV_TIMING_HEARTBEAT_MS: 'abc' })).toThrow(/timing\.heartbeatMs.*RINGKV_TIMING_HEARTBEAT_MS/);
  });

  it('(j) unknown RINGKV_ environment variable', () => {
    expect(() => loadConfig(base(), { RINGKV_TIMING_HEARTBEAT: '100' })).toThrow(/RINGKV_TIMING_HEARTBEAT\b/);
  });

  it('(k) a secret shorter than 16 bytes', () => {
    const secretFile = join(dir, 'short-secret');
    writeFileSync(secretFile, 'too-short\n');
    const file = base({ cluster: `cluster:\n  secretFile: ${secretFile}\n` });
    expect(() => loadConfig(file, {})).toThrow(/at least 16 bytes/);
    expect(() => loadConfig(base(), { RINGKV_CLUSTER_SECRET: 'too-short' })).toThrow(/at least 16 bytes/);
  });

  it('an unreadable secret file names cluster.secretFile', () => {
    const file = base({ cluster: `cluster:\n  secretFile: ${join(dir, 'no-such-file')}\n` });
    expect(() => loadConfig(file, {})).toThrow(/cluster\.secretFile: cannot read .*ENOENT/);
  });

  it('env overrides work in both spellings and win over the file', () => {
    const a = loadConfig(base(), { RINGKV_TIMING_HEARTBEATMS: '100', RINGKV_NODE_DATA_DIR: '/tmp/x', RINGKV_STORAGE_FSYNC: 'false' });
    expect(a.config.timing.heartbeatMs).toBe(100);
    expect(a.config.node.dataDir).toBe('/tmp/x');
    expect(a.config.storage.fsync).toBe(false);
    const members = '[{"id":"n1","peer":"http://127.0.0.1:7380","client":"http://127.0.0.1:7379"}]';
    const b = loadConfig(base(), { RINGKV_CLUSTER_INITIAL_MEMBERS: members });
    expect(b.config.cluster.initialMembers.map((m) => m.id)).toEqual(['n1']);
  });
});
