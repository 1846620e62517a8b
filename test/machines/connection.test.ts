/**
 * Unit tests of every rule of the connection machine (machines/connection.ts): the single-flight lock, the
 * xs2a breaker (seed 003), the needs-user stop, finX access upgrades (seed 002) and autosync eligibility
 * (seeds 000/002, PSD2 RTS Art. 36(5)(b)). The machine is stepped purely, as the engine does.
 */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import type { SyncErrorCode } from '../../machines/canonical.js';
import {
  BREAKER_THRESHOLD,
  CONSENT_MAX_AGE_MS,
  connectionMachine,
  isRetired,
  refusalReason,
  UNATTENDED_MAX_PER_WINDOW,
  UNATTENDED_WINDOW_MS,
  unattendedRefusal,
  type ConnectionContext,
  type ConnectionState,
} from '../../machines/connection.js';
import {
  CREDENTIAL_OR_SCA,
  DAY,
  directUpgrade,
  ELIGIBLE,
  ev,
  expectedReason,
  HOUR,
  initial,
  MINUTE,
  movedAway,
  multiUpgrade,
  partialUpgrade,
  RESULT,
  run,
  SPEC,
  stateOf,
  step,
  sync,
  syncError,
  T0,
  TRANSIENT,
  upgradeError,
  type ConnectionSnapshot,
} from './connection.fixtures.js';

const CONSENT = ELIGIBLE.consentGrantedAt!;

/** A snapshot in each state, reached through real events. */
function reach(state: ConnectionState): ConnectionSnapshot {
  const s0 = initial();
  switch (state) {
    case 'IDLE':
      return s0;
    case 'SYNCING':
      return step(s0, ev.attended('s-active', T0));
    case 'NEEDS_USER':
      return sync(s0, 's-cred', T0, syncError('INVALID_CREDENTIALS'));
    case 'DISABLED':
      return sync(s0, 's-dis', T0, syncError('CONNECTION_DISABLED'));
    case 'RETIRED':
      return sync(s0, 's-ret', T0, upgradeError(movedAway(), '40002'));
  }
}

describe('constants match the spec', () => {
  it('90-day consent, 4 unattended accesses per 24 h, breaker after 3 failures', () => {
    expect(CONSENT_MAX_AGE_MS).toBe(SPEC.consentMaxAgeMs);
    expect(UNATTENDED_WINDOW_MS).toBe(SPEC.unattendedWindowMs);
    expect(UNATTENDED_MAX_PER_WINDOW).toBe(SPEC.unattendedMaxPerWindow);
    expect(BREAKER_THRESHOLD).toBe(SPEC.breakerThreshold);
  });

  it('initial context from input, with safe defaults', () => {
    const s = initial({ tenantId: 't', connectionId: 'c', provider: 'xs2a' });
    expect(initial({ tenantId: 't', connectionId: 'c', provider: 'xs2a', registeredAt: T0 }).context.registeredAt).toBe(T0);
    expect(stateOf(s)).toBe('IDLE');
    expect(s.context).toEqual({
      tenantId: 't',
      connectionId: 'c',
      provider: 'xs2a',
      registeredAt: 0,
      storedCredentials: false,
      hasWebScraping: false,
      consentGrantedAt: null,
      consentExpiresAt: null,
      consentWarnedAt: null,
      activeSyncId: null,
      consecutiveFailures: 0,
      transientFailures: 0,
      cooldownUntil: null,
      needsUser: null,
      unattendedAccesses: [],
      accessMethodId: null,
      accounts: {},
      linkedAccessIds: [],
      lastSync: null,
      retiredAt: null,
    } satisfies ConnectionContext);
  });
});

describe('single-flight lock', () => {
  it('an attended request takes the lock with its syncId and does not count as an unattended access', () => {
    const s = step(initial(), ev.attended('s1', T0));
    expect(stateOf(s)).toBe('SYNCING');
    expect(s.context.activeSyncId).toBe('s1');
    expect(s.context.unattendedAccesses).toEqual([]);
  });

  it('an unattended request takes the lock and records its start time', () => {
    const s = step(initial(), ev.unattended('s1', T0));
    expect(stateOf(s)).toBe('SYNCING');
    expect(s.context.activeSyncId).toBe('s1');
    expect(s.context.unattendedAccesses).toEqual([T0]);
  });

  it.each([false, true])('a second request (unattended=%s) while syncing is refused and changes nothing', (unattended) => {
    const s1 = step(initial(), ev.attended('s1', T0));
    const s2 = step(s1, { type: 'SYNC.REQUEST', syncId: 's2', unattended, at: T0 + 1 });
    expect(stateOf(s2)).toBe('SYNCING');
    expect(s2.context).toEqual(s1.context);
    expect(refusalReason('SYNCING', s1.context, unattended, T0 + 1)).toBe('SYNC_ACTIVE');
  });

  it.each([
    ['completed', ev.completed('other', T0 + 1)],
    ['failed', ev.failed('other', T0 + 1, syncError('INVALID_CREDENTIALS'))],
    ['provider-disabled', ev.failed('other', T0 + 1, syncError('CONNECTION_DISABLED'))],
    ['cancelled', ev.failed('other', T0 + 1, syncError('CANCELLED'))],
  ])('SYNC.FINISHED (%s) for another syncId is ignored', (_name, finished) => {
    const s1 = step(initial(), ev.attended('s1', T0));
    const s2 = step(s1, finished);
    expect(stateOf(s2)).toBe('SYNCING');
    expect(s2.context).toEqual(s1.context);
    // the real report still releases the lock
    expect(stateOf(step(s2, ev.completed('s1', T0 + 2)))).toBe('IDLE');
  });

  it('a late duplicate SYNC.FINISHED after the sync ended changes nothing', () => {
    const done = sync(initial(), 's1', T0, 'ok');
    for (const late of [ev.completed('s1', T0 + HOUR), ev.failed('s1', T0 + HOUR, syncError('INVALID_CREDENTIALS'))]) {
      const s = step(done, late);
      expect(stateOf(s)).toBe('IDLE');
      expect(s.context).toEqual(done.context);
    }
  });

  it('a late SYNC.FINISHED of the previous sync does not end the next one', () => {
    const s = step(sync(initial(), 's1', T0, 'ok'), ev.attended('s2', T0 + HOUR));
    const late = step(s, ev.failed('s1', T0 + HOUR + 1, syncError('INVALID_CREDENTIALS')));
    expect(stateOf(late)).toBe('SYNCING');
    expect(late.context.activeSyncId).toBe('s2');
    expect(late.context.needsUser).toBeNull();
  });

  it('the lock is released by every way a sync ends', () => {
    for (const outcome of ['ok' as const, null, syncError('CANCELLED'), syncError('PROVIDER_UNAVAILABLE'), syncError('SCA_FAILED'), syncError('CONNECTION_DISABLED')]) {
      expect(sync(initial(), 's1', T0, outcome).context.activeSyncId).toBeNull();
    }
  });

  it('a live actor behaves like the pure stepper', () => {
    const actor = createActor(connectionMachine, { input: ELIGIBLE }).start();
    actor.send(ev.unattended('s1', T0));
    actor.send(ev.completed('other', T0 + 1));
    expect(actor.getSnapshot().value).toBe('SYNCING');
    actor.send(ev.failed('s1', T0 + 2, syncError('SCA_FAILED')));
    expect(actor.getSnapshot().value).toBe('NEEDS_USER');
    expect(actor.getSnapshot().context.needsUser).toEqual({ reason: 'SCA', message: 'SCA_FAILED (test)', at: T0 + 2 });
    actor.stop();
  });
});

