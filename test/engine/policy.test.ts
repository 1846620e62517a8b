/**
 * Issue #13, sync policy, end to end through the engine on a simulated clock (hours and days in microseconds):
 * breaker, request validation, long user waits, unattended SCA, budgets and Retry-After, access upgrades,
 * calendar consent terms. Every test here failed before the change it names.
 */
import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import type { Challenge, Observation, SyncError } from '../../machines/canonical.js';
import { AutosyncScheduler } from '../../src/engine/autosync.js';
import { createEngine, type EngineOptions } from '../../src/engine/engine.js';
import { BanksyncError } from '../../src/engine/errors.js';
import { ProviderError, ProviderInputError } from '../../src/providers/errors.js';
import { createFinapiAdapter } from '../../src/providers/finapi/index.js';
import type { ConsentTerm, SyncRequestInput } from '../../src/providers/types.js';
import { todayOf } from '../../src/providers/xs2a/mapping.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { completed, FakeAdapter, settle, type FakeAdapterScript } from '../support/fake-adapter.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const T0 = Date.parse('2026-03-02T08:00:00.000Z');

/** A provider double with the adapter's policy hooks. */
class PolicyAdapter extends FakeAdapter {
  failureLimit?: number;
  consentTerm?: ConsentTerm;
  validateRequest?: (request: SyncRequestInput) => void;
}

function setup(script: FakeAdapterScript, hooks: Partial<Pick<PolicyAdapter, 'failureLimit' | 'consentTerm' | 'validateRequest'>> = {}, options: Partial<EngineOptions> = {}) {
  const clock = new SimulatedClock();
  clock.set(T0);
  const store = new MemoryStore();
  const adapter = Object.assign(new PolicyAdapter('fake', script), hooks);
  const engine = createEngine({ store, providers: { fake: adapter }, clock, policy: { pollBaseMs: 1_000, maxTriggerAttempts: 1, jitterRatio: 0 }, ...options });
  /** Moves the simulated clock in steps, letting effects and commits run in between. */
  const advance = async (ms: number, stepMs = ms) => {
    for (let left = ms; left > 0; left -= stepMs) {
      clock.increment(Math.min(stepMs, left));
      await settle();
    }
  };
  const finish = async (connectionId: string, unattended = false) => {
    const sync = await engine.requestSync({ connectionId, provider: 'fake', unattended });
    await settle();
    await advance(1_000);
    return engine.get(sync.syncId);
  };
  const eligible = (connectionId = 'c') => engine.registerConnection({ connectionId, provider: 'fake', storedCredentials: true, consentGrantedAt: clock.now() });
  return { clock, store, adapter, engine, advance, finish, eligible };
}

async function rejection(promise: Promise<unknown>): Promise<BanksyncError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(BanksyncError);
  return error as BanksyncError;
}

const failedWith = (code: SyncError['code'], extra: Partial<SyncError> = {}): Observation => ({
  status: 'FAILED',
  error: { code, retryable: code === 'PROVIDER_UNAVAILABLE', userActionRequired: code !== 'PROVIDER_UNAVAILABLE', message: code, ...extra },
});

