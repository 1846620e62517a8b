/** The finx sandbox lives in src/sandbox/finx/; this module keeps the import path server.ts and tests use. */
export * from './finx/index.js';
