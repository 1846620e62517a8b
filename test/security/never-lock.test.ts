/**
 * Never lock the user's bank account. Model-based property with the in-process FakeAdapter and a SimulatedClock:
 * random sequences of provider outcomes (including INVALID_CREDENTIALS and SCA_FAILED, thrown or reported, wrong
 * TAN readings, transient failures, preflight refusals), attended and unattended requests, TAN submissions,
 * cancellations and clock advances. Invariants, checked after every step:
 *  1. after a credential or 2FA failure, the adapter's trigger is never called again until the user is present
 *     (an attended request was made);
 *  2. answerChallenge is called at most once per submitted answer, and only with answers the user submitted;
 *  3. an unattended request never starts a sync while the connection's autosyncRefusal is non-null (it is
 *     refused, or joins the sync already running), and autosyncRefusal tells the truth when it is null.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import type { Observation, SyncErrorCode, TriggerOutput } from '../../machines/canonical.js';
import { createEngine } from '../../src/engine/engine.js';
import { BanksyncError } from '../../src/engine/errors.js';
import { ProviderError } from '../../src/providers/errors.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { FakeAdapter, settle } from '../support/fake-adapter.js';

const RUNS = 500;
const LOCKING: ReadonlySet<string> = new Set<SyncErrorCode>(['INVALID_CREDENTIALS', 'SCA_FAILED']);
const CONNECTION = 'conn-1';
const policy = {
  pollBaseMs: 1_000,
  pollMaxMs: 4_000,
  authPollMs: 2_000,
  retryBaseMs: 1_000,
  retryMaxMs: 4_000,
  maxTriggerAttempts: 3,
  maxConsecutivePollErrors: 3,
  defaultChallengeTtlMs: 60_000,
  syncDeadlineMs: 120_000,
};

type TriggerOutcome = 'running' | 'await' | 'completed' | 'failed-credentials' | 'failed-sca' | 'throw-credentials' | 'throw-sca' | 'transient' | 'preflight-refused';
type PollOutcome = 'running' | 'await' | 'same-challenge' | 'completed' | 'failed-credentials' | 'failed-sca' | 'transient';
type AnswerOutcome = 'wrong-tan' | 'running' | 'completed' | 'throw-sca' | 'throw-credentials' | 'failed-credentials' | 'transient';
type Command =
  | { kind: 'request'; unattended: boolean }
  | { kind: 'advance'; ms: number }
  | { kind: 'answer'; stale: boolean }
  | { kind: 'cancel' };

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('request' as const), unattended: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 100, max: 30_000 }) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('answer' as const), stale: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const) }) },
);

const failedObservation = (code: SyncErrorCode): Observation => ({ status: 'FAILED', error: { code, retryable: false, userActionRequired: true, message: `bank says ${code}` } });
const providerError = (code: SyncErrorCode, retryable = false) => new ProviderError(`fake: ${code}`, { code, retryable, userActionRequired: !retryable });

describe('never lock the bank', () => {
  /** How often the interesting paths were reached across all runs (printed, and a floor asserted). */
  const reached = { lockouts: 0, refusedUnattended: 0, joinedActive: 0, acceptedUnattended: 0, answersSent: 0, rejectedAnswers: 0, attendedAfterLockout: 0 };

  it(`${RUNS} random histories: no automatic trigger after a credential/2FA failure, one provider call per answer, no unattended sync when refused`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom<TriggerOutcome>('running', 'await', 'await', 'await', 'completed', 'failed-credentials', 'failed-sca', 'throw-credentials', 'throw-sca', 'transient', 'preflight-refused'), { maxLength: 12 }),
        fc.array(fc.constantFrom<PollOutcome>('running', 'await', 'same-challenge', 'completed', 'failed-credentials', 'failed-sca', 'transient'), { maxLength: 30 }),
        fc.array(fc.constantFrom<AnswerOutcome>('wrong-tan', 'running', 'completed', 'throw-sca', 'throw-credentials', 'failed-credentials', 'transient'), { maxLength: 10 }),
        fc.array(command, { minLength: 1, maxLength: 40 }),
        async (triggers, polls, answers, commands) => {
          const clock = new SimulatedClock();
          clock.set(1_800_000_000_000);
          const violations: string[] = [];
          let lockedOut = false;
          let attendedInFlight = false;
          let challengeSeq = 0;
          let currentChallenge = 'none';
          const submitted = new Set<string>();
          let tanSeq = 0;

          const challenge = (id: string, previousAttemptFailed = false): Observation => ({
            status: 'AWAIT_AUTH',
            challenge: { id, kind: 'EMBEDDED', expiresAt: new Date(clock.now() + 60_000).toISOString(), ...(previousAttemptFailed ? { previousAttemptFailed } : {}) },
          });
          // A challenge stays pending (provider reads repeat it) until an answer reaches the provider.
          let pending = false;
          const fresh = () => {
            pending = true;
            return challenge((currentChallenge = `chl-${++challengeSeq}`));
          };
          const completed: Observation = { status: 'COMPLETED', result: { outcome: 'COMPLETE', accounts: [{ accountId: 'a1', status: 'UPDATED' }] } };

          let refSeq = 0;
          const triggerStep = async (): Promise<TriggerOutput> => {
            if (lockedOut && !attendedInFlight) violations.push(`trigger called after a credential/2FA failure without the user (${triggers.length} left)`);
            const providerRef = `ref-${++refSeq}`;
            switch (triggers.shift() ?? 'running') {
              case 'running':
                return { providerRef, observation: { status: 'RUNNING' } };
              case 'await':
                return { providerRef, observation: fresh() };
              case 'completed':
                return { providerRef, observation: completed };
              case 'failed-credentials':
                return { providerRef, observation: failedObservation('INVALID_CREDENTIALS') };
              case 'failed-sca':
                return { providerRef, observation: failedObservation('SCA_FAILED') };
              case 'throw-credentials':
                throw providerError('INVALID_CREDENTIALS');
              case 'throw-sca':
                throw providerError('SCA_FAILED');
              case 'transient':
                throw providerError('PROVIDER_UNAVAILABLE', true);
              case 'preflight-refused':
                throw providerError('PREFLIGHT_REFUSED');
            }
          };
          const pollStep = async (): Promise<Observation> => {
            switch (polls.shift() ?? (pending ? 'same-challenge' : 'completed')) {
              case 'running':
                return { status: 'RUNNING' };
              case 'await':
                return fresh();
              case 'same-challenge':
                return challenge(currentChallenge);
              case 'completed':
                return completed;
              case 'failed-credentials':
                return failedObservation('INVALID_CREDENTIALS');
              case 'failed-sca':
                return failedObservation('SCA_FAILED');
              case 'transient':
                throw providerError('PROVIDER_UNAVAILABLE', true);
            }
          };
          const answerStep = async (): Promise<Observation> => {
            pending = false;
            switch (answers.shift() ?? 'running') {
              case 'wrong-tan':
                pending = true;
                return challenge(currentChallenge, true);
              case 'running':
                return { status: 'RUNNING' };
              case 'completed':
                return completed;
              case 'throw-sca':
                throw providerError('SCA_FAILED');
              case 'throw-credentials':
                throw providerError('INVALID_CREDENTIALS');
              case 'failed-credentials':
                return failedObservation('INVALID_CREDENTIALS');
              case 'transient':
                throw providerError('PROVIDER_UNAVAILABLE', true);
            }
          };

          const adapter = new FakeAdapter('fake', { trigger: [triggerStep], poll: [pollStep], answer: [answerStep], findTriggered: [null] });
          const store = new MemoryStore();
          const engine = createEngine({ store, providers: { fake: adapter }, clock, policy });
          engine.events.on('sync.failed', (view) => {
            if (view.error && LOCKING.has(view.error.code)) {
              lockedOut = true;
              reached.lockouts += 1;
            }
          });
          await engine.registerConnection({ connectionId: CONNECTION, provider: 'fake', storedCredentials: true, consentGrantedAt: clock.now() });

          try {
            for (const cmd of commands) {
              const active = await store.findActiveSync('default', CONNECTION);
              switch (cmd.kind) {
                case 'request': {
                  if (cmd.unattended) {
                    const connection = await engine.getConnection(CONNECTION);
                    const triggersBefore = adapter.calls.trigger;
                    const outcome = await engine.requestSync({ connectionId: CONNECTION, provider: 'fake', unattended: true }).then(
                      (view) => view,
                      (error: unknown) => error as BanksyncError,
                    );
                    await settle();
                    if (outcome instanceof BanksyncError) reached.refusedUnattended += 1;
                    else if (outcome.syncId === active?.syncId) reached.joinedActive += 1;
                    else reached.acceptedUnattended += 1;
                    if (connection.autosyncRefusal !== null) {
                      if (active) {
                        if (outcome instanceof BanksyncError || outcome.syncId !== active.syncId) violations.push(`unattended request did not join the active sync (${connection.autosyncRefusal})`);
                      } else {
                        if (!(outcome instanceof BanksyncError) || outcome.code !== 'SYNC_REFUSED') violations.push(`unattended sync started although autosyncRefusal = ${connection.autosyncRefusal}`);
                        if (adapter.calls.trigger !== triggersBefore) violations.push(`trigger called by a refused unattended request (${connection.autosyncRefusal})`);
                      }
                    } else if (outcome instanceof BanksyncError) {
                      violations.push(`autosyncRefusal was null but the unattended request was refused: ${outcome.message}`);
                    }
                  } else {
                    attendedInFlight = true;
                    if (lockedOut) reached.attendedAfterLockout += 1;
                    const outcome = await engine.requestSync({ connectionId: CONNECTION, provider: 'fake' }).then(
                      (view) => view,
                      (error: unknown) => error as BanksyncError,
                    );
                    if (!(outcome instanceof BanksyncError) && outcome.syncId !== active?.syncId) lockedOut = false;
                    await settle();
                    attendedInFlight = false;
                  }
                  break;
                }
                case 'advance':
                  clock.increment(cmd.ms);
                  await settle();
                  break;
                case 'answer': {
                  if (!active) break;
                  const view = await engine.get(active.syncId);
                  if (view.status !== 'AWAIT_AUTH' && !cmd.stale) break;
                  const id = cmd.stale || !view.challenge ? `${currentChallenge}-stale` : view.challenge.id;
                  const tan = `tan-${++tanSeq}`;
                  const accepted = await engine.submitChallengeResponse(active.syncId, { challengeId: id, response: tan }).then(
                    () => true,
                    (error: unknown) => {
                      if (!(error instanceof BanksyncError)) violations.push(`untyped error on answer: ${String(error)}`);
                      return false;
                    },
                  );
                  if (accepted) submitted.add(tan);
                  else reached.rejectedAnswers += 1;
                  await settle();
                  break;
                }
                case 'cancel':
                  if (active) await engine.cancel(active.syncId).catch(() => undefined);
                  await settle();
                  break;
              }
              // Invariant 2 after every step.
              const counts = new Map<string, number>();
              for (const sent of adapter.answers) counts.set(sent, (counts.get(sent) ?? 0) + 1);
              for (const [sent, n] of counts) {
                if (!submitted.has(sent)) violations.push(`answer ${sent} sent to the provider but never accepted from the user`);
                if (n > 1) violations.push(`answer ${sent} sent to the provider ${n} times`);
              }
              if (lockedOut && (await engine.getConnection(CONNECTION)).autosyncRefusal === null) violations.push('after a credential/2FA failure autosync is allowed again');
              if (violations.length > 0) break;
            }
          } finally {
            await engine.stop();
          }
          reached.answersSent += adapter.answers.length;
          expect(violations).toEqual([]);
        },
      ),
      { numRuns: RUNS, endOnFailure: true },
    );
    console.info(`[never-lock] paths reached: ${JSON.stringify(reached)}`);
    for (const [path, n] of Object.entries(reached)) expect(n, path).toBeGreaterThan(0);
  }, 120_000);
});
