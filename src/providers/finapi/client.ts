/**
 * Thin finAPI HTTP client: built-in fetch, OAuth bearer token (the finAPI user's access token), per-request
 * timeout, every body parsed with zod. Two API roots: the Web Form 2.0 API (tasks, web forms) and the Access
 * API v1 (bank connections, accounts); they are different hosts at finAPI and one prefix in the sandbox.
 *
 * Error classification (thrown as typed ProviderError subclasses):
 * - network error, timeout, 5xx          -> PROVIDER_UNAVAILABLE, retryable (Retry-After honoured if sent)
 * - 429                                  -> RATE_LIMITED, retryable, retryAfterMs from Retry-After
 * - 423 LOCKED on backgroundUpdate       -> PROVIDER_BUSY, retryable (the connection is being updated, e.g. by
 *                                           finAPI's own batch update: busy, not failed)
 * - 401 (token refused)                 -> after one token refresh and retry (src/providers/http.ts):
 *                                           PROVIDER_UNAUTHORIZED, not retryable; our credentials, never the user's
 * - 400/403/404/422, other 4xx           -> PROVIDER_ERROR, not retryable
 * - non-JSON or schema-invalid 2xx body  -> InvalidProviderResponseError
 *
 * Messages name the operation, the HTTP status and finAPI's error code only: never the token, a request body
 * or finAPI's free-text description.
 */
import type { z } from 'zod';
import { InvalidProviderResponseError, ProviderError, zodIssues } from '../errors.js';
import {
  FinapiAccessErrorResponse,
  FinapiAccountList,
  FinapiBackgroundUpdateRequest,
  FinapiBadCredentialsResponse,
  FinapiBankConnection,
  FinapiErrorResponse,
  FinapiTask,
  FinapiTasksPage,
  FinapiWebForm,
} from './schemas.js';
import { httpFailure, transientHttpError, unauthorizedError } from '../http.js';
import { ProviderHttpClient, type ClientAuthConfig } from '../client-base.js';

export const FINAPI = 'finapi';

export interface FinapiClientConfig extends ClientAuthConfig {
  /** Access API root, e.g. `https://sandbox.finapi.io` or `${sandbox.url}/finapi`; `/api/v1/...` is appended. */
  baseUrl: string;
  /** Web Form 2.0 API root, e.g. `https://webform-sandbox.finapi.io`; default `baseUrl`. `/api/...` is appended. */
  webFormBaseUrl?: string;
}

export type FinapiOperation = 'backgroundUpdate' | 'getTask' | 'listTasks' | 'getWebForm' | 'getBankConnection' | 'getAccounts';

interface RequestSpec<T> {
  operation: FinapiOperation;
  api: 'webForm' | 'access';
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  schema: z.ZodType<T>;
}

export interface FinapiResponse<T> {
  status: number;
  data: T;
}



function enc(segment: string): string {
  return encodeURIComponent(segment);
}

/** Auth types the finapi API accepts. */
export const FINAPI_AUTH_TYPES = ['bearer', 'clientCredentials', 'password', 'perUser'] as const;

export class FinapiClient extends ProviderHttpClient {
  private readonly accessUrl: string;
  private readonly webFormUrl: string;

  constructor(config: FinapiClientConfig) {
    super(FINAPI, config, FINAPI_AUTH_TYPES, 'bearer');
    if (!config.baseUrl) throw new Error('finapi: baseUrl is required');
    this.accessUrl = config.baseUrl.replace(/\/+$/, '');
    this.webFormUrl = (config.webFormBaseUrl ?? config.baseUrl).replace(/\/+$/, '');
  }

  /** `POST /api/tasks/backgroundUpdate` -> 201 task. */
  createBackgroundUpdate(body: FinapiBackgroundUpdateRequest): Promise<FinapiResponse<FinapiTask>> {
    const checked = FinapiBackgroundUpdateRequest.safeParse(body);
    if (!checked.success) {
      const fields = [...new Set(checked.error.issues.map((issue) => issue.path.join('.') || '(root)'))];
      throw new ProviderError(`${FINAPI} backgroundUpdate: invalid request (${fields.join(', ')})`, { code: 'PROVIDER_ERROR', retryable: false });
    }
    return this.request({ operation: 'backgroundUpdate', api: 'webForm', method: 'POST', path: '/api/tasks/backgroundUpdate', body: checked.data, schema: FinapiTask });
  }

