import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createEngine } from '../../src/engine/engine.js';
import { BanksyncError } from '../../src/engine/errors.js';
import { ProviderError } from '../../src/providers/errors.js';
import { MemoryStore } from '../../src/stores/memory.js';
import type { Observation } from '../../machines/canonical.js';
import { completed, FakeAdapter, settle, type FakeAdapterScript } from '../support/fake-adapter.js';

const DAY = 24 * 60 * 60_000;
const policy = { pollBaseMs: 1_000, retryBaseMs: 1_000, maxTriggerAttempts: 1 };

function setup(script: FakeAdapterScript, store = new MemoryStore(), clock = new SimulatedClock()) {
  clock.set(100 * DAY);
  const adapter = new FakeAdapter('fake', script);
  const engine = createEngine({ store, providers: { fake: adapter }, clock, policy });
  const finish = async (connectionId: string, unattended = false) => {
    const sync = await engine.requestSync({ connectionId, provider: 'fake', unattended });
    await settle();
    clock.increment(1_000);
    await settle();
    return engine.get(sync.syncId);
  };
  return { adapter, engine, store, clock, finish };
}

async function refusal(promise: Promise<unknown>): Promise<string | undefined> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(BanksyncError);
  expect((error as BanksyncError).code).toBe('SYNC_REFUSED');
  return (error as BanksyncError).issues[0];
}

const failed = (code: 'BANK_REJECTED' | 'INVALID_CREDENTIALS', retryable: boolean): Observation => ({
  status: 'FAILED',
  error: { code, retryable, userActionRequired: !retryable, message: code },
});

