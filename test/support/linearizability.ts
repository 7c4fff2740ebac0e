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
//     may take effect at any point after its call, or never;
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
//
// Algorithm: Wing & Gong's search as refined by Lowe ("Testing for linearizability",
// 2017) and used by Porcupine: the history becomes a doubly linked list of call and
// return entries in time order; the search repeatedly linearizes a pending call that
// comes before the first return entry in the list (lifting its call and return out of the
// list), and backtracks when it meets a return entry that it could not linearize. A cache
// of (set of linearized operations, model state) pairs already fully explored prunes the
// search (Lowe's memoisation), so each configuration is explored at most once.
//
// Refinements for unknown-outcome operations:
//   * they never block anything (return at +infinity) and the search succeeds as soon as
//     every operation with a known outcome is linearized: the unknown ones still pending
//     simply never took effect. So an unknown op is only ever linearized WITH its effect;
//     "no effect" is leaving it pending;
//   * at each configuration, known-outcome candidates are tried before unknown ones, and
//     the cache is keyed by (known-op set, state) with the set of unknown ops consumed;
//     a configuration is pruned when an explored-and-failed one has the same known set and
//     state and consumed a SUBSET of its unknown ops (it had at least the same options).
//     Without this, k unknown writes that were overwritten unseen would multiply the work
//     by up to 2^k.
// Entries only go into the cache once their subtree is fully explored (so pruning is
// exactly "this was already shown to fail", and the subset rule stays complete).
//
// Time: equal timestamps count as concurrent (a call at the same instant as another op's
// return may be ordered either way), which never rejects a correct history for clock
// granularity. Use a monotonic clock (performance.now, or the simulator's clock).
//
// Budget: maxStepsPerKey bounds the search per key; exhausting it answers 'unknown'. With
// low concurrency (a handful of overlapping ops at any time) the search on a correct
// history is close to linear.
//
// On failure the checker reports the longest linearizable prefix it found, why it was
// stuck, and (unless disabled) a smallest failing time window found by binary search: the
// sub-history of ops called up to `to` (those still running at `to` turned into unknown
// outcomes) and, when `from` is not null, returning at or after `from` (those running at
// `from` turned into unknown outcomes, the key starting in an arbitrary state). Each such
// relaxation only allows more behaviours, so a failing window proves the whole history is
// not linearizable.

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
  /** When the answer came back; null = unknown outcome (then output is null too). */
  readonly ret: number | null;
  readonly input: KvInput;
  /** null = unknown outcome: the op may have taken effect any time after `call`, or never. */
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
      /** The longest prefix of a linearization the search found, in order. */
      readonly partialLinearization?: readonly KvOp[];
      readonly smallestFailingWindow?: FailingWindow;
    }
  | { readonly ok: 'unknown'; readonly key: string; readonly reason: string };

export interface CheckOptions {
  /** Search budget per key (loop iterations). Default 5,000,000. */
  readonly maxStepsPerKey?: number;
  /** Look for a smallest failing window when a key fails (default true). */
  readonly minimizeWindow?: boolean;
  /** Budget of each window probe (default: maxStepsPerKey). */
  readonly windowMaxSteps?: number;
}

const DEFAULT_MAX_STEPS = 5_000_000;

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

/** The state if its version can differ from `v` (recording the exclusion), else null. */
function withoutVersion(s: Present, v: string): Present | null {
  if (s.version !== null) return s.version !== v ? s : null;
  return s.excluded.includes(v) ? s : present(s.value, null, [...s.excluded, v].sort());
}

/**
 * The state after the op (output null = unknown outcome, taking effect), or null if
 * impossible. `written` is the value a put/cas/create writes, or null for a value no
 * read returns.
 */
