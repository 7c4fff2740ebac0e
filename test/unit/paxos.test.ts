// Paxos, as a script: three acceptors, two competing proposers, one slot.
import { describe, expect, it } from 'vitest';
import {
  compareBallots,
  emptyAcceptor,
  formatBallot,
  holdsQuorumFor,
  idleProposer,
  onAccept,
  onAccepted,
  onPrepare,
  onPromise,
  requiredValue,
  startAccept,
  startPrepare,
  type AcceptorState,
  type Ballot,
  type ProposerState,
} from '../../src/core/paxos.js';
import { nodeId, type NodeId } from '../../src/core/types.js';

const [a1, a2, a3, p1, p2] = ['a1', 'a2', 'a3', 'p1', 'p2'].map(nodeId) as [NodeId, NodeId, NodeId, NodeId, NodeId];
const voters = [a1, a2, a3];
const slot = 5;

/** A tiny world: acceptors by id, proposers by id, and a transcript of what happened. */
function world() {
  const acc = new Map<NodeId, AcceptorState<string>>(voters.map((v) => [v, emptyAcceptor<string>()]));
  const prop = new Map<NodeId, ProposerState<string>>([
    [p1, idleProposer],
    [p2, idleProposer],
  ]);
  const log: string[] = [];
  const decided: string[] = [];
  return {
    log,
    decided,
    prepare(p: NodeId, round: number, to: NodeId[]) {
      const ballot: Ballot = { round, id: p };
      prop.set(p, startPrepare<string>(ballot, slot, voters, 2, 0));
      for (const a of to) {
        const r = onPrepare(acc.get(a) as AcceptorState<string>, ballot, slot);
        if (!r.ok) {
          log.push(`${a} rejects prepare ${formatBallot(ballot)} (promised ${formatBallot(r.promised)})`);
          continue;
        }
        acc.set(a, r.state);
        log.push(`${a} promises ${formatBallot(ballot)}${r.report ? ` reporting ${formatBallot(r.report.ballot)}=${r.report.value}` : ''}`);
        prop.set(p, onPromise(prop.get(p) as ProposerState<string>, a, ballot, slot, r.report));
      }
      const st = prop.get(p) as ProposerState<string>;
      log.push(`${p} is ${st.phase}`);
    },
    /** Propose: the value a promise carried, else `own`. */
    accept(p: NodeId, own: string, to: NodeId[]) {
      const st = prop.get(p) as ProposerState<string>;
      if (st.phase !== 'leading') throw new Error(`${p} is not leading`);
      const value = requiredValue(st, slot) ?? own;
      log.push(`${p} proposes ${value}`);
      let cur: ProposerState<string> = startAccept(st, slot, value, voters, 2, 0);
      for (const a of to) {
        const r = onAccept(acc.get(a) as AcceptorState<string>, st.ballot, slot, value);
        if (!r.ok) {
          log.push(`${a} rejects accept ${formatBallot(st.ballot)}`);
          continue;
        }
        acc.set(a, r.state);
        log.push(`${a} accepts ${formatBallot(st.ballot)}=${value}`);
        const res: { state: ProposerState<string>; decided: string | null } = onAccepted(cur, a, st.ballot, slot);
        cur = res.state;
        if (res.decided !== null) {
          log.push(`${p} learns ${res.decided} decided`);
          decided.push(res.decided);
        }
      }
      prop.set(p, cur);
    },
  };
}

