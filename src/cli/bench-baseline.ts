// The yardstick for `ringkv bench --baseline`: a bare fastify server whose routes do
// nothing (and GET /metrics, its CPU time, read outside the measured requests). bench.ts
// runs it as a separate process (so it has its own event loop, like a ringkv node does),
// drives it with the same client, and reports ringkv's rates as a share of this one's. It prints `{"port":N}` on one stdout line once it is listening,
// and exits on SIGTERM/SIGINT, or when the parent that spawned it with an IPC channel
// goes away. Run by hand (`node dist/cli/bench-baseline.js`) it serves until killed.

import Fastify from 'fastify';

const app = Fastify({ logger: false });

// Accept any body as raw bytes, as ringkv does, so a PUT pays for reading its body.
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

app.get('/noop', async (_req, reply) => reply.code(200).send());
app.put('/noop', async (_req, reply) => reply.code(200).send());
// This process's CPU time, as Prometheus' process collector names it: bench samples it
// around each measured window to report the server's CPU per request.
app.get('/metrics', async (_req, reply) => {
  const u = process.cpuUsage();
  return reply.type('text/plain; version=0.0.4').send(`process_cpu_seconds_total ${(u.user + u.system) / 1e6}\n`);
});

await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error('bench-baseline: the server has no TCP address');
process.stdout.write(JSON.stringify({ port: address.port }) + '\n');

const stop = (): void => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
// If bench dies without killing us, the IPC channel closes: do not outlive it.
if (process.channel !== undefined) process.once('disconnect', stop);
