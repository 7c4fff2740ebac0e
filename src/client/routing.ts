// Where the client sends a request: the partition map learned from GET /v1/cluster, and
// the router that picks one endpoint per attempt. Pure: no I/O, the time is passed in.
//
// A key's partition is computed with the server's own hash (src/core/hash.ts, documented
// in docs/hashing.md); the map says which member is the partition's primary and which
// members follow it in the preference list. The router sends a keyed request straight
// to the primary. When the primary is being avoided (it just failed to answer), it tries
// the other active members of the preference list, one of which becomes the primary after
// a failover; failing those (or with no map, or for a request without a key), any
// endpoint, round-robin: every node forwards a key's request to its primary in one hop.

import { partitionOf, PARTITIONS_MAX } from '../core/hash.js';

/** The part of GET /v1/cluster that routing needs (src/http/cluster-routes.ts). */
export interface ClusterView {
  readonly epoch: number;
  readonly partitionCount: number;
  readonly members: readonly { readonly id: string; readonly clientUrl: string; readonly status: string }[];
  readonly partitions: readonly { readonly partition: number; readonly primary: string | null; readonly preference: readonly string[] }[];
}

export interface Route {
  readonly partition: number;
  /** The partition's primary in the map's epoch, or null when no member of it is active. */
  readonly primary: string | null;
  /** The primary, then the other active members of the preference list, in order. */
  readonly candidates: readonly string[];
}

