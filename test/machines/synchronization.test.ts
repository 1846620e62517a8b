/**
 * Behaviour tests for the canonical synchronization machine (finX "Background operations":
 * QUEUED -> RUNNING <-> AWAIT_AUTH -> COMPLETED | FAILED), driven through a live actor on a SimulatedClock
 * with the provider effects replaced by deferred `fromPromise` fakes.
 */
import { describe, expect, it } from 'vitest';
import { defaultSyncPolicy, statusOf, type SyncPolicy } from '../../machines/synchronization.js';
import { challenge, createHarness, failure, obs, RESULT, T0, type Harness } from './harness.js';

const POLICY: SyncPolicy = {
  pollBaseMs: 1_000,
  pollMaxMs: 8_000,
  authPollMs: 5_000,
  retryBaseMs: 1_000,
  retryMaxMs: 20_000,
  // Exact delays are asserted here; jitter has its own tests.
  jitterRatio: 0,
  maxTriggerAttempts: 3,
  maxConsecutivePollErrors: 3,
  defaultChallengeTtlMs: 120_000,
  syncDeadlineMs: 3_600_000,
};

function start(policy: Partial<SyncPolicy> = {}): Harness {
  return createHarness({ policy: { ...POLICY, ...policy } });
}

/** A challenge that expires `ttlMs` after now. */
function tan(h: Harness, id = 'tan-1', ttlMs = 300_000, extra = {}) {
  return challenge(id, 'EMBEDDED', h.clock.now() + ttlMs, extra);
}
function decoupled(h: Harness, id = 'app-1', ttlMs = 300_000) {
  return challenge(id, 'DECOUPLED', h.clock.now() + ttlMs);
}

/** Trigger accepted, provider says RUNNING: the machine waits for its first poll. */
async function running(h: Harness) {
  await h.resolve('trigger', obs.running());
  expect(h.value()).toEqual({ RUNNING: 'Waiting' });
}
/** Let the next poll start and answer it. */
async function poll(h: Harness, observation: Parameters<Harness['resolve']>[1]) {
  const [next] = h.timers().filter((t) => t.type.includes('nextDelay'));
  expect(next, 'a poll is scheduled').toBeDefined();
  await h.advance(next!.dueAt - h.clock.now());
  expect(h.value()).toEqual({ RUNNING: 'Polling' });
  await h.resolve('poll', observation);
}

describe('initial state', () => {
  it('starts QUEUED and triggers the provider once with the sync identity', () => {
    const h = start();
    expect(h.value()).toEqual({ QUEUED: 'Triggering' });
    expect(h.calls('trigger')).toHaveLength(1);
    expect(h.calls('trigger')[0]).toMatchObject({
      syncId: 'sync-1',
      connectionId: 'conn-1',
      provider: 'finx',
      scope: 'TRANSACTIONS',
      providerRef: null,
    });
    expect(h.snapshot().status).toBe('active');
  });

  it('fills unspecified policy fields from the defaults', () => {
    const h = createHarness({ policy: { pollBaseMs: 7 } });
    expect(h.context().policy).toEqual({ ...defaultSyncPolicy, pollBaseMs: 7 });
  });
});

describe('straight success', () => {
  it('QUEUED -> RUNNING -> COMPLETED via polling, passing the provider ref to every poll', async () => {
    const h = start();
    await h.resolve('trigger', obs.running(), { providerRef: 'finx-sync-42' });
    expect(h.context().providerRef).toBe('finx-sync-42');

    await poll(h, obs.running());
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    await poll(h, obs.queued());
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    await poll(h, obs.completed());

    expect(h.value()).toBe('COMPLETED');
    expect(h.snapshot().status).toBe('done');
    expect(h.snapshot().output).toEqual({ status: 'COMPLETED', result: RESULT, error: null });
    expect(h.calls('poll')).toHaveLength(3);
    expect(h.calls('poll').every((i) => i.providerRef === 'finx-sync-42')).toBe(true);
    expect(h.statuses()).toEqual(['QUEUED', 'RUNNING', 'COMPLETED']);
    // Nothing is scheduled any more: the deadline died with the actor.
    await h.advance(POLICY.syncDeadlineMs * 2);
    expect(h.value()).toBe('COMPLETED');
    expect(h.calls('poll')).toHaveLength(3);
  });

  it('the trigger response itself may already be terminal', async () => {
    const done = start();
    await done.resolve('trigger', obs.completed());
    expect(done.value()).toBe('COMPLETED');
    expect(done.snapshot().output?.result).toEqual(RESULT);

    const failed = start();
    await failed.resolve('trigger', obs.failed('ACCESS_UPGRADE'));
    expect(failed.value()).toBe('FAILED');
    expect(failed.snapshot().output).toMatchObject({
      status: 'FAILED',
      result: null,
      error: { code: 'ACCESS_UPGRADE', userActionRequired: true },
    });
    expect(failed.context().providerRef).toBe('ref-1');
  });

  it('the trigger response may go straight to AWAIT_AUTH', async () => {
    const h = start();
    const c = tan(h);
    await h.resolve('trigger', obs.awaitAuth(c));
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    expect(h.context().challenge).toEqual(c);
    expect(h.statuses()).toEqual(['QUEUED', 'AWAIT_AUTH']);
  });
});

