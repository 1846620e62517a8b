/**
 * GraphileDispatch.othersWaiting: a job handling its sync's timers inline yields when other work is due on its
 * connection's serial queue. It reads graphile-worker's private tables, so this pins the query to the
 * installed graphile-worker on a real database (no worker runs here: jobs are only added and locked).
 */
import { makeWorkerUtils, type WorkerUtils } from 'graphile-worker';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACTIVATE_TASK, GraphileDispatch, QUEUE_COUNT, queueFor, timerJobKey } from '../../src/dispatch/graphile.js';
import type { SyncKey } from '../../src/engine/dispatch.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

/** Two connections that hash to the same queue, and one that does not. */
function keys(): { sync: SyncKey; mate: SyncKey; other: SyncKey } {
  const sync = { syncId: 'sync_a', tenantId: 't', connectionId: 'c0' };
  const queue = queueFor(sync);
  let mate: SyncKey | undefined;
  let other: SyncKey | undefined;
  for (let i = 1; (!mate || !other) && i < QUEUE_COUNT * 50; i++) {
    const key = { syncId: `sync_${i}`, tenantId: 't', connectionId: `c${i}` };
    if (queueFor(key) === queue) mate ??= key;
    else other ??= key;
  }
  return { sync, mate: mate!, other: other! };
}

describe.runIf(postgresAvailable)('GraphileDispatch.othersWaiting', () => {
  const graphileSchema = throwawaySchema('gw');
  let utils: WorkerUtils;
  let lockPool: pg.Pool;
  let dispatch: GraphileDispatch;

  beforeAll(async () => {
    utils = await makeWorkerUtils({ connectionString: DATABASE_URL, schema: graphileSchema });
    await utils.migrate();
    lockPool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    dispatch = new GraphileDispatch(utils, lockPool, graphileSchema);
  });

  afterAll(async () => {
    await utils?.withPgClient((client) => client.query(`DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`)).catch(() => {});
    await utils?.release();
    await lockPool?.end();
  });

  const clear = () => utils.withPgClient((client) => client.query(`DELETE FROM ${graphileSchema}._private_jobs`));
  const lockAll = () => utils.withPgClient((client) => client.query(`UPDATE ${graphileSchema}._private_jobs SET locked_at = now(), locked_by = 'test'`));

  it('is true only for due, unlocked work on the same queue that is not one of the sync\'s own timers', async () => {
    const waiting = (key: SyncKey) => dispatch.othersWaiting(key, 0);
    const { sync, mate, other } = keys();
    await clear();
    expect(await waiting(sync)).toBe(false);

    // The running job itself (locked) is not waiting.
    await dispatch.enqueue(sync, { kind: 'start', unattended: false });
    await lockAll();
    expect(await waiting(sync)).toBe(false);

    // The sync's own timer jobs are what the inline phase handles: not a reason to yield.
    await dispatch.timersChanged(sync, [], [{ syncId: sync.syncId, timerId: 't1', eventType: 'x', dueAt: Date.now() - 1_000 }]);
    expect(await waiting(sync)).toBe(false);

    // Work on another queue runs elsewhere.
    await dispatch.enqueue(other, { kind: 'start', unattended: false });
    expect(await waiting(sync)).toBe(false);

    // A queue mate due in the future is not waiting yet.
    await utils.addJob(ACTIVATE_TASK, { syncId: mate.syncId, activation: { kind: 'timer', timerId: 't9' } }, { queueName: queueFor(mate), runAt: new Date(Date.now() + 60_000), jobKey: timerJobKey(mate.syncId, 't9') });
    expect(await waiting(sync)).toBe(false);

    // A queue mate's due job, or this sync's webhook, waits behind the running job.
    await dispatch.enqueue(mate, { kind: 'start', unattended: false });
    expect(await waiting(sync)).toBe(true);
    await clear();
    await dispatch.enqueue(sync, { kind: 'hint' });
    expect(await waiting(sync)).toBe(true);
  });

  it('counts only work that has been due for at least dueForMs', async () => {
    const { sync, mate } = keys();
    await clear();
    await dispatch.enqueue(sync, { kind: 'start', unattended: false });
    await lockAll();
    await utils.addJob(ACTIVATE_TASK, { syncId: mate.syncId, activation: { kind: 'resume' } }, { queueName: queueFor(mate), runAt: new Date(Date.now() - 5_000) });
    expect(await dispatch.othersWaiting(sync, 60_000)).toBe(false);
    expect(await dispatch.othersWaiting(sync, 1_000)).toBe(true);
  });
});
