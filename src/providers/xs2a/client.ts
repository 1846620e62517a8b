/**
 * Thin xs2a.api HTTP client: built-in fetch, bearer token, per-request timeout, every body parsed with zod.
 *
 * Error classification (thrown as typed ProviderError subclasses):
 * - network error, timeout, 5xx            -> PROVIDER_UNAVAILABLE, retryable (Retry-After honoured if sent)
 * - 429                                    -> RATE_LIMITED, retryable, retryAfterMs from Retry-After
 * - 409 SYNC_IN_PROGRESS                   -> PROVIDER_BUSY, retryable (one sync per connection at a time)
 * - 409 CONNECTION_DISABLED                -> CONNECTION_DISABLED, not retryable, user must delete and recreate
 * - 409 SYNC_INACTIVE                      -> PROVIDER_ERROR, not retryable, user action (`force` needed)
 * - 401/403, 404, other 4xx                -> PROVIDER_ERROR, not retryable
 * - non-JSON or schema-invalid 2xx body    -> InvalidProviderResponseError
 *
 * Messages name the operation, the HTTP status and the provider's error code only: never the token,
 * a request body (credentials) or the provider's free-text message.
 */
import type { z } from 'zod';
import { XS2A_MAX_FAILURES } from '../../../machines/xs2aConnection.js';
import { InvalidProviderResponseError, ProviderError, zodIssues } from '../errors.js';
import {
  Xs2aBankConnection,
  Xs2aBankConnectionList,
  Xs2aCreateConnectionRequest,
  Xs2aErrorResponse,
  Xs2aSyncRequest,
  Xs2aWizardSession,
} from './schemas.js';
import { httpFailure, transientHttpError, unauthorizedError } from '../http.js';
import { ProviderHttpClient, type ClientAuthConfig } from '../client-base.js';

export const XS2A = 'xs2a';

export interface Xs2aClientConfig extends ClientAuthConfig {
  /** xs2a API root, e.g. `https://api.xs2a.example` or `${sandbox.url}/xs2a`; `/api/v1/...` is appended. */
  baseUrl: string;
}

type Operation = 'createConnection' | 'getConnection' | 'listConnections' | 'deleteConnection' | 'sync' | 'reset';

interface RequestSpec {
  operation: Operation;
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: unknown;
}

export interface Xs2aResponse<T> {
  status: number;
  data: T;
}

/** 204: the sync runs in the background; 202: the user must act first (wizard). */
export type Xs2aSyncResponse = { status: 204 } | { status: 202; data: Xs2aWizardSession };



/** Auth types the xs2a API accepts. */
export const XS2A_AUTH_TYPES = ['apiKey', 'bearer', 'perUser'] as const;

export class Xs2aClient extends ProviderHttpClient {
  private readonly baseUrl: string;

  constructor(config: Xs2aClientConfig) {
    super(XS2A, config, XS2A_AUTH_TYPES, 'apiKey');
    if (!config.baseUrl) throw new Error('xs2a: baseUrl is required');
    this.baseUrl = config.baseUrl.replace(/\/+$/, '');
  }

  get apiRoot(): string {
    return this.baseUrl;
  }

  async createConnection(body: Xs2aCreateConnectionRequest): Promise<Xs2aResponse<Xs2aBankConnection>> {
    const checked = this.checkRequest('createConnection', Xs2aCreateConnectionRequest, body);
    const res = await this.call({ operation: 'createConnection', method: 'POST', path: '/api/v1/bank-connections', body: checked });
    return { status: res.status, data: this.parse('createConnection', res, Xs2aBankConnection) };
  }

  async getConnection(id: string): Promise<Xs2aResponse<Xs2aBankConnection>> {
    const res = await this.call({ operation: 'getConnection', method: 'GET', path: `/api/v1/bank-connections/${enc(id)}` });
    return { status: res.status, data: this.parse('getConnection', res, Xs2aBankConnection) };
  }

  async listConnections(page = 1, perPage = 15): Promise<Xs2aResponse<Xs2aBankConnectionList>> {
    const res = await this.call({
      operation: 'listConnections',
      method: 'GET',
      path: `/api/v1/bank-connections?per_page=${perPage}&page=${page}`,
    });
    return { status: res.status, data: this.parse('listConnections', res, Xs2aBankConnectionList) };
  }

