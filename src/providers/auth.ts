/**
 * How adapters authenticate to a provider. One `auth` option per adapter:
 * - `bearer`: a static API token (`Authorization: Bearer <token>`);
 * - `apiKey`: xs2a.api's API key (HTTP Basic, user `api`, as FinTecSystems' own SDKs send it);
 * - `clientCredentials`: an OAuth2 client-credentials token (finAPI's client token), fetched and cached;
 * - `password`: an OAuth2 password-grant user token (one finAPI user), refreshed with its refresh token;
 * - `perUser`: the app resolves a token per tenant and connection (finAPI bank connections belong to finAPI
 *   users); banksync caches what it returns until shortly before it expires.
 *
 * Tokens are cached, refreshed before they expire, and after a 401 refreshed once and the request retried
 * once (never for a TAN answer: an answer is sent at most once). Token requests go through oauth4webapi;
 * no token, secret or token-endpoint body ever reaches an error message, a log line or a snapshot.
 */
import * as oauth from 'oauth4webapi';
import { ProviderError } from './errors.js';
import { describeTransportError, safeCode } from './http.js';

/** Who a provider call is for: adapters pass it with every request. */
export interface AuthContext {
  tenantId: string;
  connectionId: string;
}

export interface IssuedToken {
  accessToken: string;
  /** Epoch ms after which the token is no longer accepted; absent when it does not expire on its own. */
  expiresAt?: number;
}

export type TokenResolver = (context: AuthContext) => Promise<string | IssuedToken> | string | IssuedToken;

export interface OAuthClientSettings {
  /** The provider's token endpoint, e.g. `https://sandbox.finapi.io/api/v2/oauth/token`. HTTPS, except on loopback. */
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  scope?: string;
}

export type ProviderAuth =
  | { type: 'bearer'; token: string }
  | { type: 'apiKey'; apiKey: string }
  | ({ type: 'clientCredentials' } & OAuthClientSettings)
  | ({ type: 'password'; username: string; password: string } & OAuthClientSettings)
  | {
      type: 'perUser';
      resolve: TokenResolver;
      /** Which calls share a token; default one per tenant and connection. */
      cacheKey?: (context: AuthContext) => string;
    };

export type ProviderAuthType = ProviderAuth['type'];

/** What a client asks of its credentials for each request. */
export interface Authenticator {
  headers(context: AuthContext): Promise<Record<string, string>>;
  /**
   * The provider answered 401 to `headers(context)`: forget that token. True when a fresh token can be had
   * (so one retry makes sense); false for static credentials.
   */
  invalidate(context: AuthContext): boolean;
}

/** A token is renewed this long before it expires (or at 10% of its lifetime left, whichever is shorter). */
export const REFRESH_BEFORE_EXPIRY_MS = 60_000;
/** Per-user tokens cached at most; the least recently fetched go first. */
export const MAX_CACHED_TOKENS = 10_000;

export interface AuthenticatorOptions {
  /** Provider family, for error messages. */
  provider: string;
  /** Auth types this provider supports. */
  supports: readonly ProviderAuthType[];
  timeoutMs: number;
  now: () => number;
}

/** The auth option is not usable for this provider (thrown when the adapter is created). */
export class AuthConfigError extends Error {
  override readonly name = 'AuthConfigError';
}

/** Static credentials have nothing to refresh; OAuth and resolved tokens go through a TokenCache. */
export function createAuthenticator(auth: ProviderAuth, options: AuthenticatorOptions): Authenticator {
  if (!options.supports.includes(auth.type)) {
    throw new AuthConfigError(`${options.provider}: auth type ${JSON.stringify(auth.type)} is not supported (use ${options.supports.join(', ')})`);
  }
  switch (auth.type) {
    case 'bearer':
      requireText(options.provider, 'auth.token', auth.token);
      return staticHeaders({ authorization: `Bearer ${auth.token}` });
    case 'apiKey':
      requireText(options.provider, 'auth.apiKey', auth.apiKey);
      return staticHeaders({ authorization: `Basic ${Buffer.from(`api:${auth.apiKey}`).toString('base64')}` });
    case 'clientCredentials':
    case 'password': {
      const grant = new OAuthGrant(auth, options);
      return bearerFrom(new TokenCache(options.now, (_key, previous) => grant.fetch(previous)), () => 'client');
    }
    case 'perUser': {
      if (typeof auth.resolve !== 'function') throw new AuthConfigError(`${options.provider}: auth.resolve must be a function`);
      const cacheKey = auth.cacheKey ?? ((c: AuthContext) => JSON.stringify([c.tenantId, c.connectionId]));
      const cache = new TokenCache(options.now, async (_key, _previous, context) => resolved(options, await auth.resolve(context)));
      return bearerFrom(cache, cacheKey);
    }
  }
}

