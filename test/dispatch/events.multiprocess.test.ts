/**
 * Issue 15, point 1: events across processes. Two worker processes run the syncs; this process is the API.
 * The API's engine.events (fed from the durable event log) must report every event of the syncs the workers
 * ran, once, including the TAN prompt the app answers; a cursor reader must see every logged event in commit
 * order exactly once, also after it restarts from its saved cursor. The workers' /metrics count the same syncs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createDispatchingEngine } from '../../src/dispatch/worker.js';
import type { BanksyncEvent } from '../../src/engine/event-log.js';
import type { SyncView } from '../../src/engine/view.js';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { FINX_CORRECT_TAN } from '../../src/sandbox/finx.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';
import { sample } from '../support/prometheus.js';

const CHILD = fileURLToPath(new URL('./worker-child.ts', import.meta.url));
const SYNCS = 20;
const SCENARIOS = ['success', 'one-challenge', 'failed', 'success', 'one-challenge'] as const;

/** PostgreSQL cursors are `<tx>-<seq>`: commit order is (tx, seq). */
const order = (cursor: string): [bigint, bigint] => {
  const [tx, seq] = cursor.split('-');
  return [BigInt(tx!), BigInt(seq!)];
};
const before = (a: string, b: string): boolean => {
  const [ta, sa] = order(a);
  const [tb, sb] = order(b);
  return ta < tb || (ta === tb && sa < sb);
};

