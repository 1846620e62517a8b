/**
 * finX API v2.11 adapter (seed 002). `connectionId` is the finX access id, `providerRef` the finX sync id.
 *
 * Idempotency: `trigger` sends `Idempotency-Key: request.idempotencyKey`, so a repeated trigger after a
 * lost response returns the same sync (200) instead of a second one. `findTriggered` recognises our sync
 * in the access's sync list by that key (sandbox `idempotency_key` field) or adopts any non-terminal sync
 * created since `request.since - 5 s` (finX allows one running sync per access, so it is the one to follow).
 */
import { forConnection, type ClientAuthConfig } from '../client-base.js';
import { Observation } from '../../../machines/canonical.js';
import { InvalidProviderResponseError, ProviderError, ProviderInputError, zodIssues } from '../errors.js';
import type { ProviderAdapter, SyncRef, SyncRequestInput, TriggerRequest, WebhookDelivery, WebhookRequest } from '../types.js';
import { FINX, FinxClient, type FinxClientConfig } from './client.js';
import { isTerminalFinxStatus, mapSync } from './mapping.js';
import { FinxWebhook, type FinxSync } from './schemas.js';
import { parseProviderTime } from '../time.js';

export { FinxClient, type FinxClientConfig } from './client.js';
export { parseRetryAfter } from '../http.js';
export { mapSync, mapSyncError, mapChallenge, mapAccount } from './mapping.js';
export * as finxSchemas from './schemas.js';

/** Clock skew allowance between our `since` and finX's `created_at`. */
export const FIND_TRIGGERED_SLACK_MS = 5_000;

export interface FinxAdapterConfig extends ClientAuthConfig {
  baseUrl: string;
}

export interface CreateAccessInput {
  providerId: string;
  accessMethodId: string;
  /** Sent to finX once; never stored or returned by the adapter. */
  credentials: Record<string, string>;
  /** Sandbox only: scripted scenario (see FINX_SCENARIOS in src/sandbox/finx/). */
  scenario?: string;
  /** Sandbox only: challenge deadline for this access. */
  challengeTtlMs?: number;
}

export interface FinxAccessInfo {
  id: string;
  providerId: string;
  accessMethodId: string;
  createdAt: string;
}

export interface FinxAdapter extends ProviderAdapter {
  readonly name: 'finx';
  readonly client: FinxClient;
  createAccess(input: CreateAccessInput): Promise<FinxAccessInfo>;
}

/** Creates a finX access (connection) and returns its id; use it as `connectionId`. */
export async function createAccess(config: FinxAdapterConfig | FinxClient, input: CreateAccessInput): Promise<FinxAccessInfo> {
  const client = config instanceof FinxClient ? config : new FinxClient(config);
  const { data } = await client.createAccess({
    provider_id: input.providerId,
    access_method_id: input.accessMethodId,
    credentials: input.credentials,
    ...(input.scenario !== undefined ? { scenario: input.scenario } : {}),
    ...(input.challengeTtlMs !== undefined ? { challenge_ttl_ms: input.challengeTtlMs } : {}),
  });
  return { id: data.id, providerId: data.provider_id, accessMethodId: data.access_method_id, createdAt: data.created_at };
}

function checkBelongs(sync: FinxSync, connectionId: string, operation: string): void {
  if (sync.access_id !== connectionId) {
    throw new InvalidProviderResponseError(FINX, operation, ['access_id: does not match the requested access']);
  }
}

function header(headers: WebhookRequest['headers'], name: string): string | undefined {
  const value = headers[name] ?? headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** Parses a finX `sync.updated` webhook body. Throws ProviderInputError (only) when it is not one. */
export function parseFinxWebhook(request: WebhookRequest): WebhookDelivery {
  try {
    const contentType = header(request.headers, 'content-type');
    if (contentType !== undefined && !/^application\/(.+\+)?json\b/i.test(contentType)) {
      throw new ProviderInputError(FINX, 'webhook is not JSON');
    }
    if (typeof request.body !== 'string' || request.body.length === 0) {
      throw new ProviderInputError(FINX, 'webhook body is empty');
    }
    let json: unknown;
    try {
      json = JSON.parse(request.body);
    } catch {
      throw new ProviderInputError(FINX, 'webhook body is not valid JSON');
    }
    const parsed = FinxWebhook.safeParse(json);
    if (!parsed.success) {
      const issues = zodIssues(parsed.error);
      throw new ProviderInputError(FINX, `webhook body does not match the schema (${issues.slice(0, 3).join('; ')})`, issues);
    }
    return { providerRef: parsed.data.sync.id, observation: mapSync(parsed.data.sync, 'webhook'), connectionId: parsed.data.sync.access_id };
  } catch (error) {
    if (error instanceof ProviderInputError) throw error;
    // Unknown status, invalid upgrade data...: the delivery changes nothing; the next poll will tell.
    const reason = error instanceof ProviderError ? `${error.code}: ${error.message}` : 'unreadable webhook';
    throw new ProviderInputError(FINX, `webhook rejected (${reason})`);
  }
}

export function createFinxAdapter(config: FinxAdapterConfig): FinxAdapter {
  const client = new FinxClient(config);

  return forConnection({
    name: 'finx',
    client,

    createAccess: (input) => createAccess(client, input),

    // finX v2.11 synchronizations take no options: a misspelt one is refused before a sync exists.
    validateRequest(request: SyncRequestInput) {
      const keys = Object.keys(request.options ?? {});
      if (keys.length > 0) throw new ProviderInputError(FINX, 'synchronizations take no options', keys.map((k) => `options.${k}: unknown option`));
    },

    async trigger(request: TriggerRequest) {
      const { data } = await client.triggerSync(request.connectionId, { scope: request.scope }, request.idempotencyKey);
      checkBelongs(data, request.connectionId, 'trigger');
      return { providerRef: data.id, observation: mapSync(data, 'trigger') };
    },

    async findTriggered(request: TriggerRequest) {
      const { data } = await client.listSyncs(request.connectionId);
      const cutoff = request.since - FIND_TRIGGERED_SLACK_MS;
      const candidates = data.syncs
        .filter((sync) => sync.access_id === request.connectionId && parseProviderTime(sync.created_at)! >= cutoff)
        .filter((sync) => !isTerminalFinxStatus(sync.status) || sync.idempotency_key === request.idempotencyKey)
        .sort((a, b) => parseProviderTime(b.created_at)! - parseProviderTime(a.created_at)!);
      const newest = candidates[0];
      if (!newest) return null;
      return { providerRef: newest.id, observation: mapSync(newest, 'findTriggered') };
    },

    async poll(ref: SyncRef): Promise<Observation> {
      const { data } = await client.getSync(ref.connectionId, ref.providerRef);
      if (data.id !== ref.providerRef) {
        throw new InvalidProviderResponseError(FINX, 'getSync', ['id: does not match the requested sync']);
      }
      checkBelongs(data, ref.connectionId, 'getSync');
      return mapSync(data, 'getSync');
    },

    async answerChallenge(ref: SyncRef, challengeId: string, response: string): Promise<Observation> {
      const { data } = await client.answerChallenge(ref.connectionId, ref.providerRef, challengeId, response);
      checkBelongs(data, ref.connectionId, 'answerChallenge');
      return mapSync(data, 'answerChallenge');
    },

    parseWebhook: parseFinxWebhook,
  });
}
