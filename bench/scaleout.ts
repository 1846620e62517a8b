/**
 * Scale-out throughput (issue 14, point 3): N syncs through 1, 2 and 4 banksync worker processes on PostgreSQL
 * (graphile-worker dispatch, finX adapter over real HTTP to the sandbox, scenario `success`: trigger and three
 * polls), beside graphile-worker alone draining N no-op jobs with the same process count and concurrency on
 * the same database in the same run. Each side gets fresh schemas; the worker processes are started and ready
 * before the clock starts; the clock stops when the last sync has ended (or the last job is gone).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { makeWorkerUtils } from 'graphile-worker';
import { createDispatchingEngine } from '../src/dispatch/worker.js';
import { createFinxAdapter } from '../src/providers/finx/index.js';
import { startSandbox } from '../src/sandbox/server.js';

const CHILD = join(fileURLToPath(new URL('.', import.meta.url)), 'scaleout-child.ts');
/** Requests (syncs or jobs) in flight from the enqueuing side at a time. */
const ENQUEUE_BATCH = 100;
const POLL_MS = 50;
const WARMUP = 20;

export interface ScaleoutOptions {
  databaseUrl: string;
  syncs: number;
  workerCounts: number[];
  /** graphile-worker concurrency of each worker process (both sides). */
  concurrency: number;
}

export interface ScaleoutRun {
  workers: number;
  syncsElapsedMs: number;
  syncsPerSec: number;
  /** Of syncsElapsedMs: until the last requestSync returned (the API side enqueueing). */
  syncsEnqueueMs: number;
  noopElapsedMs: number;
  /** Of noopElapsedMs: until the last addJob returned. */
  noopEnqueueMs: number;
  jobsPerSec: number;
  /**
   * PostgreSQL transactions (pg_stat_database xact_commit + xact_rollback of this database) per sync / per no-op
   * job, over the whole run from setup to teardown (worker start-up, heartbeats and schema drops included).
   */
  xactsPerSync: number;
  xactsPerJob: number;
  loadAvg: number;
}

export interface ScaleoutResult {
  syncs: number;
  concurrency: number;
  postgres: string;
  runs: ScaleoutRun[];
}

interface Child {
  process: ChildProcess;
  exited: Promise<void>;
}

function spawnChild(env: Record<string, string>): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let stderr = '';
  proc.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4_000)));
  return new Promise((resolve, reject) => {
    let buffer = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.startsWith('{"ready"')) resolve({ process: proc, exited });
      }
    });
    proc.once('exit', (code) => reject(new Error(`scale-out worker exited (${code}) before it was ready: ${stderr}`)));
  });
}

async function stopChildren(children: Child[]): Promise<void> {
  for (const child of children) child.process.kill('SIGTERM');
  const killer = setTimeout(() => children.forEach((c) => c.process.kill('SIGKILL')), 30_000);
  await Promise.all(children.map((c) => c.exited));
  clearTimeout(killer);
}

/** Runs `count` calls of `task`, ENQUEUE_BATCH at a time. */
async function inBatches(count: number, task: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < count; i += ENQUEUE_BATCH) {
    await Promise.all(Array.from({ length: Math.min(ENQUEUE_BATCH, count - i) }, (_, j) => task(i + j)));
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`scale-out: ${what} not reached within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

const unique = (prefix: string, workers: number) => `${prefix}_${process.pid}_${workers}_${Math.random().toString(36).slice(2, 8)}`;

/** N syncs through `workers` banksync worker processes; returns the wall time from the first request to the last sync's end. */
async function banksyncRun(options: ScaleoutOptions, workers: number, sandboxUrl: string): Promise<{ elapsedMs: number; enqueueMs: number }> {
  const schema = unique('bench_bs', workers);
  const graphileSchema = unique('bench_gw', workers);
  const finx = createFinxAdapter({ baseUrl: `${sandboxUrl}/finx`, token: 'bench' });
  const api = await createDispatchingEngine({ databaseUrl: options.databaseUrl, schema, graphileSchema, providers: { finx }, followEvents: false });
  const children: Child[] = [];
  try {
    const accesses: string[] = [];
    await inBatches(options.syncs, async () => {
      const access = await finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'success' });
      accesses.push(access.id);
    });
    const env = { MODE: 'banksync', DATABASE_URL: options.databaseUrl, BS_SCHEMA: schema, GW_SCHEMA: graphileSchema, SANDBOX_URL: sandboxUrl, CONCURRENCY: String(options.concurrency) };
    children.push(...(await Promise.all(Array.from({ length: workers }, () => spawnChild(env)))));

    const t0 = performance.now();
    await inBatches(accesses.length, (i) => api.engine.requestSync({ connectionId: accesses[i]!, provider: 'finx' }));
    const enqueueMs = performance.now() - t0;
    const counts = async () =>
      (
        await api.store.pool.query<{ active: number; completed: number; total: number }>(
          `SELECT count(*) FILTER (WHERE active)::int AS active, count(*) FILTER (WHERE status = 'COMPLETED')::int AS completed, count(*)::int AS total FROM ${schema}.syncs`,
        )
      ).rows[0]!;
    await waitFor(`${options.syncs} syncs ended`, async () => {
      const c = await counts();
      return c.total === options.syncs && c.active === 0;
    }, 30 * 60_000);
    const elapsed = performance.now() - t0;
    const { completed } = await counts();
    if (completed !== options.syncs) throw new Error(`scale-out: ${completed} of ${options.syncs} syncs COMPLETED (scenario success)`);
    return { elapsedMs: elapsed, enqueueMs };
  } finally {
    await stopChildren(children);
    await api.store.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`).catch(() => {});
    await api.close();
  }
}

