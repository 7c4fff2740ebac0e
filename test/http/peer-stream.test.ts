// The peer message stream (src/net/peer-stream.ts) on real sockets: a PeerTransport sending
// to a listening peer API, refusals of bad upgrades and bad frames with their codes, and
// reconnection after the receiver restarts or stalls.

import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pino } from 'pino';
import type { FastifyInstance } from 'fastify';
import { configSchema } from '../../src/config/schema.js';
import { nodeId } from '../../src/core/types.js';
import type { LogEntry, Message } from '../../src/core/node.js';
import type { RepMessage } from '../../src/core/replication.js';
import { buildPeerApp } from '../../src/http/peer-app.js';
import { FrameDecoder, frameHeader, STREAM_PATH, STREAM_PROTOCOL } from '../../src/net/peer-stream.js';
import { PeerTransport } from '../../src/net/peer-transport.js';
import { encodeBatch, peerPackr } from '../../src/net/batch-codec.js';
import { LocalKv } from '../../src/runtime/local-kv.js';
import { MemoryStore } from '../../src/store/memory-store.js';

const SECRET = 'stream-test-secret-0123456789';
const silent = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !cond(); await sleep(10)) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
  }
}

interface Receiver {
  app: FastifyInstance;
  port: number;
  delivered: (Message | RepMessage)[];
  httpRequests: () => number;
}

async function receiver(port = 0, delivered: (Message | RepMessage)[] = []): Promise<Receiver> {
  const config = configSchema.parse({ storage: { engine: 'memory' }, node: { id: 'n2' }, cluster: { name: 'streamtest' } });
  const store = new MemoryStore();
  let requests = 0;
  const app = buildPeerApp({
    config,
    secret: SECRET,
    logger: silent,
    deliver: (m) => delivered.push(m),
    primaryKv: new LocalKv(store, nodeId('n2'), config.cluster.partitions, (e) => {
      throw e;
    }),
    listPartitions: () => ({ keys: [], next: null }),
    latestConfig: () => {
      throw new Error('not used');
    },
  });
  app.server.on('request', () => requests++);
  await app.listen({ host: '127.0.0.1', port });
  const addr = app.server.address() as net.AddressInfo;
  return { app, port: addr.port, delivered, httpRequests: () => requests };
}

const heartbeat = (i: number) => ({ type: 'heartbeat', from: 'n1', clusterName: 'streamtest', epoch: 1 + i, ringChecksum: '', leader: null });

const upgradeHeaders = (over: Record<string, string | undefined> = {}): Record<string, string> => {
  const h: Record<string, string | undefined> = {
    host: '127.0.0.1',
    connection: 'Upgrade',
    upgrade: STREAM_PROTOCOL,
    authorization: `Bearer ${SECRET}`,
    'x-ringkv-cluster': 'streamtest',
    'x-ringkv-from': 'n1',
    ...over,
  };
  return Object.fromEntries(Object.entries(h).filter((e): e is [string, string] => e[1] !== undefined));
};

interface Raw {
  socket: net.Socket;
  status: number;
  body: string;
  /** Frames the receiver wrote back after the 101, parsed. */
  frames: { type: string; frames?: number; code?: string; message?: string }[];
  closed: Promise<void>;
}

