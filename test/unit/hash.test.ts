import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  hash64,
  hash64Bytes,
  hashHex,
  partitionOf,
  partitionOfHash,
  partitionOfParts,
  partitionStart,
  PARTITIONS_MAX,
} from '../../src/core/hash.js';
import { partitionId } from '../../src/core/types.js';

// The golden vectors of docs/hashing.md. They pin the hash for clients in other languages:
// if one of these changes, every key in every cluster moves.
const GOLDEN: readonly { input: string; fnv1a: string; hex: string; partition128: number }[] = [
  { input: '', fnv1a: 'cbf29ce484222325', hex: 'efd01f60ba992926', partition128: 119 },
  { input: 'a', fnv1a: 'af63dc4c8601ec8c', hex: '82a2a958a9bece5b', partition128: 65 },
  { input: 'foo', fnv1a: 'dcb27518fed9d577', hex: 'af85ea5569581d4c', partition128: 87 },
  { input: 'user:42', fnv1a: '6c151ea4dcd221c2', hex: '998817bee6718248', partition128: 76 },
  { input: 'n1#0', fnv1a: '646136bb79c50fcb', hex: '888af6a8b08899c2', partition128: 68 },
  { input: 'ключ', fnv1a: '296130de6f5b7a81', hex: '590520d718275ed5', partition128: 44 },
  { input: '😀', fnv1a: 'feff073875020288', hex: 'da89b0991f06f386', partition128: 109 },
  { input: 'hello world', fnv1a: '779a65e7023cd2e7', hex: '7c6d8c019b6ee5d5', partition128: 62 },
];

const utf8 = new TextEncoder();
/** The BigInt reference over TextEncoder's bytes: what the fast path must equal. */
const reference = (s: string): bigint => hash64Bytes(utf8.encode(s));
const hex16 = (h: bigint): string => h.toString(16).padStart(16, '0');

// fmix64 is a bijection. Inverting it recovers the FNV-1a value, which is checked against
// published FNV vectors and the intermediate column of docs/hashing.md.
const M64 = (1n << 64n) - 1n;
const unXorShift33 = (h: bigint): bigint => h ^ (h >> 33n); // its own inverse, as 33 >= 32
const inverseMod64 = (c: bigint): bigint => {
  let x = c; // Newton's iteration for the inverse of an odd number mod 2^64
  for (let i = 0; i < 6; i++) x = (x * (2n - c * x)) & M64;
  return x;
};
function unmix(h: bigint): bigint {
  h = unXorShift33(h);
  h = (h * inverseMod64(0xc4ceb9fe1a85ec53n)) & M64;
  h = unXorShift33(h);
  h = (h * inverseMod64(0xff51afd7ed558ccdn)) & M64;
  return unXorShift33(h);
}

// Strings made of arbitrary UTF-16 code units, including lone surrogates, which UTF-8
// encoding (TextEncoder and the fast path alike) turns into U+FFFD.
const utf16Units = fc
  .array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 40 })
  .map((units) => String.fromCharCode(...units));
const anyString = fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ maxLength: 40 }), utf16Units);
const anyPartitions = fc.oneof(
  fc.constantFrom(1, 2, 3, 7, 64, 100, 128, 1000, 4096, PARTITIONS_MAX - 1, PARTITIONS_MAX),
  fc.integer({ min: 1, max: PARTITIONS_MAX }),
);