describe('success', () => {
  it('resets the failure counts and the cooldown and records the sync', () => {
    let s = sync(initial(), 's1', T0, syncError('BANK_REJECTED', { retryable: true }));
    s = sync(s, 's2', T0 + HOUR, syncError('PROVIDER_UNAVAILABLE'));
    expect(s.context).toMatchObject({ consecutiveFailures: 1, transientFailures: 2 });
    expect(s.context.cooldownUntil).not.toBeNull();
    s = sync(s, 's3', T0 + 2 * HOUR, 'ok');
    expect(stateOf(s)).toBe('IDLE');
    expect(s.context).toMatchObject({ consecutiveFailures: 0, transientFailures: 0, cooldownUntil: null });
    expect(s.context.lastSync).toEqual({ syncId: 's3', status: 'COMPLETED', outcome: 'COMPLETE', errorCode: null, at: T0 + 2 * HOUR + MINUTE });
  });

  it('records a missing result as outcome null', () => {
    const s = step(step(initial(), ev.attended('s1', T0)), ev.completed('s1', T0 + 1, null));
    expect(s.context.lastSync?.outcome).toBeNull();
    const partial = step(step(initial(), ev.attended('s1', T0)), ev.completed('s1', T0 + 1, { ...RESULT, outcome: 'PARTIAL' }));
    expect(partial.context.lastSync?.outcome).toBe('PARTIAL');
  });

  it('clears needsUser: after an attended success from NEEDS_USER autosync may run again', () => {
    let s = sync(initial(), 's1', T0, syncError('INVALID_CREDENTIALS'));
    expect(stateOf(s)).toBe('NEEDS_USER');
    s = sync(s, 's2', T0 + HOUR, 'ok');
    expect(stateOf(s)).toBe('IDLE');
    expect(s.context.needsUser).toBeNull();
    expect(unattendedRefusal(s.context, T0 + 2 * HOUR)).toBeNull();
    expect(stateOf(step(s, ev.unattended('s3', T0 + 2 * HOUR)))).toBe('SYNCING');
  });
});

describe('cancelled syncs', () => {
  it('are not counted as failures, release the lock, and do not reset the count', () => {
    let s = sync(initial(), 's1', T0, syncError('BANK_REJECTED', { retryable: true }));
    s = sync(s, 's2', T0 + HOUR, syncError('BANK_REJECTED', { retryable: true }));
    s = sync(s, 's3', T0 + 2 * HOUR, syncError('CANCELLED'));
    expect(stateOf(s)).toBe('IDLE');
    expect(s.context.consecutiveFailures).toBe(2);
    expect(s.context.lastSync).toMatchObject({ syncId: 's3', status: 'FAILED', errorCode: 'CANCELLED' });
    // the next counted failure is the third in a row
    s = sync(s, 's4', T0 + 3 * HOUR, syncError('BANK_REJECTED', { retryable: true }));
    expect(stateOf(s)).toBe('NEEDS_USER');
    expect(s.context.needsUser?.reason).toBe('FAILURE_LIMIT');
  });

  it('many cancellations never stop the connection', () => {
    let s = initial();
    for (let i = 0; i < 10; i++) s = sync(s, `c${i}`, T0 + i * HOUR, syncError('CANCELLED'));
    expect(stateOf(s)).toBe('IDLE');
    expect(s.context.consecutiveFailures).toBe(0);
  });

  it('cancelling the attended retry from NEEDS_USER keeps autosync stopped (needsUser is kept)', () => {
    let s = sync(initial(), 's1', T0, syncError('SCA_FAILED'));
    s = sync(s, 's2', T0 + HOUR, syncError('CANCELLED'));
    expect(s.context.needsUser).toMatchObject({ reason: 'SCA' });
    expect(unattendedRefusal(s.context, T0 + 2 * HOUR)).toBe('USER_REQUIRED');
    expect(refusalReason(stateOf(s), s.context, true, T0 + 2 * HOUR)).toBe('USER_REQUIRED');
    expect(stateOf(step(s, ev.unattended('s3', T0 + 2 * HOUR)))).not.toBe('SYNCING');
  });
});

