// A linearizability checker for histories of ringkv's per-key register (value + opaque
// version), for the simulator and the real-process fault tests.
//
// Model (one register per key; keys are independent, so the history is split by key and
// each key is checked on its own: linearizability is compositional, Herlihy & Wing 1990):
//
//   state    absent | { value, version }
//   get      -> absent                        iff absent
//            -> found(value, version)         iff present with that value and version
//   put(v)   -> written(ver[, created])       always; new state { v, ver }. `created`, when
//                                             given (201 vs 200), must say whether the key
//                                             was absent just before.
//   cas(e,v) -> written(ver)                  iff present with version e; new state { v, ver }
//            -> failed (412)                  iff absent or the version is not e
//   create(v)-> written(ver)                  iff absent (If-None-Match: *); new state { v, ver }
//            -> failed (412)                  iff present
//   delete   -> deleted                       iff present; new state absent
//            -> not_found (404)               iff absent
//   delete(e)-> deleted                       iff present with version e
//            -> failed (412)                  iff absent or the version is not e
//            -> not_found                     iff absent (ringkv answers 412 here; either is
//                                             accepted, both mean "no effect, absent")
//
// What the caller records (see HistoryRecorder):
//   * every operation that may have taken effect, with the time it was invoked (`call`,
//     just before the request is sent) and, when an answer came back, the time it came back
//     (`ret`) and its output;
//   * an operation whose outcome is unknown (timeout, connection reset, a 5xx after the
//     request may have reached a node, the process being killed mid-request...) with
//     `ret: null, output: null`. It is treated as returning at +infinity with any output: it
//     may take effect at any point after its call, or never (or, with the unknownMaxDelay
//     option, within that long after its call or never). `output: null` with `ret` set
//     means: outcome unknown, but any effect happened by `ret`;
//   * operations that definitely had no effect (a 400, a 503 that ringkv guarantees was
//     refused before anything happened, a client-side validation error) are simply left
//     out: they constrain nothing. Reads with an unknown outcome are dropped for the same
//     reason. `consistency=stale` reads are not linearizable by design: do not record them.
//
// Versions are opaque strings chosen by the system. After a put/cas/create whose answer we
// saw, the state's version is the version that answer carried. After a write whose
// outcome is unknown, the version is unknown: the state holds `version: null` plus the set
// of versions it is known NOT to be (from failed conditional ops). The first operation
// that reveals the version (a get that returns it, a successful cas/conditional delete
// that names it) binds it; a failed cas/conditional delete adds its expected version to
// the excluded set. That is exact, not an approximation: the real version is one fixed
// unknown string, and guessing it at the first place anything depends on it is the same
// as having known it all along; nothing before that point could tell the difference.
// (Only versions that something could later bind to are recorded as excluded; excluding
// any other changes nothing.) Values need not be unique, but unique values make the
// checker both stronger and faster.
//
// Algorithm: Wing & Gong's search as refined by Lowe ("Testing for linearizability",
// 2017) and used by Porcupine. The known-outcome ops become a doubly linked list of call
// and return entries in time order; the search repeatedly linearizes a pending call that
// comes before the first return entry in the list (lifting its call and return out of
// the list), and backtracks when it meets a return entry it could not get past. A cache
// of configurations (set of linearized ops as a bitset, model state) already fully
// explored prunes the search (Lowe's memoisation): each configuration is explored once.
// Refinements, each exact (cross-checked against brute force in the unit tests):
//
//   * Unknown-outcome ops are not searched over. The model state is a SET of
//     possibilities (state, which unknown ops took effect so far) - Porcupine's powerset
//     treatment of a nondeterministic model. Between two known ops, the set is closed
//     under letting any unknown op called before the frontier (the earliest return still
//     in the list) take effect; one that never does simply never took effect. A
//     possibility is dropped when another one allows at least as much with a subset of
//     the unknown ops used. Unknown ops that behave identically (same kind, expected
//     version and written value) are interchangeable: only the earliest-called unused one
//     of each class may take effect. With a deadline (unknownMaxDelay, or `ret` given), an
//     unknown op can no longer take effect once an op called after its deadline has been
//     placed, and stops mattering. Searching over unknown ops instead (Knossos-style,
//     "pending forever") blows up combinatorially with a few dozen of them.
//   * Values no read ever returns are all alike; the model stores them as one "unread"
//     value, which merges configurations that differ only in which unread value is there.
//   * A known op that loses no possibility (a read, a failed op, that leaves each one as
//     it is, or drops only ones that unknown ops can recreate right after it) is
//     linearized as soon as it is a candidate, with no alternative tried: any
//     linearization placing it later can place it there instead (partial-order
//     reduction; this is what keeps 16 concurrent clients cheap).
//   * Otherwise the op that returns first is tried first (it is the likeliest next in a
//     correct history), then the other candidates in call order.
//   * Cache entries are added when a configuration's subtree has been fully explored.
//
// Time: equal timestamps count as concurrent (a call at the same instant as another op's
// return may be ordered either way), which never rejects a correct history for clock
// granularity. Use a monotonic clock (performance.now, or the simulator's clock).
//
// Budget: maxStepsPerKey bounds the search per key (units of work: model steps, list
// moves, possibility-set operations; roughly 5-15 million a second); exhausting it
// answers 'unknown', unless the failing-window search below finds a window that fails on
// its own. On correct histories with up to 16 concurrent clients and a few unknown ops
// the search is close to linear. Proving a history WRONG needs an exhaustive search of
// everything before the violation, which the failing-window search usually avoids.
//
// On failure the checker reports the longest linearizable prefix it found (known-outcome
// ops only), why it was stuck there, and (unless disabled) a small failing time window:
// the sub-history of ops called up to `to` (those still running at `to` turned into
// unknown outcomes) and, when `from` is not null, returning at or after `from` (those
// running at `from` turned into unknown outcomes, the key starting in an arbitrary
// state; else from the beginning, the key absent). Each such relaxation only allows more
// behaviours, so a failing window proves the whole history is not linearizable. The
// window is found from where the search got stuck, by small windows sliding over the
// history, or by the shortest failing prefix, then shrunk by binary search on both ends.

