/**
 * The tidemark command run in process (`run` in services/cli/program.ts): exit codes and where
 * messages go, for help, usage errors, bad configuration and an unreachable coordinator, and runs
 * that do not leak into each other. No broker or coordinator is needed: nothing listens on port 1.
 */
import { describe, expect, it } from 'vitest';
import { run } from '../../services/cli/program.js';

/** Nothing listens here: a connection is refused at once. */
const NOWHERE = '127.0.0.1:1';

async function tidemark(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(argv, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
  });
  return { code, stdout, stderr };
}

describe('tidemark run in process', () => {
  it('--help exits 0 and lists every command on stdout', async () => {
    const { code, stdout, stderr } = await tidemark(['--help']);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^Usage: tidemark \[options\] \[command\]/);
    for (const command of ['coordinator', 'worker', 'cluster', 'checkpoint', 'checkpoints', 'status', 'restore', 'verify', 'restore-drill']) {
      expect(stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    }
  });

  it('an unknown command exits 2, naming it on stderr with the usage', async () => {
    const { code, stdout, stderr } = await tidemark(['bogus']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain("error: unknown command 'bogus'");
    expect(stderr).toContain('Usage: tidemark [options] [command]');
  });

  it('a missing argument exits 2 with the command\'s usage on stderr', async () => {
    const { code, stdout, stderr } = await tidemark(['checkpoints', 'show']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain("error: missing required argument 'id'");
    expect(stderr).toContain('Usage: tidemark checkpoints show [options] <id>');
  });

  it('contradicting restore flags exit 2 before any coordinator is contacted', async () => {
    const both = await tidemark(['--coordinator', NOWHERE, 'restore', '--checkpoint', '1', '--at', '-1h']);
    expect(both).toEqual({ code: 2, stdout: '', stderr: 'tidemark: use either --checkpoint or --at, not both\n' });
    const mode = await tidemark(['--coordinator', NOWHERE, 'restore', '--checkpoint', 'latest', '--append', '--mode', 'refuse']);
    expect(mode).toEqual({ code: 2, stdout: '', stderr: 'tidemark: --append contradicts --mode refuse\n' });
  });

  it('bad configuration from the environment exits 2 and names the variable', async () => {
    const { code, stderr } = await tidemark(['--coordinator', NOWHERE, 'status'], { TIDEMARK_LOG_LEVEL: 'loud' });
    expect(code).toBe(2);
    expect(stderr).toMatch(/^tidemark: invalid configuration: logLevel \(--log-level, TIDEMARK_LOG_LEVEL\)/);
  });

  it('a coordinator that cannot be reached exits 1 and says how to start one', async () => {
    for (const argv of [['status'], ['status', '--json'], ['checkpoints', 'list'], ['restore', 'resume', 'r-1']]) {
      const { code, stdout, stderr } = await tidemark(['--coordinator', NOWHERE, ...argv]);
      expect({ argv, code, stdout }).toEqual({ argv, code: 1, stdout: '' });
      expect(stderr).toBe(
        `tidemark: cannot reach the coordinator at ${NOWHERE}: start one with "tidemark cluster up" or "tidemark coordinator", or set TIDEMARK_COORDINATOR / --coordinator\n`,
      );
    }
  });

  it('two runs in one process share no options and no output', async () => {
    // The first run's --coordinator must not stick to the program the second run uses.
    const first = await tidemark(['--coordinator', NOWHERE, 'status']);
    const second = await tidemark(['status'], { TIDEMARK_COORDINATOR: '127.0.0.1:2' });
    expect(first.stderr).toContain(`coordinator at ${NOWHERE}:`);
    expect(second.stderr).toContain('coordinator at 127.0.0.1:2:');
    expect(second.stderr).not.toContain(NOWHERE);

    // At the same time: each run's output reaches only its own streams.
    const [help, bad, down] = await Promise.all([tidemark(['--help']), tidemark(['bogus']), tidemark(['--coordinator', NOWHERE, 'checkpoints', 'list'])]);
    expect([help.code, bad.code, down.code]).toEqual([0, 2, 1]);
    expect(help.stderr).toBe('');
    expect(bad.stderr).not.toContain('cannot reach');
    expect(down.stderr).not.toContain('unknown command');
    expect(down.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });
});

describe('tidemark credentials on the command line', () => {
  it('token create writes the token to an owner-only file and prints only its hash line; it never overwrites a file', async () => {
    const { mkdtempSync, readFileSync, statSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { hashToken } = await import('../../services/core/infrastructure/auth-tokens.js');
    const out = join(mkdtempSync(join(tmpdir(), 'tm-token-')), 'ci.token');
    const made = await tidemark(['token', 'create', '--role', 'operator', '--name', 'ci', '--out', out]);
    expect(made.code, made.stderr).toBe(0);
    const token = readFileSync(out, 'utf8').trim();
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(made.stdout).toBe(`operator ci ${hashToken(token).toString('hex')}\n`);
    expect(made.stdout + made.stderr).not.toContain(token);
    const again = await tidemark(['token', 'create', '--role', 'operator', '--name', 'ci', '--out', out]);
    expect(again.code).toBe(2);
    expect(readFileSync(out, 'utf8').trim()).toBe(token);
    expect((await tidemark(['token', 'create', '--role', 'root', '--name', 'x', '--out', `${out}.2`])).stderr).toContain('--role must be one of read, operator, admin');
  });

  it('restore refuses a --target-amqp URL with a password in it (argv is public), without echoing it', async () => {
    const result = await tidemark(['--coordinator', NOWHERE, 'restore', '--checkpoint', 'latest', '--target-amqp', 'amqp://u:hunter2@broker:5672']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--target-amqp holds a password, which would be visible in the process list');
    expect(result.stderr).toContain('TIDEMARK_TARGET_AMQP_PASSWORD');
    expect(result.stderr).not.toContain('hunter2');
  });

  it('sends the token from TIDEMARK_TOKEN_FILE, and says which file it cannot read', async () => {
    const result = await tidemark(['--coordinator', NOWHERE, 'status'], { TIDEMARK_TOKEN_FILE: '/nonexistent/token' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('cannot read the token file /nonexistent/token (TIDEMARK_TOKEN_FILE)');
  });
});
