/**
 * The canonical synchronization machine: QUEUED -> RUNNING <-> AWAIT_AUTH -> COMPLETED | FAILED
 * (finX v2.11 "Background operations"). Every provider adapter maps onto it.
 *
 * Pure: no I/O. Provider calls are the named actors `triggerSync`, `pollSync` and `answerChallenge`,
 * placeholders here and replaced with `.provide()` by the engine. Every event that comes from the
 * provider carries `observedAt` (the engine's clock), so delays stay deterministic under a simulated clock.
 */
import { and, assign, fromPromise, setup, stateIn, type DoneActorEvent, type ErrorActorEvent } from 'xstate';
import { mayRetryAutomatically, NEVER_RETRY_CODES } from './canonical.js';
import { withJitter } from './jitter.js';
import type {
  Challenge,
  EffectFailure,
  Observation,
  SyncError,
  SyncResult,
  SyncScope,
} from './canonical.js';

export interface SyncPolicy {
  /** First poll interval while RUNNING; doubles per unchanged poll up to pollMaxMs. */
  pollBaseMs: number;
  pollMaxMs: number;
  /** Poll interval while waiting for the user (decoupled and redirect challenges finish provider-side). */
  authPollMs: number;
  /**
   * Backoff for transient provider failures (5xx, 429, network), capped. Retry-After wins within the cap; a
   * longer Retry-After ends the sync (RATE_LIMITED with retryAfterMs) and the connection schedules the next
   * attempt then, rather than retrying early.
   */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Share of each poll and retry delay taken off at random (deterministic per sync), so retries after an outage spread out. */
  jitterRatio: number;
  maxTriggerAttempts: number;
  maxConsecutivePollErrors: number;
  /** Used when a provider challenge carries no deadline of its own. */
  defaultChallengeTtlMs: number;
  /**
   * Deadline of each stretch of provider work (QUEUED, RUNNING): one that neither completes nor fails by then
   * fails with TIMEOUT. It does not run while the user is waited for: the challenge's own deadline bounds that.
   */
  syncDeadlineMs: number;
}

export const defaultSyncPolicy: SyncPolicy = {
  pollBaseMs: 1_000,
  pollMaxMs: 30_000,
  authPollMs: 5_000,
  retryBaseMs: 1_000,
  retryMaxMs: 60_000,
  jitterRatio: 0.3,
  maxTriggerAttempts: 5,
  maxConsecutivePollErrors: 6,
  defaultChallengeTtlMs: 10 * 60_000,
  syncDeadlineMs: 60 * 60_000,
};

/** A provider reading as the machine receives it. */
export interface ObservationEnvelope {
  observation: Observation;
  observedAt: number;
}
export interface TriggerEnvelope extends ObservationEnvelope {
  providerRef: string;
}

export interface SyncInput {
  syncId: string;
  connectionId: string;
  provider: string;
  scope: SyncScope;
  /** Provider-specific, non-secret options (e.g. finAPI importNewAccounts); passed to the trigger. */
  options?: Record<string, unknown>;
  /** Started without the user present (autosync): no one is there to answer a challenge. */
  unattended?: boolean;
  policy?: Partial<SyncPolicy>;
}

/** What every effect actor receives: `effectKey` is stable across restarts, so the engine can dedupe. */
export interface EffectInput {
  effectKey: string;
  syncId: string;
  connectionId: string;
  provider: string;
  scope: SyncScope;
  providerRef: string | null;
  options: Record<string, unknown>;
  /** Trigger attempt number (1-based); a retry reconciles with the provider before triggering again. */
  attempt: number;
}
export interface AnswerInput extends EffectInput {
  challengeId: string;
  /** Opaque handle to a response held in memory by the engine; the TAN itself never enters the snapshot. */
  responseRef: string;
}

