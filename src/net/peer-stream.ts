// The peer message stream: one long-lived connection per ordered pair of nodes, carrying
// protocol messages (heartbeats, Paxos, replication) from its sender to its receiver, as
// etcd's rafthttp streams do. It opens as a request on the peer API:
//
//   GET /peer/v1/stream HTTP/1.1
//   Connection: Upgrade
//   Upgrade: ringkv-peer/2
//   Authorization: Bearer <cluster secret>, X-Ringkv-Cluster, X-Ringkv-From
//
// answered `101 Switching Protocols`, or an error status with the usual JSON error body,
// and closed. After the 101 the sender writes frames: a 4-byte big-endian length, then
// that many bytes of one batch of messages in batch-codec.ts's binary layout (version 2 of
// the stream; version 1 carried MessagePack maps). Its messages are checked by the same
// code as the batches that `POST /peer/v1/messages` takes. The receiver writes back small
// length-prefixed JSON frames: `{type: 'ack', frames: n}` (the count of frames received, at
// most every `ackIntervalMs` while frames arrive), so that the sender can tell a stalled
// connection (a paused or cut-off peer) from a quiet one; and `{type: 'error', code,
// message}` just before it closes a stream over bad input.
//
// Why not a POST per batch: each POST costs a request and a response to build, send, parse
// and route on both nodes, and only one may be in flight per connection, so a batch waits
// for the previous one's 204. A frame costs one write and one read.

import net from 'node:net';
import tls from 'node:tls';
import { validateHeaderValue, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { decodeBatch, type DecodedBatch } from './batch-codec.js';
import { NODE_ID_PATTERN } from '../core/types.js';
import { ApiError } from '../http/errors.js';
import { LogOnce, NODE_HEADER, peerHeaders, type PeerAuthenticator } from './peer-auth.js';

export const STREAM_PATH = '/peer/v1/stream';
export const STREAM_PROTOCOL = 'ringkv-peer/2';
/** The receiver acknowledges received frames at most this often. */
export const ackIntervalMs = 100;
/** An inbound stream with no frame for this long is closed (heartbeats arrive every heartbeatMs). */
export const inboundIdleMs = 60_000;
/** Bytes the sender lets queue in a socket before it holds messages back (and drops the oldest). */
export const streamBufferedMax = 8 * 1024 * 1024;
/** Largest frame a sender accepts back from a receiver (acks and errors are tiny). */
const replyFrameMax = 64 * 1024;

export class FrameTooLarge extends Error {}

/** One frame's header: the payload's length, big-endian. */
export function frameHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE(length, 0);
  return h;
}

/**
 * Splits a byte stream into frames. Linear in the bytes received: chunks of a large frame
 * are kept aside and joined once, when the whole frame is there.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly frameBytesMax: number) {}

  /** Appends the complete frames in `chunk` (and before it) to `out`; throws FrameTooLarge. */
  push(chunk: Buffer, out: Buffer[]): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    for (;;) {
      if (this.size < 4) return;
      if (this.chunks[0]!.length < 4) this.join();
      const length = this.chunks[0]!.readUInt32BE(0);
      if (length > this.frameBytesMax) throw new FrameTooLarge(`frame of ${length} bytes is over the limit of ${this.frameBytesMax}`);
      if (this.size < 4 + length) return;
      if (this.chunks.length > 1) this.join();
      const all = this.chunks[0]!;
      out.push(all.subarray(4, 4 + length));
      const rest = all.subarray(4 + length);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.size = rest.length;
    }
  }

  /** Bytes of a frame not complete yet. */
  get pending(): number {
    return this.size;
  }

  private join(): void {
    this.chunks = [Buffer.concat(this.chunks, this.size)];
  }
}

// ---------------------------------------------------------------------------------------
// Receiving side: the peer API's HTTP server hands over upgrade requests.

