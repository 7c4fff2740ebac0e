// Peer API authentication: every call carries the cluster secret as a bearer token and
// the cluster name. The secret is compared in constant time (through fixed-length
// digests, so the comparison does not leak the secret's length either).

import { createHash, timingSafeEqual } from 'node:crypto';

export const CLUSTER_HEADER = 'x-ringkv-cluster';
export const NODE_HEADER = 'x-ringkv-from';

export function peerHeaders(secret: string | null, clusterName: string, from: string): Record<string, string> {
  const h: Record<string, string> = { [CLUSTER_HEADER]: clusterName, [NODE_HEADER]: from };
  if (secret !== null) h.authorization = `Bearer ${secret}`;
  return h;
}

export type PeerAuthResult = { ok: true } | { ok: false; status: 401 | 403; code: 'unauthorized' | 'forbidden'; reason: string };

export class PeerAuthenticator {
  private readonly digest: Buffer | null;

  constructor(
    secret: string | null,
    private readonly clusterName: string,
  ) {
    this.digest = secret === null ? null : sha256(secret);
  }

  check(headers: Record<string, string | string[] | undefined>): PeerAuthResult {
    if (this.digest !== null) {
      const h = headers.authorization;
      if (typeof h !== 'string' || !h.startsWith('Bearer ')) {
        return { ok: false, status: 401, code: 'unauthorized', reason: 'missing cluster secret' };
      }
      if (!timingSafeEqual(sha256(h.slice(7)), this.digest)) {
        return { ok: false, status: 401, code: 'unauthorized', reason: 'wrong cluster secret' };
      }
    }
    const name = headers[CLUSTER_HEADER];
    if (name !== this.clusterName) {
      return {
        ok: false,
        status: 403,
        code: 'forbidden',
        reason: `peer belongs to cluster ${JSON.stringify(name ?? null)}, this node to ${JSON.stringify(this.clusterName)}`,
      };
    }
    return { ok: true };
  }
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * Says whether a (source, reason) pair has been logged already, so that a misconfigured
 * peer hammering the API produces one log line, not one per request. Bounded.
 */
export class LogOnce {
  private readonly seen = new Set<string>();
  constructor(private readonly entriesMax = 1024) {}

  first(key: string): boolean {
    if (this.seen.has(key)) return false;
    if (this.seen.size >= this.entriesMax) this.seen.clear();
    this.seen.add(key);
    return true;
  }
}