describe('preflight refusals (no bank access happened)', () => {
  const needsUser = syncError('PREFLIGHT_REFUSED');
  const notNeedsUser = syncError('PREFLIGHT_REFUSED', { userActionRequired: false });

  it('a refusal the user must solve -> NEEDS_USER, not counted; unattended refused, attended allowed', () => {
    const s = sync(initial(), 's1', T0, needsUser, true);
    expect(stateOf(s)).toBe('NEEDS_USER');
    expect(s.context.consecutiveFailures).toBe(0);
    expect(s.context.activeSyncId).toBeNull();
    expect(s.context.needsUser).toEqual({ reason: 'PROVIDER', message: 'PREFLIGHT_REFUSED (test)', at: T0 + MINUTE });
    expect(s.context.lastSync).toMatchObject({ syncId: 's1', status: 'FAILED', errorCode: 'PREFLIGHT_REFUSED' });
    expect(stateOf(step(s, ev.unattended('auto', T0 + HOUR)))).toBe('NEEDS_USER');
    expect(stateOf(step(s, ev.attended('user', T0 + HOUR)))).toBe('SYNCING');
  });

  it('a refusal without user action -> IDLE, not counted, autosync may try again', () => {
    const s = sync(initial(), 's1', T0, notNeedsUser, true);
    expect(stateOf(s)).toBe('IDLE');
    expect(s.context.consecutiveFailures).toBe(0);
    expect(s.context.needsUser).toBeNull();
    expect(stateOf(step(s, ev.unattended('s2', T0 + HOUR)))).toBe('SYNCING');
  });

  it('neither trips nor resets the breaker', () => {
    let s = sync(initial(), 's1', T0, syncError('BANK_REJECTED', { retryable: true }));
    s = sync(s, 's2', T0 + HOUR, syncError('BANK_REJECTED', { retryable: true }));
    for (let i = 0; i < 5; i++) s = sync(s, `p${i}`, T0 + (2 + i) * HOUR, i % 2 ? needsUser : notNeedsUser);
    expect(s.context.needsUser?.reason).not.toBe('FAILURE_LIMIT');
    expect(s.context.consecutiveFailures).toBe(2);
    s = sync(s, 's3', T0 + 10 * HOUR, syncError('BANK_REJECTED', { retryable: true }));
    expect(s.context.needsUser?.reason).toBe('FAILURE_LIMIT');
  });
});

// Issue #13: any three FAILED syncs used to disable a connection for good (outages, 423s, malformed ids), and for
// xs2a banksync tripped on the same attempt xs2a disabled it. Now only failures the bank or provider counts move
// toward a stop, the stop comes one before the provider's limit, and the stop is NEEDS_USER (a person may retry).
describe('breaker: only failures the bank or provider counts, stopping before the provider does', () => {
  it.each<SyncErrorCode>(['PROVIDER_UNAVAILABLE', 'RATE_LIMITED', 'PROVIDER_BUSY', 'TIMEOUT'])(
    'passing trouble (%s) never counts: ten in a row leave the connection IDLE, cooling down',
    (code) => {
      let s = initial();
      for (let i = 0; i < 10; i++) s = sync(s, `s${i}`, T0 + i * DAY, syncError(code));
      expect(stateOf(s)).toBe('IDLE');
      expect(s.context).toMatchObject({ consecutiveFailures: 0, transientFailures: 10, needsUser: null });
      expect(s.context.cooldownUntil).toBeGreaterThan(T0 + 9 * DAY);
    },
  );

  it('invalid input, unknown statuses and provider errors never count either (they need the user, attended retry allowed)', () => {
    let s = initial();
    for (const [i, code] of (['PROVIDER_ERROR', 'UNKNOWN_PROVIDER_STATUS', 'INVALID_RESPONSE', 'PROVIDER_ERROR'] as const).entries()) {
      s = sync(s, `s${i}`, T0 + i * HOUR, syncError(code));
    }
    expect(stateOf(s)).toBe('NEEDS_USER');
    expect(s.context.consecutiveFailures).toBe(0);
    expect(refusalReason('NEEDS_USER', s.context, false, T0 + DAY)).toBeNull();
  });

  it('stops at exactly the third counted failure when the provider states no limit: NEEDS_USER (FAILURE_LIMIT)', () => {
    let s = sync(initial(), 's1', T0, syncError('BANK_REJECTED', { retryable: true }));
    expect([stateOf(s), s.context.consecutiveFailures]).toEqual(['IDLE', 1]);
    s = sync(s, 's2', T0 + HOUR, syncError('PROVIDER_UNAVAILABLE'));
    expect([stateOf(s), s.context.consecutiveFailures]).toEqual(['IDLE', 1]);
    s = sync(s, 's3', T0 + 2 * HOUR, syncError('BANK_REJECTED', { retryable: true }));
    expect([stateOf(s), s.context.consecutiveFailures]).toEqual(['IDLE', 2]);
    s = sync(s, 's4', T0 + 3 * HOUR, syncError('BANK_REJECTED', { retryable: true }));
    expect([stateOf(s), s.context.consecutiveFailures]).toEqual(['NEEDS_USER', 3]);
    expect(s.context.needsUser).toEqual({ reason: 'FAILURE_LIMIT', message: expect.stringContaining('3 failed syncs in a row'), at: T0 + 3 * HOUR + MINUTE });
    // autosync stops; a person can always retry attended
    expect(refusalReason('NEEDS_USER', s.context, true, T0 + DAY)).toBe('USER_REQUIRED');
    expect(refusalReason('NEEDS_USER', s.context, false, T0 + DAY)).toBeNull();
  });

  it('counts credential and SCA failures of attended retries too (the bank counts them)', () => {
    let s = sync(initial(), 's1', T0, syncError('INVALID_CREDENTIALS'));
    expect([stateOf(s), s.context.consecutiveFailures, s.context.needsUser?.reason]).toEqual(['NEEDS_USER', 1, 'CREDENTIALS']);
    s = sync(s, 's2', T0 + HOUR, syncError('SCA_FAILED'));
    expect([stateOf(s), s.context.consecutiveFailures, s.context.needsUser?.reason]).toEqual(['NEEDS_USER', 2, 'SCA']);
    s = sync(s, 's3', T0 + 2 * HOUR, syncError('INVALID_CREDENTIALS'));
    expect([stateOf(s), s.context.consecutiveFailures, s.context.needsUser?.reason]).toEqual(['NEEDS_USER', 3, 'FAILURE_LIMIT']);
  });

  it('xs2a (disables at 3): stops at the second counted failure, before xs2a does', () => {
    const xs2a = { providerFailureLimit: 3 };
    let s = step(step(initial(), ev.unattended('s1', T0)), ev.failed('s1', T0 + MINUTE, syncError('BANK_REJECTED', { retryable: true }), xs2a));
    expect([stateOf(s), s.context.consecutiveFailures]).toEqual(['IDLE', 1]);
    s = step(step(s, ev.attended('s2', T0 + HOUR)), ev.failed('s2', T0 + HOUR + MINUTE, syncError('BANK_REJECTED', { retryable: true }), xs2a));
    expect([stateOf(s), s.context.consecutiveFailures, s.context.needsUser?.reason]).toEqual(['NEEDS_USER', 2, 'FAILURE_LIMIT']);
    expect(s.context.needsUser?.message).toContain('disables the connection at 3');
  });

  it("uses the provider's own counter when published (xs2a sync_fail_counter counts its own automatic syncs too)", () => {
    const xs2a = { providerFailureLimit: 3 };
    // xs2a's own background syncs already failed once: this first failure banksync sees is xs2a's second
    const s = step(step(initial(), ev.attended('s1', T0)), ev.failed('s1', T0 + MINUTE, syncError('BANK_REJECTED', { failureCount: 2 }), xs2a));
    expect([stateOf(s), s.context.consecutiveFailures, s.context.needsUser?.reason]).toEqual(['NEEDS_USER', 2, 'FAILURE_LIMIT']);
    // and a counter back at 0 (the user fixed it at xs2a) resets ours
    const reset = step(step(initial(), ev.attended('s1', T0)), ev.failed('s1', T0 + MINUTE, syncError('PROVIDER_UNAVAILABLE', { failureCount: 0 }), xs2a));
    expect(reset.context.consecutiveFailures).toBe(0);
  });

  it('the provider saying CONNECTION_DISABLED disables at once; only RECREATED leaves DISABLED', () => {
    const s = sync(initial(), 's1', T0, syncError('CONNECTION_DISABLED'));
    expect(stateOf(s)).toBe('DISABLED');
    expect(s.context.needsUser).toMatchObject({ reason: 'PROVIDER' });
  });

  it('CONNECTION_DISABLED disables even when the provider marks it retryable', () => {
    const s = sync(initial(), 's1', T0, syncError('CONNECTION_DISABLED', { retryable: true }));
    expect(stateOf(s)).toBe('DISABLED');
  });

  it('a DISABLED connection refuses every sync request and ignores reports', () => {
    const s = reach('DISABLED');
    for (const e of [ev.attended('x', T0 + DAY), ev.unattended('y', T0 + DAY), ev.completed('s-dis', T0 + DAY)]) {
      const n = step(s, e);
      expect(stateOf(n)).toBe('DISABLED');
      expect(n.context).toEqual(s.context);
    }
    expect(refusalReason('DISABLED', s.context, false, T0 + DAY)).toBe('CONNECTION_DISABLED');
    expect(refusalReason('DISABLED', s.context, true, T0 + DAY)).toBe('CONNECTION_DISABLED');
  });
});

