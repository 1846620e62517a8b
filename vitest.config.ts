import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The totals reporter prints `N passed, N failed, N skipped` last: CI reads the run's test count from it.
    reporters: ['default', './test/support/totals-reporter.ts'],
  },
});
