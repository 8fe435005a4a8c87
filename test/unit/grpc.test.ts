import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkClient, type RestoreEvent } from '../../services/client/index.js';
import {
  ConfigError,
  CorruptDataError,
  FailedPreconditionError,
  NotFoundError,
  StaleLeaderError,
  TidemarkError,
  TransientError,
} from '../../services/core/errors.js';
import { beforeDeadline, requireField, serverStream, unary } from '../../services/core/grpc/handlers.js';
import { startServer } from '../../services/core/grpc/server.js';
import { fromServiceError, isConnectFailure, isRetryableGrpcError, toServiceError } from '../../services/core/grpc/status.js';
import {
  CoordinatorServiceService,
  RoundOutcome,
  StatusReply,
  type CoordinatorServiceServer,
} from '../../services/gen/tidemark/v1/admin.js';

/** What the test server's Checkpoint handler does next. */
let checkpointBehaviour: 'ok' | 'config' | 'not-found' | 'transient' | 'stale' | 'precondition' | 'crash' | 'slow' = 'ok';
/** Calls that reached a handler: a request refused at decoding never does. */
const handled = { checkpoint: 0, restore: 0 };
let lastCheckpointDeadline: grpc.Deadline | undefined;
let slowCheckpointAborted: Promise<boolean> = Promise.resolve(false);
let restoreEnded: Promise<{ cancelled: boolean; emitted: number }> = Promise.resolve({ cancelled: false, emitted: 0 });

const coordinator: CoordinatorServiceServer = {
  checkpoint: unary(async (request, call) => {
    handled.checkpoint += 1;
    lastCheckpointDeadline = call.getDeadline();
    switch (checkpointBehaviour) {
      case 'precondition':
        throw new FailedPreconditionError('coordinator c2 is a standby: send the restore to the leader');
      case 'config':
        throw new ConfigError('checkpoint interval must be positive');
      case 'not-found':
        throw new NotFoundError('no protected queues found for vhost /');
      case 'transient':
        throw new TransientError('redis is unreachable; try again');
      case 'stale':
        throw new StaleLeaderError(3, 7);
      case 'crash':
        throw new Error('something unexpected');
      case 'slow':
        slowCheckpointAborted = new Promise((resolve) => {
          call.signal.addEventListener('abort', () => resolve(true), { once: true });
        });
        await slowCheckpointAborted;
        throw new Error('unreachable: the client is gone');
      default:
        return { epoch: 42, outcome: request.wait ? RoundOutcome.ROUND_OUTCOME_COMMITTED : RoundOutcome.ROUND_OUTCOME_PENDING, reason: '', durationMs: 5 };
    }
  }),
  listCheckpoints: unary(async () => ({ checkpoints: [] })),
  getCheckpoint: unary(async (request) => {
    requireField(request.id, 'id');
    throw new NotFoundError(`checkpoint ${request.id} not found`);
  }),
  status: unary(async () => StatusReply.fromPartial({ coordinatorId: 'coordinator-test', leader: true, leaderToken: 9, protectedQueues: 3 })),
  restore: serverStream(async (request, emit, call) => {
    handled.restore += 1;
    let emitted = 0;
    let finish!: (value: { cancelled: boolean; emitted: number }) => void;
    restoreEnded = new Promise((resolve) => (finish = resolve));
    try {
      emit({ event: { $case: 'plan', value: { restoreId: 'r1', checkpoint: 42, queues: [], messages: 3, bodyBytes: 0, dryRun: request.dryRun, estimatedMs: 0, estimateBasis: '', resumed: false, mode: 'recreate', concurrency: 1, rateLimit: 0 } } });
      if (request.checkpoint === 'missing') throw new NotFoundError('checkpoint missing not found');
      const total = request.prefix === 'endless' ? Infinity : 3;
      for (let confirmed = 1; confirmed <= total && !call.signal.aborted; confirmed++) {
        emit({ event: { $case: 'progress', value: progress(confirmed) } });
        emitted++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      if (call.signal.aborted) return;
      emit({ event: { $case: 'done', value: { restoreId: 'r1', messages: 3, queues: 1, failedQueues: 0, durationMs: 1, state: 'done' } } });
    } finally {
      finish({ cancelled: call.cancelled, emitted });
    }
  }),
  resumeRestore: serverStream(async () => {
    throw new NotFoundError('restore r0 is not known');
  }),
  cancelRestore: unary(async () => ({ state: 'cancelled' })),
  listRestores: unary(async () => ({ restores: [] })),
  verify: serverStream(async () => {
    throw new NotFoundError('checkpoint 0 not found');
  }),
  restoreDrill: serverStream(async () => {
    throw new NotFoundError('checkpoint 0 not found');
  }),
  pruneCheckpoints: unary(async () => ({ dryRun: true, kept: [], deleted: [], segmentsDeleted: 0, stagedDeleted: 0, bytesFreed: 0, sweepSkipped: '' })),
  deleteCheckpoint: unary(async (request) => ({ epoch: request.epoch })),
  rotateKeys: unary(async () => ({ masterKeyId: 'mk-0', rewrapped: 0, current: 0, failed: [] })),
};

function progress(confirmed: number) {
  return { workerId: 'w1', sourceVhost: '/', sourceQueue: 'q', targetVhost: '/', targetQueue: 'q', confirmed, total: 3, done: confirmed === 3, error: '', bodyBytes: 0, skipped: 0 };
}

let server: grpc.Server;
let client: TidemarkClient;
let port: number;

beforeAll(async () => {
  ({ server, port } = await startServer([[CoordinatorServiceService, coordinator]], '127.0.0.1:0'));
  client = new TidemarkClient(`127.0.0.1:${port}`, { deadlineMs: 5_000 });
});

afterAll(() => {
  client?.close();
  server?.forceShutdown();
});

async function rejection(promise: Promise<unknown>): Promise<TidemarkError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TidemarkError);
  return err as TidemarkError;
}

