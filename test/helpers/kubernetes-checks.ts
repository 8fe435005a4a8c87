/**
 * What test/unit/deploy-manifests.test.ts checks in deploy/kubernetes beyond the Kubernetes
 * schemas: references that must resolve (Secrets, ConfigMaps, Services, ServiceAccounts, named
 * ports, files in mounted Secrets), Tidemark settings that exist, pinned images, and the security
 * context and resources of every container. Each check returns the problems it finds, worded
 * for the person who has to fix the manifest.
 */
import { posix } from 'node:path';
import { unknownSettings, unpinnedImage } from './deploy-checks.js';

/** One parsed YAML document (a Kubernetes object), loosely typed: checks read what they need. */
export type K8sObject = Record<string, any>;

/** kustomization.yaml, the parts these checks read. */
export interface Kustomization {
  resources?: string[];
  secretGenerator?: Array<{ name: string; files?: string[] }>;
  configMapGenerator?: Array<{ name: string; files?: string[]; literals?: string[] }>;
}

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job']);

/** Env variables whose value is a file the process reads at start-up. */
const FILE_SETTING = /^TIDEMARK_(CONFIG|.*_FILE|.*_FILES|TLS_CA|TLS_CERT|TLS_KEY|(AMQP|REDIS|S3|MANAGEMENT)_TLS_(CA|CERT|KEY)|RESTORE_TARGETS)$/;

interface PodTemplate {
  owner: string;
  labels: Record<string, string>;
  spec: K8sObject;
}

function describe(object: K8sObject): string {
  return `${object.kind} ${object.metadata?.name ?? '(no name)'}`;
}

function podTemplates(objects: K8sObject[]): PodTemplate[] {
  return objects
    .filter((o) => WORKLOAD_KINDS.has(o.kind))
    .map((o) => ({ owner: describe(o), labels: o.spec?.template?.metadata?.labels ?? {}, spec: o.spec?.template?.spec ?? {} }));
}

function containersOf(spec: K8sObject): Array<{ container: K8sObject; init: boolean }> {
  return [...(spec.initContainers ?? []).map((c: K8sObject) => ({ container: c, init: true })), ...(spec.containers ?? []).map((c: K8sObject) => ({ container: c, init: false }))];
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

/** Key names of each Secret and ConfigMap, declared or generated; `null` keys: not known. */
function namedData(objects: K8sObject[], kustomization: Kustomization, kind: 'Secret' | 'ConfigMap'): Map<string, Set<string> | null> {
  const names = new Map<string, Set<string> | null>();
  for (const o of objects.filter((x) => x.kind === kind)) {
    names.set(o.metadata?.name, new Set([...Object.keys(o.data ?? {}), ...Object.keys(o.stringData ?? {})]));
  }
  const generators = kind === 'Secret' ? kustomization.secretGenerator : kustomization.configMapGenerator;
  for (const generator of generators ?? []) {
    // "key=path" names the key; a bare path uses its file name.
    const keys = (generator.files ?? []).map((file) => (file.includes('=') ? file.slice(0, file.indexOf('=')) : posix.basename(file)));
    const literals = ((generator as { literals?: string[] }).literals ?? []).map((l) => l.slice(0, l.indexOf('=')));
    names.set(generator.name, new Set([...keys, ...literals]));
  }
  return names;
}

/** Every problem found, each naming the object and field; empty when the manifests are right. */
export function checkManifests(objects: K8sObject[], kustomization: Kustomization): string[] {
  return [
    ...checkReferences(objects, kustomization),
    ...checkSettings(objects),
    ...checkPorts(objects),
    ...checkContainers(objects),
    ...checkFiles(objects, kustomization),
  ];
}

/** Secrets, ConfigMaps, ServiceAccounts and Services named by another object exist. */
export function checkReferences(objects: K8sObject[], kustomization: Kustomization): string[] {
  const problems: string[] = [];
  const secrets = namedData(objects, kustomization, 'Secret');
  const configMaps = namedData(objects, kustomization, 'ConfigMap');
  const named = (kind: string) => new Set(objects.filter((o) => o.kind === kind).map((o) => o.metadata?.name));
  const accounts = named('ServiceAccount');
  const services = named('Service');
  const need = (owner: string, kind: string, name: string | undefined, known: { has(n: string): boolean }) => {
    if (name && !known.has(name)) problems.push(`${owner} refers to ${kind} "${name}", which no manifest declares and kustomization.yaml does not generate`);
  };
  for (const { owner, spec } of podTemplates(objects)) {
    need(owner, 'ServiceAccount', spec.serviceAccountName, accounts);
    for (const volume of spec.volumes ?? []) {
      need(owner, 'Secret', volume.secret?.secretName, secrets);
      need(owner, 'ConfigMap', volume.configMap?.name, configMaps);
    }
    for (const { container } of containersOf(spec)) {
      for (const source of container.envFrom ?? []) {
        need(owner, 'Secret', source.secretRef?.name, secrets);
        need(owner, 'ConfigMap', source.configMapRef?.name, configMaps);
      }
      for (const variable of container.env ?? []) {
        const secretKey = variable.valueFrom?.secretKeyRef;
        const mapKey = variable.valueFrom?.configMapKeyRef;
        need(owner, 'Secret', secretKey?.name, secrets);
        need(owner, 'ConfigMap', mapKey?.name, configMaps);
        if (secretKey && secrets.get(secretKey.name) && !secrets.get(secretKey.name)!.has(secretKey.key)) {
          problems.push(`${owner}: env ${variable.name} reads key "${secretKey.key}" that Secret ${secretKey.name} does not have`);
        }
      }
    }
  }
  for (const workload of objects.filter((o) => o.kind === 'StatefulSet')) need(describe(workload), 'Service', workload.spec?.serviceName, services);
  for (const monitor of objects.filter((o) => o.kind === 'ServiceMonitor')) {
    for (const endpoint of monitor.spec?.endpoints ?? []) {
      const secretRef = endpoint.authorization?.credentials ?? endpoint.bearerTokenSecret;
      need(describe(monitor), 'Secret', secretRef?.name, secrets);
      const keys = secretRef && secrets.get(secretRef.name);
      if (keys && !keys.has(secretRef.key)) problems.push(`${describe(monitor)} sends key "${secretRef.key}" of Secret ${secretRef.name}, which has only ${[...keys].join(', ')}`);
    }
  }
  return problems;
}

/** Every TIDEMARK_* variable given to a container, or in a ConfigMap it loads, is a real setting. */
export function checkSettings(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const configMaps = new Map(objects.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata?.name, o]));
  for (const { owner, spec } of podTemplates(objects)) {
    for (const { container } of containersOf(spec)) {
      const names = (container.env ?? []).map((v: K8sObject) => v.name as string);
      for (const source of container.envFrom ?? []) names.push(...Object.keys(configMaps.get(source.configMapRef?.name)?.data ?? {}));
      for (const unknown of unknownSettings(names)) {
        problems.push(`${owner}, container ${container.name}: ${unknown} is no Tidemark setting (services/core/infrastructure/config.ts environmentKeys); Tidemark would ignore it`);
      }
    }
  }
  return problems;
}

