// Starting a node that is added to a running cluster (`cluster.join`): before its first
// start it has no config log, so it asks the member named in `cluster.join` for the latest
// decided config over the peer API, and waits until that config lists it (an operator runs
// `ringkv cluster add`, before or after starting the node). The entry is then stored as
// this node's first config; from there Paxos catch-up (fetch/push) and the replication
// layer's learner catch-up take over, exactly as for a restarted member.

import type { Logger } from 'pino';
import { validateConfig } from '../core/membership.js';
import type { LogEntry } from '../core/node.js';
import type { NodeId } from '../core/types.js';
import { peerHeaders } from '../net/peer-auth.js';
import { logEntrySchema } from '../net/wire.js';
import { CONFIG_PATH } from '../http/peer-app.js';

export interface JoinOptions {
  readonly join: string;
  readonly self: NodeId;
  readonly advertise: { readonly peer: string; readonly client: string };
  readonly secret: string | null;
  readonly clusterName: string;
  readonly logger: Logger;
  /** Between attempts (default 250 ms: the cluster waits for a new member's first heartbeat). */
  readonly retryMs?: number;
  /** Stops waiting (the node is shutting down). */
  readonly signal?: AbortSignal;
}

/** A refusal that retrying cannot fix (wrong secret, wrong cluster, mismatched URLs). */
export class JoinError extends Error {}

/** Resolves with the first config entry that lists `self`; retries through network errors. */
export async function waitUntilAdded(o: JoinOptions): Promise<LogEntry> {
  const retryMs = o.retryMs ?? 250;
  let lastLog = -Infinity;
  const every = (ms: number, f: () => void): void => {
    if (performance.now() - lastLog >= ms) {
      lastLog = performance.now();
      f();
    }
  };
  for (;;) {
    o.signal?.throwIfAborted();
    let entry: LogEntry | null = null;
    try {
      const r = await fetch(new URL(CONFIG_PATH, o.join), {
        headers: peerHeaders(o.secret, o.clusterName, o.self),
        signal: AbortSignal.timeout(5000),
      });
      const body: unknown = await r.json().catch(() => null);
      if (r.status === 401 || r.status === 403) {
        const msg = (body as { error?: { message?: string } } | null)?.error?.message ?? `HTTP ${r.status}`;
        throw new JoinError(`cluster.join ${o.join} refused this node: ${msg} (check the cluster secret and cluster.name)`);
      }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const parsed = logEntrySchema.safeParse((body as { entry?: unknown } | null)?.entry);
      if (!parsed.success) throw new Error(`malformed config from ${o.join}: ${parsed.error.issues[0]?.message ?? ''}`);
      const problem = validateConfig(parsed.data.config as unknown as LogEntry['config']);
      if (problem !== null) throw new Error(`invalid config from ${o.join}: ${problem}`);
      entry = parsed.data as unknown as LogEntry;
    } catch (e) {
      if (e instanceof JoinError) throw e;
      every(5000, () => o.logger.warn({ join: o.join, err: (e as Error).message }, 'cannot reach the cluster.join member yet; retrying'));
    }
    if (entry !== null) {
      const me = entry.config.members.find((m) => m.id === o.self);
      if (me !== undefined) {
        if (me.peerUrl !== o.advertise.peer) {
          throw new JoinError(`${o.self} was added with peer URL ${me.peerUrl}, but this node advertises ${o.advertise.peer}; fix advertise.peer or remove and add the member again`);
        }
        o.logger.info({ epoch: entry.config.epoch, members: entry.config.members.map((m) => m.id) }, 'found this node in the cluster config; joining');
        return entry;
      }
      every(10_000, () =>
        o.logger.info(
          { join: o.join, epoch: entry!.config.epoch },
          `waiting to be added: run \`ringkv cluster add --id ${o.self} --peer ${o.advertise.peer} --client ${o.advertise.client}\` against the cluster`,
        ),
      );
    }
    await new Promise((r) => setTimeout(r, retryMs));
  }
}
