/**
 * The pure parts of the gRPC conventions (docs/API.md): the NotLeaderError trailer, the client's
 * choice of coordinator, readiness, where proto/ is found, the leader address record, the
 * settings; and the typed client finding the leader among in-process servers on loopback.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkClient } from '../../services/client/index.js';
import { CoordinatorRoute, parseCoordinatorList } from '../../services/client/coordinator-route.js';
import { ConfigError, FailedPreconditionError, NotFoundError, NotLeaderError, TransientError } from '../../services/core/errors.js';
import { serverStream, unary } from '../../services/core/grpc/handlers.js';
import { startServer } from '../../services/core/grpc/server.js';
import { fromServiceError, LEADER_ADDRESS_KEY, toServiceError } from '../../services/core/grpc/status.js';
import { findProtoDir } from '../../services/core/health/reflection.js';
import { loadConfig } from '../../services/core/infrastructure/config.js';
import { Readiness } from '../../services/core/infrastructure/readiness.js';
import { parseLeaderAddress } from '../../services/coordinator/leader-directory.js';
import { CoordinatorServiceService, RoundOutcome, StatusReply, type CoordinatorServiceServer } from '../../services/gen/tidemark/v1/admin.js';
import { freePort } from '../helpers/cluster.js';

/** What a client receives for a status a handler answered with. */
function asReceived(status: Partial<grpc.StatusObject>): grpc.ServiceError {
  return Object.assign(new Error(status.details), { code: status.code!, details: status.details!, metadata: status.metadata! });
}

