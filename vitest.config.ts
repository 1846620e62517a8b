import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (path: string) => fileURLToPath(new URL(`./src/${path}`, import.meta.url));

export default defineConfig({
  // The consumer fixture (test/package/consumer) imports the package by name; in this repository's tests
  // that name is ./src (test/package/consumer.test.ts runs the same files against the packed tarball).
  resolve: {
    alias: [
      { find: /^banksync\/(sqlite|postgres|sandbox)$/, replacement: src('entries/$1.ts') },
      { find: /^banksync$/, replacement: src('index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The totals reporter prints `N passed, N failed, N skipped` last: CI reads the run's test count from it.
    reporters: ['default', './test/support/totals-reporter.ts'],
  },
});
