/**
 * The xs2a.api bank connection's sync lifecycle as the provider defines it (seed 003), as a pure machine.
 *
 *   ACTIVE --SYNC--> SYNCING { Requested -> Running | AwaitingUser (wizard) -> Resumed }
 *   SYNCING --SYNC.SUCCEEDED--> ACTIVE (sync_fail_counter = 0)
 *   SYNCING --SYNC.FAILED--> INACTIVE (sync_active = false, counter + 1) | DISABLED (3rd failure in a row)
 *   INACTIVE --SYNC (force: true)--> SYNCING; without `force` the provider refuses
 *   DISABLED refuses every sync for good: delete the connection and create it again (DELETE -> DELETED)
 *   RESET (any time, always a new wizard_session_key) -> SYNCING.AwaitingUser, except DISABLED which stays
 *
 * Pure: no I/O, no clock. "Today" arrives with the SYNC event (consent_valid_until is a calendar date).
 * The adapter resolves a provider reading to a snapshot of this machine (`xs2aSnapshot`), asks it whether a
 * sync may be requested (`xs2aSyncDecision`) and reads the canonical status and `progress` rank of a reading
 * from the state's meta (`xs2aReading`). Ranks grow monotonically through one sync attempt, so a late
 * webhook ("sync started" after the wizard was shown) is recognised as stale by the synchronization machine.
 */
import { assign, setup, transition, type SnapshotFrom, type StateValue } from 'xstate';

/** After this many failed syncs in a row the provider disables the connection. */
export const XS2A_MAX_FAILURES = 3;

/** Why the provider refuses a sync request. */
export type Xs2aRefusal = 'INACTIVE' | 'DISABLED' | 'CONSENT_EXPIRED' | 'SYNC_IN_PROGRESS' | 'DELETED';
export type Xs2aAttemptOutcome = 'SUCCEEDED' | 'FAILED' | 'WIZARD_EXPIRED';

export interface Xs2aConnectionContext {
  /** sync_fail_counter: failed syncs in a row. */
  failCounter: number;
  /** consent_valid_until (YYYY-MM-DD) or null when the provider does not say. */
  consentValidUntil: string | null;
  /** Number of the current or last sync attempt (0: never synced). */
  attempt: number;
  /** The current attempt was requested with `force: true`. */
  forced: boolean;
  /** What started the current attempt: a sync request or a reset. */
  origin: 'sync' | 'reset' | null;
  /** wizard_session_key of the pending user interaction, if any. */
  wizardKey: string | null;
  lastOutcome: Xs2aAttemptOutcome | null;
  /** sync_message of the last failure. */
  lastMessage: string | null;
  /** Why the last SYNC request was refused (null when it was accepted). */
  refusal: Xs2aRefusal | null;
}

export type Xs2aConnectionEvent =
  /** The client asks for a sync (POST .../sync); `today` is the caller's calendar date (YYYY-MM-DD). */
  | { type: 'SYNC'; force?: boolean; today: string }
  /** The provider answered 204: the sync runs in the background. */
  | { type: 'SYNC.BACKGROUND' }
  /** The provider answered 202 with a wizard_session_key: the user must act first. */
  | { type: 'SYNC.USER_REQUIRED'; wizardKey: string }
  | { type: 'WIZARD.COMPLETED' }
  /** The user never finished the wizard; not a sync failure (the counter is unchanged). */
  | { type: 'WIZARD.EXPIRED' }
  | { type: 'SYNC.SUCCEEDED' }
  | { type: 'SYNC.FAILED'; message?: string }
  /** POST .../reset: always answered 202 with a new wizard_session_key. */
  | { type: 'RESET'; wizardKey: string }
  | { type: 'DELETE' };

export interface Xs2aConnectionInput {
  consentValidUntil?: string | null;
  failCounter?: number;
}

/** Canonical status and provider progress rank of a state (see Observation.progress). */
export interface Xs2aStateMeta {
  /** Set for the in-flight states; at-rest states take theirs from the last attempt's outcome. */
  canonical?: 'QUEUED' | 'RUNNING' | 'AWAIT_AUTH';
  progress: number;
}

/** Ranks within one attempt: requested < running < waiting for the user < running again < finished. */
export const XS2A_PROGRESS = { REQUESTED: 1, RUNNING: 2, AWAITING_USER: 3, RESUMED: 4, FINISHED: 5 } as const;

const meta = (m: Xs2aStateMeta) => m;

