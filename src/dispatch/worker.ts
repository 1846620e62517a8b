/**
 * A banksync worker process on PostgreSQL: graphile-worker runs `banksync.activate` jobs (and the autosync
 * crontab) against the shared database; the engine in this process hosts nothing between jobs.
 *
 * Crash recovery: graphile-worker leaves a killed worker's jobs locked for hours. Every worker process
 * writes a heartbeat every HEARTBEAT_MS; any worker that sees a heartbeat older than DEAD_AFTER_MS calls
 * graphile-worker's forceUnlockWorkers for that process's workers, so their jobs run again elsewhere.
 * A job that runs twice is harmless (committed state + effect journal). Worst-case recovery time:
 * DEAD_AFTER_MS + REAP_EVERY_MS + the poll interval, about 22 s with the defaults.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { Logger as GraphileLogger, makeWorkerUtils, run, type Runner, type WorkerEvents, type WorkerUtils } from 'graphile-worker';
import type { SyncPolicy } from '../../machines/synchronization.js';
import { AutosyncScheduler } from '../engine/autosync.js';
import { createEngine, type SyncEngine } from '../engine/engine.js';
import { startWebhookDelivery, type OutgoingWebhookOptions, type OutgoingWebhookDelivery } from '../engine/outgoing-webhooks.js';
import { silentLogger, type Logger } from '../engine/logger.js';
import type { TelemetryOptions } from '../engine/telemetry.js';
import type { ProviderAdapter } from '../providers/types.js';
import { guardPool, tolerateDoubleRelease, type ConnectionErrorListener } from '../stores/pg-pool.js';
import { PostgresStore } from '../stores/postgres.js';
import type { RetentionSettings } from '../config/index.js';
import { ACTIVATE_TASK, AUTOSYNC_TASK, GraphileDispatch, PRUNE_TASK, type ActivatePayload } from './graphile.js';

export const HEARTBEAT_MS = 2_000;
export const DEAD_AFTER_MS = 15_000;
export const REAP_EVERY_MS = 5_000;
export const POLL_INTERVAL_MS = 500;
/** An active sync nothing has moved for this long gets a resume job (a lost job, a crash before enqueue). */
export const STALE_AFTER_MS = 60_000;
/** Workers prune once an hour (at minute 17, away from the autosync quarter hours); one worker runs each tick. */
export const DEFAULT_PRUNE_CRON = '17 * * * *';
/** The job runner is restarted after a database outage with backoff from 0.5 s up to this. */
export const RUNNER_RETRY_MAX_MS = 5_000;

export interface WorkerOptions {
  databaseUrl: string;
  providers: Record<string, ProviderAdapter>;
  schema?: string;
  /** graphile-worker's own schema (default `graphile_worker`); tests use a throwaway one. */
  graphileSchema?: string;
  concurrency?: number;
  policy?: Partial<SyncPolicy>;
  webhookSecrets?: Record<string, string>;
  logger?: Logger;
  /** Cron line for the daily autosync ticks; false disables it. Default every 15 minutes. */
  autosyncCron?: string | false;
  /**
   * Retention (DEFAULT_RETENTION for what is not given) and `cron`, when workers prune in bounded batches
   * (default DEFAULT_PRUNE_CRON; false: never).
   */
  retention?: RetentionSettings;
  heartbeatMs?: number;
  deadAfterMs?: number;
  reapEveryMs?: number;
  /** See STALE_AFTER_MS. */
  staleAfterMs?: number;
  /** Called when this process releases the jobs of a dead worker process. */
  onReap?: (deadProcessId: string) => void;
  /**
   * Serve `/metrics` (Prometheus text, names prefixed `banksync_`) and `/healthz` on this port (0: any free
   * port; see `metricsUrl`). Needs the optional peers @opentelemetry/sdk-metrics and @opentelemetry/exporter-prometheus.
   */
  metricsPort?: number;
  /** Interface of the metrics server. Default: all interfaces. */
  metricsHost?: string;
  /** Spans (and metrics, without metricsPort) go here; default the global OpenTelemetry providers. */
  telemetry?: TelemetryOptions | false;
  /** Deliver the event log to the app (Standard Webhooks); one worker process delivers at a time. */
  outgoingWebhook?: OutgoingWebhookOptions;
  /**
   * A job keeps its sync and fires the sync's next timer itself when it is due within this many ms, instead
   * of ending and leaving it to a timer job (default 1000; 0: every timer is a job). Committed as always.
   */
  inlineTimerMaxMs?: number;
  /** How long one job may go on firing timers inline (it holds the sync and its queue meanwhile). Default 5000 ms. */
  inlineTimerBudgetMs?: number;
}

