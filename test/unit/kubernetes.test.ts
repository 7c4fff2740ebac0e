// The Kubernetes manifests in deploy/kubernetes/ agree with the product. No Kubernetes runs
// here, so this proves what can be proven without one:
// - every manifest parses (as YAML 1.1, like Kubernetes reads it), and the kustomization
//   lists every one of them except the placeholder Secret;
// - the ConfigMap's ringkv.yaml loads through the real config loader on every pod, with
//   the environment the pod's process really gets: the StatefulSet's env (downward API
//   values filled in for pod ringkv-<i>) run through the ConfigMap's start.sh with /bin/sh
//   (dash here, as in the Debian-based image);
// - node ids, advertised URLs and initialMembers derived from the pod ordinals agree with
//   each other, with the id pattern and with the headless Service's DNS names;
// - ports, probes, Services, PodDisruptionBudget, secret mount, data volume, user and
//   entrypoint agree with the config and with the Dockerfile.
// Each check compares two sources that must not drift apart, so editing either one alone
// turns it red.

import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig, splitHostPort, type LoadedConfig } from '../../src/config/load.js';
import { NODE_ID_PATTERN } from '../../src/core/types.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const K8S_DIR = join(ROOT, 'deploy/kubernetes');
/** The namespace the pods are pretended to run in; the manifests name none. */
const NAMESPACE = 'kv-test';

// ---- the subset of the Kubernetes objects that this test reads ----

interface Metadata {
  name: string;
  labels?: Record<string, string>;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}
interface HttpProbe {
  httpGet: { path: string; port: number | string };
}
interface ContainerPort {
  name: string;
  containerPort: number;
}
interface Container {
  name: string;
  command: string[];
  args: string[];
  env: EnvVar[];
  ports: ContainerPort[];
  readinessProbe: HttpProbe;
  livenessProbe: HttpProbe;
  startupProbe: HttpProbe & { periodSeconds: number; failureThreshold: number };
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Volume {
  name: string;
  configMap?: { name: string };
  secret?: { secretName: string; defaultMode?: number };
}
interface PodSpec {
  enableServiceLinks?: boolean;
  terminationGracePeriodSeconds: number;
  securityContext: { runAsNonRoot: boolean; runAsUser: number; runAsGroup: number; fsGroup: number };
  containers: Container[];
  volumes: Volume[];
}
interface StatefulSet {
  metadata: Metadata;
  spec: {
    replicas: number;
    serviceName: string;
    podManagementPolicy: string;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: Metadata; spec: PodSpec };
    volumeClaimTemplates: { metadata: Metadata; spec: { accessModes: string[]; resources: { requests: { storage: string } } } }[];
  };
}
interface Service {
  metadata: Metadata;
  spec: {
    clusterIP?: string;
    publishNotReadyAddresses?: boolean;
    selector: Record<string, string>;
    ports: { name: string; port: number; targetPort: number | string }[];
  };
}
interface ConfigMap {
  metadata: Metadata;
  data: Record<string, string>;
}
interface Secret {
  metadata: Metadata;
  stringData: Record<string, string>;
}
interface PodDisruptionBudget {
  metadata: Metadata;
  spec: { maxUnavailable: number; selector: { matchLabels: Record<string, string> } };
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
}

// ---- reading the manifests ----

/** Every document of a manifest file, parsed as Kubernetes does (YAML 1.1: 0440 is octal). */
function documentsOf(file: string): K8sObject[] {
  return parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8'), { version: '1.1' }).map((doc) => {
    expect(doc.errors, `${file}: ${doc.errors.map((e) => e.message).join('; ')}`).toEqual([]);
    return doc.toJS() as K8sObject;
  });
}

const manifestFiles = readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
const kustomization = parse(readFileSync(join(K8S_DIR, 'kustomization.yaml'), 'utf8')) as { kind: string; resources: string[] };
const objects = manifestFiles.flatMap(documentsOf);

function one<T>(kind: string, name?: string): T {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found.map((o) => o.metadata.name), `exactly one ${kind}${name ? ` ${name}` : ''}`).toHaveLength(1);
  return found[0] as unknown as T;
}

const sts = one<StatefulSet>('StatefulSet', 'ringkv');
const pod = sts.spec.template.spec;
const container = pod.containers[0]!;
const configVolume = pod.volumes.find((v) => v.configMap !== undefined)!;
const configMap = one<ConfigMap>('ConfigMap', configVolume.configMap!.name);
const configMount = container.volumeMounts.find((m) => m.name === configVolume.name)!;
const services = objects.filter((o) => o.kind === 'Service') as unknown as Service[];
const headless = services.find((s) => s.spec.clusterIP === 'None')!;
const clientService = services.find((s) => s.spec.clusterIP !== 'None')!;