describe('push events (PROVIDER.OBSERVED)', () => {
  it('a COMPLETED push finishes the sync before the next poll; a duplicate push is harmless', async () => {
    const h = start();
    await running(h);
    await h.push(obs.completed());
    expect(h.value()).toBe('COMPLETED');
    expect(h.calls('poll')).toHaveLength(0);

    const output = h.snapshot().output;
    await h.push(obs.completed({ outcome: 'NONE', accounts: [] }));
    await h.push(obs.failed());
    await h.advance(60_000);
    expect(h.value()).toBe('COMPLETED');
    expect(h.snapshot().status).toBe('done');
    expect(h.snapshot().output).toEqual(output);
    expect(h.calls('poll')).toHaveLength(0);
  });

  it('a FAILED push fails a running sync with the provider error', async () => {
    const h = start();
    await running(h);
    await h.push(obs.failed('BANK_REJECTED'));
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output?.error?.code).toBe('BANK_REJECTED');
  });

  it('a COMPLETED push while a poll is in flight wins; the late poll result is ignored', async () => {
    const h = start();
    await running(h);
    await h.advance(POLICY.pollBaseMs);
    expect(h.value()).toEqual({ RUNNING: 'Polling' });
    await h.push(obs.completed());
    expect(h.value()).toBe('COMPLETED');
    expect(h.inFlight()).toEqual([]);
  });

  it('RUNNING/QUEUED pushes while running change nothing and keep the poll schedule', async () => {
    const h = start();
    await running(h);
    await h.advance(400);
    await h.push(obs.running());
    await h.push(obs.queued());
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    await h.advance(POLICY.pollBaseMs - 400 - 1);
    expect(h.calls('poll')).toHaveLength(0);
    await h.advance(1);
    expect(h.calls('poll')).toHaveLength(1);
  });

  it('a duplicate AWAIT_AUTH push for the challenge already shown is ignored', async () => {
    const h = start();
    await running(h);
    const c = tan(h);
    await h.push(obs.awaitAuth(c));
    expect(h.context().challengesSeen).toBe(1);
    await h.push(obs.awaitAuth(c));
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    expect(h.context().challengesSeen).toBe(1);
  });
});

describe('out-of-order pushes (provider progress rank)', () => {
  const ranked = (o: ReturnType<typeof obs.running>, progress: number) => ({ ...o, progress });

  it('a push ranked below one already applied is ignored; equal or higher ranks and unranked pushes apply', async () => {
    const h = start();
    await running(h);
    await h.push(ranked(obs.running(), 5));
    expect(h.context().progress).toBe(5);

    await h.push(ranked(obs.awaitAuth(tan(h, 'late')), 3));
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    await h.push(ranked(obs.completed(), 4));
    expect(h.status()).toBe('RUNNING');

    await h.push(ranked(obs.awaitAuth(tan(h, 'tan-5')), 5));
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    expect(h.context().challenge?.id).toBe('tan-5');

    await h.push(ranked(obs.running(), 2));
    expect(h.status()).toBe('AWAIT_AUTH');
    await h.push(obs.running());
    expect(h.status()).toBe('RUNNING');
  });

  it('the highest rank is kept when a lower-ranked reading arrives by poll', async () => {
    const h = start();
    await running(h);
    await h.push(ranked(obs.running(), 7));
    await poll(h, ranked(obs.running(), 2));
    expect(h.context().progress).toBe(7);
  });
});

describe('challenges (AWAIT_AUTH)', () => {
  it('one embedded challenge: RUNNING -> AWAIT_AUTH -> RUNNING -> COMPLETED', async () => {
    const h = start();
    await running(h);
    const c = tan(h, 'tan-1');
    await poll(h, obs.awaitAuth(c));
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });

    await h.answer('tan-1', 'secret-ref-1');
    expect(h.value()).toEqual({ AWAIT_AUTH: 'Answering' });
    expect(h.calls('answer')).toHaveLength(1);
    expect(h.calls('answer')[0]).toMatchObject({ challengeId: 'tan-1', responseRef: 'secret-ref-1', providerRef: 'ref-1' });

    await h.resolve('answer', obs.running());
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    expect(h.context().challenge).toBeNull();
    await poll(h, obs.completed());
    expect(h.statuses()).toEqual(['QUEUED', 'RUNNING', 'AWAIT_AUTH', 'RUNNING', 'COMPLETED']);
  });

  it('two challenges toggle RUNNING/AWAIT_AUTH twice', async () => {
    const h = start();
    await running(h);
    await poll(h, obs.awaitAuth(tan(h, 'tan-1')));
    await h.answer('tan-1');
    await h.resolve('answer', obs.running());
    await poll(h, obs.awaitAuth(tan(h, 'tan-2')));
    expect(h.context().challenge?.id).toBe('tan-2');
    await h.answer('tan-2');
    await h.resolve('answer', obs.completed());

    expect(h.value()).toBe('COMPLETED');
    expect(h.statuses()).toEqual(['QUEUED', 'RUNNING', 'AWAIT_AUTH', 'RUNNING', 'AWAIT_AUTH', 'COMPLETED']);
    expect(h.context().challengesSeen).toBe(2);
    expect(h.calls('answer').map((i) => (i as { challengeId: string }).challengeId)).toEqual(['tan-1', 'tan-2']);
  });

  it('a decoupled challenge is resolved at the bank and detected by auth polling', async () => {
    const h = start();
    await running(h);
    await poll(h, obs.awaitAuth(decoupled(h)));

    await h.advance(POLICY.authPollMs - 1);
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    await h.advance(1);
    expect(h.value()).toEqual({ AWAIT_AUTH: 'Checking' });
    await h.resolve('check', obs.awaitAuth(decoupled(h))); // not yet approved (same id)
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    expect(h.context().challengesSeen).toBe(1);

    await h.advance(POLICY.authPollMs);
    await h.reject('check', failure('PROVIDER_UNAVAILABLE', true)); // a failed read while waiting is harmless
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });

    await h.advance(POLICY.authPollMs);
    await h.resolve('check', obs.running());
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    expect(h.calls('check')).toHaveLength(3);
    expect(h.calls('answer')).toHaveLength(0);
  });

  it('a new challenge while waiting replaces the shown one (AWAIT_AUTH -> AWAIT_AUTH)', async () => {
    const h = start();
    await running(h);
    await h.push(obs.awaitAuth(decoupled(h, 'app-1')));
    await h.push(obs.awaitAuth(tan(h, 'tan-9')));
    expect(h.context().challenge?.id).toBe('tan-9');
    expect(h.context().challengesSeen).toBe(2);
    await h.answer('app-1');
    expect(h.calls('answer')).toHaveLength(0);
    await h.answer('tan-9');
    expect(h.calls('answer')).toHaveLength(1);
  });
});

