import { describe, expect, it } from 'vitest';
import { POSTGRES_MIGRATIONS, PostgresStore } from '../../src/stores/postgres.js';
import { StaleWriteError } from '../../src/stores/types.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';
import { storeConformanceSuite } from './conformance.js';

const open = () => PostgresStore.open({ connectionString: DATABASE_URL, schema: throwawaySchema(), max: 4 });
const drop = async (store: unknown) => {
  const pgStore = store as PostgresStore;
  await pgStore.dropSchema();
  await pgStore.close();
};

describe.runIf(postgresAvailable)('PostgreSQL store', () => {
  storeConformanceSuite('postgres', open, drop);

  it('migrates once even when several processes open the same schema at the same time', async () => {
    const schema = throwawaySchema();
    const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.open({ connectionString: DATABASE_URL, schema, max: 2 })));
    const { rows } = await stores[0]!.pool.query(`SELECT version FROM ${schema}.migrations`);
    expect(rows.map((r) => r.version).sort((x, y) => x - y)).toEqual(POSTGRES_MIGRATIONS.map((m) => m.version));
    await stores[0]!.dropSchema();
    await Promise.all(stores.map((s) => s.close()));
  });

  it('event log: a transaction that commits after a later-numbered one is neither skipped nor read twice', async () => {
    const store = await open();
    const slow = await store.pool.connect();
    try {
      const ev = (id: string) => ({ eventId: id, name: 'sync.updated', tenantId: 't', connectionId: 'c', syncId: null, payload: {}, at: 1 });
      // The slow writer takes the lower sequence value and stays open...
      await slow.query('BEGIN');
      await slow.query(`INSERT INTO ${store.schema}.events (event_id, name, tenant_id, connection_id, payload, at) VALUES ('slow', 'x', 't', 'c', '{}', 1)`);
      // ...while a later writer commits.
      await store.saveConnection({ tenantId: 't', connectionId: 'c', provider: 'finx', state: 'IDLE', context: {}, updatedAt: 1 }, 0, [ev('fast')]);
      const seen: string[] = [];
      let cursor: string | null = null;
      const drain = async () => {
        const page = await store.readEvents(cursor, 10);
        for (const e of page.events) seen.push(e.eventId);
        if (page.events.length) cursor = page.events.at(-1)!.cursor;
        return page.more;
      };
      // The committed event is held back (reported as `more`) while an older transaction is in flight.
      expect(await drain()).toBe(true);
      expect(seen).toEqual([]);
      await slow.query('COMMIT');
      await expect.poll(async () => (await drain(), seen.length), { timeout: 10_000 }).toBe(2);
      expect(await drain()).toBe(false);
      expect([...seen].sort()).toEqual(['fast', 'slow']);
      const seqs = (await store.readEvents(null, 10)).events.map((e) => e.seq);
      expect(seqs).toHaveLength(2);
    } finally {
      slow.release();
      await drop(store);
    }
  });

  it('event log: a watcher reconnects after its connection is terminated and keeps waking', async () => {
    const store = await open();
    let wakes = 0;
    const stop = await store.watchEvents(() => wakes++);
    try {
      await store.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'banksync-events' AND query ILIKE 'LISTEN%${store.schema}%'`);
      // Reconnecting wakes once (notifications meanwhile were missed); after that, commits wake it again.
      await expect.poll(() => wakes, { timeout: 15_000 }).toBeGreaterThan(1);
      const before = wakes;
      await store.saveConnection({ tenantId: 't', connectionId: 'c2', provider: 'finx', state: 'IDLE', context: {}, updatedAt: 1 }, 0, [
        { eventId: 'e', name: 'connection.updated', tenantId: 't', connectionId: 'c2', syncId: null, payload: {}, at: 1 },
      ]);
      await expect.poll(() => wakes, { timeout: 10_000 }).toBeGreaterThan(before);
    } finally {
      await stop();
      await drop(store);
    }
  });

  it('rejects a stale worker’s write: a second writer holding an old version is fenced off', async () => {
    const a = await open();
    const b = await PostgresStore.open({ connectionString: DATABASE_URL, schema: a.schema, max: 2 });
    try {
      const { sync } = await a.createSync({ syncId: 's1', tenantId: 't', connectionId: 'c', provider: 'finx', scope: 'TRANSACTIONS', createdAt: 1 });
      const base = { syncId: sync.syncId, status: 'RUNNING' as const, active: true, providerRef: 'p', timers: [], transitions: [], pendingEffects: [], at: 2 };
      // Both workers read version 0; the first commit wins, the stale one is rejected and writes nothing.
      expect(await a.commit({ ...base, expectedVersion: 0, snapshot: { by: 'a' } })).toBe(1);
      await expect(b.commit({ ...base, expectedVersion: 0, snapshot: { by: 'b' }, transitions: [{ from: null, to: 'X', event: 'e', at: 3 }] })).rejects.toBeInstanceOf(StaleWriteError);
      const stored = await b.getSync('s1');
      expect(stored).toMatchObject({ version: 1, snapshot: { by: 'a' } });
      expect(await b.listTransitions('s1')).toEqual([]);
    } finally {
      await a.dropSchema();
      await Promise.all([a.close(), b.close()]);
    }
  });
});
