/** banksync.config.json: validation naming the field, secrets only from the environment, adapters from it. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adaptersFromConfig, ConfigError, loadConfig, parseConfig, PRODUCTION_POLICY } from '../../src/config/index.js';

const env = { FINAPI_SECRET: 'finapi-client-secret-DO-NOT-LEAK', FINAPI_USER_PASSWORD: 'pw', XS2A_KEY: 'xs2a-key', FINX_TOKEN: 'finx-token', HOOK: 'hook-secret', PG: 'postgres://u:p@db/x' };

const full = {
  providers: {
    finapi: {
      baseUrl: 'https://sandbox.finapi.io',
      webFormBaseUrl: 'https://webform-sandbox.finapi.io',
      callbackUrl: 'https://app.example/webhooks/finapi',
      auth: { type: 'password', tokenUrl: 'https://sandbox.finapi.io/oauth/token', clientId: 'client', clientSecret: { env: 'FINAPI_SECRET' }, username: 'user-1', password: { env: 'FINAPI_USER_PASSWORD' } },
    },
    xs2a: { baseUrl: 'https://api.xs2a.com', auth: { type: 'apiKey', apiKey: { env: 'XS2A_KEY' } } },
    finx: { baseUrl: 'https://api.finx.example/v2-root', auth: { type: 'bearer', token: { env: 'FINX_TOKEN' } }, timeoutMs: 15_000 },
  },
  store: { postgres: { url: { env: 'PG' }, schema: 'banksync' } },
  webhooks: { secrets: { finx: { env: 'HOOK' } } },
  policy: { pollBaseMs: 10_000 },
};

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig', () => {
  it('reads every secret from the environment and keeps production timings unless overridden', () => {
    const config = parseConfig(full, env);
    expect(config.providers.finapi?.auth).toMatchObject({ type: 'password', clientSecret: env.FINAPI_SECRET, password: 'pw', username: 'user-1' });
    expect(config.providers.xs2a?.auth).toEqual({ type: 'apiKey', apiKey: 'xs2a-key' });
    expect(config.store).toEqual({ postgres: { url: env.PG, schema: 'banksync' } });
    expect(config.webhookSecrets).toEqual({ finx: 'hook-secret' });
    expect(config.policy).toEqual({ ...PRODUCTION_POLICY, pollBaseMs: 10_000 });
    // Production polls never start below a second (the demo's 40 ms stay in the demo).
    expect(PRODUCTION_POLICY.pollBaseMs).toBeGreaterThanOrEqual(1_000);
  });

  it.each([
    ['a literal secret', { providers: { finx: { baseUrl: 'https://x.example', auth: { type: 'bearer', token: 'literal-token' } } } }, 'providers.finx.auth.token'],
    ['a misspelt family', { providers: { finapy: { baseUrl: 'https://x.example', auth: { type: 'bearer', token: { env: 'FINX_TOKEN' } } } } }, 'providers'],
    ['an unknown option', { providers: { finx: { baseUrl: 'https://x.example', pollMs: 5, auth: { type: 'bearer', token: { env: 'FINX_TOKEN' } } } } }, 'providers.finx'],
    ['a relative base URL', { providers: { finx: { baseUrl: '/finx', auth: { type: 'bearer', token: { env: 'FINX_TOKEN' } } } } }, 'providers.finx.baseUrl'],
    ['an http callback URL', { providers: { finapi: { ...full.providers.finapi, callbackUrl: 'http://app.example/cb' } } }, 'providers.finapi.callbackUrl'],
    ['a per-user resolver in JSON', { providers: { finapi: { baseUrl: 'https://x.example', auth: { type: 'perUser', resolve: 'tokens.js' } } } }, 'providers.finapi.auth.resolve'],
    ['an unknown auth type', { providers: { finx: { baseUrl: 'https://x.example', auth: { type: 'oauth' } } } }, 'providers.finx.auth.type'],
    ['a negative timing', { providers: {}, policy: { pollBaseMs: -1 } }, 'policy.pollBaseMs'],
  ])('rejects %s, naming the field', (_what, raw, field) => {
    const error = configError(() => parseConfig(raw, env, 'banksync.config.json'));
    expect(error.code).toBe('INVALID_CONFIG');
    expect(error.message).toContain(field);
  });

  it('names the field and the variable when a secret is not set, never a value', () => {
    const error = configError(() => parseConfig(full, { ...env, FINAPI_SECRET: undefined }));
    expect(error.message).toContain('providers.finapi.auth.clientSecret');
    expect(error.message).toContain('FINAPI_SECRET');
    for (const value of Object.values(env)) expect(error.message).not.toContain(value);
  });
});

describe('retention', () => {
  it('reads durations ("90d", "36h", ISO 8601), batch size and the workers\' cron; absent means the defaults', () => {
    expect(parseConfig(full, env).retention).toBeUndefined();
    const config = parseConfig({ ...full, retention: { finishedSyncs: '30d', transitions: 'PT36H', effects: '36h', events: 'P1M', batchSize: 200, cron: false } }, env);
    expect(config.retention).toEqual({ finishedSyncsMs: 30 * 86_400_000, transitionsMs: 36 * 3_600_000, effectsMs: 36 * 3_600_000, eventsMs: 30 * 86_400_000, batchSize: 200, cron: false });
  });

  it.each([
    [{ finishedSyncs: '30m' }, 'retention.finishedSyncs'],
    [{ transitions: 'PT10M' }, 'retention.transitions'],
    [{ effects: 90 }, 'retention.effects'],
    [{ batchSize: 0 }, 'retention.batchSize'],
    [{ batchSize: 1_000_000 }, 'retention.batchSize'],
    [{ cron: 'hourly' }, 'retention.cron'],
    [{ keepForever: true }, 'retention'],
  ])('rejects %j naming %s', (retention, field) => {
    expect(configError(() => parseConfig({ ...full, retention }, env)).issues.join(' ')).toContain(field);
  });
});

describe('webhooks.outgoing', () => {
  const withOutgoing = (outgoing: unknown) => ({ providers: {}, webhooks: { outgoing } });
  const hookEnv = { APP_HOOK: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' };

  it('reads the endpoint and its Standard Webhooks secret from the environment', () => {
    expect(parseConfig(withOutgoing({ url: 'https://app.example/banksync', secret: { env: 'APP_HOOK' } }), hookEnv).outgoingWebhook).toEqual({
      url: 'https://app.example/banksync',
      secret: hookEnv.APP_HOOK,
    });
    expect(parseConfig({ providers: {} }, hookEnv).outgoingWebhook).toBeUndefined();
  });

  it.each([
    ['a literal secret', { url: 'https://app.example/h', secret: 'whsec_abc' }, 'webhooks.outgoing.secret'],
    ['a relative URL', { url: '/h', secret: { env: 'APP_HOOK' } }, 'webhooks.outgoing.url'],
    ['a secret that is not whsec_ base64', { url: 'https://app.example/h', secret: { env: 'BAD_HOOK' } }, 'webhooks.outgoing.secret'],
  ])('rejects %s, naming the field and never the value', (_what, outgoing, field) => {
    const error = configError(() => parseConfig(withOutgoing(outgoing), { ...hookEnv, BAD_HOOK: 'plain-text-secret-value' }));
    expect(error.message).toContain(field);
    expect(error.message).not.toContain('plain-text-secret-value');
  });
});

describe('loadConfig and adaptersFromConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'banksync-config-'));

  it('loads JSON and builds one adapter per configured family', async () => {
    const file = join(dir, 'banksync.config.json');
    writeFileSync(file, JSON.stringify(full));
    const adapters = adaptersFromConfig(await loadConfig(file, env));
    expect(Object.keys(adapters).sort()).toEqual(['finapi', 'finx', 'xs2a']);
  });

  it('loads a JavaScript config whose per-user resolver is a function', async () => {
    const file = join(dir, 'banksync.config.mjs');
    writeFileSync(
      file,
      `export default { providers: { finapi: { baseUrl: 'https://sandbox.finapi.io', auth: { type: 'perUser', resolve: ({ tenantId }) => 'token-' + tenantId } } } };\n`,
    );
    const config = await loadConfig(file, env);
    expect(config.providers.finapi?.auth.type).toBe('perUser');
    expect(Object.keys(adaptersFromConfig(config))).toEqual(['finapi']);
  });

  it('a file that is not JSON, or missing, is a ConfigError', async () => {
    const file = join(dir, 'broken.json');
    writeFileSync(file, '{ "providers": ');
    await expect(loadConfig(file, env)).rejects.toBeInstanceOf(ConfigError);
    await expect(loadConfig(join(dir, 'missing.json'), env)).rejects.toThrow(/cannot read/);
  });

  it('an auth the provider does not take is a ConfigError naming the provider', () => {
    const config = parseConfig({ providers: { xs2a: { baseUrl: 'https://api.xs2a.com', auth: { type: 'clientCredentials', tokenUrl: 'https://a.example/token', clientId: 'c', clientSecret: { env: 'FINX_TOKEN' } } } } }, env);
    const error = configError(() => adaptersFromConfig(config));
    expect(error.message).toMatch(/providers\.xs2a: .*clientCredentials.*not supported/);
  });
});