function codeOf(err: TidemarkError): grpc.status | undefined {
  return (err.cause as grpc.ServiceError | undefined)?.code;
}

describe('gRPC round trip', () => {
  it('returns the handler reply to the client', async () => {
    const status = await client.status();
    expect(status).toMatchObject({ coordinatorId: 'coordinator-test', leader: true, leaderToken: 9, protectedQueues: 3 });
    checkpointBehaviour = 'ok';
    expect(await client.checkpoint(false)).toMatchObject({ epoch: 42, outcome: RoundOutcome.ROUND_OUTCOME_PENDING });
  });

  it.each([
    ['config', grpc.status.INVALID_ARGUMENT, ConfigError, 'checkpoint interval must be positive', false],
    ['not-found', grpc.status.NOT_FOUND, NotFoundError, 'no protected queues found for vhost /', false],
    ['transient', grpc.status.UNAVAILABLE, TransientError, 'redis is unreachable; try again', true],
    ['crash', grpc.status.INTERNAL, TidemarkError, 'something unexpected', false],
  ] as const)('a handler throwing %s reaches the client as code %i, the same class and message', async (behaviour, code, errorClass, message, retryable) => {
    checkpointBehaviour = behaviour;
    const err = await rejection(client.checkpoint(false));
    expect(codeOf(err)).toBe(code);
    expect(err).toBeInstanceOf(errorClass);
    expect(err.message).toBe(message);
    expect(err.retryable).toBe(retryable);
    expect(isRetryableGrpcError(err)).toBe(retryable);
    expect(isRetryableGrpcError(err.cause)).toBe(retryable);
  });

  it('a service in the wrong state answers FAILED_PRECONDITION, which comes back as FailedPreconditionError', async () => {
    checkpointBehaviour = 'precondition';
    const err = await rejection(client.checkpoint(false));
    expect(codeOf(err)).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect(err.message).toBe('coordinator c2 is a standby: send the restore to the leader');
    expect(err.retryable).toBe(false);
  });

  it('a stale leader token comes back as StaleLeaderError with both tokens', async () => {
    checkpointBehaviour = 'stale';
    const err = await rejection(client.checkpoint(false));
    expect(codeOf(err)).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err).toBeInstanceOf(StaleLeaderError);
    expect(err).toMatchObject({ token: 3, current: 7 });
    expect(err.message).toBe(new StaleLeaderError(3, 7).message);
  });

  it('a request missing a required field is INVALID_ARGUMENT saying which field', async () => {
    const err = await rejection(client.getCheckpoint(''));
    expect(codeOf(err)).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toBe('id is required');
    const missing = await rejection(client.getCheckpoint('17'));
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing.message).toBe('checkpoint 17 not found');
  });

  it('a waited checkpoint gets a deadline of at least 10 minutes; others the client deadline', async () => {
    checkpointBehaviour = 'ok';
    await client.checkpoint(true);
    expect(Number(lastCheckpointDeadline) - Date.now()).toBeGreaterThan(9 * 60_000);
    await client.checkpoint(false);
    expect(Number(lastCheckpointDeadline) - Date.now()).toBeLessThanOrEqual(5_000);
  });

  it('a call past its deadline fails as retryable and the handler sees the abort', async () => {
    checkpointBehaviour = 'slow';
    const impatient = new TidemarkClient(`127.0.0.1:${port}`, { deadlineMs: 200 });
    try {
      const err = await rejection(impatient.checkpoint(false));
      expect(codeOf(err)).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(err).toBeInstanceOf(TransientError);
      expect(err.message).toMatch(/^coordinator at 127\.0\.0\.1:\d+: Deadline exceeded/);
      expect(await slowCheckpointAborted).toBe(true);
    } finally {
      impatient.close();
    }
  });
});

