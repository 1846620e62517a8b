import type { Command } from 'commander';
import { loadConfig } from '../../config/index.js';
import { DEFAULT_RETENTION, pruneStore, type PruneReport } from '../../engine/retention.js';
import type { Store } from '../../stores/types.js';
import { positiveInt } from '../options.js';
import { openStore } from '../peers.js';

interface PruneCliOptions {
  config: string;
  dryRun?: boolean;
  batchSize?: number;
  json?: boolean;
}

const DAY_MS = 24 * 60 * 60_000;

export function registerPrune(program: Command): void {
  program
    .command('prune')
    .description("delete finished syncs, transitions and effects past the configured retention, in bounded batches (active syncs are never touched)")
    .requiredOption('--config <file>', 'banksync.config.json: its store and its `retention` section')
    .option('--dry-run', 'only count what would be deleted; change nothing')
    .option('--batch-size <n>', 'rows per kind per transaction (default: the config, else 500)', positiveInt)
    .option('--json', 'print JSON')
    .action(async (opts: PruneCliOptions) => {
      const config = await loadConfig(opts.config);
      const store: Store = await openStore('prune', undefined, config.store);
      let report: PruneReport;
      try {
        const { cron: _cron, ...retention } = config.retention ?? {};
        report = await pruneStore(store, { ...DEFAULT_RETENTION, ...retention }, { dryRun: opts.dryRun ?? false, ...(opts.batchSize ? { batchSize: opts.batchSize } : {}) });
      } finally {
        await store.close();
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const verb = report.dryRun ? 'would delete' : 'deleted';
      const days = (cutoff: number | undefined) => (cutoff === undefined ? '-' : `${Math.round((Date.now() - cutoff) / DAY_MS)} days`);
      process.stdout.write(
        `${verb}: ${report.syncs} finished syncs (older than ${days(report.cutoffs.finishedSyncs)}), ${report.transitions} transitions, ` +
          `${report.effects} effects, ${report.timers} timers${report.events !== undefined ? `, ${report.events} events` : ''}\n`,
      );
      if (!report.complete) process.stdout.write(`more is past retention than ${report.batches} batches hold: run again\n`);
    });
}
