/**
 * The persistence contract every store implements (memory, SQLite, PostgreSQL).
 * One `commit` per machine transition writes snapshot, timers, transition history and the effect
 * outbox atomically, fenced by `expectedVersion` so a stale writer can never overwrite newer state.
 */
import type { SyncScope } from '../../machines/canonical.js';
import type { SyncStatus } from '../../machines/synchronization.js';

export interface SyncRecord {
  syncId: string;
  tenantId: string;
  connectionId: string;
  provider: string;
  scope: SyncScope;
  status: SyncStatus;
  /** True until COMPLETED or FAILED; at most one active sync per (tenantId, connectionId). */
  active: boolean;
  providerRef: string | null;
  /** XState persisted snapshot (JSON-serialisable, secret-free). Null until the first commit. */
  snapshot: unknown;
  /** Bumped by every commit; fencing token for concurrent writers. */
  version: number;
  createdAt: number;
  updatedAt: number;
}

export interface NewSync {
  syncId: string;
  tenantId: string;
  connectionId: string;
  provider: string;
  scope: SyncScope;
  createdAt: number;
}

/** A pending delayed event of the machine, owned by the engine (XState drops `after` timers on restore). */
export interface TimerRecord {
  syncId: string;
  /** XState's scheduled-event id, e.g. `xstate.after.nextDelay.sync.RUNNING.Waiting`. */
  timerId: string;
  eventType: string;
  dueAt: number;
}

export type EffectState = 'PENDING' | 'STARTED' | 'DONE' | 'FAILED';

/** Effect journal / outbox row: an effect's intent, its start, and its result, keyed by a stable effect key. */
export interface EffectRecord {
  effectKey: string;
  syncId: string;
  kind: string;
  state: EffectState;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** JSON result (DONE) or failure (FAILED). */
  outcome: unknown;
}

export interface TransitionRecord {
  syncId: string;
  /** 1-based, consecutive per sync. */
  seq: number;
  from: string | null;
  to: string;
  event: string;
  at: number;
}

export interface CommitChange {
  syncId: string;
  expectedVersion: number;
  status: SyncStatus;
  active: boolean;
  providerRef: string | null;
  snapshot: unknown;
  /** Replaces every timer of the sync (stores write only the difference to what is stored). */
  timers: TimerRecord[];
  transitions: Omit<TransitionRecord, 'seq' | 'syncId'>[];
  /** Effects the new state awaits; inserted as PENDING unless already journaled. */
  pendingEffects: { effectKey: string; kind: string }[];
  at: number;
  /** Events this transition causes, appended to the event log in the same transaction (outbox). */
  events?: NewEventRecord[];
}

/**
 * One entry of the durable event log, as written. `eventId` is stable: writing the same id twice keeps the
 * first (a re-run job that re-emits creates no duplicate). The payload is a secret-free JSON view.
 */
export interface NewEventRecord {
  eventId: string;
  name: string;
  tenantId: string;
  connectionId: string;
  syncId: string | null;
  payload: unknown;
  at: number;
}

/** A committed event. `cursor` orders events (commit order); pass it back to read what follows. */
export interface EventRecord extends NewEventRecord {
  /** Insert sequence: unique, increasing per writer; PostgreSQL may commit them out of order, so read by cursor. */
  seq: number;
  cursor: string;
}

export interface EventPage {
  events: EventRecord[];
  /** Read again soon: the page was full, or later events are committed but not yet readable in order. */
  more: boolean;
}

export class InvalidCursorError extends Error {
  override readonly name = 'InvalidCursorError';
  constructor(readonly cursor: string) {
    super(`invalid event cursor ${JSON.stringify(cursor.slice(0, 64))}`);
  }
}

/** The result of one change in `commitMany`: its new version, or why it alone was not written. */
export type CommitResult = { ok: true; version: number } | { ok: false; error: unknown };

