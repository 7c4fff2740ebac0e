// Real processes from `ringkv local` (3 and 5 nodes), a client workload (test/support/workload.ts:
// 8 clients, ~200 ops/s of put/get/cas, 1 s client timeout) and one fault per test:
//   (a) kill -9 of a node that is a replica, not the primary, of every workload key, then
//       a restart;
//   (b) SIGSTOP of the primary of some keys for 3 s (longer than its lease and the failure
//       detector), then SIGCONT: the deposed primary must not acknowledge anything late;
//   and with 5 nodes (RF 3): kill -9 of a node holding a copy, not the primary, of every
//   workload key, then a restart.
// After each: the history is linearizable (final strong reads included), no acknowledged
// write is lost, no version conflicts, and every copy is identical (digests per node per
// partition from stale reads).

import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster, allActive } from '../support/cluster.js';
import { formatCheckResult } from '../support/linearizability.js';
import { Workload, checkReplicas, pidOf, placement, sleep, versionConflicts } from '../support/workload.js';

const LEASE_MS = 800; // leaseTicks 16 x 50 ms (docs/replication.md)

/** `count` keys named `${prefix}-<i>` whose primary satisfies `pred`, in order. */
async function pickKeys(c: LocalCluster, prefix: string, count: number, pred: (primary: string) => boolean): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; out.size < count; i++) {
    if (i > 2000) throw new Error(`not enough keys for ${prefix}`);
    const key = `${prefix}-${i}`;
    const p = await placement(c, key);
    if (p.primary !== null && pred(p.primary)) out.set(key, p.primary);
  }
  return out;
}

async function healAndCheck(c: LocalCluster, w: Workload, label: string, extra: string) {
  const healStart = performance.now();
  try {
    for (const id of c.ids()) await c.waitFor(id, allActive(c.n), 30_000);
  } catch (e) {
    const file = join(tmpdir(), `ringkv-faults-${Date.now()}.log`);
    writeFileSync(file, c.logs());
    console.log(`${label}: ${w.summary()}; ${extra}; did not heal; node logs in ${file}`);
    throw e;
  }
  const healedMs = performance.now() - healStart;
  const finals = await w.finalReads();
  const lost = w.lostWrites(finals);
  const replicas = await checkReplicas(c, w.opts.keys, 10_000);
  const conflicts = await versionConflicts(c);
  const result = w.rec.check();
  console.log(
    `${label}: ${w.summary()}; ${extra}; all active ${healedMs.toFixed(0)} ms after the run; lost ${lost.length}; ` +
      `replicas identical: ${replicas.ok} (after ${replicas.attempts} attempt(s), ${replicas.elapsedMs.toFixed(0)} ms, ${Object.keys(replicas.digests).length} partitions); ` +
      `version conflicts ${JSON.stringify(conflicts)}; linearizable: ${result.ok}`,
  );
  if (lost.length > 0) console.log(lost);
  if (!replicas.ok) console.log(replicas.problems.slice(0, 20));
  if (result.ok !== true) console.log(formatCheckResult(result));
  expect(lost).toEqual([]);
  expect(result.ok).toBe(true);
  expect(replicas.problems).toEqual([]);
  expect(Object.values(conflicts)).toEqual(c.ids().map(() => 0));
  expect(w.stats.acked).toBeGreaterThan(10);
}

