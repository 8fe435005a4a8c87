import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  ADMIN_RPC_ROLES,
  AdminAuthenticator,
  type AdminCall,
  neededRole,
  parseCertRoles,
  requireRole,
} from '../../services/coordinator/admin-auth.js';
import { checkDrillLimits, checkRestoreId, checkRestoreLimits } from '../../services/coordinator/admin-limits.js';
import { RestoreTargets } from '../../services/coordinator/restore-targets.js';
import { generateToken, hashToken, parseTokenLines, TokenTable, tokenLine } from '../../services/core/infrastructure/auth-tokens.js';
import { ConfigError, PermissionDeniedError, UnauthenticatedError } from '../../services/core/errors.js';
import { CoordinatorServiceService, RestoreRequest } from '../../services/gen/tidemark/v1/admin.js';
import { configError } from '../helpers/errors.js';

function call(options: { authorization?: string[]; cn?: string } = {}): AdminCall {
  const metadata = new grpc.Metadata();
  for (const value of options.authorization ?? []) metadata.add('authorization', value);
  return {
    metadata,
    getPeer: () => 'ipv4:127.0.0.1:5555',
    getAuthContext: () => (options.cn ? { transportSecurityType: 'ssl', sslPeerCertificate: { subject: { CN: options.cn } } as never } : {}),
  };
}

