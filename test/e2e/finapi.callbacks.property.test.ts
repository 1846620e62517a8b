/**
 * Property: finAPI callbacks are hints, never the source of truth. For any ordering, duplication or loss of the
 * callbacks of a web form scenario, delivered through engine.handleWebhook between polls (also after the sync
 * ended), the sync ends exactly as it does with no callbacks at all.
 *
 * Engine (SQLite :memory:, simulated clock) + sandbox over real HTTP. The sandbox sends its callbacks to a
 * capturing server; the test replays them into the engine on the generated schedule. Time moves in ticks of
 * one poll interval; after each tick the test waits until no provider call is in flight. Deliveries are
 * scheduled by phase (before / while / after the web form, after the end), so late and early callbacks
 * meet every part of the lifecycle.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fc, test } from '@fast-check/vitest';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createEngine, type SyncEngine } from '../../src/engine/engine.js';
import type { SyncView } from '../../src/engine/view.js';
import { SIGNATURE_HEADER, signWebhook } from '../../src/engine/webhook-auth.js';
import { createFinapiAdapter } from '../../src/providers/finapi/index.js';
import type { ProviderAdapter } from '../../src/providers/types.js';
import { createFinapiSandboxConnection, finapiSandbox, type FinapiScenarioName } from '../../src/sandbox/finapi.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { SqliteStore } from '../../src/stores/sqlite.js';

const TOKEN = 'property-finapi-token';
const TICK_MS = 1_000;
const MAX_TICKS = 20;
const POLICY = {
  pollBaseMs: TICK_MS,
  pollMaxMs: TICK_MS,
  authPollMs: TICK_MS,
  retryBaseMs: TICK_MS,
  retryMaxMs: TICK_MS,
  syncDeadlineMs: 24 * 3_600_000,
};
/** Web form scenarios whose callbacks are shuffled; each ends differently (success, error, abort, expiry). */
const SCENARIOS: FinapiScenarioName[] = ['web-form', 'web-form-error', 'web-form-aborted', 'web-form-expired', 'immediate-web-form'];

let clock: SimulatedClock;
const WEBHOOK_SECRET = 'whsec-finapi-callbacks-property';
let sandbox: Sandbox;
let store: SqliteStore;
let engine: SyncEngine;
let finapiUrl: string;
let capture: { server: Server; bodies: string[] };
let inFlight = 0;
const tally = { runs: 0, applied: 0 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}
/** Waits until no provider call is in flight and the engine committed what followed. */
async function quiesce(): Promise<void> {
  for (let i = 0; i < 1_000; i++) {
    await settle();
    if (inFlight === 0) {
      await settle();
      if (inFlight === 0) return;
    }
    await sleep(1);
  }
  throw new Error('provider calls did not settle');
}

/** The adapter, counting calls in flight. */
function counted(adapter: ProviderAdapter): ProviderAdapter {
  const wrap =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      inFlight += 1;
      try {
        return await fn(...args);
      } finally {
        inFlight -= 1;
      }
    };
  return {
    name: adapter.name,
    trigger: wrap(adapter.trigger),
    findTriggered: wrap(adapter.findTriggered),
    poll: wrap(adapter.poll),
    answerChallenge: wrap(adapter.answerChallenge),
    parseWebhook: adapter.parseWebhook,
  };
}

/** What must not depend on callbacks: terminal status, error and result (account ids differ per connection). */
function essence(view: SyncView) {
  return {
    status: view.status,
    error: view.error
      ? { code: view.error.code, providerCode: view.error.providerCode, retryable: view.error.retryable, userActionRequired: view.error.userActionRequired }
      : null,
    result: view.result ? { outcome: view.result.outcome, statuses: view.result.accounts.map((a) => a.status) } : null,
  };
}

/** Where a sync is, as the test sees it between ticks. */
const PHASES = ['before-web-form', 'web-form', 'after-web-form', 'ended'] as const;
type Phase = (typeof PHASES)[number];

interface Delivery {
  /** Which captured callback of the sync (in capture order; wraps around the ones that exist). */
  callback: number;
  /** Delivered at the `nth` tick spent in `phase` (or as soon as possible when that phase was skipped or short). */
  phase: Phase;
  nth: number;
}

