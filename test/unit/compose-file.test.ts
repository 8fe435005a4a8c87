/**
 * docker-compose.yml and deploy/Dockerfile, checked without a Docker engine: pinned images,
 * published ports on loopback unless the operator says otherwise, a healthcheck on every
 * long-running service, depends_on that resolve, real TIDEMARK_* settings. `docker compose config`
 * runs too where an engine and the compose plugin answer.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { unknownSettings, unpinnedImage } from '../helpers/deploy-checks.js';
import { repositoryRoot } from '../helpers/repo.js';

const root = repositoryRoot();
const composeText = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
const dockerfile = readFileSync(join(root, 'deploy', 'Dockerfile'), 'utf8');
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version as string;

type Service = Record<string, any>;
type Compose = { services: Record<string, Service> };

/** Compose files use YAML merge keys (<<: *tidemark). */
const parseCompose = (text: string): Compose => parse(text, { merge: true }) as Compose;

/** ${VAR:-default} and ${VAR-default} as compose reads them with VAR unset; ${VAR} as empty. */
const withDefaults = (text: string) => text.replace(/\$\{[A-Z0-9_]+(?::?-([^}]*))?\}/g, (_m, fallback: string | undefined) => fallback ?? '');

const LOOPBACK = new Set(['127.0.0.1', '::1', '[::1]', 'localhost']);

/** A one-shot job: runs to completion, is never restarted, needs no healthcheck. */
const isOneShot = (service: Service) => service.restart === 'no';

function checkCompose(compose: Compose): string[] {
  const problems: string[] = [];
  const names = new Set(Object.keys(compose.services ?? {}));
  for (const [name, service] of Object.entries(compose.services ?? {})) {
    if (!service.image) problems.push(`service ${name} has no image`);
    const unpinned = service.image && unpinnedImage(withDefaults(String(service.image)));
    if (unpinned) problems.push(`service ${name}: ${unpinned}`);
    if (service.build && service.image !== `tidemark:${version}`) problems.push(`service ${name} builds tidemark but tags it ${service.image}, not tidemark:${version} (package.json)`);
    for (const port of service.ports ?? []) {
      const hostIp = typeof port === 'object' ? port.host_ip : withDefaults(String(port)).match(/^(\[[^\]]+\]|[^:]+):[^:]+:[^:]+$/)?.[1];
      if (!hostIp || !LOOPBACK.has(withDefaults(String(hostIp)))) problems.push(`service ${name} publishes ${JSON.stringify(port)} on every interface; bind it to "\${TIDEMARK_BIND_ADDRESS:-127.0.0.1}:..."`);
    }
    if (!isOneShot(service) && (!service.healthcheck?.test || service.healthcheck.disable)) problems.push(`service ${name} runs for good but has no healthcheck`);
    const dependsOn = Array.isArray(service.depends_on) ? Object.fromEntries(service.depends_on.map((d: string) => [d, {}])) : (service.depends_on ?? {});
    for (const [other, { condition }] of Object.entries(dependsOn as Record<string, { condition?: string }>)) {
      const target = compose.services[other];
      if (!names.has(other)) problems.push(`service ${name} depends on "${other}", which is no service of this file`);
      else if (condition === 'service_healthy' && (!target.healthcheck?.test || target.healthcheck.disable)) problems.push(`service ${name} waits for ${other} to be healthy, but ${other} has no healthcheck`);
      else if (condition === 'service_completed_successfully' && !isOneShot(target)) problems.push(`service ${name} waits for ${other} to complete, but ${other} runs for good`);
    }
    const env = Array.isArray(service.environment) ? service.environment.map((e: string) => e.split('=')[0]) : Object.keys(service.environment ?? {});
    for (const unknown of unknownSettings(env)) problems.push(`service ${name}: ${unknown} is no Tidemark setting (services/core/infrastructure/config.ts); it would be ignored`);
  }
  return problems;
}