describe('connection machine in the engine', () => {
  it('stops autosync after 3 bank rejections in a row without calling the provider; a person can still sync', async () => {
    const { engine, adapter, finish, clock } = setup({ poll: [failed('BANK_REJECTED', true), failed('BANK_REJECTED', true), failed('BANK_REJECTED', true), completed] });
    await engine.registerConnection({ connectionId: 'c', provider: 'fake', storedCredentials: true, consentGrantedAt: clock.now() });
    for (let i = 0; i < 3; i++) expect((await finish('c')).status).toBe('FAILED');
    expect(await engine.getConnection('c')).toMatchObject({ state: 'NEEDS_USER', needsUser: { reason: 'FAILURE_LIMIT' }, autosyncRefusal: 'USER_REQUIRED' });
    const triggers = adapter.calls.trigger;
    expect(await refusal(engine.requestSync({ connectionId: 'c', provider: 'fake', unattended: true }))).toBe('USER_REQUIRED');
    expect(adapter.calls.trigger).toBe(triggers);
    expect((await finish('c', false)).status).toBe('COMPLETED');
    expect((await engine.getConnection('c')).state).toBe('IDLE');
  });

  it('a provider-disabled connection refuses every sync until recreated', async () => {
    const disabled: Observation = { status: 'FAILED', error: { code: 'CONNECTION_DISABLED', retryable: false, userActionRequired: true, message: 'disabled' } };
    const { engine, adapter, finish } = setup({ poll: [disabled] });
    expect((await finish('c')).status).toBe('FAILED');
    expect((await engine.getConnection('c')).state).toBe('DISABLED');
    const triggers = adapter.calls.trigger;
    expect(await refusal(engine.requestSync({ connectionId: 'c', provider: 'fake' }))).toBe('CONNECTION_DISABLED');
    expect(adapter.calls.trigger).toBe(triggers);
    expect((await engine.recreateConnection('c')).state).toBe('IDLE');
  });

  it('preflight refusals (nothing sent to the bank) never trip the breaker', async () => {
    const nothingToDo = new ProviderError('manualSyncRequired is false', { code: 'PREFLIGHT_REFUSED', retryable: false });
    const { engine, finish } = setup({ trigger: [nothingToDo] });
    for (let i = 0; i < 4; i++) expect((await finish('c')).error?.code).toBe('PREFLIGHT_REFUSED');
    expect(await engine.getConnection('c')).toMatchObject({ state: 'IDLE', consecutiveFailures: 0, needsUser: null });
  });

  it('a success in between resets the failure count', async () => {
    const { engine, finish } = setup({ poll: [failed('BANK_REJECTED', true), failed('BANK_REJECTED', true), completed, failed('BANK_REJECTED', true), failed('BANK_REJECTED', true)] });
    // each failure here is counted (a bank rejection); two in a row stay below the stop
    for (let i = 0; i < 5; i++) await finish('c');
    const connection = await engine.getConnection('c');
    expect(connection.state).toBe('IDLE');
    expect(connection.consecutiveFailures).toBe(2);
  });

  it('after a credential failure, background syncs are refused until the user is present', async () => {
    const { engine, adapter, finish } = setup({ poll: [failed('INVALID_CREDENTIALS', false), completed] });
    await engine.registerConnection({ connectionId: 'c', provider: 'fake', storedCredentials: true, consentGrantedAt: 99 * DAY });
    expect((await finish('c', true)).error?.code).toBe('INVALID_CREDENTIALS');
    const connection = await engine.getConnection('c');
    expect(connection).toMatchObject({ state: 'NEEDS_USER', needsUser: { reason: 'CREDENTIALS' }, autosyncRefusal: 'USER_REQUIRED' });
    expect(await refusal(engine.requestSync({ connectionId: 'c', provider: 'fake', unattended: true }))).toBe('USER_REQUIRED');
    expect(adapter.calls.trigger).toBe(1);
    expect((await finish('c', false)).status).toBe('COMPLETED');
    expect((await engine.getConnection('c')).state).toBe('IDLE');
  });

  it('allows autosync only with stored credentials, consent under 90 days and no web scraping', async () => {
    const { engine, clock } = setup({ trigger: ['hang'] });
    const now = clock.now();
    const cases: [Parameters<typeof engine.registerConnection>[0], string | null][] = [
      [{ connectionId: 'no-creds', provider: 'fake', storedCredentials: false, consentGrantedAt: now - DAY }, 'NO_STORED_CREDENTIALS'],
      [{ connectionId: 'old-consent', provider: 'fake', storedCredentials: true, consentGrantedAt: now - 90 * DAY }, 'CONSENT_EXPIRED'],
      [{ connectionId: 'no-consent', provider: 'fake', storedCredentials: true }, 'CONSENT_EXPIRED'],
      [{ connectionId: 'scraping', provider: 'fake', storedCredentials: true, hasWebScraping: true, consentGrantedAt: now - DAY }, 'WEB_SCRAPING_INTERFACE'],
      [{ connectionId: 'eligible', provider: 'fake', storedCredentials: true, consentGrantedAt: new Date(now - 89 * DAY).toISOString() }, null],
    ];
    for (const [settings, expected] of cases) {
      expect((await engine.registerConnection(settings)).autosyncRefusal, settings.connectionId).toBe(expected);
      const request = engine.requestSync({ connectionId: settings.connectionId, provider: 'fake', unattended: true });
      if (expected) expect(await refusal(request)).toBe(expected);
      else expect((await request).status).toBe('QUEUED');
    }
  });

  it('never starts more than 4 unattended syncs of a connection in 24 hours', async () => {
    const { engine, clock, finish } = setup({ poll: [completed] });
    await engine.registerConnection({ connectionId: 'c', provider: 'fake', storedCredentials: true, consentGrantedAt: clock.now() });
    for (let i = 0; i < 4; i++) {
      expect((await finish('c', true)).status).toBe('COMPLETED');
      clock.increment(60 * 60_000);
    }
    expect(await refusal(engine.requestSync({ connectionId: 'c', provider: 'fake', unattended: true }))).toBe('UNATTENDED_LIMIT');
    // The user being present is not limited, and once the window has passed autosync may run again.
    expect((await finish('c', false)).status).toBe('COMPLETED');
    clock.increment(DAY);
    expect((await finish('c', true)).status).toBe('COMPLETED');
  });

  it('remaps accounts on an access upgrade; the old access stays live for the account it kept, without waiting for the user', async () => {
    const upgrade: Observation = {
      status: 'FAILED',
      error: {
        code: 'ACCESS_UPGRADE',
        retryable: false,
        userActionRequired: true,
        message: 'multi-access upgrade',
        providerCode: '40002',
        upgrade: {
          kind: 'MULTI_ACCESS',
          newAccessMethodId: 'PSD2_API',
          accounts: [
            { accountId: 'giro', accessId: 'access-new', supported: true },
            { accountId: 'savings', accessId: 'c', supported: true },
          ],
        },
      },
    };
    const { engine, finish } = setup({ poll: [upgrade] });
    await finish('c');
    const connection = await engine.getConnection('c');
    expect(connection).toMatchObject({
      state: 'IDLE',
      needsUser: null,
      retired: false,
      accessMethodId: 'PSD2_API',
      accounts: { giro: { accessId: 'access-new', supported: true }, savings: { accessId: 'c', supported: true } },
      linkedAccessIds: ['access-new'],
    });
    // no stored credentials were registered: autosync is refused for that, not because a user is needed
    expect(await refusal(engine.requestSync({ connectionId: 'c', provider: 'fake', unattended: true }))).toBe('NO_STORED_CREDENTIALS');
  });

  it('settles a lock left behind by a crash between the sync commit and the connection update', async () => {
    const store = new MemoryStore();
    const first = setup({ poll: [completed] }, store);
    const done = await first.finish('c');
    const connection = await store.getConnection('default', 'c');
    // Roll the connection back to "still syncing that sync", as if the process died before updating it.
    await store.saveConnection({ ...connection!, state: 'SYNCING', context: { ...(connection!.context as object), activeSyncId: done.syncId } }, connection!.version);
    const second = setup({ poll: [completed] }, store);
    await second.engine.start();
    expect((await second.engine.getConnection('c')).state).toBe('IDLE');
  });

  it('a transient failure does not need the user and is not counted: the connection cools down, then may autosync', async () => {
    const unavailable = new ProviderError('503', { code: 'PROVIDER_UNAVAILABLE', retryable: true });
    const { engine, finish, clock } = setup({ trigger: [unavailable] });
    await engine.registerConnection({ connectionId: 'c', provider: 'fake', storedCredentials: true, consentGrantedAt: clock.now() });
    expect((await finish('c', true)).error?.code).toBe('PROVIDER_UNAVAILABLE');
    const cooling = await engine.getConnection('c');
    expect(cooling).toMatchObject({ state: 'IDLE', consecutiveFailures: 0, autosyncRefusal: 'COOLING_DOWN' });
    expect(cooling.nextAttemptAt).toBeGreaterThan(clock.now());
    clock.set(cooling.nextAttemptAt!);
    expect((await engine.getConnection('c')).autosyncRefusal).toBeNull();
  });
});
