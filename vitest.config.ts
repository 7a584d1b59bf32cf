import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // End-to-end files build namespaces and load rulesets; running them one at a time keeps
    // a 2-core machine's timings far from any timeout.
    fileParallelism: false,
    reporters: ['default'],
  },
});