export interface BanksyncWorker {
  readonly processId: string;
  readonly engine: SyncEngine;
  readonly store: PostgresStore;
  /** Worker ids of other processes this one found dead and unlocked, with when. */
  readonly reaped: { processId: string; at: number }[];
  /** Base URL of the metrics server (`<url>/metrics`, `<url>/healthz`), or null without metricsPort. */
  readonly metricsUrl: string | null;
  stop(): Promise<void>;
}

/**
 * The API side of a scale-out deployment: an engine that enqueues work for the workers instead of doing it.
 * Its `engine.events` (and waitForTerminal) follow the durable event log, so they report what the workers do.
 */
export async function createDispatchingEngine(
  options: Omit<WorkerOptions, 'concurrency' | 'autosyncCron' | 'metricsPort' | 'metricsHost'> & {
    /** Feed engine.events from the event log (default true); false: only this process's own changes. */
    followEvents?: boolean;
  },
): Promise<{ engine: SyncEngine; store: PostgresStore; close(): Promise<void> }> {
  const logger = options.logger ?? silentLogger;
  const onConnectionError = connectionErrorLogger(logger);
  const store = await PostgresStore.open({ connectionString: options.databaseUrl, ...(options.schema ? { schema: options.schema } : {}), max: 8, onConnectionError });
  const graphileSchema = options.graphileSchema ?? 'graphile_worker';
  const utils = await makeWorkerUtils({ connectionString: options.databaseUrl, schema: graphileSchema, logger: quietGraphileLogger(logger) });
  await utils.migrate();
  const lockPool = guardPool(new pg.Pool({ connectionString: options.databaseUrl, max: 4, application_name: `banksync-api-locks:${graphileSchema}` }), onConnectionError);
  const engine = createEngine({
    store,
    providers: options.providers,
    dispatch: new GraphileDispatch(utils, lockPool, graphileSchema),
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.webhookSecrets ? { webhookSecrets: options.webhookSecrets } : {}),
    ...(options.telemetry !== undefined ? { telemetry: options.telemetry } : {}),
  });
  if (options.followEvents !== false) await engine.followEventLog();
  return {
    engine,
    store,
    async close() {
      await engine.stop();
      await utils.release();
      await lockPool.end();
      await store.close();
    },
  };
}

function withoutCron(settings: RetentionSettings): Omit<RetentionSettings, 'cron'> {
  const { cron: _cron, ...retention } = settings;
  return retention;
}

/** Logs each broken database connection once (a server restart breaks every one of them). */
function connectionErrorLogger(logger: Logger): ConnectionErrorListener {
  return (error, where) => logger.warn({ err: error.message, code: (error as { code?: string }).code, where }, 'database connection lost; the pool reconnects on its next use');
}

function quietGraphileLogger(logger: Logger = silentLogger): GraphileLogger {
  return new GraphileLogger(() => (level, message) => {
    if (level === 'error') logger.error({ component: 'graphile-worker' }, message);
    else if (level === 'warning') logger.warn({ component: 'graphile-worker' }, message);
  });
}

