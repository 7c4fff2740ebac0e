// `ringkv cluster status`: members (status, heartbeat age, partitions led), epoch and
// leader, as a table or --json. With --watch it stays live on GET /v1/events: on a
// terminal the table is redrawn with the rates and the latest events; otherwise one line
// is printed per change (--json: one JSON line per event). When the node serving the
// stream dies it goes on with the other endpoints and members. Ctrl-C exits 0.

import { request } from 'undici';
import { call } from './http-client.js';
import { EXIT, failed, print } from './output.js';

interface MemberView {
  id: string;
  clientUrl: string;
  status: string;
  heartbeatAgeMs: number | null;
  primaryPartitions: number;
  placement?: 'owner' | 'incoming' | 'outgoing';
}

/** GET /v1/cluster `move`: the data movement in progress (docs/rebalancing.md). */
interface MoveView {
  member: string;
  kind: 'add' | 'decommission';
  partitionsMoving: number;
  partitionCopies: number;
  partitionCopiesConfirmed: number;
  keysCopied: number;
  bytesCopied: number;
  etaSeconds: number | null;
}

interface ClusterView {
  cluster: string;
  self: string;
  epoch: number;
  leader: string | null;
  replicationFactor: number;
  minInSync: number;
  partitionCount: number;
  ringChecksum: string;
  members: MemberView[];
  move?: MoveView | null;
}

interface Rates {
  requestsPerSec: number;
  errorsPerSec: number;
}

/** `ringkv cluster status`: a readable table, or --json. */
export async function clusterStatus(endpoints: string[], auth: Record<string, string>, json: boolean, timeoutMs: number): Promise<number> {
  const r = await call(endpoints, 'GET', '/v1/cluster', { headers: auth, timeoutMs });
  if (r.status >= 300) return failed(r, json);
  const v = JSON.parse(r.body.toString('utf8')) as ClusterView;
  if (json) print(v);
  else for (const line of [...table(v, r.endpoint, false), ...moveLines(v.move ?? null, process.stdout.isTTY === true)]) print(line);
  return EXIT.ok;
}

/** The move in progress: what, how far, and (on a terminal) a progress bar. */
export function moveLines(m: MoveView | null, tty: boolean): string[] {
  if (m === null) return [];
  const what = m.kind === 'add' ? `adding ${m.member}` : `decommissioning ${m.member}`;
  const mib = (m.bytesCopied / 1024 ** 2).toFixed(1);
  const eta = m.etaSeconds === null ? '' : `, about ${m.etaSeconds} s left`;
  const lines = [
    `moving: ${what}: ${m.partitionsMoving} partitions change owners; ${m.partitionCopiesConfirmed}/${m.partitionCopies} new copies confirmed, ${m.keysCopied} keys (${mib} MiB) copied${eta}`,
  ];
  if (tty && m.partitionCopies > 0) {
    const width = 30;
    const done = Math.round((width * m.partitionCopiesConfirmed) / m.partitionCopies);
    lines.push(`  [${'#'.repeat(done)}${'-'.repeat(width - done)}] ${Math.floor((100 * m.partitionCopiesConfirmed) / m.partitionCopies)}%`);
  }
  return lines;
}

/** The table of `cluster status`; `colour` marks statuses with ANSI colours. */
function table(v: ClusterView, endpoint: string, colour: boolean): string[] {
  const lines = [
    `cluster ${v.cluster}  epoch ${v.epoch}  leader ${v.leader ?? '(none)'}  RF ${v.replicationFactor}  minInSync ${v.minInSync}  partitions ${v.partitionCount}  (as seen by ${v.self} at ${endpoint})`,
  ];
  const rows = [['ID', 'STATUS', 'HEARTBEAT', 'PRIMARY FOR', 'CLIENT URL']];
  for (const m of v.members) {
    const age = m.id === v.self ? '(self)' : m.heartbeatAgeMs === null ? '-' : `${m.heartbeatAgeMs} ms ago`;
    const placement = m.placement === 'incoming' ? ' (being added)' : m.placement === 'outgoing' ? ' (leaving)' : '';
    rows.push([m.id + (m.id === v.leader ? ' *' : ''), m.status + placement, age, `${m.primaryPartitions} partitions`, m.clientUrl]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const [r, row] of rows.entries()) {
    const cells = row.map((c, i) => c.padEnd(widths[i]!));
    if (colour && r > 0) cells[1] = `${STATUS_COLOUR[row[1]!.split(' ')[0]!] ?? ''}${cells[1]}\x1b[0m`;
    lines.push(cells.join('  ').trimEnd());
  }
  lines.push('* leader');
  return lines;
}

const STATUS_COLOUR: Readonly<Record<string, string>> = { active: '\x1b[32m', down: '\x1b[31m', joining: '\x1b[33m' };

// ------------------------------------------------------------------ --watch

/** A stream silent for this long is given up (a `rates` event comes every second). */
const STALL_MS = 5000;
/** Pause after every endpoint failed in a row. */
const RETRY_ROUND_MS = 1000;
/** Recent events kept on the terminal view. */
const RECENT_MAX = 12;
/** Redraws of the terminal view, at most one per this many milliseconds. */
const REDRAW_MS = 100;

/** One event from the stream. */
interface Received {
  readonly type: string;
  readonly data: Record<string, unknown>;
}

/** The server-sent events parser: `event` and `data` fields; comments and `retry` skipped. */
function sseParser(onEvent: (type: string, data: string) => void): (text: string) => void {
  let buffer = '';
  return (text) => {
    buffer += text.replace(/\r\n?/g, '\n');
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') type = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0) onEvent(type, data.join('\n'));
    }
  };
}

