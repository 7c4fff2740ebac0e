// What the client API needs from the node: the single-node engine (local-kv.ts)
// implements it today; the cluster router implements the same interface.

import type { ApiError } from '../http/errors.js';

export type Consistency = 'strong' | 'stale';

/** If-Match / If-None-Match, parsed. Versions are bare (no quotes). */
export interface Precondition {
  readonly ifMatch?: '*' | readonly string[];
  readonly ifNoneMatch?: '*' | readonly string[];
}

/** servedBy: the id of the node whose store answered (the X-Ringkv-Node header). */
export type GetResult =
  | { readonly found: true; readonly value: Uint8Array; readonly version: string; readonly servedBy: string }
  | { readonly found: false; readonly servedBy: string };

export interface PutResult {
  readonly created: boolean;
  readonly version: string;
  readonly servedBy: string;
}

export interface DeleteResult {
  readonly servedBy: string;
}

export interface ListResult {
  readonly keys: string[];
  /** The last key returned when more keys follow it, else null. */
  readonly next: string | null;
}

export interface KvService {
  get(key: string, consistency: Consistency): Promise<GetResult>;
  /**
   * The answer get() would give, when this node has it at once (no forward, no wait);
   * else null. Throws the ApiError get() would reject with. Optional: saves a promise
   * chain on the hottest path.
   */
  getNow?(key: string, consistency: Consistency): GetResult | null;
  /** Rejects with ApiError precondition_failed when the precondition does not hold. */
  put(key: string, value: Uint8Array, cond: Precondition): Promise<PutResult>;
  /** Rejects with ApiError not_found when absent, precondition_failed on a failed If-Match. */
  delete(key: string, cond: Precondition): Promise<DeleteResult>;
  list(prefix: string, after: string, limit: number, consistency: Consistency): Promise<ListResult>;
}

export type { ApiError };