export interface StreamServerOptions {
  readonly auth: PeerAuthenticator;
  readonly frameBytesMax: number;
  readonly logger: Logger;
  /** Logs a refused request once per (peer, reason). */
  readonly complain: (who: string, reason: string, extra?: Record<string, unknown>) => void;
  /** Checks one decoded batch from `from` and delivers its messages, or returns why not. */
  readonly onBatch: (from: string, batch: DecodedBatch) => ApiError | null;
}

export interface StreamServer {
  /** Inbound streams open now. */
  readonly open: () => number;
  /** Closes every inbound stream and refuses new ones. */
  readonly close: () => void;
}

export function servePeerStreams(server: Server, opts: StreamServerOptions): StreamServer {
  const inbound = new Map<string, Duplex>();
  const all = new Set<Duplex>();
  let closed = false;

  const refuse = (socket: Duplex, e: ApiError): void => {
    const body = JSON.stringify(e.toJSON());
    socket.end(
      `HTTP/1.1 ${e.status} ${statusText(e.status)}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    setTimeout(() => socket.destroy(), 1000).unref();
  };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const who = `${req.socket.remoteAddress ?? '?'} ${String(req.headers[NODE_HEADER] ?? '?')}`;
    if (closed) return void refuse(socket, new ApiError('unavailable', 'node is shutting down'));
    const path = (req.url ?? '').split('?')[0];
    if (path !== STREAM_PATH) return void refuse(socket, new ApiError('route_not_found', `no peer upgrade route ${req.method ?? ''} ${req.url ?? ''}`));
    if (req.method !== 'GET') return void refuse(socket, new ApiError('method_not_allowed', `${STREAM_PATH} takes GET, not ${req.method ?? ''}`));
    const protocol = String(req.headers.upgrade ?? '').toLowerCase();
    if (protocol !== STREAM_PROTOCOL) {
      opts.complain(who, 'unsupported upgrade protocol');
      return void refuse(socket, new ApiError('invalid_header', `Upgrade must be ${STREAM_PROTOCOL}, not ${JSON.stringify(req.headers.upgrade ?? null)}`));
    }
    const a = opts.auth.check(req.headers);
    if (!a.ok) {
      opts.complain(who, a.reason);
      return void refuse(socket, new ApiError(a.code, a.reason));
    }
    const from = req.headers[NODE_HEADER];
    if (typeof from !== 'string' || !NODE_ID_PATTERN.test(from)) {
      opts.complain(who, 'stream without a valid sender');
      return void refuse(socket, new ApiError('invalid_header', `${NODE_HEADER} must be a node id`));
    }

    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${STREAM_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`);
    if (socket instanceof net.Socket) {
      socket.setNoDelay(true);
      socket.setTimeout(inboundIdleMs, () => socket.destroy());
    }
    // A sender keeps one stream to us: a newer one means the older is dead on its side.
    inbound.get(from)?.destroy();
    inbound.set(from, socket);
    all.add(socket);

    const decoder = new FrameDecoder(opts.frameBytesMax);
    const frames: Buffer[] = [];
    let received = 0;
    let ackTimer: NodeJS.Timeout | null = null;
    const ack = (): void => {
      ackTimer = null;
      if (!socket.destroyed) writeFrame(socket, { type: 'ack', frames: received });
    };
    const fail = (e: ApiError, reason: string, extra: Record<string, unknown> = {}): void => {
      opts.complain(who, reason, extra);
      writeFrame(socket, { type: 'error', code: e.code, message: e.message });
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    const onData = (chunk: Buffer): void => {
      try {
        decoder.push(chunk, frames);
      } catch (e) {
        socket.removeListener('data', onData);
        return fail(new ApiError('value_too_large', (e as Error).message), 'stream frame too large');
      }
      for (let i = 0; i < frames.length; i++) {
        let batch: DecodedBatch;
        try {
          batch = decodeBatch(frames[i]!);
        } catch (e) {
          socket.removeListener('data', onData);
          frames.length = 0;
          return fail(new ApiError('invalid_request', `malformed stream frame: ${(e as Error).message}`), 'malformed stream frame');
        }
        const err = opts.onBatch(from, batch);
        if (err !== null) {
          socket.removeListener('data', onData);
          frames.length = 0;
          return fail(err, err.message);
        }
        received++;
      }
      if (frames.length > 0) {
        frames.length = 0;
        ackTimer ??= setTimeout(ack, ackIntervalMs);
      }
    };
    socket.on('data', onData);
    socket.on('close', () => {
      if (ackTimer !== null) clearTimeout(ackTimer);
      all.delete(socket);
      if (inbound.get(from) === socket) inbound.delete(from);
    });
    if (head.length > 0) onData(head);
  });

  return {
    open: () => all.size,
    close: () => {
      closed = true;
      for (const s of all) s.destroy();
      all.clear();
      inbound.clear();
    },
  };
}

