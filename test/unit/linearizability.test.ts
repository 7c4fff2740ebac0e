import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  checkLinearizable,
  formatCheckResult,
  HistoryRecorder,
  type CheckResult,
  type KvInput,
  type KvOp,
  type KvOutput,
} from '../support/linearizability.js';
import { chance, createPrng, nextInt, type Prng } from '../../src/core/prng.js';

// ---------------------------------------------------------------------------------------
// A tiny DSL for hand-written histories: ret = null means unknown outcome.

let ids = 0;
function op(client: number, call: number, ret: number | null, input: KvInput, output: KvOutput | null, key = 'k'): KvOp {
  return { id: ids++, client, key, call, ret, input, output: ret === null ? null : output };
}
const put = (c: number, call: number, ret: number | null, value: string, version: string, key = 'k'): KvOp =>
  op(c, call, ret, { type: 'put', value }, { type: 'written', version }, key);
const get = (c: number, call: number, ret: number, found: readonly [string, string] | null, key = 'k'): KvOp =>
  op(c, call, ret, { type: 'get' }, found === null ? { type: 'absent' } : { type: 'found', value: found[0], version: found[1] }, key);
const cas = (c: number, call: number, ret: number | null, expected: string, value: string, result: string | 'failed'): KvOp =>
  op(c, call, ret, { type: 'cas', expectedVersion: expected, value }, result === 'failed' ? { type: 'failed' } : { type: 'written', version: result });
const create = (c: number, call: number, ret: number | null, value: string, result: string | 'failed'): KvOp =>
  op(c, call, ret, { type: 'create', value }, result === 'failed' ? { type: 'failed' } : { type: 'written', version: result, created: true });
const del = (c: number, call: number, ret: number | null, result: 'deleted' | 'not_found' | 'failed', expected?: string): KvOp =>
  op(c, call, ret, expected === undefined ? { type: 'delete' } : { type: 'delete', expectedVersion: expected }, { type: result });

function expectOk(h: readonly KvOp[]): void {
  const r = checkLinearizable(h);
  expect(r.ok, formatCheckResult(r)).toBe(true);
}
function expectViolation(h: readonly KvOp[]): Extract<CheckResult, { ok: false }> {
  const r = checkLinearizable(h);
  expect(r.ok, 'expected a violation').toBe(false);
  if (r.ok !== false) throw new Error('unreachable');
  return r;
}

// ---------------------------------------------------------------------------------------
// Histories from a simulated atomic register: each op gets an interval [call, ret] and a
// linearization point inside it (unknown-outcome ops: anywhere after call, or no effect);
// outputs come from applying the ops to one register in point order.

type Kind = 'get' | 'put' | 'cas' | 'create' | 'delete' | 'cdelete';
interface OpSpec {
  readonly client: number;
  readonly kind: Kind;
  readonly gap: number;
  readonly dur: number;
  /** Linearization point as a fraction (of 1000) of the interval. */
  readonly frac: number;
  /** Chooses the expected version of a cas / conditional delete. */
  readonly pick: number;
  readonly unknown: boolean;
  /** For an unknown-outcome op: whether it takes effect at all, and how late it may. */
  readonly effect: boolean;
  readonly late: number;
  /** Alone in time: called after every earlier op returned, returns before any later call. */
  readonly solo?: boolean;
}

function simulate(key: string, specs: readonly OpSpec[], clients: number, idBase: number): KvOp[] {
  const clock = new Array<number>(clients).fill(0);
  interface Timed {
    readonly spec: OpSpec;
    readonly id: number;
    readonly call: number;
    readonly ret: number;
    readonly point: number | null;
    input?: KvInput;
    output?: KvOutput;
  }
  const timed: Timed[] = specs.map((spec, i) => {
    const c = spec.client % clients;
    let call: number;
    if (spec.solo === true) call = Math.max(...clock) + 1;
    else call = clock[c]! + spec.gap;
    const ret = call + spec.dur;
    if (spec.solo === true) clock.fill(ret + 1);
    else clock[c] = ret;
    const unknown = spec.unknown && spec.solo !== true;
    const point = !unknown ? call + (spec.frac / 1000) * spec.dur : spec.effect ? call + (spec.frac / 1000) * (spec.dur + spec.late) : null;
    return { spec: { ...spec, client: c, unknown }, id: idBase + i, call, ret, point };
  });

  let state = null as { value: string; version: string } | null;
  let counter = 0;
  const versions: string[] = [];
  const chooseVersion = (pick: number): string => {
    if (pick % 3 === 0 && state !== null) return state.version;
    if (versions.length === 0 || pick % 7 === 0) return `${key}.never`;
    return versions[pick % versions.length]!;
  };
  const write = (value: string): string => {
    const version = `${key}.v${++counter}`;
    versions.push(version);
    state = { value, version };
    return version;
  };
  const inputOf = (t: Timed): KvInput => {
    const value = `${key}:${t.id}`;
    switch (t.spec.kind) {
      case 'get':
        return { type: 'get' };
      case 'put':
        return { type: 'put', value };
      case 'cas':
        return { type: 'cas', expectedVersion: chooseVersion(t.spec.pick), value };
      case 'create':
        return { type: 'create', value };
      case 'delete':
        return { type: 'delete' };
      case 'cdelete':
        return { type: 'delete', expectedVersion: chooseVersion(t.spec.pick) };
    }
  };
  const withPoints = timed.filter((t) => t.point !== null).sort((a, b) => a.point! - b.point! || a.id - b.id);
  for (const t of withPoints) {
    const input = inputOf(t);
    t.input = input;
    const cur: { value: string; version: string } | null = state;
    switch (input.type) {
      case 'get':
        t.output = cur === null ? { type: 'absent' } : { type: 'found', value: cur.value, version: cur.version };
        break;
      case 'put':
        t.output = { type: 'written', version: write(input.value), created: cur === null };
        break;
      case 'cas':
        t.output = cur !== null && cur.version === input.expectedVersion ? { type: 'written', version: write(input.value), created: false } : { type: 'failed' };
        break;
      case 'create':
        t.output = cur === null ? { type: 'written', version: write(input.value), created: true } : { type: 'failed' };
        break;
      case 'delete':
        if (cur === null) t.output = input.expectedVersion === undefined ? { type: 'not_found' } : { type: 'failed' };
        else if (input.expectedVersion !== undefined && input.expectedVersion !== cur.version) t.output = { type: 'failed' };
        else {
          state = null;
          t.output = { type: 'deleted' };
        }
        break;
    }
  }
  return timed.map((t) => {
    const input = t.input ?? inputOf(t);
    if (t.spec.unknown) return { id: t.id, client: t.spec.client, key, call: t.call, ret: null, input, output: null };
    return { id: t.id, client: t.spec.client, key, call: t.call, ret: t.ret, input, output: t.output! };
  });
}

