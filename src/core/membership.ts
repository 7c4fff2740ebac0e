// The membership config, its legal transitions, and who proposes what.
//
// Configs form a log: config e+1 = applyChange(config e, change), decided by Paxos among
// the voters of config e (see paxos.ts and node.ts). Everything here is a pure function of
// its arguments.

import { epoch as toEpoch, NODE_ID_PATTERN, type Epoch, type NodeId } from './types.js';

/** Liveness and catch-up: heard and serving, not heard, or heard again and catching up. */
export type MemberStatus = 'active' | 'down' | 'joining';

/**
 * Ownership, orthogonal to status (a member being decommissioned can die half way):
 *   owner     its vnode tokens are on the ring; it owns partitions.
 *   incoming  added, tokens not placed yet: it copies the partitions it will own (a
 *             learner) while the owners keep serving. `mark-active` places its tokens.
 *   outgoing  decommissioning: still an owner, while the members that will own its
 *             partitions copy them. `remove` then takes its tokens off the ring.
 * At most one member is incoming or outgoing at a time (one data movement at a time).
 */
export type Placement = 'owner' | 'incoming' | 'outgoing';

export interface Member {
  readonly id: NodeId;
  readonly peerUrl: string;
  readonly clientUrl: string;
  readonly status: MemberStatus;
  readonly placement: Placement;
}

export interface ClusterConfig {
  readonly epoch: Epoch;
  /** Sorted by id; ids are unique. */
  readonly members: readonly Member[];
  readonly replicationFactor: number;
  readonly minInSync: number;
  readonly partitions: number;
  readonly vnodesPerNode: number;
}

/** A membership change is data: it travels as the Paxos value and is stored in the log. */
export type ConfigChange =
  | { readonly kind: 'mark-down'; readonly id: NodeId }
  | { readonly kind: 'mark-joining'; readonly id: NodeId }
  | { readonly kind: 'mark-active'; readonly id: NodeId }
  | { readonly kind: 'add'; readonly member: NewMember }
  | { readonly kind: 'decommission'; readonly id: NodeId }
  | { readonly kind: 'remove'; readonly id: NodeId }
  | { readonly kind: 'noop' };

export interface NewMember {
  readonly id: NodeId;
  readonly peerUrl: string;
  readonly clientUrl: string;
}

export interface ChangeError {
  readonly error: string;
}

/** Members per config; keeps quorums, heartbeats and the ring small and bounded. */
export const membersMax = 64;
/** Longest accepted peer or client URL. */
export const urlLengthMax = 512;

export interface ClusterParams {
  readonly replicationFactor: number;
  readonly minInSync: number;
  readonly partitions: number;
  readonly vnodesPerNode: number;
}

/** Epoch 1: every initial member active. Every node must be given the same list. */
export function initialConfig(members: readonly NewMember[], params: ClusterParams): ClusterConfig {
  const cfg: ClusterConfig = {
    epoch: toEpoch(1),
    members: sortMembers(members.map((m) => ({ ...m, status: 'active' as const, placement: 'owner' as const }))),
    ...params,
  };
  const problem = validateConfig(cfg);
  if (problem !== null) throw new Error(`invalid initial config: ${problem}`);
  return cfg;
}

/**
 * Structural rules every config obeys. Returns a description of the first broken rule,
 * or null. Used on configs from the network (drop if broken) and in invariant checks.
 */
export function validateConfig(cfg: ClusterConfig): string | null {
  if (!Number.isSafeInteger(cfg.epoch) || cfg.epoch < 1) return `bad epoch ${cfg.epoch}`;
  if (!Array.isArray(cfg.members)) return 'members is not a list';
  if (cfg.members.length === 0) return 'no members';
  if (cfg.members.length > membersMax) return `more than ${membersMax} members`;
  for (let i = 0; i < cfg.members.length; i++) {
    const m = cfg.members[i];
    if (m === undefined) return 'hole in members';
    if (typeof m.id !== 'string' || !NODE_ID_PATTERN.test(m.id)) return `bad member id ${String(m.id)}`;
    const prev = cfg.members[i - 1];
    if (prev !== undefined && !(prev.id < m.id)) return `member ids not unique and sorted at ${m.id}`;
    if (!isStatus(m.status)) return `bad status for ${m.id}`;
    if (m.placement !== 'owner' && m.placement !== 'incoming' && m.placement !== 'outgoing') return `bad placement for ${m.id}`;
    if (!isUrl(m.peerUrl) || !isUrl(m.clientUrl)) return `bad url for ${m.id}`;
  }
  if (!positiveInt(cfg.replicationFactor)) return 'bad replicationFactor';
  if (!positiveInt(cfg.minInSync) || cfg.minInSync > cfg.replicationFactor) return 'bad minInSync';
  if (!positiveInt(cfg.partitions) || !positiveInt(cfg.vnodesPerNode)) return 'bad partitions/vnodes';
  if (cfg.members.filter((m) => m.placement !== 'owner').length > 1) return 'more than one member moving';
  if (!cfg.members.some((m) => m.placement !== 'incoming')) return 'no owner';
  return null;
}

