/** The README's embedding example, run as written against the sandbox (only URLs, token, timings and callbacks differ). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { createEngine, createFinxAdapter, type SyncView } from '../src/index.js';
import { SqliteStore } from '../src/entries/sqlite.js';
import { startSandbox } from '../src/sandbox/server.js';

it('the README embedding example syncs a finX access with one TAN', async () => {
  const sandbox = await startSandbox();
  const access = await createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 't' }).createAccess({
    providerId: 'bank',
    accessMethodId: 'FINTS',
    credentials: { pin: '1' },
    scenario: 'one-challenge',
  });
  const asked: SyncView[] = [];
  const notifyUser = (_syncId: string, _challenge: unknown) => {};
  let refreshed: unknown;
  const refreshAccounts = (connectionId: string, result: unknown) => (refreshed = { connectionId, result });

  // --- as in the README ---
  const engine = createEngine({
    store: SqliteStore.open(join(mkdtempSync(join(tmpdir(), 'banksync-readme-')), 'banksync.sqlite')),
    providers: { finx: createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'readme-token' }) },
    policy: { pollBaseMs: 20, authPollMs: 50 },
  });
  await engine.start();
  engine.events.on('sync.awaitingUser', (sync) => (asked.push(sync), notifyUser(sync.syncId, sync.challenge)));
  engine.events.on('sync.completed', (sync) => refreshAccounts(sync.connectionId, sync.result));
  const sync = await engine.requestSync({ connectionId: access.id, provider: 'finx' });
  const server = http.createServer(engine.webhookHandler('finx')).listen(0, '127.0.0.1');
  // --- the user answers ---
  await expect.poll(() => asked.length, { timeout: 10_000 }).toBe(1);
  await engine.submitChallengeResponse(sync.syncId, { challengeId: asked[0]!.challenge!.id, response: '123456' });
  const final = await engine.waitForTerminal(sync.syncId);
  expect(final.status).toBe('COMPLETED');
  expect(refreshed).toEqual({ connectionId: access.id, result: final.result });
  expect((server.address() as AddressInfo).port).toBeGreaterThan(0);
  server.close();
  await engine.stop();
  await sandbox.close();
});
