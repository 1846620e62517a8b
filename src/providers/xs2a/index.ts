/**
 * xs2a.api bank connection adapter (seed 003). `connectionId` is the xs2a bank connection id; `providerRef` is
 * `${connectionId}:${attempt}`, the number of the provider's sync attempt (sandbox `last_sync.attempt`).
 *
 * trigger: reads the connection first and asks the xs2a connection machine whether the provider would sync it:
 * - DISABLED (3 failures in a row)  -> CONNECTION_DISABLED, no sync request sent (delete and recreate);
 * - consent_valid_until passed      -> CONSENT_EXPIRED, no sync request sent (renew via reset);
 * - inactive and no `force`         -> PROVIDER_ERROR, user action, hint that `force` is needed; none sent;
 * - a sync attempt is running       -> that attempt is followed (never two syncs at once);
 * otherwise POST .../sync, with `force: true` only when `request.options.force === true` (explicit request):
 * 204 -> RUNNING, 202 -> AWAIT_AUTH with a WEB_FORM challenge whose redirectUrl is the wizard page.
 *
 * findTriggered: the connection's newest attempt, when it started since `request.since` (running attempts
 * allow FIND_TRIGGERED_SLACK_MS of clock skew; finished ones must have started after `since`, so a previous
 * sync's outcome is never taken for ours).
 */
import { forConnection, type ClientAuthConfig } from '../client-base.js';
import { transition } from 'xstate';
import type { Observation, TriggerOutput } from '../../../machines/canonical.js';
import { XS2A_MAX_FAILURES, xs2aConnectionMachine, xs2aReading, xs2aSyncDecision } from '../../../machines/xs2aConnection.js';
import { InvalidProviderResponseError, ProviderError, ProviderInputError, zodIssues } from '../errors.js';
import { z } from 'zod';
import type { ProviderAdapter, SyncRef, SyncRequestInput, TriggerRequest, WebhookDelivery, WebhookRequest } from '../types.js';
import { XS2A, Xs2aClient } from './client.js';
import {
  connectionSnapshot,
  isDisabled,
  isTerminalAttempt,
  mapAttempt,
  mapPublished,
  parseXs2aRef,
  xs2aPublishedRef,
  refusalError,
  todayOf,
  wizardChallenge,
  xs2aRef,
  type WizardLinks,
} from './mapping.js';
import { Xs2aEventType, Xs2aWebhook, type Xs2aBankConnection } from './schemas.js';
import { parseProviderTime } from '../time.js';

export { Xs2aClient, type Xs2aClientConfig } from './client.js';
export { mapAttempt, mapFailure, parseXs2aRef, xs2aRef, connectionSnapshot } from './mapping.js';
export * as xs2aSchemas from './schemas.js';

export const FIND_TRIGGERED_SLACK_MS = 5_000;

export interface Xs2aAdapterConfig extends ClientAuthConfig {
  /** API root, e.g. `${sandbox.url}/xs2a`. */
  baseUrl: string;
  /** Where the user completes a wizard session; `${wizardBaseUrl}/${key}`. Default `${baseUrl}/wizard`. */
  wizardBaseUrl?: string;
}

export interface CreateXs2aConnectionInput {
  bankName?: string;
  bic?: string;
  syncMode?: 'full' | 'shared' | 'none';
  /** Sent to xs2a once; never stored or returned by the adapter. */
  credentials?: Record<string, string>;
  /** Sandbox only: scripted scenario (see XS2A_SCENARIOS in src/sandbox/xs2a/). */
  scenario?: string;
}

export interface Xs2aConnectionInfo {
  id: string;
  bankName: string;
  syncMode: string;
  syncActive: boolean;
  syncFailCounter: number;
  status: string;
}

export interface Xs2aWizardInfo {
  connectionId: string;
  wizardSessionKey: string;
  /** The page the user opens to complete the wizard. */
  redirectUrl: string;
  expiresAt: string;
}

export interface Xs2aAdapter extends ProviderAdapter {
  readonly name: 'xs2a';
  readonly client: Xs2aClient;
  createConnection(input?: CreateXs2aConnectionInput): Promise<Xs2aConnectionInfo>;
  /** Resets the connection regardless of its sync mode: always a NEW wizard session for the user. */
  reset(connectionId: string): Promise<Xs2aWizardInfo>;
  deleteConnection(connectionId: string): Promise<void>;
}

function info(c: Xs2aBankConnection): Xs2aConnectionInfo {
  return {
    id: c.id,
    bankName: c.bank_name,
    syncMode: c.sync_mode,
    syncActive: c.sync_active,
    syncFailCounter: c.sync_fail_counter,
    status: c.status ?? (isDisabled(c) ? 'DISABLED' : 'READY'),
  };
}