describe('cooldown after passing trouble', () => {
  it('waits a jittered 15 min, doubling per failure in a row, capped at the ceiling; attended syncs ignore it', () => {
    let s = initial();
    const waits: number[] = [];
    for (let i = 0; i < 9; i++) {
      const at = T0 + i * 2 * DAY;
      s = sync(s, `s${i}`, at, syncError('PROVIDER_UNAVAILABLE'));
      waits.push(s.context.cooldownUntil! - (at + MINUTE));
    }
    waits.forEach((wait, i) => {
      const full = Math.min(DAY, 15 * MINUTE * 2 ** i);
      expect(wait, `failure ${i + 1}`).toBeGreaterThanOrEqual(Math.min(DAY, full * 0.75));
      expect(wait, `failure ${i + 1}`).toBeLessThanOrEqual(full);
    });
    const last = s.context.cooldownUntil!;
    expect(refusalReason('IDLE', s.context, true, last - 1)).toBe('COOLING_DOWN');
    expect(refusalReason('IDLE', s.context, true, last)).toBeNull();
    expect(refusalReason('IDLE', s.context, false, last - 1)).toBeNull();
  });

  it('honours a Retry-After longer than the backoff, up to the configured ceiling', () => {
    const hour = step(step(initial(), ev.attended('s1', T0)), ev.failed('s1', T0, syncError('RATE_LIMITED', { retryAfterMs: HOUR })));
    expect(hour.context.cooldownUntil).toBe(T0 + HOUR);
    const week = step(step(initial(), ev.attended('s1', T0)), ev.failed('s1', T0, syncError('RATE_LIMITED', { retryAfterMs: 7 * DAY }), { cooldownCeilingMs: 2 * DAY }));
    expect(week.context.cooldownUntil).toBe(T0 + 2 * DAY);
  });

  it('jitter spreads connections that failed in the same outage', () => {
    const nexts = Array.from({ length: 30 }, (_, i) => sync(initial(), `outage-${i}`, T0, syncError('PROVIDER_UNAVAILABLE')).context.cooldownUntil);
    expect(new Set(nexts).size).toBeGreaterThan(25);
  });
});