  async deleteConnection(id: string): Promise<void> {
    await this.call({ operation: 'deleteConnection', method: 'DELETE', path: `/api/v1/bank-connections/${enc(id)}` });
  }

  /** POST .../sync; `force` is sent only when true. */
  async sync(id: string, force: boolean): Promise<Xs2aSyncResponse> {
    const body = this.checkRequest('sync', Xs2aSyncRequest, force ? { force: true } : {});
    const res = await this.call({ operation: 'sync', method: 'POST', path: `/api/v1/bank-connections/${enc(id)}/sync`, body });
    if (res.status === 204) return { status: 204 };
    if (res.status === 202) return { status: 202, data: this.parse('sync', res, Xs2aWizardSession) };
    throw new InvalidProviderResponseError(XS2A, 'sync', [`(status): expected 202 or 204, got ${res.status}`]);
  }

  /** POST .../reset: always 202 with a new wizard_session_key. */
  async reset(id: string): Promise<Xs2aResponse<Xs2aWizardSession>> {
    const res = await this.call({ operation: 'reset', method: 'POST', path: `/api/v1/bank-connections/${enc(id)}/reset` });
    if (res.status !== 202) throw new InvalidProviderResponseError(XS2A, 'reset', [`(status): expected 202, got ${res.status}`]);
    return { status: res.status, data: this.parse('reset', res, Xs2aWizardSession) };
  }

  private checkRequest<T>(operation: Operation, schema: z.ZodType<T>, body: unknown): T {
    const parsed = schema.safeParse(body);
    if (parsed.success) return parsed.data;
    const fields = parsed.error.issues.map((issue) => issue.path.join('.') || '(root)');
    throw new ProviderError(`${XS2A} ${operation}: invalid request (${[...new Set(fields)].join(', ')})`, {
      code: 'PROVIDER_ERROR',
      retryable: false,
    });
  }

  private parse<T>(operation: Operation, res: { status: number; text: string }, schema: z.ZodType<T>): T {
    let json: unknown;
    try {
      json = JSON.parse(res.text);
    } catch {
      throw new InvalidProviderResponseError(XS2A, operation, [`(body): not valid JSON (HTTP ${res.status})`]);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new InvalidProviderResponseError(XS2A, operation, zodIssues(parsed.error));
    return parsed.data;
  }

  private async call(spec: RequestSpec): Promise<{ status: number; text: string }> {
    const { operation } = spec;
    const { response, text } = await this.send({
      operation,
      url: `${this.baseUrl}${spec.path}`,
      method: spec.method,
      body: spec.body,
    });
    if (response.status < 200 || response.status >= 300) throw this.httpError(operation, response, text);
    return { status: response.status, text };
  }

  private httpError(operation: Operation, response: Response, text: string): ProviderError {
    const failure = httpFailure(XS2A, operation, response.status, text, (body) => Xs2aErrorResponse.safeParse(body).data?.error.code);
    const transient = transientHttpError(failure, response, this.now());
    if (transient) return transient;
    if (failure.status === 401) return unauthorizedError(failure);
    const { message, details, providerCode } = failure;
    if (failure.status === 409 && providerCode === 'SYNC_IN_PROGRESS') {
      // Another sync (the provider's automatic one, another client) runs: busy, not failed.
      return new ProviderError(message, { ...details, code: 'PROVIDER_BUSY', retryable: true });
    }
    if (failure.status === 409 && providerCode === 'CONNECTION_DISABLED') {
      return new ProviderError(
        `${message}: the bank connection is disabled after ${XS2A_MAX_FAILURES} failed syncs in a row and can never sync again; delete it and create it again (the user re-enters the credentials)`,
        { ...details, code: 'CONNECTION_DISABLED', retryable: false, userActionRequired: true },
      );
    }
    if (failure.status === 409 && providerCode === 'SYNC_INACTIVE') {
      return new ProviderError(
        `${message}: sync_active is false after a failed sync; once the cause is fixed, request the sync with options.force = true (or reset the connection)`,
        { ...details, code: 'PROVIDER_ERROR', retryable: false, userActionRequired: true },
      );
    }
    return new ProviderError(message, { ...details, code: 'PROVIDER_ERROR', retryable: false });
  }

}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}
