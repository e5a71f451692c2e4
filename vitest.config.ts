// Test configuration: unit tests (test/unit) and integration tests (test/integration)
// in one config. Integration tests start real containerd and QEMU, so they get long
// timeouts and run one file at a time, each in a forked process.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
