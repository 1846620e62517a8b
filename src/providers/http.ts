import type { AuthContext, Authenticator } from './auth.js';
import { ProviderError } from './errors.js';

/**
 * What every provider client shares at the HTTP boundary: the timeout default, Retry-After parsing, and the
 * safe text that may enter an error message (never a token, body or provider free text).
 */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Longer Retry-After values are treated as absent (the machine caps its own backoff anyway). */
export const MAX_RETRY_AFTER_MS = 24 * 60 * 60_000;

/**
 * Parses a Retry-After header (delay-seconds or IMF-fixdate HTTP-date) into ms.
 * Negative, absurd (> 24 h), fractional or unparseable values give undefined.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d{1,10}$/.test(trimmed)) {
    const ms = Number(trimmed) * 1000;
    return ms <= MAX_RETRY_AFTER_MS ? ms : undefined;
  }
  // HTTP-date (RFC 9110 IMF-fixdate, e.g. "Wed, 21 Oct 2015 07:28:00 GMT"); Date.parse alone is too lenient.
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  if (!Number.isFinite(at)) return undefined;
  const ms = at - now;
  if (ms < 0 || ms > MAX_RETRY_AFTER_MS) return undefined;
  return ms;
}

/** Only short machine codes from an error body reach our messages (never provider free text). */
export function safeCode(code: unknown): string | undefined {
  const text = typeof code === 'number' ? String(code) : typeof code === 'string' ? code : undefined;
  return text !== undefined && /^[A-Za-z0-9_.-]{1,64}$/.test(text) ? text : undefined;
}

export function describeTransportError(error: unknown): string {
  if (error instanceof Error) {
    if (error.name === 'TimeoutError' || error.name === 'AbortError') return 'timed out';
    const cause = (error as { cause?: unknown }).cause;
    const code = cause && typeof cause === 'object' && 'code' in cause ? (cause as { code?: unknown }).code : undefined;
    if (typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code)) return `network error (${code})`;
  }
  return 'network error';
}

export interface JsonRequest {
  /** Provider family and operation, for error messages only. */
  provider: string;
  operation: string;
  url: string;
  method: string;
  auth: Authenticator;
  /** Whose call this is: per-user tokens are resolved for it. */
  context: AuthContext;
  /**
   * After a 401, refresh the token and send once more. False for a TAN answer: an answer is sent at most once
   * (a refused one is reported, and the user asked again).
   */
  retryUnauthorized: boolean;
  timeoutMs: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/**
 * Sends one JSON request with the provider's credentials and a timeout and reads the whole body. A 401 is
 * answered by one refresh of the token and one retry (unless `retryUnauthorized` is false). Transport failures
 * (network, timeout) become a retryable PROVIDER_UNAVAILABLE; HTTP statuses are the caller's to map.
 */
export async function sendJson(request: JsonRequest): Promise<{ response: Response; text: string }> {
  const first = await sendOnce(request);
  if (first.response.status !== 401 || !request.retryUnauthorized || !request.auth.invalidate(request.context)) return first;
  return sendOnce(request);
}

/** A 401 that survived the refresh (or came where no retry is allowed): our credentials, not the user's. */
export function unauthorizedError(failure: HttpFailure): ProviderError {
  return new ProviderError(failure.message, { ...failure.details, code: 'PROVIDER_UNAUTHORIZED', retryable: false });
}

async function sendOnce(request: JsonRequest): Promise<{ response: Response; text: string }> {
  const credentials = await request.auth.headers(request.context);
  const headers: Record<string, string> = { accept: 'application/json', ...request.headers, ...credentials };
  if (request.body !== undefined) headers['content-type'] = 'application/json';
  try {
    const response = await fetch(request.url, {
      method: request.method,
      headers,
      ...(request.body !== undefined ? { body: JSON.stringify(request.body) } : {}),
      signal: AbortSignal.timeout(request.timeoutMs),
      redirect: 'error',
    });
    return { response, text: await response.text() };
  } catch (error) {
    // Deliberately no `cause`: undici errors can carry request details.
    const what = describeTransportError(error);
    throw new ProviderError(
      `${request.provider} ${request.operation}: ${what === 'timed out' ? `timed out after ${request.timeoutMs} ms` : what}`,
      { code: 'PROVIDER_UNAVAILABLE', retryable: true },
    );
  }
}

/** What every client reads from a non-2xx answer: the provider's short error code and the error details. */
export interface HttpFailure {
  status: number;
  providerCode: string | undefined;
  /** `<provider> <operation>: HTTP <status> [<code>]`: no body text, no token. */
  message: string;
  details: { httpStatus: number; providerCode?: string };
}

/** Reads a non-2xx answer; `codeOf` picks the error code out of the provider's error body (best effort). */
export function httpFailure(provider: string, operation: string, status: number, text: string, codeOf: (body: unknown) => unknown): HttpFailure {
  let providerCode: string | undefined;
  try {
    providerCode = safeCode(codeOf(JSON.parse(text)));
  } catch {
    // error bodies are optional and best-effort
  }
  return {
    status,
    providerCode,
    message: `${provider} ${operation}: HTTP ${status}${providerCode ? ` ${providerCode}` : ''}`,
    details: { httpStatus: status, ...(providerCode ? { providerCode } : {}) },
  };
}

/** 429 and 5xx are transient for every provider (with Retry-After when given); null for other statuses. */
export function transientHttpError(failure: HttpFailure, response: Response, now: number): ProviderError | null {
  if (failure.status !== 429 && failure.status < 500) return null;
  const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), now);
  return new ProviderError(failure.message, {
    ...failure.details,
    code: failure.status === 429 ? 'RATE_LIMITED' : 'PROVIDER_UNAVAILABLE',
    retryable: true,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  });
}