describe('hash64 golden vectors', () => {
  it.each(GOLDEN)('hash64($input) = $hex, partition $partition128 of 128', ({ input, hex, partition128 }) => {
    expect(hex16(reference(input))).toBe(hex);
    expect(hex16(hash64(input))).toBe(hex);
    expect(hashHex(input)).toBe(hex);
    expect(partitionOf(input, 128)).toBe(partition128);
  });

  it.each(GOLDEN)('fnv1a64($input) = $fnv1a before the finalizer', ({ input, fnv1a }) => {
    expect(hex16(unmix(reference(input)))).toBe(fnv1a);
  });

  it('uses standard FNV-1a 64 (published test vectors)', () => {
    const bytes = (s: string): Uint8Array => new Uint8Array([...s].map((c) => c.charCodeAt(0)));
    expect(unmix(hash64Bytes(bytes('')))).toBe(0xcbf29ce484222325n);
    expect(unmix(hash64Bytes(bytes('a')))).toBe(0xaf63dc4c8601ec8cn);
    expect(unmix(hash64Bytes(bytes('foobar')))).toBe(0x85944171f73967e8n);
  });

  it('hashes the UTF-8 bytes of the string', () => {
    expect(hash64('ключ')).toBe(reference('ключ'));
    expect(hash64('ключ')).toBe(hash64Bytes(new Uint8Array([0xd0, 0xba, 0xd0, 0xbb, 0xd1, 0x8e, 0xd1, 0x87])));
    expect(hash64('\ud800')).toBe(hash64('\ufffd'));
    expect(hashHex('\ud800x')).toBe(hashHex('\ufffdx'));
  });
});

describe('fast path agrees with the BigInt reference', () => {
  it('hash64(s) and hashHex(s) equal the reference over the UTF-8 bytes', () => {
    fc.assert(
      fc.property(anyString, (s) => {
        const h = reference(s);
        expect(hash64(s)).toBe(h);
        expect(hashHex(s)).toBe(hex16(h));
      }),
      { numRuns: 5000 },
    );
  });

  it('partitionOf(s, P) is floor(hash64(s) * P / 2^64)', () => {
    fc.assert(
      fc.property(anyString, anyPartitions, (s, P) => {
        expect(partitionOf(s, P)).toBe(partitionOfHash(reference(s), P));
      }),
      { numRuns: 5000 },
    );
  });

  it('agrees at the partition edges, where rounding would show', () => {
    // Keys whose hash lies just below or at a partition boundary are rare among random
    // strings, so test the fast formula on hashes placed there directly.
    const fast = (h: bigint, P: number): number => partitionOfParts(Number(h >> 32n), Number(h & 0xffffffffn), P);
    fc.assert(
      fc.property(anyPartitions, fc.nat(), fc.bigInt({ min: -2n, max: 2n }), (P, n, delta) => {
        const p = partitionId(n % P);
        const h = partitionStart(p, P) + delta;
        if (h < 0n || h >= 1n << 64n) return;
        expect(fast(h, P)).toBe(partitionOfHash(h, P));
      }),
      { numRuns: 5000 },
    );
  });

  it('partitionOf is always in [0, P)', () => {
    fc.assert(
      fc.property(anyString, anyPartitions, (s, P) => {
        const p = partitionOf(s, P);
        expect(Number.isInteger(p)).toBe(true);
        expect(p).toBeGreaterThanOrEqual(0);
        expect(p).toBeLessThan(P);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('partition boundaries', () => {
  it('partitionStart(p) is the smallest hash of partition p', () => {
    fc.assert(
      fc.property(anyPartitions, fc.nat(), (P, n) => {
        const p = partitionId(n % P);
        const start = partitionStart(p, P);
        expect(partitionOfHash(start, P)).toBe(p);
        if (p > 0) expect(partitionOfHash(start - 1n, P)).toBe(p - 1);
      }),
    );
    expect(partitionOfHash((1n << 64n) - 1n, 128)).toBe(127);
    expect(partitionOfHash(0n, 128)).toBe(0);
  });

  it('rejects a partition count it cannot compute exactly', () => {
    expect(() => partitionOf('k', 0)).toThrow();
    expect(() => partitionOf('k', PARTITIONS_MAX + 1)).toThrow();
    expect(() => partitionOf('k', 1.5)).toThrow();
  });
});

describe('long strings', () => {
  it('hash beyond the reused scratch buffer, and after it', () => {
    for (const n of [1023, 1024, 30_000, 100_000]) {
      const s = 'ж'.repeat(n) + '😀';
      expect(hash64(s)).toBe(reference(s));
      expect(hashHex('short')).toBe(hex16(reference('short')));
    }
  });
});
