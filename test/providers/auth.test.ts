/**
 * Provider authentication against the sandbox's auth, which refuses a missing, wrong or expired credential
 * the way the providers do: static tokens, OAuth2 client credentials and password grants (finAPI's
 * `/oauth/token`), per-user token resolvers, xs2a's API key as HTTP Basic. Real HTTP, simulated clocks.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine/engine.js';
import { AuthConfigError, type AuthContext, type ProviderAuth } from '../../src/providers/auth.js';
import { ProviderError } from '../../src/providers/errors.js';
import { createFinapiAdapter } from '../../src/providers/finapi/index.js';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { createWealthAdapter } from '../../src/providers/wealthapi/index.js';
import { createXs2aAdapter } from '../../src/providers/xs2a/index.js';
import { FINX_CORRECT_TAN } from '../../src/sandbox/finx.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { MemoryStore } from '../../src/stores/memory.js';

const CLIENT_SECRET = 'client-secret-3e8a-DO-NOT-LEAK';
const USER_PASSWORD = 'user-password-91bc-DO-NOT-LEAK';
const TTL_S = 600;

let clock = Date.parse('2026-03-01T10:00:00.000Z');
const now = () => clock;
let sandbox: Sandbox;

beforeAll(async () => {
  sandbox = await startSandbox({
    now,
    auth: { clients: { 'app-client': CLIENT_SECRET }, users: { 'finapi-user-1': USER_PASSWORD }, tokenTtlSeconds: TTL_S },
  });
});
afterAll(async () => sandbox?.close());

let grantsBefore: Record<string, number>;
let refusedBefore: Record<string, number>;
beforeEach(() => {
  grantsBefore = { ...sandbox.auth.grants };
  refusedBefore = { ...sandbox.auth.refused };
});
const grants = (type: string) => (sandbox.auth.grants[type] ?? 0) - (grantsBefore[type] ?? 0);
const refused = (reason: 'missing' | 'invalid' | 'expired') => sandbox.auth.refused[reason] - (refusedBefore[reason] ?? 0);

const clientCredentials = (family: string, secret = CLIENT_SECRET): ProviderAuth => ({
  type: 'clientCredentials',
  tokenUrl: `${sandbox.url}/${family}/oauth/token`,
  clientId: 'app-client',
  clientSecret: secret,
});

async function caught(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    return error as ProviderError;
  }
  throw new Error('expected the call to reject');
}

/** A finX access to sync, created with a static token (fixtures are not what is under test). */
async function finxAccess(scenario: string): Promise<string> {
  const setup = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'fixture-token' });
  return (await setup.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario })).id;
}

const trigger = (connectionId: string, tenantId = 'default') => ({
  syncId: `sync-${connectionId}`,
  tenantId,
  connectionId,
  scope: 'TRANSACTIONS' as const,
  idempotencyKey: `idem-${connectionId}-${Math.random()}`,
  since: clock,
});