function thrown(run: () => unknown): Error {
  try {
    run();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error, nothing was thrown');
}

const readToken = generateToken();
const operatorToken = generateToken();
const adminToken = generateToken();
const tokens = new TokenTable(
  parseTokenLines([tokenLine('read', 'dashboard', readToken), tokenLine('operator', 'ops', operatorToken), `admin root sha256:${hashToken(adminToken).toString('hex')}`].join('\n'), 'test'),
);

describe('admin API roles: one table for every RPC', () => {
  it('has an entry for every RPC of CoordinatorService, and none for RPCs that do not exist', () => {
    expect(Object.keys(ADMIN_RPC_ROLES).sort()).toEqual(Object.keys(CoordinatorServiceService).sort());
  });

  it('refuses to serve an RPC missing from the table', () => {
    expect(() => neededRole('exportEverything', {})).toThrow(/no entry in ADMIN_RPC_ROLES/);
  });

  it('gives reads to read, runs to operator, raw URLs, append, deletes and real prunes to admin', () => {
    const restore = (over: Partial<RestoreRequest>) => neededRole('restore', RestoreRequest.fromPartial({ checkpoint: 'latest', ...over })).role;
    expect(['status', 'listCheckpoints', 'getCheckpoint', 'verify', 'listRestores'].map((m) => neededRole(m, {}).role)).toEqual(['read', 'read', 'read', 'read', 'read']);
    expect(['checkpoint', 'cancelRestore', 'restoreDrill'].map((m) => neededRole(m, {}).role)).toEqual(['operator', 'operator', 'operator']);
    expect(restore({})).toBe('operator');
    expect(restore({ target: 'dr' })).toBe('operator');
    expect(restore({ dryRun: true })).toBe('read');
    expect(restore({ targetAmqpUrl: 'amqp://u@elsewhere' })).toBe('admin');
    expect(restore({ targetAmqpUrl: 'amqp://u@elsewhere', dryRun: true })).toBe('admin');
    expect(restore({ mode: 'append' })).toBe('admin');
    expect(restore({ append: true })).toBe('admin');
    expect(neededRole('resumeRestore', { restoreId: 'r1-ab', targetAmqpUrl: '' }).role).toBe('operator');
    expect(neededRole('resumeRestore', { restoreId: 'r1-ab', targetAmqpUrl: 'amqp://u:p@h' }).role).toBe('admin');
    expect(neededRole('pruneCheckpoints', { dryRun: true }).role).toBe('operator');
    expect(neededRole('pruneCheckpoints', { dryRun: false }).role).toBe('admin');
    expect(neededRole('deleteCheckpoint', { epoch: 3 }).role).toBe('admin');
  });

  it('denies a weaker role with a message naming the caller, its role and the role needed', () => {
    const err = thrown(() => requireRole({ name: 'dashboard', role: 'read', via: 'token' }, { role: 'operator', what: 'restoring into the source broker' }));
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(err.message).toBe(
      'dashboard has the read role; restoring into the source broker needs the operator role (docs/SECURITY.md#who-may-do-what); nothing was done',
    );
    expect(() => requireRole({ name: 'root', role: 'admin', via: 'token' }, { role: 'operator', what: 'x' })).not.toThrow();
  });
});

describe('admin API: identifying callers', () => {
  const auth = new AdminAuthenticator({ tokens, certRoles: parseCertRoles('ops-bot=operator, grafana=read') });

  it('knows each token by its hash and names the caller, never the token', () => {
    expect(auth.identify(call({ authorization: [`Bearer ${readToken}`] }))).toEqual({ name: 'dashboard', role: 'read', via: 'token' });
    expect(auth.identify(call({ authorization: [`bearer ${operatorToken}`] }))).toMatchObject({ name: 'ops', role: 'operator' });
    expect(auth.identify(call({ authorization: [`Bearer ${adminToken}`] }))).toMatchObject({ name: 'root', role: 'admin' });
  });

  it('refuses no credentials, a wrong token, a malformed header and two headers as unauthenticated, without echoing them', () => {
    const wrong = `${adminToken.slice(0, -1)}x`;
    const cases: Array<[AdminCall, string]> = [
      [call(), 'no credentials: the admin API needs a token (set TIDEMARK_TOKEN or TIDEMARK_TOKEN_FILE)'],
      [call({ authorization: [`Bearer ${wrong}`] }), 'the bearer token is not one this coordinator knows'],
      [call({ authorization: [`Basic ${wrong}`] }), 'the authorization metadata must be "Bearer <token>"'],
      [call({ authorization: [`Bearer ${adminToken}`, `Bearer ${wrong}`] }), 'more than one authorization header'],
    ];
    for (const [c, message] of cases) {
      const err = thrown(() => auth.identify(c));
      expect(err).toBeInstanceOf(UnauthenticatedError);
      expect(err.message).toContain(message);
      expect(err.message).not.toContain(wrong);
      expect(err.message).not.toContain(adminToken);
    }
  });

  it('falls back to the client certificate, mapped to a role by TIDEMARK_AUTH_CERT_ROLES', () => {
    expect(auth.identify(call({ cn: 'ops-bot' }))).toEqual({ name: 'ops-bot', role: 'operator', via: 'certificate' });
    const err = thrown(() => auth.identify(call({ cn: 'stranger' })));
    expect(err).toBeInstanceOf(UnauthenticatedError);
    expect(err.message).toContain('the client certificate "stranger" has no role');
    // A token, when sent, decides: a wrong one is not rescued by a certificate.
    expect(thrown(() => auth.identify(call({ cn: 'ops-bot', authorization: ['Bearer nope'] })))).toBeInstanceOf(UnauthenticatedError);
  });

  it('takes a pluggable certificate identity function', () => {
    const bySan = new AdminAuthenticator({ tokens, certRoles: new Map([['spiffe://tidemark/ci', 'admin']]), certificateIdentity: () => 'spiffe://tidemark/ci' });
    expect(bySan.identify(call())).toMatchObject({ role: 'admin', via: 'certificate' });
  });

  it('refuses to start with no callers configured unless auth is explicitly disabled', () => {
    expect(configError(() => new AdminAuthenticator({ tokens: new TokenTable([]) })).message).toContain('TIDEMARK_AUTH_DISABLED=true');
    expect(new AdminAuthenticator({ tokens: new TokenTable([]), disabled: true }).identify(call())).toMatchObject({ role: 'admin', via: 'auth disabled' });
    // Disabled with callers configured is a contradiction, not a silent open door.
    expect(configError(() => new AdminAuthenticator({ tokens, disabled: true })).message).toContain('TIDEMARK_AUTH_DISABLED=true contradicts the callers configured');
  });
});

describe('tokens file', () => {
  it('refuses a line holding a token instead of its hash, without echoing it', () => {
    const token = generateToken();
    const err = configError(() => parseTokenLines(`# callers\nadmin root ${token}\n`, 'tokens file t'));
    expect(err.message).toContain('tokens file t line 2: the third field must be the sha256 of the token');
    expect(err.message).not.toContain(token);
  });

  it('refuses unknown roles, bad names and duplicate names', () => {
    const hash = 'a'.repeat(64);
    expect(configError(() => parseTokenLines(`root root ${hash}`, 't')).message).toContain('the role must be one of read, operator, admin');
    expect(configError(() => parseTokenLines(`read "x y" ${hash}`, 't')).message).toContain('3 fields, found 4');
    expect(configError(() => parseTokenLines(`read a ${hash}\nadmin a ${hash}`, 't')).message).toContain('the name a is used twice');
  });

  it('matches only the exact token', () => {
    expect(tokens.match(operatorToken)?.name).toBe('ops');
    expect(tokens.match(`${operatorToken} `)).toBeUndefined();
    expect(tokens.match('')).toBeUndefined();
  });

  it('parses certificate role mappings and refuses unknown roles', () => {
    expect([...parseCertRoles('a=read,b=admin')]).toEqual([['a', 'read'], ['b', 'admin']]);
    expect(() => parseCertRoles('a=root')).toThrow(ConfigError);
  });
});

describe('restore targets file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tm-targets-'));
  const file = (name: string, value: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, typeof value === 'string' ? value : JSON.stringify(value));
    return path;
  };

  it('composes the URL from the password file or variable, and shows it without the password', () => {
    const secret = file('dr.pass', 'p@ss:w/rd\n');
    const targets = RestoreTargets.load(
      file('targets.json', { dr: { amqpUrl: 'amqps://tidemark@dr.example:5671', passwordFile: secret }, lab: { amqpUrl: 'amqp://lab@lab:5672', passwordEnv: 'LAB_PASS' } }),
      { LAB_PASS: 'labsecret' },
    );
    expect(targets.names()).toEqual(['dr', 'lab']);
    expect(new URL(targets.url('dr')).password).toBe(encodeURIComponent('p@ss:w/rd'));
    expect(decodeURIComponent(new URL(targets.url('dr')).password)).toBe('p@ss:w/rd');
    expect(targets.url('lab')).toBe('amqp://lab:labsecret@lab:5672');
    expect(targets.describe('lab')).not.toContain('labsecret');
    expect(configError(() => targets.url('prod')).message).toContain('restore target "prod" is not configured on the coordinator; configured targets: dr, lab');
  });

  it('refuses a URL holding a password, a missing variable and unknown keys, without echoing the password', () => {
    const withPassword = configError(() => RestoreTargets.load(file('a.json', { dr: { amqpUrl: 'amqp://u:hunter2@h' } }), {}));
    expect(withPassword.message).toContain('amqpUrl holds a password');
    expect(withPassword.message).not.toContain('hunter2');
    expect(configError(() => RestoreTargets.load(file('b.json', { dr: { amqpUrl: 'amqp://u@h', passwordEnv: 'NOPE' } }), {})).message).toContain('NOPE (passwordEnv) is not set');
    expect(configError(() => RestoreTargets.load(file('c.json', { dr: { amqpUrl: 'amqp://u@h', password: 'x' } }), {})).message).toContain('target dr');
    expect(configError(() => RestoreTargets.load(file('d.json', { 'no spaces': { amqpUrl: 'amqp://u@h' } }), {})).message).toContain('target name');
  });
});