export type KvInput =
  | { readonly type: 'get' }
  | { readonly type: 'put'; readonly value: string }
  | { readonly type: 'cas'; readonly expectedVersion: string; readonly value: string }
  | { readonly type: 'create'; readonly value: string }
  | { readonly type: 'delete'; readonly expectedVersion?: string };

/**
 * HTTP mapping: GET 200 -> found, GET 404 -> absent; PUT 200/201 -> written (version from
 * the ETag or body; created = status 201); 412 -> failed; DELETE 204 -> deleted,
 * DELETE 404 -> not_found.
 */
export type KvOutput =
  | { readonly type: 'found'; readonly value: string; readonly version: string }
  | { readonly type: 'absent' }
  | { readonly type: 'written'; readonly version: string; readonly created?: boolean }
  | { readonly type: 'deleted' }
  | { readonly type: 'failed' }
  | { readonly type: 'not_found' };

export interface KvOp {
  readonly id: number;
  readonly client: number;
  readonly key: string;
  /** When the request was invoked (before it was sent). */
  readonly call: number;
  /**
   * When the answer came back. null: no answer (then output is null too), the op may
   * take effect any time after `call` (but see unknownMaxDelay), or never. With output
   * null and ret set: the outcome is unknown, but whatever effect it had, it had by `ret`.
   */
  readonly ret: number | null;
  readonly input: KvInput;
  /** null = unknown outcome: the op took effect at most once, or never. */
  readonly output: KvOutput | null;
}

export interface FailingWindow {
  /** null: from the start of the history, the key initially absent; else the key in any state at `from`. */
  readonly from: number | null;
  readonly to: number;
  /** The relaxed sub-history that fails on its own (ops cut by the window have unknown outcomes). */
  readonly ops: readonly KvOp[];
}

export type CheckResult =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly key: string;
      readonly reason: string;
      /**
       * The longest prefix of a linearization the search found, in order: the known-outcome
       * ops only (unknown-outcome ops that took effect on the way are not placed).
       */
      readonly partialLinearization?: readonly KvOp[];
      readonly smallestFailingWindow?: FailingWindow;
    }
  | { readonly ok: 'unknown'; readonly key: string; readonly reason: string };

export interface CheckOptions {
  /** Search budget per key (units of work, roughly 5-15 million a second). Default 20,000,000. */
  readonly maxStepsPerKey?: number;
  /**
   * Look for a small failing window when a key fails, or when its search runs out of
   * budget (a window that fails on its own still proves a violation). Default true.
   */
  readonly minimizeWindow?: boolean;
  /** Total budget of the failing-window search of a key (default: maxStepsPerKey). */
  readonly windowMaxSteps?: number;
  /**
   * If known: an unknown-outcome op takes effect within this long after its call, or
   * never (e.g. the server's request deadline plus clock error, in the units of the clock).
   * Default Infinity (any time later). A finite bound makes many unknown ops much cheaper
   * to check and catches more (a write surfacing too late); too small a bound gives false
   * alarms.
   */
  readonly unknownMaxDelay?: number;
}

const DEFAULT_MAX_STEPS = 20_000_000;

// ---------------------------------------------------------------------------------------
// Model

type State =
  | { readonly kind: 'absent'; readonly id: string }
  /** Only as the initial state of a window: could be anything. */
  | { readonly kind: 'any'; readonly id: string }
  | {
      readonly kind: 'present';
      /** null: a value that no read in the history returns (all such values behave alike). */
      readonly value: string | null;
      /** null: written by an unknown-outcome op and not observed yet. */
      readonly version: string | null;
      /** Versions it cannot be (only while version is null), sorted. */
      readonly excluded: readonly string[];
      readonly id: string;
    };
type Present = Extract<State, { kind: 'present' }>;

const ABSENT: State = { kind: 'absent', id: 'A' };
const ANY: State = { kind: 'any', id: '*' };

function present(value: string | null, version: string | null, excluded: readonly string[] = []): Present {
  return { kind: 'present', value, version, excluded, id: JSON.stringify([value, version, excluded]) };
}

/** The state if its version can be `v` (binding an unknown version), else null. */
function withVersion(s: Present, v: string): Present | null {
  if (s.version !== null) return s.version === v ? s : null;
  return s.excluded.includes(v) ? null : present(s.value, v);
}

/**
 * The state if its version can differ from `v` (recording the exclusion), else null.
 * `bindable`: the versions anything could later bind an unseen version to; excluding any
 * other version changes nothing, so it is not recorded.
 */
