/**
 * Issue 14, point 3: the stale sweep (`listSyncs({ active: true, updatedBefore })`, run by every worker's
 * `recoverStuck`) and the autosync scan (`listConnections({ state: 'IDLE' })`, run by every autosync tick)
 * are index range scans, never a scan of the whole table. The SQL is captured from the store itself (the exact
 * statement and parameters it runs) and explained: `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN (FORMAT JSON)` on
 * PostgreSQL. Without migration 5 (SQLite) / 6 (PostgreSQL) these plans name another index or a table scan.
 * The autosync scan still reads every IDLE connection (eligibility is decided from each one's context).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type Database from 'better-sqlite3';
import { PostgresStore } from '../../src/stores/postgres.js';
import { SqliteStore } from '../../src/stores/sqlite.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

const NOW = 1_800_000_000_000;
const STALE_CUTOFF = NOW - 60_000;
const SYNCS = 4_000;
const CONNECTIONS = 4_000;

/** Most syncs finished, a few active (some of them stale); connections spread over several states. */
const syncRow = (i: number) => ({
  sync_id: `s${String(i).padStart(6, '0')}`,
  tenant_id: `t${i % 7}`,
  connection_id: `c${i}`,
  provider: 'finx',
  scope: 'FULL',
  status: i % 20 === 0 ? 'RUNNING' : 'COMPLETED',
  active: i % 20 === 0,
  created_at: NOW - 10_000_000 + i,
  updated_at: i % 40 === 0 ? NOW - 3_600_000 : NOW - (i % 1000),
});
const CONNECTION_STATES = ['IDLE', 'SYNCING', 'NEEDS_USER', 'DISABLED'] as const;
const connectionRow = (i: number) => ({
  tenant_id: `t${i % 7}`,
  connection_id: `c${i}`,
  provider: 'finx',
  state: i % 10 === 0 ? 'IDLE' : CONNECTION_STATES[1 + (i % 3)]!,
  updated_at: NOW,
});

describe('SQLite query plans', () => {
  let store: SqliteStore;
  const statements: string[] = [];

  beforeAll(() => {
    store = SqliteStore.open(':memory:');
    const db = store.db;
    const insertSync = db.prepare(
      `INSERT INTO syncs (sync_id, tenant_id, connection_id, provider, scope, status, active, provider_ref, snapshot, version, created_at, updated_at)
       VALUES (@sync_id, @tenant_id, @connection_id, @provider, @scope, @status, @active, NULL, NULL, 1, @created_at, @updated_at)`,
    );
    const insertConnection = db.prepare(
      `INSERT INTO connections (tenant_id, connection_id, provider, state, context, version, updated_at)
       VALUES (@tenant_id, @connection_id, @provider, @state, '{}', 1, @updated_at)`,
    );
    db.transaction(() => {
      for (let i = 0; i < SYNCS; i++) insertSync.run({ ...syncRow(i), active: syncRow(i).active ? 1 : 0 });
      for (let i = 0; i < CONNECTIONS; i++) insertConnection.run(connectionRow(i));
    })();
    // Record every statement the store prepares from here on (better-sqlite3 keeps the SQL as `source`).
    const prepare = db.prepare.bind(db);
    db.prepare = ((sql: string) => {
      const stmt = prepare(sql);
      statements.push(stmt.source);
      return stmt;
    }) as Database.Database['prepare'];
  });
  afterAll(() => store.close());

  /** The store's own statement for `run` (its first run: listSyncs caches statements), explained with the same parameters. */
  const explain = async (run: () => Promise<unknown>, params: Record<string, unknown>): Promise<string[]> => {
    statements.length = 0;
    await run();
    expect(statements, 'the store prepared exactly one statement').toHaveLength(1);
    const sql = statements[0]!;
    return (store.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as { detail: string }[]).map((r) => r.detail);
  };

  it('the stale sweep searches the partial index on active syncs by updated_at', async () => {
    const plan = await explain(() => store.listSyncs({ active: true, updatedBefore: STALE_CUTOFF }), { updatedBefore: STALE_CUTOFF, limit: -1 });
    expect(plan.join('\n')).toMatch(/^SEARCH syncs USING INDEX syncs_active_updated_at \(updated_at<\?\)/m);
    expect(plan.some((d) => /^SCAN syncs\b/.test(d)), plan.join('\n')).toBe(false);

    // The rows are right: active and older than the cutoff, nothing else.
    const stale = await store.listSyncs({ active: true, updatedBefore: STALE_CUTOFF });
    const expected = Array.from({ length: SYNCS }, (_, i) => syncRow(i)).filter((r) => r.active && r.updated_at < STALE_CUTOFF);
    expect(expected.length).toBeGreaterThan(0);
    expect(stale.map((s) => s.syncId).sort()).toEqual(expected.map((r) => r.sync_id).sort());
  });

  it('the autosync scan searches connections by state in key order (no full scan, no sort)', async () => {
    const idle = await store.listConnections({ state: 'IDLE' });
    expect(idle).toHaveLength(Array.from({ length: CONNECTIONS }, (_, i) => connectionRow(i)).filter((r) => r.state === 'IDLE').length);
    expect(idle.every((c) => c.state === 'IDLE')).toBe(true);

    const plan = await explain(() => store.listConnections({ state: 'IDLE' }), { state: 'IDLE' });
    expect(plan.join('\n')).toMatch(/^SEARCH connections USING INDEX connections_state_key \(state=\?\)/m);
    expect(plan.some((d) => /^SCAN connections\b/.test(d)), plan.join('\n')).toBe(false);
    expect(plan.some((d) => /TEMP B-TREE/.test(d)), plan.join('\n')).toBe(false);
  });
});

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Plans?: PlanNode[];
}
const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)];