export const xs2aConnectionMachine = setup({
  types: {
    context: {} as Xs2aConnectionContext,
    events: {} as Xs2aConnectionEvent,
    input: {} as Xs2aConnectionInput,
  },
  guards: {
    /** consent_valid_until lies before the caller's today. */
    consentExpired: ({ context, event }) =>
      event.type === 'SYNC' && context.consentValidUntil !== null && event.today > context.consentValidUntil,
    forced: ({ event }) => event.type === 'SYNC' && event.force === true,
    /** This failure is the third in a row. */
    reachesMaxFailures: ({ context }) => context.failCounter + 1 >= XS2A_MAX_FAILURES,
    hadFailures: ({ context }) => context.failCounter > 0,
  },
  actions: {
    startAttempt: assign(({ context, event }) => ({
      attempt: context.attempt + 1,
      forced: event.type === 'SYNC' && event.force === true,
      origin: 'sync' as const,
      wizardKey: null,
      lastOutcome: null,
      refusal: null,
    })),
    startReset: assign(({ context, event }) => ({
      attempt: context.attempt + 1,
      forced: false,
      origin: 'reset' as const,
      wizardKey: event.type === 'RESET' ? event.wizardKey : null,
      lastOutcome: null,
      refusal: null,
    })),
    /** A reset of a disabled connection still hands out a new key, but nothing can sync it again. */
    issueWizardKey: assign({ wizardKey: ({ event }) => (event.type === 'RESET' ? event.wizardKey : null) }),
    recordWizard: assign({ wizardKey: ({ event }) => (event.type === 'SYNC.USER_REQUIRED' ? event.wizardKey : null) }),
    recordSuccess: assign({ failCounter: 0, lastOutcome: 'SUCCEEDED' as const, lastMessage: null, wizardKey: null }),
    recordFailure: assign(({ context, event }) => ({
      failCounter: context.failCounter + 1,
      lastOutcome: 'FAILED' as const,
      lastMessage: event.type === 'SYNC.FAILED' ? (event.message ?? null) : null,
      wizardKey: null,
    })),
    recordWizardExpired: assign({ lastOutcome: 'WIZARD_EXPIRED' as const, wizardKey: null }),
    refuseInactive: assign({ refusal: 'INACTIVE' as Xs2aRefusal }),
    refuseDisabled: assign({ refusal: 'DISABLED' as Xs2aRefusal }),
    refuseConsentExpired: assign({ refusal: 'CONSENT_EXPIRED' as Xs2aRefusal }),
    refuseInProgress: assign({ refusal: 'SYNC_IN_PROGRESS' as Xs2aRefusal }),
  },
}).createMachine({
  id: 'xs2aConnection',
  context: ({ input }) => ({
    failCounter: input.failCounter ?? 0,
    consentValidUntil: input.consentValidUntil ?? null,
    attempt: 0,
    forced: false,
    origin: null,
    wizardKey: null,
    lastOutcome: null,
    lastMessage: null,
    refusal: null,
  }),
  initial: 'ACTIVE',
  states: {
    /** sync_active = true, status READY. */
    ACTIVE: {
      meta: meta({ progress: XS2A_PROGRESS.FINISHED }),
      on: {
        SYNC: [
          { guard: 'consentExpired', actions: 'refuseConsentExpired' },
          { target: 'SYNCING', actions: 'startAttempt' },
        ],
        RESET: { target: 'SYNCING.AwaitingUser', actions: 'startReset' },
        DELETE: 'DELETED',
      },
    },
    /** sync_active = false after a failure: automatic syncs stopped; only a forced sync or a reset goes on. */
    INACTIVE: {
      meta: meta({ progress: XS2A_PROGRESS.FINISHED }),
      on: {
        SYNC: [
          { guard: 'consentExpired', actions: 'refuseConsentExpired' },
          { guard: 'forced', target: 'SYNCING', actions: 'startAttempt' },
          { actions: 'refuseInactive' },
        ],
        RESET: { target: 'SYNCING.AwaitingUser', actions: 'startReset' },
        DELETE: 'DELETED',
      },
    },
    SYNCING: {
      initial: 'Requested',
      on: {
        // Never two syncs of one connection at once: a second request joins the running one.
        SYNC: { actions: 'refuseInProgress' },
        RESET: { target: '.AwaitingUser', reenter: true, actions: 'startReset' },
        'SYNC.SUCCEEDED': { target: 'ACTIVE', actions: 'recordSuccess' },
        'SYNC.FAILED': [
          { guard: 'reachesMaxFailures', target: 'DISABLED', actions: 'recordFailure' },
          { target: 'INACTIVE', actions: 'recordFailure' },
        ],
        DELETE: 'DELETED',
      },
      states: {
        Requested: {
          meta: meta({ canonical: 'QUEUED', progress: XS2A_PROGRESS.REQUESTED }),
          on: {
            'SYNC.BACKGROUND': 'Running',
            'SYNC.USER_REQUIRED': { target: 'AwaitingUser', actions: 'recordWizard' },
          },
        },
        Running: {
          meta: meta({ canonical: 'RUNNING', progress: XS2A_PROGRESS.RUNNING }),
        },
        /** 202 + wizard_session_key: the user completes the xs2a wizard. */
        AwaitingUser: {
          meta: meta({ canonical: 'AWAIT_AUTH', progress: XS2A_PROGRESS.AWAITING_USER }),
          on: {
            'WIZARD.COMPLETED': 'Resumed',
            'WIZARD.EXPIRED': [
              { guard: 'hadFailures', target: '#xs2aConnection.INACTIVE', actions: 'recordWizardExpired' },
              { target: '#xs2aConnection.ACTIVE', actions: 'recordWizardExpired' },
            ],
          },
        },
        /** Running again after the user completed the wizard. */
        Resumed: {
          meta: meta({ canonical: 'RUNNING', progress: XS2A_PROGRESS.RESUMED }),
        },
      },
    },
    /** status DISABLED: three failures in a row. Never syncs again; delete and recreate. */
    DISABLED: {
      meta: meta({ progress: XS2A_PROGRESS.FINISHED }),
      on: {
        SYNC: { actions: 'refuseDisabled' },
        RESET: { actions: 'issueWizardKey' },
        DELETE: 'DELETED',
      },
    },
    DELETED: {
      type: 'final',
      meta: meta({ progress: XS2A_PROGRESS.FINISHED }),
    },
  },
});