/**
 * One write of a group (`Store.writeMany`): a commit, an effect-journal write (`startEffect` /
 * `finishEffect`), a new sync or a connection save. A plain record, so new write kinds can be added without touching the others.
 */
export type StoreWrite =
  | { op: 'commit'; change: CommitChange }
  | { op: 'startEffect'; effectKey: string; syncId: string; kind: string; at: number }
  | { op: 'finishEffect'; effectKey: string; state: 'DONE' | 'FAILED'; outcome: unknown; at: number }
  | { op: 'createSync'; sync: NewSync }
  | { op: 'saveConnection'; record: Omit<ConnectionRecord, 'version'>; expectedVersion: number; events?: NewEventRecord[] };

/** The result of one write in `writeMany`: what the single-write method would have returned, or its error. */
export type WriteResult = { ok: true; value: unknown } | { ok: false; error: unknown };

export class StaleWriteError extends Error {
  override readonly name = 'StaleWriteError';
  constructor(
    readonly syncId: string,
    readonly expectedVersion: number,
  ) {
    super(`stale write to sync ${syncId}: expected version ${expectedVersion} is no longer current`);
  }
}

export class NotFoundError extends Error {
  override readonly name = 'NotFoundError';
}

/** The persisted connection machine of one bank connection (lock, breaker, eligibility, account mapping). */
export interface ConnectionRecord {
  tenantId: string;
  connectionId: string;
  provider: string;
  /** Connection machine state (IDLE, SYNCING, NEEDS_USER, DISABLED). */
  state: string;
  /** Connection machine context (JSON, secret-free). */
  context: unknown;
  version: number;
  updatedAt: number;
}

export interface ConnectionFilter {
  tenantId?: string;
  provider?: string;
  state?: string;
  limit?: number;
}

export interface SyncFilter {
  tenantId?: string;
  connectionId?: string;
  provider?: string;
  active?: boolean;
  status?: SyncStatus;
  /** Created strictly before / at or after this time (epoch ms): filters by age. */
  createdBefore?: number;
  createdAfter?: number;
  /** Last written strictly before this time (epoch ms): with `active`, the stale syncs. */
  updatedBefore?: number;
  /** Keyset paging: only syncs after this one in the newest-first order (the last row of the previous page). */
  after?: { createdAt: number; syncId: string };
  limit?: number;
}

/**
 * What `Store.prune` may delete, by kind: the cutoff (epoch ms) before which rows of that kind are old enough.
 * A kind without a cutoff is left alone. Kinds a store does not hold (e.g. `events` before the event log
 * exists) are ignored; a store that adds a table adds its kind here and to its pruners.
 */
export interface PruneCutoffs {
  /** Finished syncs whose last update (their finish) is older: deleted with their timers, effects and transitions. */
  finishedSyncs?: number;
  /** Transition rows of finished syncs recorded before this (the sync itself is kept). */
  transitions?: number;
  /** Effect journal rows (DONE/FAILED) of finished syncs finished before this. */
  effects?: number;
  /** The durable event log, once a store has one. */
  events?: number;
}
export type PruneKind = keyof PruneCutoffs;

export interface PruneRequest {
  cutoffs: PruneCutoffs;
  /** At most this many rows per kind in this call (one bounded transaction); call again while a count hits it. */
  limit: number;
  /** Count what would go, in a transaction that is rolled back; nothing changes. */
  dryRun?: boolean;
}

/**
 * Rows deleted (or, dry, that would be) per kind. `syncs` counts finished syncs; `transitions` and
 * `effects` include the rows of those syncs. A kind counts at most `limit` rows of its own (the rows that
 * go with a deleted sync come on top).
 */
export interface PruneCounts {
  syncs: number;
  transitions: number;
  effects: number;
  timers: number;
  /** Set by a store that holds a durable event log. */
  events?: number;
}

