// Reading samples out of a Prometheus text exposition (what GET /metrics serves): enough
// for `ringkv bench` to read a server's CPU counter, and for the tests to read ringkv's
// own metrics. Not a full parser: escaped quotes inside label values are not unescaped.

export interface PromSample {
  readonly labels: Record<string, string>;
  readonly value: number;
}

/**
 * Every sample of `metric`, with its labels. `metric` must match a whole name: a line of
 * `ringkv_process_cpu_seconds_total{node="n1"} 12.5` counts for
 * `ringkv_process_cpu_seconds_total`, one of `..._total_x` does not. A trailing
 * timestamp is ignored; a line without a number is skipped.
 */
export function promSamples(text: string, metric: string): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    let rest = line.slice(metric.length);
    let labelText = '';
    if (rest.startsWith('{')) {
      const close = rest.lastIndexOf('}');
      if (close < 0) continue;
      labelText = rest.slice(1, close);
      rest = rest.slice(close + 1);
    } else if (!rest.startsWith(' ')) continue;
    const field = rest.trim().split(/\s+/)[0]!;
    const value = Number(field);
    if (field === '' || !Number.isFinite(value)) continue;
    const labels: Record<string, string> = {};
    for (const m of labelText.matchAll(/(\w+)="([^"]*)"/g)) labels[m[1]!] = m[2]!;
    out.push({ labels, value });
  }
  return out;
}

/** The sum of every sample of `metric` (all label sets), or null when it has none. */
export function metricSum(text: string, metric: string): number | null {
  const samples = promSamples(text, metric);
  return samples.length === 0 ? null : samples.reduce((a, s) => a + s.value, 0);
}
