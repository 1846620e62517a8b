/**
 * The sandbox's provider authentication: the schemes the providers use, enforced the way they enforce them,
 * so an adapter's auth is tested against something that says no.
 * - Bearer families (finX, finAPI, wealthAPI): static tokens (any non-empty one unless a family lists its own)
 *   and tokens issued by `POST /<family>/oauth/token` (client_credentials, password, refresh_token; form-encoded,
 *   client credentials in the body, as finAPI's `/oauth/token`). An issued token that expired or was revoked
 *   is refused with 401, like an expired finAPI token.
 * - xs2a: HTTP Basic with user `api` and the API key as password (how FinTecSystems' SDKs authenticate).
 * Tokens are opaque random strings; nothing here is logged.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

export interface SandboxAuthOptions {
  /** OAuth clients accepted by the token endpoints: client id -> secret. Default `sandbox-client` / `sandbox-secret`. */
  clients?: Record<string, string>;
  /** Users for the password grant: username -> password. Default `sandbox-user` / `sandbox-password`. */
  users?: Record<string, string>;
  /** Lifetime of issued access tokens in seconds. Default 3600 (finAPI's default). */
  tokenTtlSeconds?: number;
}

export type AuthVerdict = 'ok' | 'missing' | 'invalid' | 'expired';

interface Issued {
  family: string;
  expiresAt: number;
  refreshToken?: string;
}

/** Prefix of tokens the sandbox issued: such a token is only accepted while it is live. */
const ISSUED_PREFIX = 'sbx_';

export class SandboxAuth {
  private readonly issued = new Map<string, Issued>();
  private readonly refreshTokens = new Map<string, { family: string; username: string }>();
  private readonly clients: Record<string, string>;
  private readonly users: Record<string, string>;
  private ttlSeconds: number;
  /** Token requests answered, by grant type (tests read how often a client fetched). */
  readonly grants: Record<string, number> = {};
  /** API requests refused, by reason (tests read whether a client waited for a 401 or refreshed in time). */
  readonly refused: Record<Exclude<AuthVerdict, 'ok'>, number> = { missing: 0, invalid: 0, expired: 0 };

  constructor(
    private readonly now: () => number,
    options: SandboxAuthOptions = {},
  ) {
    this.clients = options.clients ?? { 'sandbox-client': 'sandbox-secret' };
    this.users = options.users ?? { 'sandbox-user': 'sandbox-password' };
    this.ttlSeconds = options.tokenTtlSeconds ?? 3600;
  }

  /** Checks a bearer header; `accepted` lists the family's static tokens (null: any static token). */
  bearer(family: string, header: unknown, accepted: ReadonlySet<string> | null): AuthVerdict {
    return this.count(this.checkBearer(family, header, accepted));
  }

  private checkBearer(family: string, header: unknown, accepted: ReadonlySet<string> | null): AuthVerdict {
    if (typeof header !== 'string' || header.trim() === '') return 'missing';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) return 'invalid';
    const token = match[1]!;
    if (token.startsWith(ISSUED_PREFIX)) {
      const issued = this.issued.get(token);
      if (!issued || issued.family !== family) return 'invalid';
      return this.now() < issued.expiresAt ? 'ok' : 'expired';
    }
    return accepted === null || accepted.has(token) ? 'ok' : 'invalid';
  }

  /** Checks an xs2a-style header: `Basic base64("api:" + apiKey)`; `accepted` lists API keys (null: any). */
  basicApiKey(header: unknown, accepted: ReadonlySet<string> | null): AuthVerdict {
    return this.count(this.checkBasicApiKey(header, accepted));
  }

  private count(verdict: AuthVerdict): AuthVerdict {
    if (verdict !== 'ok') this.refused[verdict] += 1;
    return verdict;
  }

  private checkBasicApiKey(header: unknown, accepted: ReadonlySet<string> | null): AuthVerdict {
    if (typeof header !== 'string' || header.trim() === '') return 'missing';
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!match) return 'invalid';
    const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
    const separator = decoded.indexOf(':');
    if (separator < 0 || decoded.slice(0, separator) !== 'api') return 'invalid';
    const key = decoded.slice(separator + 1);
    if (key === '') return 'invalid';
    return accepted === null || accepted.has(key) ? 'ok' : 'invalid';
  }

  /** Every issued access token stops working now (as if it had expired); refresh tokens stay valid. */
  expireAll(): void {
    for (const issued of this.issued.values()) issued.expiresAt = Math.min(issued.expiresAt, this.now());
  }

  setTokenTtl(seconds: number): void {
    this.ttlSeconds = seconds;
  }

  /** `POST <prefix>/oauth/token`, form-encoded, as finAPI's token endpoint (OAuth-style error bodies). */
  registerTokenEndpoint(app: FastifyInstance, family: string): void {
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
      // URLSearchParams is all a form body needs; no plugin for one line.
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    app.post('/oauth/token', async (request, reply) => {
      const form = (request.body ?? {}) as Record<string, unknown>;
      const text = (key: string) => (typeof form[key] === 'string' ? (form[key] as string) : '');
      const clientId = text('client_id');
      const secret = this.clients[clientId];
      if (secret === undefined || !same(secret, text('client_secret'))) {
        return reply.status(401).send({ error: 'invalid_client', error_description: 'Bad client credentials' });
      }
      const grant = text('grant_type');
      this.grants[grant] = (this.grants[grant] ?? 0) + 1;
      if (grant === 'client_credentials') return this.issue(family);
      if (grant === 'password') {
        const password = this.users[text('username')];
        if (password === undefined || !same(password, text('password'))) {
          return reply.status(400).send({ error: 'invalid_grant', error_description: 'Bad user credentials' });
        }
        return this.issue(family, text('username'));
      }
      if (grant === 'refresh_token') {
        const known = this.refreshTokens.get(text('refresh_token'));
        if (!known || known.family !== family) return reply.status(400).send({ error: 'invalid_grant', error_description: 'Invalid refresh token' });
        return this.issue(family, known.username);
      }
      return reply.status(400).send({ error: 'unsupported_grant_type', error_description: 'Unsupported grant type' });
    });
  }

  private issue(family: string, username?: string) {
    const accessToken = `${ISSUED_PREFIX}${randomBytes(24).toString('base64url')}`;
    const expiresAt = this.now() + this.ttlSeconds * 1000;
    const issued: Issued = { family, expiresAt };
    if (username !== undefined) {
      issued.refreshToken = randomBytes(24).toString('base64url');
      this.refreshTokens.set(issued.refreshToken, { family, username });
    }
    this.issued.set(accessToken, issued);
    return {
      access_token: accessToken,
      token_type: 'bearer',
      expires_in: this.ttlSeconds,
      scope: 'all',
      ...(issued.refreshToken ? { refresh_token: issued.refreshToken } : {}),
    };
  }
}

function same(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
