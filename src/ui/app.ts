// The ringkv dashboard (GET /ui, docs/dashboard.md): members, the ring, the partition
// table, an event log and this node's request rates, kept live by GET /v1/events.
//
// The stream is read with fetch() rather than EventSource, because EventSource cannot send
// the bearer token that a cluster with client tokens asks for. When the node serving the
// stream dies, or the stream is silent for STALL_MS (a `rates` event comes every second),
// the page goes on with the next member's client URL from the last snapshot.

import { SseParser } from './sse.js';

// ---------------------------------------------------------------- the wire (docs/api.md)

type Status = 'active' | 'down' | 'joining';

interface Member {
  id: string;
  clientUrl: string;
  status: Status;
  /** Data movement: `incoming` while being added, `outgoing` while being decommissioned. */
  placement?: 'owner' | 'incoming' | 'outgoing';
  heartbeatAgeMs: number | null;
  primaryPartitions: number;
}

interface Partition {
  partition: number;
  primary: string | null;
  preference: string[];
  /** Members copying the partition, to own it once the move in progress switches. */
  learners?: string[];
}

interface Facts {
  cluster: string;
  self: string;
  epoch: number;
  leader: string | null;
  replicationFactor: number;
  minInSync: number;
  partitionCount: number;
  members: Member[];
  partitions: Partition[];
  ring: { tokens: { token: string; node: string }[] };
}

interface Rates {
  requestsPerSec: number;
  errorsPerSec: number;
}

interface EpochEvent extends Facts {
  previousEpoch: number;
  changes: { id: string; from: Status | null; to: Status | null }[];
}

interface PrimaryEvent {
  epoch: number;
  partition: number;
  old: string | null;
  new: string | null;
  failover: boolean;
}

interface MoveEvent {
  epoch: number;
  partition: number;
  from: string[];
  to: string[];
}

interface MembersEvent {
  epoch: number;
  leader: string | null;
  members: { id: string; status: Status; heartbeatAgeMs: number | null }[];
}

// ---------------------------------------------------------------- state

const STALL_MS = 5000;
const RETRY_ROUND_MS = 1000;
const TOKEN_KEY = 'ringkv-token';
const LOG_MAX = 200;
const RATES_KEPT = 60;
// Tableau 10, reordered so that the first nodes do not look like status colours.
const PALETTE = ['#4e79a7', '#f28e2b', '#b07aa1', '#76b7b2', '#edc948', '#9c755f', '#ff9da7', '#59a14f', '#e15759', '#bab0ac'];

let facts: Facts | null = null;
/** The client URL whose stream is open, once its snapshot came. */
let connectedTo: string | null = null;
const rates: Rates[] = [];
const colours = new Map<string, string>();

// ---------------------------------------------------------------- DOM helpers

const $ = <T extends Element = HTMLElement>(id: string): T => {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`#${id} is missing from index.html`);
  return found as unknown as T;
};

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function colourOf(id: string): string {
  let c = colours.get(id);
  if (c === undefined) {
    c = PALETTE[colours.size % PALETTE.length]!;
    colours.set(id, c);
  }
  return c;
}

const ageText = (m: { id: string; heartbeatAgeMs: number | null }): string => {
  if (facts !== null && m.id === facts.self) return 'self';
  if (m.heartbeatAgeMs === null) return 'never';
  return m.heartbeatAgeMs < 1000 ? `${m.heartbeatAgeMs} ms ago` : `${(m.heartbeatAgeMs / 1000).toFixed(1)} s ago`;
};

