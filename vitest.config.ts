import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // CI asks for a JSON report too (for its one-line "N passed, N failed" summary).
    reporters: process.env.VITEST_JSON_REPORT ? ['default', 'json'] : ['default'],
    outputFile: process.env.VITEST_JSON_REPORT ? { json: process.env.VITEST_JSON_REPORT } : undefined,
    projects: [
      {
        // Pure code, the HTTP layer in-process, and the simulators: CPU-bound, parallel.
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts', 'test/http/**/*.test.ts', 'test/sim/**/*.test.ts'], sequence: { groupOrder: 0 } },
      },
      {
        // Real processes with real timers (heartbeats, leases, failover deadlines): run
        // after the CPU-bound group and one file at a time, so that a busy 2-core machine
        // does not turn scheduling delays into false suspicions.
        extends: true,
        test: { name: 'cluster', include: ['test/cluster/**/*.test.ts'], fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
