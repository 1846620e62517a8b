/**
 * In-process Store backed by Maps. Used by tests, the sandbox and benchmarks.
 *
 * Semantics mirror the SQL stores exactly:
 * - every record is deep-copied on the way in and out, so callers can never mutate stored state;
 * - `snapshot` and effect `outcome` are normalised through JSON (like a JSON column would), so a value
 *   reads back as `JSON.parse(JSON.stringify(value ?? null))`;
 * - each method does all of its work synchronously before its promise settles, which makes every
 *   method atomic with respect to the others (no interleaving inside a method).
 */
import { EventEmitter } from 'node:events';
import { jsonCopy, plainCopy } from './plain-copy.js';
import {
  InvalidCursorError,
  NotFoundError,
  StaleWriteError,
  type CommitChange,
  type CommitResult,
  type StoreWrite,
  type WriteResult,
  type ConnectionFilter,
  type ConnectionRecord,
  type EffectRecord,
  type EventPage,
  type EventRecord,
  type NewEventRecord,
  type NewSync,
  type PruneCounts,
  type PruneRequest,
  type Store,
  type SyncFilter,
  type SyncRecord,
  type TimerRecord,
  type TransitionRecord,
} from './types.js';

/** What a JSON column would hold: throws (like the SQL stores) for values JSON cannot represent. */
const toJson = jsonCopy;

/**
 * An event as the log keeps it: its payload as JSON text, as in the SQL stores' column (parsed on read). The log
 * only grows and is rarely read back in-process, so one string per event instead of a copied object tree keeps
 * the collector's work (and the heap) small.
 */
interface StoredEvent {
  eventId: string;
  name: string;
  tenantId: string;
  connectionId: string;
  syncId: string | null;
  payloadJson: string;
  at: number;
  seq: number;
  cursor: string;
}
type PreparedEvent = Omit<StoredEvent, 'seq' | 'cursor'>;

/** Throws (like toJson) for values JSON cannot represent; undefined is stored as null. */
function prepareEvent(e: NewEventRecord): PreparedEvent {
  const payloadJson = e.payload === undefined || e.payload === null ? 'null' : (JSON.stringify(e.payload) ?? 'null');
  return { eventId: e.eventId, name: e.name, tenantId: e.tenantId, connectionId: e.connectionId, syncId: e.syncId, payloadJson, at: e.at };
}

function readEvent(e: StoredEvent): EventRecord {
  return {
    eventId: e.eventId,
    name: e.name,
    tenantId: e.tenantId,
    connectionId: e.connectionId,
    syncId: e.syncId,
    payload: JSON.parse(e.payloadJson) as unknown,
    at: e.at,
    seq: e.seq,
    cursor: e.cursor,
  };
}

/** SQLite and memory cursors: the decimal sequence number of the last event read. */
export function parseSeqCursor(cursor: string | null): number {
  if (cursor === null) return 0;
  if (!/^(0|[1-9][0-9]{0,14})$/.test(cursor)) throw new InvalidCursorError(cursor);
  return Number(cursor);
}

const cmp = (a: string | number, b: string | number): number => (a < b ? -1 : a > b ? 1 : 0);

const clampLimit = (limit: number): number => Math.max(0, Math.floor(limit));

const activeKey = (tenantId: string, connectionId: string): string => `${tenantId}\u0000${connectionId}`;

/** Newest first; ties broken by syncId descending (same order as the SQL stores). */
const newestFirst = (a: SyncRecord, b: SyncRecord): number =>
  cmp(b.createdAt, a.createdAt) || cmp(b.syncId, a.syncId);

