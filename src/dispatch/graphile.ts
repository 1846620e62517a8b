/**
 * Dispatch on graphile-worker (PostgreSQL). One task, `banksync.activate`, carries every kind of work.
 * - Serial per connection: a connection's jobs go to one of QUEUE_COUNT named queues chosen by hashing the
 *   connection key (graphile-worker runs a named queue's jobs one at a time; a bounded set of queue names
 *   avoids the high-cardinality queue table a queue per connection would build). Different connections
 *   spread over the queues and run in parallel across processes. A per-sync advisory lock also guards the
 *   few steps that run outside a job (a user's answer).
 * - Durable timers are jobs with a run time and a job key `timer:<syncId>:<timerId>`: re-armed by replacing
 *   the job, cancelled by removing it.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { WorkerUtils } from 'graphile-worker';
import type { Activation, Dispatch, SyncKey } from '../engine/dispatch.js';
import type { TimerRecord } from '../stores/types.js';

export const ACTIVATE_TASK = 'banksync.activate';
/** A crontab task name: graphile-worker's crontab accepts `[_a-zA-Z][_a-zA-Z0-9:/_-]*` (no dot). */
export const AUTOSYNC_TASK = 'banksync:autosync';
/** Retention: deletes what is past retention in bounded batches (see src/engine/retention.ts). */
export const PRUNE_TASK = 'banksync:prune';
export const QUEUE_COUNT = 64;

export interface ActivatePayload {
  syncId: string;
  activation: Activation;
}

export function queueFor(sync: Pick<SyncKey, 'tenantId' | 'connectionId'>): string {
  const digest = createHash('sha1').update(`${sync.tenantId}\u0000${sync.connectionId}`).digest();
  return `banksync-${digest.readUInt32BE(0) % QUEUE_COUNT}`;
}

export const timerJobKey = (syncId: string, timerId: string): string => `timer:${syncId}:${timerId}`;
/** The text whose hashtext() is the sync's advisory lock key (see withSyncLock). */
const syncLockKey = (syncId: string): string => `banksync-sync:${syncId}`;

export class GraphileDispatch implements Dispatch {
  constructor(
    private readonly utils: WorkerUtils,
    /** Holds the advisory locks only: a connection per lock holder, used for nothing else. */
    private readonly lockPool: pg.Pool,
    /** graphile-worker's schema (default `graphile_worker`). */
    private readonly graphileSchema = 'graphile_worker',
  ) {}

  async enqueue(sync: SyncKey, activation: Activation): Promise<void> {
    const payload: ActivatePayload = { syncId: sync.syncId, activation };
    await this.utils.addJob(ACTIVATE_TASK, payload, {
      queueName: queueFor(sync),
      maxAttempts: 25,
      // A start is queued once per sync; a resume is deduplicated while one is waiting.
      ...(activation.kind === 'start' ? { jobKey: `start:${sync.syncId}`, jobKeyMode: 'preserve_run_at' as const } : {}),
      ...(activation.kind === 'resume' ? { jobKey: `resume:${sync.syncId}`, jobKeyMode: 'preserve_run_at' as const } : {}),
      // Unauthenticated webhooks: a flood of them merges into the one hint job waiting.
      ...(activation.kind === 'hint' ? { jobKey: `hint:${sync.syncId}`, jobKeyMode: 'preserve_run_at' as const } : {}),
    });
  }

  async timersChanged(sync: SyncKey, previous: readonly TimerRecord[], next: readonly TimerRecord[]): Promise<void> {
    const unchanged = new Set(previous.map((t) => `${t.timerId}@${t.dueAt}`));
    const still = new Set(next.map((t) => t.timerId));
    for (const timer of next) {
      if (unchanged.has(`${timer.timerId}@${timer.dueAt}`)) continue;
      const payload: ActivatePayload = { syncId: sync.syncId, activation: { kind: 'timer', timerId: timer.timerId } };
      await this.utils.addJob(ACTIVATE_TASK, payload, {
        queueName: queueFor(sync),
        runAt: new Date(timer.dueAt),
        jobKey: timerJobKey(sync.syncId, timer.timerId),
        jobKeyMode: 'replace',
        maxAttempts: 25,
      });
    }
    const removed = previous.filter((t) => !still.has(t.timerId)).map((t) => timerJobKey(sync.syncId, t.timerId));
    if (removed.length > 0) {
      // graphile-worker's own pool, never the lock pool: the caller holds a lock connection, and with every
      // lock connection held by a caller waiting here nobody could ever proceed (issue 12, point 1).
      await this.utils.withPgClient((client) => client.query(`SELECT ${this.graphileSchema}.remove_job(k) FROM UNNEST($1::text[]) AS k`, [removed]));
    }
  }

  /**
   * Work for this sync waiting behind its running job: a due job of the sync that is not one of its timers
   * (on the connection's queue), or a session waiting for the sync's advisory lock (a user's answer). A job
   * handling timers inline yields to it. One query; it reads graphile-worker's private tables (as of 0.17)
   * and pg_locks (test/dispatch/others-waiting.test.ts pins both).
   */
  async othersWaiting(sync: SyncKey): Promise<boolean> {
    const { rows } = await this.utils.withPgClient((client) =>
      client.query<{ waiting: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM ${this.graphileSchema}._private_jobs j JOIN ${this.graphileSchema}._private_job_queues q ON q.id = j.job_queue_id
                  WHERE q.queue_name = $1 AND j.is_available AND j.run_at <= now() AND j.payload->>'syncId' = $2
                    AND (j.key IS NULL OR left(j.key, length($3)) <> $3))
             OR EXISTS (SELECT 1 FROM pg_locks l, (SELECT hashtext($4)::bigint AS k) h
                  WHERE l.locktype = 'advisory' AND NOT l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.objsubid = 1 AND l.classid = ((h.k >> 32) & 4294967295)::oid AND l.objid = (h.k & 4294967295)::oid) AS waiting`,
        [queueFor(sync), sync.syncId, `timer:${sync.syncId}:`, syncLockKey(sync.syncId)],
      ),
    );
    return rows[0]?.waiting === true;
  }

  async withSyncLock<T>(syncId: string, work: () => Promise<T>): Promise<T> {
    const key = syncLockKey(syncId);
    const client = await this.lockPool.connect();
    // A checked-out client has no pool error handler: without ours, a server restart or a terminated
    // backend ('57P01') is an unhandled 'error' event that kills the process. The session's advisory lock
    // is gone with it; the work may go on, since commits are fenced by version and effects journaled.
    let lost: Error | undefined;
    const onError = (error: Error) => {
      lost = error;
    };
    client.on('error', onError);
    try {
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
      try {
        return await work();
      } finally {
        if (!lost) {
          await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch((error: Error) => {
            lost = error;
          });
        }
      }
    } finally {
      client.off('error', onError);
      // A broken connection is destroyed, not returned to the pool.
      client.release(lost);
    }
  }
}