const arbSpec: fc.Arbitrary<OpSpec> = fc.record({
  client: fc.nat({ max: 15 }),
  kind: fc.constantFrom<Kind>('get', 'get', 'get', 'put', 'put', 'cas', 'cas', 'create', 'delete', 'cdelete'),
  gap: fc.nat({ max: 4 }),
  dur: fc.nat({ max: 12 }),
  frac: fc.nat({ max: 1000 }),
  pick: fc.nat({ max: 1000 }),
  unknown: fc.nat({ max: 15 }).map((x) => x === 0),
  effect: fc.boolean(),
  late: fc.nat({ max: 60 }),
});

function randomSpecs(prng: Prng, n: number, clients: number, unknownRate: number): OpSpec[] {
  const kinds: readonly Kind[] = ['get', 'get', 'get', 'put', 'put', 'cas', 'cas', 'create', 'delete', 'cdelete'];
  return Array.from({ length: n }, () => ({
    client: nextInt(prng, 0, clients - 1),
    kind: kinds[nextInt(prng, 0, kinds.length - 1)]!,
    gap: nextInt(prng, 0, 3),
    dur: nextInt(prng, 0, 20),
    frac: nextInt(prng, 0, 1000),
    pick: nextInt(prng, 0, 1000),
    unknown: chance(prng, unknownRate),
    effect: chance(prng, 0.5),
    late: nextInt(prng, 0, 100),
  }));
}

const soloPut: OpSpec = { client: 0, kind: 'put', gap: 0, dur: 3, frac: 500, pick: 0, unknown: false, effect: true, late: 0, solo: true };
const soloGet: OpSpec = { ...soloPut, kind: 'get' };

/** `read`, changed to return what `writer` wrote. */
function readReturning(read: KvOp, writer: KvOp): KvOp {
  if (writer.output?.type !== 'written' || !('value' in writer.input)) throw new Error('not a successful write');
  return { ...read, output: { type: 'found', value: writer.input.value, version: writer.output.version } };
}

// ---------------------------------------------------------------------------------------