function checkDockerfile(text: string): string[] {
  const problems: string[] = [];
  const froms = [...text.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
  if (froms.length === 0) problems.push('deploy/Dockerfile has no FROM');
  for (const image of froms) {
    const unpinned = unpinnedImage(image);
    if (unpinned) problems.push(`deploy/Dockerfile FROM: ${unpinned}`);
  }
  const healthcheck = /^HEALTHCHECK\b((?:[^\n]*\\\n)*[^\n]*)/m.exec(text)?.[1];
  if (!healthcheck || /\bNONE\b/.test(healthcheck)) problems.push('deploy/Dockerfile has no HEALTHCHECK');
  const listen = /^ENV\s+TIDEMARK_HEALTH_LISTEN=(\S+)/m.exec(text)?.[1];
  const asked = healthcheck && /"--address",\s*"([^"]+)"/.exec(healthcheck)?.[1];
  if (healthcheck && asked !== listen) problems.push(`deploy/Dockerfile: HEALTHCHECK asks ${asked} but TIDEMARK_HEALTH_LISTEN is ${listen}`);
  if (!/^COPY\s+--from=build\s+\/src\/proto\s+\.\/proto$/m.test(text)) problems.push('deploy/Dockerfile does not copy proto/ next to dist/ (/app/proto), which server reflection reads at run time');
  return problems;
}

function answers(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

describe('docker-compose.yml and deploy/Dockerfile', () => {
  it('pins every image, binds published ports to loopback, health-checks long-running services, and names real settings and services', () => {
    const compose = parseCompose(composeText);
    expect(Object.keys(compose.services)).toEqual(expect.arrayContaining(['rabbitmq', 'redis', 'minio', 'coordinator', 'worker-1']));
    expect(checkCompose(compose)).toEqual([]);
  });

  it('pins the base image, has a HEALTHCHECK on the health listener, and ships proto/', () => {
    expect(checkDockerfile(dockerfile)).toEqual([]);
    expect(dockerfile).toMatch(/^FROM node:20\.\d+\.\d+-bookworm-slim AS build$/m);
  });

  // Docker's own parser, where it exists. Here (and on the CI machines of the brief) the docker
  // CLI is installed without an engine or the compose plugin, so this one check cannot run;
  // the YAML checks above run everywhere.
  const dockerReady = answers('docker', ['info']) && answers('docker', ['compose', 'version']);
  it.skipIf(!dockerReady)('passes docker compose config (needs a Docker engine and the compose plugin)', () => {
    execFileSync('docker', ['compose', '-f', join(root, 'docker-compose.yml'), 'config', '-q'], { cwd: root, stdio: 'pipe', timeout: 60_000 });
  });
});

describe('compose checks catch broken files', () => {
  const broken = (edit: (c: Compose) => void) => {
    const compose = parseCompose(composeText);
    edit(compose);
    return checkCompose(compose);
  };

  it('a floating or missing tag', () => {
    expect(broken((c) => (c.services.redis.image = 'redis:7'))).toEqual([expect.stringMatching(/service redis: .*tag "7" names a version line/)]);
    expect(broken((c) => (c.services.minio.image = 'minio/minio'))).toEqual([expect.stringMatching(/service minio: .*has no tag/)]);
  });

  it('a port published on every interface', () => {
    expect(broken((c) => (c.services.redis.ports = ['6379:6379']))).toEqual([expect.stringMatching(/service redis publishes "6379:6379" on every interface/)]);
    expect(broken((c) => (c.services.redis.ports = ['${TIDEMARK_BIND_ADDRESS:-0.0.0.0}:6379:6379']))).toHaveLength(1);
  });

  it('a long-running service without a healthcheck, and a wait on it', () => {
    expect(broken((c) => delete c.services.minio.healthcheck)).toEqual([
      'service minio runs for good but has no healthcheck',
      'service minio-setup waits for minio to be healthy, but minio has no healthcheck',
    ]);
  });

  it('a depends_on naming no service, and a misspelt setting', () => {
    expect(
      broken((c) => {
        c.services.coordinator.depends_on = { ...c.services.coordinator.depends_on, 'tls-init': { condition: 'service_completed_successfully' } };
        c.services.coordinator.environment = { ...c.services.coordinator.environment, TIDEMARK_S3_SECRET: 'x' };
      }),
    ).toEqual([expect.stringMatching(/depends on "tls-init"/), expect.stringMatching(/TIDEMARK_S3_SECRET is no Tidemark setting/)]);
  });

  it('a Dockerfile with a floating base, no HEALTHCHECK, no proto/', () => {
    const text = dockerfile.replace(/^FROM node:\S+ AS build$/m, 'FROM node:20-bookworm-slim AS build').replace(/^HEALTHCHECK[^]*?\n(?=ENTRYPOINT)/m, '').replace(/^COPY --from=build \/src\/proto .*$/m, '');
    expect(checkDockerfile(text)).toEqual([
      expect.stringMatching(/FROM: image "node:20-bookworm-slim": tag "20-bookworm-slim" names a version line/),
      'deploy/Dockerfile has no HEALTHCHECK',
      expect.stringMatching(/does not copy proto/),
    ]);
  });
});
