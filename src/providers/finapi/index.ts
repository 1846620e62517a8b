/**
 * finAPI adapter (seeds 001 and 004). `connectionId` is the finAPI bank connection id (an integer, as a
 * string); `providerRef` is the Web Form 2.0 task id of `POST /api/tasks/backgroundUpdate`.
 *
 * - trigger(): creates the background update task with the options of `request.options` (validated with zod;
 *   invalid options throw InvalidFinapiOptionsError, not retryable). 423 LOCKED -> PROVIDER_BUSY (retryable).
 * - poll(): reads the task; while it waits for the user, the web form; once the task or its web form is done,
 *   the bank connection (RUNNING while updateStatus IN_PROGRESS) and, once READY, its accounts (per-account
 *   outcomes, DOWNLOAD_IN_PROGRESS keeps it RUNNING) and the categorization status.
 * - findTriggered(): finAPI has no idempotency key and no per-connection task filter: it pages through
 *   `GET /api/tasks` (newest first) and adopts the newest task of the connection created since
 *   `request.since - 5 s`, whatever its status (finAPI runs one update per connection at a time; a finished
 *   one is the update we asked for, and triggering again would cost another bank access).
 * - parseWebhook(): callback bodies `{ taskId, status, webForm }` -> ranked observation; never terminal for a
 *   COMPLETED_WITH_ERROR (callbacks carry no error code: the next read brings it).
 *
 * Every reading goes through the finapiTask machine (machines/finapiTask.ts): observations carry its
 * `progress` rank, so late or out-of-order callbacks cannot move a sync backwards.
 */
import { forConnection } from '../client-base.js';
import type { z } from 'zod';
import type { Observation, TriggerOutput } from '../../../machines/canonical.js';
import { FINAPI_WEB_FORM_TTL_MS } from '../../../machines/finapiTask.js';
import { InvalidProviderResponseError, ProviderError, ProviderInputError, zodIssues } from '../errors.js';
import type { ProviderAdapter, SyncRef, SyncRequestInput, TriggerRequest, WebhookDelivery, WebhookRequest } from '../types.js';
import { FINAPI, FinapiClient, type FinapiClientConfig } from './client.js';
import { FinapiReading, accountsEvent, callbackEvent, connectionEvent, taskEvent, webFormEvent } from './mapping.js';
import { FinapiCallbackUrl, FinapiTaskCallback, FinapiTriggerOptions, type FinapiBackgroundUpdateRequest, type FinapiTask } from './schemas.js';
import { parseFinapiTime } from './time.js';

export { FinapiClient, type FinapiClientConfig } from './client.js';
export { FinapiReading, accountsEvent, callbackEvent, connectionEvent, taskEvent, webFormEvent } from './mapping.js';
export * as finapiSchemas from './schemas.js';

/** Clock skew allowance between our `since` and finAPI's task `createdAt`. */
export const FIND_TRIGGERED_SLACK_MS = 5_000;
/** findTriggered reads at most this many pages of 100 tasks. */
export const FIND_TRIGGERED_MAX_PAGES = 5;

export interface FinapiAdapterConfig extends FinapiClientConfig {
  /**
   * Default callback URL for `callbacks.webFormRequired` and `callbacks.finalised` when a request's options
   * name none (e.g. `${publicUrl}/webhooks/finapi`). finAPI requires HTTPS.
   */
  callbackUrl?: string;
  /** Complete only once categorizationStatus is READY (PFM); default true. */
  awaitCategorization?: boolean;
  /** Deadline of a web form whose reading carries none; default 20 minutes (Web Form 2.0). */
  webFormTtlMs?: number;
}

export interface FinapiAdapter extends ProviderAdapter {
  readonly name: 'finapi';
  readonly client: FinapiClient;
}

/** The sync options are not valid finAPI background update options; nothing was sent. */
export class InvalidFinapiOptionsError extends ProviderError {
  override readonly name = 'InvalidFinapiOptionsError';
  constructor(readonly fields: string[]) {
    super(`${FINAPI} trigger: invalid options (${fields.slice(0, 5).join(', ')})`, { code: 'PROVIDER_ERROR', retryable: false });
  }
}

/** Paths of the invalid options; an unknown option is named by its key (finAPI would silently ignore it). */
function optionFields(error: z.ZodError): string[] {
  const fields = error.issues.flatMap((issue) => {
    const at = issue.path.join('.');
    if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => (at ? `${at}.${key}` : key));
    return [at || '(root)'];
  });
  return [...new Set(fields)];
}

