import { errorOf, type Reply } from './http-client.js';

/** Exit codes: stable, documented in docs/cli.md. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

export function print(x: unknown): void {
  process.stdout.write((typeof x === 'string' ? x : JSON.stringify(x)) + '\n');
}

export function failed(r: Reply, json: boolean): number {
  const e = errorOf(r);
  if (json) print({ error: e, status: r.status });
  else process.stderr.write(`error: ${e.code} (${r.status}): ${e.message}\n`);
  return EXIT.failed;
}