/** N no-op jobs through `workers` graphile-worker processes; returns the wall time from the first add to the last job's end. */
async function noopRun(options: ScaleoutOptions, workers: number): Promise<{ elapsedMs: number; enqueueMs: number }> {
  const graphileSchema = unique('bench_noop', workers);
  const utils = await makeWorkerUtils({ connectionString: options.databaseUrl, schema: graphileSchema });
  await utils.migrate();
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 2 });
  const children: Child[] = [];
  try {
    const env = { MODE: 'noop', DATABASE_URL: options.databaseUrl, GW_SCHEMA: graphileSchema, CONCURRENCY: String(options.concurrency) };
    children.push(...(await Promise.all(Array.from({ length: workers }, () => spawnChild(env)))));
    const t0 = performance.now();
    // One addJob per job, as the dispatching engine enqueues one job per sync request.
    await inBatches(options.syncs, () => utils.addJob('noop', {}));
    const enqueueMs = performance.now() - t0;
    await waitFor(`${options.syncs} no-op jobs done`, async () => {
      const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${graphileSchema}._private_jobs`);
      return rows[0]!.n === 0;
    }, 30 * 60_000);
    return { elapsedMs: performance.now() - t0, enqueueMs };
  } finally {
    await stopChildren(children);
    await pool.query(`DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`).catch(() => {});
    await pool.end();
    await utils.release();
  }
}

export async function scaleout(options: ScaleoutOptions): Promise<ScaleoutResult> {
  const sandbox = await startSandbox();
  const probe = new pg.Client({ connectionString: options.databaseUrl });
  await probe.connect();
  const postgres = String((await probe.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version);
  await probe.end();
  const runs: ScaleoutRun[] = [];
  const stats = new pg.Client({ connectionString: options.databaseUrl });
  await stats.connect();
  // Every other backend flushes its counters when it exits, and every run ends its processes and pools first.
  const xacts = async () => {
    await stats.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await stats.query<{ n: string }>('SELECT (xact_commit + xact_rollback)::text AS n FROM pg_stat_database WHERE datname = current_database()');
    return Number(rows[0]!.n);
  };
  try {
    // Warm-up, not measured: the first run of each side in this process paid for JIT, pools and the first
    // graphile-worker migration (a quick run measured no-op jobs 5x slower in its first run than its second).
    const warmup = { ...options, syncs: Math.min(options.syncs, WARMUP) };
    await noopRun(warmup, 1);
    await banksyncRun(warmup, 1, sandbox.url);
    for (const workers of options.workerCounts) {
      const loadAvg = os.loadavg()[0]!;
      const x0 = await xacts();
      const noop = await noopRun(options, workers);
      const x1 = await xacts();
      const syncs = await banksyncRun(options, workers, sandbox.url);
      const x2 = await xacts();
      runs.push({
        workers,
        syncsElapsedMs: syncs.elapsedMs,
        syncsEnqueueMs: syncs.enqueueMs,
        syncsPerSec: (options.syncs * 1000) / syncs.elapsedMs,
        noopElapsedMs: noop.elapsedMs,
        noopEnqueueMs: noop.enqueueMs,
        jobsPerSec: (options.syncs * 1000) / noop.elapsedMs,
        // Minus the reads of the counters themselves (one transaction each).
        xactsPerSync: (x2 - x1 - 2) / options.syncs,
        xactsPerJob: (x1 - x0 - 2) / options.syncs,
        loadAvg,
      });
    }
  } finally {
    await stats.end();
    await sandbox.close();
  }
  return { syncs: options.syncs, concurrency: options.concurrency, postgres, runs };
}
