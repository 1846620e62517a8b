/**
 * What one provider family's adapter offers the engine. Adapters speak HTTP, parse every body with zod
 * and return canonical observations; they never touch machines or stores (data flows one way).
 */
import type { Observation, SyncScope, TriggerOutput } from '../../machines/canonical.js';

export interface TriggerRequest {
  syncId: string;
  /** The tenant the sync belongs to (the engine always sets it; per-user provider tokens are resolved for it). */
  tenantId?: string;
  connectionId: string;
  scope: SyncScope;
  /** Stable per sync; sent where the provider supports idempotency keys or client references. */
  idempotencyKey: string;
  /** Epoch ms of our first trigger attempt; reconciliation only considers provider syncs started since. */
  since: number;
  /** Provider-specific options (e.g. finAPI importNewAccounts); validated by the adapter. */
  options?: Record<string, unknown>;
}

export interface SyncRef {
  /** The tenant the sync belongs to (the engine always sets it). */
  tenantId?: string;
  connectionId: string;
  providerRef: string;
}

export interface WebhookDelivery {
  providerRef: string;
  observation: Observation;
  /** The connection the delivery names, when the provider's body carries it: checked against the sync's. */
  connectionId?: string;
}

export interface WebhookRequest {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** What a provider must accept for a sync to be created (see ProviderAdapter.validateRequest). */
export type SyncRequestInput = Pick<TriggerRequest, 'connectionId' | 'scope' | 'options'>;

/** How long a user's consent lasts, counted in calendar days or months in the provider's time zone. */
export interface ConsentTerm {
  zone: string;
  days?: number;
  months?: number;
}

export interface ProviderAdapter {
  readonly name: string;
  trigger(request: TriggerRequest): Promise<TriggerOutput>;
  /**
   * After a crash or an unknown outcome mid-trigger: the provider sync we may already have started,
   * or null when there is none (then triggering again is safe).
   */
  findTriggered(request: TriggerRequest): Promise<TriggerOutput | null>;
  poll(ref: SyncRef): Promise<Observation>;
  /** Sends the user's answer exactly once; never called again for the same answer by the engine. */
  answerChallenge(ref: SyncRef, challengeId: string, response: string): Promise<Observation>;
  /** Parses a webhook/callback body; throws ProviderInputError when it is not a valid delivery. */
  parseWebhook(request: WebhookRequest): WebhookDelivery;
  /**
   * Rejects, with ProviderInputError, a request this provider could never accept (id format, options, callback
   * URLs), before the engine creates a sync. Optional: providers without such rules omit it.
   */
  validateRequest?(request: SyncRequestInput): void;
  /**
   * Sync option keys that are safe to persist (no credentials, tokens or personal data): options are stored
   * with the sync and streamed to the inspector, so requestSync refuses any other key (INVALID_REQUEST).
   * Absent: the adapter takes no options.
   */
  readonly safeOptionKeys?: readonly string[];
  /** The provider disables a connection after this many failed syncs in a row (xs2a: 3); banksync stops one before. */
  readonly failureLimit?: number;
  /** The provider's consent term, when it differs from PSD2's 90 days in Europe/Berlin (wealthAPI: 3 months). */
  readonly consentTerm?: ConsentTerm;
}
