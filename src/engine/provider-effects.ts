/**
 * The provider effects the synchronization machine invokes (trigger, poll, answer), run for a hosted sync:
 * through the effect journal where a repeat would do harm (trigger, answer), scrubbed of secrets before
 * anything is stored or logged, and measured by the sync observer. The engine provides them to the machine
 * (see SyncEngine's constructor); they read the sync's hosted runtime, never the engine.
 */
import type { EffectFailure } from '../../machines/canonical.js';
import type { AnswerInput, EffectInput, ObservationEnvelope, TriggerEnvelope } from '../../machines/synchronization.js';
import type { ProviderAdapter, TriggerRequest } from '../providers/types.js';
import type { Clock } from './clock.js';
import { toEffectFailure, type EffectRunner } from './effects.js';
import { BanksyncError } from './errors.js';
import type { Logger } from './logger.js';
import type { SyncRuntime } from './runtime.js';
import { scrubFailure, scrubObservation, type SecretVault } from './secrets.js';
import type { SyncObserver } from './telemetry.js';

export interface ProviderEffectsOptions {
  providers: Record<string, ProviderAdapter>;
  /** The effect journal (see effects.ts). */
  effects: EffectRunner;
  vault: SecretVault;
  observer: SyncObserver;
  clock: Clock;
  logger: Logger;
  /** The runtime this process hosts for the sync, if any. */
  hosted: (syncId: string) => SyncRuntime | undefined;
}

export class ProviderEffects {
  private readonly providers: Record<string, ProviderAdapter>;
  private readonly effects: EffectRunner;
  private readonly vault: SecretVault;
  private readonly observer: SyncObserver;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly hosted: (syncId: string) => SyncRuntime | undefined;

  constructor(options: ProviderEffectsOptions) {
    this.providers = options.providers;
    this.effects = options.effects;
    this.vault = options.vault;
    this.observer = options.observer;
    this.clock = options.clock;
    this.logger = options.logger;
    this.hosted = options.hosted;
  }

  private adapter(provider: string): ProviderAdapter {
    const adapter = this.providers[provider];
    if (!adapter) throw new BanksyncError('PROVIDER_NOT_CONFIGURED', `provider ${JSON.stringify(provider)} is not configured`);
    return adapter;
  }

  private async runtimeFor(syncId: string): Promise<SyncRuntime> {
    const runtime = this.hosted(syncId);
    if (!runtime) throw new BanksyncError('ENGINE_STOPPED', `sync ${syncId} is no longer hosted here`);
    await runtime.committed();
    if (runtime.closed) throw new BanksyncError('ENGINE_STOPPED', `sync ${syncId} is no longer hosted here`);
    return runtime;
  }

  /** Runs a provider call; a failure leaves it typed and scrubbed of secrets, before the journal stores it. */
  private async scrubbed<T>(syncId: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw scrubFailure(toEffectFailure(error), this.vault.known(syncId));
    }
  }

  async trigger(input: EffectInput): Promise<TriggerEnvelope> {
    const runtime = await this.runtimeFor(input.syncId);
    const adapter = this.adapter(input.provider);
    const request: TriggerRequest = {
      syncId: input.syncId,
      tenantId: runtime.record.tenantId,
      connectionId: input.connectionId,
      scope: input.scope,
      idempotencyKey: input.syncId,
      since: runtime.record.createdAt,
      options: input.options,
    };
    const reconcileThenTrigger = async () => (await adapter.findTriggered(request)) ?? adapter.trigger(request);
    const scrubbed = (call: () => Promise<TriggerEnvelope | Omit<TriggerEnvelope, 'observedAt'>>) =>
      this.scrubbed(input.syncId, async () => {
        const output = await call();
        return { ...output, observation: scrubObservation(output.observation, this.vault.known(input.syncId)) };
      });
    const output = await this.observer.effect(runtime.record, 'trigger', () => this.effects.run({
      effectKey: input.effectKey,
      syncId: input.syncId,
      kind: 'trigger',
      // A retry may follow an attempt whose outcome we never saw (timeout, garbled body): look before triggering.
      exec: () => scrubbed(input.attempt > 1 ? reconcileThenTrigger : () => adapter.trigger(request)),
      recover: () => scrubbed(reconcileThenTrigger),
    }));
    return { ...output, observedAt: this.clock.now() };
  }

  /**
   * A read is idempotent: re-running it after a restart is the right thing to do, so it skips the journal
   * (two store transactions per poll saved, see bench/RESULTS.md).
   */
  async poll(input: EffectInput): Promise<ObservationEnvelope> {
    const runtime = await this.runtimeFor(input.syncId);
    const adapter = this.adapter(input.provider);
    return this.observer.effect(runtime.record, 'poll', async () => {
      try {
        const observation = await adapter.poll({ tenantId: runtime.record.tenantId, connectionId: input.connectionId, providerRef: input.providerRef ?? '' });
        return { observation: scrubObservation(observation, this.vault.known(input.syncId)), observedAt: this.clock.now() };
      } catch (error) {
        const failure = scrubFailure(toEffectFailure(error), this.vault.known(input.syncId));
        this.logger.warn({ effectKey: input.effectKey, kind: 'poll', code: failure.code, retryable: failure.retryable }, failure.message);
        throw failure;
      }
    });
  }

  async answer(input: AnswerInput): Promise<ObservationEnvelope> {
    const runtime = await this.runtimeFor(input.syncId);
    const adapter = this.adapter(input.provider);
    const ref = { tenantId: runtime.record.tenantId, connectionId: input.connectionId, providerRef: input.providerRef ?? '' };
    const observation = await this.observer.effect(runtime.record, 'answer', () => this.effects.run({
      effectKey: input.effectKey,
      syncId: input.syncId,
      kind: 'answer',
      exec: () => this.scrubbed(input.syncId, async () => {
        const response = this.vault.take(input.responseRef);
        if (response === undefined) {
          throw {
            code: 'ANSWER_NOT_SENT',
            retryable: false,
            userActionRequired: true,
            message: 'the answer was not sent (the engine restarted before sending it); ask the user again',
          };
        }
        return scrubObservation(await adapter.answerChallenge(ref, input.challengeId, response), this.vault.known(input.syncId));
      }),
      // We may or may not have sent the answer before dying: read the state, never send it again. The same
      // challenge still open (and not marked as wrongly answered) means the answer never took effect: ask the
      // user again now, with the reason, instead of waiting silently until the challenge expires.
      recover: () =>
        this.scrubbed(input.syncId, async () => {
          const observation = scrubObservation(await adapter.poll(ref), this.vault.known(input.syncId));
          const stillOpen = observation.status === 'AWAIT_AUTH' && observation.challenge.id === input.challengeId && !observation.challenge.previousAttemptFailed;
          if (stillOpen) {
            throw {
              code: 'ANSWER_NOT_SENT',
              retryable: false,
              userActionRequired: true,
              message: 'the answer did not reach the provider before the engine restarted; the challenge is still open: ask the user again',
            } satisfies EffectFailure;
          }
          return observation;
        }),
    }));
    return { observation, observedAt: this.clock.now() };
  }
}