const hostOf = (url: string): string => url.replace(/^https?:\/\//, '');

// ---------------------------------------------------------------- rendering

function renderFacts(f: Facts): void {
  $('cluster-name').textContent = f.cluster;
  $('epoch').textContent = String(f.epoch);
  $('leader').textContent = f.leader ?? 'none';
  $('replication').textContent = `RF ${f.replicationFactor} · minInSync ${f.minInSync}`;
  $('partition-count').textContent = String(f.partitionCount);
}

function renderMembers(f: Facts): void {
  const box = $('members');
  const ids = new Set(f.members.map((m) => m.id));
  for (const tile of Array.from(box.children)) if (!ids.has((tile as HTMLElement).dataset.node ?? '')) tile.remove();
  for (const m of f.members) {
    let tile = box.querySelector<HTMLElement>(`[data-node="${CSS.escape(m.id)}"]`);
    if (tile === null) {
      tile = el(
        'article',
        { class: 'member', 'data-node': m.id },
        el('h3', {}, el('span', { class: 'swatch' }), el('span', { class: 'id' }, m.id), el('span', { class: 'status' })),
        el('p', { class: 'roles' }),
        el('dl', {}, el('dt', {}, 'heartbeat'), el('dd', { class: 'age' }), el('dt', {}, 'primary of'), el('dd', { class: 'primaries' }), el('dt', {}, 'client'), el('dd', { class: 'url' })),
      );
      box.append(tile);
    }
    tile.dataset.status = m.status;
    tile.querySelector<HTMLElement>('.swatch')!.style.background = colourOf(m.id);
    tile.querySelector('.status')!.textContent = m.status;
    const moving = m.placement === 'incoming' ? 'being added' : m.placement === 'outgoing' ? 'being decommissioned' : '';
    const roles = [m.id === f.leader ? 'leader' : '', m.id === f.self ? 'serving this page' : '', moving].filter((r) => r !== '');
    tile.querySelector('.roles')!.textContent = roles.join(' · ') || '\u00a0';
    tile.querySelector('.age')!.textContent = ageText(m);
    tile.querySelector('.primaries')!.textContent = `${m.primaryPartitions} partitions`;
    tile.querySelector('.url')!.textContent = hostOf(m.clientUrl);
  }
}

function renderPartitions(f: Facts): void {
  const status = new Map(f.members.map((m) => [m.id, m.status]));
  const cells = f.partitions.map((p) => {
    const replicas = p.preference.filter((id) => id !== p.primary);
    const learners = p.learners ?? [];
    const cell = el(
      'div',
      {
        class: 'cell',
        'data-partition': String(p.partition),
        'data-primary': p.primary ?? '',
        title: `partition ${p.partition} · primary ${p.primary ?? 'none'} · replicas ${replicas.map((r) => (status.get(r) === 'active' ? r : `${r} (${status.get(r) ?? 'gone'})`)).join(', ') || 'none'}${learners.length > 0 ? ` · copying to ${learners.join(', ')}` : ''}`,
      },
      el('span', { class: 'num' }, String(p.partition)),
    );
    if (p.primary !== null) cell.style.setProperty('--node', colourOf(p.primary));
    if (learners.length > 0) cell.classList.add('moving');
    const chips = el('span', { class: 'chips' });
    for (const r of replicas) {
      const chip = el('span', { class: status.get(r) === 'active' ? 'chip' : 'chip inactive' });
      chip.style.setProperty('--node', colourOf(r));
      chips.append(chip);
    }
    cell.append(chips);
    return cell;
  });
  $('partitions').classList.toggle('dense', cells.length > 256);
  $('partitions').replaceChildren(...cells);
}

function renderRing(f: Facts): void {
  const ring = $<SVGSVGElement>('ring');
  const status = new Map(f.members.map((m) => [m.id, m.status]));
  const parts: SVGElement[] = [svg('circle', { r: 100, class: 'track' })];
  // Turns clockwise from 12 o'clock.
  const xy = (turn: number, r: number): [string, string] => [(Math.sin(turn * 2 * Math.PI) * r).toFixed(2), (-Math.cos(turn * 2 * Math.PI) * r).toFixed(2)];
  const point = (turn: number, r: number): string => xy(turn, r).join(' ');
  // Partition p covers [p/P, (p+1)/P) of the hash space: an arc coloured by its primary.
  const n = f.partitions.length;
  for (const p of f.partitions) {
    const from = p.partition / n + 0.0015;
    const to = (p.partition + 1) / n - 0.0015;
    const arc = svg('path', { d: `M ${point(from, 78)} A 78 78 0 0 1 ${point(to, 78)}`, class: 'partition' });
    arc.style.stroke = p.primary === null ? '#d5d9e0' : colourOf(p.primary);
    parts.push(arc);
  }
  // A token is a 64-bit position: its first 13 hex digits are exact in a double.
  for (const t of f.ring.tokens) {
    const turn = parseInt(t.token.slice(0, 13), 16) / 2 ** 52;
    const [x1, y1] = xy(turn, 92);
    const [x2, y2] = xy(turn, 108);
    const tick = svg('line', { x1, y1, x2, y2, class: status.get(t.node) === 'active' ? 'token' : 'token inactive' });
    tick.style.stroke = colourOf(t.node);
    parts.push(tick);
  }
  const epoch = svg('text', { y: -4, class: 'centre big' });
  epoch.textContent = `epoch ${f.epoch}`;
  const sub = svg('text', { y: 14, class: 'centre' });
  sub.textContent = `${f.ring.tokens.length} tokens · ${n} partitions`;
  parts.push(epoch, sub);
  ring.replaceChildren(...parts);
  $('legend').replaceChildren(
    ...f.members.map((m) => {
      const sw = el('span', { class: 'swatch' });
      sw.style.background = colourOf(m.id);
      return el('li', { 'data-status': m.status }, sw, `${m.id}`);
    }),
  );
}

function addRates(r: Rates): void {
  rates.push(r);
  if (rates.length > RATES_KEPT) rates.shift();
}

function renderRates(): void {
  const last = rates.at(-1);
  $('requests-rate').textContent = last === undefined ? '–' : last.requestsPerSec.toFixed(1);
  $('errors-rate').textContent = last === undefined ? '–' : last.errorsPerSec.toFixed(1);
  const top = Math.max(1, ...rates.map((r) => r.requestsPerSec));
  $('spark-caption').textContent = `last ${rates.length} s · peak ${Math.max(0, ...rates.map((r) => r.requestsPerSec)).toFixed(1)} requests/s`;
  const line = (pick: (r: Rates) => number, cls: string): SVGPolylineElement =>
    svg('polyline', {
      class: cls,
      // Spread over the samples there are (the caption says how many seconds).
      points: rates.map((r, i) => `${(i * 300) / Math.max(1, rates.length - 1)},${58 - (pick(r) / top) * 54}`).join(' '),
    });
  $<SVGSVGElement>('sparkline').replaceChildren(line((r) => r.requestsPerSec, 'requests'), line((r) => r.errorsPerSec, 'errors'));
}

function renderAll(f: Facts): void {
  for (const id of f.members.map((m) => m.id).sort()) colourOf(id);
  renderFacts(f);
  renderMembers(f);
  renderPartitions(f);
  renderRing(f);
}

// ---------------------------------------------------------------- the event log

/** Consecutive primary / move events of one epoch are one log line, updated in place. */
let group: { key: string; item: HTMLLIElement; pairs: Map<string, number>; count: number } | null = null;

function log(kind: string, text: string): HTMLLIElement {
  const item = el('li', { 'data-kind': kind }, el('time', {}, new Date().toLocaleTimeString([], { hour12: false })), el('span', { class: 'kind' }, kind), el('span', { class: 'text' }, text));
  const list = $('log');
  list.prepend(item);
  while (list.children.length > LOG_MAX) list.lastElementChild!.remove();
  group = null;
  return item;
}

function logGrouped(kind: string, key: string, pair: string, describe: (count: number, pairs: string) => string): void {
  if (group?.key !== key) {
    const item = log(kind, '');
    group = { key, item, pairs: new Map(), count: 0 };
  }
  group.count++;
  group.pairs.set(pair, (group.pairs.get(pair) ?? 0) + 1);
  const pairs = [...group.pairs].map(([p, n]) => `${p} ×${n}`).join(', ');
  group.item.querySelector('.text')!.textContent = describe(group.count, pairs);
}

// ---------------------------------------------------------------- events

function onEvent(type: string, data: string): void {
  switch (type) {
    case 'snapshot': {
      const s = JSON.parse(data) as Facts & { rates: Rates | null };
      facts = s;
      if (s.rates !== null) addRates(s.rates);
      renderAll(s);
      renderRates();
      return;
    }
    case 'epoch': {
      const e = JSON.parse(data) as EpochEvent;
      facts = e;
      renderAll(e);
      const epochs = e.epoch === e.previousEpoch + 1 ? `epoch ${e.epoch}` : `epochs ${e.previousEpoch + 1}–${e.epoch}`;
      const what = e.changes.map((c) => (c.from === null ? `${c.id} added (${c.to})` : c.to === null ? `${c.id} removed` : `${c.id} ${c.from} → ${c.to}`));
      log('epoch', `${epochs}: ${what.join(', ') || 'no member changed'}`);
      return;
    }
    case 'primary': {
      const p = JSON.parse(data) as PrimaryEvent;
      const kind = p.failover ? 'failover' : 'primary';
      logGrouped(kind, `${kind}-${p.epoch}`, `${p.old ?? 'none'} → ${p.new ?? 'none'}`, (n, pairs) => `epoch ${p.epoch}: ${n} partition${n === 1 ? '' : 's'} ${p.failover ? 'failed over' : 'changed primary'}: ${pairs}`);
      return;
    }
    case 'partition-move': {
      const m = JSON.parse(data) as MoveEvent;
      logGrouped('move', `move-${m.epoch}`, `${m.from.join(',')} → ${m.to.join(',')}`, (n, pairs) => `epoch ${m.epoch}: ${n} partition${n === 1 ? '' : 's'} changed owners: ${pairs}`);
      return;
    }
    case 'members': {
      if (facts === null) return;
      const e = JSON.parse(data) as MembersEvent;
      const live = new Map(e.members.map((m) => [m.id, m]));
      facts = { ...facts, leader: e.leader, members: facts.members.map((m) => ({ ...m, ...live.get(m.id) })) };
      renderFacts(facts);
      renderMembers(facts);
      return;
    }
    case 'rates': {
      addRates(JSON.parse(data) as Rates);
      renderRates();
      return;
    }
  }
}

// ---------------------------------------------------------------- the connection

function setConnection(state: 'live' | 'connecting' | 'down', text: string): void {
  $('connection').dataset.state = state;
  $('connection-text').textContent = text;
}

/** This page's node first, then every member's client URL from the last snapshot. */
function candidates(): string[] {
  const urls = [location.origin, ...(facts?.members.filter((m) => m.status !== 'down').map((m) => m.clientUrl) ?? []), ...(facts?.members.map((m) => m.clientUrl) ?? [])];
  return [...new Set(urls.map((u) => (URL.canParse(u) ? new URL(u).origin : u)))];
}

/** Reads one stream until it ends or fails; 'auth' when the node wants a (better) token. */
async function readStream(base: string): Promise<'ended' | 'auth'> {
  const abort = new AbortController();
  let stall = setTimeout(() => abort.abort(), STALL_MS);
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token !== null) headers.authorization = `Bearer ${token}`;
  try {
    const res = await fetch(`${base}/v1/events`, { headers, signal: abort.signal, cache: 'no-store' });
    if (res.status === 401 || res.status === 403) {
      $('token-error').textContent = ((await res.json()) as { error?: { message?: string } }).error?.message ?? '';
      return 'auth';
    }
    if (!res.ok || res.body === null) return 'ended';
    const parser = new SseParser((type, data) => {
      if (type === 'snapshot') {
        connectedTo = base;
        setConnection('live', `live · ${(JSON.parse(data) as Facts).self} at ${hostOf(base)}`);
        log('connection', `connected to ${hostOf(base)}`);
      }
      onEvent(type, data);
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'ended';
      clearTimeout(stall);
      stall = setTimeout(() => abort.abort(), STALL_MS);
      parser.push(value);
    }
  } catch {
    return 'ended'; // refused, reset, or silent for STALL_MS
  } finally {
    clearTimeout(stall);
    abort.abort();
  }
}

/** Shows the token form and resolves once a token was entered. */
function askToken(): Promise<void> {
  const form = $<HTMLFormElement>('token-form');
  form.hidden = false;
  setConnection('down', 'a token is needed');
  return new Promise((resolve) => {
    form.addEventListener(
      'submit',
      (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, $<HTMLInputElement>('token').value.trim());
        form.hidden = true;
        resolve();
      },
      { once: true },
    );
  });
}

async function run(): Promise<never> {
  let failuresInRow = 0;
  let i = 0;
  for (;;) {
    const list = candidates();
    const base = list[i % list.length]!;
    setConnection('connecting', `connecting to ${hostOf(base)}…`);
    const result = await readStream(base);
    if (result === 'auth') {
      await askToken();
      continue;
    }
    if (connectedTo !== null) {
      log('connection', `lost ${hostOf(connectedTo)}; trying the other members`);
      connectedTo = null;
      failuresInRow = 0;
    } else {
      failuresInRow++;
    }
    i++;
    if (failuresInRow > 0 && failuresInRow % list.length === 0) {
      setConnection('down', 'no member answers; retrying');
      await new Promise((r) => setTimeout(r, RETRY_ROUND_MS));
    }
  }
}

void run();