describe('#13.1 breaker', () => {
  it('three provider outages in a row leave the connection IDLE (cooling down), not DISABLED; attended syncs still run', async () => {
    const outage = new ProviderError('503', { code: 'PROVIDER_UNAVAILABLE', retryable: true });
    const { engine, finish, eligible } = setup({ trigger: [outage, outage, outage, { providerRef: 'r', observation: completed }] });
    await eligible();
    for (let i = 0; i < 3; i++) expect((await finish('c')).error?.code).toBe('PROVIDER_UNAVAILABLE');
    const connection = await engine.getConnection('c');
    expect(connection).toMatchObject({ state: 'IDLE', consecutiveFailures: 0, transientFailures: 3, autosyncRefusal: 'COOLING_DOWN' });
    expect((await finish('c')).status).toBe('COMPLETED');
  });

  it('a provider that disables at 3 (xs2a) is stopped at its counter 2, before it disables; the person can still sync', async () => {
    const { engine, finish, eligible } = setup(
      { poll: [failedWith('BANK_REJECTED', { failureCount: 1 }), failedWith('BANK_REJECTED', { failureCount: 2 }), completed] },
      { failureLimit: 3 },
    );
    await eligible();
    const stops: string[] = [];
    engine.events.on('connection.needsUser', (view) => stops.push(view.needsUser!.reason));
    await finish('c');
    await finish('c');
    const connection = await engine.getConnection('c');
    expect(connection).toMatchObject({ state: 'NEEDS_USER', consecutiveFailures: 2, needsUser: { reason: 'FAILURE_LIMIT' }, autosyncRefusal: 'USER_REQUIRED' });
    expect(stops).toEqual(['PROVIDER', 'FAILURE_LIMIT']);
    expect((await rejection(engine.requestSync({ connectionId: 'c', provider: 'fake', unattended: true }))).issues).toEqual(['USER_REQUIRED']);
    expect((await finish('c')).status).toBe('COMPLETED');
  });
});

describe('#13.2 request validation before anything is created', () => {
  const finapi = () => createFinapiAdapter({ baseUrl: 'https://finapi.invalid', token: 'unused' });

  it.each([
    ['a non-integer finAPI id', { connectionId: '12.5' }],
    ['an http:// callback URL', { connectionId: '12', options: { callbacks: { finalised: 'http://example.com/hook' } } }],
    ['a misspelt option', { connectionId: '12', options: { importNewAcounts: true } }],
  ])('finAPI: %s is INVALID_REQUEST, with no sync and no connection', async (_label, request) => {
    const store = new MemoryStore();
    const engine = createEngine({ store, providers: { finapi: finapi() } });
    const error = await rejection(engine.requestSync({ provider: 'finapi', ...request }));
    expect(error.code).toBe('INVALID_REQUEST');
    expect(await store.listSyncs({})).toEqual([]);
    expect(await store.listConnections()).toEqual([]);
  });

  it('a valid finAPI request passes validation', () => {
    expect(() => finapi().validateRequest!({ connectionId: '12', scope: 'TRANSACTIONS', options: { importNewAccounts: true, manageSavedSettings: ['CREDENTIALS'] } })).not.toThrow();
  });

  it('an adapter refusal is never counted against the connection', async () => {
    const { engine, store } = setup({}, {
      validateRequest: () => {
        throw new ProviderInputError('fake', 'bad id', ['connectionId: bad']);
      },
    });
    for (let i = 0; i < 3; i++) expect((await rejection(engine.requestSync({ connectionId: 'c', provider: 'fake' }))).issues).toEqual(['connectionId: bad']);
    expect(await store.getConnection('default', 'c')).toBeNull();
  });
});

