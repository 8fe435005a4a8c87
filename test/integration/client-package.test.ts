/**
 * The typed client as a package: `npm pack` of clients/typescript gives a tarball that a fresh
 * project installs (from the local npm cache) and imports with types; docs/CLIENT.md's example
 * program, compiled there against the installed declarations, takes a checkpoint of a live
 * cluster, lists it and follows a restore to its end.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { repositoryRoot } from '../helpers/repo.js';
import { amqpUrlForVhost, createTestVhost, deleteTestVhost, testServices, uniqueName, type TestServices } from '../helpers/services.js';

const run = promisify(execFile);
const root = repositoryRoot();
const packageDir = join(root, 'clients', 'typescript');
const tsc = join(root, 'node_modules', '.bin', 'tsc');
const example = readFileSync(join(packageDir, 'examples', 'checkpoint-and-restore.ts'), 'utf8');
const MESSAGES = 25;

let dir: string;
let app: string;
let tarball: string;
let services: TestServices;
let vhost: string | undefined;
let cluster: TestCluster | undefined;

/** Compiles the project in `app` with the repository's tsc; stdout on failure (tsc prints errors there). */
async function compile(files: string[]): Promise<{ ok: boolean; output: string }> {
  const config = { compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, types: ['node'], outDir: 'out', skipLibCheck: false }, files };
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(config));
  try {
    await run(tsc, ['-p', 'tsconfig.json'], { cwd: app, timeout: 180_000 });
    return { ok: true, output: '' };
  } catch (err) {
    return { ok: false, output: String((err as { stdout?: string }).stdout ?? err) };
  }
}

describe('@tidemark/client as an installed package', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tidemark-client-package-'));
    // prepack builds dist/ (JS and declarations) first.
    const packed = await run('npm', ['pack', '--pack-destination', dir, '--json'], { cwd: packageDir, timeout: 240_000 });
    tarball = join(dir, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0].filename);
    app = join(dir, 'app');
    await run('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'client-package-test', private: true, type: 'module' }));
    // From the local npm cache: the tarball's two dependencies are the root project's.
    const nodeTypes = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).devDependencies['@types/node'] as string;
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, `@types/node@${nodeTypes}`], { cwd: app, timeout: 240_000 });
  }, 600_000);

  afterAll(async () => {
    await cluster?.stop();
    if (vhost) await deleteTestVhost(services.managementUrl, vhost);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ships compiled JS and declarations of the client, without the services or their dependencies', async () => {
    const { stdout } = await run('tar', ['-tzf', tarball]);
    const files = stdout.split('\n').filter(Boolean);
    expect(files).toEqual(expect.arrayContaining(['package/package.json', 'package/dist/clients/typescript/src/index.js', 'package/dist/clients/typescript/src/index.d.ts', 'package/dist/services/client/index.d.ts', 'package/dist/services/gen/tidemark/v1/admin.d.ts']));
    expect(files.filter((f) => /\/services\/(coordinator|worker|cli)\/|\/services\/core\/index\.|\.ts$(?<!\.d\.ts)/.test(f) && !f.startsWith('package/examples/'))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules', '@tidemark', 'client', 'package.json'), 'utf8'));
    expect(Object.keys(manifest.dependencies).sort()).toEqual(['@bufbuild/protobuf', '@grpc/grpc-js']);
    // Importing it loads nothing else: no missing module in a project that has only those two.
    const { stdout: exported } = await run('node', ['--input-type=module', '-e', "const m = await import('@tidemark/client'); console.log(Object.keys(m).sort().join(' '))"], { cwd: app });
    expect(exported.trim().split(' ')).toEqual(expect.arrayContaining(['TidemarkClient', 'clientTlsFromFiles', 'tokenFromEnvironment', 'TidemarkError', 'RoundOutcome']));
  });

  it("typechecks a program against the installed declarations, and refuses one that misuses the client's types", async () => {
    writeFileSync(join(app, 'checkpoint-and-restore.ts'), example);
    writeFileSync(
      join(app, 'wrong.ts'),
      "import { TidemarkClient } from '@tidemark/client';\nconst epoch: string = (await new TidemarkClient('localhost:7700').checkpoint(true)).epoch;\nconsole.log(epoch);\n",
    );
    // One tsc run for both (it is slow on a busy machine); it still emits the example's JS.
    const { ok, output } = await compile(['checkpoint-and-restore.ts', 'wrong.ts']);
    expect(ok).toBe(false);
    expect(output.trim().split('\n')).toEqual([expect.stringMatching(/^wrong\.ts\(2,7\): error TS2322: Type 'number' is not assignable to type 'string'/)]);
  }, 300_000);

  // Runs the program the test above compiled (out/checkpoint-and-restore.js).
  it("runs the docs' example against a live cluster: checkpoint, list, restore followed to its end", async () => {
    services = await testServices();
    vhost = uniqueName('tm-client-pkg');
    await createTestVhost(services.managementUrl, vhost);
    const connection = await amqp.connect(amqpUrlForVhost(services.amqpUrl, vhost));
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue('orders', { durable: true });
    // Through an exchange: the journal gets its copy by the queue's bindings (docs/OPERATIONS.md#coverage).
    await channel.assertExchange('shop', 'direct', { durable: true });
    await channel.bindQueue('orders', 'shop', 'orders');
    cluster = await startTestCluster({ services, namespace: uniqueName('tmcp'), protect: `${vhost}:orders`, store: { kind: 'file' }, workers: 1 });
    await cluster.waitForStatus((s) => s.protectedQueues === 1 && s.workers.reduce((n, w) => n + w.queues, 0) === 1, 'the queue protected');
    for (let i = 0; i < MESSAGES; i += 1) channel.publish('shop', 'orders', Buffer.from(`order ${i}`), { persistent: true });
    await channel.waitForConfirms();

    const tokenFile = join(dir, 'admin.token');
    writeFileSync(tokenFile, cluster.token, { mode: 0o600 });
    const { stdout } = await run('node', [join(app, 'out', 'checkpoint-and-restore.js'), 'restored.'], {
      cwd: app,
      timeout: 120_000,
      env: { PATH: process.env.PATH, TIDEMARK_COORDINATOR: cluster.address, TIDEMARK_TLS_CA: join(cluster.tlsDir!, 'ca.pem'), TIDEMARK_TOKEN_FILE: tokenFile },
    });
    expect(stdout).toMatch(/^checkpoint (\d+) committed in \d+ ms$/m);
    expect(stdout).toMatch(new RegExp(`checkpoint\\(s\\) listed; \\d+ holds ${MESSAGES} message\\(s\\) of 1 queue\\(s\\)`));
    expect(stdout).toMatch(new RegExp(`orders -> restored\\.orders: ${MESSAGES}/${MESSAGES}`));
    expect(stdout).toMatch(new RegExp(`restore \\S+ done: ${MESSAGES} message\\(s\\), 1 queue\\(s\\), 0 failed`));
    // What the user sees in the broker: the restored queue holds the messages.
    expect((await channel.checkQueue('restored.orders')).messageCount).toBe(MESSAGES);
    const first = await channel.get('restored.orders', { noAck: true });
    expect(first && first.content.toString()).toBe('order 0');
    await connection.close();
  }, 300_000);
});