describe.runIf(postgresAvailable)('PostgreSQL query plans', () => {
  let store: PostgresStore;
  let schema: string;

  beforeAll(async () => {
    schema = throwawaySchema('qp');
    store = await PostgresStore.open({ connectionString: DATABASE_URL, schema, max: 2 });
    await store.pool.query(
      `INSERT INTO ${schema}.syncs (sync_id, tenant_id, connection_id, provider, scope, status, active, provider_ref, snapshot, version, created_at, updated_at)
       SELECT r->>'sync_id', r->>'tenant_id', r->>'connection_id', r->>'provider', r->>'scope', r->>'status', (r->>'active')::boolean, NULL, NULL, 1,
              (r->>'created_at')::bigint, (r->>'updated_at')::bigint
         FROM jsonb_array_elements($1::jsonb) AS r`,
      [JSON.stringify(Array.from({ length: SYNCS }, (_, i) => syncRow(i)))],
    );
    await store.pool.query(
      `INSERT INTO ${schema}.connections (tenant_id, connection_id, provider, state, context, version, updated_at)
       SELECT r->>'tenant_id', r->>'connection_id', r->>'provider', r->>'state', '{}'::jsonb, 1, (r->>'updated_at')::bigint
         FROM jsonb_array_elements($1::jsonb) AS r`,
      [JSON.stringify(Array.from({ length: CONNECTIONS }, (_, i) => connectionRow(i)))],
    );
    await store.pool.query(`ANALYZE ${schema}.syncs; ANALYZE ${schema}.connections`);
  });
  afterAll(async () => {
    await store?.dropSchema();
    await store?.close();
  });

  /** Captures the store's query for `run` and explains it with the same parameters, sequential scans disfavoured. */
  const explain = async (run: () => Promise<unknown>): Promise<PlanNode[]> => {
    const seen: { text: string; values: unknown[] }[] = [];
    const original = store.pool.query.bind(store.pool);
    store.pool.query = ((text: string, values?: unknown[]) => {
      seen.push({ text, values: values ?? [] });
      return original(text, values);
    }) as typeof store.pool.query;
    try {
      await run();
    } finally {
      store.pool.query = original;
    }
    expect(seen).toHaveLength(1);
    const client = await store.pool.connect();
    try {
      // A 4,000-row table is small enough that a sequential scan can be cheapest; the question is whether an
      // index can serve the query at all, as it must for 100,000 syncs.
      await client.query('SET enable_seqscan = off');
      const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${seen[0]!.text}`, seen[0]!.values);
      return nodes(rows[0]!['QUERY PLAN'][0].Plan);
    } finally {
      await client.query('RESET enable_seqscan');
      client.release();
    }
  };

  it('the stale sweep is an index range scan on the partial index of active syncs', async () => {
    const stale = await store.listSyncs({ active: true, updatedBefore: STALE_CUTOFF });
    const expected = Array.from({ length: SYNCS }, (_, i) => syncRow(i)).filter((r) => r.active && r.updated_at < STALE_CUTOFF);
    expect(stale.map((s) => s.syncId).sort()).toEqual(expected.map((r) => r.sync_id).sort());

    const plan = await explain(() => store.listSyncs({ active: true, updatedBefore: STALE_CUTOFF }));
    const scans = plan.filter((n) => n['Relation Name'] === 'syncs' || n['Index Name'] !== undefined);
    expect(scans.some((n) => n['Node Type'] === 'Seq Scan'), JSON.stringify(plan)).toBe(false);
    const indexScans = scans.filter((n) => n['Index Name'] !== undefined);
    expect(indexScans.length, JSON.stringify(plan)).toBeGreaterThan(0);
    for (const scan of indexScans) {
      expect(scan['Index Name']).toBe('syncs_active_updated_at');
      expect(scan['Index Cond']).toMatch(/updated_at </);
    }
  });

  it('the autosync scan is an index range scan by state, in key order', async () => {
    const idle = await store.listConnections({ state: 'IDLE' });
    expect(idle).toHaveLength(Array.from({ length: CONNECTIONS }, (_, i) => connectionRow(i)).filter((r) => r.state === 'IDLE').length);

    const plan = await explain(() => store.listConnections({ state: 'IDLE' }));
    expect(plan.some((n) => n['Node Type'] === 'Seq Scan'), JSON.stringify(plan)).toBe(false);
    // At this size the planner may sort 400 rows from a bitmap scan rather than walk the index in order;
    // either way it reads only the IDLE entries of connections_state_key.
    const indexScans = plan.filter((n) => n['Index Name'] !== undefined);
    expect(indexScans.length, JSON.stringify(plan)).toBeGreaterThan(0);
    for (const scan of indexScans) {
      expect(scan['Index Name']).toBe('connections_state_key');
      expect(scan['Index Cond']).toMatch(/state = 'IDLE'/);
    }
  });
});