/**
 * The next config, or why the change is illegal. Legal transitions:
 *
 *   mark-down     active | joining -> down           always allowed: it records a fact
 *                 (the node is unreachable). Refusing it would not bring the node back; it
 *                 would only make the data layer keep waiting for it. Data safety when too
 *                 few copies remain is the partition layer's job (it answers 503 when fewer
 *                 than minInSync replicas are in sync).
 *   mark-joining  down -> joining                    its heartbeats came back
 *   mark-active   joining -> active                  it has caught up (readyToActivate); an
 *                 incoming member becomes an owner here: its tokens go on the ring.
 *   add           (absent) -> joining, incoming      a new id; only while nothing moves
 *   decommission  owner -> outgoing                  only while nothing moves, and only if
 *                 minInSync owners, one of them active, remain
 *   remove        incoming | outgoing -> (absent)    cancels an add, or ends a
 *                 decommission once the new owners caught up (readyToRemove). An owner is
 *                 never removed directly: its data must move first. Refused if fewer than
 *                 minInSync members (or, for an active member, active members) would
 *                 remain.
 *   noop          no member changes; only the epoch moves.
 */
export function applyChange(cfg: ClusterConfig, change: ConfigChange): ClusterConfig | ChangeError {
  const next = (members: readonly Member[]): ClusterConfig => ({
    ...cfg,
    epoch: toEpoch(cfg.epoch + 1),
    members,
  });
  switch (change.kind) {
    case 'noop':
      return next(cfg.members);
    case 'mark-down':
      return transition(cfg, change.id, ['active', 'joining'], 'down', next);
    case 'mark-joining':
      return transition(cfg, change.id, ['down'], 'joining', next);
    case 'mark-active': {
      const m = findMember(cfg, change.id);
      if (m?.status !== 'joining') return transition(cfg, change.id, ['joining'], 'active', next);
      // An incoming member's tokens go on the ring: the switch of rule 6.
      const placement = m.placement === 'incoming' ? 'owner' : m.placement;
      return next(cfg.members.map((x) => (x.id === change.id ? { ...x, status: 'active' as const, placement } : x)));
    }
    case 'add': {
      const m = change.member;
      if (typeof m.id !== 'string' || !NODE_ID_PATTERN.test(m.id)) return { error: 'invalid member id' };
      if (!isUrl(m.peerUrl) || !isUrl(m.clientUrl)) return { error: `invalid urls for ${m.id}` };
      if (findMember(cfg, m.id) !== undefined) return { error: `${m.id} is already a member` };
      if (cfg.members.length >= membersMax) return { error: `cluster already has ${membersMax} members` };
      const busy = moving(cfg);
      if (busy !== null) return { error: inProgress(busy) };
      const added: Member = { id: m.id, peerUrl: m.peerUrl, clientUrl: m.clientUrl, status: 'joining', placement: 'incoming' };
      return next(sortMembers([...cfg.members, added]));
    }
    case 'decommission': {
      const m = findMember(cfg, change.id);
      if (m === undefined) return { error: `${change.id} is not a member` };
      const busy = moving(cfg);
      if (busy !== null) return { error: inProgress(busy) };
      const owners = cfg.members.filter((x) => x.id !== change.id && x.placement === 'owner');
      if (owners.length < Math.max(1, cfg.minInSync) || countActive(owners) === 0) {
        return { error: `decommissioning ${change.id} would leave fewer than minInSync=${cfg.minInSync} members owning data` };
      }
      return next(cfg.members.map((x) => (x.id === change.id ? { ...x, placement: 'outgoing' as const } : x)));
    }
    case 'remove': {
      const m = findMember(cfg, change.id);
      if (m === undefined) return { error: `${change.id} is not a member` };
      if (m.placement === 'owner') return { error: `${change.id} owns data: decommission it (its partitions move first), do not remove it` };
      const rest = cfg.members.filter((x) => x.id !== change.id);
      if (rest.length < Math.max(1, cfg.minInSync)) {
        return { error: `removing ${change.id} would leave fewer than minInSync=${cfg.minInSync} members` };
      }
      if (m.status === 'active' && countActive(rest) < cfg.minInSync) {
        return { error: `removing ${change.id} would leave fewer than minInSync=${cfg.minInSync} active members` };
      }
      return next(rest);
    }
  }
}

