/**
 * `banksync viz [--out dir] [--check]`: writes the diagrams of every machine in machines/index.ts
 * (`<name>.mmd`, `<name>.svg` overview, `<name>.<state path>.svg` per composite state, `<name>.stately.ts`);
 * `--check` writes nothing and exits 1 listing stale files.
 */
import { existsSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_VIZ_DIR, writeVisualizations } from '../../viz/index.js';

export function registerViz(program: Command): void {
  program
    .command('viz')
    .description('generate the machine diagrams (Mermaid, SVG, Stately import code) into visualizations/')
    .option('--out <dir>', 'output directory (default: the repository\'s visualizations/; installed: ./visualizations)')
    .option('--check', 'write nothing; exit 1 listing files that are missing or out of date')
    .action(async (opts: { out?: string; check?: boolean }) => {
      // An installed package ships no diagrams: write them where the user is, not into node_modules.
      const outDir = opts.out ?? (existsSync(DEFAULT_VIZ_DIR) ? DEFAULT_VIZ_DIR : resolve('visualizations'));
      const shown = relative(process.cwd(), outDir) || '.';
      const report = await writeVisualizations(outDir, { check: opts.check === true });
      if (opts.check) {
        if (report.stale.length === 0 && report.orphans.length === 0) {
          process.stdout.write(`${report.fresh.length} diagram files in ${shown} are up to date\n`);
          return;
        }
        for (const file of report.stale) process.stderr.write(`stale: ${shown}/${file}\n`);
        for (const file of report.orphans) process.stderr.write(`orphan (machine no longer registered): ${shown}/${file}\n`);
        process.stderr.write('run `banksync viz` to regenerate them\n');
        process.exitCode = 1;
        return;
      }
      for (const file of report.stale) process.stdout.write(`wrote ${shown}/${file}\n`);
      for (const file of report.orphans) process.stdout.write(`removed ${shown}/${file}\n`);
      process.stdout.write(`${report.stale.length} written, ${report.orphans.length} removed, ${report.fresh.length} unchanged\n`);
    });
}
