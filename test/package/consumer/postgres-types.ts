// Type-checks the scale-out entry as a consumer would use it (compiled, not run: no database needed here).
import { createDispatchingEngine, PostgresStore, startWorker, type BanksyncWorker, type WorkerOptions } from 'banksync/postgres';
import { createFinapiAdapter } from 'banksync';

export async function scaleOut(databaseUrl: string): Promise<BanksyncWorker> {
  const options: WorkerOptions = {
    databaseUrl,
    providers: {
      finapi: createFinapiAdapter({
        baseUrl: 'https://sandbox.finapi.io',
        auth: { type: 'perUser', resolve: async ({ tenantId }) => ({ accessToken: `token-of-${tenantId}`, expiresAt: Date.now() + 3_600_000 }) },
      }),
    },
  };
  const api = await createDispatchingEngine(options);
  await api.close();
  const store: PostgresStore = await PostgresStore.open({ connectionString: databaseUrl });
  await store.close();
  return startWorker(options);
}
