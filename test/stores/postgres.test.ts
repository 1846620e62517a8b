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