describe('OAuth2 client credentials (finX, finAPI, wealthAPI token endpoints)', () => {
  it('fetches one token, reuses it for every call until shortly before it expires, then fetches a new one', async () => {
    const adapter = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, auth: clientCredentials('finx'), now });
    const accessId = await finxAccess('success');
    const { providerRef } = await adapter.trigger(trigger(accessId));
    for (let i = 0; i < 3; i++) await adapter.poll({ connectionId: accessId, providerRef });
    expect(grants('client_credentials')).toBe(1);
    // 10% of the lifetime before expiry (60 s of 600 s), the token is renewed before any request is refused.
    clock += (TTL_S - 59) * 1000;
    await adapter.poll({ connectionId: accessId, providerRef });
    expect(grants('client_credentials')).toBe(2);
    expect(refused('expired')).toBe(0);
  });

  it('an expired token is answered by 401; the client refreshes once and the read goes through', async () => {
    const adapter = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, auth: clientCredentials('finx'), now });
    const accessId = await finxAccess('success');
    const { providerRef } = await adapter.trigger(trigger(accessId));
    sandbox.auth.expireAll();
    await expect(adapter.poll({ connectionId: accessId, providerRef })).resolves.toMatchObject({ status: expect.any(String) });
    expect(refused('expired')).toBe(1);
    expect(grants('client_credentials')).toBe(2);
  });

  it('a TAN answer is sent once: a 401 on it is not retried, and the next read has a fresh token', async () => {
    const adapter = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, auth: clientCredentials('finx'), now });
    const accessId = await finxAccess('one-challenge');
    const { providerRef } = await adapter.trigger(trigger(accessId));
    let observation = await adapter.poll({ connectionId: accessId, providerRef });
    for (let i = 0; i < 20 && observation.status !== 'AWAIT_AUTH'; i++) observation = await adapter.poll({ connectionId: accessId, providerRef });
    if (observation.status !== 'AWAIT_AUTH') throw new Error('expected a challenge');
    sandbox.auth.expireAll();
    const error = await caught(adapter.answerChallenge({ connectionId: accessId, providerRef }, observation.challenge.id, FINX_CORRECT_TAN));
    expect(error).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', retryable: false, httpStatus: 401 });
    expect(refused('expired')).toBe(1);
    expect(grants('client_credentials')).toBe(1);
    // The answer never reached the provider: the challenge is still open; the next read refreshes the token.
    await expect(adapter.poll({ connectionId: accessId, providerRef })).resolves.toMatchObject({ status: 'AWAIT_AUTH' });
    expect(grants('client_credentials')).toBe(2);
  });

  it('finAPI and wealthAPI authenticate with client tokens from their token endpoint', async () => {
    const finapi = createFinapiAdapter({ baseUrl: `${sandbox.url}/finapi`, auth: clientCredentials('finapi'), now });
    const wealth = createWealthAdapter({ baseUrl: `${sandbox.url}/wealthapi`, auth: clientCredentials('wealthapi'), now });
    // Unknown ids: any answer other than 401 shows the token was accepted.
    expect((await caught(finapi.poll({ connectionId: '1', providerRef: 'task-unknown' }))).httpStatus).toBe(404);
    expect((await caught(wealth.poll({ connectionId: 'c-unknown', providerRef: 'p-unknown' }))).httpStatus).toBe(404);
    expect(grants('client_credentials')).toBe(2);
    expect(refused('missing') + refused('invalid') + refused('expired')).toBe(0);
  });

  it('a token from one family is refused by another', async () => {
    const crossed = createWealthAdapter({ baseUrl: `${sandbox.url}/wealthapi`, auth: clientCredentials('finx'), now });
    const error = await caught(crossed.poll({ connectionId: 'c', providerRef: 'p' }));
    expect(error).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', httpStatus: 401 });
    // Refused, refreshed once, refused again: exactly one retry.
    expect(refused('invalid')).toBe(2);
  });

  it('wrong client credentials: PROVIDER_UNAUTHORIZED, not retryable, the secret in no message', async () => {
    const wrong = 'wrong-secret-DO-NOT-LEAK';
    const adapter = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, auth: clientCredentials('finx', wrong), now });
    const error = await caught(adapter.poll({ connectionId: 'acc', providerRef: 'syn' }));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', retryable: false, httpStatus: 401, providerCode: 'invalid_client' });
    expect(`${error.message} ${JSON.stringify(error.toFailure())}`).not.toContain(wrong);
  });

  it('an unreachable token endpoint is transient (PROVIDER_UNAVAILABLE, retryable)', async () => {
    const adapter = createFinxAdapter({
      baseUrl: `${sandbox.url}/finx`,
      auth: { type: 'clientCredentials', tokenUrl: 'http://127.0.0.1:1/oauth/token', clientId: 'app-client', clientSecret: CLIENT_SECRET },
      now,
    });
    expect(await caught(adapter.poll({ connectionId: 'acc', providerRef: 'syn' }))).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', retryable: true });
  });

  it('refuses a token endpoint that would send the client secret in clear text (http to another host)', () => {
    expect(() =>
      createFinxAdapter({ baseUrl: 'https://finx.example', auth: { type: 'clientCredentials', tokenUrl: 'http://auth.example/oauth/token', clientId: 'c', clientSecret: 's' } }),
    ).toThrow(AuthConfigError);
    expect(() => createXs2aAdapter({ baseUrl: 'https://xs2a.example', auth: clientCredentials('xs2a') })).toThrow(/not supported/);
    expect(() => createFinxAdapter({ baseUrl: 'https://finx.example' })).toThrow(/auth/);
  });
});

