/**
 * An in-process provider double for engine unit tests (the main path is tested over HTTP against the
 * sandbox). Each call takes the next scripted step; a step can also hang forever to simulate a crash mid-call.
 */
import type { Observation, TriggerOutput } from '../../machines/canonical.js';
import { ProviderError, ProviderInputError } from '../../src/providers/errors.js';
import type { ProviderAdapter, SyncRef, TriggerRequest, WebhookRequest } from '../../src/providers/types.js';

export type Step<T> = T | 'hang' | ProviderError | (() => Promise<T>);

export interface FakeAdapterScript {
  trigger?: Step<TriggerOutput>[];
  poll?: Step<Observation>[];
  answer?: Step<Observation>[];
  findTriggered?: (TriggerOutput | null)[];
}

export class FakeAdapter implements ProviderAdapter {
  readonly calls = { trigger: 0, poll: 0, answer: 0, findTriggered: 0 };
  readonly answers: string[] = [];

  constructor(
    readonly name: string,
    private readonly script: FakeAdapterScript,
  ) {}

  private async take<T>(steps: Step<T>[] | undefined, index: number, fallback?: T): Promise<T> {
    const step = steps?.[Math.min(index, (steps?.length ?? 1) - 1)] ?? fallback;
    if (step === undefined) throw new Error('no scripted step');
    if (step === 'hang') return new Promise<T>(() => {});
    if (step instanceof ProviderError) throw step;
    if (typeof step === 'function') return (step as () => Promise<T>)();
    return step;
  }

  trigger(_request: TriggerRequest): Promise<TriggerOutput> {
    return this.take(this.script.trigger, this.calls.trigger++, { providerRef: 'ref-1', observation: { status: 'RUNNING' } });
  }

  async findTriggered(_request: TriggerRequest): Promise<TriggerOutput | null> {
    const list = this.script.findTriggered ?? [null];
    return list[Math.min(this.calls.findTriggered++, list.length - 1)] ?? null;
  }

  poll(_ref: SyncRef): Promise<Observation> {
    return this.take(this.script.poll, this.calls.poll++);
  }

  answerChallenge(_ref: SyncRef, _challengeId: string, response: string): Promise<Observation> {
    this.answers.push(response);
    return this.take(this.script.answer, this.calls.answer++);
  }

  parseWebhook(request: WebhookRequest): { providerRef: string; observation: Observation } {
    let body: unknown;
    try {
      body = JSON.parse(request.body);
    } catch {
      throw new ProviderInputError(this.name, 'webhook body is not JSON');
    }
    const b = body as { ref?: unknown; observation?: unknown; connectionId?: unknown };
    if (typeof b.ref !== 'string' || typeof b.observation !== 'object' || b.observation === null) {
      throw new ProviderInputError(this.name, 'webhook body has no ref/observation', ['ref: required']);
    }
    return { providerRef: b.ref, observation: b.observation as Observation, ...(typeof b.connectionId === 'string' ? { connectionId: b.connectionId } : {}) };
  }
}

export const running: Observation = { status: 'RUNNING' };
export const completed: Observation = { status: 'COMPLETED', result: { outcome: 'COMPLETE', accounts: [{ accountId: 'a1', status: 'UPDATED' }] } };
export function embedded(id: string, expiresAt: number, previousAttemptFailed = false): Observation {
  return {
    status: 'AWAIT_AUTH',
    challenge: { id, kind: 'EMBEDDED', expiresAt: new Date(expiresAt).toISOString(), ...(previousAttemptFailed ? { previousAttemptFailed } : {}) },
  };
}

/** Lets pending promise chains (effects, commits) run to quiescence. */
export async function settle(rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}