function requireText(provider: string, field: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0) throw new AuthConfigError(`${provider}: ${field} is required`);
}

function staticHeaders(headers: Record<string, string>): Authenticator {
  return { headers: async () => headers, invalidate: () => false };
}

function bearerFrom(cache: TokenCache, keyOf: (context: AuthContext) => string): Authenticator {
  return {
    async headers(context) {
      return { authorization: `Bearer ${await cache.get(keyOf(context), context)}` };
    },
    invalidate(context) {
      cache.forget(keyOf(context));
      return true;
    },
  };
}

function resolved(options: AuthenticatorOptions, value: string | IssuedToken): CachedToken {
  const token = typeof value === 'string' ? { accessToken: value } : value;
  if (!token || typeof token.accessToken !== 'string' || token.accessToken.length === 0) {
    throw new ProviderError(`${options.provider} auth: the token resolver returned no token`, { code: 'PROVIDER_UNAUTHORIZED', retryable: false });
  }
  if (token.expiresAt === undefined) return { accessToken: token.accessToken };
  return { accessToken: token.accessToken, expiresAt: token.expiresAt, issuedAt: options.now() };
}

interface CachedToken extends IssuedToken {
  refreshToken?: string;
  /** When the token was obtained: refresh starts at 90% of its lifetime at the latest. */
  issuedAt?: number;
}

type Fetch = (key: string, previous: CachedToken | undefined, context: AuthContext) => Promise<CachedToken>;

/** Tokens by key: one fetch in flight per key, renewed before expiry, bounded in size. */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();

  constructor(
    private readonly now: () => number,
    private readonly fetch: Fetch,
  ) {}

  async get(key: string, context: AuthContext): Promise<string> {
    const cached = this.tokens.get(key);
    if (cached && this.fresh(cached)) return cached.accessToken;
    let inFlight = this.pending.get(key);
    if (!inFlight) {
      inFlight = this.fetch(key, cached, context).finally(() => this.pending.delete(key));
      this.pending.set(key, inFlight);
      const token = await inFlight;
      this.tokens.delete(key);
      this.tokens.set(key, token);
      while (this.tokens.size > MAX_CACHED_TOKENS) this.tokens.delete(this.tokens.keys().next().value!);
      return token.accessToken;
    }
    return (await inFlight).accessToken;
  }

  forget(key: string): void {
    const cached = this.tokens.get(key);
    // Keep the refresh token: a 401 on an access token does not void it.
    if (cached) this.tokens.set(key, { ...cached, accessToken: '', expiresAt: 0 });
  }

  private fresh(token: CachedToken): boolean {
    if (token.accessToken === '') return false;
    if (token.expiresAt === undefined) return true;
    const lifetime = token.issuedAt === undefined ? Infinity : token.expiresAt - token.issuedAt;
    const margin = Math.min(REFRESH_BEFORE_EXPIRY_MS, lifetime / 10);
    return this.now() < token.expiresAt - margin;
  }
}

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/;

/** OAuth2 token requests (client credentials, password, refresh token) through oauth4webapi. */
class OAuthGrant {
  private readonly server: oauth.AuthorizationServer;
  private readonly client: oauth.Client;
  private readonly clientAuth: oauth.ClientAuth;
  private readonly insecure: boolean;