describe('needs-user stop: credential, 2FA and other user-action failures', () => {
  it.each([...CREDENTIAL_OR_SCA, 'CONSENT_EXPIRED', 'BANK_REJECTED', 'PROVIDER_ERROR', 'INVALID_RESPONSE'] as SyncErrorCode[])(
    '%s -> NEEDS_USER; unattended refused, attended allowed',
    (code) => {
      const at = T0 + 5 * MINUTE;
      const s = sync(initial(), 's1', T0, syncError(code), true, 5 * MINUTE);
      expect(stateOf(s)).toBe('NEEDS_USER');
      expect(s.context.needsUser).toEqual({ reason: expectedReason(code), message: `${code} (test)`, at });
      expect(s.context.activeSyncId).toBeNull();
      // only failures the bank or provider counts move toward the stop
      expect(s.context.consecutiveFailures).toBe(['INVALID_CREDENTIALS', 'SCA_FAILED', 'BANK_REJECTED'].includes(code) ? 1 : 0);
      // unattended: refused, nothing recorded
      const later = at + 2 * DAY;
      const refused = step(s, ev.unattended('auto', later));
      expect(stateOf(refused)).toBe('NEEDS_USER');
      expect(refused.context).toEqual(s.context);
      expect(refusalReason('NEEDS_USER', s.context, true, later)).toBe('USER_REQUIRED');
      expect(unattendedRefusal(s.context, later)).toBe('USER_REQUIRED');
      // attended: allowed, the user can solve SCA / renew credentials
      expect(refusalReason('NEEDS_USER', s.context, false, later)).toBeNull();
      const attended = step(s, ev.attended('user', later));
      expect(stateOf(attended)).toBe('SYNCING');
      expect(attended.context.activeSyncId).toBe('user');
      expect(attended.context.needsUser).not.toBeNull();
    },
  );

  it('maps codes to reasons', () => {
    expect(expectedReason('INVALID_CREDENTIALS')).toBe('CREDENTIALS');
    for (const code of ['SCA_FAILED', 'CHALLENGE_EXPIRED', 'ANSWER_NOT_SENT'] as const) expect(expectedReason(code)).toBe('SCA');
  });

  it('a retryable error flagged userActionRequired still needs the user', () => {
    const s = sync(initial(), 's1', T0, syncError('PROVIDER_UNAVAILABLE', { userActionRequired: true }));
    expect(stateOf(s)).toBe('NEEDS_USER');
  });

  it.each(TRANSIENT)('transient %s -> IDLE, not counted, autosync may try again after the cooldown', (code) => {
    const s = sync(initial(), 's1', T0, syncError(code), true);
    expect(stateOf(s)).toBe('IDLE');
    expect(s.context.needsUser).toBeNull();
    expect(s.context.consecutiveFailures).toBe(0);
    expect(stateOf(step(s, ev.unattended('s2', s.context.cooldownUntil! - 1)))).toBe('IDLE');
    expect(stateOf(step(s, ev.unattended('s2', s.context.cooldownUntil!)))).toBe('SYNCING');
  });

  it('a failure without an error object is transient (before the breaker)', () => {
    const s = sync(initial(), 's1', T0, null);
    expect(stateOf(s)).toBe('IDLE');
    expect(s.context.lastSync).toMatchObject({ status: 'FAILED', errorCode: null });
  });

  it('the user stop survives a transient failure of the attended retry', () => {
    let s = sync(initial(), 's1', T0, syncError('INVALID_CREDENTIALS'));
    s = sync(s, 's2', T0 + HOUR, syncError('PROVIDER_UNAVAILABLE'));
    expect(s.context.needsUser).toMatchObject({ reason: 'CREDENTIALS' });
    expect(refusalReason(stateOf(s), s.context, true, T0 + 2 * HOUR)).toBe('USER_REQUIRED');
    expect(stateOf(step(s, ev.unattended('auto', T0 + 2 * HOUR)))).not.toBe('SYNCING');
  });

  it('a later user-action failure replaces the reason', () => {
    let s = sync(initial(), 's1', T0, syncError('INVALID_CREDENTIALS'));
    s = sync(s, 's2', T0 + HOUR, syncError('SCA_FAILED'));
    expect(s.context.needsUser).toEqual({ reason: 'SCA', message: 'SCA_FAILED (test)', at: T0 + HOUR + MINUTE });
  });
});

