import type { ScanOptions } from './store.js';

/** Where key stands relative to a scan that walks keys in ascending order. */
export function inRange(key: string, opts: ScanOptions): 'take' | 'skip' | 'stop' {
  if (!key.startsWith(opts.prefix)) return compareUtf8(key, opts.prefix) < 0 ? 'skip' : 'stop';
  if (opts.after !== '' && compareUtf8(key, opts.after) <= 0) return 'skip';
  return 'take';
}

/** Compares strings in UTF-8 byte order (= code point order), the order lmdb keeps keys
 *  in. JavaScript's `<` compares UTF-16 code units, which differs above U+FFFF. */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}