  constructor(
    private readonly auth: Extract<ProviderAuth, { type: 'clientCredentials' | 'password' }>,
    private readonly options: AuthenticatorOptions,
  ) {
    requireText(options.provider, 'auth.clientId', auth.clientId);
    requireText(options.provider, 'auth.clientSecret', auth.clientSecret);
    if (auth.type === 'password') {
      requireText(options.provider, 'auth.username', auth.username);
      requireText(options.provider, 'auth.password', auth.password);
    }
    let url: URL;
    try {
      url = new URL(auth.tokenUrl);
    } catch {
      throw new AuthConfigError(`${options.provider}: auth.tokenUrl must be an absolute URL`);
    }
    // Client secrets and passwords never travel in clear text, except to a sandbox on this machine.
    this.insecure = url.protocol === 'http:' && LOOPBACK.test(url.hostname);
    if (url.protocol !== 'https:' && !this.insecure) throw new AuthConfigError(`${options.provider}: auth.tokenUrl must use https`);
    this.server = { issuer: url.origin, token_endpoint: url.href };
    this.client = { client_id: auth.clientId };
    this.clientAuth = oauth.ClientSecretPost(auth.clientSecret);
  }

  async fetch(previous: CachedToken | undefined): Promise<CachedToken> {
    const requested = this.options.now();
    const options = { signal: AbortSignal.timeout(this.options.timeoutMs), [oauth.allowInsecureRequests]: this.insecure };
    const scope: Record<string, string> = this.auth.scope ? { scope: this.auth.scope } : {};
    let result: oauth.TokenEndpointResponse;
    try {
      if (previous?.refreshToken) {
        try {
          const response = await oauth.refreshTokenGrantRequest(this.server, this.client, this.clientAuth, previous.refreshToken, options);
          result = await oauth.processRefreshTokenResponse(this.server, this.client, response);
          return this.cached(result, requested);
        } catch (error) {
          // An expired or revoked refresh token: fall back to the grant itself (transport failures still throw).
          if (!(error instanceof oauth.ResponseBodyError) || error.status >= 500) throw error;
        }
      }
      if (this.auth.type === 'password') {
        const params = { username: this.auth.username, password: this.auth.password, ...scope };
        const response = await oauth.genericTokenEndpointRequest(this.server, this.client, this.clientAuth, 'password', params, options);
        result = await oauth.processGenericTokenEndpointResponse(this.server, this.client, response);
      } else {
        const response = await oauth.clientCredentialsGrantRequest(this.server, this.client, this.clientAuth, scope, options);
        result = await oauth.processClientCredentialsResponse(this.server, this.client, response);
      }
    } catch (error) {
      throw this.failure(error);
    }
    return this.cached(result, requested);
  }

  private cached(result: oauth.TokenEndpointResponse, requested: number): CachedToken {
    // finAPI: expires_in 0 means the token does not expire on its own.
    const expiresIn = typeof result.expires_in === 'number' && result.expires_in > 0 ? result.expires_in * 1000 : undefined;
    return {
      accessToken: result.access_token,
      ...(expiresIn !== undefined ? { expiresAt: requested + expiresIn, issuedAt: requested } : {}),
      ...(typeof result.refresh_token === 'string' ? { refreshToken: result.refresh_token } : {}),
    };
  }

  /** Only the status and the OAuth error code reach the message: never a secret or a description. */
  private failure(error: unknown): ProviderError {
    const what = `${this.options.provider} auth: token request`;
    if (error instanceof oauth.ResponseBodyError) {
      const code = safeCode(error.error);
      const transient = error.status >= 500 || error.status === 429;
      return new ProviderError(`${what} rejected (HTTP ${error.status}${code ? ` ${code}` : ''})`, {
        code: transient ? 'PROVIDER_UNAVAILABLE' : 'PROVIDER_UNAUTHORIZED',
        retryable: transient,
        httpStatus: error.status,
        ...(code ? { providerCode: code } : {}),
      });
    }
    if (error instanceof oauth.OperationProcessingError || error instanceof oauth.UnsupportedOperationError) {
      const status = (error.cause as Response | undefined)?.status;
      const transient = typeof status === 'number' && (status >= 500 || status === 429);
      return new ProviderError(`${what} failed${typeof status === 'number' ? ` (HTTP ${status})` : ''}: invalid token response`, {
        code: transient ? 'PROVIDER_UNAVAILABLE' : 'INVALID_RESPONSE',
        retryable: transient,
      });
    }
    return new ProviderError(`${what}: ${describeTransportError(error)}`, { code: 'PROVIDER_UNAVAILABLE', retryable: true });
  }
}
