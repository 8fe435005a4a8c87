// An s3rver in its own process, started by test/helpers/global-setup.ts. Plain ESM JavaScript
// because Node 20 cannot run TypeScript in a spawned process.
//
// Usage: node s3rver-main.mjs <directory>
// The directory belongs to this process: it is removed whenever the process exits.
// Prints one JSON line {"port": N} on stdout once it listens on 127.0.0.1:N (N chosen by the OS),
// and exits on SIGTERM/SIGINT or as soon as its parent goes away (IPC channel closed, or stdout
// broken), so a killed test run never leaves an S3 server behind.
import { rmSync } from 'node:fs';
import S3rver from 's3rver';

const directory = process.argv[2];
if (!directory) {
  console.error('usage: node s3rver-main.mjs <directory>');
  process.exit(2);
}

// 'exit' also fires after an uncaught exception; only SIGKILL of this process skips it.
process.on('exit', () => rmSync(directory, { recursive: true, force: true }));

/** @type {S3rver | undefined} */
let server;
let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  // close() waits for open keep-alive connections; do not let a lingering client hold us.
  setTimeout(() => process.exit(0), 2_000).unref();
  try {
    await server?.close();
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.on('disconnect', shutdown);
process.stdout.on('error', shutdown);

server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true });
const { port } = await server.run();
if (closing) {
  // The parent went away while the server was starting.
  await server.close();
} else {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}
