/**
 * banksync's configuration file (`banksync.config.json`, or `.js`/`.mjs` exporting the same object by default):
 * each provider's base URL and auth, webhook secrets, the store and production timings. Validated with zod;
 * secrets are never written in the file: they are `{ "env": "NAME" }` references read from the environment.
 * A bad file is a ConfigError naming the field (the CLI exits with code 2).
 */
import { readFile } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Duration as LuxonDuration } from 'luxon';
import { z } from 'zod';
import type { SyncPolicy } from '../../machines/synchronization.js';
import { BanksyncError } from '../engine/errors.js';
import type { ProviderAuth, TokenResolver, AuthContext } from '../providers/auth.js';
import { createAdapter, PROVIDER_FAMILIES, type ProviderFamily } from '../providers/registry.js';
import type { ProviderAdapter } from '../providers/types.js';
import { MAX_BATCH_SIZE, MIN_RETENTION_MS, type Retention } from '../engine/retention.js';

export class ConfigError extends BanksyncError {
  override readonly name = 'ConfigError';
  constructor(message: string, issues: string[] = []) {
    super('INVALID_CONFIG', message, issues);
  }
}

/**
 * Timings for real provider APIs: polls start at 5 s and back off to a minute, transient failures to 5 minutes.
 * (The demo's sub-second timings are for the sandbox only.)
 */
export const PRODUCTION_POLICY: Partial<SyncPolicy> = {
  pollBaseMs: 5_000,
  pollMaxMs: 60_000,
  authPollMs: 10_000,
  retryBaseMs: 5_000,
  retryMaxMs: 300_000,
};

