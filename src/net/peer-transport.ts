// Outbound peer traffic: two undici keep-alive pools per peer. Protocol messages are
// batched per peer, flushed once per event-loop turn, and sent one POST at a time on a
// connection of their own, so heartbeats and lease renewals never queue behind forwarded
// client requests or bulk admin calls (which use the other pool).
//
// `send` is best-effort: a message may be dropped (full queue, dead peer, timeout) and
// the protocol retries on its own (heartbeats, Paxos retransmission). Nothing here waits
// for an answer to a protocol message; answers arrive as messages of their own.
//
// A batch travels as MessagePack (`application/msgpack`), so record values go as raw bytes:
// JSON would need them in base64, a third larger and encoded, validated and decoded once
// per record on both sides. The peer API also accepts JSON batches (values in base64).

import { Packr } from 'msgpackr';
import { Pool } from 'undici';
import type { Logger } from 'pino';
import { peerHeaders } from './peer-auth.js';

/** Messages queued for one peer before the oldest are dropped. */
export const peerQueueMax = 1024;
/** Messages in one POST. */
export const peerBatchMax = 256;
/** Connections per peer for request/response calls (forwarded requests, admin calls). */
export const peerConnectionsMax = 8;

export const MESSAGES_PATH = '/peer/v1/messages';
export const MSGPACK_CONTENT_TYPE = 'application/msgpack';

/** Plain MessagePack maps (no msgpackr record extension), so any MessagePack reader can decode a batch. */
export const peerPackr = new Packr({ useRecords: false });

interface PeerChannel {
  /** Protocol messages: one POST in flight at a time, so one connection. */
  readonly messages: Pool;
  /** Request/response calls. */
  readonly pool: Pool;
  queue: unknown[];
  inflight: boolean;
  dropped: number;
}

export class PeerTransport {
  private readonly peers = new Map<string, PeerChannel>();
  private flushScheduled = false;
  private closed = false;

  constructor(
    private readonly secret: string | null,
    private readonly clusterName: string,
    private readonly self: string,
    private readonly log: Logger,
    private readonly timeoutMs: number,
  ) {}

  private channel(url: string): PeerChannel {
    let ch = this.peers.get(url);
    if (!ch) {
      const options = {
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        connectTimeout: Math.min(this.timeoutMs, 2000),
        keepAliveTimeout: 30_000,
      };
      ch = {
        messages: new Pool(url, { ...options, connections: 1 }),
        pool: new Pool(url, { ...options, connections: peerConnectionsMax }),
        queue: [],
        inflight: false,
        dropped: 0,
      };
      this.peers.set(url, ch);
    }
    return ch;
  }

  /** Queues a protocol message for the peer at url. Best-effort. */
  send(url: string, message: unknown): void {
    if (this.closed) return;
    const ch = this.channel(url);
    if (ch.queue.length >= peerQueueMax) {
      ch.queue.shift();
      ch.dropped++;
    }
    ch.queue.push(message);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const [url, ch] of this.peers) if (!ch.inflight && ch.queue.length > 0) void this.post(url, ch);
  }

  private async post(url: string, ch: PeerChannel): Promise<void> {
    ch.inflight = true;
    const batch = ch.queue.splice(0, peerBatchMax);
    try {
      const res = await ch.messages.request({
        method: 'POST',
        path: MESSAGES_PATH,
        headers: { ...peerHeaders(this.secret, this.clusterName, this.self), 'content-type': MSGPACK_CONTENT_TYPE },
        body: peerPackr.pack({ from: this.self, messages: batch }),
      });
      const text = await res.body.text();
      if (res.statusCode >= 400) this.log.warn({ peer: url, status: res.statusCode, body: text.slice(0, 200) }, 'peer refused messages');
    } catch (e) {
      // A dead or unreachable peer: the failure detector notices; the protocol retries.
      this.log.debug({ peer: url, err: (e as Error).message }, 'peer send failed');
    } finally {
      ch.inflight = false;
      if (ch.queue.length > 0 && !this.closed) void this.post(url, ch);
    }
  }

  /**
   * A request/response call on the peer API (forwarded client requests, admin calls).
   * `signal` abandons the call (undici rejects with an AbortError).
   */
  async request(
    url: string,
    opts: {
      method: 'GET' | 'PUT' | 'DELETE' | 'POST';
      path: string;
      headers?: Record<string, string>;
      body?: Buffer | string;
      timeoutMs?: number;
      signal?: AbortSignal;
    },
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    const ch = this.channel(url);
    const res = await ch.pool.request({
      method: opts.method,
      path: opts.path,
      headers: { ...peerHeaders(this.secret, this.clusterName, this.self), ...opts.headers },
      body: opts.body,
      headersTimeout: opts.timeoutMs ?? this.timeoutMs,
      bodyTimeout: opts.timeoutMs ?? this.timeoutMs,
      ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    });
    return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.peers.values()].flatMap((ch) => [ch.messages.destroy(), ch.pool.destroy()]));
    this.peers.clear();
  }
}
