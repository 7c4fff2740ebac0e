// Loads a node's config: YAML file, then RINGKV_* environment overrides, then the zod
// schema. Any problem stops the start with a message naming the field and the problem.

import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { hostname } from 'node:os';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Environment variables with the RINGKV_ prefix that are not config fields. */
const NON_CONFIG_ENV = new Set(['RINGKV_CLUSTER_SECRET', 'RINGKV_ENDPOINTS', 'RINGKV_TOKEN', 'RINGKV_CONFIG']);

export interface LoadedConfig {
  config: Config;
  /** The peer secret, from cluster.secretFile or RINGKV_CLUSTER_SECRET; null when neither is set. */
  secret: string | null;
  /** Resolved advertise URLs (defaults derived from listen addresses). */
  advertise: { client: string; peer: string };
}

export const SECRET_BYTES_MIN = 16;

export function loadConfig(file: string | null, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let raw: unknown = {};
  if (file !== null) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    try {
      raw = parseYaml(text, { uniqueKeys: true }) ?? {};
    } catch (e) {
      const where = e instanceof YAMLParseError && e.linePos ? ` at line ${e.linePos[0].line}` : '';
      const first = (e as Error).message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      throw new ConfigError(`${file}: invalid YAML${where}: ${first}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new ConfigError(`${file}: must be a YAML mapping at the top level`);
    }
  }
  const fromEnv = new Map<string, string>(); // dotted path -> env var name, for messages
  raw = applyEnv(raw as Record<string, unknown>, env, fromEnv);
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const path = i.path.join('.');
      const src = fromEnv.get(path) ?? fromEnv.get(String(i.path[0]) + '.' + String(i.path[1]));
      return `  ${path || '(top level)'}: ${i.message}${src ? ` (from ${src})` : ''}`;
    });
    throw new ConfigError(`invalid config${file ? ` in ${file}` : ''}:\n${lines.join('\n')}`);
  }
  const config = parsed.data;
  const secret = readSecret(config, env);
  const advertise = {
    client: config.advertise.client ?? urlFor(config.listen.client),
    peer: config.advertise.peer ?? urlFor(config.listen.peer),
  };
  if (secret === null && !isLoopback(config.listen.peer)) {
    throw new ConfigError(
      `listen.peer: ${config.listen.peer} is not a loopback address, so the peer API needs a secret: set cluster.secretFile or RINGKV_CLUSTER_SECRET`,
    );
  }
  return { config, secret, advertise };
}

function readSecret(config: Config, env: NodeJS.ProcessEnv): string | null {
  let secret: string | null = null;
  let source = 'cluster.secretFile';
  if (config.cluster.secretFile !== null) {
    try {
      secret = readFileSync(config.cluster.secretFile, 'utf8').trim();
    } catch (e) {
      throw new ConfigError(`cluster.secretFile: cannot read ${config.cluster.secretFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  } else if (env.RINGKV_CLUSTER_SECRET !== undefined && env.RINGKV_CLUSTER_SECRET !== '') {
    secret = env.RINGKV_CLUSTER_SECRET.trim();
    source = 'RINGKV_CLUSTER_SECRET';
  }
  if (secret !== null && Buffer.byteLength(secret) < SECRET_BYTES_MIN) {
    throw new ConfigError(`${source}: the cluster secret must be at least ${SECRET_BYTES_MIN} bytes`);
  }
  return secret;
}

export function splitHostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) };
}

function isLoopback(addr: string): boolean {
  const { host } = splitHostPort(addr);
  if (host === 'localhost') return true;
  if (isIPv4(host)) return host.startsWith('127.');
  if (isIPv6(host)) return host === '::1' || /^::ffff:127\./i.test(host);
  return false; // any other name may resolve anywhere
}

function urlFor(addr: string): string {
  const { host, port } = splitHostPort(addr);
  const h = host === '0.0.0.0' || host === '::' ? hostname() : host.includes(':') ? `[${host}]` : host;
  return `http://${h}:${port}`;
}

// ---- environment overrides ----

/** Leaf paths of the config, from the schema's defaults plus the optional fields. */
function leafPaths(): { path: string[]; sample: unknown }[] {
  const defaults = configSchema.parse({ cluster: { initialMembers: [] } }) as unknown as Record<string, Record<string, unknown>>;
  const out: { path: string[]; sample: unknown }[] = [];
  for (const [section, fields] of Object.entries(defaults)) {
    for (const [field, value] of Object.entries(fields)) out.push({ path: [section, field], sample: value });
  }
  out.push({ path: ['advertise', 'client'], sample: '' }, { path: ['advertise', 'peer'], sample: '' });
  return out;
}

const camelToSnake = (s: string): string => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2');

function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, fromEnv: Map<string, string>): Record<string, unknown> {
  const byName = new Map<string, { path: string[]; sample: unknown }>();
  for (const leaf of leafPaths()) {
    byName.set(`RINGKV_${leaf.path.map((p) => p.toUpperCase()).join('_')}`, leaf);
    byName.set(`RINGKV_${leaf.path.map((p) => camelToSnake(p).toUpperCase()).join('_')}`, leaf);
  }
  const out: Record<string, unknown> = structuredClone(raw);
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('RINGKV_') || value === undefined || NON_CONFIG_ENV.has(name)) continue;
    const leaf = byName.get(name);
    if (!leaf) throw new ConfigError(`unknown environment variable ${name}: no such config field`);
    const [section, field] = leaf.path as [string, string];
    const sec = out[section];
    if (sec !== undefined && (typeof sec !== 'object' || sec === null || Array.isArray(sec))) {
      throw new ConfigError(`${section}: must be a mapping (the file has ${JSON.stringify(sec)}); ${name} cannot be applied to it`);
    }
    const target = (sec ?? {}) as Record<string, unknown>;
    target[field] = coerce(value, leaf.sample, name);
    out[section] = target;
    fromEnv.set(`${section}.${field}`, name);
  }
  return out;
}

function coerce(value: string, sample: unknown, name: string): unknown {
  const v = value.trim();
  if (v.startsWith('[') || v.startsWith('{')) {
    try {
      return JSON.parse(v) as unknown;
    } catch {
      throw new ConfigError(`${name}: not valid JSON`);
    }
  }
  if (v === 'null' && sample === null) return null;
  if (typeof sample === 'number') return v === '' || Number.isNaN(Number(v)) ? v : Number(v);
  if (typeof sample === 'boolean') return v === 'true' ? true : v === 'false' ? false : v;
  return v;
}