describe('NotLeaderError on the wire', () => {
  it('carries the leader address in the tidemark-leader-address trailer and comes back with it', () => {
    const sent = toServiceError(new NotLeaderError('coordinator c2 is a standby', 'c1.example:7700'));
    expect(sent.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(sent.metadata!.get(LEADER_ADDRESS_KEY)).toEqual(['c1.example:7700']);
    expect(sent.metadata!.get('tidemark-error')).toEqual(['NotLeaderError']);
    const back = fromServiceError(asReceived(sent), 'coordinator at c2:7700');
    expect(back).toBeInstanceOf(NotLeaderError);
    expect((back as NotLeaderError).leaderAddress).toBe('c1.example:7700');
    expect(back.message).toBe('coordinator c2 is a standby');
  });

  it('without a known leader it has no trailer, and other FAILED_PRECONDITIONs stay what they were', () => {
    const sent = toServiceError(new NotLeaderError('no coordinator leads right now'));
    expect(sent.metadata!.get(LEADER_ADDRESS_KEY)).toEqual([]);
    const back = fromServiceError(asReceived(sent), 'x');
    expect(back).toBeInstanceOf(NotLeaderError);
    expect((back as NotLeaderError).leaderAddress).toBeUndefined();
    const other = fromServiceError(asReceived(toServiceError(new FailedPreconditionError('no master key'))), 'x');
    expect(other).toBeInstanceOf(FailedPreconditionError);
    expect(other).not.toBeInstanceOf(NotLeaderError);
  });
});

describe('choosing a coordinator', () => {
  const refused = () => Object.assign(new TransientError('x'), { cause: asReceived({ code: grpc.status.UNAVAILABLE, details: 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1', metadata: new grpc.Metadata() }) });

  it('parses a comma-separated list, trimming and dropping repeats; an empty one is a ConfigError', () => {
    expect(parseCoordinatorList(' a:1, b:2 ,a:1,')).toEqual(['a:1', 'b:2']);
    expect(() => parseCoordinatorList(' , ')).toThrow(ConfigError);
  });

  it('follows a standby to the leader it names, once, then tries the rest of the list', () => {
    const route = new CoordinatorRoute('s:1,t:2');
    expect(route.current).toBe('s:1');
    const notLeader = new NotLeaderError('standby', 'l:3');
    expect(route.next(notLeader, new Set(['s:1']))).toBe('l:3');
    expect(route.current).toBe('l:3');
    // The named leader has been tried and refused too (it lost the lease meanwhile): the list.
    expect(route.next(notLeader, new Set(['s:1', 'l:3']))).toBe('t:2');
    expect(route.next(new NotLeaderError('standby'), new Set(['s:1', 'l:3', 't:2']))).toBeUndefined();
  });

  it('moves on when nothing answered, and never after a failure the call may have caused', () => {
    const route = new CoordinatorRoute('dead:1,s:2');
    expect(route.next(refused(), new Set(['dead:1']))).toBe('s:2');
    expect(route.next(refused(), new Set(['dead:1', 's:2']))).toBeUndefined();
    expect(route.next(new NotFoundError('checkpoint 9 does not exist'), new Set(['dead:1']))).toBeUndefined();
    expect(route.next(new TransientError('redis is unreachable'), new Set(['dead:1']))).toBeUndefined();
    route.answered('s:2');
    expect(route.current).toBe('s:2');
  });
});

describe('readiness', () => {
  it('is not ready before every check answered once, then follows the checks, naming what fails', async () => {
    let redisUp = true;
    const readiness = new Readiness(
      [
        {
          name: 'redis',
          probe: async () => {
            if (!redisUp) throw new Error('connection refused');
          },
        },
        { name: 'store', probe: async () => {} },
      ],
      { timeoutMs: 200 },
    );
    const heard: boolean[] = [];
    // Listeners hear changes of the reasons too; what matters here is the changes of readiness.
    readiness.onChange((state) => {
      if (heard.at(-1) !== state.ready) heard.push(state.ready);
    });
    expect(readiness.ready).toBe(false);
    expect(readiness.state().problems).toEqual(['redis: not checked yet', 'store: not checked yet']);
    expect(await readiness.checkNow()).toEqual({ ready: true, problems: [] });
    redisUp = false;
    const down = await readiness.checkNow();
    expect(down.ready).toBe(false);
    expect(down.problems).toEqual(['redis: connection refused']);
    await readiness.checkNow();
    redisUp = true;
    expect((await readiness.checkNow()).ready).toBe(true);
    expect(heard).toEqual([false, true, false, true]);
  });

  it('counts a check that neither answers nor fails as failed', async () => {
    const readiness = new Readiness([{ name: 'broker', probe: () => new Promise(() => {}) }], { timeoutMs: 50 });
    const state = await readiness.checkNow();
    expect(state.ready).toBe(false);
    expect(state.problems[0]).toMatch(/^broker: the broker check took longer than 50 ms/);
  });
});

describe('where proto/ is found', () => {
  it('finds the package root from the build and from an image layout alike, and says what to copy when it is missing', () => {
    const root = mkdtempSync(join(tmpdir(), 'tm-proto-'));
    try {
      mkdirSync(join(root, 'app', 'proto', 'tidemark', 'v1'), { recursive: true });
      writeFileSync(join(root, 'app', 'proto', 'tidemark', 'v1', 'admin.proto'), 'syntax = "proto3";');
      expect(findProtoDir(join(root, 'app', 'dist', 'services', 'core', 'health', 'reflection.js'))).toBe(join(root, 'app', 'proto'));
      expect(() => findProtoDir(join(root, 'elsewhere', 'dist', 'reflection.js'))).toThrow(/COPY proto \.\/proto next to dist/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
    // This repository's own, from the sources.
    expect(findProtoDir()).toMatch(/proto$/);
  });
});

describe('settings', () => {
  it('reads healthListen and advertise from the environment, and a list of coordinators', () => {
    const config = loadConfig({ env: { TIDEMARK_HEALTH_LISTEN: '0.0.0.0:7710', TIDEMARK_ADVERTISE: 'c1.svc:7700', TIDEMARK_COORDINATOR: 'c1:7700, c2:7700' } });
    expect(config).toMatchObject({ healthListen: '0.0.0.0:7710', advertise: 'c1.svc:7700', coordinator: 'c1:7700, c2:7700' });
    expect(loadConfig({ env: {} }).healthListen).toBeUndefined();
    expect(() => loadConfig({ env: { TIDEMARK_HEALTH_LISTEN: '7710' } })).toThrow(/healthListen \(--health-listen, TIDEMARK_HEALTH_LISTEN\): must be host:port/);
    expect(() => loadConfig({ env: { TIDEMARK_COORDINATOR: 'c1:7700,c2' } })).toThrow(/coordinator .*comma-separated list/);
  });

  it('believes a leader address record only in its own format', () => {
    expect(parseLeaderAddress('7 c1.svc:7700')).toEqual({ token: 7, address: 'c1.svc:7700' });
    expect(parseLeaderAddress('c1.svc:7700')).toBeUndefined();
    expect(parseLeaderAddress(null)).toBeUndefined();
  });
});

describe('the typed client finds the leader', () => {
  const calls = { standby: 0, leader: 0 };
  let leaderAddress = '';
  let standbyAddress = '';
  let deadAddress = '';
  const servers: grpc.Server[] = [];

  /** A coordinator that leads, or a standby that refuses leader-only calls naming the leader. */
  function coordinator(role: 'leader' | 'standby'): CoordinatorServiceServer {
    const refuse = () => {
      calls[role] += 1;
      if (role === 'standby') throw new NotLeaderError('coordinator s is a standby, so it did not start a checkpoint round', leaderAddress);
    };
    const notUsed = async (): Promise<never> => {
      throw new Error('not used');
    };
    return {
      checkpoint: unary(async () => {
        refuse();
        return { epoch: 7, outcome: RoundOutcome.ROUND_OUTCOME_COMMITTED, reason: '', durationMs: 1 };
      }),
      status: unary(async () => StatusReply.fromPartial({ coordinatorId: role, leader: role === 'leader' })),
      restore: serverStream(async (_request, emit) => {
        refuse();
        emit({ event: { $case: 'done', value: { restoreId: 'r1', messages: 0, queues: 0, failedQueues: 0, durationMs: 1, state: 'done' } } });
      }),
      listCheckpoints: unary(notUsed),
      getCheckpoint: unary(notUsed),
      resumeRestore: serverStream(notUsed),
      cancelRestore: unary(notUsed),
      listRestores: unary(notUsed),
      verify: serverStream(notUsed),
      restoreDrill: serverStream(notUsed),
      pruneCheckpoints: unary(notUsed),
      deleteCheckpoint: unary(notUsed),
      rotateKeys: unary(notUsed),
    };
  }

  beforeAll(async () => {
    for (const role of ['leader', 'standby'] as const) {
      const { server, port } = await startServer([[CoordinatorServiceService, coordinator(role) as unknown as grpc.UntypedServiceImplementation]], '127.0.0.1:0');
      servers.push(server);
      if (role === 'leader') leaderAddress = `127.0.0.1:${port}`;
      else standbyAddress = `127.0.0.1:${port}`;
    }
    deadAddress = `127.0.0.1:${await freePort()}`;
  });

  afterAll(() => {
    for (const server of servers) server.forceShutdown();
  });

  it('a checkpoint sent to a standby, after a dead address, is taken by the leader; read calls stay where they were answered', async () => {
    const client = new TidemarkClient(`${deadAddress},${standbyAddress}`, { deadlineMs: 5_000 });
    try {
      expect((await client.status()).coordinatorId).toBe('standby');
      expect(client.currentAddress).toBe(standbyAddress);
      const before = { ...calls };
      expect((await client.checkpoint(true)).epoch).toBe(7);
      expect(calls).toEqual({ standby: before.standby + 1, leader: before.leader + 1 });
      expect(client.currentAddress).toBe(leaderAddress);
      // The next leader-only call goes straight to the leader.
      await client.checkpoint(true);
      expect(calls).toEqual({ standby: before.standby + 1, leader: before.leader + 2 });
    } finally {
      client.close();
    }
  });

  it('a restore stream refused by the standby is opened again at the leader', async () => {
    const client = new TidemarkClient(standbyAddress, { deadlineMs: 5_000 });
    try {
      const events = [];
      for await (const event of client.restore({ checkpoint: 'latest' })) events.push(event.event?.$case);
      expect(events).toEqual(['done']);
      expect(client.currentAddress).toBe(leaderAddress);
    } finally {
      client.close();
    }
  });

  it('with followLeader off, the standby\'s refusal reaches the caller with the leader\'s address', async () => {
    const client = new TidemarkClient(standbyAddress, { deadlineMs: 5_000, followLeader: false });
    try {
      const err = await client.checkpoint(true).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(NotLeaderError);
      expect((err as NotLeaderError).leaderAddress).toBe(leaderAddress);
      expect(client.currentAddress).toBe(standbyAddress);
    } finally {
      client.close();
    }
  });

  it('when no address answers, the error names every coordinator tried', async () => {
    const client = new TidemarkClient(`${deadAddress}`, { deadlineMs: 5_000 });
    const other = new TidemarkClient(`${deadAddress},127.0.0.1:${await freePort()}`, { deadlineMs: 5_000 });
    try {
      await expect(client.status()).rejects.toThrow(`cannot reach the coordinator at ${deadAddress}`);
      await expect(other.status()).rejects.toThrow(/cannot reach any coordinator of 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+/);
    } finally {
      client.close();
      other.close();
    }
  });
});
