/**
 * wealthAPI-style background update adapter (seed 000). `connectionId` is the wealthAPI bank connection id,
 * `providerRef` the update's processId.
 *
 * trigger runs the preflight FIRST and sends the update only when it passes:
 *   1. GET /v1/accounts/manualSyncRequired: at least one account of the connection must say true;
 *   2. GET /v2/bankConnections/{id}: no web-scraping interface, credentials stored, consent ongoing (last update
 *      less than 90 days ago), and no update of the connection running (never two at once: PROVIDER_BUSY);
 * a refusal throws PREFLIGHT_REFUSED (CONSENT_EXPIRED when only the consent is missing), not retryable, with
 * every reason in the message, and no PUT is sent. Otherwise PUT .../update without bankingInterface (all
 * interfaces) -> processId -> RUNNING; poll maps PENDING/RUNNING -> RUNNING, SUCCESS -> COMPLETED with per-account
 * results (CASH / PORTFOLIO), FAILED -> FAILED with the synchronizationError mapped (2FA -> SCA_FAILED, credentials
 * -> INVALID_CREDENTIALS: not retryable, user action).
 *
 * findTriggered: the connection's newest update process (sandbox `latestUpdateProcess`) when it started since
 * `request.since` (running ones allow FIND_TRIGGERED_SLACK_MS of clock skew; finished ones must have started after
 * `since`). wealthAPI sends no update callbacks: parseWebhook rejects every delivery; polling finishes the job.
 */
import { forConnection, type ClientAuthConfig } from '../client-base.js';
import type { Observation } from '../../../machines/canonical.js';
import { wealthPreflight, wealthProcessReading } from '../../../machines/wealthUpdate.js';
import { InvalidProviderResponseError, ProviderError, ProviderInputError } from '../errors.js';
import type { ProviderAdapter, SyncRef, SyncRequestInput, TriggerRequest, WebhookDelivery } from '../types.js';
import { WEALTHAPI, WealthClient } from './client.js';
import { busyError, isTerminalProcessStatus, mapProcess, preflightFacts, refusalError } from './mapping.js';
import type { WealthBankConnection } from './schemas.js';
import { parseProviderTime } from '../time.js';

export { WealthClient, type WealthClientConfig } from './client.js';
export { mapProcess, mapSynchronizationError, preflightFacts } from './mapping.js';
export * as wealthSchemas from './schemas.js';

export const FIND_TRIGGERED_SLACK_MS = 5_000;

export interface WealthAdapterConfig extends ClientAuthConfig {
  baseUrl: string;
}

export interface CreateWealthConnectionInput {
  name?: string;
  /** Sent once; never stored or returned by the adapter. */
  credentials?: Record<string, string>;
  /** Sandbox only: scripted scenario (see WEALTHAPI_SCENARIOS in src/sandbox/wealthapi/). */
  scenario?: string;
}

export interface WealthConnectionInfo {
  id: string;
  name: string | null;
  bankingInterfaces: string[];
  credentialsStored: boolean;
  lastUpdate: string | null;
}

export interface WealthAdapter extends ProviderAdapter {
  readonly name: 'wealthapi';
  readonly client: WealthClient;
  createConnection(input?: CreateWealthConnectionInput): Promise<WealthConnectionInfo>;
}

function checkBelongs(connection: WealthBankConnection, connectionId: string, operation: string): void {
  if (connection.id !== connectionId) {
    throw new InvalidProviderResponseError(WEALTHAPI, operation, ['id: does not match the requested bank connection']);
  }
}

export function createWealthAdapter(config: WealthAdapterConfig): WealthAdapter {
  const client = new WealthClient(config);
  const now = config.now ?? Date.now;

  async function readProcess(processId: string, connectionId: string | null, operation: string): Promise<Observation> {
    const process = await client.getUpdateProcess(processId);
    if (process.processId !== processId) {
      throw new InvalidProviderResponseError(WEALTHAPI, operation, ['processId: does not match the requested update process']);
    }
    if (connectionId !== null && process.bankConnectionId !== undefined && process.bankConnectionId !== connectionId) {
      throw new InvalidProviderResponseError(WEALTHAPI, operation, ['bankConnectionId: does not match the requested bank connection']);
    }
    return mapProcess(process, operation);
  }

  return forConnection({
    name: 'wealthapi',
    client,
    // Seed 000: background updates need "an ongoing consent; i.e. the last update is less than three month away".
    consentTerm: { zone: 'Europe/Berlin', months: 3 },

    // wealthAPI background updates take no options: a misspelt one is refused before a sync exists.
    validateRequest(request: SyncRequestInput) {
      const keys = Object.keys(request.options ?? {});
      if (keys.length > 0) throw new ProviderInputError(WEALTHAPI, 'background updates take no options', keys.map((k) => `options.${k}: unknown option`));
    },

    async createConnection(input = {}) {
      const c = await client.createConnection({
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.credentials !== undefined ? { credentials: input.credentials } : {}),
        ...(input.scenario !== undefined ? { scenario: input.scenario } : {}),
      });
      return {
        id: c.id,
        name: c.name ?? null,
        bankingInterfaces: c.interfaces.map((i) => i.bankingInterface),
        credentialsStored: c.credentialsStored,
        lastUpdate: c.lastUpdate,
      };
    },

    // Options: none (the update always covers every interface: no bankingInterface is sent).
    async trigger(request: TriggerRequest) {
      const accounts = await client.manualSyncRequired(request.connectionId);
      const connection = await client.getConnection(request.connectionId);
      checkBelongs(connection, request.connectionId, 'getConnection');
      const verdict = wealthPreflight(preflightFacts(accounts, connection, now()));
      if (verdict.verdict === 'REFUSED') throw refusalError(verdict.refusal, verdict.reasons, connection);
      if (verdict.verdict === 'BUSY') throw busyError(connection);
      const { processId } = await client.update(request.connectionId);
      // Accepted: the process starts PENDING (canonical RUNNING, lowest rank).
      return { providerRef: processId, observation: { status: 'RUNNING', progress: wealthProcessReading(processId, 'PENDING').progress } };
    },

    async findTriggered(request: TriggerRequest) {
      const connection = await client.getConnection(request.connectionId);
      checkBelongs(connection, request.connectionId, 'findTriggered');
      const latest = connection.latestUpdateProcess;
      if (!latest) return null;
      const createdAt = parseProviderTime(latest.createdAt)!;
      const ours = isTerminalProcessStatus(latest.status) ? createdAt >= request.since : createdAt >= request.since - FIND_TRIGGERED_SLACK_MS;
      if (!ours) return null;
      return { providerRef: latest.processId, observation: await readProcess(latest.processId, request.connectionId, 'findTriggered') };
    },

    poll: (ref: SyncRef) => readProcess(ref.providerRef, ref.connectionId, 'getUpdateProcess'),

    async answerChallenge(): Promise<Observation> {
      throw new ProviderError('wealthapi: background updates have no challenges; the user updates through the TPP web form', {
        code: 'PROVIDER_ERROR',
        retryable: false,
      });
    },

    parseWebhook(): WebhookDelivery {
      throw new ProviderInputError(WEALTHAPI, 'wealthAPI sends no update process callbacks; the update is polled');
    },
  });
}
