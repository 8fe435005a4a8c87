/**
 * deploy/kubernetes validates without a cluster: every document against the Kubernetes schemas
 * (kubernetes-models, and the Prometheus Operator's for the ServiceMonitor), then Tidemark's own
 * checks (test/helpers/kubernetes-checks.ts). The negative cases break a copy in memory and
 * expect the check to say what is wrong.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { checkContainers, checkFiles, checkManifests, checkPorts, checkReferences, checkSettings, type K8sObject, type Kustomization } from '../helpers/kubernetes-checks.js';
import { repositoryRoot } from '../helpers/repo.js';

const dir = join(repositoryRoot(), 'deploy', 'kubernetes');

/** Kubernetes reads YAML 1.1 (0440 is octal there, decimal in YAML 1.2): parse as it does. */
function parseYaml(text: string, file: string): K8sObject[] {
  return parseAllDocuments(text, { version: '1.1', uniqueKeys: true }).flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS({ maxAliasCount: 100 });
    return value === null ? [] : [value as K8sObject];
  });
}

const files = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
const kustomization = parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'), 'kustomization.yaml')[0] as Kustomization & K8sObject;
const objects = files.flatMap((file) => parseYaml(readFileSync(join(dir, file), 'utf8'), file).map((o) => Object.assign(o, { __file: file })));
// JSON, not structuredClone: YAML anchors share objects, and a broken copy must break one place.
const fresh = (): K8sObject[] => JSON.parse(JSON.stringify(objects.map(({ __file: _f, ...o }) => o)));
const find = (all: K8sObject[], kind: string, name: string) => {
  const found = all.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return found;
};
const container = (all: K8sObject[], kind: string, name: string) => find(all, kind, name).spec.template.spec.containers[0];

/** The schema packages, by apiVersion: a manifest of another apiVersion needs a line here. */
const MODELS: Record<string, () => Promise<unknown>> = {
  v1: () => import('kubernetes-models/v1'),
  'apps/v1': () => import('kubernetes-models/apps/v1'),
  'policy/v1': () => import('kubernetes-models/policy/v1'),
  'networking.k8s.io/v1': () => import('kubernetes-models/networking.k8s.io/v1'),
  'monitoring.coreos.com/v1': () => import('@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'),
};

/** The model class of a document, by apiVersion and kind. */
async function modelOf(object: K8sObject): Promise<new (data: K8sObject) => { validate(): void }> {
  const { apiVersion, kind } = object;
  const module = (await MODELS[apiVersion]?.()) as Record<string, unknown> | undefined;
  const model = module?.[kind];
  if (typeof model !== 'function') throw new Error(`${kind} ${apiVersion}: no schema for it in the test's MODELS (kubernetes-models, @kubernetes-models/prometheus-operator)`);
  return model as new (data: K8sObject) => { validate(): void };
}

async function schemaProblems(object: K8sObject): Promise<string | undefined> {
  const { __file: _file, ...data } = object;
  try {
    new (await modelOf(data))(data).validate();
    return undefined;
  } catch (err) {
    return `${data.kind} ${data.metadata?.name}: ${(err as Error).message}`;
  }
}

