// One HTTP exchange at a time over keep-alive undici Pools, one pool per node origin.
//
// Requests go through `Pool.dispatch` with a handler of our own rather than
// `Pool.request`, for one fact the retry rules depend on: whether the request was ever
// handed to a socket. undici calls `onRequestStart` just before it writes a request on a
// connected socket; an error that arrives before that (connection refused, connect
// timeout, DNS failure) proves the server never saw the request. Pools use no
// pipelining, so undici never sends a request again by itself after a socket failed.
//
// Timeouts and aborts are ours, per attempt: undici's own headers/body timeouts are off.
// A request cancelled while it still waits for a connection is aborted by the handler the
// moment undici would start it, so it is never written.

import { Pool, type Dispatcher } from 'undici';

export type Headers = Record<string, string | string[] | undefined>;

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
}

export interface Exchange {
  readonly method: 'GET' | 'PUT' | 'DELETE' | 'POST';
  /** Path and query, e.g. /v1/kv/a%2Fb?consistency=stale. */
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array | string | null;
}

/** No answer came: a connection error, the attempt's timeout, or the caller's abort. */
export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(
    /** undici's or the OS's error code (ECONNREFUSED, UND_ERR_SOCKET, ...), `attempt_timeout` or `aborted`. */
    readonly code: string,
    message: string,
    /** False only if the request was surely never written to a socket. */
    readonly sent: boolean,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

export interface TransportOptions {
  readonly connectionsPerNode: number;
  readonly connectTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
}

export class Transport {
  private readonly pools = new Map<string, Pool>();
  private closed = false;

  constructor(private readonly opts: TransportOptions) {}

  /** Sends one request to `origin`; rejects only with a TransportError. */
  send(origin: string, ex: Exchange, timeoutMs: number, signal: AbortSignal | undefined): Promise<Answer> {
    if (signal?.aborted) return Promise.reject(new TransportError('aborted', 'aborted before it was sent', false, signal.reason));
    if (this.closed) return Promise.reject(new TransportError('closed', 'the client is closed', false));
    return new Promise<Answer>((resolve, reject) => {
      const handler: ExchangeHandler = new ExchangeHandler(
        (a) => {
          cleanup();
          resolve(a);
        },
        (e) => {
          cleanup();
          reject(e);
        },
      );
      const timer = setTimeout(() => handler.cancel('attempt_timeout', `no answer within ${Math.round(timeoutMs)} ms`), timeoutMs);
      const onAbort = (): void => handler.cancel('aborted', 'aborted by the caller', signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      function cleanup(): void {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      }
      try {
        this.pool(origin).dispatch({ path: ex.path, method: ex.method, headers: ex.headers, body: ex.body }, handler);
      } catch (e) {
        handler.fail(e as Error);
      }
    });
  }

  /** Closes every pool once the requests in flight have ended. */
  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.close()));
  }

  private pool(origin: string): Pool {
    let p = this.pools.get(origin);
    if (p === undefined) {
      p = new Pool(origin, {
        connections: this.opts.connectionsPerNode,
        pipelining: 1,
        // Both: a server's Keep-Alive hint (Node's default is 72 s) would raise the first.
        keepAliveTimeout: this.opts.keepAliveTimeoutMs,
        keepAliveMaxTimeout: this.opts.keepAliveTimeoutMs,
        connect: { timeout: this.opts.connectTimeoutMs },
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      this.pools.set(origin, p);
    }
    return p;
  }
}

/** Collects one answer, and knows whether the request reached a socket. */
class ExchangeHandler implements Dispatcher.DispatchHandler {
  private started = false;
  private settled = false;
  private controller: Dispatcher.DispatchController | null = null;
  /** Set when the exchange was cancelled before undici started it. */
  private cancelReason: Error | null = null;
  private status = 0;
  private headers: Headers = {};
  private readonly chunks: Buffer[] = [];

  constructor(
    private readonly onAnswer: (a: Answer) => void,
    private readonly onFailure: (e: TransportError) => void,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.cancelReason !== null) {
      controller.abort(this.cancelReason); // never written
      return;
    }
    this.controller = controller;
    this.started = true;
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Headers): void {
    this.status = statusCode;
    this.headers = headers;
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.settled = true;
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.onAnswer({ status: this.status, headers: this.headers, body });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.fail(err);
  }

  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    const code = (err as { code?: unknown }).code;
    this.onFailure(new TransportError(typeof code === 'string' ? code : err.name, err.message, this.started, err));
  }

  /** Ends the exchange from outside: a timeout or the caller's abort. */
  cancel(code: 'attempt_timeout' | 'aborted', message: string, cause?: unknown): void {
    if (this.settled) return;
    this.settled = true;
    const err = new TransportError(code, message, this.started, cause);
    if (this.controller !== null) this.controller.abort(err);
    else this.cancelReason = err;
    this.onFailure(err);
  }
}
