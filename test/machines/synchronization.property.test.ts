/**
 * Property tests for the synchronization machine: random interleavings of provider pushes, user answers,
 * cancellation, effect outcomes and the passage of (simulated) time, checked against the finX state diagram.
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import type { Challenge, EffectFailure, Observation } from '../../machines/canonical.js';
import { statusOf, type AnswerInput, type SyncPolicy, type SyncStatus } from '../../machines/synchronization.js';
import { createHarness, iso, RESULT, type Harness, type SyncSnapshot } from './harness.js';

const POLICY: SyncPolicy = {
  pollBaseMs: 1_000,
  pollMaxMs: 8_000,
  authPollMs: 5_000,
  retryBaseMs: 1_000,
  retryMaxMs: 10_000,
  // Exact delays are asserted here; jitter has its own tests.
  jitterRatio: 0,
  maxTriggerAttempts: 3,
  maxConsecutivePollErrors: 3,
  defaultChallengeTtlMs: 60_000,
  syncDeadlineMs: 600_000,
};

// ---------------------------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------------------------

type ChallengeSpec = { id: string; kind: Challenge['kind']; ttlMs: number | null; previousAttemptFailed: boolean };
/** `progress`: the provider's optional lifecycle rank of the reading. */
type ObsSpec = (
  | { status: 'QUEUED' | 'RUNNING' | 'COMPLETED' | 'FAILED' }
  | { status: 'AWAIT_AUTH'; challenge: ChallengeSpec }
) & { progress?: number };
type FailureSpec = { code: EffectFailure['code']; retryable: boolean; retryAfterMs?: number } | 'unclassified';

type Command =
  | { kind: 'push'; obs: ObsSpec }
  | { kind: 'answer'; current: boolean; id: string }
  | { kind: 'cancel' }
  | { kind: 'resolve'; obs: ObsSpec }
  | { kind: 'reject'; failure: FailureSpec }
  | { kind: 'advance'; ms: number };

const challengeSpec: fc.Arbitrary<ChallengeSpec> = fc.record({
  id: fc.constantFrom('c1', 'c2', 'c3'),
  kind: fc.constantFrom<Challenge['kind']>('EMBEDDED', 'EMBEDDED', 'DECOUPLED', 'REDIRECT', 'WEB_FORM'),
  ttlMs: fc.oneof(fc.integer({ min: -2_000, max: 120_000 }), fc.constant(null)),
  previousAttemptFailed: fc.boolean(),
});
const obsSpec: fc.Arbitrary<ObsSpec> = fc
  .tuple(
    fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom({ status: 'RUNNING' as const }, { status: 'QUEUED' as const }) },
      { weight: 3, arbitrary: challengeSpec.map((challenge) => ({ status: 'AWAIT_AUTH' as const, challenge })) },
      { weight: 1, arbitrary: fc.constant({ status: 'COMPLETED' as const }) },
      { weight: 1, arbitrary: fc.constant({ status: 'FAILED' as const }) },
    ),
    fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined, freq: 2 }),
  )
  .map(([o, progress]): ObsSpec => (progress === undefined ? o : { ...o, progress }));
const failureSpec: fc.Arbitrary<FailureSpec> = fc.oneof(
  fc.record({
    code: fc.constantFrom<EffectFailure['code']>('PROVIDER_UNAVAILABLE', 'RATE_LIMITED', 'PROVIDER_BUSY'),
    retryable: fc.constant(true),
    retryAfterMs: fc.option(fc.integer({ min: -1_000, max: 100_000 }), { nil: undefined }),
  }),
  fc.record({
    code: fc.constantFrom<EffectFailure['code']>('SCA_FAILED', 'INVALID_CREDENTIALS', 'BANK_REJECTED', 'PROVIDER_ERROR'),
    retryable: fc.boolean(),
  }),
  fc.constant('unclassified' as const),
);
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 2, arbitrary: obsSpec.map((obs) => ({ kind: 'push' as const, obs })) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('answer' as const), current: fc.boolean(), id: fc.constantFrom('c1', 'c2', 'c3', 'zz') }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'cancel' as const }) },
  { weight: 5, arbitrary: obsSpec.map((obs) => ({ kind: 'resolve' as const, obs })) },
  { weight: 3, arbitrary: failureSpec.map((failure) => ({ kind: 'reject' as const, failure })) },
  {
    weight: 5,
    arbitrary: fc
      .oneof(fc.integer({ min: 0, max: 6_000 }), fc.integer({ min: 0, max: 200_000 }))
      .map((ms) => ({ kind: 'advance' as const, ms })),
  },
);
const commands = fc.array(command, { minLength: 1, maxLength: 40 });

// ---------------------------------------------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------------------------------------------

