#!/usr/bin/env node
// ringkv: the daemon (`serve`, `local`) and its command-line client.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { RingkvError, type PutOptions, type RingkvClient } from '../client/index.js';
import { call, cliClient, encodeKey, endpointsFrom } from './http-client.js';
import { EXIT, failed, print } from './output.js';


class UsageError extends Error {}

const USAGE = `ringkv — a replicated, partitioned key-value store

Usage:
  ringkv serve --config FILE [--log-format json|pretty] [--log-level LEVEL]
  ringkv local [--nodes N] [--base-port PORT] [--data DIR]   run N local nodes (127.0.0.1)
  ringkv put KEY [VALUE]          store VALUE (or stdin when VALUE is omitted or -)
        [--if-match VERSION] [--create-only]
  ringkv get KEY [--stale]        print the value
  ringkv del KEY [--if-match VERSION]
  ringkv cas KEY VERSION VALUE    put only if the current version is VERSION
  ringkv list [--prefix P] [--limit N] [--all]
  ringkv placement KEY            where KEY lives: partition, primary, replicas
  ringkv cluster status [--watch] members, status, heartbeat age, epoch, leader (--watch: live)
  ringkv cluster add --id ID --peer URL --client URL
  ringkv cluster remove ID         decommission ID (its partitions move first), or cancel its add
  ringkv repair                   anti-entropy now: every primary compares its partitions with its replicas
  ringkv bench [options]          load generator (see ringkv bench --help)

Client options:
  --endpoints URL[,URL...]        nodes to talk to (env RINGKV_ENDPOINTS; default http://127.0.0.1:7379)
  --json                          machine-readable output
  --timeout-ms N                  per-request timeout (default 10000)
  --token TOKEN                   bearer token (env RINGKV_TOKEN)

Exit codes: 0 ok, 1 the request failed (not found, precondition failed, ...), 2 usage, 3 no endpoint reachable.`;

