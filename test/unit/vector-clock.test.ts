import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  EMPTY_CLOCK,
  clockFromString,
  clockToString,
  compare,
  counterOf,
  descends,
  fromEntries,
  increment,
  merge,
  versionOf,
  type ClockOrder,
  type VectorClock,
} from '../../src/core/vector-clock.js';
import { nodeId, type NodeId } from '../../src/core/types.js';

const n1 = nodeId('n1');
const n2 = nodeId('n2');
const n3 = nodeId('n3');

const clock = (text: string): VectorClock => clockFromString(text);

// A small id alphabet so that generated clocks share ids and every order shows up.
const arbId = fc.constantFrom('a', 'n1', 'n2', 'n3', 'n10', 'z-9').map(nodeId);
const arbClock: fc.Arbitrary<VectorClock> = fc
  .uniqueArray(fc.tuple(arbId, fc.integer({ min: 1, max: 5 })), { selector: ([id]) => id, maxLength: 6 })
  .map((entries) => fromEntries(entries));
// Clocks built only by increments, as the system builds them.
const arbGrownClock: fc.Arbitrary<VectorClock> = fc
  .array(arbId, { maxLength: 12 })
  .map((ids) => ids.reduce<VectorClock>((c, id) => increment(c, id), EMPTY_CLOCK));
const anyClock = fc.oneof(arbClock, arbGrownClock);

const MIRROR: Record<ClockOrder, ClockOrder> = {
  before: 'after',
  after: 'before',
  equal: 'equal',
  concurrent: 'concurrent',
};

describe('vector clock examples', () => {
  it('increments, merges and compares', () => {
    const a = increment(increment(EMPTY_CLOCK, n1), n1);
    expect(clockToString(a)).toBe('n1=2');
    const b = increment(a, n2);
    expect(clockToString(b)).toBe('n1=2;n2=1');
    expect(compare(a, b)).toBe('before');
    expect(compare(b, a)).toBe('after');
    expect(compare(b, clock('n1=2;n2=1'))).toBe('equal');
    const c = increment(a, n3);
    expect(compare(b, c)).toBe('concurrent');
    expect(clockToString(merge(b, c))).toBe('n1=2;n2=1;n3=1');
    expect(descends(merge(b, c), b)).toBe(true);
    expect(descends(b, c)).toBe(false);
    expect(compare(EMPTY_CLOCK, EMPTY_CLOCK)).toBe('equal');
    expect(compare(EMPTY_CLOCK, a)).toBe('before');
    expect(counterOf(b, n1)).toBe(2);
    expect(counterOf(b, n3)).toBe(0);
  });

  it('keeps clocks sorted by node id whatever the order of increments', () => {
    const c = increment(increment(increment(EMPTY_CLOCK, n3), n1), n2);
    expect(clockToString(c)).toBe('n1=1;n2=1;n3=1');
    expect(clockToString(fromEntries([['n2', 4], ['n1', 7]]))).toBe('n1=7;n2=4');
  });

  it('is immutable', () => {
    const c = increment(EMPTY_CLOCK, n1);
    increment(c, n1);
    expect(clockToString(c)).toBe('n1=1');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c[0])).toBe(true);
  });

  it('versions are 16 hex digits of the canonical text', () => {
    expect(versionOf(EMPTY_CLOCK)).toBe('efd01f60ba992926'); // hash64("")
    expect(versionOf(clock('n1=2;n2=1'))).toMatch(/^[0-9a-f]{16}$/);
    expect(versionOf(clock('n1=2;n2=1'))).toBe(versionOf(fromEntries([['n2', 1], ['n1', 2]])));
    expect(versionOf(clock('n1=2;n2=1'))).not.toBe(versionOf(clock('n1=2;n2=2')));
  });
});