/** A secret: the name of the environment variable that holds it. */
const Secret = z.object({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name') }).strict();
type Secret = z.infer<typeof Secret>;

const HttpUrl = z.url({ protocol: /^https?$/, error: 'must be an absolute http(s) URL' });

const OAuthClient = {
  tokenUrl: HttpUrl,
  clientId: z.string().min(1),
  clientSecret: Secret,
  scope: z.string().min(1).optional(),
};

const Auth = z.discriminatedUnion('type', [
  z.object({ type: z.literal('bearer'), token: Secret }).strict(),
  z.object({ type: z.literal('apiKey'), apiKey: Secret }).strict(),
  z.object({ type: z.literal('clientCredentials'), ...OAuthClient }).strict(),
  z.object({ type: z.literal('password'), ...OAuthClient, username: z.union([z.string().min(1), Secret]), password: Secret }).strict(),
  // Only in a JavaScript config: the app's own token lookup.
  z
    .object({
      type: z.literal('perUser'),
      resolve: z.custom<TokenResolver>((value) => typeof value === 'function', 'must be a function (use a .js/.mjs config)'),
      cacheKey: z.custom<(context: AuthContext) => string>((value) => typeof value === 'function', 'must be a function').optional(),
    })
    .strict(),
]);

const Provider = z
  .object({
    /** API root with path, e.g. `https://sandbox.finapi.io`. */
    baseUrl: HttpUrl,
    auth: Auth,
    timeoutMs: z.number().int().positive().max(120_000).optional(),
    /** finAPI: Web Form 2.0 API root (another host than the Access API). */
    webFormBaseUrl: HttpUrl.optional(),
    /** finAPI: default callback URL for task callbacks (HTTPS). */
    callbackUrl: z.url({ protocol: /^https$/, error: 'must be an https URL' }).optional(),
    /** xs2a: where users complete wizard sessions. */
    wizardBaseUrl: HttpUrl.optional(),
  })
  .strict();

const Policy = z
  .object({
    pollBaseMs: z.number().int().positive(),
    pollMaxMs: z.number().int().positive(),
    authPollMs: z.number().int().positive(),
    retryBaseMs: z.number().int().positive(),
    retryMaxMs: z.number().int().positive(),
    maxTriggerAttempts: z.number().int().positive(),
    maxConsecutivePollErrors: z.number().int().positive(),
    defaultChallengeTtlMs: z.number().int().positive(),
    syncDeadlineMs: z.number().int().positive(),
  })
  .partial()
  .strict();

/** A retention period: `"90d"`, `"36h"`, or ISO 8601 (`"P90D"`, `"PT36H"`); at least an hour. */
const RetentionPeriod = z
  .string()
  .transform((text, ctx) => {
    const short = /^(\d+)(d|h)$/.exec(text);
    const ms = short ? Number(short[1]) * (short[2] === 'd' ? 24 : 1) * 3_600_000 : /^P/.test(text) ? LuxonDuration.fromISO(text).toMillis() : NaN;
    if (!Number.isFinite(ms)) {
      ctx.addIssue({ code: 'custom', message: 'must be a duration such as "90d", "36h" or "P90D"' });
      return z.NEVER;
    }
    if (ms < MIN_RETENTION_MS) {
      ctx.addIssue({ code: 'custom', message: 'must be at least 1 hour' });
      return z.NEVER;
    }
    return ms;
  });

const RetentionFile = z
  .object({
    finishedSyncs: RetentionPeriod,
    transitions: RetentionPeriod,
    effects: RetentionPeriod,
    events: RetentionPeriod,
    /** Rows per kind per store transaction. */
    batchSize: z.number().int().positive().max(MAX_BATCH_SIZE),
    /** Transactions per pruning run at most. */
    maxBatches: z.number().int().positive().max(100_000),
    /** When workers prune (graphile-worker crontab line, UTC); false: workers never prune. Default hourly. */
    cron: z.union([z.string().regex(/^\S+( \S+){4}$/, 'must be a 5-field cron line such as "17 * * * *"'), z.literal(false)]),
  })
  .partial()
  .strict();

const ConfigFile = z
  .object({
    $schema: z.string().optional(),
    providers: z.object(Object.fromEntries(PROVIDER_FAMILIES.map((family) => [family, Provider.optional()])) as Record<ProviderFamily, z.ZodOptional<typeof Provider>>).strict(),
    store: z
      .union([
        z.object({ sqlite: z.string().min(1) }).strict(),
        z.object({ postgres: z.object({ url: Secret, schema: z.string().regex(/^[a-z_][a-z0-9_]*$/).optional() }).strict() }).strict(),
      ])
      .optional(),
    webhooks: z
      .object({
        secrets: z.partialRecord(z.enum(PROVIDER_FAMILIES), Secret).optional(),
        /** Deliver the event log to the app, signed per Standard Webhooks (workers deliver). */
        outgoing: z.object({ url: HttpUrl, secret: Secret }).strict().optional(),
      })
      .strict()
      .optional(),
    policy: Policy.optional(),
    retention: RetentionFile.optional(),
  })
  .strict();

type ProviderFile = z.infer<typeof Provider>;

/** A configuration with every secret read from the environment. */
export interface BanksyncConfig {
  providers: Partial<Record<ProviderFamily, ProviderSettings>>;
  store?: { sqlite: string } | { postgres: { url: string; schema?: string } };
  webhookSecrets: Record<string, string>;
  /** `webhooks.outgoing`: the app's endpoint and its Standard Webhooks secret (`whsec_...`). */
  outgoingWebhook?: { url: string; secret: string };
  policy: Partial<SyncPolicy>;
  /** Retention overrides from the file (defaults: DEFAULT_RETENTION) and the workers' pruning schedule. */
  retention?: RetentionSettings;
}

export type RetentionSettings = Partial<Retention> & { cron?: string | false };

export interface ProviderSettings {
  baseUrl: string;
  auth: ProviderAuth;
  timeoutMs?: number;
  webFormBaseUrl?: string;
  callbackUrl?: string;
  wizardBaseUrl?: string;
}

/** Validates a configuration object and reads its secrets from `env`. */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env, source = 'configuration'): BanksyncConfig {
  const parsed = ConfigFile.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new ConfigError(`${source} is invalid: ${issues.join('; ')}`, issues);
  }
  const file = parsed.data;
  const secret = (value: Secret, field: string): string => {
    const text = env[value.env];
    if (text === undefined || text === '') throw new ConfigError(`${source}: ${field} names environment variable ${value.env}, which is not set`, [field]);
    return text;
  };
  const providers: BanksyncConfig['providers'] = {};
  for (const family of PROVIDER_FAMILIES) {
    const settings = file.providers[family];
    if (settings) providers[family] = providerSettings(family, settings, secret);
  }
  const webhookSecrets: Record<string, string> = {};
  for (const [family, value] of Object.entries(file.webhooks?.secrets ?? {}) as [ProviderFamily, Secret][]) {
    webhookSecrets[family] = secret(value, `webhooks.secrets.${family}`);
  }
  const store: BanksyncConfig['store'] = !file.store
    ? undefined
    : 'sqlite' in file.store
      ? { sqlite: file.store.sqlite }
      : { postgres: { url: secret(file.store.postgres.url, 'store.postgres.url'), ...(file.store.postgres.schema ? { schema: file.store.postgres.schema } : {}) } };
  const r = file.retention;
  const retention: RetentionSettings | undefined = r && {
    ...(r.finishedSyncs !== undefined ? { finishedSyncsMs: r.finishedSyncs } : {}),
    ...(r.transitions !== undefined ? { transitionsMs: r.transitions } : {}),
    ...(r.effects !== undefined ? { effectsMs: r.effects } : {}),
    ...(r.events !== undefined ? { eventsMs: r.events } : {}),
    ...(r.batchSize !== undefined ? { batchSize: r.batchSize } : {}),
    ...(r.maxBatches !== undefined ? { maxBatches: r.maxBatches } : {}),
    ...(r.cron !== undefined ? { cron: r.cron } : {}),
  };
  let outgoingWebhook: BanksyncConfig['outgoingWebhook'];
  if (file.webhooks?.outgoing) {
    const value = secret(file.webhooks.outgoing.secret, 'webhooks.outgoing.secret');
    if (!/^whsec_[A-Za-z0-9+/]{16,}={0,2}$/.test(value)) {
      throw new ConfigError(`${source}: webhooks.outgoing.secret (${file.webhooks.outgoing.secret.env}) must be a Standard Webhooks secret: whsec_ followed by base64`, ['webhooks.outgoing.secret']);
    }
    outgoingWebhook = { url: file.webhooks.outgoing.url, secret: value };
  }
  return {
    providers,
    ...(store ? { store } : {}),
    webhookSecrets,
    ...(outgoingWebhook ? { outgoingWebhook } : {}),
    policy: { ...PRODUCTION_POLICY, ...file.policy },
    ...(retention ? { retention } : {}),
  };
}