function toObservation(spec: ObsSpec, now: number): Observation {
  const o = baseObservation(spec, now);
  return spec.progress === undefined ? o : { ...o, progress: spec.progress };
}
function baseObservation(spec: ObsSpec, now: number): Observation {
  switch (spec.status) {
    case 'QUEUED':
    case 'RUNNING':
      return { status: spec.status };
    case 'COMPLETED':
      return { status: 'COMPLETED', result: RESULT };
    case 'FAILED':
      return { status: 'FAILED', error: { code: 'BANK_REJECTED', retryable: false, userActionRequired: false, message: 'no' } };
    case 'AWAIT_AUTH': {
      const c = spec.challenge;
      return {
        status: 'AWAIT_AUTH',
        challenge: {
          id: c.id,
          kind: c.kind,
          expiresAt: c.ttlMs === null ? 'whenever' : iso(now + c.ttlMs),
          ...(c.previousAttemptFailed ? { previousAttemptFailed: true } : {}),
        },
      };
    }
  }
}

function toFailure(spec: FailureSpec): unknown {
  if (spec === 'unclassified') return new Error('socket hang up');
  return {
    code: spec.code,
    retryable: spec.retryable,
    userActionRequired: spec.code === 'SCA_FAILED' || spec.code === 'INVALID_CREDENTIALS',
    message: `${spec.code} (property)`,
    ...(spec.retryAfterMs === undefined ? {} : { retryAfterMs: spec.retryAfterMs }),
  } satisfies EffectFailure;
}

const FINAL: ReadonlySet<SyncStatus> = new Set(['COMPLETED', 'FAILED']);

interface Run {
  h: Harness;
  /** CHALLENGE.ANSWER events sent that named the currently shown EMBEDDED challenge while in AWAIT_AUTH. */
  acceptableAnswers: number;
}

async function run(cmds: Command[]): Promise<Run> {
  const h = createHarness({ policy: POLICY });
  let acceptableAnswers = 0;

  for (const cmd of cmds) {
    const before = h.snapshot();
    const wasFinal = FINAL.has(statusOf(before.value));
    const answersBefore = h.calls('answer').length;
    let acceptedResponseRef: string | null = null;

    switch (cmd.kind) {
      case 'push':
        await h.push(toObservation(cmd.obs, h.clock.now()));
        break;
      case 'answer': {
        const shown = before.context.challenge;
        const challengeId = cmd.current && shown ? shown.id : cmd.id;
        const responseRef = `resp-${h.history.length}`;
        if (before.status === 'active' && statusOf(before.value) === 'AWAIT_AUTH' && shown?.kind === 'EMBEDDED' && shown.id === challengeId) {
          acceptableAnswers++;
          acceptedResponseRef = responseRef;
        }
        await h.answer(challengeId, responseRef);
        break;
      }
      case 'cancel':
        await h.send({ type: 'CANCEL', reason: 'property' });
        break;
      case 'resolve': {
        const [id] = h.inFlight();
        if (id) await h.resolve(id, toObservation(cmd.obs, h.clock.now()));
        break;
      }
      case 'reject': {
        const [id] = h.inFlight();
        if (id) await h.reject(id, toFailure(cmd.failure));
        break;
      }
      case 'advance':
        await h.advance(cmd.ms);
        break;
    }

    const after = h.snapshot();
    // out-of-order pushes: one ranked below the highest rank already applied changes nothing
    if (cmd.kind === 'push' && cmd.obs.progress !== undefined && cmd.obs.progress < before.context.progress) {
      expect(after.value).toEqual(before.value);
      expect(after.context).toEqual(before.context);
    }
    // (a) final states are absorbing and the actor is done
    if (wasFinal) {
      expect(after.value).toEqual(before.value);
      expect(after.output).toEqual(before.output);
    }
    if (FINAL.has(statusOf(after.value))) {
      expect(after.status).toBe('done');
      expect(h.inFlight()).toEqual([]);
    } else {
      expect(after.status).toBe('active');
    }
    // (d) the answer effect only ever starts in direct response to an accepted CHALLENGE.ANSWER, with its response
    const newAnswers = h.calls('answer').slice(answersBefore) as AnswerInput[];
    if (acceptedResponseRef === null) {
      expect(newAnswers, `answerChallenge invoked without an accepted answer (${cmd.kind})`).toEqual([]);
    } else {
      expect(newAnswers.length).toBeLessThanOrEqual(1);
      for (const a of newAnswers) expect(a.responseRef).toBe(acceptedResponseRef);
    }
    // at most one provider call is in flight at any time
    expect(h.inFlight().length).toBeLessThanOrEqual(1);
  }
  return { h, acceptableAnswers };
}