export function isChangeError(x: ClusterConfig | ChangeError): x is ChangeError {
  return 'error' in x;
}

/** The member whose data is moving (incoming or outgoing), if any. */
export function moving(cfg: ClusterConfig): Member | null {
  return cfg.members.find((m) => m.placement !== 'owner') ?? null;
}

function inProgress(m: Member): string {
  const what = m.placement === 'incoming' ? `${m.id} is being added (it becomes active once it holds its partitions)` : `${m.id} is being decommissioned (its partitions are moving to the other members)`;
  return `another membership change is in progress: ${what}; wait until it finishes (ringkv cluster status)`;
}

function transition(
  cfg: ClusterConfig,
  id: NodeId,
  from: readonly MemberStatus[],
  to: MemberStatus,
  next: (members: readonly Member[]) => ClusterConfig,
): ClusterConfig | ChangeError {
  const m = findMember(cfg, id);
  if (m === undefined) return { error: `${id} is not a member` };
  if (!from.includes(m.status)) return { error: `${id} is ${m.status}; cannot become ${to}` };
  return next(cfg.members.map((x) => (x.id === id ? { ...x, status: to } : x)));
}

export function findMember(cfg: ClusterConfig, id: NodeId): Member | undefined {
  return cfg.members.find((m) => m.id === id);
}

export function isMember(cfg: ClusterConfig, id: NodeId): boolean {
  return findMember(cfg, id) !== undefined;
}

/**
 * The voters of slot cfg.epoch + 1: every member of cfg, whatever its status (a down member
 * still holds its acceptor state on disk and counts toward quorum; removed ones are absent).
 */
export function votersOf(cfg: ClusterConfig): readonly NodeId[] {
  return cfg.members.map((m) => m.id);
}

/** Majority of n voters. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

export function countActive(members: readonly Member[]): number {
  return members.filter((m) => m.status === 'active').length;
}

/**
 * Who proposes what: the change the leader should propose next on its own, or null.
 * Failures first (a suspected active/joining member goes down), then returns (a down member
 * that is heard again goes joining), then promotion (a joining member that is alive and
 * `readyToActivate` goes active), then the end of a decommission (an outgoing member is
 * removed once `readyToRemove`: its partitions' new owners hold them). The leader treats
 * itself as alive.
 */
export function failureDrivenChange(
  cfg: ClusterConfig,
  self: NodeId,
  isAlive: (id: NodeId) => boolean,
  readyToActivate: (id: NodeId) => boolean,
  readyToRemove: (id: NodeId) => boolean = () => true,
): ConfigChange | null {
  const alive = (id: NodeId): boolean => id === self || isAlive(id);
  for (const m of cfg.members) {
    if (m.status !== 'down' && !alive(m.id)) return { kind: 'mark-down', id: m.id };
  }
  for (const m of cfg.members) {
    if (m.status === 'down' && alive(m.id)) return { kind: 'mark-joining', id: m.id };
  }
  for (const m of cfg.members) {
    if (m.status === 'joining' && alive(m.id) && readyToActivate(m.id)) return { kind: 'mark-active', id: m.id };
  }
  for (const m of cfg.members) {
    if (m.placement === 'outgoing' && readyToRemove(m.id)) return { kind: 'remove', id: m.id };
  }
  return null;
}

export function describeChange(c: ConfigChange): string {
  switch (c.kind) {
    case 'noop':
      return 'noop';
    case 'add':
      return `add ${c.member.id}`;
    default:
      return `${c.kind} ${c.id}`;
  }
}

function sortMembers(members: readonly Member[]): readonly Member[] {
  return [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function isStatus(s: unknown): s is MemberStatus {
  return s === 'active' || s === 'down' || s === 'joining';
}

function isUrl(s: unknown): boolean {
  return typeof s === 'string' && s.length > 0 && s.length <= urlLengthMax;
}

function positiveInt(n: unknown): boolean {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
}
