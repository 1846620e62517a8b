/**
 * Test harness for the canonical synchronization machine: a live actor on a SimulatedClock whose effect
 * actors are deferred promises the test settles by hand. Shared by the unit, model and property tests.
 */
import { expect, vi } from 'vitest';
import { createActor, fromPromise, SimulatedClock, type AnyEventObject, type SnapshotFrom } from 'xstate';
import type { Challenge, EffectFailure, Observation, SyncResult } from '../../machines/canonical.js';
import {
  statusOf,
  synchronizationMachine,
  type AnswerInput,
  type EffectInput,
  type ObservationEnvelope,
  type SyncEvent,
  type SyncInput,
  type SyncPolicy,
  type SyncStatus,
  type TriggerEnvelope,
} from '../../machines/synchronization.js';

/** Invocation ids of the machine's effects (triggerSync -> trigger, pollSync -> poll | check, answerChallenge -> answer). */
export type EffectId = 'trigger' | 'poll' | 'check' | 'answer';
export const EFFECT_IDS: readonly EffectId[] = ['trigger', 'poll', 'check', 'answer'];

export type SyncSnapshot = SnapshotFrom<typeof synchronizationMachine>;

/** A fixed, realistic epoch for the simulated clock (the machine only ever sees clock-relative times). */
export const T0 = Date.parse('2025-03-01T09:00:00.000Z');

export const iso = (ms: number): string => new Date(ms).toISOString();