export interface SyncContext {
  syncId: string;
  connectionId: string;
  provider: string;
  scope: SyncScope;
  options: Record<string, unknown>;
  unattended: boolean;
  policy: SyncPolicy;
  providerRef: string | null;
  /** Bumped on entry to every effect state; part of each effect key. */
  effectSeq: number;
  triggerAttempts: number;
  polls: number;
  /** Unchanged polls since RUNNING was (re)entered; drives the poll backoff. */
  pollRound: number;
  consecutivePollErrors: number;
  /** Delay for the next Waiting/Backoff state, computed by the transition that enters it. */
  nextDelayMs: number;
  challenge: Challenge | null;
  /** ms from entering AWAIT_AUTH until the challenge deadline. */
  challengeTtlMs: number;
  challengesSeen: number;
  pendingResponseRef: string | null;
  /** Highest provider progress rank applied so far (see Observation.progress). */
  progress: number;
  lastFailure: EffectFailure | null;
  result: SyncResult | null;
  error: SyncError | null;
}

export type SyncEvent =
  | ({ type: 'PROVIDER.OBSERVED' } & ObservationEnvelope)
  | { type: 'CHALLENGE.ANSWER'; challengeId: string; responseRef: string }
  | { type: 'CANCEL'; reason?: string };

export interface SyncOutput {
  status: 'COMPLETED' | 'FAILED';
  result: SyncResult | null;
  error: SyncError | null;
}

type ProviderEvent = SyncEvent | DoneActorEvent<unknown> | ErrorActorEvent;

/** The provider reading carried by a push event or an effect's done event, if any. */
export function envelopeOf(event: ProviderEvent): ObservationEnvelope | undefined {
  if (event.type === 'PROVIDER.OBSERVED') return event;
  if ('output' in event) return event.output as ObservationEnvelope;
  return undefined;
}
function observed(event: ProviderEvent): Observation | undefined {
  return envelopeOf(event)?.observation;
}
function failureOf(event: ProviderEvent): EffectFailure {
  const error = 'error' in event ? event.error : undefined;
  if (error && typeof error === 'object' && 'code' in error && 'retryable' in error) {
    return error as EffectFailure;
  }
  // Anything the engine did not classify is treated as a hard, non-retryable provider error.
  return { code: 'PROVIDER_ERROR', retryable: false, userActionRequired: false, message: 'unclassified effect failure' };
}
function validRetryAfter(failure: EffectFailure): number | undefined {
  const ms = failure.retryAfterMs;
  return ms === undefined || !Number.isFinite(ms) || ms < 0 ? undefined : ms;
}
function backoff(policy: SyncPolicy, attempt: number, jitterKey: string, retryAfterMs?: number): number {
  if (retryAfterMs === undefined) {
    const exponential = Math.min(policy.retryMaxMs, policy.retryBaseMs * 2 ** Math.max(0, attempt - 1));
    return withJitter(exponential, policy.jitterRatio, jitterKey);
  }
  // The provider named its time: never earlier, never faster than the base (longer waits end the sync, see guards).
  return Math.max(policy.retryBaseMs, retryAfterMs);
}
function pollDelay(context: SyncContext, round: number): number {
  const delay = Math.min(context.policy.pollMaxMs, context.policy.pollBaseMs * 2 ** round);
  return withJitter(delay, context.policy.jitterRatio, `${context.syncId}:poll:${context.effectSeq}`);
}
function failureToError(failure: EffectFailure): SyncError {
  const neverRetry = NEVER_RETRY_CODES.includes(failure.code);
  const retryAfterMs = validRetryAfter(failure);
  return {
    code: failure.code,
    retryable: failure.retryable && !neverRetry,
    userActionRequired: failure.userActionRequired || neverRetry,
    message: failure.message,
    ...(failure.providerCode ? { providerCode: failure.providerCode } : {}),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  };
}
/** The provider asks us to wait longer than a sync waits in place: end it and let the connection schedule the next. */
function waitsTooLong(policy: SyncPolicy, failure: EffectFailure): boolean {
  const ms = validRetryAfter(failure);
  return ms !== undefined && ms > policy.retryMaxMs;
}
function effectInput(context: SyncContext, name: string): EffectInput {
  return {
    effectKey: `${context.syncId}:${name}:${context.effectSeq}`,
    syncId: context.syncId,
    connectionId: context.connectionId,
    provider: context.provider,
    scope: context.scope,
    providerRef: context.providerRef,
    options: context.options,
    attempt: context.triggerAttempts,
  };
}

