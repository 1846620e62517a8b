/**
 * One API-side dispatching engine and one worker in this test process, on throwaway PostgreSQL schemas, with a
 * sandbox and a finX adapter: the setup the dispatch tests share. Call inside a describe block.
 */
import { afterAll, beforeAll } from 'vitest';
import type { SyncPolicy } from '../../machines/synchronization.js';
import { createDispatchingEngine, startWorker, type BanksyncWorker } from '../../src/dispatch/worker.js';
import { createFinxAdapter, type FinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { DATABASE_URL, throwawaySchema } from './postgres.js';

export interface DispatchRig {
  sandbox: Sandbox;
  finx: FinxAdapter;
  worker: BanksyncWorker;
  api: Awaited<ReturnType<typeof createDispatchingEngine>>;
  schema: string;
  graphileSchema: string;
}

/** The rig's parts are set in beforeAll: read them inside tests, not at collection time. */
export function useDispatchRig(policy: Partial<SyncPolicy>): DispatchRig {
  const rig = { schema: throwawaySchema('bs'), graphileSchema: throwawaySchema('gw') } as DispatchRig;
  beforeAll(async () => {
    rig.sandbox = await startSandbox();
    rig.finx = createFinxAdapter({ baseUrl: `${rig.sandbox.url}/finx`, token: 'w' });
    const common = { databaseUrl: DATABASE_URL, schema: rig.schema, graphileSchema: rig.graphileSchema, providers: { finx: rig.finx }, policy };
    rig.api = await createDispatchingEngine(common);
    rig.worker = await startWorker({ ...common, concurrency: 4, autosyncCron: false });
  });
  afterAll(async () => {
    await rig.worker?.stop();
    await rig.api?.store.pool.query(`DROP SCHEMA IF EXISTS ${rig.schema} CASCADE; DROP SCHEMA IF EXISTS ${rig.graphileSchema} CASCADE`);
    await rig.api?.close();
    await rig.sandbox?.close();
  });
  return rig;
}