export function syncInput(policy: Partial<SyncPolicy> = {}, overrides: Partial<SyncInput> = {}): SyncInput {
  return {
    syncId: 'sync-1',
    connectionId: 'conn-1',
    provider: 'finx',
    scope: 'TRANSACTIONS',
    policy,
    ...overrides,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Provider readings and failures
// ---------------------------------------------------------------------------------------------------------------

export const RESULT: SyncResult = {
  outcome: 'COMPLETE',
  accounts: [{ accountId: 'acc-1', status: 'UPDATED', transactionsAdded: 3 }],
};

export function challenge(
  id: string,
  kind: Challenge['kind'],
  expiresAt: number | string,
  extra: Partial<Challenge> = {},
): Challenge {
  return { id, kind, expiresAt: typeof expiresAt === 'number' ? iso(expiresAt) : expiresAt, ...extra };
}

export const obs = {
  queued: (): Observation => ({ status: 'QUEUED' }),
  running: (): Observation => ({ status: 'RUNNING' }),
  awaitAuth: (c: Challenge): Observation => ({ status: 'AWAIT_AUTH', challenge: c }),
  completed: (result: SyncResult = RESULT): Observation => ({ status: 'COMPLETED', result }),
  failed: (code: 'BANK_REJECTED' | 'PROVIDER_ERROR' | 'ACCESS_UPGRADE' = 'BANK_REJECTED'): Observation => ({
    status: 'FAILED',
    error: { code, retryable: false, userActionRequired: code === 'ACCESS_UPGRADE', message: `provider says ${code}` },
  }),
};

export function failure(
  code: EffectFailure['code'],
  retryable: boolean,
  extra: Partial<EffectFailure> = {},
): EffectFailure {
  return {
    code,
    retryable,
    userActionRequired: code === 'INVALID_CREDENTIALS' || code === 'SCA_FAILED',
    message: `${code} from fake provider`,
    ...extra,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Live actor harness
// ---------------------------------------------------------------------------------------------------------------

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Let settled promises reach the actor (macrotask boundary drains all microtasks). */
export const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface Invocation {
  id: EffectId;
  input: EffectInput | AnswerInput;
}

export interface HarnessOptions {
  policy?: Partial<SyncPolicy>;
  input?: Partial<SyncInput>;
  /** Start the simulated clock at this instant (default T0). */
  startAt?: number;
}

export type Harness = ReturnType<typeof createHarness>;

export function createHarness(options: HarnessOptions = {}) {
  const clock = new SimulatedClock();
  clock.set(options.startAt ?? T0);

  const invocations: Invocation[] = [];
  const pending = new Map<EffectId, Deferred<unknown>>();

  function effect<TOut, TIn extends EffectInput>() {
    return fromPromise<TOut, TIn>(({ input, self }) => {
      const id = self.id as EffectId;
      if (!EFFECT_IDS.includes(id)) throw new Error(`unexpected invocation id ${self.id}`);
      invocations.push({ id, input: { ...input } });
      const d = deferred<unknown>();
      pending.set(id, d);
      return d.promise as Promise<TOut>;
    });
  }

  const machine = synchronizationMachine.provide({
    actors: {
      triggerSync: effect<TriggerEnvelope, EffectInput>(),
      pollSync: effect<ObservationEnvelope, EffectInput>(),
      answerChallenge: effect<ObservationEnvelope, AnswerInput>(),
    },
  });

  const input = syncInput(options.policy ?? {}, options.input ?? {});
  const actor = createActor(machine, { clock, input });

  /** Every snapshot the actor emitted, in order. */
  const history: SyncSnapshot[] = [];
  /** When (simulated) each scheduled delayed event was first seen: the scheduler's own startedAt is wall-clock. */
  const scheduledAt = new WeakMap<object, number>();
  const recordTimers = () => {
    for (const e of Object.values(actor.system.getSnapshot()._scheduledEvents)) {
      if (!scheduledAt.has(e)) scheduledAt.set(e, clock.now());
    }
  };
  /** The machine's own error, if it threw: every later harness call rethrows it (not a silent stall). */
  let actorError: { error: unknown } | undefined;
  actor.subscribe({
    next: (s) => {
      history.push(s);
      recordTimers();
    },
    error: (error) => {
      actorError ??= { error };
    },
  });
  const check = () => {
    if (actorError) {
      const { error } = actorError;
      throw new Error(`the machine failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  };
  /**
   * Sends an event. XState warns (console.warn) when an event reaches a finished actor; tests do that on
   * purpose, so only that call is muted, and the warning must be the expected one.
   */
  const send = (event: AnyEventObject) => {
    if (actor.getSnapshot().status === 'active') {
      actor.send(event as SyncEvent);
      return;
    }
    const warnings: unknown[][] = [];
    const spy = vi.spyOn(console, 'warn').mockImplementation((...args: unknown[]) => {
      warnings.push(args);
    });
    try {
      actor.send(event as SyncEvent);
    } finally {
      spy.mockRestore();
    }
    expect(warnings.map((w) => String(w[0]))).toEqual([expect.stringContaining(`Event "${event.type}" was sent to stopped actor`)]);
  };
  const settle = async () => {
    await flush();
    check();
  };
  actor.start();
  recordTimers();
  if (history.length === 0 || history[history.length - 1] !== actor.getSnapshot()) history.push(actor.getSnapshot());

  const snapshot = () => actor.getSnapshot();

  /** Ids of the effects currently in flight (active invoked children). */
  const inFlight = (): EffectId[] => Object.keys(snapshot().children) as EffectId[];

  function take(id: EffectId): Deferred<unknown> {
    if (!inFlight().includes(id)) {
      throw new Error(`effect '${id}' is not in flight (in flight: ${inFlight().join(',') || 'none'}; state ${JSON.stringify(snapshot().value)})`);
    }
    const d = pending.get(id);
    if (!d) throw new Error(`no pending '${id}' promise`);
    pending.delete(id);
    return d;
  }

  /** Pending delayed events with their simulated due time. */
  function timers(): Array<{ type: string; dueAt: number; delay: number }> {
    recordTimers();
    return Object.values(actor.system.getSnapshot()._scheduledEvents)
      .map((e) => ({ type: e.event.type, delay: e.delay, dueAt: (scheduledAt.get(e) ?? clock.now()) + e.delay }))
      .sort((a, b) => a.dueAt - b.dueAt);
  }

  return {
    actor,
    clock,
    input,
    invocations,
    history,
    snapshot,
    inFlight,
    timers,
    value: () => snapshot().value,
    status: (): SyncStatus => statusOf(snapshot().value),
    context: () => snapshot().context,
    /** All statuses seen, with consecutive duplicates collapsed. */
    statuses(): SyncStatus[] {
      const out: SyncStatus[] = [];
      for (const s of history) {
        const st = statusOf(s.value);
        if (out[out.length - 1] !== st) out.push(st);
      }
      return out;
    },
    calls: (id: EffectId) => invocations.filter((i) => i.id === id).map((i) => i.input),
    effectKeys: () => invocations.map((i) => i.input.effectKey),
    async send(event: SyncEvent) {
      send(event);
      await settle();
    },
    async push(observation: Observation, observedAt = clock.now()) {
      send({ type: 'PROVIDER.OBSERVED', observation, observedAt });
      await settle();
    },
    async answer(challengeId: string, responseRef = `resp-${challengeId}`) {
      send({ type: 'CHALLENGE.ANSWER', challengeId, responseRef });
      await settle();
    },
    /** Resolve the in-flight effect `id` with a provider reading observed now. */
    async resolve(id: EffectId, observation: Observation, extra: { providerRef?: string; observedAt?: number } = {}) {
      const envelope: ObservationEnvelope | TriggerEnvelope =
        id === 'trigger'
          ? { providerRef: extra.providerRef ?? 'ref-1', observation, observedAt: extra.observedAt ?? clock.now() }
          : { observation, observedAt: extra.observedAt ?? clock.now() };
      take(id).resolve(envelope);
      await settle();
    },
    /** Settle the in-flight effect `id` with an exact output value (used by the model replay). */
    async resolveRaw(id: EffectId, output: unknown) {
      take(id).resolve(output);
      await settle();
    },
    /** Settle the last promise handed to `id` even if that invocation was stopped meanwhile. */
    async settleStale(id: EffectId, output: unknown) {
      pending.get(id)?.resolve(output);
      pending.delete(id);
      await settle();
    },
    async reject(id: EffectId, error: unknown) {
      take(id).reject(error);
      await settle();
    },
    /** Advance simulated time, letting effects started on the way be invoked. */
    async advance(ms: number) {
      clock.increment(ms);
      await settle();
    },
  };
}
