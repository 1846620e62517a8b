import type { Command } from 'commander';
import { port } from '../options.js';
import { loadFor } from '../peers.js';

export function registerSandbox(program: Command): void {
  program
    .command('sandbox')
    .description('start the provider sandbox alone (every provider family, scripted scenarios) until interrupted')
    .option('--port <n>', 'port to listen on (default: random)', port)
    .option('--webhook-url <url>', 'where the sandbox delivers webhooks')
    .action(async (opts: { port?: number; webhookUrl?: string }) => {
      const { startSandbox } = await loadFor('sandbox', () => import('../../sandbox/server.js'));
      const sandbox = await startSandbox({ ...(opts.webhookUrl ? { webhookUrl: opts.webhookUrl } : {}), ...(opts.port ? { port: opts.port } : {}) });
      process.stdout.write(`sandbox listening on ${sandbox.url}\n`);
      for (const [name, stats] of Object.entries(sandbox.stats())) process.stdout.write(`  ${name}: ${sandbox.url}/${name} (${Object.keys(stats.connections).length} connections)\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await sandbox.close();
    });
}
