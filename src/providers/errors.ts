/**
 * Typed errors raised at the provider boundary. Messages never contain request headers, bodies sent,
 * credentials or tokens: only status codes, paths without query strings, and zod issue paths.
 */
import type { z } from 'zod';
import type { EffectFailure, SyncErrorCode } from '../../machines/canonical.js';

export interface ProviderErrorDetails {
  code: SyncErrorCode;
  retryable: boolean;
  userActionRequired?: boolean;
  retryAfterMs?: number;
  providerCode?: string;
  httpStatus?: number;
}

/** A provider call failed (transport, HTTP status, provider error body). */
export class ProviderError extends Error {
  override readonly name: string = 'ProviderError';
  readonly code: SyncErrorCode;
  readonly retryable: boolean;
  readonly userActionRequired: boolean;
  readonly retryAfterMs: number | undefined;
  readonly providerCode: string | undefined;
  readonly httpStatus: number | undefined;

  constructor(message: string, details: ProviderErrorDetails) {
    super(message);
    this.code = details.code;
    this.retryable = details.retryable;
    this.userActionRequired = details.userActionRequired ?? false;
    this.retryAfterMs = details.retryAfterMs;
    this.providerCode = details.providerCode;
    this.httpStatus = details.httpStatus;
  }

  toFailure(): EffectFailure {
    return {
      code: this.code,
      retryable: this.retryable,
      userActionRequired: this.userActionRequired,
      message: this.message,
      ...(this.retryAfterMs !== undefined ? { retryAfterMs: this.retryAfterMs } : {}),
      ...(this.providerCode !== undefined ? { providerCode: this.providerCode } : {}),
    };
  }
}

/**
 * The provider refused our access token (HTTP 401 after the transport's own refresh). Not the user's bank
 * credentials: never a lock risk, never user action; retryable, a later attempt with a fresh token may succeed.
 */
export class ProviderAuthError extends ProviderError {
  override readonly name = 'ProviderAuthError';
  constructor(message: string, details: Omit<ProviderErrorDetails, 'code' | 'retryable' | 'userActionRequired'>) {
    super(message, { ...details, code: 'PROVIDER_ERROR', retryable: true, userActionRequired: false });
  }
}

/** The provider answered with a body that does not match its documented schema. */
export class InvalidProviderResponseError extends ProviderError {
  override readonly name = 'InvalidProviderResponseError';
  constructor(
    readonly provider: string,
    readonly operation: string,
    readonly issues: string[],
  ) {
    super(`${provider} ${operation}: response does not match the schema (${issues.slice(0, 3).join('; ')})`, {
      code: 'INVALID_RESPONSE',
      // A garbled body is often a passing fault; retries are bounded by the machine.
      retryable: true,
    });
  }
}

/** The provider reported a status banksync does not know. Never mapped to success. */
export class UnknownProviderStatusError extends ProviderError {
  override readonly name = 'UnknownProviderStatusError';
  constructor(
    readonly provider: string,
    readonly field: string,
    readonly value: string,
  ) {
    super(`${provider}: unknown ${field} ${JSON.stringify(value.slice(0, 64))}`, {
      code: 'UNKNOWN_PROVIDER_STATUS',
      retryable: false,
    });
  }
}

/** Inbound data (webhook, callback) that is malformed or unverifiable; it changes nothing. */
export class ProviderInputError extends Error {
  override readonly name = 'ProviderInputError';
  constructor(
    readonly provider: string,
    message: string,
    readonly issues: string[] = [],
  ) {
    super(`${provider}: ${message}`);
  }
}

export function zodIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
}
