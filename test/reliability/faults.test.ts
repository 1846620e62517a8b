/**
 * Fault injection over real HTTP, for every provider family in the registry: the adapter talks to the sandbox
 * through a fault-injecting proxy (src/sandbox/faults.ts) and the engine runs on a SimulatedClock (see rig.ts).
 *
 * For every fault: the sync ends in the right state with a typed reason, retries are bounded (provider calls
 * counted in the proxy log), retry gaps grow (simulated time), and the provider saw exactly one sync started
 * (never two, never a lost one).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SyncError, SyncResult, type SyncErrorCode } from '../../machines/canonical.js';
import { defaultSyncPolicy, type SyncPolicy } from '../../machines/synchronization.js';
import type { SyncView } from '../../src/engine/view.js';
import type { FaultRule, ProxyRecord } from '../../src/sandbox/faults.js';
import { FAMILIES, FAMILY_FIXTURES, fixtureFor, type CallKind, type FamilyFixture, type FixtureScenario } from './families.js';
import { dumpSqlite, gaps, startRig, type Rig, type WebhookMode } from './rig.js';


/**
 * Failed polls of a sync: polls are reads and skip the effect journal, so they are counted from the committed
 * transition history (each failed poll is an `xstate.error.actor.poll` transition) and the typed reason of the
 * latest one from the machine's context.
 */
async function pollFailures(rig: Rig, syncId: string): Promise<{ count: number; last: string | null }> {
  const history = await rig.store.listTransitions(syncId);
  const sync = await rig.store.getSync(syncId);
  const context = (sync?.snapshot as { context?: { lastFailure?: { code: string } | null } } | null)?.context;
  return { count: history.filter((t) => t.event === 'xstate.error.actor.poll').length, last: context?.lastFailure?.code ?? null };
}

type Expected = { status: 'COMPLETED' } | { status: 'FAILED'; code: SyncErrorCode; retryable?: boolean };

interface CaseContext {
  rig: Rig;
  fx: FamilyFixture;
  policy: SyncPolicy;
  final: SyncView;
  connectionId: string;
  /** Provider calls of this case, by kind. */
  calls(kind?: CallKind): ProxyRecord[];
  syncsStarted: number;
  answersAtProvider: number;
}

interface FaultCase {
  name: string;
  scenario: FixtureScenario;
  webhooks?: WebhookMode;
  rules: (kind: (k: CallKind) => FaultRule['match']) => FaultRule[];
  expect: Expected;
  /** Provider syncs the sandbox must have started (default exactly 1). */
  syncsStarted?: number;
  check?: (c: CaseContext) => void | Promise<void>;
}

const failedCall = (r: ProxyRecord) => r.status === null || r.status >= 400 || r.fault !== null;

/** Retry gaps: each at least the base, at most the cap, never shrinking, and growing until the cap. */
function expectBackoff(values: number[], policy: SyncPolicy): void {
  expect(values.length, 'retries observed').toBeGreaterThan(0);
  for (const gap of values) {
    expect(gap).toBeGreaterThanOrEqual(policy.retryBaseMs);
    expect(gap).toBeLessThanOrEqual(policy.retryMaxMs);
  }
  for (let i = 1; i < values.length; i++) {
    expect(values[i]!).toBeGreaterThanOrEqual(values[i - 1]!);
    if (values[i - 1]! < policy.retryMaxMs) expect(values[i]!).toBeGreaterThan(values[i - 1]!);
  }
}

/** Gaps after each failed call of a kind (time until the next call of that kind). */
function gapsAfterFailures(records: ProxyRecord[]): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < records.length; i++) if (failedCall(records[i]!)) out.push(records[i + 1]!.at - records[i]!.at);
  return out;
}