describe('an unreachable coordinator', () => {
  it('fails with a message saying how to start or point at one', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closedPort = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const nobody = new TidemarkClient(`127.0.0.1:${closedPort}`, { deadlineMs: 5_000 });
    try {
      const err = await rejection(nobody.status());
      expect(err).toBeInstanceOf(TransientError);
      expect(err.message).toBe(
        `cannot reach the coordinator at 127.0.0.1:${closedPort}: start one with "tidemark cluster up" or "tidemark coordinator", or set TIDEMARK_COORDINATOR / --coordinator`,
      );
      expect(codeOf(err)).toBe(grpc.status.UNAVAILABLE);
      expect(isConnectFailure(err)).toBe(true);
    } finally {
      nobody.close();
    }
  });

  it('is not confused with a handler that reports UNAVAILABLE', async () => {
    checkpointBehaviour = 'transient';
    const err = await rejection(client.checkpoint(false));
    expect(isConnectFailure(err)).toBe(false);
    expect(err.message).toBe('redis is unreachable; try again');
  });
});

describe('restore stream', () => {
  it('delivers plan, progress and done in order', async () => {
    const events: RestoreEvent[] = [];
    for await (const event of client.restore({ checkpoint: 'latest', dryRun: false })) events.push(event);
    expect(events.map((e) => e.event?.$case)).toEqual(['plan', 'progress', 'progress', 'progress', 'done']);
    expect(events.slice(1, 4).map((e) => (e.event?.$case === 'progress' ? e.event.value.confirmed : -1))).toEqual([1, 2, 3]);
    expect(await restoreEnded).toEqual({ cancelled: false, emitted: 3 });
  });

  it('a handler error after some events ends the stream with the mapped error', async () => {
    const seen: string[] = [];
    const err = await rejection(
      (async () => {
        for await (const event of client.restore({ checkpoint: 'missing' })) seen.push(event.event?.$case ?? '');
      })(),
    );
    expect(seen).toEqual(['plan']);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('checkpoint missing not found');
  });

  it('aborting the signal cancels the call and stops the server handler', async () => {
    const controller = new AbortController();
    const reason = new Error('operator pressed ctrl-c');
    let progressEvents = 0;
    const consumed = (async () => {
      for await (const event of client.restore({ prefix: 'endless' }, controller.signal)) {
        if (event.event?.$case === 'progress' && ++progressEvents === 2) controller.abort(reason);
      }
    })();
    await expect(consumed).rejects.toBe(reason);
    const ended = await restoreEnded;
    expect(ended.cancelled).toBe(true);
    const emittedAtCancel = ended.emitted;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await restoreEnded).emitted).toBe(emittedAtCancel);
  });

  it('a consumer that stops iterating early cancels the server handler', async () => {
    for await (const event of client.restore({ prefix: 'endless' })) {
      if (event.event?.$case === 'progress') break;
    }
    expect((await restoreEnded).cancelled).toBe(true);
  });
});