function step(s: State, input: KvInput, output: KvOutput | null, written: string | null): State | null {
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
        return withoutVersion(s, input.expectedVersion);
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
        return s.kind === 'present' ? withoutVersion(s, e) : s;
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
  return `#${op.id} c${op.client} ${describeInput(op.input)} -> ${describeOutput(op.output)} [${op.call}, ${op.ret ?? 'unknown'}]`;
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

/** Where the search got furthest before backtracking. */
interface Deepest {
  /** Longest linearized prefix (indexes into the op array) and the state after it. */
  readonly prefix: readonly number[];
  readonly state: State;
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
  readonly prev: State;
  readonly pass: 0 | 1;
  readonly key: string;
  readonly mask: bigint;
}

const NIL = -1;
const HEAD = 0;

/**
 * `ops` must be validated, with unknown-outcome reads removed. Known ops have
 * output !== null. Returns whether some linearization of all known ops (plus any subset
 * of the unknown ones) exists starting from `initial`.
 */
function search(ops: readonly KvOp[], initial: State, maxSteps: number): SearchResult {
  const m = ops.length;
  const unknown = ops.map((o) => o.output === null);
  // Values no read returns are all alike (null): this merges configurations that differ
  // only in which unread value the key holds.
  const read = new Set<string>();
  for (const o of ops) if (o.output?.type === 'found') read.add(o.output.value);
  const written = ops.map((o) => ('value' in o.input && read.has(o.input.value) ? o.input.value : null));
  // Unknown-outcome ops that behave identically (same kind, expected version, and written
  // value, or both unread) are interchangeable, except that an earlier-called one can go
  // wherever a later one can: only the earliest not yet linearized one of each class is a
  // candidate. prevInClass[i]: the previous member of i's class (ops are in call order).
  const prevInClass = new Int32Array(m).fill(-1);
  const lastOfClass = new Map<string, number>();
  for (let i = 0; i < m; i++) {
    if (!unknown[i]) continue;
    const inp = ops[i]!.input;
    const cls = JSON.stringify([inp.type, 'expectedVersion' in inp ? inp.expectedVersion : null, written[i]]);
    prevInClass[i] = lastOfClass.get(cls) ?? -1;
    lastOfClass.set(cls, i);
  }
  const linearized = new Uint8Array(m);
  // Bit positions: known ops in a word bitset, unknown ops in a bigint mask.
  const bit = new Int32Array(m);
  let knownCount = 0;
  let unknownCount = 0;
  for (let i = 0; i < m; i++) bit[i] = unknown[i] ? unknownCount++ : knownCount++;
  if (knownCount === 0) return { kind: 'ok', steps: 0 };

  // Entries: 0 = head; op i has call entry 1 + 2i and return entry 2 + 2i.
  const n = 2 * m + 1;
  const time = (e: number): number => {
    const op = ops[(e - 1) >> 1]!;
    if ((e & 1) === 1) return op.call;
    return op.output === null || op.ret === null ? Infinity : op.ret;
  };
  const order = Array.from({ length: 2 * m }, (_, k) => k + 1);
  order.sort((a, b) => {
    const ta = time(a);
    const tb = time(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    const ra = (a & 1) === 0 ? 1 : 0; // returns after calls at equal times: concurrent
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
  const lift = (i: number): void => {
    unlink(1 + 2 * i);
    unlink(2 + 2 * i);
  };
  const unlift = (i: number): void => {
    relink(2 + 2 * i);
    relink(1 + 2 * i);
  };

  const words = new Uint32Array(Math.max(1, Math.ceil(knownCount / 32)));
  // The linearized known set, compactly: the count of leading full words, then the rest
  // up to the last non-zero word (the set is usually "all ops up to here, plus a few").
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
  const flip = (i: number): void => {
    const b = bit[i]!;
    words[b >>> 5]! ^= 1 << (b & 31);
  };

  // (known set, state) -> unknown-op masks of configurations explored and failed.
  const cache = new Map<string, bigint[]>();
  const dominated = (key: string, mask: bigint): boolean => {
    const seen = cache.get(key);
    if (seen === undefined) return false;
    for (const s of seen) if ((s & mask) === s) return true;
    return false;
  };
  const remember = (key: string, mask: bigint): void => {
    const seen = cache.get(key);
    if (seen === undefined) cache.set(key, [mask]);
    else if (mask === 0n) seen.splice(0, seen.length, 0n);
    else seen.push(mask);
  };

  const stack: Frame[] = [];
  let state = initial;
  let mask = 0n;
  let remaining = knownCount;
  let entry = next[HEAD]!;
  let pass: 0 | 1 = 0; // 0: known-outcome candidates; 1: unknown-outcome candidates
  let steps = 0;
  let best: Deepest | null = null;

  for (;;) {
    if (remaining === 0) return { kind: 'ok', steps };
    if (++steps > maxSteps) return { kind: 'unknown', steps, deepest: best };
    if (entry !== NIL && (entry & 1) === 1) {
      const i = (entry - 1) >> 1;
      const p = prevInClass[i]!;
      if (unknown[i] === (pass === 1) && (p < 0 || linearized[p] === 1)) {
        const op = ops[i]!;
        const ns = step(state, op.input, op.output, written[i] ?? null);
        if (ns !== null) {
          let nmask = mask;
          if (unknown[i]) nmask |= 1n << BigInt(bit[i]!);
          else flip(i);
          const key = `${setKey()}|${ns.id}`;
          if (!dominated(key, nmask)) {
            stack.push({ op: i, prev: state, pass, key, mask });
            state = ns;
            mask = nmask;
            lift(i);
            linearized[i] = 1;
            if (!unknown[i]) remaining--;
            entry = next[HEAD]!;
            pass = 0;
            continue;
          }
          if (!unknown[i]) flip(i);
        }
      }
      entry = next[entry]!;
      continue;
    }
    // A return entry (or the end): no candidate of this pass worked.
    if (pass === 0) {
      pass = 1;
      entry = next[HEAD]!;
      continue;
    }
    if (best === null || stack.length > best.prefix.length) {
      const candidates: number[] = [];
      for (let e = next[HEAD]!; e !== entry && e !== NIL; e = next[e]!) if ((e & 1) === 1) candidates.push((e - 1) >> 1);
      best = { prefix: stack.map((f) => f.op), state, blocked: entry === NIL ? -1 : (entry - 2) >> 1, candidates };
    }
    const f = stack.pop();
    if (f === undefined) return { kind: 'fail', steps, deepest: best };
    remember(f.key, mask);
    unlift(f.op);
    linearized[f.op] = 0;
    if (!unknown[f.op]) {
      flip(f.op);
      remaining++;
    }
    state = f.prev;
    mask = f.mask;
    pass = f.pass;
    entry = next[1 + 2 * f.op]!;
  }
}

// ---------------------------------------------------------------------------------------
// Windows

const isUnknown = (op: KvOp): boolean => op.output === null || op.ret === null;
const retOf = (op: KvOp): number => (isUnknown(op) ? Infinity : op.ret!);

/** Relaxed sub-history for the window [from, to] (see the header comment). */
function windowOps(ops: readonly KvOp[], from: number | null, to: number): KvOp[] {
  const out: KvOp[] = [];
  for (const op of ops) {
    if (op.call > to) continue;
    const r = retOf(op);
    if (from !== null && r < from) continue;
    const relax = r > to || (from !== null && op.call < from);
    if (!relax) out.push(op);
    else if (op.input.type !== 'get') out.push({ ...op, ret: null, output: null });
  }
  return out;
}

/**
 * A small window of the history that fails on its own (see the header comment), or
 * undefined if none was found within the budget. `hint`: a time near the violation (where
 * the whole-history search got stuck). `proven`: the whole history is known to fail, so
 * the prefix ending at the last time fails too.
 */
function findWindow(ops: readonly KvOp[], hint: number | null, maxSteps: number, proven: boolean): FailingWindow | undefined {
  const times = [...new Set(ops.flatMap((o) => (isUnknown(o) ? [o.call] : [o.call, o.ret!])))].sort((a, b) => a - b);
  if (times.length === 0) return undefined;
  const last = times.length - 1;
  // Window [times[s], times[t]]; s = -1: from the start, the key initially absent.
  const fails = (s: number, t: number): boolean => {
    const from = s < 0 ? null : times[s]!;
    return search(windowOps(ops, from, times[t]!), from === null ? ABSENT : ANY, maxSteps).kind === 'fail';
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
  const prefixKnown = r.prefix.filter((i) => !isUnknown(ops[i]!)).length;
  const lines = [
    budgetOut === null
      ? `key ${JSON.stringify(key)}: no linearization of its ${ops.length} ops (${ops.length - known} with unknown outcome).`
      : `key ${JSON.stringify(key)}: the search of all ${ops.length} ops (${ops.length - known} with unknown outcome) ran out of its ${budgetOut} steps, ` +
        `but the failing window below has no linearization on its own, so the whole history has none.`,
    `The longest linearizable prefix ${budgetOut === null ? '' : 'found '}places ${r.prefix.length} ops (${prefixKnown} of ${known} known), leaving the key ${describeState(r.state)}.`,
  ];
  if (r.blocked >= 0) lines.push(`Stuck before the return of ${describeOp(ops[r.blocked]!)}; the candidates then were:`);
  for (const c of r.candidates) {
    const op = ops[c]!;
    const ok = step(r.state, op.input, op.output, 'value' in op.input ? op.input.value : null) !== null;
    lines.push(`  ${describeOp(op)}: ${ok ? 'possible here, but leads to a dead end' : `impossible when the key is ${describeState(r.state)}`}`);
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
  const ids = new Set<number>();
  const byKey = new Map<string, KvOp[]>();
  for (const op of history) {
    validateOp(op);
    if (ids.has(op.id)) throw new Error(`duplicate op id ${op.id}`);
    ids.add(op.id);
    if (op.input.type === 'get' && isUnknown(op)) continue; // an unanswered read constrains nothing
    const norm: KvOp = isUnknown(op) && (op.ret !== null || op.output !== null) ? { ...op, ret: null, output: null } : op;
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    list.push(norm);
  }
  let undecided: CheckResult | null = null;
  for (const [key, unsorted] of byKey) {
    const ops = [...unsorted].sort(byCall);
    const r = search(ops, ABSENT, maxSteps);
    if (r.kind === 'ok') continue;
    const d = r.deepest;
    const hint = d !== null && d.blocked >= 0 ? retOf(ops[d.blocked]!) : null;
    const wantWindow = opts.minimizeWindow !== false;
    const window = wantWindow ? findWindow(ops, hint, opts.windowMaxSteps ?? maxSteps, r.kind === 'fail') : undefined;
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
  /** No answer, or an answer that does not say whether it took effect: unknown outcome. */
  unknown(): KvOp;
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
        settle();
        const op: KvOp = { ...base, ret: Math.max(call, this.now()), output };
        validateOp(op);
        this.ops.set(id, op);
        return op;
      },
      unknown: (): KvOp => {
        settle();
        this.ops.set(id, base);
        return base;
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