describe('classic histories', () => {
  it('accepts sequential histories', () => {
    expectOk([]);
    expectOk([get(0, 0, 1, null), put(0, 2, 3, 'a', 'v1'), get(1, 4, 5, ['a', 'v1']), put(1, 6, 7, 'b', 'v2'), get(0, 8, 9, ['b', 'v2'])]);
    expectOk([put(0, 0, 1, 'a', 'v1'), del(0, 2, 3, 'deleted'), get(0, 4, 5, null), del(0, 6, 7, 'not_found'), create(0, 8, 9, 'b', 'v3')]);
  });

  it('accepts a read concurrent with a write returning either the old or the new value', () => {
    const base = (): KvOp[] => [put(0, 0, 1, 'a', 'v1'), put(1, 10, 20, 'b', 'v2')];
    expectOk([...base(), get(2, 12, 14, ['a', 'v1'])]);
    expectOk([...base(), get(2, 12, 14, ['b', 'v2'])]);
    // New then old by two sequential readers inside the write: not allowed.
    expectViolation([...base(), get(2, 11, 12, ['b', 'v2']), get(3, 13, 14, ['a', 'v1'])]);
    // Old then new: fine.
    expectOk([...base(), get(2, 11, 12, ['a', 'v1']), get(3, 13, 14, ['b', 'v2'])]);
  });

  it('accepts both orders of two concurrent writes, as reads reveal', () => {
    const w = (): KvOp[] => [put(0, 0, 10, 'a', 'v1'), put(1, 0, 10, 'b', 'v2')];
    expectOk([...w(), get(2, 11, 12, ['a', 'v1'])]);
    expectOk([...w(), get(2, 11, 12, ['b', 'v2'])]);
    expectViolation([...w(), get(2, 11, 12, ['a', 'v1']), get(2, 13, 14, ['b', 'v2'])]);
  });

  it('treats equal timestamps as concurrent', () => {
    expectOk([put(0, 0, 5, 'a', 'v1'), get(1, 5, 6, null)]);
    expectViolation([put(0, 0, 5, 'a', 'v1'), get(1, 5.001, 6, null)]);
  });

  it('rejects a stale read after a completed write', () => {
    const r = expectViolation([put(0, 0, 1, 'a', 'v1'), put(0, 2, 3, 'b', 'v2'), get(1, 4, 5, ['a', 'v1'])]);
    expect(r.key).toBe('k');
    expect(r.reason).toContain('"a"@v1');
    expectViolation([put(0, 0, 1, 'a', 'v1'), get(1, 2, 3, null)]);
  });

  it('rejects a lost acknowledged write (a later read returns the older value)', () => {
    expectViolation([put(0, 0, 1, 'a', 'v1'), put(0, 2, 3, 'b', 'v2'), get(1, 4, 5, ['b', 'v2']), get(2, 6, 7, ['a', 'v1'])]);
    // The acknowledged write vanished altogether: the key reads as never written.
    expectViolation([put(0, 0, 1, 'a', 'v1'), get(1, 4, 5, null)]);
  });

  it('checks the version a read returns against the one the write returned', () => {
    expectViolation([put(0, 0, 1, 'a', 'v1'), get(1, 2, 3, ['a', 'v9'])]);
  });

  it('rejects a read of a value that was never written', () => {
    const r = expectViolation([put(0, 0, 1, 'a', 'v1'), get(1, 2, 3, ['zzz', 'v1'])]);
    expect(r.smallestFailingWindow).toBeDefined();
    expectViolation([get(1, 0, 1, ['zzz', 'v0'])]);
    // Nor a value from the future (written only after the read returned).
    expectViolation([get(1, 0, 1, ['a', 'v1']), put(0, 2, 3, 'a', 'v1')]);
  });

  it('compare-and-set succeeds exactly when the version matches', () => {
    expectOk([put(0, 0, 1, 'a', 'v1'), cas(0, 2, 3, 'v1', 'b', 'v2'), get(0, 4, 5, ['b', 'v2']), cas(1, 6, 7, 'v1', 'c', 'failed')]);
    expectOk([cas(0, 0, 1, 'v1', 'b', 'failed')]); // on an absent key
    expectViolation([cas(0, 0, 1, 'v1', 'b', 'v2')]); // succeeded on an absent key
    expectViolation([put(0, 0, 1, 'a', 'v1'), cas(0, 2, 3, 'v0', 'b', 'v2')]); // succeeded on the wrong version
    expectViolation([put(0, 0, 1, 'a', 'v1'), cas(0, 2, 3, 'v1', 'b', 'failed')]); // failed on the right version
    expectViolation([put(0, 0, 1, 'a', 'v1'), cas(0, 2, 3, 'v1', 'b', 'v2'), get(1, 4, 5, ['a', 'v1'])]);
    // A failed cas concurrent with the write that changed the version: fine.
    expectOk([put(0, 0, 1, 'a', 'v1'), put(1, 2, 10, 'b', 'v2'), cas(0, 3, 4, 'v1', 'c', 'failed'), get(0, 11, 12, ['b', 'v2'])]);
  });

  it('rejects two concurrent compare-and-sets on the same version that both succeed', () => {
    const base = (): KvOp[] => [put(0, 0, 1, 'a', 'v1')];
    const r = expectViolation([...base(), cas(1, 2, 10, 'v1', 'b', 'v2'), cas(2, 3, 9, 'v1', 'c', 'v3')]);
    expect(r.partialLinearization?.map((o) => o.id)).toHaveLength(2);
    // One wins, one fails: fine, either way round.
    expectOk([...base(), cas(1, 2, 10, 'v1', 'b', 'v2'), cas(2, 3, 9, 'v1', 'c', 'failed'), get(0, 11, 12, ['b', 'v2'])]);
    expectOk([...base(), cas(1, 2, 10, 'v1', 'b', 'failed'), cas(2, 3, 9, 'v1', 'c', 'v3'), get(0, 11, 12, ['c', 'v3'])]);
    // Chained: the second expects the version the first produced.
    expectOk([...base(), cas(1, 2, 10, 'v1', 'b', 'v2'), cas(2, 3, 9, 'v2', 'c', 'v3'), get(0, 11, 12, ['c', 'v3'])]);
  });

  it('create-only: at most one of two concurrent creates succeeds', () => {
    expectViolation([create(0, 0, 10, 'a', 'v1'), create(1, 1, 9, 'b', 'v2')]);
    expectOk([create(0, 0, 10, 'a', 'v1'), create(1, 1, 9, 'b', 'failed'), get(0, 11, 12, ['a', 'v1'])]);
    expectViolation([put(0, 0, 1, 'a', 'v1'), create(1, 2, 3, 'b', 'v2')]);
    expectViolation([create(1, 2, 3, 'b', 'failed')]); // failed on an absent key
    expectOk([put(0, 0, 1, 'a', 'v1'), del(0, 2, 3, 'deleted'), create(0, 4, 5, 'b', 'v2')]);
  });

  it('checks the created flag of a put (201 vs 200)', () => {
    const putC = (c: number, call: number, ret: number, value: string, version: string, created: boolean): KvOp =>
      op(c, call, ret, { type: 'put', value }, { type: 'written', version, created });
    expectOk([putC(0, 0, 1, 'a', 'v1', true), putC(0, 2, 3, 'b', 'v2', false)]);
    expectViolation([putC(0, 0, 1, 'a', 'v1', false)]);
    expectViolation([putC(0, 0, 1, 'a', 'v1', true), putC(0, 2, 3, 'b', 'v2', true)]);
    // Concurrent puts: exactly one can have created the key.
    expectOk([putC(0, 0, 5, 'a', 'v1', false), putC(1, 0, 5, 'b', 'v2', true), get(0, 6, 7, ['a', 'v1'])]);
    expectViolation([putC(0, 0, 5, 'a', 'v1', true), putC(1, 0, 5, 'b', 'v2', true)]);
  });

  it('delete semantics, unconditional and conditional', () => {
    expectOk([put(0, 0, 1, 'a', 'v1'), del(0, 2, 3, 'deleted'), get(1, 4, 5, null), del(1, 6, 7, 'not_found')]);
    expectViolation([del(0, 0, 1, 'deleted')]); // nothing to delete
    expectViolation([put(0, 0, 1, 'a', 'v1'), del(0, 2, 3, 'not_found')]);
    expectViolation([put(0, 0, 1, 'a', 'v1'), del(0, 2, 3, 'deleted'), get(1, 4, 5, ['a', 'v1'])]);
    // Two concurrent deletes of a present key: exactly one finds it.
    expectOk([put(0, 0, 1, 'a', 'v1'), del(0, 2, 9, 'deleted'), del(1, 3, 8, 'not_found')]);
    expectViolation([put(0, 0, 1, 'a', 'v1'), del(0, 2, 9, 'deleted'), del(1, 3, 8, 'deleted')]);
    // If-Match delete.
    expectOk([put(0, 0, 1, 'a', 'v1'), del(0, 2, 3, 'failed', 'v0'), del(0, 4, 5, 'deleted', 'v1'), del(0, 6, 7, 'failed', 'v1')]);
    expectOk([del(0, 0, 1, 'not_found', 'v1')]); // 404 or 412 on an absent key: both mean no effect
    expectViolation([put(0, 0, 1, 'a', 'v1'), del(0, 2, 3, 'deleted', 'v0')]);
    expectViolation([put(0, 0, 1, 'a', 'v1'), del(0, 2, 3, 'failed', 'v1')]);
  });

  it('checks each key on its own and names the failing one', () => {
    const h = [put(0, 0, 1, 'a', 'v1', 'x'), put(1, 0, 1, 'b', 'w1', 'y'), get(0, 2, 3, ['a', 'v1'], 'x'), get(1, 2, 3, ['a', 'v1'], 'y')];
    const r = expectViolation(h);
    expect(r.key).toBe('y');
    expectOk(h.slice(0, 3));
  });

  it('rejects malformed histories instead of checking them', () => {
    expect(() => checkLinearizable([op(0, 5, 4, { type: 'get' }, { type: 'absent' })])).toThrow(/before its call/);
    expect(() => checkLinearizable([op(0, 0, 1, { type: 'get' }, { type: 'written', version: 'v' })])).toThrow(/cannot answer/);
    expect(() => checkLinearizable([op(0, 0, 1, { type: 'delete' }, { type: 'failed' })])).toThrow(/unconditional/);
    const a = get(0, 0, 1, null);
    expect(() => checkLinearizable([a, a])).toThrow(/duplicate/);
  });
});

