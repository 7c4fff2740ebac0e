import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** One registry per node (tests run several nodes in one process). */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'code'>;
  readonly latency: Histogram<'route' | 'method'>;
  readonly versionConflicts: Counter;
  readonly keys: Gauge;

  constructor(nodeId: string, countKeys: () => number) {
    this.registry.setDefaultLabels({ node: nodeId });
    collectDefaultMetrics({ register: this.registry, prefix: 'ringkv_' });
    this.requests = new Counter({
      name: 'ringkv_http_requests_total',
      help: 'Client API requests, by route, method and status code.',
      labelNames: ['route', 'method', 'code'],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: 'ringkv_http_request_duration_seconds',
      help: 'Client API request latency, by route and method.',
      labelNames: ['route', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    this.versionConflicts = new Counter({
      name: 'ringkv_version_conflicts_total',
      help: 'Concurrent vector clocks seen for one key: evidence of split brain; must stay 0.',
      registers: [this.registry],
    });
    this.keys = new Gauge({
      name: 'ringkv_keys',
      help: 'Live keys stored on this node (all partitions it holds).',
      registers: [this.registry],
      collect() {
        this.set(countKeys());
      },
    });
  }
}