const envValue = (name: string): string => {
  const v = container.env.find((e) => e.name === name);
  expect(v?.value, `env ${name} of the container`).toBeTypeOf('string');
  return v!.value!;
};
const portOf = (addr: string): number => splitHostPort(addr).port;
/** A Service's or probe's target port, by number or by the container port's name. */
const containerPortOf = (target: number | string): number | undefined =>
  typeof target === 'number' ? target : container.ports.find((p) => p.name === target)?.containerPort;
const selects = (selector: Record<string, string>): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => sts.spec.template.metadata.labels?.[k] === v);

const replicas = sts.spec.replicas;
const podName = (ordinal: number): string => `${sts.metadata.name}-${ordinal}`;
/** The pod's DNS name through the headless Service. */
const podHost = (ordinal: number): string => `${podName(ordinal)}.${headless.metadata.name}.${NAMESPACE}.svc.cluster.local`;

// ---- the Dockerfile ----

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ').split('\n');
const instruction = (name: string): string => dockerfile.filter((l) => l.startsWith(name + ' ')).at(-1)!.slice(name.length + 1).trim();
/** Users of the base image by name (the node:*-bookworm-slim images create `node` as 1000:1000). */
const BASE_IMAGE_USERS = new Map([['node', { uid: 1000, gid: 1000 }]]);

// ---- running start.sh and the loader as the pod would ----

let dir: string;
let configFile: string;
let startScript: string;
let goodSecret: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ringkv-k8s-'));
  configFile = join(dir, 'ringkv.yaml');
  startScript = join(dir, 'start.sh');
  goodSecret = join(dir, 'cluster-secret');
  writeFileSync(configFile, configMap.data['ringkv.yaml']!);
  writeFileSync(startScript, configMap.data['start.sh']!);
  writeFileSync(goodSecret, 'a-test-secret-of-32-bytes-length\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The container's env for pod <sts>-<ordinal>, with the downward API filled in. */
function podEnv(ordinal: number): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const e of container.env) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (e.value !== undefined) env[e.name] = e.value;
    else if (field === 'metadata.name') env[e.name] = podName(ordinal);
    else if (field === 'metadata.namespace') env[e.name] = NAMESPACE;
    else throw new Error(`env ${e.name}: this test cannot fill in ${JSON.stringify(e.valueFrom)}`);
  }
  return env;
}

const nodeEnvs = new Map<number, Record<string, string>>();
/** The environment ringkv's process gets in pod <ordinal>: start.sh run with the pod's env, exec'ing node. */
function nodeEnv(ordinal: number): Record<string, string> {
  let env = nodeEnvs.get(ordinal);
  if (env === undefined) {
    const out = execFileSync('/bin/sh', [startScript, process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.env))'], {
      env: podEnv(ordinal),
      encoding: 'utf8',
    });
    env = JSON.parse(out) as Record<string, string>;
    nodeEnvs.set(ordinal, env);
  }
  return env;
}

/** loadConfig on the ConfigMap's file in pod <ordinal>. The secret file is the one thing not at its pod path. */
const loadInPod = (ordinal: number, secretFile = goodSecret): LoadedConfig =>
  loadConfig(configFile, { ...nodeEnv(ordinal), RINGKV_CLUSTER_SECRETFILE: secretFile });

// ---- the checks ----

