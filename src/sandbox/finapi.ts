/** The finAPI sandbox lives in src/sandbox/finapi/; this module keeps the import path server.ts and tests use. */
export * from './finapi/index.js';
