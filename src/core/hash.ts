// The one hash of ringkv: it places keys in partitions and virtual nodes on the ring, and
// it turns vector clocks into ETags. It is fixed and documented (docs/hashing.md) so that
// clients in other languages can route keys themselves; changing it re-homes every key.
//
//   hash64(bytes) = fmix64(fnv1a64(bytes))          all arithmetic mod 2^64
//
// fnv1a64 is FNV-1a 64-bit over the UTF-8 bytes of the string. FNV-1a alone has weak high
// bits for short, similar inputs ("n1#0", "n1#1", ...), and partitions are cut from the
// high bits, so MurmurHash3's 64-bit finalizer (fmix64) is applied to spread every input
// bit over the whole word.
//
// There are two implementations on purpose:
// - a BigInt reference (`hash64Bytes`, `partitionOfHash`), short and obviously equal to
//   the definition;
// - a fast path for strings (`hash64`, `partitionOf`, `hashHex`) in 32-bit halves with
//   Math.imul, which runs on every request. It encodes UTF-8 into a reused buffer, so a
//   call allocates nothing but its result. Tests check that both agree on many random
//   strings.

import { assert, partitionId, type PartitionId } from './types.js';

const MASK64 = (1n << 64n) - 1n;
const FNV_OFFSET_BASIS = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const FMIX_C1 = 0xff51afd7ed558ccdn;
const FMIX_C2 = 0xc4ceb9fe1a85ec53n;
const TWO_POW_32 = 4294967296;

/** Largest partition count for which `partitionOf`'s float arithmetic is exact. */
export const PARTITIONS_MAX = 2 ** 21;

// ---------------------------------------------------------------------------------------
// Reference implementation (BigInt).
// ---------------------------------------------------------------------------------------

/** hash64 of raw bytes: fmix64(fnv1a64(bytes)), as an unsigned 64-bit bigint. */
export function hash64Bytes(bytes: Uint8Array): bigint {
  let h = FNV_OFFSET_BASIS;
  for (const byte of bytes) {
    h ^= BigInt(byte);
    h = (h * FNV_PRIME) & MASK64;
  }
  h ^= h >> 33n;
  h = (h * FMIX_C1) & MASK64;
  h ^= h >> 33n;
  h = (h * FMIX_C2) & MASK64;
  h ^= h >> 33n;
  return h;
}

/** Reference: the partition of a 64-bit hash, floor(h * P / 2^64). */
export function partitionOfHash(h: bigint, partitions: number): PartitionId {
  assertPartitions(partitions);
  return partitionId(Number((h * BigInt(partitions)) >> 64n));
}

/**
 * The first hash of partition p: partition p covers [p*2^64/P, (p+1)*2^64/P), and the
 * smallest integer in it is ceil(p * 2^64 / P).
 */
export function partitionStart(p: PartitionId, partitions: number): bigint {
  assertPartitions(partitions);
  assert(Number.isInteger(p) && p >= 0 && p < partitions, `partition ${p} out of [0, ${partitions})`);
  const P = BigInt(partitions);
  return ((BigInt(p) << 64n) + P - 1n) / P;
}

function assertPartitions(partitions: number): void {
  assert(
    Number.isInteger(partitions) && partitions >= 1 && partitions <= PARTITIONS_MAX,
    `partitions must be an integer in [1, ${PARTITIONS_MAX}], got ${partitions}`,
  );
}

// ---------------------------------------------------------------------------------------
// Fast path (32-bit halves). The state is the 64-bit value hi * 2^32 + lo, both halves
// kept as unsigned 32-bit numbers. Results come back through `outHi`/`outLo` so that the
// per-request path allocates no objects. This module state is safe in the pure core:
// every function here is synchronous and leaves nothing behind that changes a result.
// ---------------------------------------------------------------------------------------

let outHi = 0;
let outLo = 0;

// FNV prime 0x100000001b3 = 2^40 + 0x1b3.
const FNV_PRIME_LOW = 0x1b3;
// fmix64 constants split into halves.
const C1_HI = 0xff51afd7;
const C1_LO = 0xed558ccd;
const C2_HI = 0xc4ceb9fe;
const C2_LO = 0x1a85ec53;

/** High 32 bits of the 64-bit product of two unsigned 32-bit numbers (16-bit splits). */
function mulHi32(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const mid1 = a1 * b0; // < 2^32, exact
  const mid2 = a0 * b1; // < 2^32, exact
  const carry = (((a0 * b0) >>> 16) + (mid1 & 0xffff) + (mid2 & 0xffff)) >>> 16;
  return (a1 * b1 + (mid1 >>> 16) + (mid2 >>> 16) + carry) >>> 0;
}