async function expectTypedEnd(rig: Rig, final: SyncView, expected: Expected): Promise<void> {
  expect(final.active).toBe(false);
  expect(final.status, JSON.stringify(final.error)).toBe(expected.status);
  if (expected.status === 'FAILED') {
    expect(SyncError.safeParse(final.error).success, JSON.stringify(final.error)).toBe(true);
    expect(final.error!.code).toBe(expected.code);
    if (expected.retryable !== undefined) expect(final.error!.retryable).toBe(expected.retryable);
    expect(final.result).toBeNull();
  } else {
    expect(final.error).toBeNull();
    expect(SyncResult.safeParse(final.result).success).toBe(true);
  }
  // One unbroken chain of committed transitions ending in the terminal state.
  const history = await rig.engine.history(final.syncId);
  history.forEach((t, i) => {
    expect(t.seq).toBe(i + 1);
    if (i > 0) expect(t.from).toBe(history[i - 1]!.to);
  });
  expect(history.at(-1)?.to).toBe(final.status);
  // The connection's single-flight lock is released.
  expect((await rig.engine.getConnection(final.connectionId)).activeSyncId).toBeNull();
  expect(await rig.store.listTimers(final.syncId)).toEqual([]);
}

const RETRY_AFTER_CASES: { value: string; gap: (p: SyncPolicy) => number; why: string }[] = [
  { value: '1e12', gap: (p) => p.retryBaseMs, why: 'absurd, not delay-seconds: ignored, exponential backoff' },
  { value: '1000000000000', gap: (p) => p.retryBaseMs, why: 'absurd (31,000 years): ignored' },
  { value: '-5', gap: (p) => p.retryBaseMs, why: 'negative: ignored' },
  { value: 'NaN', gap: (p) => p.retryBaseMs, why: 'garbage: ignored' },
  { value: 'Wed, 21 Oct 2015 07:28:00 GMT', gap: (p) => p.retryBaseMs, why: 'HTTP-date in the past: ignored' },
  { value: '3', gap: (p) => Math.min(p.retryMaxMs, Math.max(p.retryBaseMs, 3_000)), why: 'honoured' },
];

