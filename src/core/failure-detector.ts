// Heartbeat ages in ticks -> 'alive' | 'suspect'.
//
// Safety never depends on this being right: a wrong suspicion costs availability (a
// needless mark-down, a needless election), never correctness. Time is the caller's tick
// counter (monotonic by construction); no clock is read here.

import type { NodeId } from './types.js';

export type Liveness = 'alive' | 'suspect';

export interface FailureDetector {
  readonly suspectTicks: number;
  /** Tick at which each tracked peer was last heard from (or first tracked: a grace period). */
  readonly lastHeardTick: Map<NodeId, number>;
  /** Tracked peers not heard from even once since they were tracked. */
  readonly neverHeard: Set<NodeId>;
}

export function createFailureDetector(suspectTicks: number): FailureDetector {
  if (!Number.isSafeInteger(suspectTicks) || suspectTicks < 1) throw new Error('suspectTicks must be >= 1');
  return { suspectTicks, lastHeardTick: new Map(), neverHeard: new Set() };
}

/**
 * Track exactly `ids`. A newly tracked peer counts as heard at `now`, so it gets one full
 * suspicion period to speak up before it is suspected (after a restart, a new leader or a
 * membership change).
 */
export function trackPeers(fd: FailureDetector, ids: readonly NodeId[], now: number): void {
  const wanted = new Set(ids);
  for (const id of [...fd.lastHeardTick.keys()]) {
    if (!wanted.has(id)) {
      fd.lastHeardTick.delete(id);
      fd.neverHeard.delete(id);
    }
  }
  for (const id of ids) {
    if (!fd.lastHeardTick.has(id)) {
      fd.lastHeardTick.set(id, now);
      fd.neverHeard.add(id);
    }
  }
}

/** Any message from a tracked peer is evidence that it is alive. Untracked peers are ignored. */
export function onHeard(fd: FailureDetector, id: NodeId, now: number): void {
  const last = fd.lastHeardTick.get(id);
  if (last === undefined) return;
  fd.neverHeard.delete(id);
  if (now > last) fd.lastHeardTick.set(id, now);
}

/** Ticks since the peer was last heard from; null if not tracked. */
export function ageTicks(fd: FailureDetector, id: NodeId, now: number): number | null {
  const last = fd.lastHeardTick.get(id);
  return last === undefined ? null : now - last;
}

/** 'suspect' once a tracked peer has been silent for more than suspectTicks (untracked: suspect). */
export function livenessOf(fd: FailureDetector, id: NodeId, now: number): Liveness {
  const age = ageTicks(fd, id, now);
  return age !== null && age <= fd.suspectTicks ? 'alive' : 'suspect';
}

export function isAlive(fd: FailureDetector, id: NodeId, now: number): boolean {
  return livenessOf(fd, id, now) === 'alive';
}
