/**
 * Thin finX HTTP client: built-in fetch, bearer token, per-request timeout, every body parsed with zod.
 *
 * Error classification (thrown as typed ProviderError subclasses):
 * - network error, timeout, 5xx          -> PROVIDER_UNAVAILABLE, retryable (Retry-After honoured if sent)
 * - 429                                  -> RATE_LIMITED, retryable, retryAfterMs from Retry-After
 * - 409 SYNC_IN_PROGRESS on trigger      -> PROVIDER_BUSY, retryable
 * - 401/403, 404, other 4xx              -> PROVIDER_ERROR, not retryable
 * - non-JSON or schema-invalid 2xx body  -> InvalidProviderResponseError
 *
 * Messages name the operation, the HTTP status and the provider's error code only: never the token,
 * a request body (credentials, TANs) or the provider's free-text message.
 */
import type { z } from 'zod';
import { InvalidProviderResponseError, ProviderError, zodIssues } from '../errors.js';
import {
  FinxAccess,
  FinxAnswerRequest,
  FinxCreateAccessRequest,
  FinxErrorResponse,
  FinxSync,
  FinxSyncList,
  FinxTriggerRequest,
} from './schemas.js';
import { httpFailure, transientHttpError, unauthorizedError } from '../http.js';
import { ProviderHttpClient, type ClientAuthConfig } from '../client-base.js';

export const FINX = 'finx';

export interface FinxClientConfig extends ClientAuthConfig {
  /** finX API root, e.g. `https://api.finx.example` or `${sandbox.url}/finx`; `/v2/...` is appended. */
  baseUrl: string;
}

type Operation = 'createAccess' | 'trigger' | 'listSyncs' | 'getSync' | 'answerChallenge';

interface RequestSpec<T> {
  operation: Operation;
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
  schema: z.ZodType<T>;
}

export interface FinxResponse<T> {
  status: number;
  data: T;
}




/** Auth types the finx API accepts. */
export const FINX_AUTH_TYPES = ['bearer', 'clientCredentials', 'perUser'] as const;

export class FinxClient extends ProviderHttpClient {
  private readonly baseUrl: string;

  constructor(config: FinxClientConfig) {
    super(FINX, config, FINX_AUTH_TYPES, 'bearer');
    if (!config.baseUrl) throw new Error('finx: baseUrl is required');
    this.baseUrl = config.baseUrl.replace(/\/+$/, '');
  }

  createAccess(body: FinxCreateAccessRequest): Promise<FinxResponse<FinxAccess>> {
    return this.request({
      operation: 'createAccess',
      method: 'POST',
      path: '/v2/accesses',
      body: this.checkRequest('createAccess', FinxCreateAccessRequest, body),
      schema: FinxAccess,
    });
  }

  /** 201 for a new sync, 200 when finX replays the sync created by the same Idempotency-Key. */
  triggerSync(accessId: string, body: FinxTriggerRequest, idempotencyKey?: string): Promise<FinxResponse<FinxSync>> {
    return this.request({
      operation: 'trigger',
      method: 'POST',
      path: `/v2/accesses/${enc(accessId)}/syncs`,
      body: this.checkRequest('trigger', FinxTriggerRequest, body),
      ...(idempotencyKey ? { headers: { 'idempotency-key': idempotencyKey } } : {}),
      schema: FinxSync,
    });
  }

  listSyncs(accessId: string): Promise<FinxResponse<FinxSyncList>> {
    return this.request({
      operation: 'listSyncs',
      method: 'GET',
      path: `/v2/accesses/${enc(accessId)}/syncs`,
      schema: FinxSyncList,
    });
  }

  getSync(accessId: string, syncId: string): Promise<FinxResponse<FinxSync>> {
    return this.request({
      operation: 'getSync',
      method: 'GET',
      path: `/v2/accesses/${enc(accessId)}/syncs/${enc(syncId)}`,
      schema: FinxSync,
    });
  }

  answerChallenge(accessId: string, syncId: string, challengeId: string, response: string): Promise<FinxResponse<FinxSync>> {
    return this.request({
      operation: 'answerChallenge',
      method: 'POST',
      path: `/v2/accesses/${enc(accessId)}/syncs/${enc(syncId)}/challenges/${enc(challengeId)}`,
      body: this.checkRequest('answerChallenge', FinxAnswerRequest, { response }),
      schema: FinxSync,
    });
  }

  /** Validates an outgoing body; the error names fields only, never values. */
  private checkRequest<T>(operation: Operation, schema: z.ZodType<T>, body: unknown): T {
    const parsed = schema.safeParse(body);
    if (parsed.success) return parsed.data;
    const fields = parsed.error.issues.map((issue) => issue.path.join('.') || '(root)');
    throw new ProviderError(`${FINX} ${operation}: invalid request (${[...new Set(fields)].join(', ')})`, {
      code: 'PROVIDER_ERROR',
      retryable: false,
    });
  }

  private async request<T>(spec: RequestSpec<T>): Promise<FinxResponse<T>> {
    const { operation } = spec;
    const { response, text } = await this.send({
      operation,
      url: `${this.baseUrl}${spec.path}`,
      method: spec.method,
      body: spec.body,
      ...(spec.headers ? { headers: spec.headers } : {}),
      sendOnce: operation === 'answerChallenge',
    });

    if (response.status < 200 || response.status >= 300) {
      throw this.httpError(operation, response, text);
    }

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new InvalidProviderResponseError(FINX, operation, [`(body): not valid JSON (HTTP ${response.status})`]);
    }
    const parsed = spec.schema.safeParse(json);
    if (!parsed.success) throw new InvalidProviderResponseError(FINX, operation, zodIssues(parsed.error));
    return { status: response.status, data: parsed.data };
  }

  private httpError(operation: Operation, response: Response, text: string): ProviderError {
    const failure = httpFailure(FINX, operation, response.status, text, (body) => FinxErrorResponse.safeParse(body).data?.error.code);
    const transient = transientHttpError(failure, response, this.now());
    if (transient) return transient;
    if (failure.status === 401) return unauthorizedError(failure);
    if (failure.status === 409 && operation === 'trigger' && failure.providerCode === 'SYNC_IN_PROGRESS') {
      // Another sync (ours from a lost response, finX's daily autosync, another client) is running: busy, not failed.
      return new ProviderError(failure.message, { ...failure.details, code: 'PROVIDER_BUSY', retryable: true });
    }
    // 400/401/403/404/409 (other)/422...: repeating the same request cannot help.
    return new ProviderError(failure.message, { ...failure.details, code: 'PROVIDER_ERROR', retryable: false });
  }

}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}
