// Real ringkv processes for tests: spawn `ringkv serve` from dist/, wait for readiness,
// kill -9 them. Ports are picked free below the ephemeral range (see TEST_PORT_MIN).

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/**
 * Tests listen on ports below Linux's ephemeral range (32768-60999 by default). A port in
 * that range can be taken by an outgoing connection while a killed node is down, and its
 * restart on the same port then fails with EADDRINUSE.
 */
export const TEST_PORT_MIN = 20_000;
export const TEST_PORT_MAX = 32_000;

export async function portFree(port: number): Promise<boolean> {
  const srv = createServer();
  return new Promise((done) => {
    srv.once('error', () => done(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => done(true)));
  });
}

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = TEST_PORT_MIN + Math.floor(Math.random() * (TEST_PORT_MAX - TEST_PORT_MIN));
    if (await portFree(port)) return port;
  }
  throw new Error(`no free port in ${TEST_PORT_MIN}..${TEST_PORT_MAX}`);
}

export interface NodeProc {
  child: ChildProcess;
  /** Everything the process wrote to stderr and stdout so far. */
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnRingkv(args: string[], env: Record<string, string>): NodeProc {
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { ...process.env, ...env, RINGKV_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  return { child, output: () => out, exited };
}

export async function waitReady(baseUrl: string, proc?: NodeProc, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(`${baseUrl}/readyz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    if (proc && proc.child.exitCode !== null) throw new Error(`node exited early:\n${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`${baseUrl} not ready after ${timeoutMs} ms\n${proc?.output() ?? ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function kill9(proc: NodeProc): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGKILL');
  await proc.exited;
}