describe('unknown-outcome operations', () => {
  it('accepts an unknown put whose value later appears, under whatever version the system chose', () => {
    expectOk([put(0, 0, 1, 'a', 'v1'), put(1, 2, null, 'b', ''), get(2, 50, 51, ['b', 'v7'])]);
    // ...and that version then sticks: a cas on it succeeds, a read with another version is stale.
    expectOk([put(1, 2, null, 'b', ''), get(2, 50, 51, ['b', 'v7']), cas(2, 52, 53, 'v7', 'c', 'v8'), get(0, 54, 55, ['c', 'v8'])]);
    expectViolation([put(1, 2, null, 'b', ''), get(2, 50, 51, ['b', 'v7']), get(2, 52, 53, ['b', 'v8'])]);
    // A cas can reveal the version first.
    expectOk([put(1, 2, null, 'b', ''), cas(2, 50, 51, 'v7', 'c', 'v8'), get(0, 54, 55, ['c', 'v8'])]);
  });

  it('accepts an unknown put that never appears', () => {
    expectOk([put(0, 0, 1, 'a', 'v1'), put(1, 2, null, 'b', ''), get(2, 50, 51, ['a', 'v1']), get(0, 60, 61, ['a', 'v1'])]);
    expectOk([put(1, 2, null, 'b', ''), get(2, 50, 51, null)]);
  });

  it('lets an unknown write take effect late: after later reads that did not see it', () => {
    expectOk([put(0, 0, 1, 'a', 'v1'), put(1, 2, null, 'b', ''), get(2, 50, 51, ['a', 'v1']), get(0, 60, 61, ['b', 'v2'])]);
  });

  it('rejects an unknown put whose value appears and then disappears', () => {
    expectViolation([put(0, 0, 1, 'a', 'v1'), put(1, 2, null, 'b', ''), get(2, 50, 51, ['b', 'v2']), get(0, 60, 61, ['a', 'v1'])]);
    expectViolation([put(1, 2, null, 'b', ''), get(2, 50, 51, ['b', 'v2']), get(0, 60, 61, null)]);
  });

  it('does not let an unknown write take effect before its call', () => {
    expectViolation([get(2, 0, 1, ['b', 'v2']), put(1, 2, null, 'b', '')]);
  });

  it('remembers versions a failed cas ruled out for a write whose version was not seen', () => {
    const base = (): KvOp[] => [put(0, 0, 1, 'a', 'v1'), del(0, 2, 3, 'deleted'), put(1, 4, null, 'b', ''), create(2, 5, 6, 'x', 'failed')];
    // The create failing proves the unknown put took effect before 6; the cas at 7..8 then
    // saw its version, which the read says is vq: so the cas had to succeed.
    expectOk([...base(), get(2, 9, 10, ['b', 'vq'])]);
    expectViolation([...base(), cas(2, 7, 8, 'vq', 'c', 'failed'), get(2, 9, 10, ['b', 'vq'])]);
    expectOk([...base(), cas(2, 7, 8, 'vz', 'c', 'failed'), get(2, 9, 10, ['b', 'vq'])]);
  });

  it('handles unknown cas, create and delete', () => {
    // Unknown cas that took effect (seen later) and one that did not.
    expectOk([put(0, 0, 1, 'a', 'v1'), cas(1, 2, null, 'v1', 'b', ''), get(0, 10, 11, ['b', 'v2'])]);
    expectOk([put(0, 0, 1, 'a', 'v1'), cas(1, 2, null, 'v1', 'b', ''), get(0, 10, 11, ['a', 'v1'])]);
    // Its effect needs the version to match at the time.
    expectViolation([put(0, 0, 1, 'a', 'v1'), cas(1, 2, null, 'v0', 'b', ''), get(0, 10, 11, ['b', 'v2'])]);
    expectOk([create(1, 2, null, 'b', ''), get(0, 10, 11, ['b', 'v2'])]);
    expectViolation([put(0, 0, 1, 'a', 'v1'), create(1, 2, null, 'b', ''), get(0, 10, 11, ['b', 'v2'])]);
    expectOk([put(0, 0, 1, 'a', 'v1'), del(1, 2, null, 'deleted'), get(0, 10, 11, null)]);
    expectOk([put(0, 0, 1, 'a', 'v1'), del(1, 2, null, 'deleted'), get(0, 10, 11, ['a', 'v1'])]);
    expectViolation([put(0, 0, 1, 'a', 'v1'), del(1, 2, null, 'deleted', 'v0'), get(0, 10, 11, null)]);
  });

  it('with unknownMaxDelay, an unknown write must take effect within that delay or never', () => {
    const h = [put(0, 0, 1, 'a', 'v1'), put(1, 2, null, 'b', ''), get(2, 50, 51, ['a', 'v1']), get(0, 60, 61, ['b', 'v2'])];
    expectOk(h);
    expect(checkLinearizable(h, { unknownMaxDelay: 100 }).ok).toBe(true);
    // The read at 50 proves it had not taken effect by then; 2 + 30 < 50.
    expect(checkLinearizable(h, { unknownMaxDelay: 30 }).ok).toBe(false);
    expect(checkLinearizable([put(1, 2, null, 'b', ''), get(2, 50, 51, null)], { unknownMaxDelay: 30 }).ok).toBe(true);
  });

  it('ignores reads with an unknown outcome', () => {
    expectOk([put(0, 0, 1, 'a', 'v1'), op(1, 2, null, { type: 'get' }, null)]);
  });
});

