import Database from 'better-sqlite3';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StorageError } from '../../src/stores/errors.js';
import { SQLITE_MIGRATIONS, SqliteStore } from '../../src/stores/sqlite.js';
import { StaleWriteError, type Store } from '../../src/stores/types.js';
import { storeConformanceSuite } from './conformance.js';

storeConformanceSuite('sqlite :memory:', async () => SqliteStore.open(':memory:'));

const fileStoreDirs = new WeakMap<Store, string>();
storeConformanceSuite(
  'sqlite file (WAL)',
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'banksync-sqlite-'));
    const store = SqliteStore.open(join(dir, 'store.sqlite'));
    fileStoreDirs.set(store, dir);
    return store;
  },
  async (store) => {
    await store.close();
    const dir = fileStoreDirs.get(store);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  },
);

describe('SqliteStore specifics', () => {
  let dir: string;
  let path: string;
  const open: SqliteStore[] = [];
  const openStore = (): SqliteStore => {
    const s = SqliteStore.open(path);
    open.push(s);
    return s;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'banksync-sqlite-'));
    path = join(dir, 'banksync.sqlite');
  });

  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  const newSync = (syncId: string, connectionId = 'conn-1') => ({
    syncId,
    tenantId: 'tenant-1',
    connectionId,
    provider: 'finx',
    scope: 'TRANSACTIONS' as const,
    createdAt: 1_000,
  });

  it('has kind "sqlite"', () => {
    expect(openStore().kind).toBe('sqlite');
  });

  it('configures WAL, synchronous=NORMAL, busy_timeout and foreign keys on a file database', () => {
    const store = openStore();
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(store.db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    expect(store.db.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
  });

  it('records migrations once and does not re-run them on reopen', async () => {
    const first = openStore();
    const versions = () =>
      first.db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all() as number[];
    const expected = SQLITE_MIGRATIONS.map((m) => m.version);
    expect(versions()).toEqual(expected);
    const second = openStore();
    await second.close();
    expect(versions()).toEqual(expected);
  });

  it('creates the expected tables and indexes', () => {
    const store = openStore();
    const names = store.db
      .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'")
      .pluck()
      .all() as string[];
    expect(names).toEqual(
      expect.arrayContaining([
        'schema_migrations',
        'syncs',
        'timers',
        'effects',
        'transitions',
        'syncs_one_active_per_connection',
        'syncs_provider_ref',
        'timers_due_at',
      ]),
    );
    const partial = store.db
      .prepare("SELECT sql FROM sqlite_master WHERE name = 'syncs_one_active_per_connection'")
      .pluck()
      .get() as string;
    expect(partial).toMatch(/UNIQUE INDEX[\s\S]*WHERE active = 1/);
  });

  it('enforces single-flight in the database itself (partial unique index)', async () => {
    const store = openStore();
    await store.createSync(newSync('s1'));
    const insert = store.db.prepare(
      `INSERT INTO syncs (sync_id, tenant_id, connection_id, provider, scope, status, active, version, created_at, updated_at)
       VALUES (?, 'tenant-1', 'conn-1', 'finx', 'TRANSACTIONS', 'QUEUED', ?, 0, 1, 1)`,
    );
    expect(() => insert.run('s2', 1)).toThrow(/UNIQUE constraint failed/);
    // Inactive rows for the same connection are fine.
    expect(() => insert.run('s3', 0)).not.toThrow();
    expect(() => insert.run('s4', 0)).not.toThrow();
  });

  it('rejects a duplicate syncId for a different connection', async () => {
    const store = openStore();
    await store.createSync(newSync('dup', 'conn-1'));
    await expect(store.createSync(newSync('dup', 'conn-2'))).rejects.toThrow(/constraint/i);
    expect(await store.findActiveSync('tenant-1', 'conn-2')).toBeNull();
  });

  it('keeps single-flight and fencing across two connections to the same file', async () => {
    const a = openStore();
    const b = openStore();
    const first = await a.createSync(newSync('s1'));
    const second = await b.createSync(newSync('s2'));
    expect(first.created).toBe(true);
    expect(second).toEqual({ sync: first.sync, created: false });

    const base = {
      syncId: 's1',
      status: 'RUNNING' as const,
      active: true,
      providerRef: null,
      snapshot: null,
      timers: [],
      transitions: [],
      pendingEffects: [],
      at: 2_000,
    };
    expect(await a.commit({ ...base, expectedVersion: 0 })).toBe(1);
    await expect(b.commit({ ...base, expectedVersion: 0 })).rejects.toBeInstanceOf(StaleWriteError);
    expect(await b.commit({ ...base, expectedVersion: 1 })).toBe(2);
  });

  it('checkpoints the WAL on a worker thread, never on the writer, and folds it in at close', async () => {
    const store = openStore();
    const onWriter: string[] = [];
    const pragma = store.db.pragma.bind(store.db);
    store.db.pragma = ((source: string, options?: Database.PragmaOptions) => {
      onWriter.push(source);
      return pragma(source, options);
    }) as typeof store.db.pragma;
    const sizeOfDb = () => statSync(path).size;
    const before = sizeOfDb();
    const filler = 'x'.repeat(2_000);
    for (let i = 0; i < 300; i++) {
      const { sync } = await store.createSync(newSync(`s${i}`, `conn-${i}`));
      await store.commit({
        syncId: sync.syncId,
        expectedVersion: 0,
        status: 'RUNNING',
        active: true,
        providerRef: null,
        snapshot: { filler },
        timers: [],
        transitions: [],
        pendingEffects: [],
        at: 2_000,
      });
    }
    // The writes sit in the WAL until a checkpoint copies them into the database file.
    for (let waited = 0; sizeOfDb() === before && waited < 20_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    expect(sizeOfDb()).toBeGreaterThan(before + 300 * 2_000);
    expect(onWriter.filter((p) => p.includes('checkpoint'))).toEqual([]);

    await store.close();
    // The worker's connection closed first, so the writer's close was the last one and removed the WAL.
    expect(existsSync(`${path}-wal`)).toBe(false);
    const reopened = openStore();
    expect((await reopened.getSync('s299'))?.snapshot).toEqual({ filler });
  });

  it('keeps all data across close and reopen', async () => {
    const store = openStore();
    const { sync } = await store.createSync(newSync('s1'));
    await store.commit({
      syncId: sync.syncId,
      expectedVersion: 0,
      status: 'RUNNING',
      active: true,
      providerRef: 'ref-1',
      snapshot: { value: { RUNNING: 'Waiting' }, context: { polls: 2, note: 'überweisung' } },
      timers: [{ syncId: 's1', timerId: 'xstate.after.poll', eventType: 'xstate.after.poll', dueAt: 5_000 }],
      transitions: [
        { from: null, to: 'QUEUED', event: 'xstate.init', at: 1_000 },
        { from: 'QUEUED', to: 'RUNNING.Waiting', event: 'START', at: 1_001 },
      ],
      pendingEffects: [{ effectKey: 's1:poll:1', kind: 'poll' }],
      at: 1_002,
    });
    await store.startEffect('s1:trigger:1', 's1', 'trigger', 1_003);
    await store.finishEffect('s1:trigger:1', 'DONE', { providerRef: 'ref-1' }, 1_004);

    const snapshot = async (s: SqliteStore) => ({
      sync: await s.getSync('s1'),
      timers: await s.listTimers('s1'),
      due: await s.dueTimers(10_000, 10),
      transitions: await s.listTransitions('s1'),
      effects: await s.listEffects('s1'),
      counts: await s.countByStatus(),
      byRef: await s.findSyncByProviderRef('finx', 'ref-1'),
    });
    const before = await snapshot(store);
    expect(before.sync?.version).toBe(1);
    expect(before.effects).toHaveLength(2);
    await store.close();
    expect(store.db.open).toBe(false);
    await store.close(); // idempotent

    const reopened = openStore();
    expect(await snapshot(reopened)).toEqual(before);
    // And the reopened store continues the sequence.
    expect(
      await reopened.commit({
        syncId: 's1',
        expectedVersion: 1,
        status: 'COMPLETED',
        active: false,
        providerRef: 'ref-1',
        snapshot: null,
        timers: [],
        transitions: [{ from: 'RUNNING.Waiting', to: 'COMPLETED', event: 'DONE', at: 1_005 }],
        pendingEffects: [],
        at: 1_005,
      }),
    ).toBe(2);
    expect((await reopened.listTransitions('s1')).map((t) => t.seq)).toEqual([1, 2, 3]);
  });
});

describe('SqliteStore open checks (issue 12, point 6)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'banksync-sqlite-open-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const openError = (path: string): unknown => {
    try {
      SqliteStore.open(path).close();
    } catch (error) {
      return error;
    }
    return null;
  };

  it('refuses a corrupted file at open, worded for the operator', async () => {
    const path = join(dir, 'corrupt.sqlite');
    const store = SqliteStore.open(path);
    for (let i = 0; i < 200; i++) await store.createSync({ syncId: `s${i}`, tenantId: 't', connectionId: `c${i}`, provider: 'finx', scope: 'TRANSACTIONS', createdAt: i });
    await store.close();
    // Garbage over the b-tree pages after the header page.
    const bytes = readFileSync(path);
    for (let at = 4096 + 100; at < bytes.length; at += 7) bytes[at] = (bytes[at]! * 31 + 17) & 0xff;
    writeFileSync(path, bytes);
    const error = openError(path);
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ code: 'STORE_CORRUPT' });
    expect((error as Error).message).toMatch(/restore it from a backup/);
  });

  it('refuses a file that is not an SQLite database', () => {
    const path = join(dir, 'notes.txt');
    writeFileSync(path, 'these are not the pages you are looking for\n'.repeat(200));
    const error = openError(path);
    expect(error).toMatchObject({ code: 'STORE_CORRUPT' });
    expect((error as Error).message).toContain(path);
  });

  it('says which directory is missing instead of "unable to open"', () => {
    const error = openError(join(dir, 'no', 'such', 'dir', 'db.sqlite'));
    expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect((error as Error).message).toMatch(/directory does not exist/);
  });
});
