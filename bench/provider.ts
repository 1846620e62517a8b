/**
 * Zero-latency, in-process provider double for the benchmarks. Every connection goes through the same script:
 * trigger -> RUNNING, poll #1 -> RUNNING, poll #2 -> AWAIT_AUTH (one EMBEDDED challenge), answer -> COMPLETED.
 *
 * Each call returns fresh objects (as a real adapter parsing a response would) and settles in a microtask.
 * `onResult` is told the connection whose call just returned, so the latency probe can time "effect result ->
 * commit" from the moment the provider answered.
 */
import type { Observation, TriggerOutput } from '../machines/canonical.js';
import type { ProviderAdapter, SyncRef, TriggerRequest, WebhookDelivery } from '../src/providers/types.js';
import type { Clock } from '../src/engine/clock.js';

export const BENCH_PROVIDER = 'bench';
/** Challenge lifetime; far longer than any benchmark runs on the virtual clock. */
const CHALLENGE_TTL_MS = 10 * 60_000;

export class ZeroLatencyProvider implements ProviderAdapter {
  readonly name = BENCH_PROVIDER;
  readonly calls = { trigger: 0, poll: 0, answer: 0 };
  /** providerRef -> polls answered so far. Entries go away when the sync completes (or via forget()). */
  private readonly polls = new Map<string, number>();
  onResult: ((connectionId: string) => void) | undefined;

  constructor(private readonly clock: Clock) {}

  async trigger(request: TriggerRequest): Promise<TriggerOutput> {
    this.calls.trigger++;
    const providerRef = `ref-${request.connectionId}`;
    this.polls.set(providerRef, 0);
    this.onResult?.(request.connectionId);
    return { providerRef, observation: { status: 'RUNNING' } };
  }

  async findTriggered(_request: TriggerRequest): Promise<TriggerOutput | null> {
    return null;
  }

  async poll(ref: SyncRef): Promise<Observation> {
    this.calls.poll++;
    const n = (this.polls.get(ref.providerRef) ?? 0) + 1;
    this.polls.set(ref.providerRef, n);
    this.onResult?.(ref.connectionId);
    if (n < 2) return { status: 'RUNNING' };
    return {
      status: 'AWAIT_AUTH',
      challenge: {
        id: `ch-${ref.providerRef}`,
        kind: 'EMBEDDED',
        expiresAt: new Date(this.clock.now() + CHALLENGE_TTL_MS).toISOString(),
        message: 'Enter the TAN sent to your phone',
      },
    };
  }

  async answerChallenge(ref: SyncRef, _challengeId: string, _response: string): Promise<Observation> {
    this.calls.answer++;
    this.polls.delete(ref.providerRef);
    this.onResult?.(ref.connectionId);
    return {
      status: 'COMPLETED',
      result: {
        outcome: 'COMPLETE',
        accounts: [
          { accountId: `${ref.connectionId}-giro`, status: 'UPDATED', kind: 'CASH', transactionsAdded: 12 },
          { accountId: `${ref.connectionId}-depot`, status: 'UPDATED', kind: 'PORTFOLIO', transactionsAdded: 0 },
        ],
      },
    };
  }

  parseWebhook(): WebhookDelivery {
    throw new Error('the benchmark provider has no webhooks');
  }

  /** Drops per-connection script state (used before heap measurements, so the double's own Map is not counted). */
  forget(): void {
    this.polls.clear();
  }
}

/** The user's answer to a benchmark challenge. */
export const BENCH_TAN = '123456';