describe('diagnostics', () => {
  it('reports the longest linearizable prefix and a small failing window inside a long history', () => {
    const prng = createPrng(7);
    const specs = [...randomSpecs(prng, 300, 4, 0), soloPut, soloPut, ...randomSpecs(prng, 300, 4, 0), soloGet];
    const h = simulate('k', specs, 4, 0);
    expectOk(h);
    // The final read returns the value of the first solo put, overwritten by the second.
    const last = h[h.length - 1]!;
    const bad = [...h.slice(0, -1), readReturning(last, h[300]!)];
    const t0 = performance.now();
    const r = expectViolation(bad);
    const ms = performance.now() - t0;
    expect(r.partialLinearization!.length).toBeGreaterThan(500);
    const w = r.smallestFailingWindow!;
    expect(w.ops.map((o) => o.id)).toContain(last.id);
    expect(w.ops.length).toBeLessThan(40);
    expect(r.reason).toContain(`#${last.id}`);
    console.log(`[linearizability] violation in a 604-op history found and narrowed to a ${w.ops.length}-op window in ${ms.toFixed(0)} ms`);
  });

  it('still proves a violation from a small window when the whole-history search runs out of budget', () => {
    const prng = createPrng(11);
    const specs = [...randomSpecs(prng, 400, 8, 0.01), soloPut, soloPut, ...randomSpecs(prng, 100, 8, 0), soloGet];
    const h = simulate('k', specs, 8, 0);
    const last = h[h.length - 1]!;
    const bad = [...h.slice(0, -1), readReturning(last, h[400]!)];
    expect(checkLinearizable(bad, { maxStepsPerKey: 1000, minimizeWindow: false }).ok).toBe('unknown');
    const r = checkLinearizable(bad, { maxStepsPerKey: 1000, windowMaxSteps: 5_000_000 });
    expect(r.ok, formatCheckResult(r)).toBe(false);
    if (r.ok !== false) return;
    expect(r.reason).toContain('ran out');
    expect(r.smallestFailingWindow!.ops.map((o) => o.id)).toContain(last.id);
  });

  it("answers 'unknown' when the budget runs out", () => {
    // Many concurrent blind writes followed by an impossible read: the search must try them all.
    const h: KvOp[] = [];
    for (let c = 0; c < 10; c++) h.push(put(c, 0, 100, `w${c}`, `v${c}`));
    h.push(get(99, 101, 102, ['nope', 'v0']));
    h.push(get(99, 103, 104, ['w0', 'v0']));
    const r = checkLinearizable(h, { maxStepsPerKey: 100 });
    expect(r.ok).toBe('unknown');
    expect(checkLinearizable(h).ok).toBe(false);
  });
});

