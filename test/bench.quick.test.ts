/**
 * Smoke test for the benchmark suite: `npm run bench -- --quick` must run to completion and print every section
 * with a baseline and a ratio on every figure. Speed is deliberately not asserted: benchmarks measure, they do not gate.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { postgresAvailable } from './support/postgres.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function runQuickBench(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const child = spawn(npm, ['run', '--silent', 'bench', '--', '--quick'], { cwd: root, env: process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('npm run bench -- --quick', () => {
  it('exits 0 and prints every section, each figure with its baseline and a ratio', { timeout: 900_000 }, async () => {
    const { code, stdout, stderr } = await runQuickBench();
    expect(code, stderr).toBe(0);

    for (const heading of [
      '## 1. Engine overhead per event',
      '## 2. Throughput',
      '## 2a. Where the bytes written go',
      '## 3. Memory',
      '## 4. Scaling curve',
      '## 5. Resume time',
      '## 6. Scale-out',
    ]) {
      expect(stdout).toContain(heading);
    }
    expect(stdout).toMatch(/Machine: .+ × \d+ logical CPUs, [\d.]+ GiB RAM/);
    expect(stdout).toMatch(/Node v\d+/);
    expect(stdout).toContain('npm run bench -- --quick');
    expect(stdout).toMatch(/within 3x of the bare actor": \*\*(MET|NOT MET)\*\*/);

    // Every figure is a table row: `| label | value (baseline: value, ratio Nx) |`. The only figures without a
    // baseline are the scale-out rows when no PostgreSQL is reachable (the same check as the Postgres tests').
    const rows = stdout
      .split('\n')
      .filter((line) => line.startsWith('| ') && !line.startsWith('| Figure') && !line.startsWith('| Connections'));
    expect(rows.length).toBeGreaterThanOrEqual(25);
    const scaleoutRows = rows.filter((row) => /^\| (syncs\/s, \d worker process|scale-out syncs\/s)/.test(row));
    expect(scaleoutRows.length).toBeGreaterThanOrEqual(4);
    if (!postgresAvailable) for (const row of scaleoutRows) expect(row).toContain('n/a (no PostgreSQL)');
    for (const workers of [1, 2, 4]) expect(stdout).toMatch(new RegExp(`^\\| syncs/s, ${workers} worker process`, 'm'));
    for (const row of rows) {
      if (!postgresAvailable && scaleoutRows.includes(row)) continue;
      const figures = row.match(/\([^()]*: [^()]*, ratio -?[\d.e+-]+x\)/g) ?? [];
      expect(figures.length, `figure without baseline/ratio: ${row}`).toBeGreaterThan(0);
    }
    // Section 4 has one row per size (quick: 100 and 1,000 connections), at least three figures each.
    const scaling = rows.filter((row) => /^\| [\d,]+ \|/.test(row));
    expect(scaling.map((row) => row.split('|')[1]!.trim())).toEqual(['100', '1,000']);
    for (const row of scaling) expect(row.match(/ratio -?[\d.e+-]+x/g)?.length ?? 0).toBeGreaterThanOrEqual(3);
  });
});