/** What --watch shows: the facts, the rates and the latest events (grouped by epoch). */
class WatchView {
  facts: ClusterView | null = null;
  rates: Rates | null = null;
  endpoint = '';
  private recent: { time: string; key: string; text: string; pairs: Map<string, number> }[] = [];

  /** Applies one event; returns the lines it is worth on a log (none for liveness and rates). */
  apply(e: Received, endpoint: string): string[] {
    const d = e.data;
    switch (e.type) {
      case 'snapshot': {
        this.facts = d as unknown as ClusterView;
        this.endpoint = endpoint;
        this.rates = (d.rates as Rates | null) ?? null;
        const members = this.facts.members.map((m) => `${m.id} ${m.status}`).join(', ');
        return [this.note(`connected to ${this.facts.self} at ${endpoint}: epoch ${this.facts.epoch}, leader ${this.facts.leader ?? '(none)'}, ${members}`)];
      }
      case 'epoch': {
        const prev = this.facts;
        this.facts = d as unknown as ClusterView;
        const changes = (d.changes as { id: string; from: string | null; to: string | null }[]).map((c) =>
          c.from === null ? `${c.id} added (${c.to})` : c.to === null ? `${c.id} removed` : `${c.id} ${c.from} → ${c.to}`,
        );
        const leader = prev?.leader !== this.facts.leader ? `, leader ${this.facts.leader ?? '(none)'}` : '';
        return [this.note(`epoch ${this.facts.epoch}: ${changes.join(', ') || 'no member changed'}${leader}`)];
      }
      case 'primary': {
        const kind = d.failover === true ? 'failed over' : 'changed primary';
        this.group(`${kind} ${String(d.epoch)}`, `${String(d.old ?? 'none')} → ${String(d.new ?? 'none')}`, (n, pairs) => `epoch ${String(d.epoch)}: ${n} partition${n === 1 ? '' : 's'} ${kind}: ${pairs}`);
        return [`partition ${String(d.partition)} ${kind}: ${String(d.old ?? 'none')} → ${String(d.new ?? 'none')} (epoch ${String(d.epoch)})`];
      }
      case 'partition-move': {
        const from = (d.from as string[]).join(',');
        const to = (d.to as string[]).join(',');
        this.group(`move ${String(d.epoch)}`, `${from} → ${to}`, (n, pairs) => `epoch ${String(d.epoch)}: ${n} partition${n === 1 ? '' : 's'} changed owners: ${pairs}`);
        return [`partition ${String(d.partition)} owners ${from} → ${to} (epoch ${String(d.epoch)})`];
      }
      case 'members': {
        if (this.facts === null) return [];
        const live = new Map((d.members as MemberView[]).map((m) => [m.id, m]));
        const leaderBefore = this.facts.leader;
        this.facts = { ...this.facts, leader: d.leader as string | null, members: this.facts.members.map((m) => ({ ...m, ...live.get(m.id) })) };
        return leaderBefore === this.facts.leader ? [] : [this.note(`leader ${leaderBefore ?? '(none)'} → ${this.facts.leader ?? '(none)'}`)];
      }
      case 'rates':
        this.rates = d as unknown as Rates;
        return [];
      default:
        return [];
    }
  }

  /** A line for the log and the recent events. */
  note(text: string): string {
    this.recent.unshift({ time: clock(), key: '', text, pairs: new Map() });
    this.recent.length = Math.min(this.recent.length, RECENT_MAX);
    return text;
  }

  /** Consecutive events with the same key are one recent line, counted by `pair`. */
  private group(key: string, pair: string, describe: (count: number, pairs: string) => string): void {
    let top = this.recent[0];
    if (top?.key !== key) {
      this.note('');
      top = this.recent[0]!;
      top.key = key;
    }
    top.pairs.set(pair, (top.pairs.get(pair) ?? 0) + 1);
    const count = [...top.pairs.values()].reduce((a, b) => a + b, 0);
    top.text = describe(count, [...top.pairs].map(([p, n]) => `${p} ×${n}`).join(', '));
  }

  /** The terminal view. */
  screen(state: string): string[] {
    const lines = this.facts === null ? [] : table(this.facts, this.endpoint, true);
    if (this.rates !== null && this.facts !== null) {
      lines.push('', `requests ${this.rates.requestsPerSec.toFixed(1)}/s  errors ${this.rates.errorsPerSec.toFixed(1)}/s (5xx)  on ${this.facts.self}`);
    }
    lines.push('', 'recent events');
    for (const r of this.recent) lines.push(`  ${r.time}  ${r.text}`);
    lines.push('', `${state} · Ctrl-C to quit`);
    return lines;
  }
}