describe.runIf(postgresAvailable)('events across processes (two workers, one API process)', () => {
  const schema = throwawaySchema('bs');
  const graphileSchema = throwawaySchema('gw');
  let sandbox: Sandbox | undefined;
  let api: Awaited<ReturnType<typeof createDispatchingEngine>> | undefined;
  const children: ChildProcess[] = [];
  const metricsUrls: string[] = [];

  const spawnWorker = (): Promise<void> => {
    const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
      env: { ...process.env, DATABASE_URL, BS_SCHEMA: schema, GW_SCHEMA: graphileSchema, SANDBOX_URL: sandbox!.url, METRICS_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(proc);
    proc.stderr!.on('data', () => {});
    return new Promise((resolve, reject) => {
      let buffer = '';
      proc.stdout!.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        const ready = buffer.split('\n').find((line) => line.includes('"ready"'));
        if (ready) {
          const { metricsUrl } = JSON.parse(ready) as { metricsUrl: string };
          if (!metricsUrls.includes(metricsUrl)) metricsUrls.push(metricsUrl);
          resolve();
        }
      });
      proc.on('exit', (code) => reject(new Error(`worker exited (${code}) before it was ready`)));
    });
  };

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await api?.store.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP SCHEMA IF EXISTS ${graphileSchema} CASCADE`).catch(() => {});
    await api?.close();
    await sandbox?.close();
  });

  it(`${SYNCS} syncs run by workers: the API hears every event once, in order, and a reader resumes from its cursor`, { timeout: 300_000 }, async () => {
    sandbox = await startSandbox();
    const finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'mp' });
    api = await createDispatchingEngine({ databaseUrl: DATABASE_URL, schema, graphileSchema, providers: { finx } });
    const engine = api.engine;

    // What the app hears through engine.events, and the TAN prompts it answers as a user would.
    const heard: { name: string; view: SyncView }[] = [];
    const answering: Promise<unknown>[] = [];
    for (const name of ['sync.updated', 'sync.awaitingUser', 'sync.completed', 'sync.failed'] as const) {
      engine.events.on(name, (view) => {
        heard.push({ name, view });
        if (name === 'sync.awaitingUser') answering.push(engine.submitChallengeResponse(view.syncId, { challengeId: view.challenge!.id, response: FINX_CORRECT_TAN }));
      });
    }
    const connectionEvents: string[] = [];
    engine.events.on('connection.updated', (view) => connectionEvents.push(`${view.connectionId}@${view.version}`));

    // A cursor reader that is stopped halfway and restarted from the cursor it saved.
    const firstRun: BanksyncEvent[] = [];
    // It stops taking events after 25 (a throw: the cursor stays before the event it could not handle).
    let reader = await engine.subscribe({
      after: null,
      onEvent: (e) => {
        if (firstRun.length >= 25) throw new Error('reader going down');
        firstRun.push(e);
      },
      onError: () => {},
    });

    await Promise.all([spawnWorker(), spawnWorker()]);
    const accesses = await Promise.all(
      Array.from({ length: SYNCS }, (_, i) => {
        const scenario = SCENARIOS[i % SCENARIOS.length]!;
        return finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario }).then((a) => ({ id: a.id, scenario }));
      }),
    );
    const syncs = await Promise.all(accesses.map((a) => engine.requestSync({ connectionId: a.id, provider: 'finx' })));
    // waitForTerminal on the API side resolves for syncs that only workers (and answers) moved.
    const terminal = await Promise.all(syncs.map((s) => engine.waitForTerminal(s.syncId)));
    for (const [i, view] of terminal.entries()) expect(view.status, accesses[i]!.scenario).toBe(accesses[i]!.scenario === 'failed' ? 'FAILED' : 'COMPLETED');
    await Promise.all(answering);

    await expect.poll(() => firstRun.length, { timeout: 30_000 }).toBe(25);
    await reader.close();
    const saved = reader.cursor;
    const secondRun: BanksyncEvent[] = [];
    reader = await engine.subscribe({ after: saved, onEvent: (e) => void secondRun.push(e) });

    // The log, read in pages from the start: every event the syncs caused.
    const log: BanksyncEvent[] = [];
    let cursor: string | null = null;
    await expect
      .poll(
        async () => {
          for (;;) {
            const page = await engine.readEvents({ after: cursor, limit: 37 });
            log.push(...page.events);
            cursor = page.cursor;
            if (!page.more) break;
          }
          const finished = log.filter((e) => e.name === 'sync.completed' || e.name === 'sync.failed').length;
          return finished;
        },
        { timeout: 30_000 },
      )
      .toBe(SYNCS);
    await expect.poll(() => firstRun.length + secondRun.length, { timeout: 30_000 }).toBe(log.length);
    await reader.close();

    console.log(`events across processes: ${SYNCS} syncs, ${log.length} events logged, reader restarted after ${firstRun.length}`);
    // Exactly once per cursor, in commit order, after a restart from the saved cursor.
    const resumed = [...firstRun, ...secondRun];
    expect(resumed.map((e) => e.id)).toEqual(log.map((e) => e.id));
    expect(new Set(log.map((e) => e.id)).size).toBe(log.length);
    for (let i = 1; i < log.length; i++) expect(before(log[i - 1]!.cursor, log[i]!.cursor), `${log[i - 1]!.cursor} < ${log[i]!.cursor}`).toBe(true);

    // Per sync: the log tells the sync's whole story, in the order it was committed.
    const ran = new Set<string>();
    for (const [i, sync] of syncs.entries()) {
      const events = log.filter((e) => e.syncId === sync.syncId);
      const versions = events.map((e) => (e.payload as SyncView).version);
      expect(versions, 'versions never go back').toEqual([...versions].sort((a, b) => a - b));
      const updates = events.filter((e) => e.name === 'sync.updated').length;
      expect(updates, 'one sync.updated per committed state change').toBe((await engine.history(sync.syncId)).length);
      expect(events.at(-1)!.name).toBe(accesses[i]!.scenario === 'failed' ? 'sync.failed' : 'sync.completed');
      expect(events.filter((e) => e.name === 'sync.awaitingUser').length).toBe(accesses[i]!.scenario === 'one-challenge' ? 1 : 0);
      ran.add(sync.syncId);
    }
    // Connection events are logged too (lock taken at the request, released when the sync ended).
    for (const access of accesses) {
      const connection = log.filter((e) => e.connectionId === access.id && e.name === 'connection.updated');
      expect(connection.length, access.id).toBeGreaterThanOrEqual(2);
    }

    // The API's engine.events heard exactly the logged sync events: each once, none missing.
    const logged = log.filter((e) => e.syncId && ran.has(e.syncId)).map((e) => `${e.name} ${e.syncId} ${(e.payload as SyncView).version}`);
    await expect.poll(() => heard.length, { timeout: 30_000 }).toBe(logged.length);
    expect(heard.map((h) => `${h.name} ${h.view.syncId} ${h.view.version}`)).toEqual(logged);
    const loggedConnections = log.filter((e) => e.name === 'connection.updated').map((e) => `${e.connectionId}@${(e.payload as { version: number }).version}`);
    expect(connectionEvents).toEqual(loggedConnections);
    // The workers' /metrics count what the API heard: every sync finished once, by outcome.
    const finishedHeard = (name: string) => heard.filter((h) => h.name === name).length;
    const scrape = async () => Promise.all(metricsUrls.map(async (url) => (await fetch(`${url}/metrics`)).text()));
    const total = (texts: string[], name: string, labels?: Record<string, string>) => texts.reduce((n, text) => n + sample(text, name, labels), 0);
    expect(metricsUrls).toHaveLength(2);
    await expect.poll(async () => total(await scrape(), 'banksync_syncs_finished_total'), { timeout: 10_000 }).toBe(SYNCS);
    const texts = await scrape();
    expect(total(texts, 'banksync_syncs_finished_total', { outcome: 'COMPLETED' })).toBe(finishedHeard('sync.completed'));
    expect(total(texts, 'banksync_syncs_finished_total', { outcome: 'FAILED' })).toBe(finishedHeard('sync.failed'));
    expect(total(texts, 'banksync_syncs_started_total', { provider: 'finx' })).toBe(SYNCS);

    // The workers did the work: the API process started no sync itself.
    expect(sandbox.stats().finx.connections[accesses[0]!.id]!.syncsStarted).toBe(1);
  });
});
