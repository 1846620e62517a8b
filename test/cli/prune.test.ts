/**
 * `banksync prune --config F [--dry-run]`, run as a process against a SQLite store: counts first (nothing
 * changes), then deletes only finished syncs past the configured retention; active syncs and the newest sync
 * of each connection stay. A bad retention value is a usage error naming the field.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/stores/sqlite.js';
import { DAY, syncAt } from '../support/retention.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'src/cli/main.ts');
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

function cli(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}


describe('banksync prune', () => {
  it('--dry-run counts and changes nothing; then deletes only finished syncs past retention', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'banksync-prune-'));
    const db = join(dir, 'store.sqlite');
    const now = Date.now();
    const store = SqliteStore.open(db);
    await syncAt(store, 'old-1', 'a', now - 40 * DAY);
    await syncAt(store, 'old-2', 'a', now - 35 * DAY);
    await syncAt(store, 'young', 'a', now - 5 * DAY); // newest of a, and within retention
    await syncAt(store, 'old-b', 'b', now - 40 * DAY);
    await syncAt(store, 'active-b', 'b', now - 39 * DAY, true); // active: never pruned
    await syncAt(store, 'only-c', 'c', now - 60 * DAY); // the newest (only) sync of c
    await store.close();
    const config = join(dir, 'banksync.config.json');
    writeFileSync(config, JSON.stringify({ providers: {}, store: { sqlite: db }, retention: { finishedSyncs: '30d', batchSize: 1 } }));

    const dry = await cli(['prune', '--config', config, '--dry-run', '--json'], dir);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, syncs: 3, transitions: 3, effects: 3 });
    const listed = async () => {
      const s = SqliteStore.open(db);
      try {
        return (await s.listSyncs()).map((x) => x.syncId).sort();
      } finally {
        await s.close();
      }
    };
    expect(await listed()).toEqual(['active-b', 'old-1', 'old-2', 'old-b', 'only-c', 'young']);

    const real = await cli(['prune', '--config', config], dir);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toMatch(/deleted: 3 finished syncs \(older than 30 days\)/);
    expect(await listed()).toEqual(['active-b', 'only-c', 'young']);
    const s = SqliteStore.open(db);
    try {
      expect(await s.listTimers('active-b')).toHaveLength(1);
      expect(await s.listEffects('active-b')).toHaveLength(1);
      expect(await s.listTransitions('old-1')).toEqual([]);
    } finally {
      await s.close();
    }
    // nothing left to do
    expect(JSON.parse((await cli(['prune', '--config', config, '--json'], dir)).stdout)).toMatchObject({ syncs: 0, complete: true });
  });

  it('a retention shorter than an hour or not a duration is a usage error naming the field, and deletes nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'banksync-prune-'));
    const config = join(dir, 'banksync.config.json');
    for (const value of ['10m', 'soon', '0d']) {
      writeFileSync(config, JSON.stringify({ providers: {}, store: { sqlite: join(dir, 'store.sqlite') }, retention: { transitions: value } }));
      const { code, stdout, stderr } = await cli(['prune', '--config', config], dir);
      expect(code).toBe(2);
      expect(stdout + stderr).toContain('retention.transitions');
    }
    expect((await cli(['prune'], dir)).code).toBe(2);
  });
});