const CLIENT_OPTIONS = {
  endpoints: { type: 'string' },
  json: { type: 'boolean', default: false },
  'timeout-ms': { type: 'string' },
  token: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return cmd === undefined ? EXIT.usage : EXIT.ok;
    case 'serve':
      return (await import('./serve.js')).serve(rest);
    case 'local':
      return (await import('./local.js')).local(rest);
    case 'bench':
      return (await import('./bench.js')).bench(rest);
    case 'put':
    case 'get':
    case 'del':
    case 'delete':
    case 'cas':
    case 'list':
    case 'placement':
    case 'cluster':
    case 'repair':
      return clientCommand(cmd, rest);
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

async function clientCommand(cmd: string, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...CLIENT_OPTIONS,
      'if-match': { type: 'string' },
      'create-only': { type: 'boolean', default: false },
      stale: { type: 'boolean', default: false },
      prefix: { type: 'string', default: '' },
      limit: { type: 'string' },
      all: { type: 'boolean', default: false },
      id: { type: 'string' },
      peer: { type: 'string' },
      client: { type: 'string' },
      watch: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return EXIT.ok;
  }
  const endpoints = endpointsFrom(values.endpoints);
  if (endpoints.length === 0) throw new UsageError('--endpoints is empty');
  for (const e of endpoints) {
    if (!/^https?:\/\/[^/]+$/.test(e)) throw new UsageError(`endpoint ${JSON.stringify(e)} must look like http://host:port`);
  }
  const timeoutMs = values['timeout-ms'] === undefined ? 10_000 : positiveInt(values['timeout-ms'], '--timeout-ms');
  const token = values.token ?? process.env.RINGKV_TOKEN;
  const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const json = values.json;
  const need = (n: number, names: string): string[] => {
    if (positionals.length !== n) throw new UsageError(`${cmd} takes ${names}`);
    return positionals;
  };

  switch (cmd) {
    case 'put':
    case 'cas':
    case 'get':
    case 'del':
    case 'delete':
    case 'list': {
      const kv = cliClient(endpoints, { token: token || undefined, timeoutMs });
      try {
        return await kvCommand(kv, cmd, values, positionals, need);
      } catch (e) {
        // A request that failed with an error to report (the server's, or outcome_unknown);
        // unreachable and deadline_exceeded go up to exit 3.
        if (e instanceof RingkvError && !noEndpointAnswered(e)) return failedWith(e, json);
        throw e;
      } finally {
        await kv.close();
      }
    }
    case 'placement': {
      const [key] = need(1, 'KEY');
      const r = await call(endpoints, 'GET', `/v1/placement/${encodeKey(key!)}`, { headers: auth, timeoutMs });
      if (r.status >= 300) return failed(r, json);
      const p = JSON.parse(r.body.toString('utf8')) as { partition: number; primary: string | null; replicas: string[]; epoch: number };
      print(json ? p : `partition ${p.partition}  primary ${p.primary ?? '(none)'}  replicas ${p.replicas.join(',') || '(none)'}  epoch ${p.epoch}`);
      return EXIT.ok;
    }
    case 'repair': {
      // Every active member runs a pass on the partitions it leads; report each and the total.
      const r = await call(endpoints, 'GET', '/v1/cluster', { headers: auth, timeoutMs });
      if (r.status >= 300) return failed(r, json);
      const view = JSON.parse(r.body.toString('utf8')) as { members: { id: string; clientUrl: string; status: string }[] };
      const results: { node: string; partitions: number; compared: number; repaired: number; complete: boolean }[] = [];
      for (const m of view.members.filter((x) => x.status === 'active')) {
        const one = await call([m.clientUrl], 'POST', '/v1/cluster/repair', { headers: auth, timeoutMs: Math.max(timeoutMs ?? 0, 130_000) });
        if (one.status >= 300) return failed(one, json);
        const res = JSON.parse(one.body.toString('utf8')) as (typeof results)[number];
        results.push(res);
        if (!json) print(`${res.node}: ${res.compared}/${res.partitions} partitions compared with their replicas, ${res.repaired} records repaired${res.complete ? '' : ' (timed out)'}`);
      }
      const repaired = results.reduce((a, x) => a + x.repaired, 0);
      const complete = results.every((x) => x.complete);
      print(json ? { members: results, repaired, complete } : `total: ${repaired} records repaired${complete ? '' : '; some passes did not finish'}`);
      return complete ? EXIT.ok : EXIT.failed;
    }
    case 'cluster': {
      const [sub, ...more] = positionals;
      if (sub === 'status') {
        const status = await import('./cluster-status.js');
        return values.watch ? status.watchClusterStatus(endpoints, auth, json, timeoutMs) : status.clusterStatus(endpoints, auth, json, timeoutMs);
      }
      if (sub === 'add') {
        if (!values.id || !values.peer || !values.client) throw new UsageError('cluster add needs --id, --peer and --client');
        const body = JSON.stringify({ id: values.id, peer: values.peer, client: values.client });
        const r = await call(endpoints, 'POST', '/v1/cluster/members', { body, headers: { ...auth, 'content-type': 'application/json' }, timeoutMs });
        if (r.status >= 300) return failed(r, json);
        const out = JSON.parse(r.body.toString('utf8')) as { epoch: number };
        print(json ? out : `added ${values.id} (joining) in epoch ${out.epoch}`);
        return EXIT.ok;
      }
      if (sub === 'remove') {
        if (more.length !== 1) throw new UsageError('cluster remove takes ID');
        const r = await call(endpoints, 'DELETE', `/v1/cluster/members/${encodeKey(more[0]!)}`, { headers: auth, timeoutMs });
        if (r.status >= 300) return failed(r, json);
        const out = JSON.parse(r.body.toString('utf8')) as { epoch: number };
        print(json ? out : `${more[0]}: removal started in epoch ${out.epoch}; an owner's partitions move to the other members first (watch: ringkv cluster status)`);
        return EXIT.ok;
      }
      throw new UsageError('cluster takes: status | add | remove');
    }
  }
  throw new UsageError(`unknown command ${cmd}`);
}

/** The flags of the kv commands (a subset of clientCommand's options). */
interface KvFlags {
  readonly json: boolean;
  readonly 'if-match'?: string | undefined;
  readonly 'create-only': boolean;
  readonly stale: boolean;
  readonly prefix: string;
  readonly limit?: string | undefined;
  readonly all: boolean;
}