const connectionKey = (tenantId: string, connectionId: string): string => `${tenantId}\u0000${connectionId}`;

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;

  readonly #syncs = new Map<string, SyncRecord>();
  /** (tenantId, connectionId) -> syncId of the active sync: the single-flight lock. */
  readonly #active = new Map<string, string>();
  /** syncId -> timerId -> timer. */
  readonly #timers = new Map<string, Map<string, TimerRecord>>();
  readonly #transitions = new Map<string, TransitionRecord[]>();
  readonly #effects = new Map<string, EffectRecord>();
  readonly #connections = new Map<string, ConnectionRecord>();
  readonly #events: StoredEvent[] = [];
  /** Events pruned from the front of #events: the first one left has seq #eventBase + 1. */
  #eventBase = 0;
  readonly #eventIds = new Set<string>();
  readonly #eventCursors = new Map<string, string>();
  readonly #eventSignal = new EventEmitter().setMaxListeners(0);
  #wakePending = false;
  #closed = false;

  async createSync(sync: NewSync): Promise<{ sync: SyncRecord; created: boolean }> {
    this.#open();
    const key = activeKey(sync.tenantId, sync.connectionId);
    const existingId = this.#active.get(key);
    if (existingId !== undefined) {
      return { sync: plainCopy(this.#mustGet(existingId)), created: false };
    }
    if (this.#syncs.has(sync.syncId)) {
      throw new Error(`sync ${sync.syncId} already exists`);
    }
    const record: SyncRecord = {
      syncId: sync.syncId,
      tenantId: sync.tenantId,
      connectionId: sync.connectionId,
      provider: sync.provider,
      scope: sync.scope,
      status: 'QUEUED',
      active: true,
      providerRef: null,
      snapshot: null,
      version: 0,
      createdAt: sync.createdAt,
      updatedAt: sync.createdAt,
    };
    this.#syncs.set(record.syncId, record);
    this.#active.set(key, record.syncId);
    return { sync: plainCopy(record), created: true };
  }

  /** Each change through `commit` (atomic on its own in memory), so a subclass overriding `commit` sees every write. */
  async commitMany(changes: readonly CommitChange[]): Promise<CommitResult[]> {
    this.#open();
    const results: CommitResult[] = [];
    for (const change of changes) {
      try {
        results.push({ ok: true, version: await this.commit(change) });
      } catch (error) {
        results.push({ ok: false, error });
      }
    }
    return results;
  }

  /** Each write through its single-write method (so a subclass overriding one sees every write). */
  async writeMany(writes: readonly StoreWrite[]): Promise<WriteResult[]> {
    this.#open();
    const results: WriteResult[] = [];
    for (const w of writes) {
      try {
        const value =
          w.op === 'commit'
            ? await this.commit(w.change)
            : w.op === 'startEffect'
              ? await this.startEffect(w.effectKey, w.syncId, w.kind, w.at)
              : w.op === 'finishEffect'
                ? await this.finishEffect(w.effectKey, w.state, w.outcome, w.at)
                : w.op === 'createSync'
                  ? await this.createSync(w.sync)
                  : await this.saveConnection(w.record, w.expectedVersion, w.events);
        results.push({ ok: true, value });
      } catch (error) {
        results.push({ ok: false, error });
      }
    }
    return results;
  }

  async commit(change: CommitChange): Promise<number> {
    this.#open();
    const current = this.#syncs.get(change.syncId);
    if (current === undefined || current.version !== change.expectedVersion) {
      throw new StaleWriteError(change.syncId, change.expectedVersion);
    }
    // Validate / prepare everything before the first write so a failure leaves the store untouched.
    const key = activeKey(current.tenantId, current.connectionId);
    if (change.active && !current.active && this.#active.has(key)) {
      throw new Error(
        `cannot reactivate sync ${change.syncId}: connection ${current.connectionId} already has an active sync`,
      );
    }
    const snapshot = toJson(change.snapshot);
    const events = (change.events ?? []).map(prepareEvent);
    const timers = new Map<string, TimerRecord>();
    for (const t of change.timers) {
      timers.set(t.timerId, { syncId: change.syncId, timerId: t.timerId, eventType: t.eventType, dueAt: t.dueAt });
    }
    const history = this.#transitions.get(change.syncId) ?? [];
    const appended: TransitionRecord[] = change.transitions.map((t, i) => ({
      syncId: change.syncId,
      seq: history.length + i + 1,
      from: t.from,
      to: t.to,
      event: t.event,
      at: t.at,
    }));

    const version = current.version + 1;
    const updated: SyncRecord = {
      ...current,
      status: change.status,
      active: change.active,
      providerRef: change.providerRef,
      snapshot,
      version,
      updatedAt: change.at,
    };
    this.#syncs.set(change.syncId, updated);
    if (current.active && !change.active) this.#active.delete(key);
    if (change.active) this.#active.set(key, change.syncId);

    if (timers.size > 0) this.#timers.set(change.syncId, timers);
    else this.#timers.delete(change.syncId);

    this.#transitions.set(change.syncId, history.concat(appended));

    for (const e of change.pendingEffects) {
      if (this.#effects.has(e.effectKey)) continue;
      this.#effects.set(e.effectKey, {
        effectKey: e.effectKey,
        syncId: change.syncId,
        kind: e.kind,
        state: 'PENDING',
        createdAt: change.at,
        startedAt: null,
        finishedAt: null,
        outcome: null,
      });
    }
    this.#appendEvents(events);
    return version;
  }

  #appendEvents(events: PreparedEvent[]): void {
    let appended = 0;
    for (const e of events) {
      if (this.#eventIds.has(e.eventId)) continue;
      this.#eventIds.add(e.eventId);
      const seq = this.#eventBase + this.#events.length + 1;
      this.#events.push({ eventId: e.eventId, name: e.name, tenantId: e.tenantId, connectionId: e.connectionId, syncId: e.syncId, payloadJson: e.payloadJson, at: e.at, seq, cursor: String(seq) });
      appended++;
    }
    // One wake-up per microtask turn however many commits appended (a wake-up only says "read the log").
    if (appended > 0 && !this.#wakePending) {
      this.#wakePending = true;
      queueMicrotask(() => {
        this.#wakePending = false;
        this.#eventSignal.emit('wake');
      });
    }
  }

  async readEvents(after: string | null, limit: number): Promise<EventPage> {
    this.#open();
    const start = Math.max(0, parseSeqCursor(after) - this.#eventBase);
    const page = this.#events.slice(start, start + clampLimit(limit));
    return { events: page.map(readEvent), more: start + page.length < this.#events.length };
  }

  async latestEventCursor(): Promise<string | null> {
    this.#open();
    return this.#events.at(-1)?.cursor ?? null;
  }

  async watchEvents(onWake: () => void): Promise<() => Promise<void>> {
    this.#eventSignal.on('wake', onWake);
    return async () => {
      this.#eventSignal.off('wake', onWake);
    };
  }

  async getEventCursor(consumer: string): Promise<string | null> {
    this.#open();
    return this.#eventCursors.get(consumer) ?? null;
  }

  async saveEventCursor(consumer: string, cursor: string): Promise<void> {
    this.#open();
    parseSeqCursor(cursor);
    this.#eventCursors.set(consumer, cursor);
  }

  async getSync(syncId: string): Promise<SyncRecord | null> {
    this.#open();
    const record = this.#syncs.get(syncId);
    return record === undefined ? null : plainCopy(record);
  }

  async findActiveSync(tenantId: string, connectionId: string): Promise<SyncRecord | null> {
    this.#open();
    const id = this.#active.get(activeKey(tenantId, connectionId));
    return id === undefined ? null : plainCopy(this.#mustGet(id));
  }

  async findSyncByProviderRef(provider: string, providerRef: string): Promise<SyncRecord | null> {
    this.#open();
    let best: SyncRecord | undefined;
    for (const s of this.#syncs.values()) {
      if (s.provider !== provider || s.providerRef !== providerRef) continue;
      // Prefer an active sync, then the newest.
      if (best === undefined) best = s;
      else if (s.active !== best.active ? s.active : newestFirst(s, best) < 0) best = s;
    }
    return best === undefined ? null : plainCopy(best);
  }

  async listSyncs(filter: SyncFilter = {}): Promise<SyncRecord[]> {
    this.#open();
    const out: SyncRecord[] = [];
    for (const s of this.#syncs.values()) {
      if (filter.tenantId !== undefined && s.tenantId !== filter.tenantId) continue;
      if (filter.connectionId !== undefined && s.connectionId !== filter.connectionId) continue;
      if (filter.active !== undefined && s.active !== filter.active) continue;
      if (filter.status !== undefined && s.status !== filter.status) continue;
      if (filter.provider !== undefined && s.provider !== filter.provider) continue;
      if (filter.createdBefore !== undefined && !(s.createdAt < filter.createdBefore)) continue;
      if (filter.createdAfter !== undefined && !(s.createdAt >= filter.createdAfter)) continue;
      if (filter.updatedBefore !== undefined && !(s.updatedAt < filter.updatedBefore)) continue;
      if (filter.after !== undefined && !(newestFirst(filter.after as SyncRecord, s) < 0)) continue;
      out.push(s);
    }
    out.sort(newestFirst);
    const limited = filter.limit === undefined ? out : out.slice(0, clampLimit(filter.limit));
    return plainCopy(limited);
  }

  async countByStatus(): Promise<Record<string, number>> {
    this.#open();
    const counts: Record<string, number> = {};
    for (const s of this.#syncs.values()) counts[s.status] = (counts[s.status] ?? 0) + 1;
    return counts;
  }

  async listTransitions(syncId: string): Promise<TransitionRecord[]> {
    this.#open();
    return plainCopy(this.#transitions.get(syncId) ?? []);
  }

  async listTimers(syncId: string): Promise<TimerRecord[]> {
    this.#open();
    const timers = [...(this.#timers.get(syncId)?.values() ?? [])];
    timers.sort((a, b) => cmp(a.dueAt, b.dueAt) || cmp(a.timerId, b.timerId));
    return plainCopy(timers);
  }

  async dueTimers(until: number, limit: number): Promise<TimerRecord[]> {
    this.#open();
    const due: TimerRecord[] = [];
    for (const timers of this.#timers.values()) {
      for (const t of timers.values()) if (t.dueAt <= until) due.push(t);
    }
    due.sort((a, b) => cmp(a.dueAt, b.dueAt) || cmp(a.syncId, b.syncId) || cmp(a.timerId, b.timerId));
    return plainCopy(due.slice(0, clampLimit(limit)));
  }

  async getEffect(effectKey: string): Promise<EffectRecord | null> {
    this.#open();
    const effect = this.#effects.get(effectKey);
    return effect === undefined ? null : plainCopy(effect);
  }

  async startEffect(effectKey: string, syncId: string, kind: string, at: number): Promise<EffectRecord | null> {
    this.#open();
    const before = this.#effects.get(effectKey);
    if (before === undefined) {
      if (!this.#syncs.has(syncId)) throw new NotFoundError(`sync ${syncId} not found`);
      this.#effects.set(effectKey, {
        effectKey,
        syncId,
        kind,
        state: 'STARTED',
        createdAt: at,
        startedAt: at,
        finishedAt: null,
        outcome: null,
      });
      return null;
    }
    const previous = plainCopy(before);
    if (before.state === 'PENDING' || before.state === 'STARTED') {
      this.#effects.set(effectKey, { ...before, state: 'STARTED', startedAt: at });
    }
    return previous;
  }

  async finishEffect(effectKey: string, state: 'DONE' | 'FAILED', outcome: unknown, at: number): Promise<void> {
    this.#open();
    const effect = this.#effects.get(effectKey);
    if (effect === undefined) throw new NotFoundError(`effect ${effectKey} not found`);
    this.#effects.set(effectKey, { ...effect, state, outcome: toJson(outcome), finishedAt: at });
  }

  async listEffects(syncId: string): Promise<EffectRecord[]> {
    this.#open();
    const effects = [...this.#effects.values()].filter((e) => e.syncId === syncId);
    effects.sort((a, b) => cmp(a.createdAt, b.createdAt) || cmp(a.effectKey, b.effectKey));
    return plainCopy(effects);
  }

  async getConnection(tenantId: string, connectionId: string): Promise<ConnectionRecord | null> {
    this.#open();
    const found = this.#connections.get(connectionKey(tenantId, connectionId));
    return found ? plainCopy(found) : null;
  }

  async saveConnection(record: Omit<ConnectionRecord, 'version'>, expectedVersion: number, events: NewEventRecord[] = []): Promise<number> {
    this.#open();
    const key = connectionKey(record.tenantId, record.connectionId);
    const current = this.#connections.get(key);
    if ((current?.version ?? 0) !== expectedVersion) throw new StaleWriteError(`connection ${record.tenantId}/${record.connectionId}`, expectedVersion);
    const version = expectedVersion + 1;
    const prepared = events.map(prepareEvent);
    // The context is stored JSON-normalised: copy the rest only (same key order as the record).
    this.#connections.set(key, { ...plainCopy({ ...record, context: null }), context: toJson(record.context), version });
    this.#appendEvents(prepared);
    return version;
  }

  async listConnections(filter: ConnectionFilter = {}): Promise<ConnectionRecord[]> {
    this.#open();
    const all = [...this.#connections.values()]
      .filter((c) => (filter.tenantId === undefined || c.tenantId === filter.tenantId) && (filter.provider === undefined || c.provider === filter.provider) && (filter.state === undefined || c.state === filter.state))
      .sort((a, b) => (a.tenantId === b.tenantId ? a.connectionId.localeCompare(b.connectionId) : a.tenantId.localeCompare(b.tenantId)));
    return plainCopy(filter.limit === undefined ? all : all.slice(0, Math.max(0, Math.floor(filter.limit))));
  }

  async prune(request: PruneRequest): Promise<PruneCounts> {
    this.#open();
    const limit = clampLimit(request.limit);
    const { finishedSyncs, transitions: transitionsBefore, effects: effectsBefore, events: eventsBefore } = request.cutoffs;
    const counts: PruneCounts = { syncs: 0, transitions: 0, effects: 0, timers: 0 };
    // The newest sync of each connection stays (the connection machine may still point at it).
    const newest = new Map<string, SyncRecord>();
    for (const s of this.#syncs.values()) {
      const key = activeKey(s.tenantId, s.connectionId);
      const best = newest.get(key);
      if (best === undefined || newestFirst(s, best) < 0) newest.set(key, s);
    }
    const byAge = (a: SyncRecord, b: SyncRecord) => cmp(a.updatedAt, b.updatedAt) || cmp(a.syncId, b.syncId);
    const doomed = finishedSyncs === undefined
      ? []
      : [...this.#syncs.values()]
          .filter((s) => !s.active && s.updatedAt < finishedSyncs && newest.get(activeKey(s.tenantId, s.connectionId)) !== s)
          .sort(byAge)
          .slice(0, limit);
    const gone = new Set(doomed.map((s) => s.syncId));
    counts.syncs = doomed.length;
    for (const id of gone) {
      counts.transitions += this.#transitions.get(id)?.length ?? 0;
      counts.timers += this.#timers.get(id)?.size ?? 0;
    }
    const doomedEffects = [...this.#effects.values()].filter((e) => gone.has(e.syncId));
    const finished = (syncId: string) => !gone.has(syncId) && this.#syncs.get(syncId)?.active === false;
    // Old rows of finished syncs that are kept, oldest first, at most `limit` of each kind.
    const oldTransitions = transitionsBefore === undefined
      ? []
      : [...this.#transitions.entries()]
          .filter(([syncId]) => finished(syncId))
          .flatMap(([, rows]) => rows.filter((t) => t.at < transitionsBefore))
          .sort((a, b) => cmp(a.at, b.at) || cmp(a.syncId, b.syncId) || cmp(a.seq, b.seq))
          .slice(0, limit);
    const effectAt = (e: EffectRecord) => e.finishedAt ?? e.startedAt ?? e.createdAt;
    const oldEffects = effectsBefore === undefined
      ? []
      : [...this.#effects.values()]
          .filter((e) => finished(e.syncId) && effectAt(e) < effectsBefore)
          .sort((a, b) => cmp(effectAt(a), effectAt(b)) || cmp(a.effectKey, b.effectKey))
          .slice(0, limit);
    counts.transitions += oldTransitions.length;
    counts.effects = doomedEffects.length + oldEffects.length;
    // The log is appended in time order: its old events are a prefix.
    let oldEvents = 0;
    if (eventsBefore !== undefined) {
      while (oldEvents < limit && oldEvents < this.#events.length && this.#events[oldEvents]!.at < eventsBefore) oldEvents++;
      counts.events = oldEvents;
    }
    if (request.dryRun) return counts;
    for (const e of this.#events.splice(0, oldEvents)) this.#eventIds.delete(e.eventId);
    this.#eventBase += oldEvents;
    for (const id of gone) {
      this.#syncs.delete(id);
      this.#transitions.delete(id);
      this.#timers.delete(id);
    }
    for (const e of [...doomedEffects, ...oldEffects]) this.#effects.delete(e.effectKey);
    const dropped = new Set(oldTransitions);
    for (const syncId of new Set(oldTransitions.map((t) => t.syncId))) {
      this.#transitions.set(syncId, (this.#transitions.get(syncId) ?? []).filter((t) => !dropped.has(t)));
    }
    return counts;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #open(): void {
    if (this.#closed) throw new Error('MemoryStore is closed');
  }

  #mustGet(syncId: string): SyncRecord {
    const record = this.#syncs.get(syncId);
    if (record === undefined) throw new Error(`internal: active index points at missing sync ${syncId}`);
    return record;
  }
}
