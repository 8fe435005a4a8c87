import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globals: false,
    include: ['test/**/*.test.ts'],
    exclude: ['dist/**', 'node_modules/**'],
    // Finds or starts RabbitMQ, Redis and an S3 server once and provides them to every file.
    globalSetup: ['test/helpers/global-setup.ts'],
    // Test files share one broker and one Redis: run them one at a time, tests in order.
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Stopping containers can take a while.
    teardownTimeout: 60_000,
  },
});
