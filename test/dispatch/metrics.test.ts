/**
 * Two worker processes with a metrics port and an API process on PostgreSQL: the syncs the API requests are
 * run by the workers and counted in their `/metrics`; `/healthz` says 200 while a worker is connected and
 * heartbeating, 503 once its database is gone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createDispatchingEngine, startWorker, type BanksyncWorker } from '../../src/dispatch/worker.js';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';
import { sample } from '../support/prometheus.js';

const CHILD = fileURLToPath(new URL('./worker-child.ts', import.meta.url));
const SCENARIOS = ['success', 'success', 'failed', 'success', 'invalid-credentials', 'success'] as const;
const SYNCS = 12;

/** Sums a Prometheus text exposition's samples of `name` whose labels include `labels`. */

describe.runIf(postgresAvailable)('worker metrics and health endpoints', () => {
  const schema = throwawaySchema('bs');
  const graphileSchema = throwawaySchema('gw');
  let sandbox: Sandbox | undefined;
  let api: Awaited<ReturnType<typeof createDispatchingEngine>> | undefined;
  let local: BanksyncWorker | undefined;
  const children: ChildProcess[] = [];

  const spawnWorker = () =>
    new Promise<{ processId: string; metricsUrl: string }>((resolve, reject) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
        env: { ...process.env, DATABASE_URL, BS_SCHEMA: schema, GW_SCHEMA: graphileSchema, SANDBOX_URL: sandbox!.url, METRICS_PORT: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(proc);
      let buffer = '';
      let errors = '';
      proc.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
      proc.on('exit', (code) => reject(new Error(`worker exited (${code}): ${errors.slice(-2000)}`)));
      proc.stdout!.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = JSON.parse(buffer.slice(0, newline)) as { ready?: string; metricsUrl?: string };
          buffer = buffer.slice(newline + 1);
          if (line.ready && line.metricsUrl) resolve({ processId: line.ready, metricsUrl: line.metricsUrl });
        }
      });
    });

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await local?.stop().catch(() => {});
    await api?.store.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`).catch(() => {});
    await api?.close();
    await sandbox?.close();
  });

  it(`${SYNCS} syncs run by two worker processes are counted in their /metrics; /healthz is 200`, async () => {
    sandbox = await startSandbox();
    const finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'mp' });
    api = await createDispatchingEngine({ databaseUrl: DATABASE_URL, schema, graphileSchema, providers: { finx }, telemetry: false });
    const workers = await Promise.all([spawnWorker(), spawnWorker()]);
    for (const worker of workers) {
      const health = await fetch(`${worker.metricsUrl}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', processId: worker.processId, database: 'up', runner: 'running' });
    }
    const expected = { COMPLETED: 0, BANK_REJECTED: 0, INVALID_CREDENTIALS: 0 };
    const accesses = await Promise.all(
      Array.from({ length: SYNCS }, async (_, i) => {
        const scenario = SCENARIOS[i % SCENARIOS.length]!;
        if (scenario === 'success') expected.COMPLETED++;
        else if (scenario === 'failed') expected.BANK_REJECTED++;
        else expected.INVALID_CREDENTIALS++;
        return finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario });
      }),
    );
    await Promise.all(accesses.map((a) => api!.engine.requestSync({ connectionId: a.id, provider: 'finx' })));
    await expect.poll(async () => (await api!.store.listSyncs({ active: true })).length, { timeout: 120_000, interval: 500 }).toBe(0);

    const scrape = async () => Promise.all(workers.map(async (w) => (await fetch(`${w.metricsUrl}/metrics`)).text()));
    const total = (texts: string[], name: string, labels?: Record<string, string>) => texts.reduce((n, text) => n + sample(text, name, labels), 0);
    // A worker counts a sync right after committing its end: poll until the last count is in.
    await expect.poll(async () => total(await scrape(), 'banksync_syncs_finished_total'), { timeout: 10_000 }).toBe(SYNCS);
    const texts = await scrape();
    expect(total(texts, 'banksync_syncs_started_total', { provider: 'finx' })).toBe(SYNCS);
    expect(total(texts, 'banksync_syncs_finished_total', { provider: 'finx', outcome: 'COMPLETED', error_code: 'none' })).toBe(expected.COMPLETED);
    expect(total(texts, 'banksync_syncs_finished_total', { outcome: 'FAILED', error_code: 'BANK_REJECTED' })).toBe(expected.BANK_REJECTED);
    expect(total(texts, 'banksync_syncs_finished_total', { outcome: 'FAILED', error_code: 'INVALID_CREDENTIALS' })).toBe(expected.INVALID_CREDENTIALS);
    expect(total(texts, 'banksync_sync_duration_seconds_count', { provider: 'finx' })).toBe(SYNCS);
    expect(total(texts, 'banksync_provider_call_duration_seconds_count', { provider: 'finx', operation: 'trigger' })).toBeGreaterThanOrEqual(SYNCS);
    // The gauge is the store's count, the same from every process.
    for (const text of texts) {
      expect(text).toMatch(/^banksync_active_syncs\{state="RUNNING"\} 0$/m);
      expect(text).toContain('# TYPE banksync_syncs_finished_total counter');
    }
    // Counted where they ran (the queue is shared): per worker, never more than all of them, none twice.
    const perWorker = texts.map((text) => sample(text, 'banksync_syncs_finished_total'));
    for (const n of perWorker) expect(n).toBeLessThanOrEqual(SYNCS);
  }, 240_000);

  it('/healthz turns 503 when the worker has lost its database', async () => {
    const finx = createFinxAdapter({ baseUrl: `${sandbox!.url}/finx`, token: 'mp' });
    local = await startWorker({ databaseUrl: DATABASE_URL, schema, graphileSchema, providers: { finx }, autosyncCron: false, metricsPort: 0, metricsHost: '127.0.0.1', heartbeatMs: 200, telemetry: false });
    expect(local.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const healthy = await fetch(`${local.metricsUrl}/healthz`);
    expect(healthy.status).toBe(200);
    // Its pool closed under it: the database is gone for this worker (the shared server keeps running).
    await local.store.pool.end();
    const down = await fetch(`${local.metricsUrl}/healthz`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ status: 'unavailable', ok: false, database: 'down' });
    expect((await fetch(`${local.metricsUrl}/metrics`)).status).toBe(200);
    expect((await fetch(`${local.metricsUrl}/nope`)).status).toBe(404);
  });
});