function withoutVersion(s: Present, v: string, bindable: ReadonlySet<string> | null): Present | null {
  if (s.version !== null) return s.version !== v ? s : null;
  if (s.excluded.includes(v) || (bindable !== null && !bindable.has(v))) return s;
  return present(s.value, null, [...s.excluded, v].sort());
}

/** Whether everything that can happen from `b` can happen from `a` too. */
function covers(a: State, b: State): boolean {
  if (a.id === b.id || a.kind === 'any') return true;
  if (a.kind !== 'present' || b.kind !== 'present' || a.version !== null || a.value !== b.value) return false;
  if (b.version !== null) return !a.excluded.includes(b.version);
  return a.excluded.every((v) => b.excluded.includes(v));
}

/**
 * The state after the op (output null = unknown outcome, taking effect), or null if
 * impossible. `written` is the value a put/cas/create writes, or null for a value no
 * read returns.
 */
function step(s: State, input: KvInput, output: KvOutput | null, written: string | null, bindable: ReadonlySet<string> | null = null): State | null {
  switch (input.type) {
    case 'get': {
      if (output === null) return s; // never searched: unknown reads are dropped
      if (output.type === 'absent') return s.kind === 'present' ? null : ABSENT;
      if (output.type !== 'found') return null;
      if (s.kind === 'absent') return null;
      if (s.kind === 'any') return present(output.value, output.version);
      return s.value === output.value ? withVersion(s, output.version) : null;
    }
    case 'put': {
      if (output === null) return present(written, null);
      if (output.type !== 'written') return null;
      if (output.created === true && s.kind === 'present') return null;
      if (output.created === false && s.kind === 'absent') return null;
      return present(written, output.version);
    }
    case 'cas': {
      if (output !== null && output.type === 'failed') {
        if (s.kind !== 'present') return s;
        return withoutVersion(s, input.expectedVersion, bindable);
      }
      if (output !== null && (output.type !== 'written' || output.created === true)) return null;
      const version = output === null ? null : output.version;
      if (s.kind === 'absent') return null;
      if (s.kind === 'present' && withVersion(s, input.expectedVersion) === null) return null;
      return present(written, version);
    }
    case 'create': {
      if (output !== null && output.type === 'failed') return s.kind === 'absent' ? null : s;
      if (output !== null && (output.type !== 'written' || output.created === false)) return null;
      if (s.kind === 'present') return null;
      return present(written, output === null ? null : output.version);
    }
    case 'delete': {
      const e = input.expectedVersion;
      if (output !== null && output.type === 'not_found') return s.kind === 'present' ? null : ABSENT;
      if (output !== null && output.type === 'failed') {
        if (e === undefined) return null;
        return s.kind === 'present' ? withoutVersion(s, e, bindable) : s;
      }
      if (output !== null && output.type !== 'deleted') return null;
      if (s.kind === 'absent') return null;
      if (s.kind === 'present' && e !== undefined && withVersion(s, e) === null) return null;
      return ABSENT;
    }
  }
}

function describeState(s: State): string {
  if (s.kind === 'absent') return 'absent';
  if (s.kind === 'any') return 'unknown (window start)';
  const v = s.version ?? `<unknown version${s.excluded.length ? `, not ${s.excluded.join('/')}` : ''}>`;
  return `${s.value === null ? '<a value no read returns>' : JSON.stringify(s.value)}@${v}`;
}

// ---------------------------------------------------------------------------------------
// Validation and formatting

const allowedOutputs: Record<KvInput['type'], readonly KvOutput['type'][]> = {
  get: ['found', 'absent'],
  put: ['written'],
  cas: ['written', 'failed'],
  create: ['written', 'failed'],
  delete: ['deleted', 'not_found', 'failed'],
};

/** Throws on an output that the input can never produce (a recording bug, not a violation). */
export function validateOp(op: KvOp): void {
  const where = `op #${op.id} (${op.input.type} ${JSON.stringify(op.key)})`;
  if (!Number.isFinite(op.call)) throw new Error(`${where}: call time ${op.call} is not finite`);
  if (op.ret !== null && !(op.ret >= op.call)) throw new Error(`${where}: returns at ${op.ret}, before its call at ${op.call}`);
  if (op.ret === null && op.output !== null) throw new Error(`${where}: an output without a return time`);
  if (op.output === null) return;
  if (!allowedOutputs[op.input.type].includes(op.output.type)) {
    throw new Error(`${where}: a ${op.input.type} cannot answer ${op.output.type}`);
  }
  if (op.input.type === 'delete' && op.output.type === 'failed' && op.input.expectedVersion === undefined) {
    throw new Error(`${where}: an unconditional delete cannot answer failed (412)`);
  }
}

function describeInput(i: KvInput): string {
  switch (i.type) {
    case 'get':
      return 'get';
    case 'put':
      return `put ${JSON.stringify(i.value)}`;
    case 'cas':
      return `cas ${i.expectedVersion}->${JSON.stringify(i.value)}`;
    case 'create':
      return `create ${JSON.stringify(i.value)}`;
    case 'delete':
      return i.expectedVersion === undefined ? 'delete' : `delete if ${i.expectedVersion}`;
  }
}

function describeOutput(o: KvOutput | null): string {
  if (o === null) return '?';
  switch (o.type) {
    case 'found':
      return `${JSON.stringify(o.value)}@${o.version}`;
    case 'written':
      return `ok@${o.version}${o.created === undefined ? '' : o.created ? ' (created)' : ' (updated)'}`;
    default:
      return o.type;
  }
}