describe('access upgrades (finX 40001/40002/40003)', () => {
  it('40001 direct: new access method, accounts stay on this access, nothing linked', () => {
    const s = sync(initial(), 's1', T0, upgradeError(directUpgrade(ELIGIBLE.connectionId, ['acc-giro', 'acc-savings']), '40001'));
    expect(stateOf(s)).toBe('NEEDS_USER');
    expect(s.context.needsUser).toMatchObject({ reason: 'ACCESS_UPGRADE' });
    expect(s.context.accessMethodId).toBe('method-psd2');
    expect(s.context.accounts).toEqual({
      'acc-giro': { accessId: 'access-1', supported: true },
      'acc-savings': { accessId: 'access-1', supported: true },
    });
    expect(s.context.linkedAccessIds).toEqual([]);
    // an upgrade is not a failure the bank counts
    expect(s.context.consecutiveFailures).toBe(0);
  });

  it('40002 multi-access: the moved account points at the new access, which is linked; the old access stays live for the account it kept', () => {
    const s = sync(initial(), 's1', T0, upgradeError(multiUpgrade(), '40002'));
    expect(stateOf(s)).toBe('IDLE');
    expect(s.context.needsUser).toBeNull();
    expect(s.context.retiredAt).toBeNull();
    expect(unattendedRefusal(s.context, T0 + DAY)).toBeNull();
    expect(s.context.accounts).toEqual({
      'acc-giro': { accessId: 'access-2', supported: true },
      'acc-savings': { accessId: 'access-1', supported: true },
    });
    expect(s.context.linkedAccessIds).toEqual(['access-2']);
    expect(s.context.accessMethodId).toBe('method-psd2');
  });

  it('40002 twice, and two accounts on the same new access: each access linked once', () => {
    const up = multiUpgrade();
    up.accounts.push({ accountId: 'acc-card', accessId: 'access-2', supported: true });
    let s = sync(initial(), 's1', T0, upgradeError(up, '40002'));
    s = sync(s, 's2', T0 + HOUR, upgradeError(multiUpgrade(ELIGIBLE.connectionId, 'access-3'), '40002'));
    expect(s.context.linkedAccessIds).toEqual(['access-2', 'access-3']);
    expect(s.context.accounts['acc-card']).toEqual({ accessId: 'access-2', supported: true });
    expect(s.context.accounts['acc-giro']).toEqual({ accessId: 'access-3', supported: true });
  });

  it('40003 partial: the unsupported account is kept with supported:false and no access', () => {
    const s = sync(initial(), 's1', T0, upgradeError(partialUpgrade(), '40003'));
    expect(stateOf(s)).toBe('NEEDS_USER');
    expect(s.context.accounts).toEqual({
      'acc-giro': { accessId: 'access-1', supported: true },
      'acc-savings': { accessId: null, supported: false },
    });
    expect(s.context.linkedAccessIds).toEqual([]);
  });

  it('an upgrade without a new access method keeps the current one; accounts not mentioned are kept', () => {
    let s = sync(initial(), 's1', T0, upgradeError(partialUpgrade(), '40003'));
    s = sync(s, 's2', T0 + HOUR, upgradeError({ kind: 'DIRECT', accounts: [{ accountId: 'acc-giro', accessId: 'access-1', supported: true }] }, '40001'));
    expect(s.context.accessMethodId).toBe('method-psd2');
    expect(s.context.accounts['acc-savings']).toEqual({ accessId: null, supported: false });
  });

  it('an ACCESS_UPGRADE needs the user even if flagged retryable and not user-action', () => {
    const s = sync(initial(), 's1', T0, syncError('ACCESS_UPGRADE', { retryable: true, userActionRequired: false, upgrade: directUpgrade() }));
    expect(stateOf(s)).toBe('NEEDS_USER');
    expect(s.context.needsUser?.reason).toBe('ACCESS_UPGRADE');
  });

  it('40002 that moves every account away retires the old access: RETIRED, refused attended and unattended, nothing changes it', () => {
    const s = sync(initial(), 's1', T0, upgradeError(movedAway(), '40002'));
    expect(stateOf(s)).toBe('RETIRED');
    expect(s.context).toMatchObject({ retiredAt: T0 + MINUTE, needsUser: null, linkedAccessIds: ['access-2', 'access-3'], activeSyncId: null, consecutiveFailures: 0 });
    expect(isRetired(s.context)).toBe(true);
    for (const unattended of [false, true]) {
      expect(refusalReason('RETIRED', s.context, unattended, T0 + DAY)).toBe('CONNECTION_RETIRED');
      expect(stateOf(step(s, { type: 'SYNC.REQUEST', syncId: 's2', unattended, at: T0 + DAY }))).toBe('RETIRED');
    }
    expect(stateOf(step(s, { type: 'RECREATED', at: T0 + DAY }))).toBe('RETIRED');
  });

  it('40003 that leaves this access only unsupported accounts retires it', () => {
    const s = sync(initial(), 's1', T0, upgradeError({ kind: 'PARTIAL', newAccessMethodId: 'm', accounts: [
      { accountId: 'acc-giro', accessId: 'access-2', supported: true },
      { accountId: 'acc-savings', accessId: ELIGIBLE.connectionId, supported: false },
    ] }, '40003'));
    expect(stateOf(s)).toBe('RETIRED');
  });

  it('a report for another sync carrying an upgrade is ignored', () => {
    const s1 = step(initial(), ev.attended('s1', T0));
    const s2 = step(s1, ev.failed('other', T0 + 1, upgradeError(multiUpgrade(), '40002')));
    expect(s2.context).toEqual(s1.context);
  });
});