describe('CHALLENGE.ANSWER acceptance', () => {
  it('is ignored for a wrong challenge id', async () => {
    const h = start();
    await h.resolve('trigger', obs.awaitAuth(tan(h, 'tan-1')));
    await h.answer('tan-0');
    await h.answer('');
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    expect(h.calls('answer')).toHaveLength(0);
    expect(h.context().pendingResponseRef).toBeNull();
  });

  it('is ignored for a decoupled (or redirect) challenge even with the right id', async () => {
    for (const kind of ['DECOUPLED', 'REDIRECT', 'WEB_FORM'] as const) {
      const h = start();
      await h.resolve('trigger', obs.awaitAuth(challenge('c-1', kind, h.clock.now() + 300_000)));
      await h.answer('c-1');
      expect(h.value(), kind).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
      expect(h.calls('answer'), kind).toHaveLength(0);
    }
  });

  it('is ignored outside AWAIT_AUTH', async () => {
    const h = start();
    await h.answer('tan-1');
    expect(h.value()).toEqual({ QUEUED: 'Triggering' });
    await running(h);
    await h.answer('tan-1');
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    expect(h.calls('answer')).toHaveLength(0);
  });

  it('is accepted while a check read is in flight, which is abandoned', async () => {
    const h = start();
    await h.resolve('trigger', obs.awaitAuth(tan(h, 'tan-1')));
    await h.advance(POLICY.authPollMs);
    expect(h.value()).toEqual({ AWAIT_AUTH: 'Checking' });
    await h.answer('tan-1');
    expect(h.value()).toEqual({ AWAIT_AUTH: 'Answering' });
    expect(h.inFlight()).toEqual(['answer']);
  });

  it('a second answer while the first is in flight does not submit again', async () => {
    const h = start();
    await h.resolve('trigger', obs.awaitAuth(tan(h, 'tan-1')));
    await h.answer('tan-1', 'r1');
    await h.answer('tan-1', 'r2');
    expect(h.value()).toEqual({ AWAIT_AUTH: 'Answering' });
    expect(h.calls('answer')).toHaveLength(1);
    expect(h.calls('answer')[0]).toMatchObject({ responseRef: 'r1' });
  });
});

describe('rejected or failed answers (never auto-retry a TAN)', () => {
  it('a rejected answer goes back to AwaitingUser with the new challenge and waits for the user', async () => {
    const h = start();
    await h.resolve('trigger', obs.awaitAuth(tan(h, 'tan-1')));
    await h.answer('tan-1', 'wrong-tan');
    const again = tan(h, 'tan-1', 300_000, { previousAttemptFailed: true });
    await h.resolve('answer', obs.awaitAuth(again));

    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    expect(h.context().challenge).toEqual(again);
    expect(h.context().pendingResponseRef).toBeNull();
    expect(h.calls('answer')).toHaveLength(1);

    // Time passes, the bank keeps reporting the rejected challenge: still no resubmission.
    for (let i = 0; i < 3; i++) {
      await h.advance(POLICY.authPollMs);
      expect(h.value()).toEqual({ AWAIT_AUTH: 'Checking' });
      await h.resolve('check', obs.awaitAuth(again));
      expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    }
    expect(h.calls('answer')).toHaveLength(1);

    await h.answer('tan-1', 'right-tan');
    expect(h.calls('answer')).toHaveLength(2);
    expect(h.calls('answer')[1]).toMatchObject({ challengeId: 'tan-1', responseRef: 'right-tan' });
    await h.resolve('answer', obs.completed());
    expect(h.value()).toBe('COMPLETED');
  });

  it('a rejected answer with a fresh challenge id is shown as the new challenge', async () => {
    const h = start();
    await h.resolve('trigger', obs.awaitAuth(tan(h, 'tan-1')));
    await h.answer('tan-1');
    await h.resolve('answer', obs.awaitAuth(tan(h, 'tan-2', 300_000, { previousAttemptFailed: true })));
    expect(h.context().challenge?.id).toBe('tan-2');
    await h.answer('tan-1');
    expect(h.calls('answer')).toHaveLength(1);
    await h.answer('tan-2');
    expect(h.calls('answer')).toHaveLength(2);
  });

  it.each(['SCA_FAILED', 'INVALID_CREDENTIALS'] as const)('answerChallenge rejecting with %s fails the sync', async (code) => {
    const h = start();
    await h.resolve('trigger', obs.awaitAuth(tan(h)));
    await h.answer('tan-1');
    await h.reject('answer', failure(code, false));
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().status).toBe('done');
    expect(h.snapshot().output).toMatchObject({
      status: 'FAILED',
      result: null,
      error: { code, retryable: false, userActionRequired: true },
    });
    expect(h.calls('answer')).toHaveLength(1);
  });

  it('a transient answer failure returns to AwaitingUser without resubmitting', async () => {
    const h = start();
    await h.resolve('trigger', obs.awaitAuth(tan(h)));
    await h.answer('tan-1');
    await h.reject('answer', failure('PROVIDER_UNAVAILABLE', true, { retryAfterMs: 10 }));
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    expect(h.context().lastFailure?.code).toBe('PROVIDER_UNAVAILABLE');
    await h.advance(POLICY.authPollMs);
    await h.resolve('check', obs.awaitAuth(tan(h)));
    await h.advance(POLICY.authPollMs * 3);
    expect(h.calls('answer')).toHaveLength(1);
  });
});

