// Cluster, placement and admin routes of a single in-process node (memory engine).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.js';
import { startNode, type RunningNode } from '../../src/runtime/node.js';

let node: RunningNode;
beforeAll(async () => {
  const loaded = loadConfig(null, {
    RINGKV_STORAGE_ENGINE: 'memory',
    RINGKV_LISTEN_CLIENT: '127.0.0.1:0',
    RINGKV_LISTEN_PEER: '127.0.0.1:0',
  });
  node = await startNode(loaded, pino({ level: 'silent' }));
});
afterAll(async () => {
  await node.close();
});

const inject = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: string) =>
  node.clientApp.inject({ method, url, ...(payload !== undefined ? { payload, headers: { 'content-type': 'application/json' } } : {}) });

describe('cluster routes', () => {
  it('GET /v1/cluster describes a one-node cluster', async () => {
    const r = await inject('GET', '/v1/cluster');
    expect(r.statusCode).toBe(200);
    const v = r.json() as { epoch: number; self: string; members: { id: string; status: string; primaryPartitions: number }[]; replicationFactor: number; minInSync: number; partitions: unknown[] };
    expect(v.self).toBe('n1');
    expect(v.epoch).toBe(1);
    expect(v.members).toEqual([expect.objectContaining({ id: 'n1', status: 'active', primaryPartitions: 128 })]);
    expect(v.replicationFactor).toBe(1); // capped to the one member
    expect(v.minInSync).toBe(1);
    expect(v.partitions).toHaveLength(128);
  });

  it('GET /v1/placement/{key} names the partition from the documented hash', async () => {
    const r = await inject('GET', '/v1/placement/user%3A42');
    expect(r.json()).toMatchObject({ key: 'user:42', partition: 76, primary: 'n1', replicas: [], epoch: 1 });
    const bad = await inject('GET', '/v1/placement/%FF');
    expect(bad.statusCode).toBe(400);
    expect((bad.json() as { error: { code: string } }).error.code).toBe('invalid_key');
  });

  it('admin changes validate their body and report illegal changes as 409', async () => {
    const notJson = await inject('POST', '/v1/cluster/members', '{nope');
    expect(notJson.statusCode).toBe(400);
    expect((notJson.json() as { error: { code: string } }).error.code).toBe('invalid_body');
    const badId = await inject('POST', '/v1/cluster/members', JSON.stringify({ id: 'N4!', peer: 'http://a:1', client: 'http://a:2' }));
    expect(badId.statusCode).toBe(400);
    expect((badId.json() as { error: { message: string } }).error.message).toMatch(/^id: /);
    const extra = await inject('POST', '/v1/cluster/members', JSON.stringify({ id: 'n4', peer: 'http://a:1', client: 'http://a:2', role: 'x' }));
    expect(extra.statusCode).toBe(400);
    const self = await inject('POST', '/v1/cluster/members', JSON.stringify({ id: 'n1', peer: 'http://a:1', client: 'http://a:2' }));
    expect(self.statusCode).toBe(409);
    expect((self.json() as { error: { code: string; message: string } }).error).toEqual({ code: 'conflict', message: 'n1 is already a member' });
    const last = await inject('DELETE', '/v1/cluster/members/n1');
    expect(last.statusCode).toBe(409);
    const badParam = await inject('DELETE', '/v1/cluster/members/N1');
    expect(badParam.statusCode).toBe(400);
    // Nothing changed.
    expect(((await inject('GET', '/v1/cluster')).json() as { epoch: number }).epoch).toBe(1);
  });

  it('/metrics exports the membership facts', async () => {
    const r = await inject('GET', '/metrics');
    expect(r.body).toMatch(/ringkv_cluster_epoch\{node="n1"\} 1/);
    expect(r.body).toMatch(/ringkv_cluster_members\{status="active",node="n1"\} 1/);
    expect(r.body).toMatch(/ringkv_cluster_is_leader\{node="n1"\} [01]/);
  });

  it('/readyz is 200 while serving', async () => {
    expect((await inject('GET', '/readyz')).json()).toEqual({ status: 'ready' });
  });
});
