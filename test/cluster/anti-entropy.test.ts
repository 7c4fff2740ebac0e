// Anti-entropy on real processes: a replica's store is damaged behind ringkv's back while
// the node is down (records deleted from its LMDB files, one restored to an older
// version). Its restart catches up by delta, which cannot see the damage: the copies
// differ. `ringkv repair` compares every partition's key ranges (digests of key + vector
// clock) and repairs them; afterwards every copy is identical, the repairs are counted in
// ringkv_repairs_total, and a second repair finds nothing to do.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/core/hash.js';
import { partitionId } from '../../src/core/types.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { allActive, LocalCluster } from '../support/cluster.js';
import { MAIN } from '../support/proc.js';
import { checkReplicas, metric, sleep } from '../support/workload.js';

const KEYS = Array.from({ length: 200 }, (_, i) => `ae-${i}`);

describe('anti-entropy (ringkv repair, real processes)', () => {
  let c: LocalCluster;
  beforeAll(async () => {
    c = await LocalCluster.start(3);
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('finds and repairs a damaged replica, and counts the repairs', { timeout: 120_000 }, async () => {
    const put = async (key: string, value: string) => {
      for (let attempt = 0; ; attempt++) {
        const r = await fetch(`${c.client(c.ids()[attempt % 3]!)}/v1/kv/${key}`, { method: 'PUT', body: value, signal: AbortSignal.timeout(3000) }).catch(() => null);
        if (r !== null && r.status < 300) return;
        if (attempt > 50) throw new Error(`put ${key}: ${r?.status}`);
        await sleep(100);
      }
    };
    for (const k of KEYS) await put(k, `one-${k}`);
    const victim = 'n3';
    c.kill9(victim);
    // While n3 is down: version two of 5 keys (n3 misses them and will catch up by delta).
    await c.waitFor('n1', (v) => v.members.find((m) => m.id === victim)?.status === 'down', 15_000);
    for (const k of KEYS.slice(0, 5)) await put(k, `two-${k}`);
    // Damage n3's store: 10 records gone; the first key holds a version older than its own.
    const store = new LmdbStore({ path: join(c.dir, victim, 'store'), fsync: true, mapSizeBytes: 8 * 1024 ** 3 });
    await store.write(KEYS.slice(10, 20).map((key) => ({ kind: 'remove' as const, partition: partitionId(partitionOf(key, 128)), key })));
    const p20 = partitionId(partitionOf(KEYS[20]!, 128));
    const own = store.get(p20, KEYS[20]!)!;
    // An older version of key 20: the empty clock is before every version written.
    await store.write([{ kind: 'put', partition: p20, key: KEYS[20]!, record: { ...own, clock: [], value: new TextEncoder().encode('stale') } }]);
    await store.close();

    await c.restart(victim);
    for (const id of c.ids()) await c.waitFor(id, allActive(3), 30_000);
    const damaged = await checkReplicas(c, KEYS, 0);
    expect(damaged.ok).toBe(false); // catch-up did not see the damage

    const run = () => spawnSync(process.execPath, [MAIN, 'repair', '--json', '--endpoints', c.client('n1')], { encoding: 'utf8', timeout: 150_000 });
    const first = run();
    expect(first.status, first.stderr).toBe(0);
    const out = JSON.parse(first.stdout) as { members: { node: string; repaired: number; complete: boolean }[]; repaired: number; complete: boolean };
    const healed = await checkReplicas(c, KEYS, 10_000);
    const counted = (await Promise.all(c.ids().map((id) => metric(c.client(id), 'ringkv_repairs_total')))).reduce((a, b) => a + b, 0);
    const second = run();
    const again = JSON.parse(second.stdout) as { repaired: number };
    console.log(
      `anti-entropy: damage seen before repair: ${damaged.problems.length} problems; repair: ${JSON.stringify(out.members)}; ` +
        `identical after: ${healed.ok}; ringkv_repairs_total ${counted}; second repair: ${again.repaired} repaired`,
    );
    expect(out.complete).toBe(true);
    expect(out.repaired).toBeGreaterThanOrEqual(11); // 10 lost records + 1 stale version
    expect(healed.ok).toBe(true);
    expect(counted).toBe(out.repaired);
    expect(second.status).toBe(0);
    expect(again.repaired).toBe(0);
  });
});