const clock = (): string => new Date().toISOString().slice(11, 23);

/**
 * `ringkv cluster status --watch`. Resolves with EXIT.ok on Ctrl-C, EXIT.failed when a
 * node refuses the token, EXIT.unreachable when no endpoint answers before the first
 * snapshot.
 */
export async function watchClusterStatus(endpoints: string[], auth: Record<string, string>, json: boolean, timeoutMs: number): Promise<number> {
  // The first Ctrl-C ends the watch (exit 0); a second one kills the process as usual.
  const interrupt = new AbortController();
  process.once('SIGINT', () => interrupt.abort());
  const stop = interrupt.signal;
  const out = process.stdout;
  const tty = out.isTTY === true && !json;
  const view = new WatchView();
  let state = 'connecting';
  let redrawTimer: NodeJS.Timeout | null = null;
  const redraw = (): void => {
    if (!tty || redrawTimer !== null) return;
    redrawTimer = setTimeout(() => {
      redrawTimer = null;
      // Home, each line cleared to its end, then everything below cleared: no flicker.
      out.write(`\x1b[H${view.screen(state).map((l) => `${l}\x1b[K`).join('\n')}\n\x1b[J`);
    }, REDRAW_MS);
  };
  const say = (line: string): void => {
    if (tty) redraw();
    else if (!json) print(`${clock()} ${line}`);
  };
  if (tty) out.write('\x1b[2J');

  let everConnected = false;
  let failuresInRow = 0;
  const errors: string[] = [];
  try {
    for (let i = 0; !stop.aborted; i++) {
      const candidates = [...new Set([...endpoints, ...(view.facts?.members.map((m) => m.clientUrl.replace(/\/$/, '')) ?? [])])];
      const endpoint = candidates[i % candidates.length]!;
      state = `connecting to ${endpoint}`;
      redraw();
      const result = await readEvents(endpoint, auth, timeoutMs, stop, (e) => {
        if (e.type === 'snapshot') {
          everConnected = true;
          failuresInRow = 0;
          state = `live via ${String(e.data.self)} at ${endpoint}`;
        }
        if (json) print({ event: e.type, data: e.data, endpoint });
        for (const line of view.apply(e, endpoint)) say(line);
        redraw();
      });
      if (stop.aborted) break;
      if (result.kind === 'refused') {
        process.stderr.write(`error: ${result.code} (${result.status}): ${result.message}\n`);
        return EXIT.failed;
      }
      if (result.kind === 'lost') say(view.note(`lost ${endpoint} (${result.reason}); trying the other members`));
      else {
        errors.push(`${endpoint}: ${result.reason}`);
        failuresInRow++;
      }
      if (!everConnected && failuresInRow >= candidates.length) {
        process.stderr.write(`ringkv: no endpoint answered:\n  ${errors.join('\n  ')}\n`);
        return EXIT.unreachable;
      }
      if (failuresInRow > 0 && failuresInRow % candidates.length === 0) {
        state = 'no member answers; retrying';
        redraw();
        await new Promise((r) => setTimeout(r, RETRY_ROUND_MS));
      }
    }
    return EXIT.ok;
  } finally {
    if (redrawTimer !== null) clearTimeout(redrawTimer);
  }
}

type StreamResult =
  | { readonly kind: 'lost'; readonly reason: string } // it was streaming, then ended or failed
  | { readonly kind: 'failed'; readonly reason: string } // no stream (refused, 503, timeout)
  | { readonly kind: 'refused'; readonly status: number; readonly code: string; readonly message: string }; // 401, 403

/** Reads GET /v1/events from one endpoint until it ends, fails, stalls or `stop` aborts. */
async function readEvents(endpoint: string, auth: Record<string, string>, timeoutMs: number, stop: AbortSignal, onEvent: (e: Received) => void): Promise<StreamResult> {
  let streaming = false;
  try {
    const res = await request(`${endpoint}/v1/events`, {
      headers: { ...auth, accept: 'text/event-stream' },
      headersTimeout: timeoutMs,
      bodyTimeout: STALL_MS,
      signal: stop,
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      let error = { code: `http_${res.statusCode}`, message: text.slice(0, 200) };
      try {
        error = (JSON.parse(text) as { error: typeof error }).error;
      } catch {
        // not JSON: keep the text
      }
      if (res.statusCode === 401 || res.statusCode === 403) return { kind: 'refused', status: res.statusCode, ...error };
      return { kind: 'failed', reason: `${res.statusCode} ${error.code}: ${error.message}` };
    }
    streaming = true;
    const push = sseParser((type, data) => onEvent({ type, data: JSON.parse(data) as Record<string, unknown> }));
    const decoder = new TextDecoder();
    for await (const chunk of res.body) push(decoder.decode(chunk as Uint8Array, { stream: true }));
    return { kind: 'lost', reason: 'the stream ended' };
  } catch (e) {
    const reason = (e as Error).message;
    return streaming ? { kind: 'lost', reason } : { kind: 'failed', reason };
  }
}