/** Runs one sync of `scenario` to its end; `plan` delivers captured callbacks (null: callbacks are dropped). */
async function runOnce(scenario: FinapiScenarioName, plan: readonly Delivery[] | null) {
  const { id } = await createFinapiSandboxConnection(finapiUrl, TOKEN, scenario);
  const connectionId = String(id);
  const mark = capture.bodies.length;
  const view = await engine.requestSync({ connectionId, provider: 'finapi' });
  await quiesce();
  const pending = [...(plan ?? [])];
  const opened = new Set<string>();
  const ticksIn = new Map<Phase, number>();
  let applied = 0;
  for (let tick = 0; tick <= MAX_TICKS; tick++) {
    const current = await engine.get(view.syncId);
    const phase: Phase = !current.active ? 'ended' : current.status === 'AWAIT_AUTH' ? 'web-form' : opened.size > 0 ? 'after-web-form' : 'before-web-form';
    const spent = ticksIn.get(phase) ?? 0;
    ticksIn.set(phase, spent + 1);
    await sandbox.webhooksIdle();
    const mine = current.providerRef ? capture.bodies.slice(mark).filter((b) => b.includes(current.providerRef!)) : [];
    const due = pending.filter((d) => {
      const wanted = PHASES.indexOf(d.phase);
      const now = PHASES.indexOf(phase);
      return mine.length > 0 && (now > wanted || (now === wanted && (spent >= d.nth || phase === 'ended')));
    });
    for (const delivery of due) {
      pending.splice(pending.indexOf(delivery), 1);
      const body = mine[delivery.callback % mine.length]!;
      const signature = signWebhook(WEBHOOK_SECRET, body, Math.floor(clock.now() / 1000));
      const outcome = await engine.handleWebhook('finapi', { headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signature }, body });
      if (outcome.applied) applied += 1;
    }
    if (phase === 'ended' && pending.length === 0) break;
    // The user opens the web form once it is shown.
    const shown = await engine.get(view.syncId);
    if (shown.status === 'AWAIT_AUTH' && shown.challenge?.redirectUrl && !opened.has(shown.challenge.id)) {
      opened.add(shown.challenge.id);
      await (await fetch(shown.challenge.redirectUrl)).arrayBuffer();
    }
    clock.increment(TICK_MS);
    await quiesce();
  }
  const final = await engine.get(view.syncId);
  expect(final.active, `${scenario}: still ${final.state}`).toBe(false);
  return { final, applied, history: await engine.history(view.syncId) };
}

beforeAll(async () => {
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString('utf8'));
      res.statusCode = 200;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  capture = { server, bodies };

  clock = new SimulatedClock();
  clock.set(Date.parse('2025-03-01T10:00:00.000Z'));
  sandbox = await startSandbox({ now: () => clock.now(), providers: [finapiSandbox({ tokens: [TOKEN] })] });
  sandbox.setWebhookUrl(`http://127.0.0.1:${(server.address() as AddressInfo).port}/captured`, 'finapi');
  finapiUrl = `${sandbox.url}/finapi`;
  store = SqliteStore.open(':memory:');
  const adapter = createFinapiAdapter({ baseUrl: finapiUrl, token: TOKEN, now: () => clock.now() });
  // Signed: only authenticated callbacks are applied as provider state (unsigned ones are hints to poll).
  engine = createEngine({ store, providers: { finapi: counted(adapter) }, clock, policy: POLICY, webhookSecrets: { finapi: WEBHOOK_SECRET } });
});

afterAll(async () => {
  await engine?.stop();
  await sandbox?.close();
  capture?.server.closeAllConnections();
  await new Promise<void>((resolve) => capture?.server.close(() => resolve()));
  await store?.close();
});

const baselines = new Map<FinapiScenarioName, ReturnType<typeof essence>>();
async function baseline(scenario: FinapiScenarioName) {
  let known = baselines.get(scenario);
  if (!known) {
    known = essence((await runOnce(scenario, null)).final);
    baselines.set(scenario, known);
  }
  return known;
}

const delivery: fc.Arbitrary<Delivery> = fc.record({
  callback: fc.nat({ max: 3 }),
  phase: fc.constantFrom(...PHASES),
  nth: fc.nat({ max: 2 }),
});

describe('finAPI callbacks never change how a sync ends', () => {
  test.prop([fc.constantFrom(...SCENARIOS), fc.array(delivery, { maxLength: 8 })], { numRuns: 30 })(
    'any ordering, duplication or loss of callbacks, interleaved with polls, ends like no callbacks',
    async (scenario, plan) => {
      const expected = await baseline(scenario);
      const run = await runOnce(scenario, plan);
      tally.runs += 1;
      tally.applied += run.applied;
      expect(essence(run.final)).toEqual(expected);
      // Never back to the user once the web form is done: AWAIT_AUTH is entered from outside at most once.
      const entries = run.history.filter((t) => t.to.startsWith('AWAIT_AUTH') && !(t.from ?? '').startsWith('AWAIT_AUTH'));
      expect(entries.length).toBeLessThanOrEqual(1);
    },
    120_000,
  );

  test('sanity: without callbacks every scenario ends as scripted, and callbacks were captured to replay', async () => {
    expect(await baseline('web-form')).toMatchObject({ status: 'COMPLETED', result: { outcome: 'COMPLETE' } });
    expect(await baseline('web-form-error')).toMatchObject({ status: 'FAILED', error: { code: 'BANK_REJECTED' } });
    expect(await baseline('web-form-aborted')).toMatchObject({ status: 'FAILED', error: { code: 'CANCELLED' } });
    expect(await baseline('web-form-expired')).toMatchObject({ status: 'FAILED', error: { code: 'CHALLENGE_EXPIRED' } });
    // finalised first, then the late webFormRequired while post-processing, then both again after the end
    const run = await runOnce('web-form', [
      { callback: 1, phase: 'after-web-form', nth: 0 },
      { callback: 0, phase: 'after-web-form', nth: 0 },
      { callback: 0, phase: 'ended', nth: 0 },
      { callback: 1, phase: 'ended', nth: 0 },
    ]);
    expect(run.applied).toBeGreaterThan(0);
    expect(essence(run.final)).toEqual(await baseline('web-form'));
    // The generated schedules did reach the engine while syncs were running.
    console.log(`finapi callbacks property: ${tally.runs} runs, ${tally.applied} callbacks applied to running syncs`);
    expect(tally.applied).toBeGreaterThan(tally.runs / 3);
  });
});