export async function startWorker(options: WorkerOptions): Promise<BanksyncWorker> {
  const logger = options.logger ?? silentLogger;
  const concurrency = options.concurrency ?? 4;
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  const deadAfterMs = options.deadAfterMs ?? DEAD_AFTER_MS;
  const reapEveryMs = options.reapEveryMs ?? REAP_EVERY_MS;
  const processId = `banksync-${randomUUID()}`;
  const onConnectionError = connectionErrorLogger(logger);
  const store = await PostgresStore.open({ connectionString: options.databaseUrl, ...(options.schema ? { schema: options.schema } : {}), max: concurrency * 2 + 4, onConnectionError });
  const graphileLogger = quietGraphileLogger(logger);
  const graphileSchema = options.graphileSchema ?? 'graphile_worker';
  const utils: WorkerUtils = await makeWorkerUtils({ connectionString: options.databaseUrl, schema: graphileSchema, logger: graphileLogger });
  await utils.migrate();
  // Locks get their own pool: a job holding a lock must never wait for a connection another lock holder has.
  const lockPool = guardPool(new pg.Pool({ connectionString: options.databaseUrl, max: concurrency + 2, application_name: `banksync-locks:${graphileSchema}` }), onConnectionError);
  const metrics = options.metricsPort === undefined ? null : (await import('./metrics-server.js')).createMetricsEndpoint();
  const telemetry = options.telemetry === false ? false : metrics ? { ...options.telemetry, meterProvider: metrics.meterProvider } : options.telemetry;
  const engine = createEngine({
    store,
    providers: options.providers,
    dispatch: new GraphileDispatch(utils, lockPool, graphileSchema),
    logger,
    ...(telemetry !== undefined ? { telemetry } : {}),
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.webhookSecrets ? { webhookSecrets: options.webhookSecrets } : {}),
    ...(options.retention ? { retention: withoutCron(options.retention) } : {}),
    ...(options.inlineTimerMaxMs !== undefined ? { inlineTimerMaxMs: options.inlineTimerMaxMs } : {}),
    ...(options.inlineTimerBudgetMs !== undefined ? { inlineTimerBudgetMs: options.inlineTimerBudgetMs } : {}),
  });
  /** Aborted when stop() begins: a job waiting for an inline timer ends and hands its timers to the dispatcher. */
  const stopInline = new AbortController();
  const pruneCron = options.retention?.cron ?? DEFAULT_PRUNE_CRON;
  const crontab = [
    ...(options.autosyncCron === false ? [] : [`${options.autosyncCron ?? '*/15 * * * *'} ${AUTOSYNC_TASK}`]),
    ...(pruneCron === false ? [] : [`${pruneCron} ${PRUNE_TASK}`]),
  ].join('\n');
  const autosync = new AutosyncScheduler(engine, store);
  const graphileWorkerIds: string[] = [];
  const events: WorkerEvents = new EventEmitter() as WorkerEvents;
  // Jobs are locked by the pool's id (graphile-worker fetches for its pool) or a worker's: record both.
  events.on('pool:create', ({ workerPool }) => {
    graphileWorkerIds.push(workerPool.id);
  });
  events.on('worker:create', ({ worker }) => {
    graphileWorkerIds.push(worker.workerId);
  });
  let lastHeartbeatAt: number | null = null;
  const heartbeat = async () => {
    await store.pool.query(
      `INSERT INTO ${store.schema}.workers (process_id, graphile_worker_ids, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)
       ON CONFLICT (process_id) DO UPDATE SET graphile_worker_ids = excluded.graphile_worker_ids, heartbeat_at = excluded.heartbeat_at`,
      [processId, graphileWorkerIds, Date.now()],
    );
    lastHeartbeatAt = Date.now();
  };
  await heartbeat();

  // graphile-worker's job pool is ours (one for every runner this process starts): guarded like every pool,
  // and tolerant of graphile-worker releasing its LISTEN client twice (see tolerateDoubleRelease).
  const jobPool = tolerateDoubleRelease(
    guardPool(new pg.Pool({ connectionString: options.databaseUrl, max: concurrency + 4, application_name: `banksync-jobs:${graphileSchema}` }), onConnectionError),
  );
  const startRunner = (): Promise<Runner> =>
    run({
      pgPool: jobPool,
      schema: graphileSchema,
      concurrency,
      noHandleSignals: true,
      pollInterval: POLL_INTERVAL_MS,
      useNodeTime: true,
      logger: graphileLogger,
      events,
      crontab,
      // Batched completion and failure records (delay 0: no added latency). Unbatched, graphile-worker 0.17
      // does not await a failed `failJob`/`completeJob` write: a database outage became an unhandled
      // rejection that killed the process (57P01/ECONNREFUSED from batchFailJobs). Batched, the failed write
      // shuts the pool down and rejects runner.promise, which `watch` below turns into a restart.
      preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
      taskList: {
        [ACTIVATE_TASK]: async (payload, helpers) => {
          const { syncId, activation } = payload as ActivatePayload;
          // graphile-worker counts attempts when it fetches a job: above 1, an earlier run died or failed.
          await engine.activate(syncId, activation, { rerun: helpers.job.attempts > 1, signal: AbortSignal.any([stopInline.signal, helpers.abortSignal]) });
        },
        [AUTOSYNC_TASK]: async () => {
          const report = await autosync.tick(Date.now());
          logger.info({ ...report }, 'autosync tick');
        },
        [PRUNE_TASK]: async () => {
          const { cutoffs: _cutoffs, ...report } = await engine.prune();
          logger.info({ ...report }, 'retention: pruned');
        },
      },
    });
  let stopping = false;
  let runnerUp = true;
  let currentPoolId: string | undefined;
  events.on('pool:create', ({ workerPool }) => {
    currentPoolId = workerPool.id;
  });
  let runner: Runner = await startRunner();
  /**
   * A database outage ends graphile-worker's pool: a job outcome it cannot record (57P01/ECONNREFUSED in
   * batchFailJobs), or a worker that exits on one, starts the pool's graceful shutdown, and runner.promise
   * rejects (unobserved, that rejection once killed the process). The shutdown can also stall on the dead
   * connection. So, at the first sign (the shutdown event or the rejection), this process reports it and
   * starts a new pool with backoff once the database is back, releasing the jobs the old pool still had locked
   * (this process is alive, so no reaper would). A job that then runs twice is harmless (fenced commits,
   * effect journal, per-sync advisory lock).
   */
  let restarting = false;
  const restart = (reason: string): void => {
    if (stopping || restarting) return;
    restarting = true;
    runnerUp = false;
    logger.error({ reason }, 'job runner stopped on a database error; restarting it when the database is back');
    const stale = [...graphileWorkerIds];
    void (async () => {
      for (let attempt = 0; !stopping; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(RUNNER_RETRY_MAX_MS, 500 * 2 ** attempt)));
        if (stopping) break;
        try {
          if (stale.length > 0) await utils.forceUnlockWorkers(stale);
          graphileWorkerIds.splice(0, graphileWorkerIds.length, ...graphileWorkerIds.filter((id) => !stale.includes(id)));
          runner = await startRunner();
          runnerUp = true;
          logger.warn({ attempt }, 'job runner restarted');
          watch(runner);
          break;
        } catch (retryError) {
          logger.warn({ attempt, err: (retryError as Error)?.message }, 'database still unavailable; retrying');
        }
      }
      restarting = false;
    })();
  };
  const watch = (current: Runner): void => {
    current.promise.catch((error: unknown) => {
      if (runner === current) restart((error as Error)?.message ?? String(error));
    });
  };
  events.on('pool:gracefulShutdown', ({ workerPool, message }) => {
    if (workerPool.id === currentPoolId) restart(message);
  });
  watch(runner);
  await heartbeat();
  const webhooks: OutgoingWebhookDelivery | null = options.outgoingWebhook ? await startWebhookDelivery(store, { logger, ...options.outgoingWebhook }) : null;
  /** Since when this process's heartbeats succeed without a gap (null: the last one failed). */
  let healthySince: number | null = Date.now();

  const reaped: { processId: string; at: number }[] = [];
  const reap = async () => {
    // After an outage every heartbeat is old: give the other processes time to write theirs before
    // taking one for dead (and running its jobs a second time).
    if (healthySince === null || Date.now() - healthySince < deadAfterMs) return;
    const { rows } = await store.pool.query<{ process_id: string; graphile_worker_ids: string[] }>(
      `DELETE FROM ${store.schema}.workers WHERE heartbeat_at < $1 AND process_id <> $2 RETURNING process_id, graphile_worker_ids`,
      [Date.now() - deadAfterMs, processId],
    );
    for (const dead of rows) {
      if (dead.graphile_worker_ids.length > 0) await utils.forceUnlockWorkers(dead.graphile_worker_ids);
      reaped.push({ processId: dead.process_id, at: Date.now() });
      options.onReap?.(dead.process_id);
      logger.warn({ deadProcess: dead.process_id }, 'released the jobs of a dead worker process');
    }
  };
  /** Runs a periodic task; logs its first failure and its recovery, not every failed round of an outage. */
  const guard = (what: string, fn: () => Promise<unknown>) => {
    let failing = false;
    return () => {
      fn().then(
        () => {
          if (failing) logger.info({ task: what }, `${what} works again`);
          failing = false;
        },
        (error: unknown) => {
          if (!failing) logger.error({ task: what, err: (error as Error)?.message }, `${what} failed; retrying every round`);
          failing = true;
        },
      );
    };
  };
  const beat = async () => {
    try {
      await heartbeat();
      healthySince ??= Date.now();
    } catch (error) {
      healthySince = null;
      throw error;
    }
  };
  const timers = [
    setInterval(guard('heartbeat', beat), heartbeatMs),
    setInterval(guard('reaper', reap), reapEveryMs),
    setInterval(guard('stale sweep', () => engine.recoverStuck(options.staleAfterMs ?? STALE_AFTER_MS)), options.staleAfterMs ?? STALE_AFTER_MS),
  ];

  /** Healthy while the job runner runs, the database answers and the heartbeat is one the reaper accepts. */
  const health = async () => {
    const database = await withTimeout(store.pool.query('SELECT 1'), HEALTH_QUERY_TIMEOUT_MS).then(
      () => 'up' as const,
      () => 'down' as const,
    );
    const heartbeatAgeMs = lastHeartbeatAt === null ? null : Date.now() - lastHeartbeatAt;
    const heartbeating = heartbeatAgeMs !== null && heartbeatAgeMs < deadAfterMs;
    const ok = !stopping && runnerUp && database === 'up' && heartbeating;
    return { ok, processId, database, runner: stopping ? 'stopping' : runnerUp ? 'running' : 'restarting', heartbeatAgeMs };
  };
  let metricsUrl: string | null = null;
  try {
    if (metrics) metricsUrl = await metrics.listen(options.metricsPort!, options.metricsHost, health);
  } catch (error) {
    stopping = true;
    for (const timer of timers) clearInterval(timer);
    await runner.stop().catch(() => {});
    await engine.stop();
    await store.pool.query(`DELETE FROM ${store.schema}.workers WHERE process_id = $1`, [processId]).catch(() => {});
    await utils.release();
    await lockPool.end();
    await store.close();
    await metrics?.close();
    throw error;
  }

  return {
    processId,
    engine,
    store,
    reaped,
    metricsUrl,
    async stop() {
      stopping = true;
      stopInline.abort();
      for (const timer of timers) clearInterval(timer);
      await metrics?.close();
      await webhooks?.stop();
      await runner.stop().catch(() => {});
      await engine.stop();
      await store.pool.query(`DELETE FROM ${store.schema}.workers WHERE process_id = $1`, [processId]).catch(() => {});
      await utils.release();
      await lockPool.end();
      await jobPool.end();
      await store.close();
    },
  };
}

const HEALTH_QUERY_TIMEOUT_MS = 2_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
