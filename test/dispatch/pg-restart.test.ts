/**
 * Issue 12, point 2: every process rides out a PostgreSQL restart. Two worker processes and this API process
 * run syncs while the database cluster is stopped for 10 s and started again (real `pg_ctlcluster`): no
 * process may exit, every sync must end as scripted, exactly one provider sync per connection.
 *
 * It stops the machine's whole PostgreSQL cluster, so it only runs when BANKSYNC_PG_RESTART_TEST=1 (CI:
 * .ci/run exports it; never on a database server others are using).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createDispatchingEngine } from '../../src/dispatch/worker.js';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { startFaultProxy, type FaultProxy } from '../../src/sandbox/faults.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

const ENABLED = process.env.BANKSYNC_PG_RESTART_TEST === '1' && postgresAvailable;
const CLUSTER = (process.env.PG_CLUSTER ?? '15 main').split(' ');
const RUNS = Number(process.env.PG_RESTART_RUNS ?? 3);
const SYNCS = 30;
const DOWN_MS = 10_000;
const CHILD = fileURLToPath(new URL('./worker-child.ts', import.meta.url));

const pgctl = (action: 'stop' | 'start') => execFileSync('pg_ctlcluster', [...CLUSTER, action], { stdio: 'ignore' });

describe.runIf(ENABLED)('PostgreSQL restarts under load', () => {
  const schema = throwawaySchema('bs');
  const graphileSchema = throwawaySchema('gw');
  const children: { process: ChildProcess; exit: number | null | undefined }[] = [];
  let sandbox: Sandbox | undefined;
  let proxy: FaultProxy | undefined;
  let api: Awaited<ReturnType<typeof createDispatchingEngine>> | undefined;

  afterAll(async () => {
    try {
      pgctl('start');
    } catch {
      // already running
    }
    for (const child of children) child.process.kill('SIGKILL');
    await api?.store.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`).catch(() => {});
    await api?.close().catch(() => {});
    await proxy?.close();
    await sandbox?.close();
  });

  it(`${RUNS} restarts of ${DOWN_MS / 1000} s with ${SYNCS} syncs each: no process exits, every sync ends once`, { timeout: 900_000 }, async () => {
    sandbox = await startSandbox();
    proxy = await startFaultProxy({ target: sandbox.url });
    proxy.inject({ name: 'slow-read', match: (r) => r.method === 'GET' && /\/syncs\/[^/]+$/.test(r.path), action: { kind: 'delay', ms: 500 } });
    const finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'mp' });
    api = await createDispatchingEngine({ databaseUrl: DATABASE_URL, schema, graphileSchema, providers: { finx } });
    for (let i = 0; i < 2; i++) {
      const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
        env: { ...process.env, DATABASE_URL, BS_SCHEMA: schema, GW_SCHEMA: graphileSchema, SANDBOX_URL: proxy.url },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const child = { process: proc, exit: undefined as number | null | undefined };
      proc.once('exit', (code) => (child.exit = code));
      children.push(child);
    }
    const survived: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const accesses = await Promise.all(Array.from({ length: SYNCS }, () => finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'success' })));
      const syncs = await Promise.all(accesses.map((a) => api!.engine.requestSync({ connectionId: a.id, provider: 'finx' })));
      pgctl('stop');
      await new Promise((resolve) => setTimeout(resolve, DOWN_MS));
      pgctl('start');
      const ids = new Set(syncs.map((s) => s.syncId));
      await expect
        .poll(async () => (await api!.store.listSyncs({ active: true }).catch(() => syncs)).filter((s) => ids.has(s.syncId)).length, { timeout: 180_000, interval: 500 })
        .toBe(0);
      expect(children.map((c) => c.exit)).toEqual([undefined, undefined]);
      for (const [i, sync] of syncs.entries()) {
        expect((await api.engine.get(sync.syncId)).status).toBe('COMPLETED');
        expect(sandbox.stats().finx.connections[accesses[i]!.id]!.syncsStarted).toBe(1);
      }
      survived.push(run + 1);
    }
    console.log(`PostgreSQL restarts survived: ${survived.length} of ${RUNS} (down ${DOWN_MS} ms each, 2 workers + API, ${SYNCS} syncs per run)`);
  });
});
