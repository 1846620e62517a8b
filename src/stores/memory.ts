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
import {
  NotFoundError,
  StaleWriteError,
  type CommitChange,
  type CommitResult,
  type StoreWrite,
  type WriteResult,
  type ConnectionFilter,
  type ConnectionRecord,
  type EffectRecord,
  type NewSync,
  type Store,
  type SyncFilter,
  type SyncRecord,
  type TimerRecord,
  type TransitionRecord,
} from './types.js';

/** What a JSON column would hold: throws (like the SQL stores) for values JSON cannot represent. */
function toJson(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  const text = JSON.stringify(value);
  return text === undefined ? null : (JSON.parse(text) as unknown);
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
  #closed = false;

  async createSync(sync: NewSync): Promise<{ sync: SyncRecord; created: boolean }> {
    this.#open();
    const key = activeKey(sync.tenantId, sync.connectionId);
    const existingId = this.#active.get(key);
    if (existingId !== undefined) {
      return { sync: structuredClone(this.#mustGet(existingId)), created: false };
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
    return { sync: structuredClone(record), created: true };
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
                  : await this.saveConnection(w.record, w.expectedVersion);
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
    return version;
  }

  async getSync(syncId: string): Promise<SyncRecord | null> {
    this.#open();
    const record = this.#syncs.get(syncId);
    return record === undefined ? null : structuredClone(record);
  }

  async findActiveSync(tenantId: string, connectionId: string): Promise<SyncRecord | null> {
    this.#open();
    const id = this.#active.get(activeKey(tenantId, connectionId));
    return id === undefined ? null : structuredClone(this.#mustGet(id));
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
    return best === undefined ? null : structuredClone(best);
  }

  async listSyncs(filter: SyncFilter = {}): Promise<SyncRecord[]> {
    this.#open();
    const out: SyncRecord[] = [];
    for (const s of this.#syncs.values()) {
      if (filter.tenantId !== undefined && s.tenantId !== filter.tenantId) continue;
      if (filter.connectionId !== undefined && s.connectionId !== filter.connectionId) continue;
      if (filter.active !== undefined && s.active !== filter.active) continue;
      if (filter.status !== undefined && s.status !== filter.status) continue;
      out.push(s);
    }
    out.sort(newestFirst);
    const limited = filter.limit === undefined ? out : out.slice(0, clampLimit(filter.limit));
    return structuredClone(limited);
  }

  async countByStatus(): Promise<Record<string, number>> {
    this.#open();
    const counts: Record<string, number> = {};
    for (const s of this.#syncs.values()) counts[s.status] = (counts[s.status] ?? 0) + 1;
    return counts;
  }

  async listTransitions(syncId: string): Promise<TransitionRecord[]> {
    this.#open();
    return structuredClone(this.#transitions.get(syncId) ?? []);
  }

  async listTimers(syncId: string): Promise<TimerRecord[]> {
    this.#open();
    const timers = [...(this.#timers.get(syncId)?.values() ?? [])];
    timers.sort((a, b) => cmp(a.dueAt, b.dueAt) || cmp(a.timerId, b.timerId));
    return structuredClone(timers);
  }

  async dueTimers(until: number, limit: number): Promise<TimerRecord[]> {
    this.#open();
    const due: TimerRecord[] = [];
    for (const timers of this.#timers.values()) {
      for (const t of timers.values()) if (t.dueAt <= until) due.push(t);
    }
    due.sort((a, b) => cmp(a.dueAt, b.dueAt) || cmp(a.syncId, b.syncId) || cmp(a.timerId, b.timerId));
    return structuredClone(due.slice(0, clampLimit(limit)));
  }

  async getEffect(effectKey: string): Promise<EffectRecord | null> {
    this.#open();
    const effect = this.#effects.get(effectKey);
    return effect === undefined ? null : structuredClone(effect);
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
    const previous = structuredClone(before);
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
    return structuredClone(effects);
  }

  async getConnection(tenantId: string, connectionId: string): Promise<ConnectionRecord | null> {
    this.#open();
    const found = this.#connections.get(connectionKey(tenantId, connectionId));
    return found ? structuredClone(found) : null;
  }

  async saveConnection(record: Omit<ConnectionRecord, 'version'>, expectedVersion: number): Promise<number> {
    this.#open();
    const key = connectionKey(record.tenantId, record.connectionId);
    const current = this.#connections.get(key);
    if ((current?.version ?? 0) !== expectedVersion) throw new StaleWriteError(`connection ${record.tenantId}/${record.connectionId}`, expectedVersion);
    const version = expectedVersion + 1;
    this.#connections.set(key, { ...structuredClone(record), context: toJson(record.context), version });
    return version;
  }

  async listConnections(filter: ConnectionFilter = {}): Promise<ConnectionRecord[]> {
    this.#open();
    const all = [...this.#connections.values()]
      .filter((c) => (filter.tenantId === undefined || c.tenantId === filter.tenantId) && (filter.provider === undefined || c.provider === filter.provider) && (filter.state === undefined || c.state === filter.state))
      .sort((a, b) => (a.tenantId === b.tenantId ? a.connectionId.localeCompare(b.connectionId) : a.tenantId.localeCompare(b.tenantId)));
    return structuredClone(filter.limit === undefined ? all : all.slice(0, Math.max(0, Math.floor(filter.limit))));
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
