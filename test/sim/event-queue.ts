// A binary min-heap of timed events, ordered by (time, insertion order) so that a seed
// replays exactly.

export interface Timed<T> {
  readonly at: number;
  readonly seq: number;
  readonly item: T;
}

export class EventQueue<T> {
  private readonly heap: Timed<T>[] = [];
  private nextSeq = 0;

  get size(): number {
    return this.heap.length;
  }

  peek(): Timed<T> | undefined {
    return this.heap[0];
  }

  push(at: number, item: T): void {
    const node: Timed<T> = { at, seq: this.nextSeq++, item };
    const h = this.heap;
    h.push(node);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent] as Timed<T>;
      if (!less(node, p)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = node;
  }

  pop(): Timed<T> | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      let best: Timed<T> = last;
      const lv = h[l];
      if (lv !== undefined && less(lv, best)) {
        m = l;
        best = lv;
      }
      const rv = h[r];
      if (rv !== undefined && less(rv, best)) {
        m = r;
        best = rv;
      }
      if (m === i) break;
      h[i] = best;
      i = m;
    }
    h[i] = last;
    return top;
  }
}

function less<T>(a: Timed<T>, b: Timed<T>): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