describe('deploy/kubernetes', () => {
  it('every manifest parses, and kustomization.yaml lists all of them but the placeholder Secret', () => {
    expect(kustomization.kind).toBe('Kustomization');
    expect([...kustomization.resources].sort()).toEqual(manifestFiles.filter((f) => f !== 'secret.yaml'));
    expect(documentsOf('secret.yaml').map((o) => o.kind)).toEqual(['Secret']);
    for (const o of objects) {
      expect(o.apiVersion, `${o.kind} ${o.metadata.name}`).toMatch(/^(v1|apps\/v1|policy\/v1)$/);
      expect(o.metadata.name).toMatch(/^[a-z0-9-]+$/);
    }
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'PodDisruptionBudget', 'Secret', 'Service', 'Service', 'StatefulSet']);
  });

  it.each(Array.from({ length: replicas }, (_, i) => i))(
    'founding pod %i: the ConfigMap config loads with the overrides start.sh derives from the pod name',
    (ordinal) => {
      const { config, advertise } = loadInPod(ordinal);
      expect(config.node.id).toBe(podName(ordinal));
      expect(config.node.id).toMatch(NODE_ID_PATTERN);
      expect(advertise).toEqual({
        client: `http://${podHost(ordinal)}:${portOf(config.listen.client)}`,
        peer: `http://${podHost(ordinal)}:${portOf(config.listen.peer)}`,
      });
      // The same founding list on every pod: ordinals 0..replicas-1, each at its pod DNS name.
      expect(config.cluster.initialMembers).toEqual(
        Array.from({ length: replicas }, (_, i) => ({
          id: podName(i),
          peer: `http://${podHost(i)}:${portOf(config.listen.peer)}`,
          client: `http://${podHost(i)}:${portOf(config.listen.client)}`,
        })),
      );
      expect(config.cluster.join).toBeNull();
    },
  );

  it('the founding size is the StatefulSet size, and no smaller than the replication factor', () => {
    const { config } = loadInPod(0);
    expect(Number(envValue('INITIAL_CLUSTER_SIZE'))).toBe(replicas);
    expect(replicas).toBe(3);
    expect(config.cluster.replicationFactor).toBeLessThanOrEqual(replicas); // else ringkv caps it
  });

  it('a pod added beyond the founding size gets cluster.join (ordinal 0) instead of initialMembers', () => {
    const { config } = loadInPod(replicas);
    expect(config.node.id).toBe(podName(replicas));
    expect(config.cluster.initialMembers).toEqual([]);
    expect(config.cluster.join).toBe(`http://${podHost(0)}:${portOf(config.listen.peer)}`);
  });

  it('start.sh refuses a pod name without an ordinal', () => {
    const env = { ...podEnv(0), POD_NAME: 'ringkv' };
    expect(() => execFileSync('/bin/sh', [startScript, 'true'], { env, stdio: 'pipe' })).toThrow(/does not end in -<ordinal>/);
  });

  it('turns off service links, whose RINGKV_* variables ringkv would refuse', () => {
    expect(pod.enableServiceLinks).toBe(false);
    // What kubelet would inject for the client Service "ringkv" without it:
    const prefix = clientService.metadata.name.toUpperCase().replace(/-/g, '_');
    expect(() => loadConfig(configFile, { ...nodeEnv(0), RINGKV_CLUSTER_SECRETFILE: goodSecret, [`${prefix}_SERVICE_HOST`]: '10.0.0.1' })).toThrow(
      /unknown environment variable RINGKV_SERVICE_HOST/,
    );
  });

  it('container ports are the config listen ports, and the config listens on all interfaces', () => {
    const { config } = loadInPod(0);
    expect(container.ports).toEqual([
      { name: 'client', containerPort: portOf(config.listen.client) },
      { name: 'peer', containerPort: portOf(config.listen.peer) },
    ]);
    expect(splitHostPort(config.listen.client).host).toBe('0.0.0.0');
    expect(splitHostPort(config.listen.peer).host).toBe('0.0.0.0');
  });

  it('readiness is /readyz, liveness and startup /healthz, all on the client port', () => {
    const { config } = loadInPod(0);
    const { readinessProbe, livenessProbe, startupProbe } = container;
    expect([readinessProbe, livenessProbe, startupProbe].map((p) => p.httpGet.path)).toEqual(['/readyz', '/healthz', '/healthz']);
    for (const p of [readinessProbe, livenessProbe, startupProbe]) expect(containerPortOf(p.httpGet.port)).toBe(portOf(config.listen.client));
    // An added pod listens only once it is a member: the startup probe gives the operator minutes to run `cluster add`.
    expect(startupProbe.periodSeconds * startupProbe.failureThreshold).toBeGreaterThanOrEqual(300);
  });

  it('the headless Service is the StatefulSet serviceName, selects its pods, publishes them before ready and exposes the peer port', () => {
    const { config } = loadInPod(0);
    expect(sts.spec.serviceName).toBe(headless.metadata.name);
    expect(envValue('PEER_SERVICE')).toBe(headless.metadata.name);
    expect(envValue('CLUSTER_DOMAIN')).toBe('cluster.local');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(selects(headless.spec.selector)).toBe(true);
    expect(selects(sts.spec.selector.matchLabels)).toBe(true);
    const peer = headless.spec.ports.find((p) => containerPortOf(p.targetPort) === portOf(config.listen.peer));
    expect(peer?.port).toBe(portOf(config.listen.peer)); // the advertised peer URLs use this port on the pod name
  });

  it('every Service port forwards to the container port of the same number and name', () => {
    for (const svc of services) {
      for (const p of svc.spec.ports) {
        expect(containerPortOf(p.targetPort), `${svc.metadata.name} port ${p.name}`).toBe(p.port);
        expect(container.ports.find((c) => c.containerPort === p.port)?.name, `${svc.metadata.name} port ${p.name}`).toBe(p.name);
      }
    }
  });

  it('the client Service selects the pods and exposes the client port', () => {
    const { config } = loadInPod(0);
    expect(selects(clientService.spec.selector)).toBe(true);
    expect(clientService.spec.publishNotReadyAddresses).not.toBe(true);
    expect(clientService.spec.ports.map((p) => containerPortOf(p.targetPort))).toEqual([portOf(config.listen.client)]);
  });

  it('the PodDisruptionBudget selects the pods and allows replicationFactor - minInSync = 1 down', () => {
    const { config } = loadInPod(0);
    const pdb = one<PodDisruptionBudget>('PodDisruptionBudget');
    expect(selects(pdb.spec.selector.matchLabels)).toBe(true);
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.maxUnavailable).toBe(config.cluster.replicationFactor - config.cluster.minInSync);
  });

  it('the Secret is mounted where cluster.secretFile points, readable by the node, and its placeholder is refused', () => {
    const raw = parse(configMap.data['ringkv.yaml']!) as { cluster: { secretFile: string } };
    const volume = pod.volumes.find((v) => v.secret !== undefined)!;
    const mount = container.volumeMounts.find((m) => m.name === volume.name)!;
    const secret = one<Secret>('Secret', volume.secret!.secretName);
    const keys = Object.keys(secret.stringData);
    expect(keys).toHaveLength(1);
    expect(raw.cluster.secretFile).toBe(posix.join(mount.mountPath, keys[0]!));
    expect(mount.readOnly).toBe(true);
    expect(volume.secret!.defaultMode! & 0o040).toBe(0o040); // group-readable: the group is fsGroup
    expect(pod.securityContext.fsGroup).toBe(pod.securityContext.runAsGroup);
    // The placeholder is too short to run with: a cluster started with it unedited does not start.
    const placeholder = join(dir, 'placeholder-secret');
    writeFileSync(placeholder, secret.stringData[keys[0]!]!);
    expect(() => loadInPod(0, placeholder)).toThrow(/at least 16 bytes/);
  });

  it("runs as the Dockerfile's user, non-root", () => {
    const user = instruction('USER');
    const expected = /^\d+$/.test(user) ? { uid: Number(user), gid: Number(user) } : BASE_IMAGE_USERS.get(user);
    expect(expected, `Dockerfile USER ${user}`).toBeDefined();
    expect(pod.securityContext.runAsUser).toBe(expected!.uid);
    expect(pod.securityContext.runAsGroup).toBe(expected!.gid);
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).not.toBe(0);
  });

  it("keeps the Dockerfile's entrypoint: tini, then start.sh from the ConfigMap, then node serving the ConfigMap's config", () => {
    const entrypoint = JSON.parse(instruction('ENTRYPOINT')) as string[];
    const tini = entrypoint.slice(0, entrypoint.indexOf('--') + 1);
    expect(tini).toEqual(['/usr/bin/tini', '--']);
    expect(container.command).toEqual([...tini, '/bin/sh', posix.join(configMount.mountPath, 'start.sh')]);
    expect(container.args).toEqual([...entrypoint.slice(tini.length), 'serve', '--config', posix.join(configMount.mountPath, 'ringkv.yaml')]);
    expect(Object.keys(configMap.data).sort()).toEqual(['ringkv.yaml', 'start.sh']);
  });

  it('the data volume is mounted at node.dataDir, one ReadWriteOnce claim per pod, no smaller than the LMDB map', () => {
    const { config } = loadInPod(0);
    const [claim, ...more] = sts.spec.volumeClaimTemplates;
    expect(more).toEqual([]);
    expect(container.volumeMounts.find((m) => m.name === claim!.metadata.name)?.mountPath).toBe(config.node.dataDir);
    expect(claim!.spec.accessModes).toEqual(['ReadWriteOnce']);
    const size = /^(\d+)(Ki|Mi|Gi|Ti)$/.exec(claim!.spec.resources.requests.storage);
    expect(size, 'storage request in Ki/Mi/Gi/Ti').not.toBeNull();
    const bytes = Number(size![1]) * 1024 ** (['Ki', 'Mi', 'Gi', 'Ti'].indexOf(size![2]!) + 1);
    expect(bytes).toBeGreaterThanOrEqual(config.storage.mapSizeBytes);
  });

  it('starts all pods together, drains within its grace period, and has requests and limits', () => {
    const { config } = loadInPod(0);
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.timing.requestTimeoutMs);
    for (const r of ['cpu', 'memory']) {
      expect(container.resources.requests[r], `requests.${r}`).toBeDefined();
      expect(container.resources.limits[r], `limits.${r}`).toBeDefined();
    }
  });
});