function checkBelongs(connection: Xs2aBankConnection, connectionId: string, operation: string): void {
  if (connection.id !== connectionId) {
    throw new InvalidProviderResponseError(XS2A, operation, ['id: does not match the requested bank connection']);
  }
}

const Xs2aSyncOptions = z.object({ force: z.boolean().optional() }).strict();

function header(headers: WebhookRequest['headers'], name: string): string | undefined {
  const value = headers[name] ?? headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** Which canonical statuses each bank connection event may carry. */
const EVENT_STATUSES: Record<Xs2aEventType, readonly Observation['status'][]> = {
  'bank_connection.sync.started': ['QUEUED', 'RUNNING'],
  'bank_connection.sync.succeeded': ['COMPLETED'],
  'bank_connection.sync.failed': ['FAILED'],
};

/** Parses an xs2a bank connection event. Throws ProviderInputError (only) when it is not a valid one. */
export function parseXs2aWebhook(request: WebhookRequest, links: WizardLinks): WebhookDelivery {
  try {
    const contentType = header(request.headers, 'content-type');
    if (contentType !== undefined && !/^application\/(.+\+)?json\b/i.test(contentType)) {
      throw new ProviderInputError(XS2A, 'webhook is not JSON');
    }
    if (typeof request.body !== 'string' || request.body.length === 0) throw new ProviderInputError(XS2A, 'webhook body is empty');
    let json: unknown;
    try {
      json = JSON.parse(request.body);
    } catch {
      throw new ProviderInputError(XS2A, 'webhook body is not valid JSON');
    }
    const parsed = Xs2aWebhook.safeParse(json);
    if (!parsed.success) {
      const issues = zodIssues(parsed.error);
      throw new ProviderInputError(XS2A, `webhook body does not match the schema (${issues.slice(0, 3).join('; ')})`, issues);
    }
    const event = Xs2aEventType.safeParse(parsed.data.event);
    if (!event.success) throw new ProviderInputError(XS2A, 'webhook event type is not a sync event');
    const connection = parsed.data.data;
    const attempt = connection.last_sync?.attempt;
    // Published model: an event cannot name the sync it belongs to; it changes nothing, polling tells.
    if (attempt === undefined) throw new ProviderInputError(XS2A, 'sync event without last_sync (polling follows the sync)', ['data.last_sync: required']);
    const observation = mapAttempt(connection, attempt, 'webhook', links);
    if (!EVENT_STATUSES[event.data].includes(observation.status)) {
      throw new ProviderInputError(XS2A, `event ${event.data} contradicts the connection it carries (${observation.status})`);
    }
    return { providerRef: xs2aRef(connection.id, attempt), observation, connectionId: connection.id };
  } catch (error) {
    if (error instanceof ProviderInputError) throw error;
    // Unknown state, missing data...: the delivery changes nothing; the next poll will tell.
    const reason = error instanceof ProviderError ? `${error.code}: ${error.message}` : 'unreadable webhook';
    throw new ProviderInputError(XS2A, `webhook rejected (${reason})`);
  }
}

export function createXs2aAdapter(config: Xs2aAdapterConfig): Xs2aAdapter {
  const client = new Xs2aClient(config);
  const now = config.now ?? Date.now;
  const wizardBase = (config.wizardBaseUrl ?? `${client.apiRoot}/wizard`).replace(/\/+$/, '');
  const links: WizardLinks = { wizardUrl: (key) => `${wizardBase}/${encodeURIComponent(key)}`, now };

  async function read(connectionId: string, operation: string): Promise<Xs2aBankConnection> {
    const { data } = await client.getConnection(connectionId);
    checkBelongs(data, connectionId, operation);
    return data;
  }

  function follow(connection: Xs2aBankConnection, operation: string): TriggerOutput {
    const attempt = connection.last_sync!.attempt;
    return { providerRef: xs2aRef(connection.id, attempt), observation: mapAttempt(connection, attempt, operation, links) };
  }

  return forConnection({
    name: 'xs2a',
    client,

    async createConnection(input = {}) {
      const { data } = await client.createConnection({
        ...(input.bankName !== undefined ? { bank_name: input.bankName } : {}),
        ...(input.bic !== undefined ? { bic: input.bic } : {}),
        ...(input.syncMode !== undefined ? { sync_mode: input.syncMode } : {}),
        ...(input.credentials !== undefined ? { credentials: input.credentials } : {}),
        ...(input.scenario !== undefined ? { scenario: input.scenario } : {}),
      });
      return info(data);
    },

    async reset(connectionId) {
      const { data } = await client.reset(connectionId);
      const challenge = wizardChallenge(data.wizard_session_key, data.expires_at, links);
      return { connectionId, wizardSessionKey: data.wizard_session_key, redirectUrl: challenge.redirectUrl!, expiresAt: challenge.expiresAt };
    },

    deleteConnection: (connectionId) => client.deleteConnection(connectionId),

    failureLimit: XS2A_MAX_FAILURES,

    safeOptionKeys: ['force'],

    // Options: `force` (boolean) only; a misspelt option is refused before a sync exists.
    validateRequest(request: SyncRequestInput) {
      const parsed = Xs2aSyncOptions.safeParse(request.options ?? {});
      if (!parsed.success) throw new ProviderInputError(XS2A, 'invalid sync options', zodIssues(parsed.error));
    },

    // force is sent only when options.force === true.
    async trigger(request: TriggerRequest) {
      const force = request.options?.force === true;
      const connection = await read(request.connectionId, 'trigger');
      const decision = xs2aSyncDecision(connectionSnapshot(connection), { force, today: todayOf(now()) });
      if (!decision.allowed) {
        // Never two syncs at once: a running attempt (the provider's automatic sync, a reset) is followed.
        if (decision.refusal === 'SYNC_IN_PROGRESS' && connection.last_sync) return follow(connection, 'trigger');
        if (decision.refusal === 'SYNC_IN_PROGRESS') throw new ProviderError('xs2a trigger: a sync is running', { code: 'PROVIDER_BUSY', retryable: true });
        throw refusalError(decision.refusal, connection);
      }
      // The published model has no sync attempts: the request time and fail counter identify ours.
      const published = connection.last_sync === undefined;
      const requestedAt = now();
      const attempt = (connection.last_sync?.attempt ?? 0) + 1;
      const answer = await client.sync(connection.id, force);
      const wizard =
        answer.status === 202
          ? { key: answer.data.wizard_session_key, expiresAt: parseProviderTime(wizardChallenge(answer.data.wizard_session_key, answer.data.expires_at, links).expiresAt)! }
          : undefined;
      const providerRef = published
        ? xs2aPublishedRef({ connectionId: connection.id, since: requestedAt, failsBefore: connection.sync_fail_counter, ...(wizard ? { wizard } : {}) })
        : xs2aRef(connection.id, attempt);
      if (answer.status === 202) {
        const [next] = transition(xs2aConnectionMachine, decision.snapshot, { type: 'SYNC.USER_REQUIRED', wizardKey: answer.data.wizard_session_key });
        return {
          providerRef,
          observation: {
            status: 'AWAIT_AUTH',
            challenge: wizardChallenge(answer.data.wizard_session_key, answer.data.expires_at, links),
            progress: xs2aReading(next).progress,
          },
        };
      }
      const [next] = transition(xs2aConnectionMachine, decision.snapshot, { type: 'SYNC.BACKGROUND' });
      return { providerRef, observation: { status: 'RUNNING', progress: xs2aReading(next).progress } };
    },

    async findTriggered(request: TriggerRequest) {
      const connection = await read(request.connectionId, 'findTriggered');
      const last = connection.last_sync;
      // Published model: no attempts to find; a sync requested again is refused while one runs (409), never doubled.
      if (!last) return null;
      const startedAt = parseProviderTime(last.started_at)!;
      const ours = isTerminalAttempt(last) ? startedAt >= request.since : startedAt >= request.since - FIND_TRIGGERED_SLACK_MS;
      return ours ? follow(connection, 'findTriggered') : null;
    },

    async poll(ref: SyncRef): Promise<Observation> {
      const parsed = parseXs2aRef(ref.providerRef);
      if (!parsed || parsed.connectionId !== ref.connectionId) {
        throw new ProviderError('xs2a poll: providerRef is not a sync reference of this connection', {
          code: 'PROVIDER_ERROR',
          retryable: false,
        });
      }
      const connection = await read(ref.connectionId, 'getConnection');
      if ('since' in parsed) return mapPublished(connection, parsed, 'getConnection', links);
      if (connection.last_sync === undefined) {
        // Our ref names an attempt, the reading has none (the published model): it cannot tell ours apart.
        throw new InvalidProviderResponseError(XS2A, 'getConnection', ['last_sync: required to follow a numbered sync attempt']);
      }
      return mapAttempt(connection, parsed.attempt, 'getConnection', links);
    },

    async answerChallenge(): Promise<Observation> {
      throw new ProviderError('xs2a: user interaction happens in the xs2a wizard (WEB_FORM challenge), not through an answer', {
        code: 'PROVIDER_ERROR',
        retryable: false,
      });
    },

    parseWebhook: (request) => parseXs2aWebhook(request, links),
  });
}
