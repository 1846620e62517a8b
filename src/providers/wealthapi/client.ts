/**
 * Thin wealthAPI HTTP client: built-in fetch, bearer token, per-request timeout, every body parsed with zod.
 *
 * Error classification (thrown as typed ProviderError subclasses):
 * - network error, timeout, 5xx            -> PROVIDER_UNAVAILABLE, retryable (Retry-After honoured if sent)
 * - 429                                    -> RATE_LIMITED, retryable, retryAfterMs from Retry-After
 * - 409 UPDATE_IN_PROGRESS on update       -> PROVIDER_BUSY, retryable (never two updates at once)
 * - 401/403, 404, other 4xx                -> PROVIDER_ERROR, not retryable
 * - non-JSON or schema-invalid 2xx body    -> InvalidProviderResponseError
 *
 * Messages name the operation, the HTTP status and the provider's error code only: never the token,
 * a request body (credentials) or the provider's free-text message.
 */
import type { z } from 'zod';
import { InvalidProviderResponseError, ProviderError, zodIssues } from '../errors.js';
import {
  WealthBankConnection,
  WealthCreateConnectionRequest,
  WealthErrorResponse,
  WealthManualSyncRequired,
  WealthUpdateProcess,
  WealthUpdateRequest,
  WealthUpdateStarted,
} from './schemas.js';
import { httpFailure, transientHttpError, unauthorizedError } from '../http.js';
import { ProviderHttpClient, type ClientAuthConfig } from '../client-base.js';

export const WEALTHAPI = 'wealthapi';

export interface WealthClientConfig extends ClientAuthConfig {
  /** API root, e.g. `https://api.wealthapi.example/api` or `${sandbox.url}/wealthapi`. */
  baseUrl: string;
}

type Operation = 'createConnection' | 'manualSyncRequired' | 'getConnection' | 'update' | 'getUpdateProcess';

interface RequestSpec<T> {
  operation: Operation;
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  body?: unknown;
  schema: z.ZodType<T, unknown>;
}



/** Auth types the wealthapi API accepts. */
export const WEALTHAPI_AUTH_TYPES = ['bearer', 'clientCredentials', 'password', 'perUser'] as const;

export class WealthClient extends ProviderHttpClient {
  private readonly baseUrl: string;

  constructor(config: WealthClientConfig) {
    super(WEALTHAPI, config, WEALTHAPI_AUTH_TYPES, 'bearer');
    if (!config.baseUrl) throw new Error('wealthapi: baseUrl is required');
    this.baseUrl = config.baseUrl.replace(/\/+$/, '');
  }

  /** Sandbox only: creates a bank connection with a scripted scenario. */
  createConnection(body: WealthCreateConnectionRequest): Promise<WealthBankConnection> {
    const checked = this.checkRequest('createConnection', WealthCreateConnectionRequest, body);
    return this.request({ operation: 'createConnection', method: 'POST', path: '/v2/bankConnections', body: checked, schema: WealthBankConnection });
  }

  /** Step 1 of a background update: which accounts want (and allow) a background update. */
  manualSyncRequired(bankConnectionId?: string): Promise<WealthManualSyncRequired> {
    const query = bankConnectionId === undefined ? '' : `?bankConnectionId=${enc(bankConnectionId)}`;
    return this.request({ operation: 'manualSyncRequired', method: 'GET', path: `/v1/accounts/manualSyncRequired${query}`, schema: WealthManualSyncRequired });
  }

  getConnection(id: string): Promise<WealthBankConnection> {
    return this.request({ operation: 'getConnection', method: 'GET', path: `/v2/bankConnections/${enc(id)}`, schema: WealthBankConnection });
  }

  /** Step 2: PUT .../update; without `bankingInterface` every interface is updated. */
  update(id: string, bankingInterface?: string): Promise<WealthUpdateStarted> {
    const body = this.checkRequest('update', WealthUpdateRequest, bankingInterface === undefined ? {} : { bankingInterface });
    return this.request({ operation: 'update', method: 'PUT', path: `/v2/bankConnections/${enc(id)}/update`, body, schema: WealthUpdateStarted });
  }

  /** Step 3: the update's status, until SUCCESS or FAILED. */
  getUpdateProcess(processId: string): Promise<WealthUpdateProcess> {
    return this.request({
      operation: 'getUpdateProcess',
      method: 'GET',
      path: `/v2/bankConnections/updateProcess/${enc(processId)}`,
      schema: WealthUpdateProcess,
    });
  }

  private checkRequest<T>(operation: Operation, schema: z.ZodType<T>, body: unknown): T {
    const parsed = schema.safeParse(body);
    if (parsed.success) return parsed.data;
    const fields = parsed.error.issues.map((issue) => issue.path.join('.') || '(root)');
    throw new ProviderError(`${WEALTHAPI} ${operation}: invalid request (${[...new Set(fields)].join(', ')})`, {
      code: 'PROVIDER_ERROR',
      retryable: false,
    });
  }

  private async request<T>(spec: RequestSpec<T>): Promise<T> {
    const { operation } = spec;
    const { response, text } = await this.send({
      operation,
      url: `${this.baseUrl}${spec.path}`,
      method: spec.method,
      body: spec.body,
    });
    if (response.status < 200 || response.status >= 300) throw this.httpError(operation, response, text);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new InvalidProviderResponseError(WEALTHAPI, operation, [`(body): not valid JSON (HTTP ${response.status})`]);
    }
    const parsed = spec.schema.safeParse(json);
    if (!parsed.success) throw new InvalidProviderResponseError(WEALTHAPI, operation, zodIssues(parsed.error));
    return parsed.data;
  }

  private httpError(operation: Operation, response: Response, text: string): ProviderError {
    const failure = httpFailure(WEALTHAPI, operation, response.status, text, (body) => WealthErrorResponse.safeParse(body).data?.error.code);
    const transient = transientHttpError(failure, response, this.now());
    if (transient) return transient;
    if (failure.status === 401) return unauthorizedError(failure);
    if (failure.status === 409 && operation === 'update') {
      // Another update of the connection runs (ours from a lost response, another client's): busy, not failed.
      return new ProviderError(`${failure.message}: an update of this bank connection is already running; never two at once`, {
        ...failure.details,
        code: 'PROVIDER_BUSY',
        retryable: true,
      });
    }
    return new ProviderError(failure.message, { ...failure.details, code: 'PROVIDER_ERROR', retryable: false });
  }

}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}