describe('HistoryRecorder', () => {
  it('records call and return times from its clock, unknown outcomes, and drops discarded ops', () => {
    let t = 0;
    const rec = new HistoryRecorder(() => t);
    const a = rec.invoke(0, 'k', { type: 'put', value: 'a' });
    t = 1;
    a.ok({ type: 'written', version: 'v1' });
    t = 2;
    const b = rec.invoke(1, 'k', { type: 'put', value: 'b' });
    const gone = rec.invoke(2, 'k', { type: 'put', value: 'c' });
    gone.discard();
    t = 3;
    b.unknown();
    const g = rec.invoke(0, 'k', { type: 'get' });
    t = 4;
    g.ok({ type: 'found', value: 'b', version: 'v2' });
    const pending = rec.invoke(3, 'k', { type: 'delete' });
    const h = rec.history();
    expect(h.map((o) => [o.id, o.call, o.ret])).toEqual([
      [0, 0, 1],
      [1, 2, null],
      [3, 3, 4],
      [4, 4, null],
    ]);
    expect(pending.call).toBe(4);
    expect(rec.check().ok).toBe(true);
    expect(() => a.ok({ type: 'written', version: 'v1' })).toThrow(/already resolved/);
    const bad = rec.invoke(0, 'k', { type: 'get' });
    expect(() => bad.ok({ type: 'deleted' })).toThrow(/cannot answer/);
    bad.ok({ type: 'absent' }); // still pending after the rejected output
    t = 10;
    const settled = rec.invoke(1, 'k', { type: 'put', value: 'z' });
    t = 11;
    expect(settled.unknown({ settled: true })).toMatchObject({ call: 10, ret: 11, output: null });
  });

  it('defaults to performance.now()', () => {
    const rec = new HistoryRecorder();
    const before = performance.now();
    const h = rec.invoke(0, 'k', { type: 'get' });
    h.ok({ type: 'absent' });
    const [o] = rec.history();
    expect(o!.call).toBeGreaterThanOrEqual(before);
    expect(o!.ret!).toBeGreaterThanOrEqual(o!.call);
  });
});

// ---------------------------------------------------------------------------------------
// A brute-force reference: every order of the known-outcome ops and any subset of the
// unknown-outcome ones that respects real time, run on a plain register. An unknown write's
// version, never seen, is tried as every version the history mentions and as a fresh one.

type RefState = { readonly value: string; readonly version: string } | null;
const BAD = Symbol('impossible');