describe('vector clock properties', () => {
  it('compare is antisymmetric', () => {
    fc.assert(
      fc.property(anyClock, anyClock, (a, b) => {
        expect(compare(b, a)).toBe(MIRROR[compare(a, b)]);
      }),
    );
  });

  it('compare agrees with descends', () => {
    fc.assert(
      fc.property(anyClock, anyClock, (a, b) => {
        const order = compare(a, b);
        expect(descends(a, b)).toBe(order === 'after' || order === 'equal');
        expect(order === 'equal').toBe(clockToString(a) === clockToString(b));
      }),
    );
  });

  it('merge is commutative, associative and idempotent', () => {
    fc.assert(
      fc.property(anyClock, anyClock, anyClock, (a, b, c) => {
        expect(merge(a, b)).toEqual(merge(b, a));
        expect(merge(merge(a, b), c)).toEqual(merge(a, merge(b, c)));
        expect(merge(a, a)).toEqual(a);
      }),
    );
  });

  it('merge(a, b) descends from both and is the least such clock', () => {
    fc.assert(
      fc.property(anyClock, anyClock, anyClock, (a, b, c) => {
        const m = merge(a, b);
        expect(descends(m, a)).toBe(true);
        expect(descends(m, b)).toBe(true);
        if (descends(c, a) && descends(c, b)) expect(descends(c, m)).toBe(true);
      }),
    );
  });

  it("increment(c, id) compares 'after' c", () => {
    fc.assert(
      fc.property(anyClock, arbId, (c, id) => {
        const next = increment(c, id);
        expect(compare(next, c)).toBe('after');
        expect(counterOf(next, id)).toBe(counterOf(c, id) + 1);
      }),
    );
  });

  it('text round-trips', () => {
    fc.assert(
      fc.property(anyClock, (c) => {
        const text = clockToString(c);
        expect(clockFromString(text)).toEqual(c);
        expect(clockToString(clockFromString(text))).toBe(text);
      }),
    );
  });
});

describe('fromEntries validation', () => {
  const bad: readonly [string, readonly (readonly [string, number])[]][] = [
    ['an upper-case id', [['N1', 1]]],
    ['an empty id', [['', 1]]],
    ['a long id', [['x'.repeat(33), 1]]],
    ['__proto__', [['__proto__', 1]]],
    ['constructor-like id with a dot', [['a.b', 1]]],
    ['a zero counter', [['n1', 0]]],
    ['a negative counter', [['n1', -1]]],
    ['a fractional counter', [['n1', 1.5]]],
    ['NaN', [['n1', Number.NaN]]],
    ['Infinity', [['n1', Number.POSITIVE_INFINITY]]],
    ['an unsafe integer', [['n1', 2 ** 53]]],
    ['a duplicate id', [['n1', 1], ['n2', 1], ['n1', 2]]],
  ];
  it.each(bad)('rejects %s with a RangeError', (_name, entries) => {
    expect(() => fromEntries(entries)).toThrow(RangeError);
  });

  it('rejects values of the wrong type from the network', () => {
    const fromNetwork = (v: unknown): VectorClock => fromEntries(v as Iterable<[string, number]>);
    expect(() => fromNetwork([['n1', '1']])).toThrow(RangeError);
    expect(() => fromNetwork([[1, 1]])).toThrow(RangeError);
    expect(() => fromNetwork([['n1']])).toThrow(RangeError);
    expect(() => fromNetwork([null])).toThrow(RangeError);
    expect(() => fromNetwork(Object.entries(JSON.parse('{"__proto__": 1}') as object))).toThrow(RangeError);
  });

  it('names the problem in the message', () => {
    expect(() => fromEntries([['n1', 0]])).toThrow(/counter of n1 must be a positive safe integer/);
    expect(() => fromEntries([['n1', 1], ['n1', 2]])).toThrow(/n1 appears more than once/);
    expect(() => fromEntries([['__proto__', 1]])).toThrow(/"__proto__"/);
  });

  it('accepts the empty clock', () => {
    expect(fromEntries([])).toEqual(EMPTY_CLOCK);
  });
});

describe('clockFromString validation', () => {
  it.each([
    'n1',
    'n1=',
    '=1',
    'n1=0',
    'n1=01',
    'n1=-1',
    'n1=1.5',
    'n1=1e3',
    'n1= 1',
    'n1=1;',
    ';n1=1',
    'n2=1;n1=1', // not sorted
    'n1=1;n1=2',
    'N1=1',
    '__proto__=1',
    'n1=99999999999999999',
  ])('rejects %j', (text) => {
    expect(() => clockFromString(text)).toThrow(RangeError);
  });

  it('accepts canonical text', () => {
    expect(clockFromString('')).toBe(EMPTY_CLOCK);
    const c = clockFromString('a=1;n1=9007199254740991');
    expect(counterOf(c, 'a' as NodeId)).toBe(1);
    expect(counterOf(c, n1)).toBe(Number.MAX_SAFE_INTEGER);
  });
});