export interface Store {
  readonly kind: 'memory' | 'sqlite' | 'postgres';
  /** Single-flight: creates the sync unless the connection already has an active one, which is returned instead. */
  createSync(sync: NewSync): Promise<{ sync: SyncRecord; created: boolean }>;
  /** Atomic, fenced write of one transition. Returns the new version; throws StaleWriteError. */
  commit(change: CommitChange): Promise<number>;
  /**
   * Group commit: writes several changes (of different syncs) as one transaction (SQLite) or one round trip
   * (PostgreSQL). Each change is fenced on its own: a stale or failing change fails only itself (its result
   * says why) and the others are written. Resolves once every successful change is durable; rejects only
   * when the group as a whole could not be written (then none of it was).
   */
  commitMany(changes: readonly CommitChange[]): Promise<CommitResult[]>;
  /**
   * Like `commitMany` for a mix of commits and effect-journal writes, applied in order: each write succeeds or
   * fails on its own, exactly as the single-write method would; the successful ones are durable together.
   */
  writeMany(writes: readonly StoreWrite[]): Promise<WriteResult[]>;
  getSync(syncId: string): Promise<SyncRecord | null>;
  findActiveSync(tenantId: string, connectionId: string): Promise<SyncRecord | null>;
  findSyncByProviderRef(provider: string, providerRef: string): Promise<SyncRecord | null>;
  listSyncs(filter?: SyncFilter): Promise<SyncRecord[]>;
  countByStatus(): Promise<Record<string, number>>;
  listTransitions(syncId: string): Promise<TransitionRecord[]>;
  listTimers(syncId: string): Promise<TimerRecord[]>;
  /** Timers due at or before `until`, earliest first. */
  dueTimers(until: number, limit: number): Promise<TimerRecord[]>;
  getEffect(effectKey: string): Promise<EffectRecord | null>;
  /** Marks an effect STARTED (inserting it if absent) and returns the record as it was before, or null. */
  startEffect(effectKey: string, syncId: string, kind: string, at: number): Promise<EffectRecord | null>;
  finishEffect(effectKey: string, state: 'DONE' | 'FAILED', outcome: unknown, at: number): Promise<void>;
  listEffects(syncId: string): Promise<EffectRecord[]>;
  getConnection(tenantId: string, connectionId: string): Promise<ConnectionRecord | null>;
  /**
   * Inserts the connection (expectedVersion 0, absent) or updates it when its stored version equals
   * expectedVersion. Returns the new version; throws StaleWriteError otherwise. `events` are appended to the
   * event log in the same transaction.
   */
  saveConnection(record: Omit<ConnectionRecord, 'version'>, expectedVersion: number, events?: NewEventRecord[]): Promise<number>;
  /** Ordered by tenantId, connectionId. */
  listConnections(filter?: ConnectionFilter): Promise<ConnectionRecord[]>;
  /**
   * Retention: deletes, in one bounded transaction, what is past its cutoff. Never touches an active sync or
   * anything of one, and never the newest sync of a connection (the connection machine may still point at it:
   * a lock left by a crash is settled from it). Idempotent; safe to run from several processes at once.
   */
  prune(request: PruneRequest): Promise<PruneCounts>;
  /**
   * Committed events after `after` (null: from the start) in commit order, at most `limit`. Every event is
   * returned exactly once to a reader that advances its cursor; throws InvalidCursorError for a foreign cursor.
   */
  readEvents(after: string | null, limit: number): Promise<EventPage>;
  /** The cursor of the last readable event (null when the log is empty): "from now on". */
  latestEventCursor(): Promise<string | null>;
  /** Calls `onWake` (best effort) when events may have been committed; returns a function that stops it. */
  watchEvents(onWake: () => void): Promise<() => Promise<void>>;
  /** A named consumer's saved cursor (e.g. the outgoing webhook delivery), or null. */
  getEventCursor(consumer: string): Promise<string | null>;
  saveEventCursor(consumer: string, cursor: string, at: number): Promise<void>;
  close(): Promise<void>;
}