describe('challenge expiry', () => {
  it('fails with CHALLENGE_EXPIRED (user action required) when the challenge deadline passes', async () => {
    const h = start({ authPollMs: 60_000 });
    await running(h);
    await h.push(obs.awaitAuth(tan(h, 'tan-1', 30_000)));
    await h.advance(29_999);
    expect(h.value()).toEqual({ AWAIT_AUTH: 'AwaitingUser' });
    await h.advance(1);
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output?.error).toMatchObject({
      code: 'CHALLENGE_EXPIRED',
      retryable: false,
      userActionRequired: true,
    });
    expect(h.context().challenge).toBeNull();
  });

  it('a challenge that is already past its deadline when observed expires at once', async () => {
    const h = start({ authPollMs: 60_000 });
    await running(h);
    await h.push(obs.awaitAuth(tan(h, 'tan-1', -5_000)));
    expect(h.context().challengeTtlMs).toBe(0);
    await h.advance(0);
    expect(h.snapshot().output?.error?.code).toBe('CHALLENGE_EXPIRED');
  });

  it('expires while an answer is in flight', async () => {
    const h = start();
    await h.resolve('trigger', obs.awaitAuth(tan(h, 'tan-1', 2_000)));
    await h.answer('tan-1');
    await h.advance(2_000);
    expect(h.snapshot().output?.error?.code).toBe('CHALLENGE_EXPIRED');
    expect(h.inFlight()).toEqual([]);
  });

  it('an unparseable expiresAt falls back to defaultChallengeTtlMs', async () => {
    const h = start({ authPollMs: 1_000_000 });
    await h.resolve('trigger', obs.awaitAuth(challenge('tan-1', 'EMBEDDED', 'not-a-date')));
    expect(h.context().challengeTtlMs).toBe(POLICY.defaultChallengeTtlMs);
    await h.advance(POLICY.defaultChallengeTtlMs - 1);
    expect(h.status()).toBe('AWAIT_AUTH');
    await h.advance(1);
    expect(h.snapshot().output?.error?.code).toBe('CHALLENGE_EXPIRED');
  });

  it('a new challenge restarts the expiry from its own deadline', async () => {
    const h = start({ authPollMs: 1_000_000 });
    await h.resolve('trigger', obs.awaitAuth(tan(h, 'tan-1', 10_000)));
    await h.advance(8_000);
    await h.push(obs.awaitAuth(tan(h, 'tan-2', 10_000)));
    await h.advance(9_999);
    expect(h.status()).toBe('AWAIT_AUTH');
    await h.advance(1);
    expect(h.snapshot().output?.error?.message).toContain('tan-2');
  });
});