describe('autosync eligibility (unattendedRefusal / refusalReason)', () => {
  const at = T0 + HOUR;
  const idle = initial().context;

  it('an eligible connection may autosync and the machine starts it', () => {
    expect(unattendedRefusal(idle, at)).toBeNull();
    expect(refusalReason('IDLE', idle, true, at)).toBeNull();
    expect(stateOf(step(initial(), ev.unattended('s1', at)))).toBe('SYNCING');
  });

  it.each([
    ['NO_STORED_CREDENTIALS', { storedCredentials: false }],
    ['WEB_SCRAPING_INTERFACE', { hasWebScraping: true }],
    ['CONSENT_EXPIRED', { consentGrantedAt: null }],
    ['CONSENT_EXPIRED', { consentGrantedAt: at - 91 * DAY }],
    ['USER_REQUIRED', { needsUser: { reason: 'SCA', message: 'x', at: T0 } }],
    ['UNATTENDED_LIMIT', { unattendedAccesses: [at - 4 * HOUR, at - 3 * HOUR, at - 2 * HOUR, at - HOUR] }],
  ] as Array<[string, Partial<ConnectionContext>]>)('%s: unattended refused, nothing recorded; attended allowed', (reason, patch) => {
    const context = { ...idle, ...patch };
    expect(unattendedRefusal(context, at)).toBe(reason);
    expect(refusalReason('IDLE', context, true, at)).toBe(reason);
    expect(refusalReason('IDLE', context, false, at)).toBeNull();
    const s = connectionMachine.resolveState({ value: 'IDLE', context });
    const refused = step(s, ev.unattended('auto', at));
    expect(stateOf(refused)).toBe('IDLE');
    expect(refused.context).toEqual(context);
    const attended = step(s, ev.attended('user', at));
    expect(stateOf(attended)).toBe('SYNCING');
    expect(attended.context.unattendedAccesses).toEqual(context.unattendedAccesses);
  });

  it('the same refusals, reached through events', () => {
    const at2 = T0 + 2 * HOUR;
    expect(stateOf(run([ev.settings(T0, { storedCredentials: false }), ev.unattended('a', at2)]))).toBe('IDLE');
    expect(stateOf(run([ev.settings(T0, { hasWebScraping: true }), ev.unattended('a', at2)]))).toBe('IDLE');
    expect(stateOf(run([ev.settings(T0, { consentGrantedAt: null }), ev.unattended('a', at2)]))).toBe('IDLE');
    expect(stateOf(run([ev.unattended('a', at2)], { ...ELIGIBLE, storedCredentials: undefined }))).toBe('IDLE');
  });

  describe('consent younger than 90 days (exact boundary)', () => {
    it.each<[number, string | null]>([
      [CONSENT_MAX_AGE_MS - 1, null],
      [CONSENT_MAX_AGE_MS, 'CONSENT_EXPIRED'],
      [CONSENT_MAX_AGE_MS + 1, 'CONSENT_EXPIRED'],
      [0, null],
    ])('consent age %d ms -> %s', (age, expected) => {
      const when = CONSENT + age;
      expect(unattendedRefusal(idle, when)).toBe(expected);
      const s = step(initial(), ev.unattended('s1', when));
      expect(stateOf(s)).toBe(expected === null ? 'SYNCING' : 'IDLE');
    });

    it('90 days is 90 * 24 h, not three calendar months', () => {
      expect(unattendedRefusal(idle, CONSENT + 90 * DAY - 1)).toBeNull();
      expect(unattendedRefusal(idle, CONSENT + 90 * DAY)).toBe('CONSENT_EXPIRED');
    });

    it('renewing consent makes autosync eligible again (needs no success)', () => {
      const expired = CONSENT + 100 * DAY;
      let s = step(initial(), ev.unattended('s1', expired));
      expect(stateOf(s)).toBe('IDLE');
      s = step(s, ev.settings(expired, { consentGrantedAt: expired }));
      expect(stateOf(step(s, ev.unattended('s1', expired + 1)))).toBe('SYNCING');
    });
  });

  describe('at most 4 unattended accesses in any 24 h (PSD2 RTS 36(5)(b))', () => {
    /** Four successful unattended syncs at T0, T0+1h, T0+2h, T0+3h. */
    function fourAccesses(): ConnectionSnapshot {
      let s = initial();
      for (let i = 0; i < 4; i++) s = sync(s, `u${i}`, T0 + i * HOUR, 'ok', true);
      return s;
    }

    it('the fifth within 24 h of the first is refused with UNATTENDED_LIMIT; attended still allowed', () => {
      const s = fourAccesses();
      expect(s.context.unattendedAccesses).toEqual([T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]);
      const at5 = T0 + 4 * HOUR;
      expect(unattendedRefusal(s.context, at5)).toBe('UNATTENDED_LIMIT');
      const refused = step(s, ev.unattended('u4', at5));
      expect(stateOf(refused)).toBe('IDLE');
      expect(refused.context).toEqual(s.context);
      const attended = sync(s, 'user', at5, 'ok');
      expect(attended.context.unattendedAccesses).toHaveLength(4);
      expect(unattendedRefusal(attended.context, at5 + 2 * MINUTE)).toBe('UNATTENDED_LIMIT');
    });

    it('boundary: refused 1 ms before the first access is 24 h old, allowed exactly at 24 h', () => {
      const s = fourAccesses();
      expect(unattendedRefusal(s.context, T0 + DAY - 1)).toBe('UNATTENDED_LIMIT');
      expect(stateOf(step(s, ev.unattended('u4', T0 + DAY - 1)))).toBe('IDLE');
      expect(unattendedRefusal(s.context, T0 + DAY)).toBeNull();
      const started = step(s, ev.unattended('u4', T0 + DAY));
      expect(stateOf(started)).toBe('SYNCING');
      // the expired access is pruned, the new one recorded
      expect(started.context.unattendedAccesses).toEqual([T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + DAY]);
      // and the next one waits for the second access to age out
      const s5 = step(started, ev.completed('u4', T0 + DAY + MINUTE));
      expect(unattendedRefusal(s5.context, T0 + DAY + HOUR - 1)).toBe('UNATTENDED_LIMIT');
      expect(unattendedRefusal(s5.context, T0 + DAY + HOUR)).toBeNull();
    });

    it('failed and cancelled unattended syncs count as accesses too', () => {
      let s = initial();
      const outcomes = [syncError('PROVIDER_UNAVAILABLE'), syncError('CANCELLED'), 'ok' as const, syncError('CANCELLED')];
      outcomes.forEach((o, i) => (s = sync(s, `u${i}`, T0 + i * HOUR, o, true)));
      expect(stateOf(s)).toBe('IDLE');
      expect(unattendedRefusal(s.context, T0 + 5 * HOUR)).toBe('UNATTENDED_LIMIT');
    });

    it('a refused request is not an access', () => {
      let s = fourAccesses();
      for (let i = 0; i < 5; i++) s = step(s, ev.unattended(`r${i}`, T0 + 10 * HOUR + i));
      expect(s.context.unattendedAccesses).toHaveLength(4);
      expect(stateOf(step(s, ev.unattended('ok', T0 + DAY)))).toBe('SYNCING');
    });
  });

  it('refusal precedence: credentials, web scraping, consent, user, limit', () => {
    const worst: ConnectionContext = {
      ...idle,
      storedCredentials: false,
      hasWebScraping: true,
      consentGrantedAt: null,
      needsUser: { reason: 'SCA', message: 'x', at: T0 },
      unattendedAccesses: [at - 1, at - 2, at - 3, at - 4],
    };
    const order = ['NO_STORED_CREDENTIALS', 'WEB_SCRAPING_INTERFACE', 'CONSENT_EXPIRED', 'USER_REQUIRED', 'UNATTENDED_LIMIT'];
    const fixes: Array<Partial<ConnectionContext>> = [{ storedCredentials: true }, { hasWebScraping: false }, { consentGrantedAt: T0 }, { needsUser: null }, { unattendedAccesses: [] }];
    let c = worst;
    for (const [i, reason] of order.entries()) {
      expect(unattendedRefusal(c, at)).toBe(reason);
      c = { ...c, ...fixes[i] };
    }
    expect(unattendedRefusal(c, at)).toBeNull();
  });

  it('refusalReason by state', () => {
    const needs = reach('NEEDS_USER').context;
    expect(refusalReason('SYNCING', idle, false, at)).toBe('SYNC_ACTIVE');
    expect(refusalReason('DISABLED', idle, false, at)).toBe('CONNECTION_DISABLED');
    expect(refusalReason('NEEDS_USER', needs, true, at)).toBe('USER_REQUIRED');
    expect(refusalReason('NEEDS_USER', needs, false, at)).toBeNull();
    expect(refusalReason('IDLE', { ...idle, storedCredentials: false }, false, at)).toBeNull();
  });
});

