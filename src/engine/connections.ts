/**
 * Persists and advances the connection machine of each bank connection. The machine is pure and has no
 * timers or effects, so it is stepped with its own `getInitialSnapshot` / `transition` (what xstate's
 * `getNextSnapshot` does) rather than hosted as a live actor. Writes are fenced by version and retried on a
 * concurrent update (another request or process moved it).
 */
import { CONSENT_WARNING_MS } from './consent.js';
import { inertActorScope } from './xstate-internals.js';
import {
  connectionMachine,
  consentExpiry,
  isRetired,
  nextUnattendedAt,
  refusalReason,
  type ConnectionContext,
  type ConnectionEvent,
  type ConnectionInput,
  type ConnectionState,
  type RefusalReason,
} from '../../machines/connection.js';
import { StaleWriteError, type ConnectionRecord, type NewEventRecord, type Store } from '../stores/types.js';

export interface ConnectionOutcome {
  view: ConnectionView;
  before: ConnectionState;
  previous: ConnectionContext | null;
  changed: boolean;
}

type ConnectionSnapshot = ReturnType<typeof connectionMachine.resolveState>;
type ConnectionScope = Parameters<typeof connectionMachine.transition>[2];

/** One inert scope for every step of the connection machine (see inertActorScope). */
let inertScope: ConnectionScope | null = null;
const connectionScope = (): ConnectionScope =>
  (inertScope ??= inertActorScope<ConnectionScope>(connectionMachine, { tenantId: '', connectionId: '', provider: '' }));

export interface ConnectionView extends ConnectionContext {
  state: ConnectionState;
  version: number;
  /** Why an unattended (background) sync would be refused now, or null when autosync may run. */
  autosyncRefusal: RefusalReason | null;
  /**
   * When autosync may run again, for refusals that pass with time (cooldown, Retry-After, the PSD2 budget);
   * null when it may run now or only the user can unblock it.
   */
  nextAttemptAt: number | null;
  /** When the consent runs out (calendar term in the provider's zone), or null without a consent. */
  consentExpiresAt: number | null;
  /** The consent runs out within 7 days: the app should ask the user to renew it. */
  consentExpiresSoon: boolean;
  /**
   * An access upgrade moved all its accounts to the connections in linkedAccessIds (state RETIRED, since
   * `retiredAt`): nothing is synced here any more, the moved accounts are synced as those connections.
   */
  retired: boolean;
}

const MAX_RETRIES = 8;

export class ConnectionService {
  constructor(
    /** Reads from the store; writes through the engine's group-commit pipeline. */
    private readonly store: Pick<Store, 'getConnection' | 'saveConnection'>,
    private readonly now: () => number,
  ) {}

  private snapshotOf(record: ConnectionRecord): ConnectionSnapshot {
    return connectionMachine.resolveState({ value: record.state, context: record.context as ConnectionContext });
  }

  private initial(input: ConnectionInput): ConnectionSnapshot {
    return connectionMachine.getInitialSnapshot(connectionScope(), input);
  }

  toView(snapshot: ConnectionSnapshot, version: number): ConnectionView {
    const state = snapshot.value as ConnectionState;
    const now = this.now();
    const expiry = consentExpiry(snapshot.context);
    return {
      ...snapshot.context,
      state,
      version,
      autosyncRefusal: refusalReason(state, snapshot.context, true, now),
      nextAttemptAt: nextUnattendedAt(state, snapshot.context, now),
      consentExpiresAt: expiry,
      consentExpiresSoon: expiry !== null && expiry > now && expiry - now <= CONSENT_WARNING_MS,
      retired: state === 'RETIRED' || isRetired(snapshot.context),
      retiredAt: snapshot.context.retiredAt ?? null,
    };
  }

  /**
   * Records the consent warning when the connection is inside the warning window and was not yet warned for
   * this consent. Returns the warned view only to the one caller whose write recorded it (exactly once per
   * consent, however many processes look), else null.
   */
  /**
   * Records the consent warning when the connection is inside the warning window and not yet warned for this
   * consent. Returns the events `warningEvents` names for the warned view: written with that record (one writer
   * wins), empty when nothing was due or another process warned first.
   */
  async warnConsentIfDue(view: ConnectionView, warningEvents: (warned: ConnectionView) => NewEventRecord[]): Promise<NewEventRecord[]> {
    const now = this.now();
    const expiry = consentExpiry(view);
    if (view.state === 'RETIRED' || expiry === null || expiry <= now || expiry - now > CONSENT_WARNING_MS || view.consentWarnedAt != null) return [];
    const { events } = await this.apply(
      { tenantId: view.tenantId, connectionId: view.connectionId, provider: view.provider },
      { type: 'CONSENT.WARNED', at: now },
      ({ view: warned, previous }) => (previous !== null && previous.consentWarnedAt == null && warned.consentWarnedAt != null ? warningEvents(warned) : []),
    );
    return events;
  }

  async get(tenantId: string, connectionId: string): Promise<ConnectionView | null> {
    const record = await this.store.getConnection(tenantId, connectionId);
    return record ? this.toView(this.snapshotOf(record), record.version) : null;
  }

  /** The connection as it is, or as it would be when first seen (not yet stored). */
  async peek(input: ConnectionInput): Promise<ConnectionView> {
    return (await this.get(input.tenantId, input.connectionId)) ?? this.toView(this.initial(input), 0);
  }

  /**
   * Applies one event (creating the connection from `input` if it is new) and stores the result.
   * Returns the new view and whether the event changed the machine's state value. `eventsFor` names the events
   * the outcome causes: they are written with the connection, in its transaction, and returned as `events`
   * (when nothing changed, nothing is written: they are returned for this process only).
   */
  async apply(
    input: ConnectionInput,
    event: ConnectionEvent,
    eventsFor?: (outcome: ConnectionOutcome) => NewEventRecord[],
  ): Promise<ConnectionOutcome & { events: NewEventRecord[] }> {
    for (let attempt = 0; ; attempt++) {
      const record = await this.store.getConnection(input.tenantId, input.connectionId);
      const current = record ? this.snapshotOf(record) : this.initial({ registeredAt: event.at, ...input });
      const next = connectionMachine.transition(current, event, connectionScope());
      const before = current.value as ConnectionState;
      // The state value first: a transition that moved the machine needs no comparison of the contexts.
      if (next === current || (next.value === current.value && JSON.stringify(next.context) === JSON.stringify(current.context))) {
        const outcome = { view: this.toView(current, record?.version ?? 0), before, previous: record ? current.context : null, changed: false };
        return { ...outcome, events: eventsFor?.(outcome) ?? [] };
      }
      const outcome = { view: this.toView(next, (record?.version ?? 0) + 1), before, previous: record ? current.context : null, changed: next.value !== current.value };
      const events = eventsFor?.(outcome) ?? [];
      try {
        await this.store.saveConnection(
          {
            tenantId: input.tenantId,
            connectionId: input.connectionId,
            provider: next.context.provider,
            state: next.value as string,
            context: next.context,
            updatedAt: this.now(),
          },
          record?.version ?? 0,
          events,
        );
        return { ...outcome, events };
      } catch (error) {
        if (!(error instanceof StaleWriteError) || attempt >= MAX_RETRIES) throw error;
      }
    }
  }
}