/** (hi, lo) * (cHi, cLo) mod 2^64, into outHi/outLo. */
function mul64(hi: number, lo: number, cHi: number, cLo: number): void {
  outHi = (mulHi32(lo, cLo) + Math.imul(lo, cHi) + Math.imul(hi, cLo)) >>> 0;
  outLo = Math.imul(lo, cLo) >>> 0;
}

// Scratch space for the UTF-8 bytes of the string being hashed, reused across calls. It
// grows up to scratchBytesMax (keys are far shorter: limits.keyBytesMax defaults to 512);
// a longer string gets a buffer of its own that is not kept.
const scratchBytesMax = 64 * 1024;
let scratch = new Uint8Array(1024);

/**
 * Writes the UTF-8 encoding of s into buf (at least 3 bytes per UTF-16 unit) and returns
 * its length. Identical to TextEncoder: a lone surrogate becomes U+FFFD.
 */
function encodeUtf8(s: string, buf: Uint8Array): number {
  const n = s.length;
  let len = 0;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      buf[len++] = c;
    } else if (c < 0x800) {
      buf[len++] = 0xc0 | (c >>> 6);
      buf[len++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < n ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
          buf[len++] = 0xf0 | (c >>> 18);
          buf[len++] = 0x80 | ((c >>> 12) & 0x3f);
          buf[len++] = 0x80 | ((c >>> 6) & 0x3f);
          buf[len++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd;
      }
      buf[len++] = 0xe0 | (c >>> 12);
      buf[len++] = 0x80 | ((c >>> 6) & 0x3f);
      buf[len++] = 0x80 | (c & 0x3f);
    }
  }
  return len;
}

/** Computes hash64(s) into outHi/outLo. */
function hashInto(s: string): void {
  const bytesMax = s.length * 3;
  if (bytesMax > scratch.length && bytesMax <= scratchBytesMax) scratch = new Uint8Array(bytesMax);
  const buf = bytesMax <= scratch.length ? scratch : new Uint8Array(bytesMax);
  const len = encodeUtf8(s, buf);

  // FNV-1a: h ^= byte; h *= 2^40 + 0x1b3. The low product lo * 0x1b3 is below 2^41, so
  // it is exact as a double and its carry is a plain division; (h << 40) adds lo << 8 to
  // the high half.
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < len; i++) {
    const x = (lo ^ buf[i]!) >>> 0;
    const low = x * FNV_PRIME_LOW;
    hi = (Math.imul(hi, FNV_PRIME_LOW) + Math.floor(low / TWO_POW_32) + (x << 8)) >>> 0;
    lo = low >>> 0;
  }

  // fmix64. h >>> 33 fits in 31 bits, so it only touches the low half: lo ^= hi >>> 1.
  lo = (lo ^ (hi >>> 1)) >>> 0;
  mul64(hi, lo, C1_HI, C1_LO);
  hi = outHi;
  lo = (outLo ^ (hi >>> 1)) >>> 0;
  mul64(hi, lo, C2_HI, C2_LO);
  hi = outHi;
  lo = (outLo ^ (hi >>> 1)) >>> 0;

  outHi = hi;
  outLo = lo;
}

/** The partition of a key: floor(hash64(key) * P / 2^64). Fast path. */
export function partitionOf(key: string, partitions: number): PartitionId {
  hashInto(key);
  return partitionOfParts(outHi, outLo, partitions);
}

/**
 * floor(h * P / 2^64) for h = hi * 2^32 + lo, in float arithmetic that is exact for
 * 1 <= P <= 2^21:
 *   floor(h * P / 2^64) = floor((hi * P + floor(lo * P / 2^32)) / 2^32)
 * and every intermediate value stays below 2^53.
 */
export function partitionOfParts(hi: number, lo: number, partitions: number): PartitionId {
  assertPartitions(partitions);
  const carry = Math.floor((lo * partitions) / TWO_POW_32);
  return partitionId(Math.floor((hi * partitions + carry) / TWO_POW_32));
}

const HEX_BYTE = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

function hex32(x: number): string {
  return (
    HEX_BYTE[x >>> 24]! + HEX_BYTE[(x >>> 16) & 0xff]! + HEX_BYTE[(x >>> 8) & 0xff]! + HEX_BYTE[x & 0xff]!
  );
}

/**
 * hash64 of the UTF-8 encoding of `s` (a lone surrogate encodes as U+FFFD, as with
 * TextEncoder). Fast path; equal to hash64Bytes(new TextEncoder().encode(s)).
 */
export function hash64(s: string): bigint {
  hashInto(s);
  return (BigInt(outHi) << 32n) | BigInt(outLo);
}

/** hash64(s) as 16 lowercase hex digits (fast path). */
export function hashHex(s: string): string {
  hashInto(s);
  return hex32(outHi) + hex32(outLo);
}
