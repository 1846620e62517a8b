import type { Command } from 'commander';
import { adaptersFromConfig } from '../../config/index.js';
import { createLogger } from '../../engine/logger.js';
import { httpUrl, positiveInt, postgresUrl } from '../options.js';
import { loadFor, providerSource, UsageError } from '../peers.js';

interface WorkerCliOptions {
  databaseUrl?: string;
  config?: string;
  sandboxUrl?: string;
  token?: string;
  concurrency: number;
  schema?: string;
  autosync: boolean;
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
    .action(async (opts: WorkerCliOptions) => {
      const { config, sandbox } = await providerSource(opts);
      const configured = config.store && 'postgres' in config.store ? config.store.postgres : undefined;
      const databaseUrl = opts.databaseUrl ?? configured?.url ?? process.env.DATABASE_URL;
      if (!databaseUrl) throw new UsageError('banksync worker needs PostgreSQL: --database-url, a config with a postgres store, or $DATABASE_URL');
      const { startWorker } = await loadFor('worker', () => import('../../dispatch/worker.js'));
      const logger = createLogger({ level: 'info', destination: process.stderr });
      const worker = await startWorker({
        databaseUrl,
        schema: opts.schema ?? configured?.schema ?? 'banksync',
        concurrency: opts.concurrency,
        providers: adaptersFromConfig(config),
        ...(sandbox ? {} : { policy: config.policy, webhookSecrets: config.webhookSecrets }),
        ...(config.outgoingWebhook ? { outgoingWebhook: config.outgoingWebhook } : {}),
        logger,
        ...(opts.autosync ? {} : { autosyncCron: false as const }),
      });
      logger.info({ processId: worker.processId, concurrency: opts.concurrency, autosync: opts.autosync }, 'worker started');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await worker.stop();
    });
}