function writeFrame(socket: Duplex, payload: unknown): void {
  const body = Buffer.from(JSON.stringify(payload));
  socket.write(Buffer.concat([frameHeader(body.length), body]));
}

function statusText(status: number): string {
  return (
    ({ 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 413: 'Payload Too Large', 503: 'Service Unavailable' } as Record<number, string>)[
      status
    ] ?? 'Error'
  );
}

// ---------------------------------------------------------------------------------------
// Sending side: one OutboundStream per peer, owned by PeerTransport.

export interface OutboundOptions {
  readonly url: string;
  readonly secret: string | null;
  readonly clusterName: string;
  readonly self: string;
  readonly logger: Logger;
  readonly logOnce: LogOnce;
  /** A connection that does not open, or whose frames go unacknowledged, this long is dropped. */
  readonly stallMs: number;
  /** Called when the stream opens or its socket drains: queued messages can go. */
  readonly onWritable: () => void;
}

const retryMinMs = 50;
const retryMaxMs = 1000;

/**
 * The sending end of one stream. Reconnects on its own (50 ms backoff, doubling to 1 s)
 * whenever something is to be sent; frames written to a connection that then fails are
 * lost, like a POST that failed, and the protocol retries on its own.
 */
export class OutboundStream {
  private socket: net.Socket | null = null;
  private open = false;
  private retryMs = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private openTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private sent = 0;
  private acked = 0;
  /** Connections opened (101 received). */
  opens = 0;
  /** Connections that failed to open, or were lost or dropped once open. */
  failures = 0;
  /** Since when the oldest unacknowledged frame has waited (or the connection has been opening). */
  private waitingSince = 0;
  private readonly request: string;
  private readonly target: URL;

  constructor(private readonly o: OutboundOptions) {
    this.target = new URL(o.url);
    const headers = { ...peerHeaders(o.secret, o.clusterName, o.self), host: this.target.host, connection: 'Upgrade', upgrade: STREAM_PROTOCOL };
    for (const [k, v] of Object.entries(headers)) validateHeaderValue(k, v);
    this.request = `GET ${STREAM_PATH} HTTP/1.1\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`;
  }

  isOpen(): boolean {
    return this.open;
  }

  /** True when frames can be written now; otherwise starts connecting if it is not already. */
  ready(): boolean {
    if (this.closed) return false;
    if (this.open) {
      if (this.acked < this.sent && Date.now() - this.waitingSince > this.o.stallMs) {
        this.drop(`no acknowledgement for ${this.o.stallMs} ms`);
        return false;
      }
      return this.socket!.writableLength < streamBufferedMax;
    }
    if (this.socket === null && this.retryTimer === null) this.connect();
    return false;
  }

  /** Writes frames (each a packed batch). Call only after ready() returned true. */
  write(bodies: readonly Buffer[]): void {
    const s = this.socket!;
    if (this.acked === this.sent) this.waitingSince = Date.now();
    s.cork();
    for (const b of bodies) {
      s.write(frameHeader(b.length));
      s.write(b);
    }
    s.uncork();
    this.sent += bodies.length;
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.teardown();
  }

