/** The wealthapi sandbox lives in src/sandbox/wealthapi/; this module keeps the import path server.ts and tests use. */
export * from './wealthapi/index.js';