/** One line: `#12 c3 put "x" -> ok@v7 [10.0, 12.5]`. */
export function describeOp(op: KvOp): string {
  const end = op.output !== null ? `${op.ret}` : op.ret === null ? 'unknown' : `unknown, settled by ${op.ret}`;
  return `#${op.id} c${op.client} ${describeInput(op.input)} -> ${describeOutput(op.output)} [${op.call}, ${end}]`;
}

/** A multi-line description of a result, for assertion messages. */
export function formatCheckResult(r: CheckResult): string {
  if (r.ok === true) return 'linearizable';
  if (r.ok === 'unknown') return `undecided for key ${JSON.stringify(r.key)}: ${r.reason}`;
  const lines = [`NOT linearizable: ${r.reason}`];
  const w = r.smallestFailingWindow;
  if (w !== undefined) {
    lines.push(`smallest failing window: ${w.from === null ? 'start (absent)' : `${w.from} (any state)`} .. ${w.to}, ${w.ops.length} ops:`);
    for (const op of w.ops.slice(0, 60)) lines.push(`  ${describeOp(op)}`);
    if (w.ops.length > 60) lines.push(`  ... ${w.ops.length - 60} more`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------
// The search for one key

const isUnknown = (op: KvOp): boolean => op.output === null;
const retOf = (op: KvOp): number => (isUnknown(op) ? Infinity : op.ret!);

/**
 * One possibility: a state, and which unknown-outcome ops (bit j = the j-th of them in
 * call order) have taken effect to get there. The search carries a set of them (see the
 * header comment); `dead` marks one that a covering possibility replaced.
 */
interface Poss {
  readonly state: State;
  readonly mask: bigint;
  /**
   * The latest call among the ops placed so far on this path (only tracked when unknown
   * ops have deadlines): an unknown op whose deadline is before it can no longer take
   * effect, and its bit is set as if used.
   */
  readonly latest: number;
  dead: boolean;
}

/** Where the search got furthest before backtracking. */
interface Deepest {
  /** Longest linearized prefix of known-outcome ops (indexes into the op array). */
  readonly prefix: readonly number[];
  /** The states the key could then be in. */
  readonly states: readonly State[];
  /** The op whose return the search could not get past, and the candidates it had then. */
  readonly blocked: number;
  readonly candidates: readonly number[];
}

type SearchResult =
  | { readonly kind: 'ok'; readonly steps: number }
  | { readonly kind: 'unknown'; readonly steps: number; readonly deepest: Deepest | null }
  | { readonly kind: 'fail'; readonly steps: number; readonly deepest: Deepest };

interface Frame {
  readonly op: number;
  readonly prev: Poss[];
  readonly key: string;
  /**
   * forced: when it fails, the configuration before it fails too. urgent: the op that
   * returns first, tried before the others. scan: the others, in call order.
   */
  readonly kind: 'forced' | 'urgent' | 'scan';
}

const NIL = -1;
const HEAD = 0;

/**
 * Adds `p` to `set` unless a possibility there covers it (a state that allows at least as
 * much, reached with a subset of the unknown ops), dropping those that `p` covers.
 */
function addPoss(set: Poss[], p: Poss): boolean {
  for (const q of set) {
    if ((q.mask & p.mask) === q.mask && q.latest <= p.latest && covers(q.state, p.state)) return false;
  }
  for (let k = set.length - 1; k >= 0; k--) {
    const q = set[k]!;
    if ((q.mask & p.mask) === p.mask && p.latest <= q.latest && covers(p.state, q.state)) {
      q.dead = true;
      set.splice(k, 1);
    }
  }
  set.push(p);
  return true;
}

/**
 * `ops` must be validated, in call order, with unknown-outcome reads removed. Is there a
 * linearization of all known-outcome ops, plus any subset of the unknown ones, from
 * `initial`? Uses at most about `maxSteps` model steps.
 */
function search(ops: readonly KvOp[], initial: State, maxSteps: number, maxDelay: number): SearchResult {
  const known: number[] = [];
  const unknown: number[] = [];
  ops.forEach((o, i) => (isUnknown(o) ? unknown : known).push(i));
  const nk = known.length;
  if (nk === 0) return { kind: 'ok', steps: 0 };

  // Values no read returns are all alike (null): this merges possibilities that differ
  // only in which unread value the key holds.
  const read = new Set<string>();
  for (const o of ops) if (o.output?.type === 'found') read.add(o.output.value);
  const written = ops.map((o) => ('value' in o.input && read.has(o.input.value) ? o.input.value : null));
  // Versions an unseen version could ever be bound to (see withoutVersion).
  const bindable = new Set<string>();
  for (const o of ops) {
    if ('expectedVersion' in o.input && o.input.expectedVersion !== undefined) bindable.add(o.input.expectedVersion);
    if (o.output?.type === 'found') bindable.add(o.output.version);
  }
  const apply = (s: State, i: number): State | null => {
    const o = ops[i]!;
    return step(s, o.input, isUnknown(o) ? null : o.output, written[i] ?? null, bindable);
  };

  // Unknown-outcome ops that behave identically (same kind, expected version and written
  // value, or both unread) are interchangeable, except that an earlier-called one can go
  // wherever a later one can: only the earliest one not yet used of each class may take
  // effect. classPrev[j]: the previous member of unknown op j's class, or -1.
  const nu = unknown.length;
  const ubit = unknown.map((_, j) => 1n << BigInt(j));
  const ucall = unknown.map((i) => ops[i]!.call);
  // When an unknown op must have taken effect by, if at all: its `ret` if given, else
  // call + maxDelay. Ops placed before it must have been called by then.
  const udeadline = unknown.map((i) => ops[i]!.ret ?? ops[i]!.call + maxDelay);
  const timed = udeadline.some((d) => d !== Infinity);
  const expiredBy = (latest: number): bigint => {
    let m = 0n;
    if (timed) for (let j = 0; j < nu; j++) if (udeadline[j]! < latest) m |= ubit[j]!;
    return m;
  };
  const later = (latest: number, call: number): number => (timed && call > latest ? call : latest);
  const classPrev = new Int32Array(nu).fill(-1);
  const lastOfClass = new Map<string, number>();
  unknown.forEach((i, j) => {
    const inp = ops[i]!.input;
    // (An op with its own deadline is in a class of its own: the exchange needs the
    // earlier-called member to have the earlier deadline.)
    const own = ops[i]!.ret === null ? null : i;
    const cls = JSON.stringify([inp.type, 'expectedVersion' in inp ? inp.expectedVersion : null, written[i], own]);
    classPrev[j] = lastOfClass.get(cls) ?? -1;
    lastOfClass.set(cls, j);
  });

  // The list of known ops: entry 0 = head; known op k has call entry 1 + 2k and return
  // entry 2 + 2k. Equal times: calls before returns (concurrent).
  const n = 2 * nk + 1;
  const time = (e: number): number => {
    const op = ops[known[(e - 1) >> 1]!]!;
    return (e & 1) === 1 ? op.call : op.ret!;
  };
  const order = Array.from({ length: 2 * nk }, (_, k) => k + 1);
  order.sort((a, b) => {
    const ta = time(a);
    const tb = time(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    const ra = (a & 1) === 0 ? 1 : 0;
    const rb = (b & 1) === 0 ? 1 : 0;
    return ra !== rb ? ra - rb : a - b;
  });
  const next = new Int32Array(n).fill(NIL);
  const prev = new Int32Array(n).fill(NIL);
  let last = HEAD;
  for (const e of order) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  const unlink = (e: number): void => {
    const p = prev[e]!;
    const q = next[e]!;
    next[p] = q;
    if (q !== NIL) prev[q] = p;
  };
  const relink = (e: number): void => {
    const p = prev[e]!;
    const q = next[e]!;
    next[p] = e;
    if (q !== NIL) prev[q] = e;
  };

  const words = new Uint32Array(Math.max(1, Math.ceil(nk / 32)));
  const flip = (k: number): void => {
    words[k >>> 5]! ^= 1 << (k & 31);
  };
  // The linearized set, compactly: the count of leading full words, then the rest up to
  // the last non-zero word (it is usually "all ops up to here, plus a few").
  const setKey = (): string => {
    let lo = 0;
    while (lo < words.length && words[lo] === 0xffffffff) lo++;
    let hi = words.length - 1;
    while (hi >= lo && words[hi] === 0) hi--;
    let s = `${lo}:`;
    for (let w = lo; w <= hi; w++) {
      const x = words[w]!;
      s += String.fromCharCode(x & 0xffff, x >>> 16);
    }
    return s;
  };

  let steps = 0;
  /**
   * Unknown ops may take effect between two known ops only if called before the first
   * return still in the list (the known op that returned earliest among those not yet
   * linearized): `set` closed under those.
   */
  const callableNow = (): number => {
    let frontier = Infinity;
    for (let e = next[HEAD]!; e !== NIL; e = next[e]!) {
      if ((e & 1) === 0) {
        frontier = time(e);
        break;
      }
    }
    let callable = 0;
    while (callable < nu && ucall[callable]! <= frontier) callable++;
    return callable;
  };
  const close = (set: Poss[], callable = callableNow()): Poss[] => {
    if (callable === 0) return set;
    const work = [...set];
    while (work.length > 0) {
      const p = work.pop()!;
      if (p.dead) continue;
      for (let j = 0; j < callable; j++) {
        const b = ubit[j]!;
        if ((p.mask & b) !== 0n) continue;
        const c = classPrev[j]!;
        if ((c >= 0 && (p.mask & ubit[c]!) === 0n) || udeadline[j]! < p.latest) continue;
        steps++;
        const ns = apply(p.state, unknown[j]!);
        if (ns === null) continue;
        const latest = later(p.latest, ucall[j]!);
        const q: Poss = { state: ns, mask: p.mask | b | expiredBy(latest), latest, dead: false };
        steps += set.length;
        if (addPoss(set, q)) work.push(q);
      }
    }
    return set;
  };
  // Possibility sets, interned: the cache key holds a small number instead of the set.
  const interned = new Map<string, number>();
  const setId = (set: readonly Poss[]): number => {
    steps += set.length;
    const key = set
      .map((p) => `${p.state.id}/${p.mask.toString(36)}${timed ? `/${p.latest}` : ''}`)
      .sort()
      .join('\n');
    let id = interned.get(key);
    if (id === undefined) interned.set(key, (id = interned.size));
    return id;
  };

  // A known op that loses no possibility (a read, a failed op, that leaves each one as it
  // is, or only drops ones that unknown ops can recreate right after it) can be
  // linearized as soon as it is a candidate: any linearization that places it later can
  // place it here instead (it changes nothing now; later it could at most have bound or
  // excluded an unseen version, and leaving that open only allows more). So such a move
  // is forced: no alternative is tried at that configuration.
  const mayPreserve = known.map((i) => {
    const o = ops[i]!;
    return o.input.type === 'get' || o.output?.type === 'failed' || o.output?.type === 'not_found';
  });
  // With deadlines, moving it earlier must not put it before an unknown op whose deadline
  // is before its call.
  const preserving = (k: number, set: readonly Poss[]): boolean => {
    if (!mayPreserve[k]) return false;
    const call = ops[known[k]!]!.call;
    const kept: Poss[] = [];
    for (const p of set) {
      steps++;
      if (timed) for (let j = 0; j < nu; j++) if ((p.mask & ubit[j]!) === 0n && udeadline[j]! < call) return false;
      const ns = apply(p.state, known[k]!);
      if (ns !== null && ns.id === p.state.id) kept.push(p);
    }
    if (kept.length === set.length) return true;
    if (kept.length === 0) return false;
    // Each dropped possibility must be recreated, from one it keeps, by unknown ops that
    // can still take effect after it. (Under the deadline check above, the later `latest`
    // after it takes nothing away from the unknown ops not used yet.)
    for (const p of set) {
      if (!kept.includes(p) && !kept.some((q) => q.mask !== p.mask && (q.mask & p.mask) === q.mask)) return false;
    }
    const regen: Poss[] = [];
    for (const q of kept) {
      const latest = later(q.latest, call);
      steps += regen.length;
      addPoss(regen, { state: q.state, mask: q.mask | expiredBy(latest), latest, dead: false });
    }
    close(regen);
    return set.every((p) => regen.some((t) => (t.mask & p.mask) === t.mask && covers(t.state, p.state)));
  };
  /** The possibilities after known op k, or an empty set. */
  const after = (k: number): Poss[] => {
    const out: Poss[] = [];
    const call = ops[known[k]!]!.call;
    for (const p of poss) {
      steps++;
      const ns = apply(p.state, known[k]!);
      if (ns === null) continue;
      const latest = later(p.latest, call);
      steps += out.length;
      addPoss(out, { state: ns, mask: p.mask | expiredBy(latest), latest, dead: false });
    }
    return out;
  };

  // Configurations (linearized set, possibility set) fully explored without success.
  const failed = new Set<string>();
  const stack: Frame[] = [];
  let poss = close([{ state: initial, mask: 0n, latest: -Infinity, dead: false }]);
  let remaining = nk;
  let entry = next[HEAD]!;
  let fresh = true; // at a configuration not seen before: look for a forced move first
  let skip = -1; // the urgent op, already tried at this configuration
  /** The op with the earliest return not yet linearized: it has to go first or soon. */
  const urgent = (): number => {
    for (let e = next[HEAD]!; e !== NIL; e = next[e]!) if ((e & 1) === 0) return (e - 2) >> 1;
    return -1;
  };
  let best: Deepest | null = null;

  /** Linearizes known op k (its entries unlinked); false if the configuration reached already failed. */
  const enter = (k: number, after: Poss[], kind: Frame['kind']): boolean => {
    unlink(1 + 2 * k);
    unlink(2 + 2 * k);
    flip(k);
    const closed = close(after);
    const key = `${setKey()}|${setId(closed)}`;
    if (failed.has(key)) {
      relink(2 + 2 * k);
      relink(1 + 2 * k);
      flip(k);
      return false;
    }
    stack.push({ op: k, prev: poss, key, kind });
    poss = closed;
    remaining--;
    entry = next[HEAD]!;
    fresh = true;
    return true;
  };

  for (;;) {
    if (remaining === 0) return { kind: 'ok', steps };
    if (++steps > maxSteps) return { kind: 'unknown', steps, deepest: best };
    let stuck = false;
    if (fresh) {
      fresh = false;
      let g = NIL;
      for (let e = next[HEAD]!; e !== NIL && (e & 1) === 1; e = next[e]!) {
        if (preserving((e - 1) >> 1, poss)) {
          g = e;
          break;
        }
      }
      if (g !== NIL) {
        if (enter((g - 1) >> 1, after((g - 1) >> 1), 'forced')) continue;
        stuck = true; // the forced move leads to a failed configuration: so does this one
      } else {
        // The op that returns first is the likeliest to come next in a correct history.
        skip = urgent();
        if (skip >= 0) {
          const moved = after(skip);
          if (moved.length > 0 && enter(skip, moved, 'urgent')) continue;
        }
      }
    }
    if (!stuck && entry !== NIL && (entry & 1) === 1) {
      const k = (entry - 1) >> 1;
      if (k === skip) {
        entry = next[entry]!;
        continue;
      }
      const moved = after(k);
      if (moved.length > 0 && enter(k, moved, 'scan')) continue;
      entry = next[entry]!;
      continue;
    }
    // At a return entry (its op could not be linearized in any order tried), or a forced
    // move failed: backtrack, through forced moves too.
    if (!stuck && (best === null || stack.length > best.prefix.length)) {
      const candidates: number[] = [];
      for (let e = next[HEAD]!; e !== entry && e !== NIL; e = next[e]!) if ((e & 1) === 1) candidates.push(known[(e - 1) >> 1]!);
      best = {
        prefix: stack.map((f) => known[f.op]!),
        states: poss.map((p) => p.state),
        blocked: entry === NIL ? -1 : known[(entry - 2) >> 1]!,
        candidates,
      };
    }
    let f: Frame | undefined;
    for (;;) {
      f = stack.pop();
      if (f === undefined) break;
      failed.add(f.key);
      relink(2 + 2 * f.op);
      relink(1 + 2 * f.op);
      flip(f.op);
      remaining++;
      poss = f.prev;
      if (f.kind !== 'forced') break;
    }
    if (f === undefined) return best === null ? { kind: 'fail', steps, deepest: { prefix: [], states: poss.map((p) => p.state), blocked: -1, candidates: [] } } : { kind: 'fail', steps, deepest: best };
    if (f.kind === 'urgent') {
      skip = f.op;
      entry = next[HEAD]!;
    } else {
      skip = urgent();
      entry = next[1 + 2 * f.op]!;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Windows

/** Relaxed sub-history for the window [from, to] (see the header comment). */
function windowOps(ops: readonly KvOp[], from: number | null, to: number): KvOp[] {
  const out: KvOp[] = [];
  for (const op of ops) {
    if (op.call > to) continue;
    const r = retOf(op);
    if (from !== null && r < from) continue;
    const relax = r > to || (from !== null && op.call < from);
    if (!relax) out.push(op);
    else if (op.input.type !== 'get') out.push({ ...op, output: null });
  }
  return out;
}

/**
 * A small window of the history that fails on its own (see the header comment), or
 * undefined if none was found within the budget. `hint`: a time near the violation (where
 * the whole-history search got stuck). `proven`: the whole history is known to fail, so
 * the prefix ending at the last time fails too.
 */
function findWindow(ops: readonly KvOp[], hint: number | null, totalSteps: number, proven: boolean, maxDelay: number): FailingWindow | undefined {
  const times = [...new Set(ops.flatMap((o) => (isUnknown(o) ? [o.call] : [o.call, o.ret!])))].sort((a, b) => a - b);
  if (times.length === 0) return undefined;
  const last = times.length - 1;
  // Window [times[s], times[t]]; s = -1: from the start, the key initially absent. A probe
  // that runs out of budget counts as not failing.
  let left = totalSteps;
  const fails = (s: number, t: number): boolean => {
    if (left <= 0) return false;
    const from = s < 0 ? null : times[s]!;
    const r = search(windowOps(ops, from, times[t]!), from === null ? ABSENT : ANY, Math.min(left, Math.ceil(totalSteps / 8)), maxDelay);
    left -= r.steps;
    return r.kind === 'fail';
  };
  let found: { s: number; t: number } | null = null;
  // 1. Windows ending at the hint, reaching further and further back.
  if (hint !== null) {
    const t = Math.max(0, times.findIndex((x) => x >= hint));
    for (let look = 4; found === null; look *= 2) {
      const s = t - look < 0 ? -1 : t - look;
      if (fails(s, t)) found = { s, t };
      if (s < 0) break;
    }
  }
  // 2. Small windows sliding over the whole history.
  const rets = new Set(ops.filter((o) => !isUnknown(o)).map((o) => o.ret!));
  for (const look of [8, 32]) {
    for (let t = 0; found === null && t <= last; t++) {
      if (!rets.has(times[t]!)) continue;
      const s = t - look < 0 ? -1 : t - look;
      if (fails(s, t)) found = { s, t };
    }
  }
  // 3. The shortest failing prefix.
  if (found === null && proven) {
    let lo = 0;
    let hi = last;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (fails(-1, mid)) hi = mid;
      else lo = mid + 1;
    }
    if (hi < last || fails(-1, last)) found = { s: -1, t: hi };
  }
  if (found === null) return undefined;
  // Shrink: the latest start that still fails, then the earliest end.
  let lo = found.s;
  let hi = found.t;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (fails(mid, found.t)) lo = mid;
    else hi = mid - 1;
  }
  const s = lo;
  lo = Math.max(s, 0);
  hi = found.t;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (fails(s, mid)) hi = mid;
    else lo = mid + 1;
  }
  const from = s < 0 ? null : times[s]!;
  const to = times[hi]!;
  return { from, to, ops: windowOps(ops, from, to) };
}

// ---------------------------------------------------------------------------------------
// Entry point

function byCall(a: KvOp, b: KvOp): number {
  return a.call - b.call || a.id - b.id;
}

function explain(key: string, ops: readonly KvOp[], r: Deepest, budgetOut: number | null): string {
  const known = ops.filter((o) => !isUnknown(o)).length;
  const states = [...new Map(r.states.map((x) => [x.id, x])).values()];
  const where = states.length === 1 ? describeState(states[0]!) : `one of ${states.slice(0, 6).map(describeState).join(', ')}${states.length > 6 ? ', ...' : ''}`;
  const lines = [
    budgetOut === null
      ? `key ${JSON.stringify(key)}: no linearization of its ${ops.length} ops (${ops.length - known} with unknown outcome).`
      : `key ${JSON.stringify(key)}: the search of all ${ops.length} ops (${ops.length - known} with unknown outcome) ran out of its ${budgetOut} steps, ` +
        `but the failing window below has no linearization on its own, so the whole history has none.`,
    `The longest linearizable prefix ${budgetOut === null ? '' : 'found '}places ${r.prefix.length} of the ${known} ops with a known outcome, leaving the key ${where}.`,
  ];
  if (r.blocked >= 0) lines.push(`Stuck before the return of ${describeOp(ops[r.blocked]!)}; the candidates then were:`);
  for (const c of r.candidates) {
    const op = ops[c]!;
    const written = 'value' in op.input ? op.input.value : null;
    const ok = states.some((x) => step(x, op.input, op.output, written) !== null);
    lines.push(`  ${describeOp(op)}: ${ok ? 'possible here, but leads to a dead end' : `impossible when the key is ${where}`}`);
  }
  if (r.prefix.length > 0) {
    lines.push(`Last steps of that prefix:`);
    for (const i of r.prefix.slice(-8)) lines.push(`  ${describeOp(ops[i]!)}`);
  }
  return lines.join('\n');
}

/**
 * Is the history linearizable with respect to the per-key register model? Ops on
 * different keys are checked independently. Throws on malformed ops (see validateOp).
 */
export function checkLinearizable(history: readonly KvOp[], opts: CheckOptions = {}): CheckResult {
  const maxSteps = opts.maxStepsPerKey ?? DEFAULT_MAX_STEPS;
  const maxDelay = opts.unknownMaxDelay ?? Infinity;
  if (!(maxDelay >= 0)) throw new Error(`unknownMaxDelay must be >= 0, got ${maxDelay}`);
  const ids = new Set<number>();
  const byKey = new Map<string, KvOp[]>();
  for (const op of history) {
    validateOp(op);
    if (ids.has(op.id)) throw new Error(`duplicate op id ${op.id}`);
    ids.add(op.id);
    if (op.input.type === 'get' && isUnknown(op)) continue; // an unanswered read constrains nothing
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    list.push(op);
  }
  let undecided: CheckResult | null = null;
  for (const [key, unsorted] of byKey) {
    const ops = [...unsorted].sort(byCall);
    const r = search(ops, ABSENT, maxSteps, maxDelay);
    if (r.kind === 'ok') continue;
    const d = r.deepest;
    const hint = d !== null && d.blocked >= 0 ? retOf(ops[d.blocked]!) : null;
    const wantWindow = opts.minimizeWindow !== false;
    const window = wantWindow ? findWindow(ops, hint, opts.windowMaxSteps ?? maxSteps, r.kind === 'fail', maxDelay) : undefined;
    if (r.kind === 'unknown' && window === undefined) {
      undecided ??= { ok: 'unknown', key, reason: `search budget of ${maxSteps} steps exhausted on ${ops.length} ops${wantWindow ? ', and no small failing window found' : ''}` };
      continue;
    }
    return {
      ok: false,
      key,
      reason: d === null ? `key ${JSON.stringify(key)}: a window of the history has no linearization` : explain(key, ops, d, r.kind === 'unknown' ? maxSteps : null),
      ...(d === null ? {} : { partialLinearization: d.prefix.map((i) => ops[i]!) }),
      ...(window === undefined ? {} : { smallestFailingWindow: window }),
    };
  }
  return undecided ?? { ok: true };
}

// ---------------------------------------------------------------------------------------
// Recording

export interface OpHandle {
  readonly id: number;
  /** The call time recorded at invoke(). */
  readonly call: number;
  /** The answer came back: records ret = now(). */
  ok(output: KvOutput): KvOp;
  /**
   * No answer, or an answer that does not say whether it took effect: unknown outcome.
   * `settled`: the op can no longer take effect after now (e.g. the server answered
   * that it gave up); records ret = now() with output null. Default: it may still take
   * effect later (timeout, reset, killed process): ret null.
   */
  unknown(opts?: { readonly settled?: boolean }): KvOp;
  /** Definitely no effect (400, a 503 guaranteed refused before any effect): dropped. */
  discard(): void;
}

/**
 * Collects a history. `now` must be monotonic: performance.now() (the default) for real
 * processes, the simulated clock in the simulator. Ops still pending when history() is
 * called are reported with an unknown outcome.
 */
export class HistoryRecorder {
  private readonly ops = new Map<number, KvOp>();
  private readonly pending = new Map<number, KvOp>();
  private nextId = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  invoke(client: number, key: string, input: KvInput): OpHandle {
    const id = this.nextId++;
    const call = this.now();
    const base: KvOp = { id, client, key, call, ret: null, input, output: null };
    this.pending.set(id, base);
    const settle = (): void => {
      if (!this.pending.delete(id)) throw new Error(`op #${id} was already resolved`);
    };
    return {
      id,
      call,
      ok: (output: KvOutput): KvOp => {
        const op: KvOp = { ...base, ret: Math.max(call, this.now()), output };
        validateOp(op);
        settle();
        this.ops.set(id, op);
        return op;
      },
      unknown: (opts?: { readonly settled?: boolean }): KvOp => {
        settle();
        const op: KvOp = opts?.settled === true ? { ...base, ret: Math.max(call, this.now()) } : base;
        this.ops.set(id, op);
        return op;
      },
      discard: (): void => settle(),
    };
  }

  /** Every recorded op (pending ones as unknown outcome), by id. */
  history(): KvOp[] {
    return [...this.ops.values(), ...this.pending.values()].sort((a, b) => a.id - b.id);
  }

  check(opts?: CheckOptions): CheckResult {
    return checkLinearizable(this.history(), opts);
  }
}
