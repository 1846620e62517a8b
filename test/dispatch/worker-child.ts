/** A worker process for the multi-process test: runs until SIGKILLed. Prints JSON lines. */
import { startWorker } from '../../src/dispatch/worker.js';
import { createLogger } from '../../src/engine/logger.js';
import { createFinxAdapter } from '../../src/providers/finx/index.js';

const { DATABASE_URL, BS_SCHEMA, GW_SCHEMA, SANDBOX_URL } = process.env;
if (!DATABASE_URL || !BS_SCHEMA || !GW_SCHEMA || !SANDBOX_URL) throw new Error('DATABASE_URL, BS_SCHEMA, GW_SCHEMA and SANDBOX_URL are required');

const print = (line: object) => process.stdout.write(`${JSON.stringify({ ...line, at: Date.now() })}\n`);
const worker = await startWorker({
  databaseUrl: DATABASE_URL,
  schema: BS_SCHEMA,
  graphileSchema: GW_SCHEMA,
  providers: { finx: createFinxAdapter({ baseUrl: `${SANDBOX_URL}/finx`, token: 'mp' }) },
  concurrency: 6,
  // LOG_ERRORS=1: warnings and errors as pino JSON lines on stdout (the restart test reads them).
  ...(process.env.LOG_ERRORS === '1' ? { logger: createLogger({ level: 'warn', destination: process.stdout }) } : {}),
  autosyncCron: false,
  policy: { pollBaseMs: 100, pollMaxMs: 400, authPollMs: 100, retryBaseMs: 100, retryMaxMs: 800 },
  // Shortened for the test; production defaults: heartbeat 2 s, dead after 15 s, reaper every 5 s.
  heartbeatMs: 300,
  deadAfterMs: 2_500,
  reapEveryMs: 500,
  staleAfterMs: Number(process.env.STALE_AFTER_MS ?? 5_000),
  onReap: (dead) => print({ reaped: dead }),
  ...(process.env.METRICS_PORT ? { metricsPort: Number(process.env.METRICS_PORT), metricsHost: '127.0.0.1' } : {}),
});
print({ ready: worker.processId, metricsUrl: worker.metricsUrl });
process.on('SIGTERM', () => void worker.stop().then(() => process.exit(0)));