function refStep(s: RefState, op: KvOp, chosen: string): RefState | typeof BAD {
  const i = op.input;
  const o = op.output;
  switch (i.type) {
    case 'get':
      if (o === null) return s;
      if (o.type === 'absent') return s === null ? s : BAD;
      return o.type === 'found' && s !== null && s.value === o.value && s.version === o.version ? s : BAD;
    case 'put':
      if (o === null) return { value: i.value, version: chosen };
      if (o.type !== 'written' || (o.created === true && s !== null) || (o.created === false && s === null)) return BAD;
      return { value: i.value, version: o.version };
    case 'cas': {
      const match = s !== null && s.version === i.expectedVersion;
      if (o === null) return match ? { value: i.value, version: chosen } : BAD;
      if (o.type === 'failed') return match ? BAD : s;
      return o.type === 'written' && match && o.created !== true ? { value: i.value, version: o.version } : BAD;
    }
    case 'create':
      if (o === null) return s === null ? { value: i.value, version: chosen } : BAD;
      if (o.type === 'failed') return s === null ? BAD : s;
      return o.type === 'written' && s === null && o.created !== false ? { value: i.value, version: o.version } : BAD;
    case 'delete': {
      const e = i.expectedVersion;
      const match = s !== null && (e === undefined || s.version === e);
      if (o === null || o.type === 'deleted') return match ? null : BAD;
      if (o.type === 'not_found') return s === null ? s : BAD;
      if (o.type === 'failed') return e !== undefined && !match ? s : BAD;
      return BAD;
    }
  }
}

function bruteForce(h: readonly KvOp[], maxDelay = Infinity): boolean {
  const versions = new Set<string>(['fresh']);
  for (const op of h) {
    if ('expectedVersion' in op.input && op.input.expectedVersion !== undefined) versions.add(op.input.expectedVersion);
    if (op.output !== null && 'version' in op.output) versions.add(op.output.version);
  }
  const done = new Array<boolean>(h.length).fill(false);
  const knownLeft = (): boolean => h.some((op, k) => !done[k] && op.output !== null);
  const ready = (k: number): boolean =>
    h.every((a, j) => j === k || done[j] || a.output === null || a.ret === null || !(a.ret < h[k]!.call)) &&
    // An unknown op takes effect by its ret if given, else by call + maxDelay: before any
    // op called after that.
    (h[k]!.output !== null || h.every((b, j) => !done[j] || b.call <= (h[k]!.ret ?? h[k]!.call + maxDelay)));
  const go = (s: RefState): boolean => {
    if (!knownLeft()) return true;
    for (let k = 0; k < h.length; k++) {
      if (done[k] || !ready(k)) continue;
      const op = h[k]!;
      for (const v of op.output === null ? versions : ['-']) {
        const ns = refStep(s, op, v);
        if (ns === BAD) continue;
        done[k] = true;
        const ok = go(ns);
        done[k] = false;
        if (ok) return true;
      }
    }
    return false;
  };
  return go(null);
}

const arbSmallOp = fc.record({
  client: fc.nat({ max: 3 }),
  call: fc.nat({ max: 12 }),
  dur: fc.nat({ max: 6 }),
  /** 0: known outcome; 1: unknown; 2: unknown but settled by its return time. */
  unknown: fc.constantFrom(0, 0, 0, 0, 1, 2),
  kind: fc.constantFrom('get', 'put', 'cas', 'create', 'delete', 'cdelete'),
  value: fc.constantFrom('a', 'b', 'c'),
  version: fc.constantFrom('v1', 'v2', 'v3'),
  version2: fc.constantFrom('v1', 'v2', 'v3'),
  outcome: fc.nat({ max: 5 }),
  created: fc.constantFrom<boolean | undefined>(true, false, undefined),
});

function smallHistory(specs: readonly (typeof arbSmallOp extends fc.Arbitrary<infer T> ? T : never)[]): KvOp[] {
  return specs.map((x, id): KvOp => {
    const ret = x.unknown === 1 ? null : x.call + x.dur;
    const base = { id, client: x.client, key: 'k', call: x.call, ret };
    const written: KvOutput = { type: 'written', version: x.version2, ...(x.created === undefined ? {} : { created: x.created }) };
    const fail = x.outcome % 2 === 0;
    switch (x.kind) {
      case 'get':
        return { ...base, input: { type: 'get' }, output: fail ? { type: 'absent' } : { type: 'found', value: x.value, version: x.version } };
      case 'put':
        return { ...base, input: { type: 'put', value: x.value }, output: written };
      case 'cas':
        return { ...base, input: { type: 'cas', expectedVersion: x.version, value: x.value }, output: fail ? { type: 'failed' } : written };
      case 'create':
        return { ...base, input: { type: 'create', value: x.value }, output: fail ? { type: 'failed' } : written };
      case 'delete':
        return { ...base, input: { type: 'delete' }, output: fail ? { type: 'not_found' } : { type: 'deleted' } };
      default:
        return {
          ...base,
          input: { type: 'delete', expectedVersion: x.version },
          output: x.outcome % 3 === 0 ? { type: 'failed' } : x.outcome % 3 === 1 ? { type: 'deleted' } : { type: 'not_found' },
        };
    }
  }).map((op, k) => (specs[k]!.unknown !== 0 ? { ...op, output: null } : op));
}

