/** The xs2a sandbox lives in src/sandbox/xs2a/; this module keeps the import path server.ts and tests use. */
export * from './xs2a/index.js';
