/**
 * The provider sandbox: one real HTTP server (fastify, 127.0.0.1, random port) hosting every provider
 * family under its own path prefix, plus a JSON control API under `/_sandbox`.
 *
 * Each provider family is a `SandboxProvider` module (see `finx.ts`), registered as an encapsulated
 * fastify plugin under its prefix, so its auth hooks and error shapes stay its own. Add a family by
 * appending its factory to `DEFAULT_PROVIDERS` (or pass `providers` to `startSandbox`).
 *
 * Secrets: the sandbox never logs request headers or bodies (credentials, TANs, tokens) and never echoes
 * them in a response; fastify's logger is configured to redact them in case a serializer changes.
 */
import { signWebhook, SIGNATURE_HEADER } from '../engine/webhook-auth.js';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { createFinxSandbox, type FinxSandboxOptions, type FinxStats } from './finx.js';
import { createXs2aSandbox } from './xs2a.js';
import { createWealthSandbox } from './wealthapi.js';
import { createFinapiSandbox } from './finapi.js';
import { SandboxAuth, type SandboxAuthOptions } from './auth.js';

/** Counters of one provider family: totals plus one entry per connection (finX access, finAPI connection...). */
export interface ProviderStats {
  totals: Record<string, number>;
  connections: Record<string, Record<string, number | string>>;
}

/** `stats()` / `GET /_sandbox/stats`: one entry per provider family, keyed by its name. */
export type SandboxStats = { finx: FinxStats } & Record<string, ProviderStats>;

export interface SandboxScenarioInfo {
  name: string;
  description: string;
}

/** What the server offers a provider module. */
export interface SandboxContext {
  /** Provider authentication shared by every family (static credentials, issued OAuth tokens). */
  readonly auth: SandboxAuth;
  /** The sandbox clock (epoch ms); `options.now` or Date.now. Scripts advance by reads, not by this clock. */
  now(): number;
  /** Base URL of the running server (valid once listening; used for redirect links). */
  baseUrl(): string;
  /**
   * Fire-and-forget webhook delivery to the URL configured for this provider (or the global one).
   * Returns false when no URL is configured (nothing sent). `onDone(ok)` runs once the attempt ends;
   * delivery is attempted at most once, errors are swallowed.
   */
  sendWebhook(provider: string, body: unknown, onDone?: (ok: boolean) => void): boolean;
}

export interface SandboxProvider {
  readonly name: string;
  /** Path prefix, e.g. `/finx`. */
  readonly prefix: string;
  readonly scenarios: readonly SandboxScenarioInfo[];
  /** Registers the routes (relative to `prefix`) on an encapsulated fastify scope. */
  register(app: FastifyInstance): void | Promise<void>;
  stats(): ProviderStats;
  close?(): void;
}

export type SandboxProviderFactory = (context: SandboxContext, options: SandboxOptions) => SandboxProvider;

export interface SandboxOptions {
  /** Where webhooks go (all providers, unless overridden per provider with `setWebhookUrl(url, provider)`). */
  webhookUrl?: string;
  /** fastify request logging (no headers or bodies). Default false. */
  logger?: boolean;
  /** Sandbox clock for timestamps and challenge deadlines. Default Date.now. */
  now?: () => number;
  /** finX family options (accepted tokens, challenge TTLs). */
  finx?: FinxSandboxOptions;
  /** Shared secrets by provider: deliveries are signed like a provider that signs its webhooks. */
  webhookSecrets?: Record<string, string>;
  /** Port on 127.0.0.1; default 0 (random). */
  port?: number;
  /** Provider families to host. Default `DEFAULT_PROVIDERS`. */
  providers?: readonly SandboxProviderFactory[];
  /** OAuth clients, users and token lifetime of the token endpoints (`/<family>/oauth/token`). */
  auth?: SandboxAuthOptions;
}

/** Families whose API takes OAuth bearer tokens: each gets `POST /<family>/oauth/token`. */
const TOKEN_ENDPOINT_FAMILIES = new Set(['finx', 'finapi', 'wealthapi']);

export interface Sandbox {
  /** Base URL without trailing slash, e.g. `http://127.0.0.1:41234`; finX lives at `${url}/finx`. */
  readonly url: string;
  close(): Promise<void>;
  stats(): SandboxStats;
  /** Sets (or with undefined clears) the webhook URL, globally or for one provider family. */
  setWebhookUrl(url: string | undefined, provider?: string): void;
  /** Resolves once every webhook delivery started so far has finished (delivered or failed). */
  webhooksIdle(): Promise<void>;
  /** The sandbox's token issuer: `auth.expireAll()` makes every issued token expire now. */
  readonly auth: SandboxAuth;
}