describe('deploy/kubernetes', () => {
  it('lists every manifest in kustomization.yaml, and nothing else', () => {
    expect(kustomization.kind).toBe('Kustomization');
    expect([...(kustomization.resources ?? [])].sort()).toEqual(files);
  });

  it('has the parts of an installation: namespace, coordinators with a standby, worker StatefulSet, Services, PDBs, ServiceMonitor', () => {
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(kinds).toEqual(
      expect.arrayContaining([
        'Namespace/tidemark',
        'Deployment/tidemark-coordinator',
        'StatefulSet/tidemark-worker',
        'Service/tidemark-coordinator',
        'Service/tidemark-worker',
        'PodDisruptionBudget/tidemark-coordinator',
        'PodDisruptionBudget/tidemark-worker',
        'ServiceMonitor/tidemark',
        'NetworkPolicy/tidemark-worker',
      ]),
    );
    expect(find(objects, 'Deployment', 'tidemark-coordinator').spec.replicas).toBeGreaterThanOrEqual(2);
    expect(find(objects, 'Service', 'tidemark-worker').spec.clusterIP).toBe('None');
  });

  it('validates every document against the Kubernetes and Prometheus Operator schemas', async () => {
    expect(objects.length).toBeGreaterThan(8);
    const problems = (await Promise.all(objects.map(schemaProblems))).filter(Boolean);
    expect(problems).toEqual([]);
  });

  it("passes Tidemark's own checks: references, settings, ports, containers, files", () => {
    expect(checkManifests(fresh(), kustomization)).toEqual([]);
  });

  it('probes the plaintext health listener with native gRPC probes, and workers advertise their stable DNS name', () => {
    for (const [kind, name] of [['Deployment', 'tidemark-coordinator'], ['StatefulSet', 'tidemark-worker']] as const) {
      const c = container(objects, kind, name);
      expect(c.livenessProbe.grpc.port).toBe(7710);
      expect(c.readinessProbe.grpc.port).toBe(7710);
      expect(c.env).toContainEqual({ name: 'TIDEMARK_HEALTH_LISTEN', value: '0.0.0.0:7710' });
    }
    const worker = container(objects, 'StatefulSet', 'tidemark-worker');
    expect(worker.args.join(' ')).toContain('--advertise $(POD_NAME).tidemark-worker.$(POD_NAMESPACE).svc:7701');
    expect(find(objects, 'StatefulSet', 'tidemark-worker').spec.serviceName).toBe('tidemark-worker');
  });

  it('runs the tidemark image of this version (package.json), also after kustomize sets the tag', () => {
    const { version } = JSON.parse(readFileSync(join(repositoryRoot(), 'package.json'), 'utf8')) as { version: string };
    const images = objects.flatMap((o) => [...(o.spec?.template?.spec?.initContainers ?? []), ...(o.spec?.template?.spec?.containers ?? [])].map((c: K8sObject) => c.image));
    expect(images.length).toBeGreaterThan(3);
    expect(new Set(images)).toEqual(new Set([`tidemark:${version}`]));
    expect(kustomization.images).toEqual([{ name: 'tidemark', newTag: version }]);
  });

  it('passes no secret as a literal value: no credential in env values or ConfigMaps', () => {
    const literals = objects.flatMap((o) => [
      ...Object.entries(o.kind === 'ConfigMap' ? (o.data ?? {}) : {}).map(([k, v]) => `${k}=${v}`),
      ...(o.spec?.template?.spec?.containers ?? []).flatMap((c: K8sObject) => (c.env ?? []).map((v: K8sObject) => `${v.name}=${v.value ?? ''}`)),
    ]);
    expect(literals.filter((l) => /:\/\/[^/\s]*:[^/\s]*@|SECRET_KEY=.|ACCESS_KEY=.|MASTER_KEY=.|TOKEN=.|AUTH_TOKENS=./.test(l))).toEqual([]);
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
  });
});