/** Allowed edges between canonical statuses (finX v2.11 "Background operations"). */
const ALLOWED: Record<SyncStatus, ReadonlySet<SyncStatus>> = {
  QUEUED: new Set(['RUNNING', 'AWAIT_AUTH', 'COMPLETED', 'FAILED']),
  RUNNING: new Set(['AWAIT_AUTH', 'COMPLETED', 'FAILED']),
  AWAIT_AUTH: new Set(['RUNNING', 'AWAIT_AUTH', 'COMPLETED', 'FAILED']),
  COMPLETED: new Set(),
  FAILED: new Set(),
};

/** The status-level edges of a run: changes of status, plus AWAIT_AUTH -> AWAIT_AUTH when a new challenge is shown. */
function edges(history: SyncSnapshot[]): Array<{ from: SyncStatus; to: SyncStatus; prev: SyncSnapshot; next: SyncSnapshot }> {
  const out: Array<{ from: SyncStatus; to: SyncStatus; prev: SyncSnapshot; next: SyncSnapshot }> = [];
  for (let i = 1; i < history.length; i++) {
    const prev = history[i - 1]!;
    const next = history[i]!;
    const from = statusOf(prev.value);
    const to = statusOf(next.value);
    if (from !== to || (to === 'AWAIT_AUTH' && next.context.challengesSeen > prev.context.challengesSeen)) {
      out.push({ from, to, prev, next });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------------------------

describe('synchronization machine properties', () => {

  test.prop([commands], { numRuns: 400 })('final states are absorbing; only diagram edges are taken; answers are never auto-submitted', async (cmds) => {
    const { h, acceptableAnswers } = await run(cmds);

    // (b) only allowed edges, and a self-edge on AWAIT_AUTH means a genuinely new (or re-issued after rejection) challenge
    for (const e of edges(h.history)) {
      expect(ALLOWED[e.from].has(e.to), `${e.from} -> ${e.to}`).toBe(true);
      if (e.from === 'AWAIT_AUTH' && e.to === 'AWAIT_AUTH') {
        const was = e.prev.context.challenge;
        const now = e.next.context.challenge;
        expect(now).not.toBeNull();
        expect(now!.id !== was?.id || now!.previousAttemptFailed === true, 'AWAIT_AUTH re-entered for the same challenge').toBe(true);
      }
    }

    // (c) never both COMPLETED and FAILED, never COMPLETED after FAILED (or vice versa); output agrees with the state
    const finals = h.statuses().filter((s) => FINAL.has(s));
    expect(finals.length).toBeLessThanOrEqual(1);
    const final = h.snapshot();
    if (final.value === 'COMPLETED') {
      expect(final.output).toEqual({ status: 'COMPLETED', result: RESULT, error: null });
    } else if (final.value === 'FAILED') {
      expect(final.output?.status).toBe('FAILED');
      expect(final.output?.result).toBeNull();
      expect(final.output?.error?.code).toBeTruthy();
    } else {
      expect(final.output).toBeUndefined();
    }

    // (d) answerChallenge never runs more often than answers were accepted
    expect(h.calls('answer').length).toBeLessThanOrEqual(acceptableAnswers);

    // effect keys stay unique over the whole run
    const keys = h.effectKeys();
    expect(new Set(keys).size).toBe(keys.length);
  });

  test.prop([commands, fc.integer({ min: 0, max: 39 })], { numRuns: 300 })(
    'once finished, nothing moves it: any further events and time leave state and output unchanged',
    async (cmds, cut) => {
      // force a terminal state part-way through, then keep throwing the rest of the sequence at it
      const head = cmds.slice(0, cut % (cmds.length + 1));
      const { h } = await run([...head, { kind: 'cancel' }]);
      const final = h.snapshot();
      expect(FINAL.has(statusOf(final.value))).toBe(true);
      const calls = h.invocations.length;
      for (const cmd of cmds) {
        switch (cmd.kind) {
          case 'push':
            await h.push(toObservation(cmd.obs, h.clock.now()));
            break;
          case 'answer':
            await h.answer(cmd.id);
            break;
          case 'cancel':
            await h.send({ type: 'CANCEL' });
            break;
          case 'advance':
            await h.advance(cmd.ms);
            break;
          default:
            break;
        }
        expect(h.snapshot().value).toEqual(final.value);
        expect(h.snapshot().status).toBe('done');
      }
      await h.advance(POLICY.syncDeadlineMs * 2);
      expect(h.snapshot().output).toEqual(final.output);
      expect(h.invocations.length).toBe(calls);
    },
  );

  test.prop([commands], { numRuns: 300 })('the same command sequence always yields the same run (determinism)', async (cmds) => {
    const a = await run(cmds);
    const b = await run(cmds);
    expect(b.h.effectKeys()).toEqual(a.h.effectKeys());
    expect(b.h.history.map((s) => s.value)).toEqual(a.h.history.map((s) => s.value));
    expect(b.h.snapshot().output).toEqual(a.h.snapshot().output);
  });
});