function faultCases(fx: FamilyFixture, policy: SyncPolicy): FaultCase[] {
  const respond = (status: number, headers?: Record<string, string>) =>
    ({ kind: 'respond', status, body: JSON.stringify({ error: { code: status === 429 ? 'RATE_LIMITED' : 'SERVICE_UNAVAILABLE', message: 'injected' } }), ...(headers ? { headers } : {}) }) as const;
  const cases: FaultCase[] = [
    // ---- trigger ----
    {
      name: 'trigger: 503 burst of 3, then the provider recovers',
      scenario: 'success',
      rules: (kind) => [{ name: '503', match: kind('trigger'), action: respond(503), times: 3 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls, policy: p }) => {
        expect(calls('trigger')).toHaveLength(4);
        expectBackoff(gaps(calls('trigger')), p);
      },
    },
    {
      name: 'trigger: 503 forever -> PROVIDER_UNAVAILABLE after maxTriggerAttempts, with growing gaps',
      scenario: 'success',
      rules: (kind) => [{ name: '503', match: kind('trigger'), action: respond(503) }],
      expect: { status: 'FAILED', code: 'PROVIDER_UNAVAILABLE', retryable: true },
      syncsStarted: 0,
      check: ({ calls, policy: p }) => {
        expect(calls('trigger')).toHaveLength(p.maxTriggerAttempts);
        expectBackoff(gaps(calls('trigger')), p);
      },
    },
    {
      name: 'trigger: connection reset before the provider saw it (twice)',
      scenario: 'success',
      rules: (kind) => [{ name: 'reset', match: kind('trigger'), action: { kind: 'reset' }, times: 2 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls, policy: p }) => {
        expect(calls('trigger')).toHaveLength(3);
        expectBackoff(gaps(calls('trigger')), p);
      },
    },
    {
      name: 'trigger: connection reset after the provider started the sync (response lost)',
      scenario: 'success',
      rules: (kind) => [{ name: 'reset-after', match: kind('trigger'), action: { kind: 'reset', forward: true }, times: 1 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls }) => expect(calls('trigger').length).toBeLessThanOrEqual(2),
    },
    {
      name: 'trigger: provider hangs past the adapter timeout before seeing the request',
      scenario: 'success',
      rules: (kind) => [{ name: 'hang', match: kind('trigger'), action: { kind: 'hang' }, times: 1 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls }) => expect(calls('trigger')).toHaveLength(2),
    },
    {
      name: 'trigger: provider started the sync but its answer never comes (adapter timeout)',
      scenario: 'success',
      rules: (kind) => [{ name: 'hang-after', match: kind('trigger'), action: { kind: 'hang', forward: true }, times: 1 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls }) => expect(calls('trigger').length).toBeLessThanOrEqual(2),
    },
    {
      name: 'trigger: provider started the sync, the answer is cut off mid-body',
      scenario: 'success',
      rules: (kind) => [{ name: 'truncate-abort', match: kind('trigger'), action: { kind: 'truncate', declareFullLength: true }, times: 1 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls }) => expect(calls('trigger').length).toBeLessThanOrEqual(2),
    },
    {
      name: 'trigger: provider started the sync, the answer is truncated JSON',
      scenario: 'success',
      rules: (kind) => [{ name: 'truncate', match: kind('trigger'), action: { kind: 'truncate' }, times: 1 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls }) => expect(calls('trigger').length).toBeLessThanOrEqual(2),
    },
    ...RETRY_AFTER_CASES.map(
      ({ value, gap, why }): FaultCase => ({
        name: `trigger: 429 with Retry-After ${JSON.stringify(value)} (${why})`,
        scenario: 'success',
        rules: (kind) => [{ name: '429', match: kind('trigger'), action: respond(429, { 'retry-after': value }), times: 1 }],
        expect: { status: 'COMPLETED' },
        check: ({ calls, policy: p }) => {
          expect(calls('trigger')).toHaveLength(2);
          expect(gaps(calls('trigger'))).toEqual([gap(p)]);
        },
      }),
    ),
    // Issue #13: a Retry-After longer than a sync waits in place is not cut short (it used to be retried at our
    // cap): the sync ends with the provider's time and the connection schedules the next attempt then.
    {
      name: 'trigger: 429 with Retry-After "86400" (one day: never retried early; the sync ends carrying it)',
      scenario: 'success',
      rules: (kind) => [{ name: '429', match: kind('trigger'), action: respond(429, { 'retry-after': '86400' }), times: 1 }],
      expect: { status: 'FAILED', code: 'RATE_LIMITED', retryable: true },
      syncsStarted: 0,
      check: ({ calls, final }) => {
        expect(calls('trigger')).toHaveLength(1);
        expect(final.error?.retryAfterMs).toBe(86_400_000);
        expect(final.nextAttemptAt).toBe(final.updatedAt + 86_400_000);
      },
    },
    {
      name: 'trigger: 429 forever with Retry-After 1e12 -> RATE_LIMITED, bounded in calls and time',
      scenario: 'success',
      rules: (kind) => [{ name: '429', match: kind('trigger'), action: respond(429, { 'retry-after': '1e12' }) }],
      expect: { status: 'FAILED', code: 'RATE_LIMITED', retryable: true },
      syncsStarted: 0,
      check: ({ calls, policy: p }) => {
        const triggers = calls('trigger');
        expect(triggers).toHaveLength(p.maxTriggerAttempts);
        expectBackoff(gaps(triggers), p);
        expect(triggers.at(-1)!.at - triggers[0]!.at).toBeLessThanOrEqual(p.maxTriggerAttempts * p.retryMaxMs);
      },
    },
    // ---- poll ----
    {
      name: `poll: 503 burst just below maxConsecutivePollErrors, then the provider recovers`,
      scenario: 'success',
      rules: (kind) => [{ name: '503', match: kind('poll'), action: respond(503), times: policy.maxConsecutivePollErrors - 1 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls, policy: p }) => expectBackoff(gapsAfterFailures(calls('poll')), p),
    },
    {
      name: 'poll: 503 forever -> PROVIDER_UNAVAILABLE after exactly maxConsecutivePollErrors polls',
      scenario: 'success',
      rules: (kind) => [{ name: '503', match: kind('poll'), action: respond(503) }],
      expect: { status: 'FAILED', code: 'PROVIDER_UNAVAILABLE', retryable: true },
      check: ({ calls, policy: p }) => {
        const faulted = calls('poll').filter((r) => r.fault !== null);
        expect(faulted).toHaveLength(p.maxConsecutivePollErrors);
        expect(calls('trigger')).toHaveLength(1);
        expectBackoff(gaps(faulted), p);
      },
    },
    {
      name: 'poll: 429 with absurd Retry-After (1e12) twice',
      scenario: 'success',
      rules: (kind) => [{ name: '429', match: kind('poll'), action: respond(429, { 'retry-after': '1e12' }), times: 2 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls, policy: p }) => expectBackoff(gapsAfterFailures(calls('poll')), p),
    },
    {
      name: 'poll: provider hangs past the adapter timeout',
      scenario: 'success',
      rules: (kind) => [{ name: 'hang', match: kind('poll'), action: { kind: 'hang' }, times: 1 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls, policy: p }) => expectBackoff(gapsAfterFailures(calls('poll')), p),
    },
    {
      name: 'poll: connection reset before the provider saw it (twice)',
      scenario: 'success',
      rules: (kind) => [{ name: 'reset', match: kind('poll'), action: { kind: 'reset' }, times: 2 }],
      expect: { status: 'COMPLETED' },
      check: ({ calls, policy: p }) => expectBackoff(gapsAfterFailures(calls('poll')), p),
    },
    {
      name: 'poll: connection reset after the provider answered (twice)',
      scenario: 'success',
      rules: (kind) => [{ name: 'reset-after', match: kind('poll'), action: { kind: 'reset', forward: true }, times: 2 }],
      expect: { status: 'COMPLETED' },
    },
    {
      name: 'poll: slow body that outlasts the adapter timeout',
      scenario: 'success',
      rules: (kind) => [{ name: 'slow', match: kind('poll'), action: { kind: 'slow-body', chunkBytes: 8, intervalMs: 60 }, times: 1 }],
      expect: { status: 'COMPLETED' },
      check: async ({ rig, final }) => {
        expect(await pollFailures(rig, final.syncId)).toEqual({ count: 1, last: 'PROVIDER_UNAVAILABLE' });
      },
    },
    {
      name: 'poll: slow body within the adapter timeout is not a failure',
      scenario: 'success',
      rules: (kind) => [{ name: 'slow-ok', match: kind('poll'), action: { kind: 'slow-body', chunkBytes: 128, intervalMs: 5 } }],
      expect: { status: 'COMPLETED' },
      check: async ({ rig, final }) => {
        expect(await pollFailures(rig, final.syncId)).toEqual({ count: 0, last: null });
      },
    },
    {
      name: 'poll: truncated JSON with a matching Content-Length (twice)',
      scenario: 'success',
      rules: (kind) => [{ name: 'truncate', match: kind('poll'), action: { kind: 'truncate' }, times: 2 }],
      expect: { status: 'COMPLETED' },
      check: async ({ rig, final, calls, policy: p }) => {
        expect(await pollFailures(rig, final.syncId)).toEqual({ count: 2, last: 'INVALID_RESPONSE' });
        expectBackoff(gapsAfterFailures(calls('poll')), p);
      },
    },
    {
      name: 'poll: body cut off mid-stream (connection dropped, twice)',
      scenario: 'success',
      rules: (kind) => [{ name: 'truncate-abort', match: kind('poll'), action: { kind: 'truncate', declareFullLength: true }, times: 2 }],
      expect: { status: 'COMPLETED' },
    },
    {
      name: 'poll: truncated JSON forever -> INVALID_RESPONSE after exactly maxConsecutivePollErrors polls',
      scenario: 'success',
      rules: (kind) => [{ name: 'truncate', match: kind('poll'), action: { kind: 'truncate', keep: 0.3 } }],
      expect: { status: 'FAILED', code: 'INVALID_RESPONSE' },
      check: ({ calls, policy: p }) => expect(calls('poll').filter((r) => r.fault !== null)).toHaveLength(p.maxConsecutivePollErrors),
    },
    ...fx.unknownValues.map((u): FaultCase => {
      let applied = 0;
      return {
        name: `poll: undocumented ${u.name} -> UNKNOWN_PROVIDER_STATUS (never success, never retried)`,
        scenario: u.scenario,
        rules: (kind) => {
          applied = 0;
          const transform = (body: unknown) => {
            const out = u.transform(body);
            if (out !== body) applied += 1;
            return out;
          };
          return [{ name: 'unknown', match: kind('poll'), action: { kind: 'rewrite', transform } }];
        },
        expect: { status: 'FAILED', code: 'UNKNOWN_PROVIDER_STATUS', retryable: false },
        // The first read carrying the unknown value ends the sync: it is neither retried nor read again.
        check: () => expect(applied).toBe(1),
      };
    }),
    // ---- credentials ----
    {
      name: 'credential failure: not retried, the connection needs the user',
      scenario: 'credentials',
      rules: () => [],
      expect: { status: 'FAILED', code: fx.credentialsFailure.code, retryable: false },
      check: async ({ rig, calls, connectionId, final }) => {
        expect(calls('trigger')).toHaveLength(1);
        expect(final.error!.userActionRequired).toBe(true);
        const connection = await rig.engine.getConnection(connectionId);
        expect(connection.state).toBe('NEEDS_USER');
        expect(connection.autosyncRefusal).not.toBeNull();
        await expect(rig.engine.requestSync({ connectionId, provider: rig.family, unattended: true })).rejects.toMatchObject({ code: 'SYNC_REFUSED' });
        await rig.quiesce(final.syncId);
        expect(calls('trigger')).toHaveLength(1);
      },
    },
  ];
  if ('correctTan' in fx.embedded) {
    cases.push(
      {
        name: 'answer: connection reset after the bank got the TAN (never resent)',
        scenario: 'embedded',
        rules: (kind) => [{ name: 'reset-after', match: kind('answer'), action: { kind: 'reset', forward: true }, times: 1 }],
        expect: { status: 'COMPLETED' },
        check: ({ calls, answersAtProvider }) => {
          expect(calls('answer')).toHaveLength(1);
          expect(answersAtProvider).toBe(1);
        },
      },
      {
        name: 'answer: the bank got the TAN, its answer never comes (adapter timeout; never resent)',
        scenario: 'embedded',
        rules: (kind) => [{ name: 'hang-after', match: kind('answer'), action: { kind: 'hang', forward: true }, times: 1 }],
        expect: { status: 'COMPLETED' },
        check: ({ calls, answersAtProvider }) => {
          expect(calls('answer')).toHaveLength(1);
          expect(answersAtProvider).toBe(1);
        },
      },
    );
  }
  return cases;
}