describe('server start-up', () => {
  it('refuses a port that is taken with an error naming the fix', async () => {
    const err = await rejection(startServer([[CoordinatorServiceService, coordinator]], `127.0.0.1:${port}`));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('address in use: pick another --listen');
  });
});

describe('error mapping', () => {
  function serviceError(code: grpc.status, details: string): grpc.ServiceError {
    return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), { code, details, metadata: new grpc.Metadata() });
  }

  it.each([
    [grpc.status.UNAVAILABLE, TransientError],
    [grpc.status.DEADLINE_EXCEEDED, TransientError],
    [grpc.status.RESOURCE_EXHAUSTED, TransientError],
    [grpc.status.ABORTED, TransientError],
    [grpc.status.INVALID_ARGUMENT, ConfigError],
    [grpc.status.NOT_FOUND, NotFoundError],
    [grpc.status.DATA_LOSS, CorruptDataError],
    [grpc.status.FAILED_PRECONDITION, FailedPreconditionError],
    [grpc.status.UNIMPLEMENTED, TidemarkError],
  ] as const)('code %i maps to %o and keeps the ServiceError as cause', (code, errorClass) => {
    const original = serviceError(code, 'boom');
    const mapped = fromServiceError(original, 'worker w1');
    expect(mapped).toBeInstanceOf(errorClass);
    expect(mapped.cause).toBe(original);
    expect(mapped.message).toBe('worker w1: boom');
    expect(isRetryableGrpcError(original)).toBe(errorClass === TransientError);
  });

  it('toServiceError sends the message as details with the class code', () => {
    expect(toServiceError(new CorruptDataError('segment checksum mismatch', 'k'))).toMatchObject({ code: grpc.status.DATA_LOSS, details: 'segment checksum mismatch' });
    expect(toServiceError('not an error')).toMatchObject({ code: grpc.status.INTERNAL, details: 'not an error' });
  });

  it('requireField rejects empty, zero and missing values', () => {
    expect(() => requireField('', 'restore_id')).toThrow(new ConfigError('restore_id is required'));
    expect(() => requireField(0, 'epoch')).toThrow('epoch is required');
    expect(() => requireField(undefined, 'definition')).toThrow(ConfigError);
    expect(() => requireField([], 'queues')).toThrow('queues is required');
    expect(requireField(7, 'epoch')).toBe(7);
  });
});

