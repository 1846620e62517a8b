import type { Command } from 'commander';
import { startWorker } from '../../dispatch/worker.js';
import { createLogger } from '../../engine/logger.js';
import { sandboxAdapters } from '../../providers/registry.js';
import { httpUrl, positiveInt, postgresUrl } from '../options.js';

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('run a scale-out worker process: graphile-worker jobs on PostgreSQL (start several, on several machines)')
    .requiredOption('--database-url <url>', 'PostgreSQL connection string (or DATABASE_URL)', postgresUrl, process.env.DATABASE_URL)
    .requiredOption('--sandbox-url <url>', 'base URL of the provider sandbox the adapters talk to', httpUrl)
    .option('--token <token>', 'provider API token (default: BANKSYNC_TOKEN)', process.env.BANKSYNC_TOKEN ?? 'sandbox-token')
    .option('--concurrency <n>', 'jobs at once in this process', positiveInt, 4)
    .option('--schema <name>', 'PostgreSQL schema of banksync tables', 'banksync')
    .option('--no-autosync', 'do not run the daily autosync crontab in this worker')
    .action(async (opts: { databaseUrl: string; sandboxUrl: string; token: string; concurrency: number; schema: string; autosync: boolean }) => {
      const logger = createLogger({ level: 'info', destination: process.stderr });
      const worker = await startWorker({
        databaseUrl: opts.databaseUrl,
        schema: opts.schema,
        concurrency: opts.concurrency,
        providers: sandboxAdapters(opts.sandboxUrl, opts.token),
        logger,
        ...(opts.autosync ? {} : { autosyncCron: false as const }),
      });
      logger.info({ processId: worker.processId, concurrency: opts.concurrency }, 'worker started');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await worker.stop();
    });
}