describe('faults under a put/get/cas workload (3 nodes, ringkv local)', () => {
  let c: LocalCluster;
  beforeAll(async () => {
    c = await LocalCluster.start(3);
    await c.waitFor('n1', allActive(3), 10_000);
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('(a) kill -9 of a replica, then restart: nothing lost, linearizable, identical replicas', { timeout: 60_000 }, async () => {
    const victim = 'n3';
    const keys = await pickKeys(c, 'fa', 20, (p) => p !== victim);
    const w = new Workload(c, { keys: [...keys.keys()], durationMs: 8000 });
    let killedAt = 0;
    const chaos = async () => {
      await sleep(2000);
      c.kill9(victim);
      killedAt = performance.now();
      await sleep(2500);
      await c.restart(victim);
    };
    await Promise.all([w.run(), chaos()]);
    // Write availability around the kill: the longest gap between acknowledged writes after it.
    const acks = w.meta.filter((m) => m.kind !== 'get' && m.ret !== null && (m.status === 200 || m.status === 201) && m.ret > killedAt).map((m) => m.ret!);
    acks.sort((a, b) => a - b);
    let gap = acks.length > 0 ? acks[0]! - killedAt : Infinity;
    for (let i = 1; i < acks.length; i++) gap = Math.max(gap, acks[i]! - acks[i - 1]!);
    await healAndCheck(c, w, `faults (a): killed replica ${victim}`, `longest write gap after the kill ${gap.toFixed(0)} ms`);
  });

  it('(b) SIGSTOP of a primary for 3 s: no late ack from the deposed primary, linearizable, identical replicas', { timeout: 60_000 }, async () => {
    // The victim: a node not restarted by (a), primary of half of the keys.
    const victim = 'n1';
    const mine = await pickKeys(c, 'fb-v', 10, (p) => p === victim);
    const others = await pickKeys(c, 'fb-o', 10, (p) => p !== victim);
    const victimKeys = new Set(mine.keys());
    const pid = pidOf(c, victim);
    const w = new Workload(c, { keys: [...mine.keys(), ...others.keys()], durationMs: 9000 });
    let stopAt = Infinity;
    let contAt = Infinity;
    const chaos = async () => {
      await sleep(2000);
      process.kill(pid, 'SIGSTOP');
      stopAt = performance.now();
      await sleep(3000);
      process.kill(pid, 'SIGCONT');
      contAt = performance.now();
    };
    try {
      await Promise.all([w.run(), chaos()]);
    } finally {
      if (contAt === Infinity) process.kill(pid, 'SIGCONT');
    }
    // The deposed primary acknowledges nothing once its lease has run out: no 2xx served by
    // it that came back later than a lease after the stop for a request sent before SIGCONT.
    const late = w.meta.filter((m) => m.servedBy === victim && m.status !== null && m.status < 300 && m.ret !== null && m.ret > stopAt + LEASE_MS && m.call < contAt);
    // Failover during the pause: first acknowledged write on the victim's keys after the stop.
    const resumed = w.meta
      .filter((m) => victimKeys.has(m.key) && m.kind !== 'get' && (m.status === 200 || m.status === 201) && m.call > stopAt && m.ret !== null)
      .map((m) => m.ret!)
      .sort((a, b) => a - b)[0];
    const resumedMs = resumed === undefined ? Infinity : resumed - stopAt;
    const servedDuringPause = new Set(w.meta.filter((m) => victimKeys.has(m.key) && m.status === 200 && m.ret !== null && m.ret > stopAt && m.ret < contAt).map((m) => m.servedBy));
    await healAndCheck(
      c,
      w,
      `faults (b): paused primary ${victim} (pid ${pid}, primary of ${victimKeys.size}/20 keys) for ${(contAt - stopAt).toFixed(0)} ms`,
      `late acks by the deposed primary ${late.length}; writes on its keys resumed ${resumedMs.toFixed(0)} ms after SIGSTOP, served by ${JSON.stringify([...servedDuringPause])}`,
    );
    expect(late).toEqual([]);
  });
});

describe('faults under a put/get/cas workload (5 nodes, ringkv local)', () => {
  let c: LocalCluster;
  beforeAll(async () => {
    c = await LocalCluster.start(5);
    await c.waitFor('n1', allActive(5), 20_000);
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('kill -9 of a replica of every key, then restart: nothing lost, linearizable, identical replicas', { timeout: 60_000 }, async () => {
    // RF 3 of 5: the keys are those the victim holds a copy of without being their primary.
    const victim = 'n5';
    const keys: string[] = [];
    for (let i = 0; keys.length < 20; i++) {
      if (i > 2000) throw new Error('not enough keys');
      const p = await placement(c, `f5-${i}`);
      if (p.primary !== victim && p.replicas.includes(victim)) keys.push(`f5-${i}`);
    }
    const w = new Workload(c, { keys, durationMs: 7000 });
    const chaos = async () => {
      await sleep(2000);
      c.kill9(victim);
      await sleep(2000);
      await c.restart(victim);
    };
    await Promise.all([w.run(), chaos()]);
    await healAndCheck(c, w, `faults 5 nodes: killed replica ${victim}`, `${keys.length} keys`);
  });
});
