import type { Command } from 'commander';
import { createLogger } from '../../engine/logger.js';
import type { DemoResult } from '../demo/run.js';
import { openInspector } from '../inspect.js';
import { loadFor } from '../peers.js';

/** One line per sync, redrawn in place on a terminal; one line per transition otherwise. */
function progressPrinter(out: NodeJS.WriteStream) {
  const lines = new Map<string, string>();
  let drawn = 0;
  return (key: string, text: string) => {
    if (!out.isTTY) {
      out.write(`${key.padEnd(30)} ${text}\n`);
      return;
    }
    lines.set(key, text);
    if (drawn > 0) out.write(`\x1b[${drawn}A`);
    for (const [k, t] of lines) out.write(`\x1b[2K${k.padEnd(30)} ${t}\n`);
    drawn = lines.size;
  };
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run every sandbox scenario of every provider through the engine (SQLite store, real HTTP) and print a table')
    .option('--db <path>', 'SQLite file to use (default: a fresh file in a temp dir)')
    .option('--provider <name>', 'only this provider family')
    .option('--scenario <name>', 'only this scenario')
    .option('--inspect [port]', 'stream actor events to the Stately inspector (local bridge, default port 8080)')
    .option('--verbose', 'log engine activity (JSON, secrets redacted) to stderr')
    .option('--json', 'print the results as JSON on stdout; progress goes to stderr')
    .action(async (opts: { db?: string; provider?: string; scenario?: string; verbose?: boolean; inspect?: boolean | string; json?: boolean }) => {
      const { formatTable, runDemo } = await loadFor('demo', () => import('../demo/run.js'));
      const print = progressPrinter(opts.json ? process.stderr : process.stdout);
      const inspector = await openInspector(opts.inspect);
      const started = Date.now();
      const results: DemoResult[] = await runDemo({
        ...(opts.db ? { dbPath: opts.db } : {}),
        ...(opts.provider ? { provider: opts.provider } : {}),
        ...(opts.scenario ? { scenario: opts.scenario } : {}),
        ...(opts.verbose ? { logger: createLogger({ level: 'debug', destination: process.stderr }) } : {}),
        onProgress: (c, view, n) => print(`${c.provider}/${c.scenario}`, `${view.state.padEnd(24)} (${n} transitions)`),
        ...(inspector ? { inspect: inspector.inspect } : {}),
      });
      await inspector?.stop();
      if (results.length === 0) {
        process.stderr.write('banksync demo: no scenario matches the given --provider/--scenario\n');
        process.exitCode = 2;
        return;
      }
      const failed = results.filter((r) => !r.ok);
      process.exitCode = failed.length ? 1 : 0;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ scenarios: results.length, asScripted: results.length - failed.length, results })}\n`);
        return;
      }
      process.stdout.write(`\n${formatTable(results)}\n\n`);
      process.stdout.write(
        `${results.length - failed.length}/${results.length} scenarios ended as scripted in ${Date.now() - started} ms` +
          (failed.length ? `; unexpected: ${failed.map((r) => `${r.provider}/${r.scenario}`).join(', ')}` : '') +
          '\n',
      );
    });
}
