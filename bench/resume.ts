/**
 * Resume time (issue 14, point 3): how long `engine.start()` takes to bring back K persisted active syncs
 * (every one waiting in AWAIT_AUTH, as after a restart with users still to answer). Same process, same file,
 * same run, two baselines on the same rows:
 * - one plain `SELECT sync_id, snapshot FROM syncs WHERE active = 1` (what reading them costs at least);
 * - restoring a bare XState actor from each of those snapshots (`createActor(machine, { snapshot }).start()`,
 *   no store, no inspection): what resuming costs without the engine.
 * Each side opens its own connection to the file (a cold SQLite page cache; the OS cache is warm for all).
 */
import { join } from 'node:path';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { createActor } from 'xstate';
import { createEngine } from '../src/engine/engine.js';
import { SqliteStore } from '../src/stores/sqlite.js';
import { VirtualClock } from './clock.js';
import { BENCH_PROVIDER, ZeroLatencyProvider } from './provider.js';
import { BENCH_POLICY, bareMachine, driveEngine, engineRig, settledGc } from './scenarios.js';

export interface ResumeOptions {
  syncs: number;
  concurrency: number;
  dir: string;
}

export interface ResumeResult {
  syncs: number;
  /** `engine.start()` wall time and what it reported. */
  startMs: number;
  startCpuMs: number;
  resumed: number;
  /** Plain SELECT of the same active rows (id + snapshot), parsed nothing. */
  selectMs: number;
  /** SELECT + JSON.parse + createActor(machine, { snapshot }).start() for each row. */
  bareRestoreMs: number;
  bareRestoreCpuMs: number;
  setupMs: number;
  loadAvg: number;
}

const TEMPLATES = 50;
/** Every table whose rows belong to one sync (or its connection): copied with the ids replaced. */
const PER_SYNC_TABLES = ['syncs', 'timers', 'effects', 'transitions', 'connections'] as const;

/**
 * Copies the rows of the active syncs already in the file (and their connections) `copies` times in all,
 * cycling through them, with the sync id and connection id replaced in every text column (ids, effect keys
 * and the snapshot JSON alike): each copy is a distinct sync waiting in AWAIT_AUTH on its own connection.
 */
