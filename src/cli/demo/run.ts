/**
 * `banksync demo`: every scripted sandbox scenario of every provider family, driven through the engine
 * on the embedded SQLite store over real HTTP, with a simulated user who answers challenges.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InspectionEvent } from 'xstate';
import type { SyncPolicy } from '../../../machines/synchronization.js';
import { createEngine, type SyncEngine } from '../../engine/engine.js';
import type { Logger } from '../../engine/logger.js';
import type { SyncView } from '../../engine/view.js';
import { startSandbox, type Sandbox } from '../../sandbox/server.js';
import { SqliteStore } from '../../stores/sqlite.js';
import { DEMO_FAMILIES } from './families.js';
import type { DemoCase } from './types.js';

export { DEMO_POLICY } from './policy.js';
import { DEMO_POLICY } from './policy.js';

export interface DemoResult {
  provider: string;
  scenario: string;
  expected: string;
  actual: string;
  transitions: number;
  ms: number;
  ok: boolean;
}

export interface DemoOptions {
  dbPath?: string;
  provider?: string;
  scenario?: string;
  logger?: Logger;
  /** Called on every committed transition, for the live progress display. */
  onProgress?: (c: DemoCase, view: SyncView, transitions: number) => void;
  /** XState inspection events of every sync actor (e.g. the Stately inspector). */
  inspect?: (event: InspectionEvent) => void;
}

function describe(status: string, errorCode?: string, outcome?: string): string {
  return status === 'FAILED' ? `FAILED ${errorCode ?? ''}`.trim() : `${status} ${outcome ?? ''}`.trim();
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('webhook server has no address');
  return `http://127.0.0.1:${address.port}`;
}

/** The user: types the scripted TAN for embedded challenges, opens the link of redirect/web-form ones. */
function simulateUser(engine: SyncEngine, answersFor: Map<string, string[]>): () => void {
  return engine.events.on('sync.awaitingUser', (view) => {
    const challenge = view.challenge;
    if (!challenge) return;
    if (challenge.kind === 'EMBEDDED') {
      const answer = answersFor.get(view.syncId)?.shift();
      if (answer === undefined) return; // nobody answers: the challenge will expire
      engine.submitChallengeResponse(view.syncId, { challengeId: challenge.id, response: answer }, { tenantId: view.tenantId }).catch(() => {});
    } else if ((challenge.kind === 'REDIRECT' || challenge.kind === 'WEB_FORM') && challenge.redirectUrl) {
      if (answersFor.get(view.syncId)?.[0] === 'ignore') return;
      fetch(challenge.redirectUrl).then((r) => r.arrayBuffer()).catch(() => {});
    }
  });
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult[]> {
  const dbPath = options.dbPath ?? join(mkdtempSync(join(tmpdir(), 'banksync-demo-')), 'demo.sqlite');
  const store = SqliteStore.open(dbPath);
  const hooks = createServer();
  const hooksUrl = await listen(hooks);
  let sandbox: Sandbox | undefined;
  let engine: SyncEngine | undefined;
  try {
    sandbox = await startSandbox();
    const families = DEMO_FAMILIES.map((factory) => factory(sandbox!)).filter((f) => !options.provider || f.provider === options.provider);
    engine = createEngine({
      store,
      providers: Object.fromEntries(families.map((f) => [f.provider, f.adapter])),
      policy: DEMO_POLICY,
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.inspect ? { inspect: options.inspect } : {}),
    });
    const running = engine;
    hooks.on('request', (req, res) => {
      const provider = /^\/webhooks\/([a-z0-9]+)/.exec(req.url ?? '')?.[1] ?? '';
      running.webhookHandler(provider)(req, res);
    });
    for (const family of families) sandbox.setWebhookUrl(`${hooksUrl}/webhooks/${family.provider}`, family.provider);

    const cases = families.flatMap((f) => f.cases).filter((c) => !options.scenario || c.scenario === options.scenario);
    const answersFor = new Map<string, string[]>();
    const caseOf = new Map<string, DemoCase>();
    const transitions = new Map<string, number>();
    const stopUser = simulateUser(running, answersFor);
    const stopProgress = running.events.on('sync.updated', (view) => {
      const c = caseOf.get(view.syncId);
      const n = (transitions.get(view.syncId) ?? 0) + 1;
      transitions.set(view.syncId, n);
      if (c) options.onProgress?.(c, view, n);
    });

    const runCase = async (c: DemoCase): Promise<DemoResult> => {
      const started = Date.now();
      const expected = describe(c.expect.status, c.expect.errorCode, c.expect.outcome);
      try {
        const connectionId = await c.prepare();
        const terminal = new Promise<SyncView>((resolve) => {
          const off = [
            running.events.on('sync.completed', (v) => v.connectionId === connectionId && (off.forEach((f) => f()), resolve(v))),
            running.events.on('sync.failed', (v) => v.connectionId === connectionId && (off.forEach((f) => f()), resolve(v))),
          ];
        });
        const view = await running.requestSync({ connectionId, provider: c.provider, ...(c.options ? { options: c.options } : {}) });
        answersFor.set(view.syncId, [...c.answers]);
        caseOf.set(view.syncId, c);
        const final = await terminal;
        const actual = describe(final.status, final.error?.code, final.result?.outcome);
        return {
          provider: c.provider,
          scenario: c.scenario,
          expected,
          actual,
          transitions: (await running.history(final.syncId)).length,
          ms: Date.now() - started,
          ok:
            final.status === c.expect.status &&
            (c.expect.errorCode === undefined || final.error?.code === c.expect.errorCode) &&
            (c.expect.outcome === undefined || final.result?.outcome === c.expect.outcome),
        };
      } catch (error) {
        return { provider: c.provider, scenario: c.scenario, expected, actual: `ERROR ${(error as Error).message}`, transitions: 0, ms: Date.now() - started, ok: false };
      }
    };
    // A bounded number of syncs at once: engine and sandbox share this process, and on a loaded machine 80
    // simultaneous syncs polling every 40 ms starve each other's HTTP calls past their timeouts.
    const results: DemoResult[] = new Array(cases.length);
    let next = 0;
    const lane = async () => {
      while (next < cases.length) {
        const index = next++;
        results[index] = await runCase(cases[index]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(DEMO_CONCURRENCY, cases.length) }, lane));
    stopUser();
    stopProgress();
    return results;
  } finally {
    await engine?.stop();
    await sandbox?.close();
    await new Promise<void>((resolve) => hooks.close(() => resolve()));
    hooks.closeAllConnections();
    await store.close();
  }
}

/** Syncs the demo runs at once. */
export const DEMO_CONCURRENCY = 16;

export function formatTable(results: DemoResult[]): string {
  const header = ['provider', 'scenario', 'final state', 'expected', 'transitions', 'time', 'ok'];
  const rows = results.map((r) => [r.provider, r.scenario, r.actual, r.expected, String(r.transitions), `${r.ms} ms`, r.ok ? 'yes' : 'NO']);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
