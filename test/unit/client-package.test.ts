// `ringkv/client` is the package's public entry point: package.json "exports" maps it to
// dist/client/index.js with its declarations, and the package resolves it by name from
// inside itself (self-reference), as an installed copy would. Needs `npm run build`.

import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as {
  name: string;
  bin: Record<string, string>;
  exports: Record<string, { types: string; default: string } | string>;
};

describe('package exports', () => {
  it('maps ringkv/client (and the package root) to the built client and its declarations', () => {
    for (const subpath of ['.', './client']) {
      expect(pkg.exports[subpath]).toEqual({ types: './dist/client/index.d.ts', default: './dist/client/index.js' });
    }
    expect(existsSync(`${root}dist/client/index.js`)).toBe(true);
    expect(readFileSync(`${root}dist/client/index.d.ts`, 'utf8')).toMatch(/RingkvClient/);
    expect(pkg.bin.ringkv).toBe('dist/cli/main.js');
  });

  it('resolves ringkv/client by package self-reference in vitest', async () => {
    const mod = await import('ringkv/client');
    expect(typeof mod.RingkvClient).toBe('function');
    expect(new mod.RingkvError('not_found', 'm', 404).code).toBe('not_found');
  });

  it('resolves ringkv/client and ringkv in plain Node, and nothing that is not exported', async () => {
    const script = `
      const m = await import('ringkv/client');
      const root = await import('ringkv');
      let deep = 'resolved';
      try { await import('ringkv/dist/cli/main.js'); } catch (e) { deep = e.code; }
      const c = new m.RingkvClient({ endpoints: ['http://127.0.0.1:1'] });
      await c.close();
      console.log(JSON.stringify({ client: typeof m.RingkvClient, same: root.RingkvClient === m.RingkvClient, deep }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: root });
    expect(JSON.parse(stdout)).toEqual({ client: 'function', same: true, deep: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
  });
});
