import { call } from './http-client.js';
import { EXIT, failed, print } from './output.js';

interface ClusterView {
  cluster: string;
  self: string;
  epoch: number;
  leader: string | null;
  replicationFactor: number;
  minInSync: number;
  partitionCount: number;
  ringChecksum: string;
  members: { id: string; clientUrl: string; status: string; heartbeatAgeMs: number | null; primaryPartitions: number }[];
}

/** `ringkv cluster status`: a readable table, or --json. */
export async function clusterStatus(endpoints: string[], auth: Record<string, string>, json: boolean, timeoutMs: number): Promise<number> {
  const r = await call(endpoints, 'GET', '/v1/cluster', { headers: auth, timeoutMs });
  if (r.status >= 300) return failed(r, json);
  const v = JSON.parse(r.body.toString('utf8')) as ClusterView;
  if (json) {
    print(v);
    return EXIT.ok;
  }
  print(
    `cluster ${v.cluster}  epoch ${v.epoch}  leader ${v.leader ?? '(none)'}  RF ${v.replicationFactor}  minInSync ${v.minInSync}  partitions ${v.partitionCount}  (as seen by ${v.self} at ${r.endpoint})`,
  );
  const rows = [['ID', 'STATUS', 'HEARTBEAT', 'PRIMARY FOR', 'CLIENT URL']];
  for (const m of v.members) {
    const age = m.id === v.self ? '(self)' : m.heartbeatAgeMs === null ? '-' : `${m.heartbeatAgeMs} ms ago`;
    rows.push([m.id + (m.id === v.leader ? ' *' : ''), m.status, age, `${m.primaryPartitions} partitions`, m.clientUrl]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) print(row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  print('* leader');
  return EXIT.ok;
}
