// Acceptor, proposer and learner for the config log: Multi-Paxos with alpha = 1.
//
// Slot s decides config s. Slot s can only be proposed by a node that knows config s-1
// (alpha = 1), and its voters are the members of config s-1. node.ts enforces that and
// gates every Paxos message on the sender's epoch, so an acceptor only ever accepts for the
// one open slot (its epoch + 1). That is why the acceptor below holds at most one accepted
// value.
//
// The functions here are pure: they take a state and return the next one. Persisting the
// acceptor state before the reply leaves the node is node.ts's (and the runtime's) job.

import type { NodeId } from './types.js';

/** Ballots are (round, nodeId), ordered lexicographically: no two proposers share one. */
export interface Ballot {
  readonly round: number;
  readonly id: NodeId;
}

/** Negative if a < b, 0 if equal, positive if a > b. null (no ballot) is the lowest. */
export function compareBallots(a: Ballot | null, b: Ballot | null): number {
  if (a === null) return b === null ? 0 : -1;
  if (b === null) return 1;
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export function ballotEquals(a: Ballot | null, b: Ballot | null): boolean {
  return compareBallots(a, b) === 0;
}

export function formatBallot(b: Ballot | null): string {
  return b === null ? '-' : `${b.round}.${b.id}`;
}

export interface AcceptedValue<V> {
  readonly slot: number;
  readonly ballot: Ballot;
  readonly value: V;
}

// ---------------------------------------------------------------------------------------
// Acceptor

/**
 * One promise covers every slot (Multi-Paxos): an acceptor that promised ballot b rejects
 * any prepare or accept below b, in every slot.
 */
export interface AcceptorState<V> {
  readonly promised: Ballot | null;
  readonly accepted: AcceptedValue<V> | null;
}

export function emptyAcceptor<V>(): AcceptorState<V> {
  return { promised: null, accepted: null };
}

export type AcceptorReply<V> =
  | {
      readonly ok: true;
      readonly state: AcceptorState<V>;
      /** The state changed, so it must be written to disk before the reply is sent. */
      readonly changed: boolean;
      /** For a promise: the value accepted in a slot >= fromSlot, if any. */
      readonly report: AcceptedValue<V> | null;
    }
  | { readonly ok: false; readonly promised: Ballot | null; readonly reason: string };

/** Phase 1b. Promise on ballot >= promised (>=, so a retransmitted prepare is answered again). */
export function onPrepare<V>(acc: AcceptorState<V>, ballot: Ballot, fromSlot: number): AcceptorReply<V> {
  if (compareBallots(ballot, acc.promised) < 0) {
    return { ok: false, promised: acc.promised, reason: 'promised a higher ballot' };
  }
  const changed = !ballotEquals(ballot, acc.promised);
  const report = acc.accepted !== null && acc.accepted.slot >= fromSlot ? acc.accepted : null;
  return { ok: true, state: { promised: ballot, accepted: acc.accepted }, changed, report };
}

/** Phase 2b. Accept on ballot >= promised; the accept also raises the promise. */
export function onAccept<V>(acc: AcceptorState<V>, ballot: Ballot, slot: number, value: V): AcceptorReply<V> {
  if (compareBallots(ballot, acc.promised) < 0) {
    return { ok: false, promised: acc.promised, reason: 'promised a higher ballot' };
  }
  if (acc.accepted !== null && slot < acc.accepted.slot) {
    return { ok: false, promised: acc.promised, reason: 'slot is older than the accepted one' };
  }
  const same =
    acc.accepted !== null && acc.accepted.slot === slot && ballotEquals(acc.accepted.ballot, ballot);
  if (same && ballotEquals(acc.promised, ballot)) {
    // Duplicate accept: same ballot, same slot, hence the same value (one value per ballot
    // per slot). Nothing new to persist.
    return { ok: true, state: acc, changed: false, report: null };
  }
  return { ok: true, state: { promised: ballot, accepted: { slot, ballot, value } }, changed: true, report: null };
}

/** Drop an accepted value once its slot is decided and stored in the config log. */
export function pruneAccepted<V>(acc: AcceptorState<V>, decidedThrough: number): AcceptorState<V> {
  if (acc.accepted !== null && acc.accepted.slot <= decidedThrough) return { promised: acc.promised, accepted: null };
  return acc;
}

// ---------------------------------------------------------------------------------------
// Learner: a value is decided when a majority of the slot's voters accepted the same ballot.

export interface Tally {
  readonly slot: number;
  readonly ballot: Ballot;
  readonly voters: readonly NodeId[];
  readonly quorum: number;
  readonly acks: readonly NodeId[];
}

export function createTally(slot: number, ballot: Ballot, voters: readonly NodeId[], quorum: number): Tally {
  return { slot, ballot, voters, quorum, acks: [] };
}

/** Count an `accepted` from `from`; only voters of the slot and the tally's ballot count. */
export function recordAccepted(t: Tally, from: NodeId, ballot: Ballot, slot: number): Tally {
  if (slot !== t.slot || !ballotEquals(ballot, t.ballot)) return t;
  if (!t.voters.includes(from) || t.acks.includes(from)) return t;
  return { ...t, acks: [...t.acks, from] };
}

export function isDecided(t: Tally): boolean {
  return t.acks.length >= t.quorum;
}

// ---------------------------------------------------------------------------------------
// Proposer (leader)

export type ProposerState<V> = ProposerIdle | ProposerPreparing<V> | ProposerLeading<V>;

export interface ProposerIdle {
  readonly phase: 'idle';
}

export interface ProposerPreparing<V> {
  readonly phase: 'preparing';
  readonly ballot: Ballot;
  readonly fromSlot: number;
  readonly voters: readonly NodeId[];
  readonly quorum: number;
  readonly promisedBy: readonly NodeId[];
  /** Highest-ballot value reported by a promise, for a slot >= fromSlot. */
  readonly highest: AcceptedValue<V> | null;
  readonly startedTick: number;
}

export interface ProposerLeading<V> {
  readonly phase: 'leading';
  readonly ballot: Ballot;
  readonly fromSlot: number;
  /** Acceptors whose promise for `ballot` covers every slot >= fromSlot. */
  readonly promisedBy: readonly NodeId[];
  /** A value some promise carried; it must be proposed (not our own) in its slot. */
  readonly mustPropose: AcceptedValue<V> | null;
  readonly inflight: Inflight<V> | null;
}

export interface Inflight<V> {
  readonly value: V;
  readonly tally: Tally;
  readonly lastSentTick: number;
}

export const idleProposer: ProposerIdle = { phase: 'idle' };

export function startPrepare<V>(
  ballot: Ballot,
  fromSlot: number,
  voters: readonly NodeId[],
  quorum: number,
  now: number,
): ProposerPreparing<V> {
  return { phase: 'preparing', ballot, fromSlot, voters, quorum, promisedBy: [], highest: null, startedTick: now };
}

/**
 * Phase 1b received. Once a quorum of the slot's voters promised, the proposer leads: for
 * `fromSlot` it must propose the highest-ballot value a promise carried; only if no promise
 * carried one may it propose its own.
 */
export function onPromise<V>(
  p: ProposerState<V>,
  from: NodeId,
  ballot: Ballot,
  fromSlot: number,
  report: AcceptedValue<V> | null,
): ProposerState<V> {
  if (p.phase !== 'preparing' || !ballotEquals(p.ballot, ballot) || p.fromSlot !== fromSlot) return p;
  if (!p.voters.includes(from) || p.promisedBy.includes(from)) return p;
  let highest = p.highest;
  if (report !== null && report.slot >= p.fromSlot) {
    if (highest === null || compareBallots(report.ballot, highest.ballot) > 0) highest = report;
  }
  const promisedBy = [...p.promisedBy, from];
  if (promisedBy.length < p.quorum) return { ...p, promisedBy, highest };
  return { phase: 'leading', ballot: p.ballot, fromSlot: p.fromSlot, promisedBy, mustPropose: highest, inflight: null };
}

/**
 * Multi-Paxos: may the leader skip phase 1 for `slot`? Every promise it holds was given by
 * an acceptor whose epoch was fromSlot - 1, so none of them had accepted anything in a
 * later slot, and all reject lower ballots since. Phase 1 is therefore done for `slot` as
 * long as the promisers still form a quorum of the slot's voters (membership may have
 * changed since).
 */
export function holdsQuorumFor(p: ProposerLeading<unknown>, slot: number, voters: readonly NodeId[], quorum: number): boolean {
  if (slot < p.fromSlot) return false;
  return voters.filter((v) => p.promisedBy.includes(v)).length >= quorum;
}

/** The value the leader must propose in `slot`, if a promise carried one. */
export function requiredValue<V>(p: ProposerLeading<V>, slot: number): V | null {
  return p.mustPropose !== null && p.mustPropose.slot === slot ? p.mustPropose.value : null;
}

export function startAccept<V>(
  p: ProposerLeading<V>,
  slot: number,
  value: V,
  voters: readonly NodeId[],
  quorum: number,
  now: number,
): ProposerLeading<V> {
  return { ...p, inflight: { value, tally: createTally(slot, p.ballot, voters, quorum), lastSentTick: now } };
}

/** Phase 2b received by the leader (the learner). Returns the decided value, if this made it so. */
export function onAccepted<V>(
  p: ProposerState<V>,
  from: NodeId,
  ballot: Ballot,
  slot: number,
): { readonly state: ProposerState<V>; readonly decided: V | null } {
  if (p.phase !== 'leading' || p.inflight === null) return { state: p, decided: null };
  const tally = recordAccepted(p.inflight.tally, from, ballot, slot);
  if (tally === p.inflight.tally) return { state: p, decided: null };
  const state: ProposerLeading<V> = { ...p, inflight: { ...p.inflight, tally } };
  return { state, decided: isDecided(tally) ? p.inflight.value : null };
}

export function currentBallot(p: ProposerState<unknown>): Ballot | null {
  return p.phase === 'idle' ? null : p.ballot;
}
