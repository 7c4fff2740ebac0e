// How membership state (Paxos acceptor and proposer state, decided configs) is kept in
// the store's metadata keyspace, and how the core's ticks map to real time.

import type { Logger } from 'pino';
import type { NewMember } from '../core/membership.js';
import * as core from '../core/node.js';
import type { PersistOp } from '../core/node.js';
import type { NodeId } from '../core/types.js';
import type { PeerTransport } from '../net/peer-transport.js';
import type { Store, WriteOp } from '../store/store.js';

const META_ACCEPTOR = 'paxos/acceptor';
const META_PROPOSER = 'paxos/proposer';
const META_CONFIG = 'paxos/config/';

const configKey = (epoch: number): string => META_CONFIG + String(epoch).padStart(15, '0');

export interface DriverOptions {
  readonly id: NodeId;
  readonly clusterName: string;
  readonly initialMembers: readonly NewMember[];
  readonly cluster: { replicationFactor: number; minInSync: number; partitions: number; vnodesPerNode: number };
  readonly heartbeatMs: number;
  readonly suspectAfterMs: number;
  readonly store: Store;
  readonly transport: PeerTransport;
  readonly logger: Logger;
}

/** The runtime tick: the core counts time in ticks of this many milliseconds. */
export function tickMsFor(heartbeatMs: number): number {
  return Math.max(10, Math.floor(heartbeatMs / 4));
}

/** Rebuilds the membership node's persisted state from the store (after a restart). */
export function loadMembershipState(store: Store): core.PersistedState {
  let s = core.emptyPersistedState();
  const acc = store.getMeta<{ promised: core.PersistedState['promised']; accepted: core.PersistedState['accepted'] }>(META_ACCEPTOR);
  if (acc !== undefined) s = core.applyPersistOp(s, { kind: 'acceptor', promised: acc.promised, accepted: acc.accepted });
  const round = store.getMeta<number>(META_PROPOSER);
  if (round !== undefined) s = core.applyPersistOp(s, { kind: 'proposer', round });
  for (const { value } of store.scanMeta<core.LogEntry>(META_CONFIG)) s = core.applyPersistOp(s, { kind: 'config', entry: value });
  return s;
}

/** The store ops for one membership persist op. */
export function membershipWriteOps(op: PersistOp): WriteOp[] {
  switch (op.kind) {
    case 'acceptor':
      return [{ kind: 'meta', key: META_ACCEPTOR, value: { promised: op.promised, accepted: op.accepted } }];
    case 'proposer':
      return [{ kind: 'meta', key: META_PROPOSER, value: op.round }];
    case 'config': {
      const e = op.entry.config.epoch;
      const old = e - core.membershipLimits.configHistoryMax;
      const ops: WriteOp[] = [{ kind: 'meta', key: configKey(e), value: op.entry }];
      if (old >= 1) ops.push({ kind: 'meta-remove', key: configKey(old) });
      return ops;
    }
  }
}