/** put, cas, get, del and list through the client library; failures reject with RingkvError. */
async function kvCommand(kv: RingkvClient, cmd: string, flags: KvFlags, positionals: string[], need: (n: number, names: string) => string[]): Promise<number> {
  const json = flags.json;
  switch (cmd) {
    case 'put':
    case 'cas': {
      let key: string;
      let value: Buffer;
      let opts: PutOptions;
      if (cmd === 'cas') {
        const [k, version, v] = need(3, 'KEY VERSION VALUE');
        key = k!;
        value = Buffer.from(v!);
        opts = { ifMatch: version! };
      } else {
        if (positionals.length < 1 || positionals.length > 2) throw new UsageError('put takes KEY [VALUE]');
        key = positionals[0]!;
        const v = positionals[1];
        value = v === undefined || v === '-' ? readFileSync(0) : Buffer.from(v);
        opts = { ifMatch: flags['if-match'], ifNoneMatch: flags['create-only'] ? '*' : undefined };
      }
      const r = await kv.put(key, value, opts);
      if (json) print({ key: r.key, version: r.version, created: r.created, node: r.node ?? undefined });
      else print(`${r.created ? 'created' : 'updated'} ${key} version ${r.version}`);
      return EXIT.ok;
    }
    case 'get': {
      const [key] = need(1, 'KEY');
      const r = await kv.get(key!, flags.stale ? { consistency: 'stale' } : {});
      if (r === null) throw notFound(key!);
      if (json) {
        const text = r.value.toString('utf8');
        const isText = Buffer.from(text, 'utf8').equals(r.value);
        print({ key, version: r.version, node: r.node ?? undefined, ...(isText ? { value: text } : { valueBase64: r.value.toString('base64') }) });
      } else {
        process.stdout.write(r.value);
        if (process.stdout.isTTY) process.stdout.write('\n');
      }
      return EXIT.ok;
    }
    case 'del':
    case 'delete': {
      const [key] = need(1, 'KEY');
      const r = await kv.delete(key!, { ifMatch: flags['if-match'] });
      if (!r.deleted) throw notFound(key!);
      print(json ? { key, deleted: true } : `deleted ${key}`);
      return EXIT.ok;
    }
    case 'list': {
      need(0, 'no positional arguments');
      const limit = flags.limit === undefined ? undefined : positiveInt(flags.limit, '--limit');
      let cursor: string | null = null;
      const keys: string[] = [];
      for await (const page of kv.pages({ prefix: flags.prefix, limit })) {
        if (json) keys.push(...page.keys);
        else for (const k of page.keys) print(k);
        cursor = page.cursor;
        if (!flags.all) break;
      }
      if (json) print({ keys, cursor });
      else if (cursor !== null) process.stderr.write(`(more keys follow; use --all, or --limit)\n`);
      return EXIT.ok;
    }
  }
  throw new UsageError(`unknown command ${cmd}`);
}

/** What the server says for a missing key: the client library returns null or deleted: false instead. */
const notFound = (key: string): RingkvError => new RingkvError('not_found', `key ${JSON.stringify(key)} not found`, 404);

/** No node answered: exit 3 rather than 1. */
const noEndpointAnswered = (e: RingkvError): boolean => e.code === 'unreachable' || e.code === 'deadline_exceeded';

/** Like output.ts's `failed`, for an error from the client library. */
function failedWith(e: RingkvError, json: boolean): number {
  if (json) print({ error: { code: e.code, message: e.message }, status: e.status });
  else process.stderr.write(`error: ${e.code}${e.status === null ? '' : ` (${e.status})`}: ${e.message}\n`);
  return EXIT.failed;
}

function positiveInt(s: string, name: string): number {
  if (!/^\d+$/.test(s) || Number(s) < 1) throw new UsageError(`${name} must be a positive integer`);
  return Number(s);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`ringkv: ${(e as Error).message}\nRun 'ringkv --help' for usage.\n`);
      process.exitCode = EXIT.usage;
    } else if (e instanceof RingkvError) {
      process.stderr.write(`ringkv: ${noEndpointAnswered(e) ? '' : `${e.code}: `}${e.message}\n`);
      process.exitCode = noEndpointAnswered(e) ? EXIT.unreachable : EXIT.failed;
    } else {
      process.stderr.write(`ringkv: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = EXIT.failed;
    }
  },
);
