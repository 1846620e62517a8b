/**
 * The operator console on SQLite (no job queue): read-only unless `runSyncs`, because acting there means hosting
 * the sync in the console's process. With runSyncs it resumes the store's active syncs and cancel works.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine/engine.js';
import { createFinxAdapter, type FinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { SqliteStore } from '../../src/stores/sqlite.js';
import { attachConsole } from '../../src/viewer/attach.js';
import { startViewer } from '../../src/viewer/index.js';

const POLICY = { pollBaseMs: 100, pollMaxMs: 300, authPollMs: 200, retryBaseMs: 100, retryMaxMs: 300 };
let sandbox: Sandbox;
let finx: FinxAdapter;
let dir: string;
let file: string;
let syncId: string;

beforeAll(async () => {
  sandbox = await startSandbox();
  finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'sqlite-console' });
  dir = mkdtempSync(join(tmpdir(), 'banksync-console-'));
  file = join(dir, 'store.sqlite');
  // An app process leaves a sync waiting for a TAN in the store, then stops.
  const store = SqliteStore.open(file);
  const app = createEngine({ store, providers: { finx }, policy: POLICY });
  await app.start();
  const access = (await finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'one-challenge' })).id;
  syncId = (await app.requestSync({ connectionId: access, provider: 'finx' })).syncId;
  await new Promise<void>((resolve) => {
    const off = app.events.on('sync.updated', (view) => {
      if (view.syncId === syncId && view.status === 'AWAIT_AUTH') {
        off();
        resolve();
      }
    });
  });
  await app.stop();
  await store.close();
});
afterAll(async () => {
  await sandbox?.close();
  rmSync(dir, { recursive: true, force: true });
});

const cancel = (url: string) =>
  fetch(`${url}/api/console/syncs/${syncId}/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tenantId: 'default' }) });

describe('operator console on SQLite', () => {
  it('is read-only without runSyncs: actions answer 409 and the sync is left as it was', async () => {
    const attached = await attachConsole({ target: { sqlite: file }, providers: { finx }, policy: POLICY });
    const viewer = await startViewer({ engine: attached.engine, console: attached.console });
    try {
      const about = (await (await fetch(`${viewer.url}/api/console/about`)).json()) as { actions: { enabled: boolean; reason: string } };
      expect(about.actions).toMatchObject({ enabled: false, reason: expect.stringContaining('--run-syncs') });
      const before = await attached.store.getSync(syncId);
      const res = await cancel(viewer.url);
      expect(res.status).toBe(409);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('READ_ONLY');
      const detail = (await (await fetch(`${viewer.url}/api/console/syncs/${syncId}`)).json()) as { sync: { status: string } };
      expect(detail.sync.status).toBe('AWAIT_AUTH');
      expect(await attached.store.getSync(syncId)).toEqual(before);
    } finally {
      await viewer.close();
      await attached.close();
    }
  });

  it('with runSyncs it hosts the syncs and cancels', async () => {
    const attached = await attachConsole({ target: { sqlite: file }, providers: { finx }, policy: POLICY, runSyncs: true });
    const viewer = await startViewer({ engine: attached.engine, console: attached.console });
    try {
      const res = await cancel(viewer.url);
      expect(res.status).toBe(200);
      const { sync } = (await res.json()) as { sync: { status: string; error: { code: string } } };
      expect(sync).toMatchObject({ status: 'FAILED', error: { code: 'CANCELLED' } });
      expect((await attached.store.getSync(syncId))?.status).toBe('FAILED');
    } finally {
      await viewer.close();
      await attached.close();
    }
  });
});
