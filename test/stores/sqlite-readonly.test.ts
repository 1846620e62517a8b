/**
 * Issue 12, point 6: a read-only SQLite database (file or directory) must not surface as SQLite's bare
 * "unable to open database file": it is a StorageError (a BanksyncError) with code STORE_READ_ONLY, worded for
 * the operator. Permissions do not bind root, so as root the store is opened by a child process running as
 * `nobody` (test/stores/fixtures/open-sqlite.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/stores/sqlite.js';

const CHILD = fileURLToPath(new URL('./fixtures/open-sqlite.ts', import.meta.url));
const asRoot = process.getuid?.() === 0;
const nobody = asRoot && spawnSync('id', ['-u', 'nobody']).status === 0;

interface Outcome {
  ok: boolean;
  name?: string;
  code?: string;
  message?: string;
  isBanksyncError?: boolean;
}

describe.runIf(!asRoot || nobody)('a read-only SQLite database', () => {
  const base = mkdtempSync(join(tmpdir(), 'banksync-ro-'));
  chmodSync(base, 0o755);
  // The child's own temp dir (tsx caches compiled files there).
  const childTmp = join(base, 'tmp');
  mkdirSync(childTmp);
  if (asRoot) chownSync(childTmp, Number(execFileSync('id', ['-u', 'nobody']).toString()), Number(execFileSync('id', ['-g', 'nobody']).toString()));
  afterAll(() => {
    for (const dir of ['ro-dir', 'ro-file']) chmodSync(join(base, dir), 0o755);
    rmSync(base, { recursive: true, force: true });
  });

  async function prepare(dir: string): Promise<string> {
    mkdirSync(join(base, dir));
    const path = join(base, dir, 'banksync.sqlite');
    const store = SqliteStore.open(path);
    await store.close();
    return path;
  }

  const open = (path: string): Outcome => {
    const [command, args] = asRoot
      ? ['runuser', ['-u', 'nobody', '--', 'env', `TMPDIR=${childTmp}`, process.execPath, '--import', 'tsx', CHILD, path]]
      : [process.execPath, ['--import', 'tsx', CHILD, path]];
    const out = execFileSync(command as string, args as string[], { cwd: fileURLToPath(new URL('../..', import.meta.url)), encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').at(-1)!) as Outcome;
  };

  it('in a read-only directory (no -wal/-shm can be created): STORE_READ_ONLY naming the fix', async () => {
    const path = await prepare('ro-dir');
    chmodSync(path, 0o444);
    chmodSync(join(base, 'ro-dir'), 0o555);
    const outcome = open(path);
    expect(outcome).toMatchObject({ ok: false, name: 'StorageError', code: 'STORE_READ_ONLY', isBanksyncError: true });
    expect(outcome.message).toContain(path);
    expect(outcome.message).toMatch(/read-only|cannot be opened for writing/);
    expect(outcome.message).toMatch(/writable|must be able to write/);
    expect(outcome.message).not.toMatch(/^unable to open database file$/);
  });

  it('a read-only file in a writable directory: STORE_READ_ONLY, nothing written', async () => {
    const path = await prepare('ro-file');
    chmodSync(path, 0o444);
    if (asRoot) chownSync(join(base, 'ro-file'), Number(execFileSync('id', ['-u', 'nobody']).toString()), 0);
    const outcome = open(path);
    expect(outcome).toMatchObject({ ok: false, name: 'StorageError', code: 'STORE_READ_ONLY', isBanksyncError: true });
    chmodSync(path, 0o644);
    const store = SqliteStore.open(path);
    try {
      expect(await store.listSyncs()).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
