// Vector clocks version every stored value (DESIGN §3, replication rule 7). The primary
// that commits a write increments its own entry; replication, catch-up and anti-entropy
// apply an incoming version only if it descends from the stored one. Two concurrent
// versions are evidence of split brain.
//
// A clock is an immutable array of [nodeId, counter] pairs sorted by node id, with no
// zero counters. That form is canonical: two equal clocks are equal arrays and print to
// the same string, so the string (and its hash, the ETag) identifies the clock. Sorted
// arrays also make merge and compare a single linear merge-join, and keep clocks away
// from plain object maps (no `__proto__` surprises from the network).

import { hashHex } from './hash.js';
import { assert, NODE_ID_PATTERN, type NodeId } from './types.js';

export type VectorClock = readonly (readonly [NodeId, number])[];

export type ClockOrder = 'before' | 'after' | 'equal' | 'concurrent';

export const EMPTY_CLOCK: VectorClock = Object.freeze([]);

function freezeClock(entries: (readonly [NodeId, number])[]): VectorClock {
  for (const entry of entries) Object.freeze(entry);
  return Object.freeze(entries);
}

/** The counter of `id` in `c` (0 if absent). */
export function counterOf(c: VectorClock, id: NodeId): number {
  for (const [n, k] of c) {
    if (n === id) return k;
    if (n > id) break;
  }
  return 0;
}

/** `c` with `id`'s counter one higher. */
export function increment(c: VectorClock, id: NodeId): VectorClock {
  const out: (readonly [NodeId, number])[] = [];
  let done = false;
  for (const entry of c) {
    const [n, k] = entry;
    if (!done && n === id) {
      assert(k < Number.MAX_SAFE_INTEGER, `vector clock counter of ${id} overflows`);
      out.push([n, k + 1]);
      done = true;
    } else {
      if (!done && n > id) {
        out.push([id, 1]);
        done = true;
      }
      out.push(entry);
    }
  }
  if (!done) out.push([id, 1]);
  return freezeClock(out);
}

/**
 * Walks the union of the ids of two clocks in id order, with each side's counter (0 when
 * absent). Stops early when `visit` returns false.
 */
function zip(a: VectorClock, b: VectorClock, visit: (id: NodeId, ka: number, kb: number) => boolean): void {
  let i = 0;
  let j = 0;
  for (;;) {
    const ea = a[i];
    const eb = b[j];
    let go: boolean;
    if (ea !== undefined && (eb === undefined || ea[0] < eb[0])) {
      go = visit(ea[0], ea[1], 0);
      i++;
    } else if (eb !== undefined && (ea === undefined || eb[0] < ea[0])) {
      go = visit(eb[0], 0, eb[1]);
      j++;
    } else if (ea !== undefined && eb !== undefined) {
      go = visit(ea[0], ea[1], eb[1]);
      i++;
      j++;
    } else {
      return; // both clocks exhausted
    }
    if (!go) return;
  }
}

/** Pointwise maximum: the least clock that descends from both. */
export function merge(a: VectorClock, b: VectorClock): VectorClock {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out: (readonly [NodeId, number])[] = [];
  zip(a, b, (id, ka, kb) => {
    out.push([id, Math.max(ka, kb)]);
    return true;
  });
  return freezeClock(out);
}

/**
 * How `a` relates to `b`: 'before' means a < b (b descends from a and differs), 'after'
 * means a > b, 'concurrent' means neither descends from the other.
 */
export function compare(a: VectorClock, b: VectorClock): ClockOrder {
  let aAhead = false; // some counter of a is greater than b's
  let bAhead = false; // some counter of b is greater than a's
  zip(a, b, (_id, ka, kb) => {
    if (ka > kb) aAhead = true;
    else if (kb > ka) bAhead = true;
    return !(aAhead && bAhead);
  });
  if (aAhead && bAhead) return 'concurrent';
  if (aAhead) return 'after';
  if (bAhead) return 'before';
  return 'equal';
}

/** a >= b pointwise: a has seen everything b has. */
export function descends(a: VectorClock, b: VectorClock): boolean {
  const order = compare(a, b);
  return order === 'after' || order === 'equal';
}

/**
 * Builds a clock from untrusted entries (e.g. a peer message). Throws a RangeError naming
 * the problem: a node id that does not match the node id pattern (which also rejects
 * "__proto__"), a counter that is not a positive safe integer, or a duplicate id.
 */
export function fromEntries(entries: Iterable<readonly [string, number]>): VectorClock {
  const out: (readonly [NodeId, number])[] = [];
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 2) {
      throw new RangeError('vector clock entry must be a [nodeId, counter] pair');
    }
    const [id, counter]: readonly unknown[] = entry;
    if (typeof id !== 'string' || !NODE_ID_PATTERN.test(id)) {
      throw new RangeError(`vector clock node id ${JSON.stringify(id)} must match ${NODE_ID_PATTERN}`);
    }
    if (typeof counter !== 'number' || !Number.isSafeInteger(counter) || counter <= 0) {
      throw new RangeError(
        `vector clock counter of ${id} must be a positive safe integer, got ${String(counter)}`,
      );
    }
    out.push([id as NodeId, counter]);
  }
  out.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  for (let i = 1; i < out.length; i++) {
    if (out[i]![0] === out[i - 1]![0]) {
      throw new RangeError(`vector clock node id ${out[i]![0]} appears more than once`);
    }
  }
  return freezeClock(out);
}

/** Canonical text: "n1=3;n2=1" (sorted by node id); the empty clock is "". */
export function clockToString(c: VectorClock): string {
  // Every put and every get derives its ETag from this: a plain loop, no arrays.
  let s = '';
  for (let i = 0; i < c.length; i++) s += (i === 0 ? '' : ';') + c[i]![0] + '=' + String(c[i]![1]);
  return s;
}

const COUNTER_TEXT = /^[1-9][0-9]{0,15}$/;

/** Inverse of clockToString. Accepts only canonical text; throws a RangeError otherwise. */
export function clockFromString(s: string): VectorClock {
  if (s === '') return EMPTY_CLOCK;
  const entries: [string, number][] = [];
  for (const part of s.split(';')) {
    const eq = part.indexOf('=');
    const counterText = eq < 0 ? '' : part.slice(eq + 1);
    if (eq < 0 || !COUNTER_TEXT.test(counterText)) {
      throw new RangeError(`vector clock entry ${JSON.stringify(part)} is not "<nodeId>=<counter>"`);
    }
    entries.push([part.slice(0, eq), Number(counterText)]);
  }
  const clock = fromEntries(entries);
  if (clockToString(clock) !== s) {
    throw new RangeError(`vector clock text ${JSON.stringify(s)} is not canonical (sorted by node id)`);
  }
  return clock;
}

/**
 * The version of a value, sent as its ETag: 16 hex digits of hash64 of the canonical
 * clock text.
 *
 * Why a hash of the clock: an ETag should be opaque and short whatever the cluster size,
 * and the clock already identifies the version (its text is canonical, so equal clocks
 * give equal versions). A hash cannot come back around after delete and re-create (no
 * ABA): a delete is a tombstone that keeps its clock, the next write increments it (once
 * the tombstone is collected, the partition's purgedClock stands in for it), and
 * clocks only grow, so a re-created key never reuses an earlier clock. Two different
 * clocks share a version only through a 64-bit hash collision.
 */
export function versionOf(c: VectorClock): string {
  return hashHex(clockToString(c));
}
