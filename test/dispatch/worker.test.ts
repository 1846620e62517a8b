import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatchingEngine, startWorker, type BanksyncWorker } from '../../src/dispatch/worker.js';
import { createFinxAdapter, type FinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

// retryMaxMs covers the sandbox's Retry-After: 1 (a longer one would end the sync, issue #13).
const policy = { pollBaseMs: 50, pollMaxMs: 200, authPollMs: 80, retryBaseMs: 100, retryMaxMs: 1_000 };

describe.runIf(postgresAvailable)('graphile-worker dispatch (one worker process in this test process)', () => {
  let sandbox: Sandbox;
  let finx: FinxAdapter;
  let worker: BanksyncWorker;
  let api: Awaited<ReturnType<typeof createDispatchingEngine>>;
  const schema = throwawaySchema('bs');
  const graphileSchema = throwawaySchema('gw');

  beforeAll(async () => {
    sandbox = await startSandbox();
    finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'w' });
    const common = { databaseUrl: DATABASE_URL, schema, graphileSchema, providers: { finx }, policy };
    api = await createDispatchingEngine(common);
    worker = await startWorker({ ...common, concurrency: 4, autosyncCron: false });
  });
  afterAll(async () => {
    await worker?.stop();
    await api?.store.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`);
    await api?.close();
    await sandbox?.close();
  });

  it('runs syncs to their scripted end through jobs, with durable timers as jobs, one provider sync each', async () => {
    const scenarios = ['success', 'decoupled', 'provider-5xx', 'partial', 'failed', 'rate-limited'];
    const accesses = await Promise.all(scenarios.map((scenario) => finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario })));
    const syncs = await Promise.all(accesses.map((a) => api.engine.requestSync({ connectionId: a.id, provider: 'finx' })));
    expect(syncs.every((s) => s.status === 'QUEUED')).toBe(true);
    await expect.poll(async () => (await api.store.listSyncs({ active: true })).length, { timeout: 30_000, interval: 200 }).toBe(0);
    for (const [i, sync] of syncs.entries()) {
      const final = await api.engine.get(sync.syncId);
      expect(final.status, scenarios[i]).toBe(scenarios[i] === 'failed' ? 'FAILED' : 'COMPLETED');
      expect(sandbox.stats().finx.connections[accesses[i]!.id]!.syncsStarted).toBe(1);
    }
    // The API engine never hosted a sync: the worker did everything. (A job is completed just after the
    // commit that ended its sync, in graphile-worker's completion batch: wait for it, do not race it.)
    const lockedJobs = async () => (await api.store.pool.query(`SELECT count(*)::int AS n FROM ${graphileSchema}._private_jobs WHERE locked_at IS NOT NULL`)).rows[0].n;
    await expect.poll(lockedJobs, { timeout: 10_000, interval: 100 }).toBe(0);
  });

  it('answers an embedded challenge inline under the sync lock, the TAN never entering the job table', async () => {
    const access = await finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'one-challenge' });
    const sync = await api.engine.requestSync({ connectionId: access.id, provider: 'finx' });
    await expect.poll(async () => (await api.engine.get(sync.syncId)).state, { timeout: 20_000, interval: 100 }).toMatch(/^AWAIT_AUTH/);
    const challenge = (await api.engine.get(sync.syncId)).challenge!;
    await api.engine.submitChallengeResponse(sync.syncId, { challengeId: challenge.id, response: '123456' });
    await expect.poll(async () => (await api.engine.get(sync.syncId)).status, { timeout: 20_000, interval: 100 }).toBe('COMPLETED');
    const { rows } = await api.store.pool.query(`SELECT count(*)::int AS n FROM ${graphileSchema}._private_jobs WHERE payload::text LIKE '%123456%'`);
    expect(rows[0].n).toBe(0);
  });
});
