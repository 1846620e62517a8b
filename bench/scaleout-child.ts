/**
 * One worker process of the scale-out benchmark (bench/scaleout.ts spawns 1, 2 or 4 of them):
 * - MODE=banksync: a banksync worker (`startWorker`) on the bench's PostgreSQL schemas, finX adapter against the
 *   bench's sandbox, short poll policy, no autosync or pruning;
 * - MODE=noop: graphile-worker alone, running `noop` jobs that do nothing (the baseline).
 * Prints `{"ready":true}` once it takes jobs; stops cleanly on SIGTERM.
 */
import { Logger, run } from 'graphile-worker';
import { startWorker } from '../src/dispatch/worker.js';
import { createFinxAdapter } from '../src/providers/finx/index.js';

const { MODE, DATABASE_URL, BS_SCHEMA, GW_SCHEMA, SANDBOX_URL, CONCURRENCY } = process.env;
if (!DATABASE_URL || !GW_SCHEMA || !CONCURRENCY) throw new Error('DATABASE_URL, GW_SCHEMA and CONCURRENCY are required');
const concurrency = Number(CONCURRENCY);

/** The poll policy of the measured syncs: waits short enough that the workers, not the timers, set the pace. */
const SCALEOUT_POLICY = { pollBaseMs: 10, pollMaxMs: 20, authPollMs: 100, retryBaseMs: 50, retryMaxMs: 200 };

let stop: () => Promise<void>;
if (MODE === 'banksync') {
  if (!BS_SCHEMA || !SANDBOX_URL) throw new Error('BS_SCHEMA and SANDBOX_URL are required');
  const worker = await startWorker({
    databaseUrl: DATABASE_URL,
    schema: BS_SCHEMA,
    graphileSchema: GW_SCHEMA,
    providers: { finx: createFinxAdapter({ baseUrl: `${SANDBOX_URL}/finx`, token: 'bench' }) },
    concurrency,
    autosyncCron: false,
    retention: { cron: false },
    telemetry: false,
    policy: SCALEOUT_POLICY,
    // A/B runs: BENCH_INLINE_TIMER_MAX_MS=0 measures one job per timer (inline timers off).
    ...(process.env.BENCH_INLINE_TIMER_MAX_MS !== undefined ? { inlineTimerMaxMs: Number(process.env.BENCH_INLINE_TIMER_MAX_MS) } : {}),
  });
  stop = () => worker.stop();
} else if (MODE === 'noop') {
  const runner = await run({
    connectionString: DATABASE_URL,
    schema: GW_SCHEMA,
    concurrency,
    noHandleSignals: true,
    pollInterval: 500,
    logger: new Logger(() => () => {}),
    // As the banksync worker's runner (src/dispatch/worker.ts): batched completion records, no added delay.
    preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
    taskList: { noop: async () => {} },
  });
  stop = () => runner.stop();
} else {
  throw new Error(`MODE must be banksync or noop (got ${MODE})`);
}
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.once('SIGTERM', () => {
  void stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
