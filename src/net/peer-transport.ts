// Outbound peer traffic. Protocol messages (heartbeats, Paxos, replication) are queued per
// peer, flushed once per event-loop turn, and written as frames on one long-lived stream
// per peer (peer-stream.ts), so they never queue behind forwarded client requests or bulk
// admin calls, which use an undici keep-alive pool of their own.
//
// `send` is best-effort: a message may be dropped (full queue, dead peer, a stream that
// failed after the write) and the protocol retries on its own (heartbeats, Paxos
// retransmission, gap requests). Nothing here waits for an answer to a protocol message;
// answers arrive as messages of their own.
//
// A batch travels in batch-codec.ts's binary layout (appends and acks in a fixed layout,
// other messages as MessagePack maps), so record values go as raw bytes: JSON would need
// them in base64, a third larger and encoded, validated and decoded once per record on
// both sides. The peer API also accepts batches as POSTs, in MessagePack or JSON (values
// in base64).

import { Pool } from 'undici';
import type { Logger } from 'pino';
import { LogOnce, peerHeaders } from './peer-auth.js';
import { OutboundStream } from './peer-stream.js';
import { encodeBatch } from './batch-codec.js';

/** Messages queued for one peer before the oldest are dropped. */
export const peerQueueMax = 1024;
/** Messages in one frame (one batch). */
export const peerBatchMax = 256;
/** A stream that does not open, or leaves frames unacknowledged, this long is replaced. */
export const streamStallMsMax = 2000;
/**
 * Connections per peer for request/response calls (forwarded requests, admin calls). A
 * forwarded put holds one for a whole replicated write (a few ms), so this bounds how
 * many puts one node can have in flight at each primary for clients that do not route:
 * at 8, one node taking 64 clients' puts did 3,000–3,700 puts/s with a p99 of 55–63 ms;
 * at 64, 4,700–5,600 with 26–36 ms (docs/design.md, known limitations).
 */
export const peerConnectionsMax = 64;

export const MESSAGES_PATH = '/peer/v1/messages';
export const MSGPACK_CONTENT_TYPE = 'application/msgpack';


interface PeerChannel {
  /** Protocol messages. */
  readonly stream: OutboundStream;
  /** Request/response calls. */
  readonly pool: Pool;
  queue: unknown[];
  /** Messages written to the stream. */
  sent: number;
  /** Messages dropped from a full queue. */
  dropped: number;
}

/** What /metrics shows of one peer's outbound traffic. */
export interface PeerStats {
  readonly peer: string;
  readonly messagesSent: number;
  readonly messagesDropped: number;
  readonly queued: number;
  readonly streamOpen: boolean;
  readonly streamOpens: number;
  readonly streamFailures: number;
}

export class PeerTransport {
  private readonly peers = new Map<string, PeerChannel>();
  private flushScheduled = false;
  private closed = false;
  private readonly logOnce = new LogOnce();

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
        stream: new OutboundStream({
          url,
          secret: this.secret,
          clusterName: this.clusterName,
          self: this.self,
          logger: this.log,
          logOnce: this.logOnce,
          stallMs: Math.min(this.timeoutMs, streamStallMsMax),
          onWritable: () => this.schedule(),
        }),
        pool: new Pool(url, { ...options, connections: peerConnectionsMax }),
        queue: [],
        sent: 0,
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
    this.schedule();
  }

  private schedule(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    for (const ch of this.peers.values()) {
      if (ch.queue.length === 0 || !ch.stream.ready()) continue;
      const bodies: Buffer[] = [];
      ch.sent += ch.queue.length;
      while (ch.queue.length > 0) bodies.push(encodeBatch(this.self, this.clusterName, ch.queue.splice(0, peerBatchMax)));
      ch.stream.write(bodies);
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

  /** Per peer: messages sent and dropped, the queue, and the stream's state. */
  stats(): PeerStats[] {
    return [...this.peers].map(([peer, ch]) => ({
      peer,
      messagesSent: ch.sent,
      messagesDropped: ch.dropped,
      queued: ch.queue.length,
      streamOpen: ch.stream.isOpen(),
      streamOpens: ch.stream.opens,
      streamFailures: ch.stream.failures,
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const ch of this.peers.values()) ch.stream.close();
    await Promise.all([...this.peers.values()].map((ch) => ch.pool.destroy()));
    this.peers.clear();
  }
}