export const DEFAULT_PROVIDERS: readonly SandboxProviderFactory[] = [createFinxSandbox, createFinapiSandbox, createXs2aSandbox, createWealthSandbox];

const WEBHOOK_TIMEOUT_MS = 5_000;

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const now = options.now ?? Date.now;
  let globalWebhookUrl = options.webhookUrl;
  const webhookUrls = new Map<string, string>();
  const inFlight = new Set<Promise<void>>();
  let baseUrl = '';
  let closed = false;

  const auth = new SandboxAuth(now, options.auth);
  const context: SandboxContext = {
    auth,
    now,
    baseUrl: () => baseUrl,
    sendWebhook(provider, body, onDone) {
      const url = webhookUrls.get(provider) ?? globalWebhookUrl;
      if (!url || closed) return false;
      const text = JSON.stringify(body);
      const secret = options.webhookSecrets?.[provider];
      const signature: Record<string, string> = secret === undefined ? {} : { [SIGNATURE_HEADER]: signWebhook(secret, text, Math.floor(now() / 1000)) };
      const delivery = fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-sandbox-provider': provider, ...signature },
        body: text,
        signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
      })
        .then(async (response) => {
          await response.arrayBuffer().catch(() => undefined);
          return response.ok;
        })
        .catch(() => false)
        .then((ok) => {
          try {
            onDone?.(ok);
          } catch {
            // counters only; never let a callback break delivery bookkeeping
          }
        });
      inFlight.add(delivery);
      void delivery.finally(() => inFlight.delete(delivery));
      return true;
    },
  };

  const providers = (options.providers ?? DEFAULT_PROVIDERS).map((factory) => factory(context, options));

  const app = Fastify({
    logger: options.logger
      ? {
          level: 'info',
          redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'req.body', 'body'], remove: true },
        }
      : false,
  });

  // Uniform error shape; never echo parser messages (JSON.parse messages quote the body: TANs, credentials).
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    const code = status >= 500 ? 'INTERNAL_ERROR' : (error.code ?? 'BAD_REQUEST');
    void reply.status(status).send({ error: { code, message: status >= 500 ? 'internal error' : 'request rejected' } });
  });
  app.setNotFoundHandler((_request, reply) => {
    void reply.status(404).send({ error: { code: 'NOT_FOUND', message: 'no such route' } });
  });

  const stats = (): SandboxStats => {
    const out: Record<string, ProviderStats> = {};
    for (const provider of providers) out[provider.name] = provider.stats();
    return out as SandboxStats;
  };

  await app.register(
    async (control) => {
      control.get('/stats', async () => stats());
      control.get('/scenarios', async () => {
        const out: Record<string, readonly SandboxScenarioInfo[]> = {};
        for (const provider of providers) out[provider.name] = provider.scenarios;
        return out;
      });
      control.post('/auth/expire', async (_request, reply) => {
        auth.expireAll();
        return reply.status(204).send();
      });
      control.put<{ Body: { url?: unknown; provider?: unknown } }>('/webhook-url', async (request, reply) => {
        const body = request.body ?? {};
        const url = typeof body.url === 'string' && body.url.length > 0 ? body.url : undefined;
        const provider = typeof body.provider === 'string' ? body.provider : undefined;
        setWebhookUrl(url, provider);
        return reply.status(204).send();
      });
    },
    { prefix: '/_sandbox' },
  );

  for (const provider of providers) {
    if (TOKEN_ENDPOINT_FAMILIES.has(provider.name)) {
      // A sibling scope: the family's own token check does not guard its token endpoint.
      await app.register(async (scope) => auth.registerTokenEndpoint(scope, provider.name), { prefix: provider.prefix });
    }
    await app.register(async (scope) => provider.register(scope), { prefix: provider.prefix });
  }

  function setWebhookUrl(url: string | undefined, provider?: string): void {
    if (provider === undefined) globalWebhookUrl = url;
    else if (url === undefined) webhookUrls.delete(provider);
    else webhookUrls.set(provider, url);
  }

  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('sandbox: unexpected listen address');
  baseUrl = `http://127.0.0.1:${address.port}`;

  const webhooksIdle = async (): Promise<void> => {
    while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
  };

  return {
    url: baseUrl,
    auth,
    stats,
    setWebhookUrl,
    webhooksIdle,
    async close() {
      if (closed) return;
      closed = true;
      for (const provider of providers) provider.close?.();
      await webhooksIdle();
      await app.close();
    },
  };
}
