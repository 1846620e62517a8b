/**
 * Issue 12, point 2 (the part that needs no server restart): the database connection that holds a sync's
 * advisory lock dies mid-answer (its backend is terminated, as a PostgreSQL restart does to every session:
 * 57P01). The API process must not die of an unhandled 'error' event; the answer still reaches the provider
 * once and the sync completes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatchingEngine, startWorker, type BanksyncWorker } from '../../src/dispatch/worker.js';
import { createFinxAdapter, type FinxAdapter } from '../../src/providers/finx/index.js';
import { startFaultProxy, type FaultProxy } from '../../src/sandbox/faults.js';
import { FINX_CORRECT_TAN } from '../../src/sandbox/finx.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

const policy = { pollBaseMs: 50, pollMaxMs: 200, authPollMs: 5_000, retryBaseMs: 100, retryMaxMs: 500 };

describe.runIf(postgresAvailable)('the lock connection dies mid-answer', () => {
  let sandbox: Sandbox;
  let proxy: FaultProxy;
  let finx: FinxAdapter;
  let worker: BanksyncWorker;
  let api: Awaited<ReturnType<typeof createDispatchingEngine>>;
  const schema = throwawaySchema('bs');
  const graphileSchema = throwawaySchema('gw');
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);

  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    sandbox = await startSandbox();
    proxy = await startFaultProxy({ target: sandbox.url });
    // The answer POST waits, so the lock is held while we cut its connection.
    proxy.inject({ name: 'slow-answer', match: (r) => r.method === 'POST' && /\/challenges?\//.test(r.path), action: { kind: 'delay', ms: 1_000 } });
    finx = createFinxAdapter({ baseUrl: `${proxy.url}/finx`, token: 'w' });
    const common = { databaseUrl: DATABASE_URL, schema, graphileSchema, providers: { finx }, policy };
    api = await createDispatchingEngine(common);
    worker = await startWorker({ ...common, concurrency: 2, autosyncCron: false });
  });
  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    await worker?.stop();
    await api?.store.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`);
    await api?.close();
    await proxy?.close();
    await sandbox?.close();
  });

  it('survives the terminated backend, delivers the answer once and completes', { timeout: 60_000 }, async () => {
    const access = await finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'one-challenge' });
    const sync = await api.engine.requestSync({ connectionId: access.id, provider: 'finx' });
    await expect.poll(async () => (await api.engine.get(sync.syncId)).state, { timeout: 20_000, interval: 100 }).toBe('AWAIT_AUTH.AwaitingUser');
    const challenge = (await api.engine.get(sync.syncId)).challenge!;
    const answering = api.engine.submitChallengeResponse(sync.syncId, { challengeId: challenge.id, response: FINX_CORRECT_TAN }).then(
      (view) => ({ ok: true as const, view }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    await expect.poll(() => proxy.log.some((r) => r.fault === 'slow-answer'), { timeout: 10_000, interval: 20 }).toBe(true);
    const { rows } = await api.store.pool.query(
      `SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'disabled') t`,
      [`banksync-api-locks:${graphileSchema}`],
    );
    expect(rows[0].n).toBeGreaterThan(0);
    const outcome = await answering;
    expect(uncaught).toEqual([]);
    expect(outcome.ok).toBe(true);
    await expect.poll(async () => (await api.engine.get(sync.syncId)).status, { timeout: 20_000, interval: 100 }).toBe('COMPLETED');
    expect(sandbox.stats().finx.connections[access.id]!.answers).toBe(1);
    // The lock pool replaced the dead connection: the next locked step works.
    await expect(api.engine.cancel(sync.syncId)).rejects.toMatchObject({ code: 'SYNC_ALREADY_FINISHED' });
  });
});