describe('requests that do not decode', () => {
  const identity = (b: Buffer) => b;
  let raw: grpc.Client;

  beforeAll(() => {
    raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(() => raw?.close());

  /** Sends `bytes` as the request of a unary method; resolves with the status. */
  function unaryRaw(path: string, bytes: Buffer): Promise<grpc.ServiceError | Buffer> {
    return new Promise((resolve) => {
      raw.makeUnaryRequest(path, identity, identity, bytes, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err, reply) => resolve(err ?? reply!));
    });
  }

  /** Sends `bytes` as the request of a server-streaming method; resolves with the final status. */
  function streamRaw(path: string, bytes: Buffer): Promise<{ status: grpc.ServiceError | undefined; messages: number }> {
    return new Promise((resolve) => {
      const call = raw.makeServerStreamRequest(path, identity, identity, bytes, new grpc.Metadata(), { deadline: Date.now() + 5_000 });
      let messages = 0;
      call.on('data', () => (messages += 1));
      call.on('error', (status: grpc.ServiceError) => resolve({ status, messages }));
      call.on('end', () => resolve({ status: undefined, messages }));
    });
  }

  function asStatus(result: grpc.ServiceError | Buffer): grpc.ServiceError {
    expect(result, 'the call should have failed').not.toBeInstanceOf(Buffer);
    return result as grpc.ServiceError;
  }

  it.each([
    ['a truncated varint', Buffer.from([0x08, 0x80])],
    ['a length past the end', Buffer.from([0x0a, 0x10, 0x41])],
    ['wire type 7', Buffer.from([0x0f])],
  ])('a unary request with %s is INVALID_ARGUMENT naming the method, and no handler runs', async (_what, bytes) => {
    const before = handled.checkpoint;
    const status = asStatus(await unaryRaw('/tidemark.v1.CoordinatorService/Checkpoint', bytes));
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.details).toMatch(/^malformed request: the bytes sent to \/tidemark\.v1\.CoordinatorService\/Checkpoint do not decode as its request message \(.+\); nothing was done\. /);
    expect(status.details).toContain('proto/tidemark/v1');
    expect(handled.checkpoint).toBe(before);
  });

  it('a server-streaming request that does not decode ends the stream INVALID_ARGUMENT before any message', async () => {
    const before = handled.restore;
    const { status, messages } = await streamRaw('/tidemark.v1.CoordinatorService/Restore', Buffer.from([0xff, 0xff, 0xff]));
    expect(status?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status?.details).toContain('/tidemark.v1.CoordinatorService/Restore do not decode');
    expect(messages).toBe(0);
    expect(handled.restore).toBe(before);
  });

  it('reaches a Tidemark client as a ConfigError with the same message', async () => {
    // A client built for this method, whose serializer sends what the server cannot decode.
    const broken = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError>((resolve) => {
        broken.makeUnaryRequest('/tidemark.v1.CoordinatorService/Status', () => Buffer.from([0x0f]), identity, {}, new grpc.Metadata(), {}, (e) => resolve(e!));
      });
      const mapped = fromServiceError(err, 'coordinator');
      expect(mapped).toBeInstanceOf(ConfigError);
      expect(mapped.message).toBe(err.details);
    } finally {
      broken.close();
    }
  });

  it('a well-formed request still reaches its handler', async () => {
    checkpointBehaviour = 'ok';
    const before = handled.checkpoint;
    const reply = await unaryRaw('/tidemark.v1.CoordinatorService/Checkpoint', Buffer.from([0x08, 0x01]));
    expect(reply).toBeInstanceOf(Buffer);
    expect(handled.checkpoint).toBe(before + 1);
  });

  it('an unknown method of a known service, and an unknown service, are UNIMPLEMENTED naming the method', async () => {
    const method = asStatus(await unaryRaw('/tidemark.v1.CoordinatorService/Purge', Buffer.alloc(0)));
    expect(method.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(method.details).toContain('/tidemark.v1.CoordinatorService/Purge');
    const service = asStatus(await unaryRaw('/tidemark.v2.Admin/Status', Buffer.alloc(0)));
    expect(service.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(service.details).toContain('/tidemark.v2.Admin/Status');
  });

  it('a method the implementation lacks stays UNIMPLEMENTED, even with bytes that do not decode', async () => {
    const partial = await startServer([[CoordinatorServiceService, { status: coordinator.status }]], '127.0.0.1:0');
    const other = new grpc.Client(`127.0.0.1:${partial.port}`, grpc.credentials.createInsecure());
    try {
      const status = await new Promise<grpc.ServiceError>((resolve) => {
        other.makeUnaryRequest('/tidemark.v1.CoordinatorService/Checkpoint', identity, identity, Buffer.from([0x0f]), new grpc.Metadata(), {}, (e) => resolve(e!));
      });
      expect(status.code).toBe(grpc.status.UNIMPLEMENTED);
    } finally {
      other.close();
      partial.server.forceShutdown();
    }
  });
});

describe('beforeDeadline', () => {
  it('lets a handler answer why it ran out of time while the client still listens', async () => {
    const waiting = {
      ...coordinator,
      status: unary(async (_request, call) => {
        const signal = beforeDeadline(call, 500);
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        return StatusReply.fromPartial({ coordinatorId: 'answered before the deadline' });
      }),
    };
    const own = await startServer([[CoordinatorServiceService, waiting]], '127.0.0.1:0');
    const impatient = new TidemarkClient(`127.0.0.1:${own.port}`, { deadlineMs: 1_000 });
    try {
      const started = Date.now();
      const reply = await impatient.status();
      const waited = Date.now() - started;
      expect(reply.coordinatorId).toBe('answered before the deadline');
      // The margin is a tenth of the time left for short deadlines: about 900 ms of 1,000.
      expect(waited).toBeGreaterThanOrEqual(700);
      expect(waited).toBeLessThan(1_000);
    } finally {
      impatient.close();
      own.server.forceShutdown();
    }
  });
});
