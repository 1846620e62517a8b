import type { Command } from 'commander';
import { adaptersFromConfig } from '../../config/index.js';
import { createLogger } from '../../engine/logger.js';
import { httpUrl, LOG_LEVELS, oneOf, port, positiveInt, postgresUrl, type LogLevel } from '../options.js';
import { loadFor, providerSource, UsageError } from '../peers.js';

interface WorkerCliOptions {
  databaseUrl?: string;
  config?: string;
  sandboxUrl?: string;
  token?: string;
  concurrency: number;
  schema?: string;
  autosync: boolean;
  metricsPort?: number;
  metricsHost?: string;
  logLevel: LogLevel;
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('run a scale-out worker process: graphile-worker jobs on PostgreSQL (start several, on several machines)')
    .option('--config <file>', "banksync.config.json (providers, auth, webhook secrets, timings; its postgres store)")
    .option('--sandbox-url <url>', 'talk to a running provider sandbox instead of real providers', httpUrl)
    .option('--token <token>', 'sandbox token (default: $BANKSYNC_TOKEN, else a sandbox token)')
    .option('--database-url <url>', "PostgreSQL connection string (default: the config's store, else $DATABASE_URL)", postgresUrl)
    .option('--concurrency <n>', 'jobs at once in this process', positiveInt, 4)
    .option('--schema <name>', 'PostgreSQL schema of banksync tables (default: banksync)')
    .option('--no-autosync', 'do not run the daily autosync crontab in this worker')
    .option('--metrics-port <port>', 'serve /metrics (Prometheus) and /healthz on this port', port)
    .option('--metrics-host <host>', 'interface of the metrics server (default: all interfaces)')
    .option('--log-level <level>', `log level on stderr (${LOG_LEVELS.join(', ')}); info logs one line per sync transition`, oneOf(LOG_LEVELS), 'info')
    .action(async (opts: WorkerCliOptions) => {
      const { config, sandbox } = await providerSource(opts);
      const configured = config.store && 'postgres' in config.store ? config.store.postgres : undefined;
      const databaseUrl = opts.databaseUrl ?? configured?.url ?? process.env.DATABASE_URL;
      if (!databaseUrl) throw new UsageError('banksync worker needs PostgreSQL: --database-url, a config with a postgres store, or $DATABASE_URL');
      const { startWorker } = await loadFor('worker', () => import('../../dispatch/worker.js'));
      // The metrics server needs the OpenTelemetry SDK and Prometheus exporter: a missing one is named here.
      if (opts.metricsPort !== undefined) await loadFor('worker --metrics-port', () => import('../../dispatch/metrics-server.js'));
      const logger = createLogger({ level: opts.logLevel, destination: process.stderr });
      const worker = await startWorker({
        databaseUrl,
        schema: opts.schema ?? configured?.schema ?? 'banksync',
        concurrency: opts.concurrency,
        providers: adaptersFromConfig(config),
        ...(sandbox ? {} : { policy: config.policy, webhookSecrets: config.webhookSecrets, ...(config.retention ? { retention: config.retention } : {}) }),
        ...(config.outgoingWebhook ? { outgoingWebhook: config.outgoingWebhook } : {}),
        logger,
        ...(opts.autosync ? {} : { autosyncCron: false as const }),
        ...(opts.metricsPort !== undefined ? { metricsPort: opts.metricsPort, ...(opts.metricsHost ? { metricsHost: opts.metricsHost } : {}) } : {}),
      });
      logger.info({ processId: worker.processId, concurrency: opts.concurrency, autosync: opts.autosync, metricsUrl: worker.metricsUrl }, 'worker started');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await worker.stop();
    });
}