describe('deploy/kubernetes checks catch broken manifests', () => {
  it('a schema error: a port given as text', async () => {
    const all = fresh();
    container(all, 'Deployment', 'tidemark-coordinator').ports[0].containerPort = 'seven thousand';
    expect(await schemaProblems(find(all, 'Deployment', 'tidemark-coordinator'))).toMatch(/containerPort must be integer/);
  });

  it('a misspelt Tidemark setting, in env or in the ConfigMap', () => {
    const all = fresh();
    container(all, 'StatefulSet', 'tidemark-worker').env.push({ name: 'TIDEMARK_MASTERKEY_FILE', value: '/x' });
    find(all, 'ConfigMap', 'tidemark-config').data.TIDEMARK_PROTECTED = '/:*';
    const problems = checkSettings(all);
    expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(/TIDEMARK_MASTERKEY_FILE is no Tidemark setting/), expect.stringMatching(/TIDEMARK_PROTECTED is no Tidemark setting/)]));
  });

  it('a Secret, ServiceAccount or Service that does not exist', () => {
    const all = fresh();
    const coordinator = find(all, 'Deployment', 'tidemark-coordinator').spec.template.spec;
    coordinator.volumes.find((v: K8sObject) => v.name === 'tls').secret.secretName = 'tidemark-tls';
    coordinator.serviceAccountName = 'tidemark-sa';
    find(all, 'StatefulSet', 'tidemark-worker').spec.serviceName = 'workers';
    find(all, 'ServiceMonitor', 'tidemark').spec.endpoints[0].authorization.credentials.key = 'bearer';
    expect(checkReferences(all, kustomization)).toEqual([
      expect.stringMatching(/refers to ServiceAccount "tidemark-sa"/),
      expect.stringMatching(/refers to Secret "tidemark-tls"/),
      expect.stringMatching(/StatefulSet tidemark-worker refers to Service "workers"/),
      expect.stringMatching(/ServiceMonitor tidemark sends key "bearer" of Secret tidemark-metrics-token/),
    ]);
  });

  it('a probe, Service or ServiceMonitor pointing at a port no container declares', () => {
    const all = fresh();
    container(all, 'StatefulSet', 'tidemark-worker').livenessProbe.grpc.port = 7711;
    find(all, 'Service', 'tidemark-coordinator').spec.ports[0].targetPort = 'grpc';
    find(all, 'ServiceMonitor', 'tidemark').spec.endpoints[0].port = 'prometheus';
    const problems = checkPorts(all);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/livenessProbe checks port 7711/),
        expect.stringMatching(/Service tidemark-coordinator: port admin targets grpc/),
        expect.stringMatching(/scrapes port "prometheus"/),
      ]),
    );
  });

  it('an unpinned image, a missing security setting or resources', () => {
    const all = fresh();
    const worker = container(all, 'StatefulSet', 'tidemark-worker');
    worker.image = 'tidemark:latest';
    worker.securityContext.readOnlyRootFilesystem = false;
    delete worker.resources.limits;
    const init = find(all, 'Deployment', 'tidemark-coordinator').spec.template.spec.initContainers[0];
    init.image = 'tidemark';
    delete init.securityContext;
    expect(checkContainers(all)).toEqual([
      expect.stringMatching(/container master-key: image "tidemark" has no tag/),
      'Deployment tidemark-coordinator, container master-key has no securityContext',
      expect.stringMatching(/container worker: image "tidemark:latest" uses the floating tag/),
      expect.stringMatching(/container worker: securityContext.readOnlyRootFilesystem must be true/),
      expect.stringMatching(/container worker: resources.limits needs cpu and memory/),
    ]);
  });

  it('a file setting outside every mount, a key the Secret lacks, an unmounted volume', () => {
    const all = fresh();
    const coordinator = container(all, 'Deployment', 'tidemark-coordinator');
    coordinator.env.find((v: K8sObject) => v.name === 'TIDEMARK_TLS_CERT').value = '/etc/tidemark/tls/worker.pem';
    coordinator.env.find((v: K8sObject) => v.name === 'TIDEMARK_AUTH_TOKENS_FILE').value = '/etc/tidemark/tokens';
    coordinator.volumeMounts = coordinator.volumeMounts.filter((m: K8sObject) => m.name !== 'metrics-token');
    expect(checkFiles(all, kustomization)).toEqual([
      expect.stringMatching(/TIDEMARK_TLS_CERT=\/etc\/tidemark\/tls\/worker.pem, but Secret tidemark-coordinator-tls has no key "worker.pem"/),
      expect.stringMatching(/TIDEMARK_AUTH_TOKENS_FILE=\/etc\/tidemark\/tokens is in no mounted volume/),
      expect.stringMatching(/TIDEMARK_METRICS_TOKEN_FILE=\/etc\/tidemark\/metrics\/token is in no mounted volume/),
      expect.stringMatching(/volume "metrics-token" is mounted by no container/),
    ]);
  });
});