describe('bounded admin requests', () => {
  const request = (over: Partial<RestoreRequest>) => RestoreRequest.fromPartial({ checkpoint: 'latest', ...over });

  it('refuses too many selectors or mappings, long names, and numbers past their limits', () => {
    expect(configError(() => checkRestoreLimits(request({ queues: Array.from({ length: 1_001 }, (_, i) => `q${i}`) }))).message).toContain('1001 queue selectors');
    expect(configError(() => checkRestoreLimits(request({ map: Array.from({ length: 10_001 }, (_, i) => ({ from: `a${i}`, to: `b${i}` })) }))).message).toContain('10001 --map');
    expect(configError(() => checkRestoreLimits(request({ prefix: 'p'.repeat(1_025) }))).message).toContain('longer than 1024 bytes');
    expect(configError(() => checkRestoreLimits(request({ concurrency: 5_000 }))).message).toContain('--concurrency 5000 is above the limit of 1024');
    expect(configError(() => checkRestoreLimits(request({ confirmWindow: 100_000 }))).message).toContain('--confirm-window');
    expect(() => checkRestoreLimits(request({ queues: ['a', 'b'], concurrency: 8, confirmWindow: 256 }))).not.toThrow();
  });

  it('bounds a restore drill\'s selectors and concurrency the same way', () => {
    expect(configError(() => checkDrillLimits({ queues: Array.from({ length: 1_001 }, (_, i) => `q${i}`), concurrency: 1 })).message).toContain('a drill takes; nothing was done');
    expect(configError(() => checkDrillLimits({ queues: ['q'.repeat(1_025)], concurrency: 1 })).message).toContain('longer than 1024 bytes; nothing was done');
    expect(configError(() => checkDrillLimits({ queues: [], concurrency: 5_000 })).message).toContain('concurrency 5000 is above the limit of 1024');
    expect(() => checkDrillLimits({ queues: ['!c.ttl'], concurrency: 4 })).not.toThrow();
  });

  it('accepts restore ids as the coordinator makes them and nothing that could shape a Redis key', () => {
    expect(() => checkRestoreId('r17-0a1b2c3d')).not.toThrow();
    for (const bad of ['', 'r1:queues', '*', 'a'.repeat(65), 'r1 x', '../r1']) expect(() => checkRestoreId(bad), bad).toThrow(ConfigError);
  });
});

describe('the admin API default address', () => {
  it('is loopback unless callers authenticate and the port speaks TLS', async () => {
    const { defaultAdminListen } = await import('../../services/coordinator/index.js');
    expect(defaultAdminListen({ authenticated: false, tls: false })).toBe('127.0.0.1:7700');
    expect(defaultAdminListen({ authenticated: true, tls: false })).toBe('127.0.0.1:7700');
    expect(defaultAdminListen({ authenticated: false, tls: true })).toBe('127.0.0.1:7700');
    expect(defaultAdminListen({ authenticated: true, tls: true })).toBe('0.0.0.0:7700');
  });
});