/** finAPI bank connection ids are int64; ours are their decimal strings. */
function bankConnectionId(connectionId: string): number {
  if (!/^\d{1,15}$/.test(connectionId)) {
    throw new ProviderError(`${FINAPI}: connection id must be a finAPI bank connection id (an integer)`, { code: 'PROVIDER_ERROR', retryable: false });
  }
  return Number(connectionId);
}

/** The spec requires `payload.bankConnectionId`: a task that does not name our connection is not ours to read. */
function checkBelongs(task: FinapiTask, id: number, operation: string): void {
  const owner = task.payload.bankConnectionId;
  if (owner === null || owner === undefined) {
    throw new InvalidProviderResponseError(FINAPI, operation, ['payload.bankConnectionId: required, missing']);
  }
  if (owner !== id) {
    throw new InvalidProviderResponseError(FINAPI, operation, ['payload.bankConnectionId: does not match the requested bank connection']);
  }
}

/** Epoch ms of a task's createdAt (the schema already checked it parses). */
function createdAtOf(task: FinapiTask): number {
  return parseFinapiTime(task.createdAt)!;
}

function header(headers: WebhookRequest['headers'], name: string): string | undefined {
  const value = headers[name] ?? headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** The adapter's default callback URL is not one finAPI accepts (HTTPS only); nothing was sent. */
export class InvalidFinapiCallbackUrlError extends ProviderError {
  override readonly name = 'InvalidFinapiCallbackUrlError';
  constructor() {
    super(`${FINAPI}: callbackUrl must be an https URL (finAPI allows only HTTPS callbacks)`, { code: 'PROVIDER_ERROR', retryable: false });
  }
}

export function createFinapiAdapter(config: FinapiAdapterConfig): FinapiAdapter {
  if (config.callbackUrl !== undefined && !FinapiCallbackUrl.safeParse(config.callbackUrl).success) throw new InvalidFinapiCallbackUrlError();
  const client = new FinapiClient(config);
  const now = config.now ?? Date.now;
  const input = { awaitCategorization: config.awaitCategorization ?? true };
  const ttl = config.webFormTtlMs ?? FINAPI_WEB_FORM_TTL_MS;

  /**
   * A task read by trigger or findTriggered. While it waits for the user, its web form is read too: only the web
   * form carries its own `expiresAt` (an immediate web form's deadline is finAPI's, not our default).
   */
  async function observeTask(task: FinapiTask, operation: string): Promise<Observation> {
    const reading = new FinapiReading(input).apply(taskEvent(task, operation));
    if (reading.needsWebForm) await readWebForm(reading);
    return reading.observation(operation, now(), ttl);
  }

  async function readWebForm(reading: FinapiReading): Promise<void> {
    const webFormId = reading.snapshot.context.webForm!.id;
    const { data: webForm } = await client.getWebForm(webFormId);
    if (webForm.id !== webFormId) throw new InvalidProviderResponseError(FINAPI, 'getWebForm', ['id: does not match the requested web form']);
    reading.apply(webFormEvent(webForm));
  }

  function requestBody(request: SyncRequestInput): FinapiBackgroundUpdateRequest {
    const parsed = FinapiTriggerOptions.safeParse(request.options ?? {});
    if (!parsed.success) {
      // Field paths only: option values are never echoed.
      throw new InvalidFinapiOptionsError(optionFields(parsed.error));
    }
    const options = parsed.data;
    const callbacks = options.callbacks ?? (config.callbackUrl ? { webFormRequired: config.callbackUrl, finalised: config.callbackUrl } : undefined);
    return {
      bankConnectionId: bankConnectionId(request.connectionId),
      ...(options.importNewAccounts !== undefined ? { importNewAccounts: options.importNewAccounts } : {}),
      ...(options.accountTypes ? { accountTypes: options.accountTypes } : {}),
      ...(options.manageSavedSettings ? { manageSavedSettings: options.manageSavedSettings } : {}),
      ...(callbacks ? { callbacks } : {}),
    };
  }

  function parseWebhook(request: WebhookRequest): WebhookDelivery {
    try {
      const contentType = header(request.headers, 'content-type');
      if (contentType !== undefined && !/^application\/(.+\+)?json\b/i.test(contentType)) {
        throw new ProviderInputError(FINAPI, 'callback is not JSON');
      }
      if (typeof request.body !== 'string' || request.body.length === 0) throw new ProviderInputError(FINAPI, 'callback body is empty');
      let json: unknown;
      try {
        json = JSON.parse(request.body);
      } catch {
        throw new ProviderInputError(FINAPI, 'callback body is not valid JSON');
      }
      const parsed = FinapiTaskCallback.safeParse(json);
      if (!parsed.success) {
        const issues = zodIssues(parsed.error);
        throw new ProviderInputError(FINAPI, `callback body does not match the schema (${issues.slice(0, 3).join('; ')})`, issues);
      }
      const observation = new FinapiReading(input).apply(callbackEvent(parsed.data)).observation('callback', now(), ttl);
      return { providerRef: parsed.data.taskId, observation };
    } catch (error) {
      if (error instanceof ProviderInputError) throw error;
      // Unknown status, missing web form...: the delivery changes nothing; the next poll will tell.
      const reason = error instanceof ProviderError ? `${error.code}: ${error.message}` : 'unreadable callback';
      throw new ProviderInputError(FINAPI, `callback rejected (${reason})`);
    }
  }

  return forConnection({
    name: 'finapi',
    client,

    // The same checks as trigger(), before a sync exists: an id finAPI cannot take, a misspelt option, an http callback.
    // Settings of the update task only (a callback URL must not carry a secret: webhooks are signed).
    safeOptionKeys: ['importNewAccounts', 'accountTypes', 'manageSavedSettings', 'callbacks'],

    validateRequest(request: SyncRequestInput) {
      try {
        requestBody(request);
      } catch (error) {
        if (!(error instanceof ProviderError)) throw error;
        throw new ProviderInputError(FINAPI, error.message, error instanceof InvalidFinapiOptionsError ? error.fields : ['connectionId: must be an integer']);
      }
    },

    async trigger(request: TriggerRequest): Promise<TriggerOutput> {
      const body = requestBody(request);
      const { data } = await client.createBackgroundUpdate(body);
      checkBelongs(data, body.bankConnectionId, 'backgroundUpdate');
      return { providerRef: data.id, observation: await observeTask(data, 'backgroundUpdate') };
    },

    async findTriggered(request: TriggerRequest): Promise<TriggerOutput | null> {
      const id = bankConnectionId(request.connectionId);
      const cutoff = request.since - FIND_TRIGGERED_SLACK_MS;
      // The first request names no page: the answer's `paging.page` tells whether finAPI counts pages from 0
      // (the spec's example) or from 1 (the query's documented default); later pages follow from it.
      let page: number | undefined;
      let firstPage: number | undefined;
      for (let read = 0; read < FIND_TRIGGERED_MAX_PAGES; read += 1) {
        const { data } = await client.listTasks(page, 100);
        const mine = data.items
          .filter((task) => task.payload.bankConnectionId === id && createdAtOf(task) >= cutoff)
          .sort((a, b) => createdAtOf(b) - createdAtOf(a));
        const newest = mine[0];
        if (newest) return { providerRef: newest.id, observation: await observeTask(newest, 'findTriggered') };
        const oldest = data.items.at(-1);
        firstPage ??= data.paging.page;
        const lastPage = firstPage + data.paging.pageCount - 1;
        if (data.paging.page >= lastPage || !oldest || createdAtOf(oldest) < cutoff) return null;
        page = data.paging.page + 1;
      }
      return null;
    },

    async poll(ref: SyncRef): Promise<Observation> {
      const id = bankConnectionId(ref.connectionId);
      const { data: task } = await client.getTask(ref.providerRef);
      if (task.id !== ref.providerRef) throw new InvalidProviderResponseError(FINAPI, 'getTask', ['id: does not match the requested task']);
      checkBelongs(task, id, 'getTask');
      const reading = new FinapiReading(input).apply(taskEvent(task, 'getTask'));

      if (reading.needsWebForm) await readWebForm(reading);
      if (reading.needsConnection) {
        const { data: connection } = await client.getBankConnection(id);
        if (connection.id !== id) throw new InvalidProviderResponseError(FINAPI, 'getBankConnection', ['id: does not match the requested bank connection']);
        reading.apply(connectionEvent(connection));
        if (reading.needsAccounts) {
          const accounts = connection.accountIds.length > 0 ? (await client.getAccounts(connection.accountIds)).data.accounts : [];
          reading.apply(accountsEvent(accounts, connection));
        }
      }
      return reading.observation('poll', now(), ttl);
    },

    async answerChallenge(): Promise<Observation> {
      // finAPI challenges are web forms: the user completes them in the browser, never through this API.
      throw new ProviderError(`${FINAPI}: web forms are completed by the user in the browser, not answered through the API`, {
        code: 'PROVIDER_ERROR',
        retryable: false,
      });
    },

    parseWebhook,
  });
}
