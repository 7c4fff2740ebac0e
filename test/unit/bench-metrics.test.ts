// How `ringkv bench` (and the tests) read samples from Prometheus text (prom-text.ts).

import { describe, expect, it } from 'vitest';
import { PROCESS_CPU_METRIC } from '../../src/cli/bench.js';
import { metricSum, promSamples } from '../../src/cli/prom-text.js';

describe('metricSum', () => {
  it("reads ringkv's labelled counter and etcd's plain one", () => {
    const ringkv = [
      '# HELP ringkv_process_cpu_seconds_total Total user and system CPU time spent in seconds.',
      '# TYPE ringkv_process_cpu_seconds_total counter',
      'ringkv_process_cpu_seconds_total{node="n1"} 12.5',
      'ringkv_process_cpu_user_seconds_total{node="n1"} 10',
    ].join('\n');
    expect(metricSum(ringkv, 'ringkv_process_cpu_seconds_total')).toBe(12.5);
    const etcd = '# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 4.56\nprocess_cpu_seconds_total_extra 99\n';
    expect(metricSum(etcd, PROCESS_CPU_METRIC)).toBe(4.56);
  });

  it('sums every label set, and ignores a trailing timestamp', () => {
    const text = 'm{a="1"} 1.5 1700000000000\nm{a="2"} 2\nm 0.25\n';
    expect(metricSum(text, 'm')).toBe(3.75);
  });

  it('labels holding braces or spaces do not confuse it', () => {
    expect(metricSum('m{path="/a {b} c"} 7\n', 'm')).toBe(7);
  });

  it('null when the metric is missing or has no number', () => {
    expect(metricSum('other_metric 1\n', 'm')).toBeNull();
    expect(metricSum('m{a="1"}\nm NaN\nm_total 3\n', 'm')).toBeNull();
    expect(metricSum('', 'm')).toBeNull();
  });

  it('promSamples keeps each sample with its labels', () => {
    expect(promSamples('# TYPE m counter\nm{peer="http://a:1",node="n1"} 2\nm{peer="b",node="n1"} 3 1700000000000\n', 'm')).toEqual([
      { labels: { peer: 'http://a:1', node: 'n1' }, value: 2 },
      { labels: { peer: 'b', node: 'n1' }, value: 3 },
    ]);
  });
});
