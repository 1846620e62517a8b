/**
 * Journaled effects. XState re-runs an invoked promise when a snapshot is restored, so every provider
 * call goes through the journal: a finished effect replays its recorded outcome, and an effect that was
 * started but never finished (the process died mid-call) runs its `recover` path instead of `exec`,
 * which reconciles with the provider rather than repeating a non-idempotent call.
 */
import type { EffectFailure } from '../../machines/canonical.js';
import { ProviderError } from '../providers/errors.js';
import type { Store } from '../stores/types.js';
import type { Clock } from './clock.js';
import type { Logger } from './logger.js';

export interface EffectPlan<T> {
  effectKey: string;
  syncId: string;
  kind: string;
  /** The normal path: the effect was never started before. */
  exec: () => Promise<T>;
  /** The effect was started by an earlier process that died before recording the outcome. */
  recover: () => Promise<T>;
}

export function toEffectFailure(error: unknown): EffectFailure {
  if (error instanceof ProviderError) return error.toFailure();
  if (isEffectFailure(error)) return error;
  // Unclassified errors are not the provider's word: fail safe, and keep the raw message out (it may echo input).
  const name = error instanceof Error ? error.name : typeof error;
  return { code: 'PROVIDER_ERROR', retryable: false, userActionRequired: false, message: `internal error (${name})` };
}

export function isEffectFailure(value: unknown): value is EffectFailure {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as EffectFailure).code === 'string' &&
    typeof (value as EffectFailure).retryable === 'boolean' &&
    typeof (value as EffectFailure).message === 'string'
  );
}

export class EffectRunner {
  constructor(
    /** The store, or the engine's group-commit pipeline in front of it. */
    private readonly store: Pick<Store, 'startEffect' | 'finishEffect'>,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  async run<T>(plan: EffectPlan<T>): Promise<T> {
    const previous = await this.store.startEffect(plan.effectKey, plan.syncId, plan.kind, this.clock.now());
    if (previous?.state === 'DONE') return previous.outcome as T;
    if (previous?.state === 'FAILED') throw previous.outcome as EffectFailure;
    const recovering = previous?.state === 'STARTED';
    if (recovering) this.logger.info({ effectKey: plan.effectKey, kind: plan.kind }, 'recovering effect started before a restart');
    try {
      const outcome = await (recovering ? plan.recover() : plan.exec());
      await this.store.finishEffect(plan.effectKey, 'DONE', outcome, this.clock.now());
      return outcome;
    } catch (error) {
      const failure = toEffectFailure(error);
      await this.store.finishEffect(plan.effectKey, 'FAILED', failure, this.clock.now());
      this.logger.warn({ effectKey: plan.effectKey, kind: plan.kind, code: failure.code, retryable: failure.retryable }, failure.message);
      throw failure;
    }
  }
}