describe('RECREATED', () => {
  it('brings a DISABLED connection back to IDLE with a fresh count', () => {
    let s = initial();
    for (let i = 0; i < 2; i++) s = sync(s, `s${i}`, T0 + i * HOUR, syncError('INVALID_CREDENTIALS'));
    s = sync(s, 's2', T0 + 2 * HOUR, syncError('CONNECTION_DISABLED', { failureCount: 3 }));
    expect(stateOf(s)).toBe('DISABLED');
    const r = step(s, ev.recreated(T0 + 5 * HOUR));
    expect(stateOf(r)).toBe('IDLE');
    expect(r.context).toMatchObject({ consecutiveFailures: 0, needsUser: null, activeSyncId: null });
    // settings and the account mapping survive
    expect(r.context.storedCredentials).toBe(true);
    expect(r.context.lastSync).toEqual(s.context.lastSync);
    // autosync may run again, and it takes three new counted failures to stop it
    expect(stateOf(step(r, ev.unattended('n1', T0 + 6 * HOUR)))).toBe('SYNCING');
    let n = sync(r, 'n1', T0 + 6 * HOUR, syncError('BANK_REJECTED', { retryable: true }));
    n = sync(n, 'n2', T0 + 7 * HOUR, syncError('BANK_REJECTED', { retryable: true }));
    expect(stateOf(n)).toBe('IDLE');
    expect(sync(n, 'n3', T0 + 8 * HOUR, syncError('BANK_REJECTED', { retryable: true })).context.needsUser?.reason).toBe('FAILURE_LIMIT');
  });

  it.each<ConnectionState>(['IDLE', 'SYNCING', 'NEEDS_USER'])('is ignored in %s', (state) => {
    const s = reach(state);
    const r = step(s, ev.recreated(T0 + DAY));
    expect(stateOf(r)).toBe(state);
    expect(r.context).toEqual(s.context);
  });

  it('DISABLED is left only by RECREATED', () => {
    const s = reach('DISABLED');
    const others = [
      ev.attended('a', T0 + DAY),
      ev.unattended('b', T0 + DAY),
      ev.completed('s-dis', T0 + DAY),
      ev.failed('s-dis', T0 + DAY, syncError('CANCELLED')),
      ev.settings(T0 + DAY, { storedCredentials: true, consentGrantedAt: T0 + DAY }),
    ];
    for (const e of others) expect(stateOf(step(s, e))).toBe('DISABLED');
  });
});

describe('SETTINGS.UPDATE', () => {
  it.each<ConnectionState>(['IDLE', 'SYNCING', 'NEEDS_USER', 'DISABLED'])('applies in %s and keeps the state', (state) => {
    const s = reach(state);
    const u = step(s, ev.settings(T0 + DAY, { storedCredentials: false, hasWebScraping: true, consentGrantedAt: T0 + DAY }));
    expect(stateOf(u)).toBe(state);
    expect(u.context).toEqual({ ...s.context, storedCredentials: false, hasWebScraping: true, consentGrantedAt: T0 + DAY });
  });

  it('omitted fields are kept; consentGrantedAt null clears the consent', () => {
    const s = initial();
    expect(step(s, ev.settings(T0, {})).context).toEqual(s.context);
    expect(step(s, ev.settings(T0, { hasWebScraping: true })).context).toEqual({ ...s.context, hasWebScraping: true });
    expect(step(s, ev.settings(T0, { consentGrantedAt: null })).context.consentGrantedAt).toBeNull();
    expect(step(s, ev.settings(T0, { storedCredentials: false })).context.consentGrantedAt).toBe(CONSENT);
  });

  it('does not clear a user stop nor the failure count', () => {
    let s = sync(initial(), 's1', T0, syncError('INVALID_CREDENTIALS'));
    s = step(s, ev.settings(T0 + HOUR, { storedCredentials: true, consentGrantedAt: T0 + HOUR }));
    expect(stateOf(s)).toBe('NEEDS_USER');
    expect(s.context.needsUser).not.toBeNull();
    expect(s.context.consecutiveFailures).toBe(1);
  });

  it('changing settings during a sync does not affect the running sync', () => {
    let s = step(initial(), ev.unattended('s1', T0));
    s = step(s, ev.settings(T0 + 1, { storedCredentials: false }));
    expect(s.context.activeSyncId).toBe('s1');
    s = step(s, ev.completed('s1', T0 + 2));
    expect(stateOf(s)).toBe('IDLE');
    expect(unattendedRefusal(s.context, T0 + 3)).toBe('NO_STORED_CREDENTIALS');
  });
});

/** Regressions: deviations found while writing these tests, fixed in the machine. */
describe('fixed deviations', () => {
  it('FAILED reports without an error object never stop the connection (no crash), they cool it down', () => {
    let s = sync(initial(), 's1', T0, null);
    s = sync(s, 's2', T0 + HOUR, null);
    s = step(s, ev.attended('s3', T0 + 2 * HOUR));
    const after = step(s, ev.failed('s3', T0 + 2 * HOUR + 1, null));
    expect(stateOf(after)).toBe('IDLE');
    expect(after.context.activeSyncId).toBeNull();
    expect(after.context.transientFailures).toBe(3);
  });

  it('an access upgrade that comes with CONNECTION_DISABLED is still remapped (the new access is not lost)', () => {
    const upgrade = upgradeError(multiUpgrade(), '40002');
    const s = sync(initial(), 's1', T0, { ...upgrade, code: 'CONNECTION_DISABLED' });
    expect(stateOf(s)).toBe('DISABLED');
    // finX has already moved acc-giro to access-2: deleting the connection must also clean up access-2
    expect(s.context.linkedAccessIds).toEqual(['access-2']);
    expect(s.context.accounts['acc-giro']).toEqual({ accessId: 'access-2', supported: true });
  });

  it('RECREATED keeps the unattended accesses: never 8 in 24 h to the same bank account', () => {
    let s = initial();
    // 4 unattended syncs: three successes, then the provider disables the connection
    for (let i = 0; i < 3; i++) s = sync(s, `u${i}`, T0 + i * HOUR, 'ok', true);
    s = sync(s, 'u3', T0 + 3 * HOUR, syncError('CONNECTION_DISABLED'), true);
    expect(stateOf(s)).toBe('DISABLED');
    s = step(s, ev.recreated(T0 + 4 * HOUR));
    // PSD2 RTS 36(5)(b) limits accesses to the account, and recreating the connection does not reset the bank's count
    expect(unattendedRefusal(s.context, T0 + 5 * HOUR)).toBe('UNATTENDED_LIMIT');
  });
});
