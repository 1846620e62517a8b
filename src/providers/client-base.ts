/** The base every provider client extends: credentials, timeout, clock, and the tenant/connection of a call. */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ProviderAdapter } from './types.js';
import { AuthConfigError, createAuthenticator, type AuthContext, type Authenticator, type ProviderAuth, type ProviderAuthType } from './auth.js';
import { DEFAULT_TIMEOUT_MS, sendJson } from './http.js';
import { observeProviderCall } from '../engine/telemetry.js';

/** Credentials as an adapter's config gives them: an `auth` option, or `token` as shorthand for the static kind. */
export interface ClientAuthConfig {
  auth?: ProviderAuth;
  /** Shorthand for the provider's static credential (`bearer`; xs2a: `apiKey`). Ignored when `auth` is set. */
  token?: string;
  timeoutMs?: number;
  /** Clock for HTTP-date Retry-After values and token expiry. Default Date.now. */
  now?: () => number;
}

/** Calls made outside any sync (creating test fixtures, tools): no tenant or connection to resolve a token for. */
export const NO_AUTH_CONTEXT: AuthContext = Object.freeze({ tenantId: 'default', connectionId: '' });

/** The tenant and connection of the adapter call in progress (see `forConnection`). */
const callContext = new AsyncLocalStorage<AuthContext>();

/**
 * Wraps an adapter so every client call made inside trigger/findTriggered/poll/answerChallenge carries the
 * tenant and connection of that call (per-user tokens are resolved for it), without threading it by hand.
 */
export function forConnection<A extends ProviderAdapter>(adapter: A): A {
  const context = (ref: { tenantId?: string; connectionId: string }): AuthContext => ({ tenantId: ref.tenantId ?? 'default', connectionId: ref.connectionId });
  return {
    ...adapter,
    trigger: (request) => callContext.run(context(request), () => adapter.trigger(request)),
    findTriggered: (request) => callContext.run(context(request), () => adapter.findTriggered(request)),
    poll: (ref) => callContext.run(context(ref), () => adapter.poll(ref)),
    answerChallenge: (ref, challengeId, response) => callContext.run(context(ref), () => adapter.answerChallenge(ref, challengeId, response)),
  };
}

export interface SendSpec {
  operation: string;
  url: string;
  method: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** A TAN answer: never re-sent, not even after a token refresh. */
  sendOnce?: boolean;
}

/**
 * What every provider client shares: its credentials, timeout and clock, and the tenant/connection a call is
 * made for (the adapter call in progress, see `forConnection`).
 */
export abstract class ProviderHttpClient {
  protected readonly auth: Authenticator;
  protected readonly timeoutMs: number;
  protected readonly now: () => number;
  constructor(
    protected readonly provider: string,
    config: ClientAuthConfig,
    supports: readonly ProviderAuthType[],
    staticType: 'bearer' | 'apiKey' = 'bearer',
  ) {
    this.timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.now = config.now ?? Date.now;
    const auth: ProviderAuth | undefined =
      config.auth ?? (config.token ? (staticType === 'apiKey' ? { type: 'apiKey', apiKey: config.token } : { type: 'bearer', token: config.token }) : undefined);
    if (!auth) throw new AuthConfigError(`${provider}: auth (or token) is required`);
    this.auth = createAuthenticator(auth, { provider, supports, timeoutMs: this.timeoutMs, now: this.now });
  }

  protected send(spec: SendSpec): Promise<{ response: Response; text: string }> {
    const call = { provider: this.provider, operation: spec.operation, method: spec.method, url: spec.url };
    return observeProviderCall(call, () => sendJson({
      provider: this.provider,
      operation: spec.operation,
      url: spec.url,
      method: spec.method,
      auth: this.auth,
      context: callContext.getStore() ?? NO_AUTH_CONTEXT,
      retryUnauthorized: !spec.sendOnce,
      timeoutMs: this.timeoutMs,
      ...(spec.body !== undefined ? { body: spec.body } : {}),
      ...(spec.headers ? { headers: spec.headers } : {}),
    }));
  }
}