describe('poll backoff', () => {
  it('doubles per unchanged poll and is capped at pollMaxMs', async () => {
    const h = start({ pollBaseMs: 1_000, pollMaxMs: 5_000 });
    await running(h);
    const gaps: number[] = [];
    for (let i = 0; i < 6; i++) {
      const before = h.calls('poll').length;
      const startedAt = h.clock.now();
      // step until the next poll starts: proves nothing polls earlier than the scheduled gap
      while (h.calls('poll').length === before) await h.advance(250);
      gaps.push(h.clock.now() - startedAt);
      await h.resolve('poll', obs.running());
    }
    expect(gaps).toEqual([1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
  });

  it('the scheduled poll delay never exceeds pollMaxMs, however many polls', async () => {
    const h = start({ pollBaseMs: 1_000, pollMaxMs: 8_000 });
    await running(h);
    for (let i = 0; i < 40; i++) await poll(h, obs.running());
    expect(h.context().nextDelayMs).toBe(8_000);
    expect(h.timers().find((t) => t.type.includes('nextDelay'))?.delay).toBe(8_000);
  });
});

describe('trigger failures', () => {
  it('retryable failures are retried with exponential backoff up to maxTriggerAttempts, then FAILED', async () => {
    const h = start({ maxTriggerAttempts: 3, retryBaseMs: 1_000 });
    await h.reject('trigger', failure('PROVIDER_UNAVAILABLE', true));
    expect(h.value()).toEqual({ QUEUED: 'Backoff' });
    await h.advance(999);
    expect(h.calls('trigger')).toHaveLength(1);
    await h.advance(1);
    expect(h.calls('trigger')).toHaveLength(2);
    expect(h.calls('trigger')[1]).toMatchObject({ attempt: 2 });

    await h.reject('trigger', failure('RATE_LIMITED', true));
    await h.advance(1_999);
    expect(h.calls('trigger')).toHaveLength(2);
    await h.advance(1);
    expect(h.calls('trigger')).toHaveLength(3);

    await h.reject('trigger', failure('PROVIDER_UNAVAILABLE', true));
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output?.error).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryable: true });
    await h.advance(600_000);
    expect(h.calls('trigger')).toHaveLength(3);
  });

  it('a retry that succeeds proceeds normally', async () => {
    const h = start();
    await h.reject('trigger', failure('PROVIDER_UNAVAILABLE', true));
    await h.advance(POLICY.retryBaseMs);
    await h.resolve('trigger', obs.running());
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    expect(h.statuses()).toEqual(['QUEUED', 'RUNNING']);
  });

  it('exponential trigger backoff is capped at retryMaxMs', async () => {
    const h = start({ maxTriggerAttempts: 10, retryBaseMs: 1_000, retryMaxMs: 5_000 });
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      await h.reject('trigger', failure('PROVIDER_UNAVAILABLE', true));
      delays.push(h.timers().find((t) => t.type.includes('nextDelay'))!.delay);
      await h.advance(delays[delays.length - 1]!);
    }
    expect(delays).toEqual([1_000, 2_000, 4_000, 5_000, 5_000]);
    expect(h.calls('trigger')).toHaveLength(6);
  });

  it.each([
    ['honoured', 7_000, 7_000],
    ['honoured up to retryMaxMs', 20_000, 20_000],
    ['never faster than retryBaseMs', 10, 1_000],
    ['ignored when negative', -5_000, 1_000],
    ['ignored when not finite', Number.NaN, 1_000],
  ])('Retry-After is %s', async (_label, retryAfterMs, expected) => {
    const h = start({ retryBaseMs: 1_000, retryMaxMs: 20_000 });
    await h.reject('trigger', failure('RATE_LIMITED', true, { retryAfterMs }));
    expect(h.value()).toEqual({ QUEUED: 'Backoff' });
    await h.advance(expected - 1);
    expect(h.calls('trigger')).toHaveLength(1);
    await h.advance(1);
    expect(h.calls('trigger')).toHaveLength(2);
  });

  // Issue #13: `Retry-After: 3600` used to be retried at +60 s and +120 s. A wait longer than a sync waits in place
  // ends the sync with the provider's time, so the connection schedules the next attempt then (never earlier).
  it('a Retry-After longer than retryMaxMs ends the sync with retryAfterMs and never triggers early', async () => {
    const h = start({ retryBaseMs: 1_000, retryMaxMs: 60_000 });
    await h.reject('trigger', failure('RATE_LIMITED', true, { retryAfterMs: 3_600_000 }));
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output?.error).toMatchObject({ code: 'RATE_LIMITED', retryable: true, retryAfterMs: 3_600_000 });
    await h.advance(2 * 3_600_000);
    expect(h.calls('trigger')).toHaveLength(1);
  });

  it('a Retry-After longer than retryMaxMs on a poll ends the sync the same way', async () => {
    const h = start({ retryMaxMs: 60_000 });
    await running(h);
    await h.advance(h.context().nextDelayMs);
    await h.reject('poll', failure('RATE_LIMITED', true, { retryAfterMs: 600_000 }));
    expect(h.snapshot().output?.error).toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 600_000 });
  });

  it('a non-retryable failure fails immediately, keeping the classification', async () => {
    const h = start();
    await h.reject('trigger', failure('INVALID_CREDENTIALS', false, { providerCode: '401-x' }));
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output).toEqual({
      status: 'FAILED',
      result: null,
      error: {
        code: 'INVALID_CREDENTIALS',
        retryable: false,
        userActionRequired: true,
        message: 'INVALID_CREDENTIALS from fake provider',
        providerCode: '401-x',
      },
    });
    await h.advance(600_000);
    expect(h.calls('trigger')).toHaveLength(1);
  });

  it('an unclassified rejection is a hard PROVIDER_ERROR', async () => {
    const h = start();
    await h.reject('trigger', new Error('socket hang up'));
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output?.error).toMatchObject({ code: 'PROVIDER_ERROR', retryable: false });
    expect(h.calls('trigger')).toHaveLength(1);
  });
});