/** Probes, Services, NetworkPolicies and ServiceMonitors point at ports that are declared. */
export function checkPorts(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const templates = podTemplates(objects);
  const portsOf = (spec: K8sObject) =>
    (spec.containers ?? []).flatMap((c: K8sObject) => (c.ports ?? []).map((p: K8sObject) => ({ name: p.name as string | undefined, number: p.containerPort as number })));
  const declares = (ports: Array<{ name?: string; number: number }>, port: string | number) => ports.some((p) => (typeof port === 'number' ? p.number === port : p.name === port));
  for (const { owner, spec } of templates) {
    for (const container of spec.containers ?? []) {
      const own = (container.ports ?? []).map((p: K8sObject) => ({ name: p.name, number: p.containerPort }));
      for (const probeName of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        const probe = container[probeName];
        if (!probe) continue;
        const port = probe.grpc?.port ?? probe.httpGet?.port ?? probe.tcpSocket?.port;
        if (port !== undefined && !declares(own, port)) problems.push(`${owner}, container ${container.name}: ${probeName} checks port ${port}, which the container does not declare`);
      }
    }
  }
  const services = objects.filter((o) => o.kind === 'Service');
  for (const service of services) {
    const selected = templates.filter((t) => matches(service.spec?.selector, t.labels));
    if (selected.length === 0) {
      problems.push(`${describe(service)} selects no pods of these manifests (selector ${JSON.stringify(service.spec?.selector)})`);
      continue;
    }
    for (const port of service.spec?.ports ?? []) {
      const target = port.targetPort ?? port.port;
      for (const t of selected) if (!declares(portsOf(t.spec), target)) problems.push(`${describe(service)}: port ${port.name ?? port.port} targets ${target}, which ${t.owner} does not declare`);
    }
  }
  for (const policy of objects.filter((o) => o.kind === 'NetworkPolicy')) {
    const selected = templates.filter((t) => matches(policy.spec?.podSelector?.matchLabels, t.labels));
    if (selected.length === 0) problems.push(`${describe(policy)} selects no pods of these manifests`);
    for (const rule of policy.spec?.ingress ?? []) {
      for (const { port } of rule.ports ?? []) {
        for (const t of selected) if (port !== undefined && !declares(portsOf(t.spec), port)) problems.push(`${describe(policy)} opens port ${port}, which ${t.owner} does not declare`);
      }
    }
  }
  for (const monitor of objects.filter((o) => o.kind === 'ServiceMonitor')) {
    const selected = services.filter((s) => matches(monitor.spec?.selector?.matchLabels, s.metadata?.labels ?? {}));
    if (selected.length === 0) problems.push(`${describe(monitor)} selects no Service of these manifests`);
    for (const endpoint of monitor.spec?.endpoints ?? []) {
      for (const s of selected) {
        if (!(s.spec?.ports ?? []).some((p: K8sObject) => p.name === endpoint.port)) problems.push(`${describe(monitor)} scrapes port "${endpoint.port}", which ${describe(s)} does not name`);
      }
    }
  }
  for (const workload of objects.filter((o) => WORKLOAD_KINDS.has(o.kind))) {
    if (!matches(workload.spec?.selector?.matchLabels, workload.spec?.template?.metadata?.labels ?? {})) {
      problems.push(`${describe(workload)}: spec.selector does not match its pod template's labels`);
    }
  }
  return problems;
}