describe('agrees with a brute-force reference', () => {
  it('on small random histories (random outputs, repeated values and versions, unknown outcomes)', () => {
    let accepted = 0;
    let rejected = 0;
    fc.assert(
      fc.property(fc.array(arbSmallOp, { minLength: 1, maxLength: 6 }), fc.constantFrom(Infinity, Infinity, 0, 2, 5), (specs, maxDelay) => {
        const h = smallHistory(specs);
        const expected = bruteForce(h, maxDelay);
        const r = checkLinearizable(h, { unknownMaxDelay: maxDelay });
        expect(r.ok, `${formatCheckResult(r)}\n${JSON.stringify(h)}`).toBe(expected);
        // A failing window that starts at the beginning fails on its own.
        if (r.ok === false && r.smallestFailingWindow?.from === null) {
          expect(checkLinearizable(r.smallestFailingWindow.ops, { unknownMaxDelay: maxDelay }).ok).toBe(false);
        }
        if (expected) accepted++;
        else rejected++;
      }),
      { numRuns: 3000 },
    );
    // Both answers were exercised.
    expect(accepted).toBeGreaterThan(300);
    expect(rejected).toBeGreaterThan(300);
  });
});

describe('properties over simulated atomic registers', () => {
  it('accepts every history of an atomic register', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(arbSpec, { maxLength: 60 }), fc.boolean(), (clients, specs, twoKeys) => {
        const h = twoKeys
          ? [...simulate('a', specs.filter((_, i) => i % 2 === 0), clients, 0), ...simulate('b', specs.filter((_, i) => i % 2 === 1), clients, 1000)]
          : simulate('k', specs, clients, 0);
        const r = checkLinearizable(h);
        expect(r.ok, formatCheckResult(r)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects it once a read returns a value that was certainly overwritten before the read began', () => {
    // Construction: random ops, then two puts alone in time (x, then y), more random ops,
    // and a final read alone. Any write W that returned before y was called is overwritten
    // by y (values are unique, so nothing writes W's value again); a read called after y
    // returned cannot return W's value. Mutating one such read is always a violation.
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(arbSpec, { maxLength: 30 }),
        fc.array(arbSpec, { maxLength: 30 }),
        fc.nat(),
        fc.nat(),
        (clients, before, after, pickW, pickR) => {
          const h = simulate('k', [...before, soloPut, soloPut, ...after, soloGet], clients, 0);
          expect(checkLinearizable(h).ok).toBe(true);
          const y = h[before.length + 1]!;
          const writers = h.filter((o) => o.output?.type === 'written' && o.ret! < y.call);
          const readers = h.filter((o) => o.input.type === 'get' && o.output !== null && o.call > y.ret!);
          const r = readers[pickR % readers.length]!;
          const mutated = readReturning(r, writers[pickW % writers.length]!);
          const res = checkLinearizable(h.map((o) => (o.id === r.id ? mutated : o)));
          expect(res.ok).toBe(false);
          if (res.ok === false) expect(res.smallestFailingWindow?.ops.some((o) => o.id === r.id)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('performance', () => {
  it('checks 5 keys x 2,000 ops with 8 concurrent clients per key quickly', () => {
    const prng = createPrng(2024);
    const keys = ['k0', 'k1', 'k2', 'k3', 'k4'];
    const h = keys.flatMap((k, i) => simulate(k, randomSpecs(prng, 2000, 8, 0.005), 8, i * 10_000));
    const unknown = h.filter((o) => o.output === null).length;
    const t0 = performance.now();
    const r = checkLinearizable(h);
    const ms = performance.now() - t0;
    console.log(`[linearizability] ${h.length} ops (${keys.length} keys, 8 clients each, ${unknown} unknown outcomes) checked in ${ms.toFixed(0)} ms`);
    expect(r.ok, formatCheckResult(r)).toBe(true);
    expect(ms).toBeLessThan(20_000);
  });

  it('checks 2,000 ops of 16 concurrent clients with a few unknown outcomes', () => {
    for (const seed of [1, 2, 3]) {
      const h = simulate('k', randomSpecs(createPrng(seed), 2000, 16, 0.005), 16, 0);
      const t0 = performance.now();
      const r = checkLinearizable(h);
      const ms = performance.now() - t0;
      console.log(`[linearizability] 2000 ops, 16 clients, ${h.filter((o) => o.output === null).length} unknown outcomes (seed ${seed}): ${ms.toFixed(0)} ms`);
      expect(r.ok, formatCheckResult(r)).toBe(true);
      expect(ms).toBeLessThan(20_000);
    }
  });

  it('finds a violation near the end of a 2,000-op, 8-client history', () => {
    const prng = createPrng(99);
    const specs = [...randomSpecs(prng, 1900, 8, 0.005), soloPut, soloPut, ...randomSpecs(prng, 100, 8, 0), soloGet];
    const h = simulate('k', specs, 8, 0);
    const last = h[h.length - 1]!;
    const bad = [...h.slice(0, -1), readReturning(last, h[1900]!)];
    const t0 = performance.now();
    const r = checkLinearizable(bad);
    const ms = performance.now() - t0;
    console.log(`[linearizability] violation at the end of ${h.length} ops (8 clients) found in ${ms.toFixed(0)} ms, window ${r.ok === false ? r.smallestFailingWindow?.ops.length : '-'} ops`);
    expect(r.ok).toBe(false);
    expect(ms).toBeLessThan(20_000);
  });
});