/** Opens a stream by hand: writes the upgrade request and reads the answer's head. */
function rawUpgrade(port: number, headers: Record<string, string>, method = 'GET', path = STREAM_PATH): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let raw: Raw | null = null;
    const decoder = new FrameDecoder(1 << 20);
    const out: Buffer[] = [];
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      if (raw !== null) {
        if (raw.status === 101) {
          decoder.push(chunk, out);
          for (const f of out.splice(0)) raw.frames.push(JSON.parse(f.toString()) as Raw['frames'][number]);
        } else raw.body += chunk.toString();
        return;
      }
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(buf.toString('latin1'))![1]);
      raw = { socket, status, body: '', frames: [], closed };
      const rest = buf.subarray(end + 4);
      if (status === 101) {
        decoder.push(rest, out);
        for (const f of out.splice(0)) raw.frames.push(JSON.parse(f.toString()) as Raw['frames'][number]);
      } else raw.body = rest.toString();
      resolve(raw);
    });
    socket.write(`${method} ${path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
  });
}

const frame = (payload: Buffer): Buffer => Buffer.concat([frameHeader(payload.length), payload]);

let cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

describe('peer message stream', () => {
  it('a transport sends every message on one stream, in order, with no HTTP request per batch', async () => {
    const r = await receiver();
    const t = new PeerTransport(SECRET, 'streamtest', 'n1', silent, 5000);
    cleanup.push(() => r.app.close(), () => t.close());
    const url = `http://127.0.0.1:${r.port}`;
    for (let i = 0; i < 1000; i++) t.send(url, heartbeat(i));
    await until(() => r.delivered.length === 1000, 5000);
    expect(r.delivered.map((m) => m.epoch)).toEqual(Array.from({ length: 1000 }, (_, i) => 1 + i));
    // Sent over several turns, with the stream already open.
    for (let turn = 0; turn < 20; turn++) {
      for (let i = 0; i < 10; i++) t.send(url, heartbeat(1000 + turn * 10 + i));
      await sleep(1);
    }
    await until(() => r.delivered.length === 1200, 5000);
    expect(r.delivered.map((m) => m.epoch).slice(1000)).toEqual(Array.from({ length: 200 }, (_, i) => 1001 + i));
    expect(r.httpRequests()).toBe(0);
  });

  it('reconnects after the receiver restarts on the same port', async () => {
    const delivered: (Message | RepMessage)[] = [];
    let r = await receiver(0, delivered);
    const port = r.port;
    const t = new PeerTransport(SECRET, 'streamtest', 'n1', silent, 5000);
    cleanup.push(() => t.close());
    const url = `http://127.0.0.1:${port}`;
    t.send(url, heartbeat(0));
    await until(() => delivered.length === 1, 2000);
    await r.app.close();
    // Messages sent while it is down are dropped or queued; the stream comes back by itself.
    for (let i = 1; i <= 5; i++) {
      t.send(url, heartbeat(i));
      await sleep(20);
    }
    r = await receiver(port, delivered);
    cleanup.push(() => r.app.close());
    const t0 = Date.now();
    for (let i = 6; !delivered.some((m) => m.epoch >= 7); i++) {
      t.send(url, heartbeat(i));
      await sleep(20);
      if (Date.now() - t0 > 3000) throw new Error('no message delivered within 3 s of the restart');
    }
  });

  it('replaces a stream whose frames go unacknowledged (a paused receiver), and one that never answers 101', async () => {
    for (const mode of ['silent-after-101', 'no-answer'] as const) {
      const connections: net.Socket[] = [];
      const server = net.createServer((s) => {
        connections.push(s);
        s.on('error', () => undefined);
        if (mode === 'silent-after-101') s.once('data', () => s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${STREAM_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`));
      });
      await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
      const port = (server.address() as net.AddressInfo).port;
      const t = new PeerTransport(SECRET, 'streamtest', 'n1', silent, 300);
      const url = `http://127.0.0.1:${port}`;
      const stop = setInterval(() => t.send(url, heartbeat(0)), 50);
      try {
        await until(() => connections.length >= 3, 3000);
      } finally {
        clearInterval(stop);
        await t.close();
        for (const s of connections) s.destroy();
        await new Promise((res) => server.close(res));
      }
    }
  });

  it('refuses bad upgrades with the usual error codes, and keeps serving', async () => {
    const r = await receiver();
    cleanup.push(() => r.app.close());
    const cases: [Record<string, string>, number, string, string?, string?][] = [
      [upgradeHeaders({ authorization: undefined }), 401, 'unauthorized'],
      [upgradeHeaders({ authorization: 'Bearer wrong-secret' }), 401, 'unauthorized'],
      [upgradeHeaders({ 'x-ringkv-cluster': 'other' }), 403, 'forbidden'],
      [upgradeHeaders({ 'x-ringkv-from': 'N1 with spaces' }), 400, 'invalid_header'],
      [upgradeHeaders({ upgrade: 'websocket' }), 400, 'invalid_header'],
      // A node of a build before the binary frames (stream version 1).
      [upgradeHeaders({ upgrade: 'ringkv-peer/1' }), 400, 'invalid_header'],
      [upgradeHeaders(), 405, 'method_not_allowed', 'POST'],
      [upgradeHeaders(), 404, 'route_not_found', 'GET', '/peer/v1/other'],
    ];
    for (const [headers, status, code, method, path] of cases) {
      const a = await rawUpgrade(r.port, headers, method, path);
      await a.closed;
      expect(a.status, JSON.stringify(headers)).toBe(status);
      expect((JSON.parse(a.body) as { error: { code: string } }).error.code).toBe(code);
    }
    const ok = await rawUpgrade(r.port, upgradeHeaders());
    expect(ok.status).toBe(101);
    ok.socket.write(frame(encodeBatch('n1', 'streamtest', [heartbeat(41)])));
    await until(() => r.delivered.length === 1 && ok.frames.length === 1, 2000);
    expect(ok.frames[0]).toEqual({ type: 'ack', frames: 1 });
    ok.socket.destroy();
  });

  it('closes a stream over a bad frame, with the reason, and delivers nothing of it', async () => {
    const r = await receiver();
    cleanup.push(() => r.app.close());
    // A well-formed append and ack, as a primary and a replica send them (their compact layouts).
    const record = { value: new Uint8Array([1, 2, 3]), clock: [['n1', 4]], epoch: 2, seq: 9 };
    const append = { type: 'rep-append', partition: 3, session: 1, entries: [{ seq: 9, key: 'k', record }], from: 'n1', clusterName: 'streamtest', epoch: 2 };
    const ack = { type: 'rep-ack', partition: 3, session: 1, acked: 9, caughtUp: true, resync: false, copying: false, from: 'n1', clusterName: 'streamtest', epoch: 2 };
    const good = encodeBatch('n1', 'streamtest', [heartbeat(1), append, ack]);
    const bad: [Buffer, string, RegExp][] = [
      [frame(Buffer.from([0xc1, 0xc1, 0xc1])), 'invalid_request', /malformed stream frame: batch layout 193, not 2/],
      [frameHeader(0xffffffff), 'value_too_large', /over the limit/],
      [frame(good.subarray(0, good.length - 1)), 'invalid_request', /malformed stream frame: message: truncated at byte/],
      [frame(Buffer.concat([good, Buffer.from([0])])), 'invalid_request', /malformed stream frame: 1 bytes after the last message/],
      [frame(encodeBatch('n1', 'streamtest', [])), 'invalid_request', /malformed stream frame: count: 0 messages/],
      [frame(encodeBatch('N 1', 'streamtest', [heartbeat(1)])), 'invalid_request', /malformed stream frame: from: "N 1" is not a node id/],
      [frame(encodeBatch('n3', 'streamtest', [{ ...heartbeat(1), from: 'n3' }])), 'invalid_request', /batch from n3 on the stream of n1/],
      [frame(encodeBatch('n1', 'streamtest', [heartbeat(1), { ...heartbeat(2), epoch: -1 }])), 'invalid_request', /malformed message: epoch/],
      [frame(encodeBatch('n1', 'streamtest', [{ ...heartbeat(1), clusterName: 'other' }])), 'forbidden', /message for cluster "other"/],
      // Compact messages get the same checks as any other: a counter of 0, an epoch of 0.
      [frame(encodeBatch('n1', 'streamtest', [{ ...append, entries: [{ seq: 9, key: 'k', record: { ...record, clock: [['n1', 0]] } }] }])), 'invalid_request', /malformed message: entries\.0\.record\.clock/],
      [frame(encodeBatch('n1', 'streamtest', [heartbeat(1), { ...ack, epoch: 0 }])), 'invalid_request', /malformed message: epoch/],
      [frame(encodeBatch('n1', 'other', [{ ...append, clusterName: 'other' }])), 'forbidden', /message for cluster "other"/],
    ];
    for (const [bytes, code, message] of bad) {
      const s = await rawUpgrade(r.port, upgradeHeaders());
      expect(s.status).toBe(101);
      s.socket.write(bytes);
      await s.closed;
      expect(s.frames.at(-1)).toMatchObject({ type: 'error', code });
      expect(s.frames.at(-1)!.message).toMatch(message);
    }
    expect(r.delivered).toHaveLength(0);
    // The node still takes a good stream.
    const t = new PeerTransport(SECRET, 'streamtest', 'n1', silent, 5000);
    cleanup.push(() => t.close());
    t.send(`http://127.0.0.1:${r.port}`, heartbeat(7));
    await until(() => r.delivered.length === 1, 2000);
  });

  it('a newer stream from the same sender replaces the older one', async () => {
    const r = await receiver();
    cleanup.push(() => r.app.close());
    const first = await rawUpgrade(r.port, upgradeHeaders());
    const second = await rawUpgrade(r.port, upgradeHeaders());
    await first.closed;
    second.socket.write(frame(encodeBatch('n1', 'streamtest', [heartbeat(3)])));
    await until(() => r.delivered.length === 1, 2000);
    second.socket.destroy();
  });
});

describe('FrameDecoder', () => {
  it('gives back the frames written, however the bytes are split', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 20 }),
        (payloads, cuts) => {
          const bytes = Buffer.concat(payloads.map((p) => frame(Buffer.from(p))));
          const d = new FrameDecoder(1000);
          const out: Buffer[] = [];
          for (let off = 0, i = 0; off < bytes.length; i++) {
            const n = cuts[i % cuts.length]!;
            d.push(bytes.subarray(off, off + n), out);
            off += n;
          }
          expect(out.map((b) => [...b])).toEqual(payloads.map((p) => [...p]));
          expect(d.pending).toBe(0);
        },
      ),
    );
  });

  it('refuses a frame over its limit from the header alone', () => {
    const d = new FrameDecoder(10);
    expect(() => d.push(frameHeader(11), [])).toThrow(/frame of 11 bytes is over the limit of 10/);
  });

  it('joins a large frame sent in many small chunks', () => {
    const payload = Buffer.alloc(4 * 1024 * 1024, 7);
    const bytes = frame(payload);
    const d = new FrameDecoder(8 * 1024 * 1024);
    const out: Buffer[] = [];
    for (let off = 0; off < bytes.length; off += 1024) d.push(bytes.subarray(off, off + 1024), out);
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(payload)).toBe(true);
    expect(d.pending).toBe(0);
  });
});
