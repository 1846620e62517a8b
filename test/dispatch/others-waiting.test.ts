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
    lockPool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
    dispatch = new GraphileDispatch(utils, lockPool, graphileSchema);
  });

  afterAll(async () => {
    await utils?.withPgClient((client) => client.query(`DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`)).catch(() => {});
    await utils?.release();
    await lockPool?.end();
  });

  const clear = () => utils.withPgClient((client) => client.query(`DELETE FROM ${graphileSchema}._private_jobs`));
  const lockAll = () => utils.withPgClient((client) => client.query(`UPDATE ${graphileSchema}._private_jobs SET locked_at = now(), locked_by = 'test'`));

  it('is true only for due, unlocked jobs of the same sync that are not its own timers', async () => {
    const { sync, mate, other } = keys();
    await clear();
    expect(await dispatch.othersWaiting(sync)).toBe(false);

    // The running job itself (locked) is not waiting.
    await dispatch.enqueue(sync, { kind: 'start', unattended: false });
    await lockAll();
    expect(await dispatch.othersWaiting(sync)).toBe(false);

    // The sync's own timer jobs are what the inline phase handles: not a reason to yield.
    await dispatch.timersChanged(sync, [], [{ syncId: sync.syncId, timerId: 't1', eventType: 'x', dueAt: Date.now() - 1_000 }]);
    expect(await dispatch.othersWaiting(sync)).toBe(false);

    // Other syncs' work, on another queue or on the same one (those wait at most the inline budget).
    await dispatch.enqueue(other, { kind: 'start', unattended: false });
    await dispatch.enqueue(mate, { kind: 'start', unattended: false });
    expect(await dispatch.othersWaiting(sync)).toBe(false);

    // This sync's webhook job due in the future is not waiting yet; due now, it is.
    await utils.addJob(ACTIVATE_TASK, { syncId: sync.syncId, activation: { kind: 'hint' } }, { queueName: queueFor(sync), runAt: new Date(Date.now() + 60_000) });
    expect(await dispatch.othersWaiting(sync)).toBe(false);
    await dispatch.enqueue(sync, { kind: 'observe', observation: { status: 'RUNNING' } });
    expect(await dispatch.othersWaiting(sync)).toBe(true);
  });

  it("is true while another session waits for the sync's lock (a user's answer)", async () => {
    const { sync, mate } = keys();
    await clear();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const holder = dispatch.withSyncLock(sync.syncId, async () => {
      locked();
      await held;
    });
    await lockTaken;
    expect(await dispatch.othersWaiting(sync)).toBe(false);
    // Another sync's lock waiter is not this sync's.
    const other = new pg.Client({ connectionString: DATABASE_URL });
    await other.connect();
    try {
      await other.query('SELECT pg_advisory_lock(hashtext($1))', [`banksync-sync:${mate.syncId}`]);
      const mateWaiter = dispatch.withSyncLock(mate.syncId, async () => {});
      const waiter = dispatch.withSyncLock(sync.syncId, async () => {});
      await expect.poll(() => dispatch.othersWaiting(sync), { timeout: 10_000, interval: 50 }).toBe(true);
      release();
      await Promise.all([holder, waiter]);
      expect(await dispatch.othersWaiting(sync)).toBe(false);
      await other.query('SELECT pg_advisory_unlock(hashtext($1))', [`banksync-sync:${mate.syncId}`]);
      await mateWaiter;
    } finally {
      release();
      await other.end();
    }
  });
});