  getTask(taskId: string): Promise<FinapiResponse<FinapiTask>> {
    return this.request({ operation: 'getTask', api: 'webForm', method: 'GET', path: `/api/tasks/${enc(taskId)}`, schema: FinapiTask });
  }

  /**
   * `GET /api/tasks?order=createdAt,desc&page=&perPage=`: the user's tasks, newest first. Without `page`, finAPI's
   * first page (whether it numbers pages from 0 or 1: the answer's `paging.page` tells).
   */
  listTasks(page: number | undefined, perPage: number): Promise<FinapiResponse<FinapiTasksPage>> {
    const query = new URLSearchParams({ order: 'createdAt,desc', ...(page !== undefined ? { page: String(page) } : {}), perPage: String(perPage) });
    return this.request({ operation: 'listTasks', api: 'webForm', method: 'GET', path: `/api/tasks?${query}`, schema: FinapiTasksPage });
  }

  getWebForm(webFormId: string): Promise<FinapiResponse<FinapiWebForm>> {
    return this.request({ operation: 'getWebForm', api: 'webForm', method: 'GET', path: `/api/webForms/${enc(webFormId)}`, schema: FinapiWebForm });
  }

  getBankConnection(bankConnectionId: number): Promise<FinapiResponse<FinapiBankConnection>> {
    return this.request({
      operation: 'getBankConnection',
      api: 'access',
      method: 'GET',
      path: `/api/v1/bankConnections/${bankConnectionId}`,
      schema: FinapiBankConnection,
    });
  }

  /** `GET /api/v1/accounts?ids=1,2,3` (Get and search all accounts, restricted to the given ids). */
  getAccounts(accountIds: readonly number[]): Promise<FinapiResponse<FinapiAccountList>> {
    const query = new URLSearchParams({ ids: accountIds.join(',') });
    return this.request({ operation: 'getAccounts', api: 'access', method: 'GET', path: `/api/v1/accounts?${query}`, schema: FinapiAccountList });
  }

  private async request<T>(spec: RequestSpec<T>): Promise<FinapiResponse<T>> {
    const { operation } = spec;
    const root = spec.api === 'webForm' ? this.webFormUrl : this.accessUrl;
    const { response, text } = await this.send({
      operation,
      url: `${root}${spec.path}`,
      method: spec.method,
      body: spec.body,
    });

    if (response.status < 200 || response.status >= 300) throw this.httpError(operation, response, text);

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new InvalidProviderResponseError(FINAPI, operation, [`(body): not valid JSON (HTTP ${response.status})`]);
    }
    const parsed = spec.schema.safeParse(json);
    if (!parsed.success) throw new InvalidProviderResponseError(FINAPI, operation, zodIssues(parsed.error));
    return { status: response.status, data: parsed.data };
  }

  private httpError(operation: FinapiOperation, response: Response, text: string): ProviderError {
    const failure = httpFailure(FINAPI, operation, response.status, text, (body) => {
      const webForm = FinapiErrorResponse.safeParse(body);
      const access = FinapiAccessErrorResponse.safeParse(body);
      const oauth = FinapiBadCredentialsResponse.safeParse(body);
      return webForm.success ? webForm.data.code : access.success ? access.data.errors[0]?.code : oauth.success ? oauth.data.error : undefined;
    });
    const transient = transientHttpError(failure, response, this.now());
    if (transient) return transient;
    if (failure.status === 401) return unauthorizedError(failure);
    if (failure.status === 423 && operation === 'backgroundUpdate') {
      // The connection is being imported or updated (by the user or finAPI's batch update): busy, not failed.
      return new ProviderError(failure.message, { ...failure.details, code: 'PROVIDER_BUSY', retryable: true });
    }
    return new ProviderError(failure.message, { ...failure.details, code: 'PROVIDER_ERROR', retryable: false });
  }

}