describe.each(FAMILIES)('fault injection over HTTP: %s', (family) => {
  const fixture = FAMILY_FIXTURES[family];
  if (!fixture) {
    it('has a reliability fixture', () => {
      fixtureFor(family);
    });
    return;
  }
  let rig: Rig;
  beforeAll(async () => {
    rig = await startRig(family);
  });
  afterAll(() => rig?.close());
  afterEach(() => {
    rig.proxy.clearFaults();
    rig.relay.mode = 'drop';
    rig.relay.held.length = 0;
  });

  async function run(c: FaultCase) {
    const fx = rig.fixture;
    const connectionId = await rig.connect(c.scenario);
    const from = rig.proxy.log.length;
    rig.relay.mode = c.webhooks ?? 'drop';
    // Poll faults hit reads of a started provider sync only (some families read the same resource before triggering).
    const triggered = () => rig.calls(from, 'trigger').some((r) => r.status !== null && r.status < 300);
    const kind = (k: CallKind): FaultRule['match'] => (r) => fx.classify(r.method, r.path) === k && (k !== 'poll' || triggered());
    for (const rule of c.rules(kind)) rig.proxy.inject(rule);
    const view = await rig.engine.requestSync({ connectionId, provider: family });
    const answers = c.scenario === 'embedded' && 'correctTan' in fx.embedded ? [fx.embedded.correctTan] : [];
    const final = await rig.drive(view.syncId, { answers });
    const counters = fx.counters(rig.sandbox.stats(), connectionId);
    return {
      rig,
      fx,
      policy: rig.policy,
      final,
      connectionId,
      calls: (kind?: CallKind) => rig.calls(from, kind),
      syncsStarted: counters.syncsStarted,
      answersAtProvider: counters.answers,
    } satisfies CaseContext;
  }

  for (const c of faultCases(fixture, defaultSyncPolicy)) {
    it(c.name, async () => {
      const ctx = await run(c);
      await expectTypedEnd(ctx.rig, ctx.final, c.expect);
      expect(ctx.syncsStarted, 'provider syncs started').toBe(c.syncsStarted ?? 1);
      // Bounded: never more trigger attempts than the policy allows.
      expect(ctx.calls('trigger').length).toBeLessThanOrEqual(ctx.policy.maxTriggerAttempts);
      await c.check?.(ctx);
    });
  }

  // ---- webhooks: duplicate, late, out of order, unknown ----

  const scenarioWithUser = (fx: FamilyFixture): { scenario: FixtureScenario; answers: string[] } =>
    'correctTan' in fx.embedded ? { scenario: 'embedded', answers: [fx.embedded.correctTan] } : { scenario: 'success', answers: [] };

  if ('unsupported' in fixture.webhook) {
    it.skip(`duplicate and late webhooks — not applicable: ${fixture.webhook.unsupported}`, () => {});
  } else {
    it('duplicate and late webhooks after the end are acknowledged and change nothing', async () => {
      const fx = rig.fixture;
      const { scenario, answers } = scenarioWithUser(fx);
      const connectionId = await rig.connect(scenario);
      rig.relay.mode = 'pass';
      const before = rig.relay.captured.length;
      const view = await rig.engine.requestSync({ connectionId, provider: family });
      const final = await rig.drive(view.syncId, { answers });
      expect(final.status).toBe('COMPLETED');
      const deliveries = rig.relay.captured.slice(before);
      expect(deliveries.length, 'the sandbox sent webhooks').toBeGreaterThan(0);
      const dump = dumpSqlite(rig.store);
      const events: string[] = [];
      const off = ['sync.updated', 'sync.awaitingUser', 'sync.completed', 'sync.failed', 'connection.updated'].map((name) =>
        rig.engine.events.on(name as 'sync.updated', () => events.push(name)),
      );
      for (let round = 0; round < 2; round++) {
        for (const delivery of [...deliveries].reverse()) {
          const reply = await rig.relay.deliver(delivery);
          expect(reply.status).toBe(202);
          expect(JSON.parse(reply.body)).toEqual({ applied: false, syncId: final.syncId, verified: false });
        }
      }
      off.forEach((f) => f());
      expect(dumpSqlite(rig.store)).toBe(dump);
      expect(events).toEqual([]);
      expect(fx.counters(rig.sandbox.stats(), connectionId).syncsStarted).toBe(1);
    });

    // Regression for finX: its readings carried no rank, so a late callback moved AWAIT_AUTH back to RUNNING.
    it('late, duplicate and out-of-order webhooks during the sync never move it backwards', async () => {
      const fx = rig.fixture;
      const { scenario, answers } = scenarioWithUser(fx);
      const connectionId = await rig.connect(scenario);
      rig.relay.mode = 'hold';
      const first = rig.relay.captured.length;
      const view = await rig.engine.requestSync({ connectionId, provider: family });
      const prompts: string[] = [];
      const off = rig.engine.events.on('sync.awaitingUser', (v) => v.syncId === view.syncId && prompts.push(v.challenge!.id));
      const regressions: string[] = [];
      const final = await rig.drive(view.syncId, {
        answers,
        // Every delivery the sandbox made so far describes a provider state the engine has already read by
        // polling. Replayed now, newest first and oldest last, each one is a duplicate or a late, out-of-order
        // callback: none may change where the sync is.
        onQuiescent: async (current) => {
          rig.relay.held.length = 0;
          // After the first regression, stop replaying so the sync can finish and the test reports it.
          if (regressions.length > 0) return;
          const history = rig.relay.captured.slice(first).reverse();
          for (const delivery of history) await rig.relay.deliver(delivery);
          const after = await rig.quiesce(view.syncId);
          // Unsigned deliveries are hints: the engine reads the provider, which may have moved on (forward:
          // to the end, or to a challenge never seen). Back to an earlier challenge or state is a regression.
          const seenBefore = new Set(prompts.slice(0, -1));
          const backwards =
            after.status === 'QUEUED' ||
            after.status === 'FAILED' ||
            (after.challenge !== null && after.challenge !== undefined && after.challenge.id !== current.challenge?.id && seenBefore.has(after.challenge.id)) ||
            (after.status === current.status && after.state !== current.state && !after.state.startsWith('AWAIT_AUTH'));
          if (backwards) {
            regressions.push(
              `${current.state}${current.challenge ? ` (challenge ${current.challenge.kind})` : ''} -> ${after.state}${after.challenge ? ` (challenge ${after.challenge.kind})` : ''} ` +
                `after replaying ${history.length} earlier deliveries`,
            );
          }
        },
      });
      off();
      expect(regressions).toEqual([]);
      expect(final.status).toBe('COMPLETED');
      expect(new Set(prompts).size, 'the user is asked once per challenge').toBe(prompts.length);
      const counters = fx.counters(rig.sandbox.stats(), connectionId);
      expect(counters.syncsStarted).toBe(1);
      expect(counters.answers).toBe(answers.length);
    });
  }

  it('a webhook about a provider sync nobody requested is acknowledged (or rejected) and changes nothing', async () => {
    const fx = rig.fixture;
    const connectionId = await rig.connect('success');
    const from = rig.proxy.log.length;
    const view = await rig.engine.requestSync({ connectionId, provider: family });
    await rig.drive(view.syncId, { until: (v) => v.state === 'RUNNING.Waiting' });
    const dump = dumpSqlite(rig.store);
    const calls = rig.proxy.log.length;
    const body = 'unsupported' in fx.webhook ? JSON.stringify({ event: 'update.finished', processId: 'proc_nobody' }) : fx.webhook.unknownSync('nobody');
    const reply = await rig.relay.deliver({ headers: { 'content-type': 'application/json' }, body });
    if ('unsupported' in fx.webhook) {
      expect(reply.status).toBe(400);
      expect(JSON.parse(reply.body).error.code).toBe('INVALID_WEBHOOK');
    } else {
      expect(reply.status).toBe(202);
      expect(JSON.parse(reply.body)).toEqual({ applied: false, syncId: null, verified: false });
    }
    await rig.quiesce(view.syncId);
    expect(dumpSqlite(rig.store)).toBe(dump);
    expect(rig.proxy.log.length).toBe(calls);
    const final = await rig.drive(view.syncId);
    expect(final.status).toBe('COMPLETED');
    expect(rig.calls(from, 'trigger')).toHaveLength(1);
  });

  // ---- an answer that never reached the bank is not resent by the engine ----

  if ('unsupported' in fixture.embedded) {
    it.skip(`answer lost before it reached the bank — not applicable: ${fixture.embedded.unsupported}`, () => {});
  } else {
    for (const [what, action] of [
      ['connection reset', { kind: 'reset' }],
      ['503', { kind: 'respond', status: 503, body: '{"error":{"code":"SERVICE_UNAVAILABLE"}}' }],
    ] as const) {
      it(`answer: ${what} before the bank got the TAN: never resent by the engine; the user answers again`, async () => {
        const fx = rig.fixture;
        const tan = (fx.embedded as { correctTan: string }).correctTan;
        const connectionId = await rig.connect('embedded');
        const from = rig.proxy.log.length;
        rig.proxy.inject({ name: 'lost-answer', match: (r) => fx.classify(r.method, r.path) === 'answer', action, times: 1 });
        const view = await rig.engine.requestSync({ connectionId, provider: family });
        const waiting = await rig.drive(view.syncId, {
          answers: [tan],
          until: (v) => v.state === 'AWAIT_AUTH.AwaitingUser' && rig.calls(from, 'answer').length === 1,
        });
        // The engine keeps waiting for the user: several check rounds, and still one answer call, none at the bank.
        for (let i = 0; i < 3; i++) await rig.advance(view.syncId);
        expect(rig.calls(from, 'answer')).toHaveLength(1);
        expect(fx.counters(rig.sandbox.stats(), connectionId).answers).toBe(0);
        const current = await rig.engine.get(view.syncId);
        expect(current.status).toBe('AWAIT_AUTH');
        expect(current.challenge?.id).toBe(waiting.challenge?.id);
        await rig.engine.submitChallengeResponse(view.syncId, { challengeId: current.challenge!.id, response: tan });
        const final = await rig.drive(view.syncId);
        await expectTypedEnd(rig, final, { status: 'COMPLETED' });
        expect(rig.calls(from, 'answer')).toHaveLength(2);
        expect(fx.counters(rig.sandbox.stats(), connectionId)).toEqual({ syncsStarted: 1, answers: 1 });
      });
    }
  }
});
