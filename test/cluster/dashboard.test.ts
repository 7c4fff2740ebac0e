// The live views against a real three-node cluster: the dashboard (GET /ui) in headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no browser is
// downloaded) and `ringkv cluster status --watch --json`. kill -9 n1, a primary of some
// partitions: within 3 s its tile must turn `down` and no partition may keep it as
// primary, and the watch must see the same. Then kill n2, the node both are connected to:
// both must go on with n3. With UPDATE_SCREENSHOTS=1 the screenshot taken after the
// failover becomes docs/img/dashboard.png; otherwise it goes to a temporary directory.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../support/cluster.js';
import { spawnRingkv, type NodeProc } from '../support/proc.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SCREENSHOT = process.env.UPDATE_SCREENSHOTS === '1' ? fileURLToPath(new URL('../../docs/img/dashboard.png', import.meta.url)) : null;

let c: LocalCluster;
let browser: Browser;
let page: Page;
let scratch: string;
let traffic: { stop: () => Promise<void> } | null = null;
let watch: NodeProc;

/** The events `cluster status --watch --json` printed so far. */
const watched = (): { event: string; data: Record<string, unknown>; endpoint: string }[] =>
  watch
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { event: string; data: Record<string, unknown>; endpoint: string });

async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms; watch output:\n${watch.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A few requests a second through n2, so that the page's rates show something. */
function startTraffic(base: string): { stop: () => Promise<void> } {
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const key = `dashboard-${i % 20}`;
      await fetch(`${base}/v1/kv/${key}`, { method: i % 3 === 0 ? 'PUT' : 'GET', body: i % 3 === 0 ? `v${i}` : undefined, signal: AbortSignal.timeout(2000) }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 40));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)`);
  scratch = mkdtempSync(join(tmpdir(), 'ringkv-dashboard-'));
  c = await LocalCluster.start(3);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  watch = spawnRingkv(['cluster', 'status', '--watch', '--json', '--endpoints', `${c.client('n2')},${c.client('n3')}`], {});
});

afterAll(async () => {
  watch?.child.kill('SIGKILL');
  await traffic?.stop();
  await browser?.close();
  await c?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('live views', () => {
  it('shows a kill -9 of a primary: its tile goes down and its partitions get new primaries within 3 s', async () => {
    await page.goto(`${c.client('n2')}/ui`);
    for (const id of ['n1', 'n2', 'n3']) await page.waitForSelector(`[data-node="${id}"][data-status="active"]`, { timeout: 10_000 });
    expect(await page.locator('[data-partition]').count()).toBe(128);
    const ledByN1 = await page.locator('[data-primary="n1"]').count();
    expect(ledByN1).toBeGreaterThan(0);
    expect(await page.locator('#ring .token').count()).toBe(3 * 64);
    await until(() => watched().some((e) => e.event === 'snapshot'), 5000, 'no snapshot from the watch');
    traffic = startTraffic(c.client('n2'));
    await page.locator('#requests-rate', { hasText: /^[1-9]/ }).waitFor({ timeout: 5000 });

    const killed = Date.now();
    c.kill9('n1');
    await page.waitForSelector('[data-node="n1"][data-status="down"]', { timeout: 3000 });
    const downAfter = Date.now() - killed;
    const left = Math.max(1, 3000 - downAfter);
    await page.locator('[data-primary="n1"]').first().waitFor({ state: 'detached', timeout: left });
    expect(Date.now() - killed).toBeLessThan(3000);
    // Every partition n1 led went to a surviving member, and the log says so.
    expect(await page.locator('[data-primary="n2"], [data-primary="n3"]').count()).toBe(128);
    await page.waitForSelector('#log li[data-kind="failover"]', { timeout: 1000 });
    expect(await page.locator('#log li[data-kind="epoch"] .text').first().textContent()).toMatch(/n1 active → down/);
    // The watch saw the same, as documented events.
    await until(() => watched().filter((e) => e.event === 'primary').length === ledByN1, 2000, `not ${ledByN1} primary events`);
    const epoch = watched().find((e) => e.event === 'epoch')!;
    expect(epoch.data.changes).toEqual([{ id: 'n1', from: 'active', to: 'down' }]);
    for (const e of watched().filter((x) => x.event === 'primary')) expect(e.data).toMatchObject({ old: 'n1', failover: true, epoch: epoch.data.epoch });

    // Let the rates show the failover, then keep the picture.
    await page.waitForTimeout(2500);
    const shot = SCREENSHOT ?? join(scratch, 'dashboard.png');
    mkdirSync(join(shot, '..'), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    await traffic.stop();
    traffic = null;
  });

  it('goes on with another member when the node serving the page dies', async () => {
    c.kill9('n2');
    await page.locator('#connection-text', { hasText: /^live · n3 at / }).waitFor({ timeout: 10_000 });
    expect(await page.locator('#log li[data-kind="connection"] .text').first().textContent()).toMatch(/^connected to 127\.0\.0\.1:\d+$/);
    expect(await page.locator('[data-node]').count()).toBe(3);
    await until(() => watched().some((e) => e.event === 'snapshot' && e.data.self === 'n3'), 10_000, 'the watch did not go on with n3');
    expect(watched().find((e) => e.event === 'snapshot' && e.data.self === 'n3')!.endpoint).toBe(c.client('n3'));
    // Ctrl-C ends the watch with exit code 0.
    watch.child.kill('SIGINT');
    expect(await watch.exited).toEqual({ code: 0, signal: null });
  });
});