describe('poll failures', () => {
  it('consecutive poll errors are bounded by maxConsecutivePollErrors', async () => {
    const h = start({ maxConsecutivePollErrors: 3, retryBaseMs: 1_000 });
    await running(h);
    await h.advance(POLICY.pollBaseMs);
    await h.reject('poll', failure('PROVIDER_UNAVAILABLE', true));
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    expect(h.context().consecutivePollErrors).toBe(1);
    await h.advance(1_000);
    await h.reject('poll', failure('PROVIDER_UNAVAILABLE', true));
    expect(h.value()).toEqual({ RUNNING: 'Waiting' });
    await h.advance(2_000);
    await h.reject('poll', failure('PROVIDER_UNAVAILABLE', true));
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output?.error?.code).toBe('PROVIDER_UNAVAILABLE');
    expect(h.calls('poll')).toHaveLength(3);
  });

  it('a successful poll resets the consecutive error count', async () => {
    const h = start({ maxConsecutivePollErrors: 3 });
    await running(h);
    for (let round = 0; round < 3; round++) {
      for (let e = 0; e < 2; e++) {
        await h.advance(h.timers().find((t) => t.type.includes('nextDelay'))!.dueAt - h.clock.now());
        await h.reject('poll', failure('PROVIDER_UNAVAILABLE', true));
      }
      expect(h.status()).toBe('RUNNING');
      await poll(h, obs.running());
      expect(h.context().consecutivePollErrors).toBe(0);
    }
    expect(h.calls('poll')).toHaveLength(9);
    expect(h.status()).toBe('RUNNING');
  });

  it('a non-retryable poll error fails immediately', async () => {
    const h = start();
    await running(h);
    await h.advance(POLICY.pollBaseMs);
    await h.reject('poll', failure('CONSENT_EXPIRED', false));
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output?.error?.code).toBe('CONSENT_EXPIRED');
  });
});

describe('sync deadline', () => {
  it('fails with TIMEOUT when the provider does not finish its work in time (measured from entering RUNNING)', async () => {
    const h = start({ syncDeadlineMs: 60_000, pollBaseMs: 5_000, pollMaxMs: 5_000 });
    await h.advance(10_000);
    await h.resolve('trigger', obs.running());
    const runningSince = h.clock.now();
    while (h.clock.now() - runningSince < 55_000) await poll(h, obs.running());
    expect(h.status()).toBe('RUNNING');
    await h.advance(runningSince + 60_000 - h.clock.now() - 1);
    expect(h.status()).toBe('RUNNING');
    await h.advance(1);
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output?.error).toMatchObject({ code: 'TIMEOUT', retryable: true, userActionRequired: false });
  });

  it('applies while the trigger hangs', async () => {
    const hung = start({ syncDeadlineMs: 30_000 });
    await hung.advance(30_000);
    expect(hung.snapshot().output?.error?.code).toBe('TIMEOUT');
  });

  // Issue #13: a REDIRECT challenge with a provider deadline 4 h away, finished by the user at +2 h, used to end
  // FAILED TIMEOUT at +60 min. The wait for the user is bounded by the challenge's own deadline only.
  it('does not run while the user is waited for: a 4 h redirect challenge solved at +2 h completes', async () => {
    const h = start({ syncDeadlineMs: 60 * 60_000, authPollMs: 5 * 60_000 });
    const redirect = challenge('consent-1', 'REDIRECT', h.clock.now() + 4 * 3_600_000);
    await h.resolve('trigger', obs.awaitAuth(redirect));
    for (let waited = 0; waited < 2 * 3_600_000; waited += 5 * 60_000) {
      await h.advance(5 * 60_000);
      expect(h.status(), `at +${waited / 60_000 + 5} min`).toBe('AWAIT_AUTH');
      await h.resolve('check', obs.awaitAuth(redirect));
    }
    await h.advance(5 * 60_000);
    await h.resolve('check', obs.running());
    expect(h.status()).toBe('RUNNING');
    await poll(h, obs.completed());
    expect(h.value()).toBe('COMPLETED');
  });

  it('the challenge deadline still bounds the wait, and cancel works until the sync is terminal', async () => {
    const expired = start({ syncDeadlineMs: 60 * 60_000, authPollMs: 10 * 3_600_000 });
    await expired.resolve('trigger', obs.awaitAuth(challenge('consent-1', 'REDIRECT', expired.clock.now() + 4 * 3_600_000)));
    await expired.advance(4 * 3_600_000 - 1);
    expect(expired.status()).toBe('AWAIT_AUTH');
    await expired.advance(1);
    expect(expired.snapshot().output?.error?.code).toBe('CHALLENGE_EXPIRED');

    const cancelled = start({ syncDeadlineMs: 60 * 60_000, authPollMs: 10 * 3_600_000 });
    await cancelled.resolve('trigger', obs.awaitAuth(challenge('consent-1', 'REDIRECT', cancelled.clock.now() + 4 * 3_600_000)));
    await cancelled.advance(3 * 3_600_000);
    cancelled.actor.send({ type: 'CANCEL', reason: 'user gave up' });
    expect(cancelled.snapshot().output?.error?.code).toBe('CANCELLED');
  });
});

// Issue #13: an unattended sync that met SCA used to wait until the challenge expired. PSD2: no SCA without the user.
describe('unattended sync meeting SCA', () => {
  it.each(['EMBEDDED', 'DECOUPLED', 'REDIRECT', 'WEB_FORM'] as const)('%s challenge: FAILED NEEDS_USER at once, nothing polled or answered', async (kind) => {
    const h = createHarness({ policy: POLICY, input: { unattended: true } });
    await h.resolve('trigger', obs.running());
    await poll(h, obs.awaitAuth(challenge('c-1', kind, h.clock.now() + 3_600_000)));
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().output?.error).toMatchObject({ code: 'NEEDS_USER', retryable: false, userActionRequired: true });
    expect(h.context().challenge).toBeNull();
    const polls = h.calls('poll').length;
    await h.advance(3_600_000);
    expect(h.calls('poll')).toHaveLength(polls);
    expect(h.calls('answer')).toHaveLength(0);
  });

  it('a challenge in the trigger response or a push ends it the same way; attended syncs still wait', async () => {
    const fromTrigger = createHarness({ policy: POLICY, input: { unattended: true } });
    await fromTrigger.resolve('trigger', obs.awaitAuth(tan(fromTrigger)));
    expect(fromTrigger.snapshot().output?.error?.code).toBe('NEEDS_USER');

    const pushed = createHarness({ policy: POLICY, input: { unattended: true } });
    await pushed.resolve('trigger', obs.running());
    pushed.actor.send({ type: 'PROVIDER.OBSERVED', observation: obs.awaitAuth(tan(pushed)), observedAt: pushed.clock.now() });
    expect(pushed.snapshot().output?.error?.code).toBe('NEEDS_USER');

    const attended = createHarness({ policy: POLICY });
    await attended.resolve('trigger', obs.awaitAuth(tan(attended)));
    expect(attended.status()).toBe('AWAIT_AUTH');
  });
});

