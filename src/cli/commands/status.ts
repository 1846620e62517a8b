import type { Command } from 'commander';
import { loadConfig } from '../../config/index.js';
import type { Store } from '../../stores/types.js';
import { stateName } from '../../engine/view.js';
import { positiveInt, postgresUrl } from '../options.js';
import { openStore } from '../peers.js';

export const DEFAULT_STATUS_DB = '.banksync/banksync.sqlite';

/** A sync still active after this long is reported stale: the machine's own deadline is 60 minutes. */
export const DEFAULT_STALE_MINUTES = 60;

export interface StatusReport {
  counts: Record<string, number>;
  oldestActive: { syncId: string; connectionId: string; state: string; ageMs: number } | null;
  stale: { syncId: string; connectionId: string; state: string; ageMs: number }[];
}

export async function statusReport(store: Store, now: number, staleAfterMs: number): Promise<StatusReport> {
  const counts = await store.countByStatus();
  const active = await store.listSyncs({ active: true });
  const rows = active
    .map((s) => ({ syncId: s.syncId, connectionId: s.connectionId, state: stateName((s.snapshot as { value?: unknown } | null)?.value ?? s.status) || s.status, ageMs: now - s.createdAt }))
    .sort((a, b) => b.ageMs - a.ageMs);
  return { counts, oldestActive: rows[0] ?? null, stale: rows.filter((r) => r.ageMs > staleAfterMs) };
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('counts of syncs per state, the oldest active sync, and syncs active past the stale limit')
    .option('--config <file>', "banksync.config.json: report on its store")
    .option('--database-url <url>', 'PostgreSQL connection string (scale-out store)', postgresUrl)
    .option('--schema <name>', 'PostgreSQL schema', 'banksync')
    .option('--db <path>', `SQLite file (embedded store; default ${DEFAULT_STATUS_DB})`)
    .option('--stale-after-minutes <n>', 'report active syncs older than this', positiveInt, DEFAULT_STALE_MINUTES)
    .option('--json', 'print JSON')
    .action(async (opts: { config?: string; databaseUrl?: string; schema: string; db?: string; staleAfterMinutes: number; json?: boolean }) => {
      const configured = opts.config ? (await loadConfig(opts.config)).store : undefined;
      const store: Store = opts.databaseUrl
        ? await openStore('status', undefined, { postgres: { url: opts.databaseUrl, schema: opts.schema } })
        : await openStore('status', opts.db ?? (configured ? undefined : DEFAULT_STATUS_DB), configured);
      try {
        const report = await statusReport(store, Date.now(), opts.staleAfterMinutes * 60_000);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        const states = Object.entries(report.counts);
        process.stdout.write(states.length ? states.map(([state, n]) => `${state.padEnd(12)} ${n}`).join('\n') + '\n' : 'no syncs\n');
        const oldest = report.oldestActive;
        process.stdout.write(oldest ? `oldest active: ${oldest.syncId} (${oldest.connectionId}) ${oldest.state}, ${Math.round(oldest.ageMs / 1000)} s\n` : 'no active sync\n');
        process.stdout.write(`stale (active > ${opts.staleAfterMinutes} min): ${report.stale.length}\n`);
        for (const s of report.stale) process.stdout.write(`  ${s.syncId}  ${s.connectionId}  ${s.state}  ${Math.round(s.ageMs / 60_000)} min\n`);
      } finally {
        await store.close();
      }
    });
}
