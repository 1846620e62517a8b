/**
 * A worker's graceful stop never waits out an inline timer wait: the job ends at once, completes, and the
 * sync's pending timer is in graphile-worker as a timer job (its committed due time), for another worker.
 * The wait here would last 5 minutes: a stop that waited for it fails the test by its timeout.
 */
import { describe, expect, it } from 'vitest';
import { createDispatchingEngine, startWorker } from '../../src/dispatch/worker.js';
import { timerJobKey } from '../../src/dispatch/graphile.js';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox } from '../../src/sandbox/server.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

const policy = { pollBaseMs: 300_000, pollMaxMs: 300_000, jitterRatio: 0 };

describe.runIf(postgresAvailable)('inline timers and a worker stop', () => {
  it('stop() ends a long inline wait and hands the timer to graphile-worker', { timeout: 60_000 }, async () => {
    const schema = throwawaySchema('bs');
    const graphileSchema = throwawaySchema('gw');
    const sandbox = await startSandbox();
    const finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'w' });
    const common = { databaseUrl: DATABASE_URL, schema, graphileSchema, providers: { finx }, policy };
    const api = await createDispatchingEngine({ ...common, followEvents: false });
    const worker = await startWorker({ ...common, concurrency: 2, autosyncCron: false, inlineTimerMaxMs: 600_000, inlineTimerBudgetMs: 600_000 });
    let stopped = false;
    try {
      const access = await finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'success' });
      const sync = await api.engine.requestSync({ connectionId: access.id, provider: 'finx' });
      // The start job triggered and committed the wait for the first poll; it now waits for that timer inline.
      await expect.poll(async () => (await api.engine.get(sync.syncId)).state, { timeout: 20_000, interval: 100 }).toBe('RUNNING.Waiting');
      const jobs = async () =>
        (
          await api.store.pool.query<{ key: string | null; run_at: Date; locked: boolean }>(
            `SELECT key, run_at, locked_at IS NOT NULL AS locked FROM ${graphileSchema}._private_jobs ORDER BY id`,
          )
        ).rows;
      await expect.poll(async () => (await jobs()).map((j) => j.locked), { timeout: 10_000, interval: 100 }).toEqual([true]);

      await worker.stop();
      stopped = true;
      const timers = await api.store.listTimers(sync.syncId);
      const poll = timers.find((t) => t.timerId.includes('nextDelay'))!;
      expect(poll).toBeDefined();
      expect(poll.dueAt).toBeGreaterThan(Date.now());
      // The start job completed (gone); every committed timer is a job at its due time, none locked.
      const left = await jobs();
      expect(left.map((j) => j.key).sort()).toEqual(timers.map((t) => timerJobKey(sync.syncId, t.timerId)).sort());
      expect(left.find((j) => j.key === timerJobKey(sync.syncId, poll.timerId))!.run_at.getTime()).toBe(poll.dueAt);
      expect(left.every((j) => !j.locked)).toBe(true);
      expect((await api.engine.get(sync.syncId)).state).toBe('RUNNING.Waiting');
    } finally {
      if (!stopped) await worker.stop();
      await api.store.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`);
      await api.close();
      await sandbox.close();
    }
  });
});