// Issue #13: poll and retry delays had no jitter, so retries of many syncs after one outage lined up.
describe('jitter', () => {
  const firstRetryDelay = async (syncId: string, jitterRatio: number) => {
    const h = createHarness({ policy: { ...POLICY, jitterRatio, retryBaseMs: 10_000, retryMaxMs: 60_000 }, input: { syncId } });
    await h.reject('trigger', failure('PROVIDER_UNAVAILABLE', true));
    return h.timers().find((t) => t.type.includes('nextDelay'))!.delay;
  };

  it('spreads the retries of syncs that failed together, never beyond the unjittered delay', async () => {
    const delays = await Promise.all(Array.from({ length: 40 }, (_, i) => firstRetryDelay(`sync-${i}`, 0.5)));
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(5_000);
      expect(d).toBeLessThanOrEqual(10_000);
    }
    expect(new Set(delays).size).toBeGreaterThan(30);
  });

  it('is deterministic per sync (a replay after a restart waits the same) and off with jitterRatio 0', async () => {
    expect(await firstRetryDelay('sync-a', 0.5)).toBe(await firstRetryDelay('sync-a', 0.5));
    expect(await firstRetryDelay('sync-a', 0)).toBe(10_000);
  });

  it('also spreads poll intervals', async () => {
    const delays = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const h = createHarness({ policy: { ...POLICY, jitterRatio: 0.5, pollBaseMs: 8_000 }, input: { syncId: `sync-${i}` } });
        await h.resolve('trigger', obs.running());
        return h.context().nextDelayMs;
      }),
    );
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(4_000);
    expect(Math.max(...delays)).toBeLessThanOrEqual(8_000);
    expect(new Set(delays).size).toBeGreaterThan(15);
  });
});

describe('CANCEL', () => {
  const reach: Record<string, (h: Harness) => Promise<void>> = {
    'QUEUED.Triggering': async () => {},
    'QUEUED.Backoff': async (h) => h.reject('trigger', failure('PROVIDER_UNAVAILABLE', true)),
    'RUNNING.Waiting': async (h) => h.resolve('trigger', obs.running()),
    'RUNNING.Polling': async (h) => {
      await h.resolve('trigger', obs.running());
      await h.advance(POLICY.pollBaseMs);
    },
    'AWAIT_AUTH.AwaitingUser': async (h) => h.resolve('trigger', obs.awaitAuth(tan(h))),
    'AWAIT_AUTH.Checking': async (h) => {
      await h.resolve('trigger', obs.awaitAuth(tan(h)));
      await h.advance(POLICY.authPollMs);
    },
    'AWAIT_AUTH.Answering': async (h) => {
      await h.resolve('trigger', obs.awaitAuth(tan(h)));
      await h.answer('tan-1');
    },
  };

  it.each(Object.keys(reach))('from %s -> FAILED CANCELLED, and late effect results are ignored', async (path) => {
    const h = start();
    await reach[path]!(h);
    const [top, sub] = path.split('.');
    expect(h.value()).toEqual({ [top!]: sub });
    const inFlight = h.inFlight();

    await h.send({ type: 'CANCEL', reason: 'user closed the dialog' });
    expect(h.value()).toBe('FAILED');
    expect(h.snapshot().status).toBe('done');
    expect(h.snapshot().output).toEqual({
      status: 'FAILED',
      result: null,
      error: {
        code: 'CANCELLED',
        retryable: false,
        userActionRequired: false,
        message: 'cancelled: user closed the dialog',
      },
    });
    expect(h.inFlight()).toEqual([]);
    const calls = h.invocations.length;
    // Provider answers arriving after the cancel (for the stopped effect, or pushed) change nothing.
    for (const id of inFlight) await h.settleStale(id, { providerRef: 'ref-1', observation: obs.completed(), observedAt: h.clock.now() });
    await h.push(obs.completed());
    await h.advance(POLICY.syncDeadlineMs);
    expect(h.value()).toBe('FAILED');
    expect(h.invocations.length).toBe(calls);
  });

  it('without a reason the message is plain', async () => {
    const h = start();
    await h.send({ type: 'CANCEL' });
    expect(h.snapshot().output?.error?.message).toBe('cancelled');
  });
});