describe('OAuth2 password grant (a finAPI user token)', () => {
  it('logs the user in once, renews an expired token with the refresh token, never with the password again', async () => {
    const adapter = createFinapiAdapter({
      baseUrl: `${sandbox.url}/finapi`,
      auth: { type: 'password', tokenUrl: `${sandbox.url}/finapi/oauth/token`, clientId: 'app-client', clientSecret: CLIENT_SECRET, username: 'finapi-user-1', password: USER_PASSWORD },
      now,
    });
    expect((await caught(adapter.poll({ connectionId: '1', providerRef: 'task-unknown' }))).httpStatus).toBe(404);
    sandbox.auth.expireAll();
    expect((await caught(adapter.poll({ connectionId: '1', providerRef: 'task-unknown' }))).httpStatus).toBe(404);
    expect(grants('password')).toBe(1);
    expect(grants('refresh_token')).toBe(1);
    expect(refused('expired')).toBe(1);
  });

  it('a wrong user password is PROVIDER_UNAUTHORIZED and never in a message', async () => {
    const wrong = 'wrong-user-password-DO-NOT-LEAK';
    const adapter = createFinapiAdapter({
      baseUrl: `${sandbox.url}/finapi`,
      auth: { type: 'password', tokenUrl: `${sandbox.url}/finapi/oauth/token`, clientId: 'app-client', clientSecret: CLIENT_SECRET, username: 'finapi-user-1', password: wrong },
      now,
    });
    const error = await caught(adapter.poll({ connectionId: '1', providerRef: 'task-unknown' }));
    expect(error).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', retryable: false, providerCode: 'invalid_grant' });
    expect(`${error.message} ${JSON.stringify(error.toFailure())}`).not.toContain(wrong);
  });
});

describe('per-user token resolver', () => {
  it('the engine passes tenant and connection; tokens are cached per connection until they expire', async () => {
    const asked: AuthContext[] = [];
    const issued = new Map<string, string>();
    const tokenFor = async (context: AuthContext) => {
      asked.push(context);
      // The app's own lookup; here: a client token per user from the sandbox, valid 10 minutes.
      const response = await fetch(`${sandbox.url}/finx/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'app-client', client_secret: CLIENT_SECRET }),
      });
      const token = ((await response.json()) as { access_token: string }).access_token;
      issued.set(context.connectionId, token);
      return { accessToken: token, expiresAt: clock + TTL_S * 1000 };
    };
    const store = new MemoryStore();
    const engine = createEngine({
      store,
      providers: { finx: createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, auth: { type: 'perUser', resolve: tokenFor }, now }) },
      policy: { pollBaseMs: 10, pollMaxMs: 20, authPollMs: 20 },
    });
    await engine.start();
    const [a, b] = [await finxAccess('success'), await finxAccess('success')];
    const syncs = [
      await engine.requestSync({ tenantId: 'tenant-a', connectionId: a, provider: 'finx' }),
      await engine.requestSync({ tenantId: 'tenant-b', connectionId: b, provider: 'finx' }),
    ];
    const finals = await Promise.all(syncs.map((s) => engine.waitForTerminal(s.syncId, { tenantId: s.tenantId })));
    expect(finals.map((f) => f.status)).toEqual(['COMPLETED', 'COMPLETED']);
    // One resolver call per connection, with the sync's own tenant, although each sync made several calls.
    expect(asked.sort((x, y) => x.tenantId.localeCompare(y.tenantId))).toEqual([
      { tenantId: 'tenant-a', connectionId: a },
      { tenantId: 'tenant-b', connectionId: b },
    ]);
    // Tokens never reach what the engine stores.
    const stored = JSON.stringify([await store.listSyncs({}), ...(await Promise.all(syncs.map((s) => store.listTransitions(s.syncId))))]);
    for (const token of issued.values()) expect(stored).not.toContain(token);
    await engine.stop();
  });

  it('a resolver that returns nothing is PROVIDER_UNAUTHORIZED, not a request without credentials', async () => {
    const adapter = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, auth: { type: 'perUser', resolve: () => '' }, now });
    expect(await caught(adapter.poll({ connectionId: 'acc', providerRef: 'syn' }))).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED', retryable: false });
    expect(refused('missing')).toBe(0);
  });
});

describe('xs2a.api API key (HTTP Basic, user api)', () => {
  it('is accepted as the SDKs send it; a wrong scheme is refused', async () => {
    const adapter = createXs2aAdapter({ baseUrl: `${sandbox.url}/xs2a`, auth: { type: 'apiKey', apiKey: 'xs2a-key' }, now });
    expect((await caught(adapter.poll({ connectionId: 'bc_unknown', providerRef: 'bc_unknown:1' }))).httpStatus).toBe(404);
    const bearer = createXs2aAdapter({ baseUrl: `${sandbox.url}/xs2a`, auth: { type: 'bearer', token: 'xs2a-key' }, now });
    expect(await caught(bearer.poll({ connectionId: 'bc_unknown', providerRef: 'bc_unknown:1' }))).toMatchObject({ code: 'PROVIDER_UNAUTHORIZED' });
  });
});