/** Route any provider reading to the state it names. Order matters: terminal readings win. */
const toTerminal = [
  { guard: 'observedCompleted', target: '#sync.COMPLETED', actions: 'recordResult' },
  { guard: 'observedFailed', target: '#sync.FAILED', actions: 'recordProviderError' },
] as const;
const toNewChallenge = {
  guard: 'observedNewChallenge',
  target: '#sync.AWAIT_AUTH',
  reenter: true,
  actions: 'recordChallenge',
} as const;
/** Accepted while waiting or checking, never while Answering: an answer in flight is never sent twice. */
const answer = { guard: 'answersCurrentEmbeddedChallenge', target: 'Answering', actions: 'acceptAnswer' } as const;
const cancel = { CANCEL: { target: '#sync.FAILED', actions: 'recordCancelled' } } as const;

export const synchronizationMachine = setup({
  types: {
    context: {} as SyncContext,
    events: {} as SyncEvent,
    input: {} as SyncInput,
    output: {} as SyncOutput,
  },
  actors: {
    triggerSync: fromPromise<TriggerEnvelope, EffectInput>(async () => {
      throw new Error('triggerSync must be provided by the engine');
    }),
    pollSync: fromPromise<ObservationEnvelope, EffectInput>(async () => {
      throw new Error('pollSync must be provided by the engine');
    }),
    answerChallenge: fromPromise<ObservationEnvelope, AnswerInput>(async () => {
      throw new Error('answerChallenge must be provided by the engine');
    }),
  },
  guards: {
    /** A push older than what we already know (late or out-of-order callback): applying it would go backwards. */
    staleObservation: ({ context, event }) => {
      const rank = event.type === 'PROVIDER.OBSERVED' ? event.observation.progress : undefined;
      return rank !== undefined && rank < context.progress;
    },
    observedCompleted: ({ event }) => observed(event)?.status === 'COMPLETED',
    observedFailed: ({ event }) => observed(event)?.status === 'FAILED',
    observedAwaitAuth: ({ event }) => observed(event)?.status === 'AWAIT_AUTH',
    observedInProgress: ({ event }) => {
      const status = observed(event)?.status;
      return status === 'RUNNING' || status === 'QUEUED';
    },
    /**
     * A challenge other than the one shown to the user, or the same one rejected after we sent an answer
     * for it. A repeated "rejected" reading with no answer sent since is nothing new.
     */
    observedNewChallenge: ({ context, event }) => {
      const o = observed(event);
      if (o?.status !== 'AWAIT_AUTH') return false;
      if (o.challenge.id !== context.challenge?.id) return true;
      return o.challenge.previousAttemptFailed === true && context.pendingResponseRef !== null;
    },
    /** While our answer is in flight, a pushed reading of the same challenge predates it: its own result decides. */
    observedChallengeBeingAnswered: ({ context, event }) => {
      const o = observed(event);
      return o?.status === 'AWAIT_AUTH' && o.challenge.id === context.challenge?.id;
    },
    canRetryTrigger: ({ context, event }) =>
      mayRetryAutomatically(failureOf(event)) &&
      !waitsTooLong(context.policy, failureOf(event)) &&
      context.triggerAttempts < context.policy.maxTriggerAttempts,
    canRetryPoll: ({ context, event }) =>
      mayRetryAutomatically(failureOf(event)) &&
      !waitsTooLong(context.policy, failureOf(event)) &&
      context.consecutivePollErrors + 1 < context.policy.maxConsecutivePollErrors,
    /** Started without the user (autosync): nobody may answer a challenge (PSD2: no SCA without the user). */
    unattended: ({ context }) => context.unattended,
    answerFailedHard: ({ event }) => NEVER_RETRY_CODES.includes(failureOf(event).code),
    answersCurrentEmbeddedChallenge: ({ context, event }) =>
      event.type === 'CHALLENGE.ANSWER' &&
      context.challenge?.kind === 'EMBEDDED' &&
      event.challengeId === context.challenge.id,
  },
  delays: {
    nextDelay: ({ context }) => context.nextDelayMs,
    authPollInterval: ({ context }) => context.policy.authPollMs,
    challengeExpiry: ({ context }) => context.challengeTtlMs,
    syncDeadline: ({ context }) => context.policy.syncDeadlineMs,
  },
  actions: {
    nextEffect: assign({ effectSeq: ({ context }) => context.effectSeq + 1 }),
    recordProgress: assign({
      progress: ({ context, event }) => Math.max(context.progress, observed(event)?.progress ?? context.progress),
    }),
    countTriggerAttempt: assign({ triggerAttempts: ({ context }) => context.triggerAttempts + 1 }),
    recordProviderRef: assign({
      providerRef: ({ event }) => (envelopeOf(event) as TriggerEnvelope).providerRef,
    }),
    startPolling: assign({
      nextDelayMs: ({ context }) => pollDelay(context, 0),
      consecutivePollErrors: 0,
      pollRound: 0,
      challenge: null,
    }),
    scheduleNextPoll: assign(({ context, event }) => ({
      progress: Math.max(context.progress, observed(event)?.progress ?? context.progress),
      polls: context.polls + 1,
      pollRound: context.pollRound + 1,
      consecutivePollErrors: 0,
      nextDelayMs: pollDelay(context, context.pollRound + 1),
    })),
    scheduleTriggerRetry: assign(({ context, event }) => {
      const failure = failureOf(event);
      const key = `${context.syncId}:trigger:${context.triggerAttempts}`;
      return { lastFailure: failure, nextDelayMs: backoff(context.policy, context.triggerAttempts, key, validRetryAfter(failure)) };
    }),
    schedulePollRetry: assign(({ context, event }) => {
      const failure = failureOf(event);
      const errors = context.consecutivePollErrors + 1;
      const key = `${context.syncId}:poll-error:${context.effectSeq}`;
      return { lastFailure: failure, consecutivePollErrors: errors, nextDelayMs: backoff(context.policy, errors, key, validRetryAfter(failure)) };
    }),
    recordTransientFailure: assign({ lastFailure: ({ event }) => failureOf(event) }),
    recordChallenge: assign(({ context, event }) => {
      const envelope = envelopeOf(event)!;
      const o = envelope.observation as Extract<Observation, { status: 'AWAIT_AUTH' }>;
      const ttl = Date.parse(o.challenge.expiresAt) - envelope.observedAt;
      return {
        challenge: o.challenge,
        challengeTtlMs: Number.isFinite(ttl) ? Math.max(0, ttl) : context.policy.defaultChallengeTtlMs,
        challengesSeen: context.challengesSeen + 1,
        pendingResponseRef: null,
        progress: Math.max(context.progress, o.progress ?? context.progress),
      };
    }),
    acceptAnswer: assign({
      pendingResponseRef: ({ event }) => (event.type === 'CHALLENGE.ANSWER' ? event.responseRef : null),
    }),
    recordResult: assign({
      result: ({ event }) => (observed(event) as Extract<Observation, { status: 'COMPLETED' }>).result,
      challenge: null,
      pendingResponseRef: null,
    }),
    recordProviderError: assign({
      error: ({ event }) => (observed(event) as Extract<Observation, { status: 'FAILED' }>).error,
      challenge: null,
      pendingResponseRef: null,
    }),
    recordEffectFailure: assign({
      error: ({ event }) => failureToError(failureOf(event)),
      challenge: null,
      pendingResponseRef: null,
    }),
    recordChallengeExpired: assign({
      error: ({ context }) => ({
        code: 'CHALLENGE_EXPIRED' as const,
        retryable: false,
        userActionRequired: true,
        message: `challenge ${context.challenge?.id ?? ''} (${context.challenge?.kind ?? 'unknown'}) expired before the user solved it`,
      }),
      challenge: null,
      pendingResponseRef: null,
    }),
    recordUserNeeded: assign({
      error: ({ context }) => ({
        code: 'NEEDS_USER' as const,
        retryable: false,
        userActionRequired: true,
        message: `the bank asks for the user (${context.challenge?.kind ?? 'unknown'} challenge) during an unattended sync; the user must start the sync`,
      }),
      challenge: null,
      pendingResponseRef: null,
    }),
    recordTimeout: assign({
      error: ({ context }) => ({
        code: 'TIMEOUT' as const,
        retryable: true,
        userActionRequired: false,
        message: `the provider did not finish its work within ${context.policy.syncDeadlineMs} ms`,
      }),
      challenge: null,
      pendingResponseRef: null,
    }),
    recordCancelled: assign({
      error: ({ event }) => ({
        code: 'CANCELLED' as const,
        retryable: false,
        userActionRequired: false,
        message: event.type === 'CANCEL' && event.reason ? `cancelled: ${event.reason}` : 'cancelled',
      }),
      challenge: null,
      pendingResponseRef: null,
    }),
  },
}).createMachine({
  id: 'sync',
  context: ({ input }) => ({
    syncId: input.syncId,
    connectionId: input.connectionId,
    provider: input.provider,
    scope: input.scope,
    options: input.options ?? {},
    unattended: input.unattended ?? false,
    policy: { ...defaultSyncPolicy, ...input.policy },
    providerRef: null,
    effectSeq: 0,
    triggerAttempts: 0,
    polls: 0,
    pollRound: 0,
    consecutivePollErrors: 0,
    nextDelayMs: 0,
    challenge: null,
    challengeTtlMs: 0,
    challengesSeen: 0,
    pendingResponseRef: null,
    progress: 0,
    lastFailure: null,
    result: null,
    error: null,
  }),
  initial: 'QUEUED',
  output: ({ context }) => ({
    status: context.error ? 'FAILED' : 'COMPLETED',
    result: context.result,
    error: context.error,
  }),
  states: {
    QUEUED: {
      initial: 'Triggering',
      after: { syncDeadline: { target: '#sync.FAILED', actions: 'recordTimeout' } },
      on: { ...cancel },
      states: {
        Triggering: {
          entry: ['nextEffect', 'countTriggerAttempt'],
          invoke: {
            id: 'trigger',
            src: 'triggerSync',
            input: ({ context }) => effectInput(context, 'trigger'),
            onDone: [
              { guard: 'observedCompleted', target: '#sync.COMPLETED', actions: ['recordProviderRef', 'recordResult'] },
              { guard: 'observedFailed', target: '#sync.FAILED', actions: ['recordProviderRef', 'recordProviderError'] },
              { guard: 'observedAwaitAuth', target: '#sync.AWAIT_AUTH', actions: ['recordProviderRef', 'recordChallenge'] },
              { target: '#sync.RUNNING', actions: ['recordProviderRef', 'recordProgress'] },
            ],
            onError: [
              { guard: 'canRetryTrigger', target: 'Backoff', actions: 'scheduleTriggerRetry' },
              { target: '#sync.FAILED', actions: 'recordEffectFailure' },
            ],
          },
        },
        Backoff: {
          after: { nextDelay: 'Triggering' },
        },
      },
    },
    RUNNING: {
      initial: 'Waiting',
      entry: 'startPolling',
      after: { syncDeadline: { target: '#sync.FAILED', actions: 'recordTimeout' } },
      on: {
        ...cancel,
        'PROVIDER.OBSERVED': [
          { guard: 'staleObservation' },
          ...toTerminal,
          { guard: 'observedAwaitAuth', target: '#sync.AWAIT_AUTH', actions: ['recordProgress', 'recordChallenge'] },
          // RUNNING/QUEUED pushes while running: nothing new, the next poll stays scheduled.
          { actions: 'recordProgress' },
        ],
      },
      states: {
        Waiting: {
          after: { nextDelay: 'Polling' },
        },
        Polling: {
          entry: 'nextEffect',
          invoke: {
            id: 'poll',
            src: 'pollSync',
            input: ({ context }) => effectInput(context, 'poll'),
            onDone: [
              ...toTerminal,
              { guard: 'observedAwaitAuth', target: '#sync.AWAIT_AUTH', actions: 'recordChallenge' },
              { target: 'Waiting', actions: 'scheduleNextPoll' },
            ],
            onError: [
              { guard: 'canRetryPoll', target: 'Waiting', actions: 'schedulePollRetry' },
              { target: '#sync.FAILED', actions: 'recordEffectFailure' },
            ],
          },
        },
      },
    },
    AWAIT_AUTH: {
      initial: 'AwaitingUser',
      // Nobody is there to answer: stop at once rather than wait for the challenge to expire.
      always: { guard: 'unattended', target: 'FAILED', actions: 'recordUserNeeded' },
      after: {
        challengeExpiry: { target: 'FAILED', actions: 'recordChallengeExpired' },
      },
      on: {
        ...cancel,
        'PROVIDER.OBSERVED': [
          { guard: 'staleObservation' },
          { guard: and(['observedChallengeBeingAnswered', stateIn('#sync.AWAIT_AUTH.Answering')]) },
          ...toTerminal,
          toNewChallenge,
          { guard: 'observedInProgress', target: 'RUNNING', actions: 'recordProgress' },
          { actions: 'recordProgress' },
        ],
      },
      states: {
        AwaitingUser: {
          after: { authPollInterval: 'Checking' },
          on: { 'CHALLENGE.ANSWER': answer },
        },
        /** Decoupled and redirect challenges are solved at the bank; a read tells us when. */
        Checking: {
          entry: 'nextEffect',
          on: { 'CHALLENGE.ANSWER': answer },
          invoke: {
            id: 'check',
            src: 'pollSync',
            input: ({ context }) => effectInput(context, 'check'),
            onDone: [
              ...toTerminal,
              toNewChallenge,
              { guard: 'observedInProgress', target: '#sync.RUNNING', actions: 'recordProgress' },
              { target: 'AwaitingUser' },
            ],
            // A failed read while waiting is harmless: the challenge deadline bounds the wait.
            onError: { target: 'AwaitingUser', actions: 'recordTransientFailure' },
          },
        },
        Answering: {
          entry: 'nextEffect',
          invoke: {
            id: 'answer',
            src: 'answerChallenge',
            input: ({ context }) => ({
              ...effectInput(context, 'answer'),
              challengeId: context.challenge?.id ?? '',
              responseRef: context.pendingResponseRef ?? '',
            }),
            onDone: [
              ...toTerminal,
              toNewChallenge,
              { guard: 'observedInProgress', target: '#sync.RUNNING', actions: 'recordProgress' },
              { target: 'AwaitingUser' },
            ],
            // Never resubmit an answer on our own: a second wrong TAN can lock the user's bank account.
            onError: [
              { guard: 'answerFailedHard', target: '#sync.FAILED', actions: 'recordEffectFailure' },
              { target: 'AwaitingUser', actions: 'recordTransientFailure' },
            ],
          },
        },
      },
    },
    COMPLETED: { type: 'final' },
    FAILED: { type: 'final' },
  },
});

export type SynchronizationMachine = typeof synchronizationMachine;
export type SyncStatus = 'QUEUED' | 'RUNNING' | 'AWAIT_AUTH' | 'COMPLETED' | 'FAILED';

/** The canonical status of a snapshot value ({ RUNNING: 'Waiting' } -> 'RUNNING'). */
export function statusOf(value: unknown): SyncStatus {
  const top = typeof value === 'string' ? value : Object.keys(value as object)[0];
  return top as SyncStatus;
}