/** Pinned images, a restrictive security context, resources, and probes on every container. */
export function checkContainers(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  for (const { owner, spec } of podTemplates(objects)) {
    const pod = spec.securityContext ?? {};
    for (const { container, init } of containersOf(spec)) {
      const where = `${owner}, container ${container.name}`;
      const unpinned = unpinnedImage(String(container.image ?? ''));
      if (unpinned) problems.push(`${where}: ${unpinned}`);
      const sc = container.securityContext;
      if (!sc) {
        problems.push(`${where} has no securityContext`);
        continue;
      }
      if (sc.allowPrivilegeEscalation !== false) problems.push(`${where}: securityContext.allowPrivilegeEscalation must be false`);
      if (sc.readOnlyRootFilesystem !== true) problems.push(`${where}: securityContext.readOnlyRootFilesystem must be true (mount an emptyDir where it writes)`);
      if (!(sc.capabilities?.drop ?? []).includes('ALL')) problems.push(`${where}: securityContext.capabilities.drop must include ALL`);
      if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) problems.push(`${where}: runAsNonRoot must be true (container or pod securityContext)`);
      if ((sc.seccompProfile ?? pod.seccompProfile)?.type !== 'RuntimeDefault') problems.push(`${where}: seccompProfile must be RuntimeDefault (container or pod securityContext)`);
      if (sc.privileged === true) problems.push(`${where}: must not be privileged`);
      for (const kind of ['requests', 'limits']) {
        if (!container.resources?.[kind]?.memory || !container.resources?.[kind]?.cpu) problems.push(`${where}: resources.${kind} needs cpu and memory`);
      }
      if (!init && (!container.livenessProbe || !container.readinessProbe)) problems.push(`${where}: needs a livenessProbe and a readinessProbe`);
    }
  }
  return problems;
}

/**
 * A file setting (TIDEMARK_TLS_CERT, ..._FILE, TIDEMARK_CONFIG) names a file inside a volume the
 * container mounts, and, for a Secret, a key that Secret has; every volume is mounted and every
 * mount is a volume. An emptyDir holds a file only when an init container fills it.
 */
export function checkFiles(objects: K8sObject[], kustomization: Kustomization): string[] {
  const problems: string[] = [];
  const secrets = namedData(objects, kustomization, 'Secret');
  for (const { owner, spec } of podTemplates(objects)) {
    const volumes = new Map<string, K8sObject>((spec.volumes ?? []).map((v: K8sObject) => [v.name, v]));
    const mounted = new Set<string>();
    for (const { container, init } of containersOf(spec)) {
      const mounts: K8sObject[] = container.volumeMounts ?? [];
      for (const mount of mounts) {
        mounted.add(mount.name);
        if (!volumes.has(mount.name)) problems.push(`${owner}, container ${container.name} mounts volume "${mount.name}", which the pod does not declare`);
      }
      if (init) continue;
      for (const variable of container.env ?? []) {
        if (!FILE_SETTING.test(variable.name) || typeof variable.value !== 'string') continue;
        for (const path of variable.value.split(',')) {
          const mount = mounts.find((m) => path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
          const volume = mount && volumes.get(mount.name);
          if (!volume) {
            problems.push(`${owner}, container ${container.name}: ${variable.name}=${path} is in no mounted volume`);
            continue;
          }
          const file = posix.relative(mount.mountPath, path);
          if (volume.secret) {
            const keys = secrets.get(volume.secret.secretName);
            const items: K8sObject[] | undefined = volume.secret.items;
            const present = items ? items.some((i) => i.path === file) : keys ? keys.has(file) : true;
            if (!present) problems.push(`${owner}, container ${container.name}: ${variable.name}=${path}, but Secret ${volume.secret.secretName} has no key "${file}"`);
          } else if (volume.emptyDir) {
            const filled = (spec.initContainers ?? []).some((c: K8sObject) => (c.volumeMounts ?? []).some((m: K8sObject) => m.name === mount.name));
            if (!filled) problems.push(`${owner}, container ${container.name}: ${variable.name}=${path} is in an emptyDir no init container fills`);
          }
        }
      }
    }
    for (const name of volumes.keys()) if (!mounted.has(name)) problems.push(`${owner}: volume "${name}" is mounted by no container`);
  }
  return problems;
}
