// A small seeded pseudo-random generator (sfc32, seeded through splitmix32).
//
// src/core never calls Math.random: every random choice (election jitter, back-off) comes
// from a Prng that the caller seeds, so one seed replays a whole simulated run. The state
// is plain data (four 32-bit words) and the functions below advance it in place.
// Not cryptographic; never use it for secrets.

export interface Prng {
  a: number;
  b: number;
  c: number;
  d: number;
}

/** splitmix32: spreads a small integer seed over 32 bits, used only to seed sfc32. */
function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export function createPrng(seed: number): Prng {
  const s = seed >>> 0;
  const p: Prng = {
    a: splitmix32(s),
    b: splitmix32(s + 1),
    c: splitmix32(s + 2),
    d: 1,
  };
  // The first outputs of sfc32 are weakly mixed; discard a few.
  for (let i = 0; i < 12; i++) nextU32(p);
  return p;
}

/** Next 32-bit unsigned integer. */
export function nextU32(p: Prng): number {
  const t = (((p.a + p.b) | 0) + p.d) | 0;
  p.d = (p.d + 1) | 0;
  p.a = p.b ^ (p.b >>> 9);
  p.b = (p.c + (p.c << 3)) | 0;
  p.c = (p.c << 21) | (p.c >>> 11);
  p.c = (p.c + t) | 0;
  return t >>> 0;
}

/** Uniform float in [0, 1). */
export function nextFloat(p: Prng): number {
  return nextU32(p) / 4294967296;
}

/** Uniform integer in [lo, hi] (both inclusive). */
export function nextInt(p: Prng, lo: number, hi: number): number {
  if (hi <= lo) return lo;
  return lo + Math.floor(nextFloat(p) * (hi - lo + 1));
}

/** True with probability `probability`. */
export function chance(p: Prng, probability: number): boolean {
  return nextFloat(p) < probability;
}

/** A uniformly chosen element; the array must be non-empty. */
export function pick<T>(p: Prng, items: readonly T[]): T {
  const item = items[nextInt(p, 0, items.length - 1)];
  if (item === undefined) throw new Error('pick from an empty array');
  return item;
}

/** An independent generator derived from this one (e.g. one per simulated node). */
export function forkPrng(p: Prng): Prng {
  return createPrng(nextU32(p));
}