export type Xs2aConnectionMachine = typeof xs2aConnectionMachine;
export type Xs2aConnectionSnapshot = SnapshotFrom<Xs2aConnectionMachine>;

/** The snapshot for a state value and what is known of the connection (from a provider reading). */
export function xs2aSnapshot(value: StateValue, context: Partial<Xs2aConnectionContext> = {}): Xs2aConnectionSnapshot {
  return xs2aConnectionMachine.resolveState({
    value,
    context: {
      failCounter: 0,
      consentValidUntil: null,
      attempt: 0,
      forced: false,
      origin: null,
      wizardKey: null,
      lastOutcome: null,
      lastMessage: null,
      refusal: null,
      ...context,
    },
  });
}

export type Xs2aSyncDecision =
  | { allowed: true; snapshot: Xs2aConnectionSnapshot }
  | { allowed: false; refusal: Xs2aRefusal; snapshot: Xs2aConnectionSnapshot };

/** Would the provider accept a sync request now? (The machine's answer to SYNC, computed purely.) */
export function xs2aSyncDecision(snapshot: Xs2aConnectionSnapshot, request: { force: boolean; today: string }): Xs2aSyncDecision {
  if (snapshot.status === 'done') return { allowed: false, refusal: 'DELETED', snapshot };
  const [next] = transition(xs2aConnectionMachine, snapshot, { type: 'SYNC', force: request.force, today: request.today });
  if (next.matches('SYNCING') && next.context.attempt > snapshot.context.attempt) return { allowed: true, snapshot: next };
  return { allowed: false, refusal: next.context.refusal ?? 'SYNC_IN_PROGRESS', snapshot: next };
}

export interface Xs2aReading {
  status: 'QUEUED' | 'RUNNING' | 'AWAIT_AUTH' | 'COMPLETED' | 'FAILED';
  progress: number;
  /** The connection can never sync again. */
  disabled: boolean;
}

/** Canonical status and progress rank of a snapshot (at-rest states report the last attempt's outcome). */
export function xs2aReading(snapshot: Xs2aConnectionSnapshot): Xs2aReading {
  const metas = Object.values(snapshot.getMeta()) as Xs2aStateMeta[];
  const progress = Math.max(0, ...metas.map((m) => m.progress));
  const canonical = metas.map((m) => m.canonical).find((c) => c !== undefined);
  const disabled = snapshot.matches('DISABLED');
  if (canonical) return { status: canonical, progress, disabled };
  const succeeded = snapshot.context.lastOutcome === 'SUCCEEDED' && !disabled && snapshot.status !== 'done';
  return { status: succeeded ? 'COMPLETED' : 'FAILED', progress, disabled };
}
