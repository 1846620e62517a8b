/**
 * Child-process entry for one benchmark scenario: `node --expose-gc --import tsx bench/worker.ts '<json>'`.
 * Prints exactly one `RESULT <json>` line on success.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resume, type ResumeOptions } from './resume.js';
import { scaleout, type ScaleoutOptions } from './scaleout.js';
import { memory, throughput, walPages, type MemoryOptions, type ThroughputOptions, type WalPagesOptions } from './scenarios.js';

export type WorkerJob =
  | ({ kind: 'throughput' } & Omit<ThroughputOptions, 'dir'>)
  | ({ kind: 'memory' } & Omit<MemoryOptions, 'dir'>)
  | ({ kind: 'resume' } & Omit<ResumeOptions, 'dir'>)
  | ({ kind: 'wal-pages' } & Omit<WalPagesOptions, 'dir'>)
  | ({ kind: 'scaleout' } & ScaleoutOptions);

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '') as WorkerJob;
  const dir = mkdtempSync(join(tmpdir(), 'banksync-bench-'));
  // A test runner or Ctrl-C may end the run early: still remove the database files.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
  try {
    const result =
      job.kind === 'throughput'
        ? await throughput({ ...job, dir })
        : job.kind === 'memory'
          ? await memory({ ...job, dir })
          : job.kind === 'resume'
            ? await resume({ ...job, dir })
            : job.kind === 'wal-pages'
              ? await walPages({ ...job, dir })
              : await scaleout(job);
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