function providerSettings(family: ProviderFamily, file: ProviderFile, secret: (value: Secret, field: string) => string): ProviderSettings {
  const at = `providers.${family}.auth`;
  const a = file.auth;
  const auth: ProviderAuth =
    a.type === 'bearer'
      ? { type: 'bearer', token: secret(a.token, `${at}.token`) }
      : a.type === 'apiKey'
        ? { type: 'apiKey', apiKey: secret(a.apiKey, `${at}.apiKey`) }
        : a.type === 'perUser'
          ? { type: 'perUser', resolve: a.resolve, ...(a.cacheKey ? { cacheKey: a.cacheKey } : {}) }
          : a.type === 'clientCredentials'
            ? { type: 'clientCredentials', tokenUrl: a.tokenUrl, clientId: a.clientId, clientSecret: secret(a.clientSecret, `${at}.clientSecret`), ...(a.scope ? { scope: a.scope } : {}) }
            : {
                type: 'password',
                tokenUrl: a.tokenUrl,
                clientId: a.clientId,
                clientSecret: secret(a.clientSecret, `${at}.clientSecret`),
                username: typeof a.username === 'string' ? a.username : secret(a.username, `${at}.username`),
                password: secret(a.password, `${at}.password`),
                ...(a.scope ? { scope: a.scope } : {}),
              };
  const { auth: _fileAuth, ...rest } = file;
  return { ...rest, auth };
}

/** Reads and validates a configuration file: JSON, or a JavaScript module whose default export is the object. */
export async function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<BanksyncConfig> {
  const file = resolve(path);
  let raw: unknown;
  if (['.js', '.mjs'].includes(extname(file))) {
    try {
      raw = ((await import(pathToFileURL(file).href)) as { default?: unknown }).default;
    } catch (error) {
      throw new ConfigError(`cannot load ${path}: ${(error as Error).message}`);
    }
  } else {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      throw new ConfigError(`cannot read configuration file ${path}`);
    }
    try {
      raw = JSON.parse(text);
    } catch {
      throw new ConfigError(`${path} is not valid JSON`);
    }
  }
  return parseConfig(raw, env, path);
}

/** One adapter per configured provider family. Auth problems surface here, before any sync starts. */
export function adaptersFromConfig(config: Pick<BanksyncConfig, 'providers'>): Record<string, ProviderAdapter> {
  const adapters: Record<string, ProviderAdapter> = {};
  for (const [family, settings] of Object.entries(config.providers) as [ProviderFamily, ProviderSettings][]) {
    try {
      adapters[family] = createAdapter(family, settings);
    } catch (error) {
      throw new ConfigError(`providers.${family}: ${(error as Error).message}`, [`providers.${family}`]);
    }
  }
  return adapters;
}

/** Every family pointed at a running sandbox with static sandbox credentials (the CLI's `--sandbox-url`). */
export function sandboxConfig(sandboxUrl: string, token = 'sandbox-token'): BanksyncConfig {
  const providers: BanksyncConfig['providers'] = {};
  for (const family of PROVIDER_FAMILIES) {
    providers[family] = {
      baseUrl: `${sandboxUrl}/${family}`,
      auth: family === 'xs2a' ? { type: 'apiKey', apiKey: token } : { type: 'bearer', token },
    };
  }
  return { providers, webhookSecrets: {}, policy: {} };
}