describe('#13.3 long user waits', () => {
  it('a REDIRECT challenge with a 4 h provider deadline, finished by the user at +2 h, completes (no TIMEOUT at +60 min)', async () => {
    let userDoneAt = Number.POSITIVE_INFINITY;
    const challenge = (now: number): Challenge => ({ id: 'consent-1', kind: 'REDIRECT', expiresAt: new Date(now + 4 * HOUR).toISOString(), redirectUrl: 'https://bank.example/consent' });
    const { clock, engine, advance } = setup({
      trigger: [{ providerRef: 'r', observation: { status: 'AWAIT_AUTH', challenge: challenge(T0) } }],
      poll: [async () => (clock.now() >= userDoneAt ? completed : { status: 'AWAIT_AUTH', challenge: challenge(T0) })],
    });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    await advance(2 * HOUR, 5 * MINUTE);
    expect((await engine.get(sync.syncId)).status).toBe('AWAIT_AUTH');
    userDoneAt = clock.now();
    await advance(10 * MINUTE, 5 * MINUTE);
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
  });

  it('cancel works while the user is waited for, hours in', async () => {
    const challenge: Challenge = { id: 'consent-1', kind: 'REDIRECT', expiresAt: new Date(T0 + 4 * HOUR).toISOString() };
    const waiting: Observation = { status: 'AWAIT_AUTH', challenge };
    const { engine, advance } = setup({ trigger: [{ providerRef: 'r', observation: waiting }], poll: [waiting] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    await advance(3 * HOUR, 10 * MINUTE);
    expect((await engine.cancel(sync.syncId)).error?.code).toBe('CANCELLED');
  });
});

describe('#13.4 unattended syncs that meet SCA', () => {
  it('stop at once with NEEDS_USER, the connection needs the user, and the app is told', async () => {
    const tan: Observation = { status: 'AWAIT_AUTH', challenge: { id: 'tan-1', kind: 'EMBEDDED', expiresAt: new Date(T0 + HOUR).toISOString() } };
    const { engine, adapter, eligible } = setup({ trigger: [{ providerRef: 'r', observation: tan }] });
    await eligible();
    const told: string[] = [];
    engine.events.on('connection.needsUser', (view) => told.push(`${view.connectionId}:${view.needsUser?.reason}`));
    const awaiting: string[] = [];
    engine.events.on('sync.awaitingUser', (view) => awaiting.push(view.syncId));
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake', unattended: true });
    await settle();
    expect(await engine.get(sync.syncId)).toMatchObject({ status: 'FAILED', error: { code: 'NEEDS_USER', userActionRequired: true }, challenge: null });
    expect(await engine.getConnection('c')).toMatchObject({ state: 'NEEDS_USER', needsUser: { reason: 'SCA' }, autosyncRefusal: 'USER_REQUIRED' });
    expect(told).toEqual(['c:SCA']);
    expect(awaiting).toEqual([]);
    expect(adapter.calls.poll).toBe(0);
  });
});

describe('#13.5 budgets and Retry-After schedule instead of refusing', () => {
  it('the fifth unattended sync in 24 h is refused with the absolute time it may run; autosync runs it then', async () => {
    const { clock, engine, store, finish, eligible } = setup({ poll: [completed] });
    await eligible();
    const first = clock.now();
    for (let i = 0; i < 4; i++) {
      expect((await finish('c', true)).status).toBe('COMPLETED');
      clock.increment(HOUR);
    }
    const refused = await rejection(engine.requestSync({ connectionId: 'c', provider: 'fake', unattended: true }));
    expect(refused.issues).toEqual(['UNATTENDED_LIMIT']);
    expect(refused.nextAttemptAt).toBeGreaterThanOrEqual(first + DAY);
    expect(refused.nextAttemptAt).toBeLessThan(first + DAY + 2_000);
    expect((await engine.getConnection('c')).nextAttemptAt).toBe(refused.nextAttemptAt);
    // The scheduler waits for that time, then starts it (no refusal counted in between).
    const scheduler = new AutosyncScheduler(engine, store);
    const report = await scheduler.tick(clock.now());
    expect(report.refused).toEqual({});
    clock.set(refused.nextAttemptAt!);
    expect((await engine.getConnection('c')).nextAttemptAt).toBeNull();
  });

  it('Retry-After: 3600 is honoured: no retry at +60 s or +120 s; the sync and the connection carry nextAttemptAt; autosync retries at +1 h', async () => {
    const limited = new ProviderError('429', { code: 'RATE_LIMITED', retryable: true, retryAfterMs: HOUR });
    const { clock, engine, adapter, store, advance, eligible } = setup({ trigger: [limited, { providerRef: 'r2', observation: completed }] }, {}, { policy: { maxTriggerAttempts: 5, jitterRatio: 0 } });
    await eligible();
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake', unattended: true });
    await settle();
    const failedAt = clock.now();
    await advance(3 * MINUTE, 30_000);
    expect(adapter.calls.trigger).toBe(1);
    const view = await engine.get(sync.syncId);
    expect(view).toMatchObject({ status: 'FAILED', error: { code: 'RATE_LIMITED', retryAfterMs: HOUR }, nextAttemptAt: failedAt + HOUR });
    expect((await engine.getConnection('c')).nextAttemptAt).toBe(failedAt + HOUR);
    const scheduler = new AutosyncScheduler(engine, store);
    expect((await scheduler.tick(clock.now())).started).toBe(0);
    clock.set(failedAt + HOUR);
    expect((await scheduler.tick(clock.now())).started).toBe(1);
    await settle();
    expect(adapter.calls.trigger).toBe(2);
  });

  it('the Retry-After honoured is bounded by the configured ceiling', async () => {
    const limited = new ProviderError('429', { code: 'RATE_LIMITED', retryable: true, retryAfterMs: 7 * DAY });
    const { clock, engine, finish, eligible } = setup({ trigger: [limited] }, {}, { cooldownCeilingMs: DAY });
    await eligible();
    await finish('c', true);
    expect((await engine.getConnection('c')).nextAttemptAt).toBe(clock.now() + DAY - 1_000);
  });
});

/** finX 40002: the accounts moved to new accesses (accountId -> accessId). */
function multiAccessUpgrade(accounts: { accountId: string; accessId: string; supported: boolean }[]): Observation {
  return {
    status: 'FAILED',
    error: {
      code: 'ACCESS_UPGRADE',
      retryable: false,
      userActionRequired: true,
      message: 'multi-access upgrade',
      providerCode: '40002',
      upgrade: { kind: 'MULTI_ACCESS', newAccessMethodId: 'PSD2_API', accounts },
    },
  };
}

describe('#13.6 access upgrades', () => {
  it('new accesses become connections of the same tenant with the old one\'s settings, eligible for autosync', async () => {
    const upgrade = multiAccessUpgrade([{ accountId: 'giro', accessId: 'access-new', supported: true }, { accountId: 'savings', accessId: 'c', supported: true }]);
    const { engine, finish, eligible } = setup({ poll: [upgrade] });
    await eligible();
    const upgrades: string[][] = [];
    engine.events.on('connection.upgraded', ({ from, created }) => upgrades.push([from.connectionId, ...created.map((c) => c.connectionId)]));
    await finish('c');
    const old = await engine.getConnection('c');
    // the savings account stayed: the old access is a live connection for it, not stuck waiting for a person
    expect(old).toMatchObject({ state: 'IDLE', needsUser: null, linkedAccessIds: ['access-new'], retired: false, retiredAt: null });
    const moved = await engine.getConnection('access-new');
    expect(moved).toMatchObject({ tenantId: 'default', provider: 'fake', state: 'IDLE', storedCredentials: true, consentGrantedAt: old.consentGrantedAt, autosyncRefusal: null });
    expect(upgrades).toEqual([['c', 'access-new']]);
  });

  it('an old access that keeps accounts stays autosynced, and so is the new one', async () => {
    const upgrade = multiAccessUpgrade([{ accountId: 'giro', accessId: 'access-new', supported: true }, { accountId: 'savings', accessId: 'c', supported: true }]);
    const { clock, engine, store, finish, eligible, advance } = setup({ poll: [upgrade, completed, completed, completed] });
    await eligible();
    await finish('c');
    const scheduler = new AutosyncScheduler(engine, store);
    const started = new Set<string>();
    engine.events.on('connection.updated', (view) => {
      if (view.state === 'SYNCING') started.add(view.connectionId);
    });
    const end = clock.now() + 2 * DAY;
    for (let t = clock.now() + HOUR; t < end; t += HOUR) {
      clock.set(t);
      await scheduler.tick(t);
      await settle();
      await advance(1_000);
    }
    expect([...started].sort()).toEqual(['access-new', 'c']);
  });

  it('an old access left without accounts is retired visibly and never autosynced again; the new one is', async () => {
    const upgrade = multiAccessUpgrade([{ accountId: 'giro', accessId: 'access-new', supported: true }]);
    const { clock, engine, store, finish, eligible } = setup({ poll: [upgrade, completed] });
    await eligible();
    const retired: string[] = [];
    engine.events.on('connection.retired', (view) => retired.push(`${view.connectionId}:${view.state}`));
    const at = clock.now();
    await finish('c');
    const old = await engine.getConnection('c');
    expect(old).toMatchObject({ state: 'RETIRED', retired: true, needsUser: null, linkedAccessIds: ['access-new'], autosyncRefusal: 'CONNECTION_RETIRED' });
    expect(old.retiredAt).toBeGreaterThanOrEqual(at);
    expect(retired).toEqual(['c:RETIRED']);
    // a person cannot sync it either: there is nothing left on it (the accounts are synced as access-new)
    expect((await rejection(engine.requestSync({ connectionId: 'c', provider: 'fake' }))).issues).toEqual(['CONNECTION_RETIRED']);
    const scheduler = new AutosyncScheduler(engine, store);
    const started: string[] = [];
    engine.events.on('connection.updated', (view) => {
      if (view.state === 'SYNCING') started.push(view.connectionId);
    });
    const end = clock.now() + 2 * DAY;
    for (let t = clock.now() + HOUR; t < end; t += HOUR) {
      clock.set(t);
      await scheduler.tick(t);
      await settle();
    }
    expect(started).not.toContain('c');
    expect(started).toContain('access-new');
  });
});

describe('#13.7 consent in calendar time (Europe/Berlin)', () => {
  it('90 days are 90 calendar days in Berlin: across the DST change that is 90 x 24 h - 1 h', async () => {
    const { clock, engine } = setup({});
    const granted = Date.parse('2026-03-10T11:00:00.000Z'); // 12:00 in Berlin (CET); summer time starts 29 March
    clock.set(granted);
    const view = await engine.registerConnection({ connectionId: 'c', provider: 'fake', storedCredentials: true, consentGrantedAt: granted });
    expect(view.consentExpiresAt).toBe(Date.parse('2026-06-08T10:00:00.000Z')); // 12:00 in Berlin (CEST)
    expect(view.consentExpiresAt).toBe(granted + 90 * DAY - HOUR);
    clock.set(view.consentExpiresAt! - 1);
    expect((await engine.getConnection('c')).autosyncRefusal).toBeNull();
    clock.set(view.consentExpiresAt!);
    expect((await engine.getConnection('c')).autosyncRefusal).toBe('CONSENT_EXPIRED');
  });

  it('wealthAPI-style "3 months" are calendar months, not 90 days', async () => {
    const { engine } = setup({}, { consentTerm: { zone: 'Europe/Berlin', months: 3 } });
    const granted = Date.parse('2026-05-15T10:00:00.000Z');
    const view = await engine.registerConnection({ connectionId: 'c', provider: 'fake', storedCredentials: true, consentGrantedAt: granted });
    expect(view.consentExpiresAt).toBe(Date.parse('2026-08-15T10:00:00.000Z'));
    expect(view.consentExpiresAt! - granted).toBe(92 * DAY);
  });

  it('warns once, 7 days ahead: consentExpiresSoon on the view and one connection.consentExpiring event', async () => {
    const { clock, engine, store } = setup({});
    await engine.registerConnection({ connectionId: 'c', provider: 'fake', storedCredentials: true, consentGrantedAt: clock.now() });
    const expiry = (await engine.getConnection('c')).consentExpiresAt!;
    const warnings: string[] = [];
    engine.events.on('connection.consentExpiring', (view) => warnings.push(view.connectionId));
    const scheduler = new AutosyncScheduler(engine, store);
    for (let t = clock.now(); t < expiry; t += 6 * HOUR) {
      clock.set(t);
      await scheduler.tick(t);
      const soon = (await engine.getConnection('c')).consentExpiresSoon;
      expect(soon, new Date(t).toISOString()).toBe(expiry - t <= 7 * DAY);
    }
    expect(warnings).toEqual(['c']);
  });

  it("xs2a's consent_valid_until is compared with Berlin's date, not UTC's", () => {
    // 23:30 UTC on 30 June is already 1 July in Berlin (CEST)
    expect(todayOf(Date.parse('2026-06-30T23:30:00.000Z'))).toBe('2026-07-01');
    expect(todayOf(Date.parse('2026-06-30T21:59:59.999Z'))).toBe('2026-06-30');
    expect(DateTime.fromISO('2026-07-01', { zone: 'Europe/Berlin' }).toMillis()).toBe(Date.parse('2026-06-30T22:00:00.000Z'));
  });
});

describe('#13.7 consent warning: raised by whatever first sees the connection inside the window, once per consent', () => {
  it('a sync that finishes inside the window warns at once (no autosync scan runs); later syncs do not warn again', async () => {
    const { clock, engine, finish, eligible } = setup({ poll: [completed, completed, completed] });
    await eligible();
    const expiry = (await engine.getConnection('c')).consentExpiresAt!;
    const warnings: { id: string; warnedAt: number | null }[] = [];
    engine.events.on('connection.consentExpiring', (view) => warnings.push({ id: view.connectionId, warnedAt: view.consentWarnedAt }));
    // a sync a day before the window: no warning
    clock.set(expiry - 8 * DAY);
    await finish('c');
    expect(warnings).toEqual([]);
    // first sync inside the window warns, and the stored connection records it
    clock.set(expiry - 6 * DAY);
    await finish('c');
    expect(warnings).toHaveLength(1);
    expect((await engine.getConnection('c')).consentWarnedAt).toBe(warnings[0]!.warnedAt);
    clock.set(expiry - 5 * DAY);
    await finish('c');
    expect(warnings).toHaveLength(1);
  });

  it('registering a consent already inside the window warns; a renewed consent warns again in its own window; the scan adds none', async () => {
    const { clock, engine, store } = setup({});
    const warnings: number[] = [];
    engine.events.on('connection.consentExpiring', (view) => warnings.push(view.consentExpiresAt!));
    const granted = clock.now() - 85 * DAY;
    const view = await engine.registerConnection({ connectionId: 'c', provider: 'fake', storedCredentials: true, consentGrantedAt: granted });
    expect(warnings).toEqual([view.consentExpiresAt]);
    expect(view.consentWarnedAt).toBe(clock.now());
    const scheduler = new AutosyncScheduler(engine, store);
    await scheduler.tick(clock.now());
    expect(warnings).toHaveLength(1);
    // renewed: the next warning comes 7 days before the new end, from the hourly scan, over simulated days
    const renewed = await engine.registerConnection({ connectionId: 'c', provider: 'fake', consentGrantedAt: clock.now() });
    expect(renewed.consentWarnedAt).toBeNull();
    for (let t = clock.now(); t < renewed.consentExpiresAt!; t += 12 * HOUR) {
      clock.set(t);
      await scheduler.tick(t);
    }
    expect(warnings).toEqual([view.consentExpiresAt, renewed.consentExpiresAt]);
  });

  it('two engines on one store looking at the same moment warn once between them', async () => {
    const { clock, engine, store, adapter } = setup({});
    const other = createEngine({ store, providers: { fake: adapter }, clock });
    await engine.registerConnection({ connectionId: 'c', provider: 'fake', storedCredentials: true, consentGrantedAt: clock.now() });
    const expiry = (await engine.getConnection('c')).consentExpiresAt!;
    let warnings = 0;
    engine.events.on('connection.consentExpiring', () => warnings++);
    other.events.on('connection.consentExpiring', () => warnings++);
    clock.set(expiry - DAY);
    await Promise.all([engine.warnExpiringConsents(), other.warnExpiringConsents()]);
    expect(warnings).toBe(1);
  });
});

describe('sync.completed / sync.failed come after the connection is updated', () => {
  it('a listener reading the connection in the event handler sees the outcome', async () => {
    const outage = new ProviderError('503', { code: 'PROVIDER_UNAVAILABLE', retryable: true });
    const { engine, finish, eligible } = setup({ trigger: [{ providerRef: 'r', observation: completed }, outage] });
    await eligible();
    const seen: Promise<string>[] = [];
    const read = (kind: string) => (view: { syncId: string; connectionId: string }) => {
      seen.push(engine.getConnection(view.connectionId).then((c) => `${kind}:${c.state}:${c.lastSync?.syncId === view.syncId}:${c.activeSyncId}`));
    };
    engine.events.on('sync.completed', read('completed'));
    engine.events.on('sync.failed', read('failed'));
    await finish('c');
    await finish('c');
    expect(await Promise.all(seen)).toEqual(['completed:IDLE:true:null', 'failed:IDLE:true:null']);
  });
});
