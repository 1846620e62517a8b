/**
 * Retention in scale-out workers: startWorker registers the `banksync:prune` crontab item, and a prune job
 * deletes, in bounded batches, only finished syncs past retention (never an active sync, never the newest
 * sync of a connection). The job is enqueued directly so the test need not wait for the cron minute.
 */
import { makeWorkerUtils } from 'graphile-worker';
import { afterAll, describe, expect, it } from 'vitest';
import { PRUNE_TASK } from '../../src/dispatch/graphile.js';
import { startWorker, type BanksyncWorker } from '../../src/dispatch/worker.js';
import { PostgresStore } from '../../src/stores/postgres.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';
import { DAY, syncAt } from '../support/retention.js';



describe.runIf(postgresAvailable)('retention in workers', () => {
  const schema = throwawaySchema('bs');
  const graphileSchema = throwawaySchema('gw');
  let worker: BanksyncWorker | undefined;
  let store: PostgresStore | undefined;

  afterAll(async () => {
    await worker?.stop();
    await store?.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`);
    await store?.close();
  });

  it('a prune job removes only finished syncs past retention; the crontab item is registered', async () => {
    store = await PostgresStore.open({ connectionString: DATABASE_URL, schema, max: 2 });
    const now = Date.now();
    for (let i = 0; i < 5; i++) await syncAt(store, `old-${i}`, 'a', now - (50 - i) * DAY);
    await syncAt(store, 'newest-a', 'a', now - 40 * DAY);
    await syncAt(store, 'old-b', 'b', now - 45 * DAY);
    await syncAt(store, 'active-b', 'b', now - 44 * DAY, true);
    await syncAt(store, 'young-c', 'c', now - 60 * DAY);
    await syncAt(store, 'young-c2', 'c', now - DAY);

    worker = await startWorker({
      databaseUrl: DATABASE_URL,
      schema,
      graphileSchema,
      providers: {},
      concurrency: 1,
      autosyncCron: false,
      retention: { finishedSyncsMs: 30 * DAY, batchSize: 2, cron: '17 * * * *' },
    });
    const utils = await makeWorkerUtils({ connectionString: DATABASE_URL, schema: graphileSchema });
    try {
      await utils.addJob(PRUNE_TASK, {});
    } finally {
      await utils.release();
    }
    const remaining = async () => (await store!.listSyncs()).map((s) => s.syncId).sort();
    await expect.poll(remaining, { timeout: 30_000, interval: 200 }).toEqual(['active-b', 'newest-a', 'young-c2']);
    expect((await store.getSync('active-b'))?.active).toBe(true);
    expect(await store.listEffects('active-b')).toHaveLength(1);
    const known = async () =>
      (await store!.pool.query(`SELECT identifier FROM ${graphileSchema}._private_known_crontabs ORDER BY identifier`)).rows.map((r) => r.identifier as string);
    await expect.poll(known, { timeout: 30_000, interval: 200 }).toContain(PRUNE_TASK);
  });
});