/** The origin (scheme://host:port) of an http(s) URL, or null if it is not one. */
export function originOf(url: string): string | null {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

/** One epoch's partition table, with every member's client URL. Immutable. */
export class PartitionMap {
  readonly epoch: number;
  readonly partitionCount: number;
  private readonly routes: readonly Route[];
  private readonly urls = new Map<string, string>();
  private readonly ids = new Map<string, string>();
  /** Origins of the active members, in member order. */
  readonly activeOrigins: readonly string[];

  /**
   * @param nodeUrls client URLs that replace the advertised ones, by node id: for clients
   *   that reach the nodes through other addresses (port mappings, NAT, a proxy).
   */
  constructor(view: ClusterView, nodeUrls: Readonly<Record<string, string>> = {}) {
    this.epoch = view.epoch;
    this.partitionCount = view.partitionCount;
    const active = new Set<string>();
    const activeOrigins: string[] = [];
    for (const m of view.members) {
      const origin = originOf(nodeUrls[m.id] ?? m.clientUrl);
      if (origin !== null) {
        this.urls.set(m.id, origin);
        this.ids.set(origin, m.id);
      }
      if (m.status === 'active') {
        active.add(m.id);
        if (origin !== null) activeOrigins.push(origin);
      }
    }
    this.activeOrigins = activeOrigins;
    this.routes = view.partitions.map((p) => ({
      partition: p.partition,
      primary: p.primary,
      candidates: p.primary === null ? [] : [p.primary, ...p.preference.filter((id) => id !== p.primary && active.has(id))],
    }));
  }

  /** Parses the body of GET /v1/cluster; throws an Error naming the first problem. */
  static fromClusterView(body: unknown, nodeUrls?: Readonly<Record<string, string>>): PartitionMap {
    const problem = clusterViewProblem(body);
    if (problem !== null) throw new Error(`GET /v1/cluster: ${problem}`);
    return new PartitionMap(body as ClusterView, nodeUrls);
  }

  route(key: string): Route {
    return this.routes[partitionOf(key, this.partitionCount)]!;
  }

  /** The client origin of a member, if its URL is usable. */
  urlOf(id: string): string | undefined {
    return this.urls.get(id);
  }

  /** The member whose client origin this is, if any. */
  nodeAt(origin: string): string | undefined {
    return this.ids.get(origin);
  }
}

// Checked by hand rather than with zod: the client library stays quick to load, which a
// one-shot CLI command notices. Fields the client does not use are ignored.
function clusterViewProblem(v: unknown): string | null {
  if (!isObject(v)) return 'the body is not an object';
  if (!isCount(v.epoch, 0)) return 'epoch must be a non-negative integer';
  if (!isCount(v.partitionCount, 1) || v.partitionCount > PARTITIONS_MAX) return `partitionCount must be an integer in [1, ${PARTITIONS_MAX}]`;
  if (!Array.isArray(v.members)) return 'members must be an array';
  for (const [i, m] of v.members.entries()) {
    if (!isObject(m) || typeof m.id !== 'string' || m.id === '' || typeof m.clientUrl !== 'string' || typeof m.status !== 'string') {
      return `members.${i} must have id, clientUrl and status`;
    }
  }
  const P = v.partitionCount;
  if (!Array.isArray(v.partitions) || v.partitions.length !== P) return `partitions must list 0..${P - 1} in order`;
  for (const [i, p] of v.partitions.entries()) {
    if (!isObject(p) || p.partition !== i) return `partitions must list 0..${P - 1} in order`;
    if (p.primary !== null && typeof p.primary !== 'string') return `partitions.${i}.primary must be a node id or null`;
    if (!Array.isArray(p.preference) || !p.preference.every((id) => typeof id === 'string')) return `partitions.${i}.preference must be a list of node ids`;
  }
  return null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown, min: number): v is number => Number.isSafeInteger(v) && (v as number) >= min;

/** One attempt's destination. */
export interface Target {
  readonly origin: string;
  /** The member at that origin, if the map knows it. */
  readonly node: string | null;
  /**
   * True when the target is the key's primary in the map: an answer served by another
   * node (X-Ringkv-Node) then means the map is out of date.
   */
  readonly primary: boolean;
}

export class Router {
  private map: PartitionMap | null = null;
  private endpoints: readonly string[];
  private readonly avoidUntil = new Map<string, number>();
  private next = 0;

  /**
   * @param seeds origins given by the caller, tried (in order, then round-robin) when the
   *   map does not name a target.
   * @param avoidMs how long an origin that failed to answer is passed over.
   */
  constructor(
    private readonly seeds: readonly string[],
    private readonly avoidMs: number,
  ) {
    if (seeds.length === 0) throw new TypeError('at least one endpoint is needed');
    this.endpoints = seeds;
  }

  get partitionMap(): PartitionMap | null {
    return this.map;
  }

  /** Adopts a map unless it is older than the one held (a lagging node answered). */
  setMap(map: PartitionMap): boolean {
    if (this.map !== null && map.epoch < this.map.epoch) return false;
    this.map = map;
    this.endpoints = [...new Set([...this.seeds, ...map.activeOrigins])];
    return true;
  }

  /** Where the next attempt for `key` (null: a request without a key) goes. */
  pick(key: string | null, nowMs: number): Target {
    const map = this.map;
    if (map !== null && key !== null) {
      const route = map.route(key);
      for (const id of route.candidates) {
        const origin = map.urlOf(id);
        if (origin !== undefined && !this.isAvoided(origin, nowMs)) return { origin, node: id, primary: id === route.primary };
      }
    }
    return this.anyEndpoint(nowMs);
  }

  /** Passes over an origin for avoidMs after it failed to answer. */
  avoid(origin: string, nowMs: number): void {
    this.avoidUntil.set(origin, nowMs + this.avoidMs);
  }

  /** The origin answered: use it again at once. */
  answered(origin: string): void {
    if (this.avoidUntil.size > 0) this.avoidUntil.delete(origin);
  }

  isAvoided(origin: string, nowMs: number): boolean {
    const until = this.avoidUntil.get(origin);
    return until !== undefined && until > nowMs;
  }

  /** Every endpoint, those not avoided first (seeds before members). */
  endpointsByPreference(nowMs: number): string[] {
    const ok = this.endpoints.filter((o) => !this.isAvoided(o, nowMs));
    return ok.length === this.endpoints.length ? [...ok] : [...ok, ...this.endpoints.filter((o) => this.isAvoided(o, nowMs))];
  }

  /** The endpoints round-robin, skipping avoided ones; if all are avoided, the one freed first. */
  private anyEndpoint(nowMs: number): Target {
    const all = this.endpoints;
    let best = all[0]!;
    let bestUntil = Infinity;
    for (let i = 0; i < all.length; i++) {
      const origin = all[(this.next + i) % all.length]!;
      const until = this.avoidUntil.get(origin) ?? 0;
      if (until <= nowMs) {
        this.next = (this.next + i + 1) % all.length;
        return { origin, node: this.map?.nodeAt(origin) ?? null, primary: false };
      }
      if (until < bestUntil) {
        best = origin;
        bestUntil = until;
      }
    }
    return { origin: best, node: this.map?.nodeAt(best) ?? null, primary: false };
  }
}