  private connect(): void {
    const t = this.target;
    const port = Number(t.port || (t.protocol === 'https:' ? 443 : 80));
    const host = t.hostname.startsWith('[') ? t.hostname.slice(1, -1) : t.hostname;
    const socket = t.protocol === 'https:' ? tls.connect({ host, port, servername: net.isIP(host) === 0 ? host : undefined }) : net.connect({ host, port });
    this.socket = socket;
    this.sent = 0;
    this.acked = 0;
    socket.setNoDelay(true);
    socket.write(this.request);
    this.openTimer = setTimeout(() => this.drop(`no 101 answer within ${this.o.stallMs} ms`), this.o.stallMs);

    let head = Buffer.alloc(0);
    const decoder = new FrameDecoder(replyFrameMax);
    const frames: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => {
      if (socket !== this.socket) return;
      if (!this.open) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > 64 * 1024) this.drop('answer headers too large');
          return;
        }
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head.subarray(0, end).toString('latin1'))?.[1] ?? 0);
        if (status !== 101) return this.refused(status, head.subarray(end + 4));
        this.open = true;
        this.opens++;
        this.retryMs = 0;
        clearTimeout(this.openTimer!);
        this.openTimer = null;
        chunk = head.subarray(end + 4);
        head = Buffer.alloc(0);
        this.o.logger.debug({ peer: this.o.url }, 'peer stream open');
        this.o.onWritable();
        if (chunk.length === 0) return;
      }
      try {
        decoder.push(chunk, frames);
      } catch (e) {
        return this.drop((e as Error).message);
      }
      for (const f of frames) this.reply(f);
      frames.length = 0;
    });
    socket.on('drain', () => {
      if (socket === this.socket && this.open) this.o.onWritable();
    });
    socket.on('error', (e) => {
      if (socket === this.socket) this.drop(e.message, 'debug');
    });
    socket.on('close', () => {
      if (socket === this.socket) this.drop('connection closed', 'debug');
    });
  }

  private reply(frame: Buffer): void {
    let m: { type?: unknown; frames?: unknown; code?: unknown; message?: unknown };
    try {
      m = JSON.parse(frame.toString('utf8')) as typeof m;
    } catch {
      return this.drop('malformed frame from the receiver');
    }
    if (m.type === 'ack' && typeof m.frames === 'number') {
      if (m.frames > this.acked) {
        this.acked = m.frames;
        this.waitingSince = Date.now();
      }
    } else if (m.type === 'error') {
      this.warnOnce(`peer refused messages: ${String(m.code)}`, { code: m.code, message: m.message });
    }
  }

  private refused(status: number, body: Buffer): void {
    const text = body.toString('utf8').slice(0, 300);
    this.warnOnce(`peer refused stream: ${status}`, { status, body: text });
    this.drop(`refused with status ${status}`, 'debug', retryMaxMs);
  }

  private warnOnce(what: string, extra: Record<string, unknown>): void {
    if (this.o.logOnce.first(`${this.o.url}|${what}`)) this.o.logger.warn({ peer: this.o.url, ...extra }, `${what} (logged once per peer and reason)`);
  }

  /** Closes the current connection and schedules the next attempt. */
  private drop(reason: string, level: 'debug' | 'warn' = 'warn', retryMs?: number): void {
    const wasOpen = this.open;
    this.teardown();
    if (this.closed) return;
    this.failures++;
    if (level === 'warn' && wasOpen) this.warnOnce(`peer stream dropped: ${reason}`, {});
    else this.o.logger.debug({ peer: this.o.url, reason }, 'peer stream down');
    this.retryMs = retryMs ?? Math.min(Math.max(retryMinMs, this.retryMs * 2), retryMaxMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.o.onWritable();
    }, this.retryMs);
  }

  private teardown(): void {
    if (this.openTimer !== null) clearTimeout(this.openTimer);
    this.openTimer = null;
    this.open = false;
    const s = this.socket;
    this.socket = null;
    s?.destroy();
  }
}