describe('paxos', () => {
  it('ballots order by round, then node id', () => {
    expect(compareBallots({ round: 1, id: p2 }, { round: 2, id: p1 })).toBeLessThan(0);
    expect(compareBallots({ round: 2, id: p1 }, { round: 2, id: p2 })).toBeLessThan(0);
    expect(compareBallots({ round: 2, id: p1 }, { round: 2, id: p1 })).toBe(0);
    expect(compareBallots(null, { round: 0, id: p1 })).toBeLessThan(0);
  });

  it('two competing proposers decide one value', () => {
    const w = world();
    w.prepare(p1, 1, [a1, a2]);
    w.prepare(p2, 2, [a2, a3]); // p2 overtakes p1 before p1 sends its accepts
    w.accept(p1, 'add n4', [a1, a2, a3]); // only a1 still honours ballot 1
    w.accept(p2, 'remove n3', [a2, a3]);
    w.prepare(p1, 3, [a1, a2]); // p1 retries higher and must adopt p2's value
    w.accept(p1, 'add n4', [a1, a2]);
    expect(w.log).toEqual([
      'a1 promises 1.p1',
      'a2 promises 1.p1',
      'p1 is leading',
      'a2 promises 2.p2',
      'a3 promises 2.p2',
      'p2 is leading',
      'p1 proposes add n4',
      'a1 accepts 1.p1=add n4',
      'a2 rejects accept 1.p1',
      'a3 rejects accept 1.p1',
      'p2 proposes remove n3',
      'a2 accepts 2.p2=remove n3',
      'a3 accepts 2.p2=remove n3',
      'p2 learns remove n3 decided',
      'a1 promises 3.p1 reporting 1.p1=add n4',
      'a2 promises 3.p1 reporting 2.p2=remove n3',
      'p1 is leading',
      'p1 proposes remove n3',
      'a1 accepts 3.p1=remove n3',
      'a2 accepts 3.p1=remove n3',
      'p1 learns remove n3 decided',
    ]);
    expect(new Set(w.decided)).toEqual(new Set(['remove n3']));
  });

  it('an acceptor promises on an equal ballot (a retransmitted prepare) but not a lower one', () => {
    const b2: Ballot = { round: 2, id: p1 };
    const r = onPrepare(emptyAcceptor<string>(), b2, slot);
    expect(r.ok && r.changed).toBe(true);
    if (!r.ok) return;
    const again = onPrepare(r.state, b2, slot);
    expect(again.ok && !again.changed).toBe(true);
    const lower = onPrepare(r.state, { round: 1, id: p2 }, slot);
    expect(lower.ok).toBe(false);
    const acceptLower = onAccept(r.state, { round: 1, id: p2 }, slot, 'x');
    expect(acceptLower.ok).toBe(false);
  });

  it('a learner counts only voters of the slot, once each, on one ballot', () => {
    const ballot: Ballot = { round: 1, id: p1 };
    let p: ProposerState<string> = startPrepare<string>(ballot, slot, voters, 2, 0);
    p = onPromise(p, a1, ballot, slot, null);
    p = onPromise(p, a1, ballot, slot, null); // duplicate
    expect(p.phase).toBe('preparing');
    p = onPromise(p, p2, ballot, slot, null); // not a voter
    expect(p.phase).toBe('preparing');
    p = onPromise(p, a2, ballot, slot, null);
    expect(p.phase).toBe('leading');
    if (p.phase !== 'leading') return;
    let cur: ProposerState<string> = startAccept(p, slot, 'v', voters, 2, 0);
    let r = onAccepted(cur, a1, ballot, slot);
    cur = r.state;
    r = onAccepted(cur, a1, ballot, slot);
    expect(r.decided).toBeNull();
    r = onAccepted(r.state, a2, { round: 0, id: p2 }, slot); // other ballot
    expect(r.decided).toBeNull();
    r = onAccepted(r.state, a3, ballot, slot);
    expect(r.decided).toBe('v');
  });

  it('a leader keeps its phase 1 for later slots only while its promisers are a quorum of the voters', () => {
    const ballot: Ballot = { round: 1, id: p1 };
    let p: ProposerState<string> = startPrepare<string>(ballot, slot, voters, 2, 0);
    p = onPromise(onPromise(p, a1, ballot, slot, null), a2, ballot, slot, null);
    if (p.phase !== 'leading') throw new Error('expected leading');
    expect(holdsQuorumFor(p, slot + 1, voters, 2)).toBe(true);
    const grown = [...voters, nodeId('a4'), nodeId('a5')];
    expect(holdsQuorumFor(p, slot + 1, grown, 3)).toBe(false);
    expect(holdsQuorumFor(p, slot - 1, voters, 2)).toBe(false);
  });
});