describe('effect keys', () => {
  /** A run touching every effect: trigger retry, polls, poll error, challenge check, answer, completion. */
  async function scenario(): Promise<string[]> {
    const h = start();
    await h.reject('trigger', failure('PROVIDER_UNAVAILABLE', true));
    await h.advance(POLICY.retryBaseMs);
    await h.resolve('trigger', obs.running());
    await poll(h, obs.running());
    await h.advance(h.timers().find((t) => t.type.includes('nextDelay'))!.dueAt - h.clock.now());
    await h.reject('poll', failure('PROVIDER_UNAVAILABLE', true));
    await poll(h, obs.awaitAuth(tan(h, 'tan-1')));
    await h.advance(POLICY.authPollMs);
    await h.resolve('check', obs.awaitAuth(tan(h, 'tan-1')));
    await h.answer('tan-1');
    await h.resolve('answer', obs.awaitAuth(tan(h, 'tan-1', 300_000, { previousAttemptFailed: true })));
    await h.answer('tan-1');
    await h.resolve('answer', obs.running());
    await poll(h, obs.completed());
    expect(h.value()).toBe('COMPLETED');
    return h.effectKeys();
  }

  it('are distinct per invocation and name the effect', async () => {
    const keys = await scenario();
    expect(keys.map((k) => k.split(':')[1])).toEqual(['trigger', 'trigger', 'poll', 'poll', 'poll', 'check', 'answer', 'answer', 'poll']);
    expect(new Set(keys).size).toBe(keys.length);
    for (const k of keys) expect(k.startsWith('sync-1:')).toBe(true);
  });

  it('are stable: a second identical run produces the same sequence', async () => {
    const first = await scenario();
    const second = await scenario();
    expect(second).toEqual(first);
  });

  it('differ between syncs', async () => {
    const a = createHarness({ input: { syncId: 'sync-a' } });
    const b = createHarness({ input: { syncId: 'sync-b' } });
    expect(a.effectKeys()[0]).not.toBe(b.effectKeys()[0]);
  });
});

describe('output and status helper', () => {
  it('statusOf maps nested values to the canonical status', () => {
    expect(statusOf({ RUNNING: 'Waiting' })).toBe('RUNNING');
    expect(statusOf({ AWAIT_AUTH: 'Answering' })).toBe('AWAIT_AUTH');
    expect(statusOf('COMPLETED')).toBe('COMPLETED');
  });

  it('a COMPLETED output carries the result and no error; a FAILED one the error and no result', async () => {
    const ok = start();
    await running(ok);
    await poll(ok, obs.completed({ outcome: 'PARTIAL', accounts: [{ accountId: 'a', status: 'DOWNLOAD_FAILED' }, { accountId: 'b', status: 'UPDATED' }] }));
    expect(ok.snapshot().output).toEqual({
      status: 'COMPLETED',
      result: { outcome: 'PARTIAL', accounts: [{ accountId: 'a', status: 'DOWNLOAD_FAILED' }, { accountId: 'b', status: 'UPDATED' }] },
      error: null,
    });

    const ko = start();
    await running(ko);
    await poll(ko, obs.failed('PROVIDER_ERROR'));
    expect(ko.snapshot().output).toEqual({
      status: 'FAILED',
      result: null,
      error: { code: 'PROVIDER_ERROR', retryable: false, userActionRequired: false, message: 'provider says PROVIDER_ERROR' },
    });
  });
});

describe('rejected answers and duplicate readings', () => {
  it('treats a repeated "rejected" reading as nothing new unless an answer was sent since, and never drops an answer in flight', async () => {
    const h = createHarness({ policy: { authPollMs: 5_000 } });
    const c = challenge('tan-1', 'EMBEDDED', h.clock.now() + 600_000);
    await h.resolve('trigger', obs.awaitAuth(c));
    await h.answer('tan-1', 'wrong');
    const rejected = { ...c, previousAttemptFailed: true };
    await h.resolve('answer', obs.awaitAuth(rejected));
    expect(h.context().challengesSeen).toBe(2);
    for (let i = 0; i < 3; i++) {
      await h.advance(5_000);
      await h.resolve('check', obs.awaitAuth(rejected));
    }
    // The bank kept reporting the same rejection: the user was not asked again on every check.
    expect(h.context().challengesSeen).toBe(2);
    await h.answer('tan-1', 'right');
    expect(h.value()).toEqual({ AWAIT_AUTH: 'Answering' });
    // A duplicate webhook of the earlier rejection must not cancel the answer that is being sent.
    await h.push(obs.awaitAuth(rejected));
    expect(h.value()).toEqual({ AWAIT_AUTH: 'Answering' });
    await h.resolve('answer', obs.running());
    expect(h.status()).toBe('RUNNING');
    expect(h.calls('answer')).toHaveLength(2);
  });

  it('restarts the poll backoff when RUNNING is entered again after a challenge', async () => {
    const h = createHarness({ policy: { pollBaseMs: 1_000, pollMaxMs: 30_000, jitterRatio: 0 } });
    await h.resolve('trigger', obs.running());
    for (let i = 0; i < 4; i++) {
      await h.advance(h.context().nextDelayMs);
      await h.resolve('poll', obs.running());
    }
    expect(h.context().nextDelayMs).toBe(16_000);
    await h.advance(16_000);
    await h.resolve('poll', obs.awaitAuth(challenge('d-1', 'DECOUPLED', h.clock.now() + 600_000)));
    await h.push(obs.running());
    expect(h.context().nextDelayMs).toBe(1_000);
    await h.advance(1_000);
    await h.resolve('poll', obs.running());
    expect(h.context().nextDelayMs).toBe(2_000);
  });
});