function cloneSyncs(path: string, copies: number): void {
  if (copies <= 0) return;
  const store = SqliteStore.open(path);
  const db = store.db;
  const templates = db.prepare('SELECT sync_id, tenant_id, connection_id FROM syncs WHERE active = 1 ORDER BY sync_id').all() as {
    sync_id: string;
    tenant_id: string;
    connection_id: string;
  }[];
  const rowsOf = (table: string, t: (typeof templates)[number]) =>
    table === 'connections'
      ? db.prepare('SELECT * FROM connections WHERE tenant_id = ? AND connection_id = ?').all(t.tenant_id, t.connection_id)
      : db.prepare(`SELECT * FROM ${table} WHERE sync_id = ?`).all(t.sync_id);
  const source = templates.map((t) => ({ t, tables: PER_SYNC_TABLES.map((table) => ({ table, rows: rowsOf(table, t) as Record<string, unknown>[] })) }));
  const inserts = new Map(
    PER_SYNC_TABLES.map((table) => {
      const columns = (db.prepare(`SELECT name FROM pragma_table_info('${table}')`).pluck().all() as string[]);
      return [table, db.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`)];
    }),
  );
  db.transaction(() => {
    for (let i = 0; i < copies; i++) {
      const { t, tables } = source[i % source.length]!;
      const syncId = `${t.sync_id}~${i}`;
      const connectionId = `${t.connection_id}~${i}`;
      const swap = (value: unknown) =>
        typeof value === 'string' ? value.split(t.sync_id).join(syncId).split(t.connection_id).join(connectionId) : value;
      for (const { table, rows } of tables) {
        for (const row of rows) inserts.get(table)!.run(Object.fromEntries(Object.entries(row).map(([k, v]) => [k, swap(v)])));
      }
    }
  })();
  db.close();
}

/** Writes `<dir>/resume.db` with `syncs` active syncs waiting in AWAIT_AUTH; returns its path. */
export async function prepareResumeDb(dir: string, syncs: number, concurrency: number): Promise<string> {
  const rig = engineRig('engine-sqlite', dir, 'resume', false);
  await driveEngine(rig, Math.min(syncs, TEMPLATES), concurrency, 'resume', false);
  await rig.engine.stop();
  await rig.store.close();
  const path = join(dir, 'resume.db');
  cloneSyncs(path, syncs - Math.min(syncs, TEMPLATES));
  return path;
}

const cpuMs = (since: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
};

export async function resume(options: ResumeOptions): Promise<ResumeResult> {
  const { syncs, concurrency, dir } = options;
  // Setup: TEMPLATES syncs driven through the engine to AWAIT_AUTH and left there (engine stopped), then
  // their rows copied under new ids up to K (driving 100,000 syncs would take minutes of the run).
  const setupStarted = performance.now();
  const path = await prepareResumeDb(dir, syncs, concurrency);
  const setupMs = performance.now() - setupStarted;
  await settledGc();

  // Baseline 1: one plain SELECT of the same rows.
  const plain = SqliteStore.open(path);
  const t0 = performance.now();
  const rows = plain.db.prepare('SELECT sync_id, snapshot FROM syncs WHERE active = 1').all() as { sync_id: string; snapshot: string }[];
  const selectMs = performance.now() - t0;
  plain.db.close();
  if (rows.length !== syncs) throw new Error(`resume: ${rows.length} active rows, expected ${syncs}`);
  await settledGc();

  // Baseline 2: bare actors restored from the same snapshots.
  const bareStore = SqliteStore.open(path);
  const clock = new VirtualClock();
  const machine = bareMachine(clock, new ZeroLatencyProvider(clock));
  const cpu1 = process.cpuUsage();
  const t1 = performance.now();
  const actors = [];
  const query = 'SELECT sync_id, connection_id, provider, scope, snapshot FROM syncs WHERE active = 1';
  type Row = { sync_id: string; connection_id: string; provider: string; scope: string; snapshot: string };
  for (const row of bareStore.db.prepare(query).iterate() as Iterable<Row>) {
    // The input is what the engine hands a restored actor too (XState ignores it when a snapshot is given).
    const input = { syncId: row.sync_id, connectionId: row.connection_id, provider: row.provider, scope: row.scope as 'TRANSACTIONS', policy: BENCH_POLICY };
    const actor = createActor(machine, { snapshot: JSON.parse(row.snapshot), input, clock });
    actor.start();
    actors.push(actor);
  }
  const bareRestoreMs = performance.now() - t1;
  const bareRestoreCpuMs = cpuMs(cpu1);
  const waiting = actors.filter((a) => (a.getSnapshot().value as { AWAIT_AUTH?: string }).AWAIT_AUTH !== undefined).length;
  if (waiting !== syncs) throw new Error(`resume: ${waiting} bare actors restored into AWAIT_AUTH, expected ${syncs}`);
  for (const actor of actors) actor.stop();
  actors.length = 0;
  bareStore.db.close();
  await settledGc();

  // The engine: a fresh process-like start on the same file.
  const store = SqliteStore.open(path);
  const engineClock = new VirtualClock();
  const engine = createEngine({ store, providers: { [BENCH_PROVIDER]: new ZeroLatencyProvider(engineClock) }, clock: engineClock, policy: BENCH_POLICY });
  const loadAvg = os.loadavg()[0]!;
  const cpu2 = process.cpuUsage();
  const t2 = performance.now();
  const { resumed } = await engine.start();
  const startMs = performance.now() - t2;
  const startCpuMs = cpuMs(cpu2);
  if (resumed !== syncs) throw new Error(`resume: engine.start() resumed ${resumed}, expected ${syncs}`);
  const stillWaiting = (await store.countByStatus())['AWAIT_AUTH'] ?? 0;
  if (stillWaiting !== syncs) throw new Error(`resume: ${stillWaiting} syncs in AWAIT_AUTH after start(), expected ${syncs}`);
  await engine.stop();
  await store.close();
  return { syncs, startMs, startCpuMs, resumed, selectMs, bareRestoreMs, bareRestoreCpuMs, setupMs, loadAvg };
}
