/**
 * SQLite Store (better-sqlite3): WAL journal, one connection per store, prepared statements.
 *
 * The single-flight rule (at most one active sync per tenant + connection) is enforced by the database
 * through a partial unique index, so it also holds across several processes sharing one file.
 * better-sqlite3 is synchronous; the async methods only wrap it to satisfy the Store contract.
 */
import Database from 'better-sqlite3';
import { BackgroundCheckpointer } from './sqlite-checkpointer.js';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { StorageError, toStorageError } from './errors.js';
import { EventEmitter } from 'node:events';
import { parseSeqCursor } from './memory.js';
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
  type EffectState,
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
import type { SyncScope } from '../../machines/canonical.js';
import type { SyncStatus } from '../../machines/synchronization.js';

export interface SqliteMigration {
  version: number;
  name: string;
  sql: string;
}

/** Append-only: never edit a shipped migration, add a new one with the next version. */
export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE syncs (
        sync_id       TEXT PRIMARY KEY,
        tenant_id     TEXT NOT NULL,
        connection_id TEXT NOT NULL,
        provider      TEXT NOT NULL,
        scope         TEXT NOT NULL,
        status        TEXT NOT NULL,
        active        INTEGER NOT NULL CHECK (active IN (0, 1)),
        provider_ref  TEXT,
        snapshot      TEXT,
        version       INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
      );
      -- The single-flight lock: at most one active sync per (tenant, connection).
      CREATE UNIQUE INDEX syncs_one_active_per_connection ON syncs (tenant_id, connection_id) WHERE active = 1;
      CREATE INDEX syncs_provider_ref ON syncs (provider, provider_ref);
      CREATE INDEX syncs_created_at ON syncs (created_at);

      CREATE TABLE timers (
        sync_id    TEXT NOT NULL REFERENCES syncs (sync_id),
        timer_id   TEXT NOT NULL,
        event_type TEXT NOT NULL,
        due_at     INTEGER NOT NULL,
        PRIMARY KEY (sync_id, timer_id)
      );
      CREATE INDEX timers_due_at ON timers (due_at);

      CREATE TABLE effects (
        effect_key  TEXT PRIMARY KEY,
        sync_id     TEXT NOT NULL REFERENCES syncs (sync_id),
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('PENDING', 'STARTED', 'DONE', 'FAILED')),
        created_at  INTEGER NOT NULL,
        started_at  INTEGER,
        finished_at INTEGER,
        outcome     TEXT
      );
      CREATE INDEX effects_sync_id ON effects (sync_id);

      CREATE TABLE transitions (
        sync_id    TEXT NOT NULL REFERENCES syncs (sync_id),
        seq        INTEGER NOT NULL,
        from_state TEXT,
        to_state   TEXT NOT NULL,
        event      TEXT NOT NULL,
        at         INTEGER NOT NULL,
        PRIMARY KEY (sync_id, seq)
      );
    `,
  },
  {
    version: 2,
    name: 'connections',
    sql: `
      CREATE TABLE connections (
        tenant_id     TEXT NOT NULL,
        connection_id TEXT NOT NULL,
        provider      TEXT NOT NULL,
        state         TEXT NOT NULL,
        context       TEXT NOT NULL,
        version       INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, connection_id)
      );
      CREATE INDEX connections_state ON connections (state);
    `,
  },
  {
    version: 3,
    name: 'retention indexes',
    sql: `
      -- prune(): finished syncs by age, the newest sync of a connection, old rows of finished syncs.
      CREATE INDEX syncs_finished_updated_at ON syncs (updated_at) WHERE active = 0;
      CREATE INDEX syncs_connection_created_at ON syncs (tenant_id, connection_id, created_at);
      CREATE INDEX transitions_at ON transitions (at);
      CREATE INDEX effects_settled_at ON effects (COALESCE(finished_at, started_at, created_at));
    `,
  },
  {
    version: 4,
    name: 'event log',
    sql: `
      -- Writers are serialised (IMMEDIATE transactions), so seq order is commit order.
      CREATE TABLE events (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id      TEXT NOT NULL UNIQUE,
        name          TEXT NOT NULL,
        tenant_id     TEXT NOT NULL,
        connection_id TEXT NOT NULL,
        sync_id       TEXT,
        payload       TEXT NOT NULL,
        at            INTEGER NOT NULL
      );
      CREATE TABLE event_cursors (
        consumer   TEXT PRIMARY KEY,
        cursor     TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      );
      -- prune(): old events first.
      CREATE INDEX events_at ON events (at);
    `,
  },
  {
    version: 5,
    name: 'sweep and autosync indexes',
    sql: `
      -- The stale sweep: active syncs not written since a cutoff (listSyncs({ active: true, updatedBefore })).
      CREATE INDEX syncs_active_updated_at ON syncs (updated_at) WHERE active = 1;
      -- The autosync scan: connections in one state, in key order (listConnections({ state })), without a sort.
      CREATE INDEX connections_state_key ON connections (state, tenant_id, connection_id);
      -- Its prefix: redundant now (one index less to write on every connection save).
      DROP INDEX connections_state;
    `,
  },
];

interface SyncRow {
  sync_id: string;
  tenant_id: string;
  connection_id: string;
  provider: string;
  scope: string;
  status: string;
  active: number;
  provider_ref: string | null;
  snapshot: string | null;
  version: number;
  created_at: number;
  updated_at: number;
}

interface TimerRow {
  sync_id: string;
  timer_id: string;
  event_type: string;
  due_at: number;
}

interface EffectRow {
  effect_key: string;
  sync_id: string;
  kind: string;
  state: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  outcome: string | null;
}

interface TransitionRow {
  sync_id: string;
  seq: number;
  from_state: string | null;
  to_state: string;
  event: string;
  at: number;
}

/** JSON column encoding: null/undefined -> SQL NULL; throws for values JSON cannot represent. */
function encodeJson(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  const text = JSON.stringify(value);
  return text === undefined ? null : text;
}

const decodeJson = (text: string | null): unknown => (text === null ? null : (JSON.parse(text) as unknown));

const toSync = (r: SyncRow): SyncRecord => ({
  syncId: r.sync_id,
  tenantId: r.tenant_id,
  connectionId: r.connection_id,
  provider: r.provider,
  scope: r.scope as SyncScope,
  status: r.status as SyncStatus,
  active: r.active === 1,
  providerRef: r.provider_ref,
  snapshot: decodeJson(r.snapshot),
  version: r.version,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const toTimer = (r: TimerRow): TimerRecord => ({
  syncId: r.sync_id,
  timerId: r.timer_id,
  eventType: r.event_type,
  dueAt: r.due_at,
});

const toEffect = (r: EffectRow): EffectRecord => ({
  effectKey: r.effect_key,
  syncId: r.sync_id,
  kind: r.kind,
  state: r.state as EffectState,
  createdAt: r.created_at,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  outcome: decodeJson(r.outcome),
});

const toTransition = (r: TransitionRow): TransitionRecord => ({
  syncId: r.sync_id,
  seq: r.seq,
  from: r.from_state,
  to: r.to_state,
  event: r.event,
  at: r.at,
});

const isUniqueViolation = (err: unknown): boolean =>
  err instanceof Database.SqliteError && err.code === 'SQLITE_CONSTRAINT_UNIQUE';

const clampLimit = (limit: number): number => Math.max(0, Math.floor(limit));

/** Runs the migrations not yet recorded in `schema_migrations`, each in its own IMMEDIATE transaction. */
function migrate(db: Database.Database, migrations: readonly SqliteMigration[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  const isApplied = db.prepare<[number], number>('SELECT 1 FROM schema_migrations WHERE version = ?').pluck();
  const record = db.prepare<[number, string, number]>(
    'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)',
  );
  const apply = db.transaction((m: SqliteMigration) => {
    // Re-checked inside the write lock: another process may have migrated the file meanwhile.
    if (isApplied.get(m.version) !== undefined) return;
    db.exec(m.sql);
    record.run(m.version, m.name, Date.now());
  });
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) apply.immediate(m);
}

interface ConnectionRow {
  tenant_id: string;
  connection_id: string;
  provider: string;
  state: string;
  context: string;
  version: number;
  updated_at: number;
}

const toConnection = (r: ConnectionRow): ConnectionRecord => ({
  tenantId: r.tenant_id,
  connectionId: r.connection_id,
  provider: r.provider,
  state: r.state,
  context: decodeJson(r.context),
  version: r.version,
  updatedAt: r.updated_at,
});

interface ConnectionParams {
  tenantId: string;
  connectionId: string;
  provider: string;
  state: string;
  context: string;
  updatedAt: number;
  expectedVersion: number;
}

const CONNECTION_COLUMNS = 'tenant_id, connection_id, provider, state, context, version, updated_at';

interface EventRow {
  seq: number;
  event_id: string;
  name: string;
  tenant_id: string;
  connection_id: string;
  sync_id: string | null;
  payload: string;
  at: number;
}

const toEvent = (r: EventRow): EventRecord => ({
  seq: r.seq,
  cursor: String(r.seq),
  eventId: r.event_id,
  name: r.name,
  tenantId: r.tenant_id,
  connectionId: r.connection_id,
  syncId: r.sync_id,
  payload: decodeJson(r.payload),
  at: r.at,
});

const SYNC_COLUMNS =
  'sync_id, tenant_id, connection_id, provider, scope, status, active, provider_ref, snapshot, version, created_at, updated_at';
const EFFECT_COLUMNS = 'effect_key, sync_id, kind, state, created_at, started_at, finished_at, outcome';

/** How long after a write the idle-time WAL checkpoint runs. */
const CHECKPOINT_IDLE_MS = 200;

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;

  readonly #stmt;
  readonly #listSyncsCache = new Map<string, Database.Statement<Record<string, unknown>[], SyncRow>>();
  readonly #createSyncTx;
  readonly #commitTx;
  readonly #commitManyTx;
  readonly #writeManyTx;
  /** The fallback: checkpoints on a timer between write groups, not inside a commit (see `open`). */
  #checkpointTimer: NodeJS.Timeout | null = null;
  /** Checkpoints on a worker thread (file databases); the idle timer is the fallback when it cannot run. */
  readonly #checkpointer: BackgroundCheckpointer | null;
  readonly #startEffectTx;
  readonly #saveConnectionTx;
  /** Wakes readers in this process; other processes on the same file find new events by polling. */
  readonly #eventSignal = new EventEmitter().setMaxListeners(0);

  /** Opens (creating if needed) and migrates the database at `path`; ':memory:' is allowed. */
  /**
   * Opens (creating if missing) and checks the file: a corrupt or foreign file fails here, worded for the
   * operator (StorageError), instead of opening fine and failing at the first write.
   */
  static open(path: string): SqliteStore {
    const where = `SQLite store ${path === ':memory:' ? ':memory:' : JSON.stringify(path)}`;
    // A read-only file opens fine and fails at the first write with a bare SQLITE_READONLY: refuse it here.
    if (path !== ':memory:' && existsSync(path)) {
      try {
        accessSync(path, fsConstants.W_OK);
      } catch (err) {
        throw new StorageError('STORE_READ_ONLY', `${where}: the database file is read-only: make it writable by banksync (and its directory, for the -wal and -shm files)`, { cause: err });
      }
    }
    let db: Database.Database;
    try {
      db = new Database(path);
    } catch (err) {
      if (err instanceof TypeError && /directory does not exist/.test(err.message)) {
        throw new StorageError('STORE_UNAVAILABLE', `${where}: its directory does not exist; create it (writable by banksync) or fix the path`, { cause: err });
      }
      throw toStorageError(err, where);
    }
    try {
      db.pragma('busy_timeout = 5000');
      db.pragma('journal_mode = WAL');
      // NORMAL in WAL: a committed transaction survives a process kill (it is in the WAL, which the OS holds);
      // only a power loss or OS crash can lose the last transactions before the next checkpoint's fsync.
      db.pragma('synchronous = NORMAL');
      // Checkpoints off the hot path: PASSIVE checkpoints run on a worker thread (sqlite-checkpointer.ts), or on
      // an idle timer where no worker can run; the automatic one only backs them up past ~40 MB of WAL.
      db.pragma('wal_autocheckpoint = 10000');
      // Group commits isolate each change in a savepoint; its sub-journal stays in memory instead of a temp file.
      db.pragma('temp_store = MEMORY');
      db.pragma('foreign_keys = ON');
      // quick_check reads every page (not the index contents, which integrity_check adds): linear in file size.
      const problems = (db.pragma('quick_check(5)') as { quick_check: string }[]).map((row) => row.quick_check).filter((r) => r !== 'ok');
      if (problems.length > 0) {
        throw new StorageError('STORE_CORRUPT', `${where} failed its integrity check (${problems.join('; ').slice(0, 300)}): restore it from a backup`);
      }
      migrate(db, SQLITE_MIGRATIONS);
      return new SqliteStore(db, db.memory ? null : BackgroundCheckpointer.start(path));
    } catch (err) {
      db.close();
      throw toStorageError(err, where);
    }
  }

  /** The underlying connection, for diagnostics and tests. Do not write through it. */
  /** @internal The driver's connection (tests, migrations); not part of the public API. */
  readonly db: Database.Database;

  private constructor(db: Database.Database, checkpointer: BackgroundCheckpointer | null) {
    this.db = db;
    this.#checkpointer = checkpointer;
    const stmt = {
      getSync: db.prepare<[string], SyncRow>(`SELECT ${SYNC_COLUMNS} FROM syncs WHERE sync_id = ?`),
      findActive: db.prepare<[string, string], SyncRow>(
        `SELECT ${SYNC_COLUMNS} FROM syncs WHERE tenant_id = ? AND connection_id = ? AND active = 1`,
      ),
      findByProviderRef: db.prepare<[string, string], SyncRow>(
        `SELECT ${SYNC_COLUMNS} FROM syncs WHERE provider = ? AND provider_ref = ?
         ORDER BY active DESC, created_at DESC, sync_id DESC LIMIT 1`,
      ),
      insertSync: db.prepare<[Omit<NewSync, 'scope'> & { scope: string }]>(
        `INSERT INTO syncs (${SYNC_COLUMNS})
         VALUES (@syncId, @tenantId, @connectionId, @provider, @scope, 'QUEUED', 1, NULL, NULL, 0, @createdAt, @createdAt)`,
      ),
      updateSync: db.prepare<
        [
          {
            syncId: string;
            expectedVersion: number;
            status: string;
            active: number;
            providerRef: string | null;
            snapshot: string | null;
            at: number;
          },
        ],
        { version: number }
      >(
        `UPDATE syncs
            SET status = @status, active = @active, provider_ref = @providerRef, snapshot = @snapshot,
                updated_at = @at, version = version + 1
          WHERE sync_id = @syncId AND version = @expectedVersion
         RETURNING version`,
      ),
      // Prepared once: start() reads the connection of every active sync, and every connection save writes one.
      getConnection: db.prepare<[string, string], ConnectionRow>(`SELECT ${CONNECTION_COLUMNS} FROM connections WHERE tenant_id = ? AND connection_id = ?`),
      insertConnection: db.prepare<[ConnectionParams]>(
        `INSERT INTO connections (${CONNECTION_COLUMNS}) VALUES (@tenantId, @connectionId, @provider, @state, @context, 1, @updatedAt)
         ON CONFLICT (tenant_id, connection_id) DO NOTHING`,
      ),
      updateConnection: db.prepare<[ConnectionParams], { version: number }>(
        `UPDATE connections SET provider = @provider, state = @state, context = @context, updated_at = @updatedAt, version = version + 1
          WHERE tenant_id = @tenantId AND connection_id = @connectionId AND version = @expectedVersion
         RETURNING version`,
      ),
      countByStatus: db.prepare<[], { status: string; n: number }>(
        'SELECT status, COUNT(*) AS n FROM syncs GROUP BY status ORDER BY status',
      ),
      deleteTimer: db.prepare<[string, string]>('DELETE FROM timers WHERE sync_id = ? AND timer_id = ?'),
      syncTimers: db.prepare<[string], TimerRow>('SELECT sync_id, timer_id, event_type, due_at FROM timers WHERE sync_id = ?'),
      insertTimer: db.prepare<[string, string, string, number]>(
        // OR REPLACE: a timer id listed twice in one commit keeps the last entry.
        'INSERT OR REPLACE INTO timers (sync_id, timer_id, event_type, due_at) VALUES (?, ?, ?, ?)',
      ),
      listTimers: db.prepare<[string], TimerRow>(
        'SELECT sync_id, timer_id, event_type, due_at FROM timers WHERE sync_id = ? ORDER BY due_at, timer_id',
      ),
      dueTimers: db.prepare<[number, number], TimerRow>(
        `SELECT sync_id, timer_id, event_type, due_at FROM timers WHERE due_at <= ?
         ORDER BY due_at, sync_id, timer_id LIMIT ?`,
      ),
      maxSeq: db
        .prepare<[string], number>('SELECT COALESCE(MAX(seq), 0) FROM transitions WHERE sync_id = ?')
        .pluck(),
      insertTransition: db.prepare<[string, number, string | null, string, string, number]>(
        'INSERT INTO transitions (sync_id, seq, from_state, to_state, event, at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      listTransitions: db.prepare<[string], TransitionRow>(
        'SELECT sync_id, seq, from_state, to_state, event, at FROM transitions WHERE sync_id = ? ORDER BY seq',
      ),
      insertPendingEffect: db.prepare<[string, string, string, number]>(
        `INSERT OR IGNORE INTO effects (effect_key, sync_id, kind, state, created_at)
         VALUES (?, ?, ?, 'PENDING', ?)`,
      ),
      getEffect: db.prepare<[string], EffectRow>(`SELECT ${EFFECT_COLUMNS} FROM effects WHERE effect_key = ?`),
      syncExists: db.prepare<[string], number>('SELECT 1 FROM syncs WHERE sync_id = ?').pluck(),
      upsertStarted: db.prepare<[{ effectKey: string; syncId: string; kind: string; at: number }]>(
        `INSERT INTO effects (effect_key, sync_id, kind, state, created_at, started_at)
         VALUES (@effectKey, @syncId, @kind, 'STARTED', @at, @at)
         ON CONFLICT (effect_key) DO UPDATE SET state = 'STARTED', started_at = excluded.started_at
          WHERE effects.state IN ('PENDING', 'STARTED')`,
      ),
      finishEffect: db.prepare<[string, string | null, number, string]>(
        'UPDATE effects SET state = ?, outcome = ?, finished_at = ? WHERE effect_key = ?',
      ),
      listEffects: db.prepare<[string], EffectRow>(
        `SELECT ${EFFECT_COLUMNS} FROM effects WHERE sync_id = ? ORDER BY created_at, effect_key`,
      ),
      insertEvent: db.prepare<[string, string, string, string, string | null, string, number]>(
        `INSERT INTO events (event_id, name, tenant_id, connection_id, sync_id, payload, at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (event_id) DO NOTHING`,
      ),
      readEvents: db.prepare<[number, number], EventRow>(
        'SELECT seq, event_id, name, tenant_id, connection_id, sync_id, payload, at FROM events WHERE seq > ? ORDER BY seq LIMIT ?',
      ),
      lastEventSeq: db.prepare<[], number | null>('SELECT MAX(seq) FROM events').pluck(),
      getEventCursor: db.prepare<[string], string>('SELECT cursor FROM event_cursors WHERE consumer = ?').pluck(),
      saveEventCursor: db.prepare<[string, string, number]>(
        `INSERT INTO event_cursors (consumer, cursor, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (consumer) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at`,
      ),
    };
    const appendEvents = (events: readonly NewEventRecord[]): number => {
      let appended = 0;
      for (const e of events) {
        appended += stmt.insertEvent.run(e.eventId, e.name, e.tenantId, e.connectionId, e.syncId, encodeJson(e.payload) ?? 'null', e.at).changes;
      }
      return appended;
    };
    this.#stmt = stmt;

    this.#createSyncTx = db.transaction((sync: NewSync): { sync: SyncRecord; created: boolean } => {
      const existing = stmt.findActive.get(sync.tenantId, sync.connectionId);
      if (existing !== undefined) return { sync: toSync(existing), created: false };
      stmt.insertSync.run({
        syncId: sync.syncId,
        tenantId: sync.tenantId,
        connectionId: sync.connectionId,
        provider: sync.provider,
        scope: sync.scope,
        createdAt: sync.createdAt,
      });
      const inserted = stmt.getSync.get(sync.syncId);
      if (inserted === undefined) throw new Error(`internal: sync ${sync.syncId} vanished after insert`);
      return { sync: toSync(inserted), created: true };
    });

    this.#commitTx = db.transaction((change: CommitChange, snapshot: string | null): number => {
      const updated = stmt.updateSync.get({
        syncId: change.syncId,
        expectedVersion: change.expectedVersion,
        status: change.status,
        active: change.active ? 1 : 0,
        providerRef: change.providerRef,
        snapshot,
        at: change.at,
      });
      // Throwing rolls the transaction back; nothing else has been written yet anyway.
      if (updated === undefined) throw new StaleWriteError(change.syncId, change.expectedVersion);

      // Timers diffed against what is stored: most steps keep or drop a timer, and unchanged rows cost nothing.
      const wanted = new Map(change.timers.map((t) => [t.timerId, t]));
      for (const row of stmt.syncTimers.all(change.syncId)) {
        const next = wanted.get(row.timer_id);
        if (next === undefined) stmt.deleteTimer.run(change.syncId, row.timer_id);
        else if (next.eventType === row.event_type && next.dueAt === row.due_at) wanted.delete(row.timer_id);
      }
      for (const t of wanted.values()) stmt.insertTimer.run(change.syncId, t.timerId, t.eventType, t.dueAt);

      let seq = stmt.maxSeq.get(change.syncId) ?? 0;
      for (const t of change.transitions) {
        stmt.insertTransition.run(change.syncId, ++seq, t.from, t.to, t.event, t.at);
      }

      for (const e of change.pendingEffects) {
        stmt.insertPendingEffect.run(e.effectKey, change.syncId, e.kind, change.at);
      }
      appendEvents(change.events ?? []);
      return updated.version;
    });

    this.#saveConnectionTx = db.transaction((record: Omit<ConnectionRecord, 'version'>, expectedVersion: number, events: NewEventRecord[]): number => {
      const version = this.#writeConnection(record, expectedVersion);
      appendEvents(events);
      return version;
    });
    // Each change in a savepoint: a stale or constraint-violating change rolls back alone; any other error
    // (disk full, I/O) aborts the whole group, which then is not written at all.
    this.#commitManyTx = db.transaction((items: readonly { change: CommitChange; snapshot: string | null | Error }[]): CommitResult[] =>
      items.map(({ change, snapshot }): CommitResult => {
        if (snapshot instanceof Error) return { ok: false, error: snapshot };
        try {
          return { ok: true, version: this.#commitTx(change, snapshot) };
        } catch (error) {
          if (error instanceof StaleWriteError || (error instanceof Database.SqliteError && error.code.startsWith('SQLITE_CONSTRAINT'))) {
            return { ok: false, error };
          }
          throw error;
        }
      }),
    );

    this.#startEffectTx = db.transaction(
      (effectKey: string, syncId: string, kind: string, at: number): EffectRecord | null => {
        const before = stmt.getEffect.get(effectKey);
        if (before === undefined && stmt.syncExists.get(syncId) === undefined) {
          throw new NotFoundError(`sync ${syncId} not found`);
        }
        // The upsert's WHERE leaves DONE/FAILED rows untouched.
        stmt.upsertStarted.run({ effectKey, syncId, kind, at });
        return before === undefined ? null : toEffect(before);
      },
    );

    const isPerWriteError = (error: unknown): boolean =>
      error instanceof StaleWriteError ||
      error instanceof NotFoundError ||
      (error instanceof Database.SqliteError && error.code.startsWith('SQLITE_CONSTRAINT'));
    this.#writeManyTx = db.transaction((items: readonly { write: StoreWrite; json: string | null | Error }[]): WriteResult[] =>
      items.map(({ write, json }): WriteResult => {
        if (json instanceof Error) return { ok: false, error: json };
        try {
          switch (write.op) {
            case 'commit':
              return { ok: true, value: this.#commitTx(write.change, json) };
            case 'startEffect':
              return { ok: true, value: this.#startEffectTx(write.effectKey, write.syncId, write.kind, write.at) };
            case 'createSync':
              return { ok: true, value: this.#createSyncTx(write.sync) };
            case 'saveConnection':
              return { ok: true, value: this.#saveConnectionTx(write.record, write.expectedVersion, write.events ?? []) };
            case 'finishEffect': {
              // One statement: it either changes the row or nothing (then NotFoundError, nothing written).
              const result = stmt.finishEffect.run(write.state, json, write.at, write.effectKey);
              if (result.changes === 0) throw new NotFoundError(`effect ${write.effectKey} not found`);
              return { ok: true, value: undefined };
            }
          }
        } catch (error) {
          if (isPerWriteError(error)) return { ok: false, error };
          throw error;
        }
      }),
    );
  }

  async writeMany(writes: readonly StoreWrite[]): Promise<WriteResult[]> {
    const items = writes.map((write) => {
      try {
        if (write.op === 'commit') return { write, json: encodeJson(write.change.snapshot) };
        if (write.op === 'finishEffect') return { write, json: encodeJson(write.outcome) };
        return { write, json: null };
      } catch (error) {
        return { write, json: error instanceof Error ? error : new Error(String(error)) };
      }
    });
    const results = this.#writeManyTx.immediate(items);
    if (writes.some((w) => (w.op === 'commit' ? w.change.events?.length : w.op === 'saveConnection' ? w.events?.length : 0))) this.#wake();
    this.#scheduleCheckpoint();
    return results;
  }

  async createSync(sync: NewSync): Promise<{ sync: SyncRecord; created: boolean }> {
    try {
      // IMMEDIATE: take the write lock before reading, so concurrent processes serialise here.
      return this.#createSyncTx.immediate(sync);
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      // Lost a race on the partial unique index: the winner's sync is the one to use.
      const winner = this.#stmt.findActive.get(sync.tenantId, sync.connectionId);
      if (winner === undefined) throw err; // e.g. a duplicate syncId, not a single-flight conflict
      return { sync: toSync(winner), created: false };
    }
  }

  async commit(change: CommitChange): Promise<number> {
    const snapshot = encodeJson(change.snapshot);
    const version = this.#commitTx.immediate(change, snapshot);
    if (change.events?.length) this.#wake();
    this.#scheduleCheckpoint();
    return version;
  }

  #wake(): void {
    queueMicrotask(() => this.#eventSignal.emit('wake'));
  }

  async readEvents(after: string | null, limit: number): Promise<EventPage> {
    const from = parseSeqCursor(after);
    const max = clampLimit(limit);
    const rows = this.#stmt.readEvents.all(from, max + 1);
    return { events: rows.slice(0, max).map(toEvent), more: rows.length > max };
  }

  async latestEventCursor(): Promise<string | null> {
    const seq = this.#stmt.lastEventSeq.get();
    return seq === null || seq === undefined ? null : String(seq);
  }

  async watchEvents(onWake: () => void): Promise<() => Promise<void>> {
    this.#eventSignal.on('wake', onWake);
    return async () => {
      this.#eventSignal.off('wake', onWake);
    };
  }

  async getEventCursor(consumer: string): Promise<string | null> {
    return this.#stmt.getEventCursor.get(consumer) ?? null;
  }

  async saveEventCursor(consumer: string, cursor: string, at: number): Promise<void> {
    parseSeqCursor(cursor);
    this.#stmt.saveEventCursor.run(consumer, cursor, at);
  }

  async commitMany(changes: readonly CommitChange[]): Promise<CommitResult[]> {
    const items = changes.map((change) => {
      try {
        return { change, snapshot: encodeJson(change.snapshot) };
      } catch (error) {
        return { change, snapshot: error instanceof Error ? error : new Error(String(error)) };
      }
    });
    const results = this.#commitManyTx.immediate(items);
    if (changes.some((c) => c.events?.length)) this.#wake();
    this.#scheduleCheckpoint();
    return results;
  }

  /** A PASSIVE checkpoint on the worker thread, else on an idle timer, so no commit pays for copying the WAL back. */
  #scheduleCheckpoint(): void {
    if (this.#checkpointer?.running) return this.#checkpointer.wrote();
    if (this.#checkpointTimer !== null || !this.db.open || this.db.memory) return;
    this.#checkpointTimer = setTimeout(() => {
      this.#checkpointTimer = null;
      if (!this.db.open) return;
      try {
        this.db.pragma('wal_checkpoint(PASSIVE)');
      } catch {
        // Busy or failing: the next write schedules another; the automatic checkpoint backs this up.
      }
    }, CHECKPOINT_IDLE_MS);
    this.#checkpointTimer.unref();
  }

  async getSync(syncId: string): Promise<SyncRecord | null> {
    const row = this.#stmt.getSync.get(syncId);
    return row === undefined ? null : toSync(row);
  }

  async findActiveSync(tenantId: string, connectionId: string): Promise<SyncRecord | null> {
    const row = this.#stmt.findActive.get(tenantId, connectionId);
    return row === undefined ? null : toSync(row);
  }

  async findSyncByProviderRef(provider: string, providerRef: string): Promise<SyncRecord | null> {
    const row = this.#stmt.findByProviderRef.get(provider, providerRef);
    return row === undefined ? null : toSync(row);
  }

  async listSyncs(filter: SyncFilter = {}): Promise<SyncRecord[]> {
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    // One clause per filter field given; the clause names its own parameter.
    const clauses: [keyof SyncFilter, string][] = [
      ['tenantId', 'tenant_id = @tenantId'],
      ['connectionId', 'connection_id = @connectionId'],
      ['status', 'status = @status'],
      ['provider', 'provider = @provider'],
      ['createdBefore', 'created_at < @createdBefore'],
      ['createdAfter', 'created_at >= @createdAfter'],
      ['updatedBefore', 'updated_at < @updatedBefore'],
    ];
    // `active` is written as a literal: a partial index (`WHERE active = 1`, `WHERE active = 0`) is only
    // usable when the query's own WHERE implies it, which a bound parameter never does.
    if (filter.active !== undefined) where.push(filter.active ? 'active = 1' : 'active = 0');
    for (const [field, clause] of clauses) {
      const value = filter[field];
      if (value === undefined) continue;
      where.push(clause);
      params[field] = value;
    }
    if (filter.after !== undefined) {
      where.push('(created_at < @afterCreatedAt OR (created_at = @afterCreatedAt AND sync_id < @afterSyncId))');
      params.afterCreatedAt = filter.after.createdAt;
      params.afterSyncId = filter.after.syncId;
    }
    // LIMIT -1 means "no limit" in SQLite.
    params.limit = filter.limit === undefined ? -1 : clampLimit(filter.limit);
    const key = where.join(' AND ');
    let stmt = this.#listSyncsCache.get(key);
    if (stmt === undefined) {
      stmt = this.db.prepare<Record<string, unknown>[], SyncRow>(
        `SELECT ${SYNC_COLUMNS} FROM syncs ${where.length > 0 ? `WHERE ${key}` : ''}
         ORDER BY created_at DESC, sync_id DESC LIMIT @limit`,
      );
      this.#listSyncsCache.set(key, stmt);
    }
    return stmt.all(params).map(toSync);
  }

  async countByStatus(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const { status, n } of this.#stmt.countByStatus.all()) counts[status] = n;
    return counts;
  }

  async listTransitions(syncId: string): Promise<TransitionRecord[]> {
    return this.#stmt.listTransitions.all(syncId).map(toTransition);
  }

  async listTimers(syncId: string): Promise<TimerRecord[]> {
    return this.#stmt.listTimers.all(syncId).map(toTimer);
  }

  async dueTimers(until: number, limit: number): Promise<TimerRecord[]> {
    return this.#stmt.dueTimers.all(until, clampLimit(limit)).map(toTimer);
  }

  async getEffect(effectKey: string): Promise<EffectRecord | null> {
    const row = this.#stmt.getEffect.get(effectKey);
    return row === undefined ? null : toEffect(row);
  }

  async startEffect(effectKey: string, syncId: string, kind: string, at: number): Promise<EffectRecord | null> {
    return this.#startEffectTx.immediate(effectKey, syncId, kind, at);
  }

  async finishEffect(effectKey: string, state: 'DONE' | 'FAILED', outcome: unknown, at: number): Promise<void> {
    const result = this.#stmt.finishEffect.run(state, encodeJson(outcome), at, effectKey);
    if (result.changes === 0) throw new NotFoundError(`effect ${effectKey} not found`);
  }

  async listEffects(syncId: string): Promise<EffectRecord[]> {
    return this.#stmt.listEffects.all(syncId).map(toEffect);
  }

  async getConnection(tenantId: string, connectionId: string): Promise<ConnectionRecord | null> {
    const row = this.#stmt.getConnection.get(tenantId, connectionId);
    return row ? toConnection(row) : null;
  }

  async saveConnection(record: Omit<ConnectionRecord, 'version'>, expectedVersion: number, events: NewEventRecord[] = []): Promise<number> {
    const version = this.#saveConnectionTx.immediate(record, expectedVersion, events);
    if (events.length > 0) this.#wake();
    return version;
  }

  #writeConnection(record: Omit<ConnectionRecord, 'version'>, expectedVersion: number): number {
    const params: ConnectionParams = {
      tenantId: record.tenantId,
      connectionId: record.connectionId,
      provider: record.provider,
      state: record.state,
      context: encodeJson(record.context) ?? 'null',
      updatedAt: record.updatedAt,
      expectedVersion,
    };
    const key = `connection ${record.tenantId}/${record.connectionId}`;
    if (expectedVersion === 0) {
      const inserted = this.#stmt.insertConnection.run(params);
      if (inserted.changes === 0) throw new StaleWriteError(key, expectedVersion);
      return 1;
    }
    const updated = this.#stmt.updateConnection.get(params);
    if (!updated) throw new StaleWriteError(key, expectedVersion);
    return updated.version;
  }

  async listConnections(filter: ConnectionFilter = {}): Promise<ConnectionRecord[]> {
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    if (filter.tenantId !== undefined) (where.push('tenant_id = @tenantId'), (params.tenantId = filter.tenantId));
    if (filter.provider !== undefined) (where.push('provider = @provider'), (params.provider = filter.provider));
    if (filter.state !== undefined) (where.push('state = @state'), (params.state = filter.state));
    const limit = filter.limit === undefined ? '' : ` LIMIT ${clampLimit(filter.limit)}`;
    const sql = `SELECT ${CONNECTION_COLUMNS} FROM connections${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY tenant_id, connection_id${limit}`;
    return this.db.prepare<[Record<string, unknown>], ConnectionRow>(sql).all(params).map(toConnection);
  }

  async prune(request: PruneRequest): Promise<PruneCounts> {
    const limit = Math.max(0, Math.floor(request.limit));
    const { finishedSyncs, transitions, effects, events } = request.cutoffs;
    const db = this.db;
    const work = db.transaction((): PruneCounts => {
      const counts: PruneCounts = { syncs: 0, transitions: 0, effects: 0, timers: 0 };
      if (finishedSyncs !== undefined && limit > 0) {
        // Finished, old, and not the newest sync of its connection (the connection may still point at it).
        const ids = db
          .prepare<[number, number], string>(
            `SELECT s.sync_id FROM syncs s
              WHERE s.active = 0 AND s.updated_at < ?
                AND EXISTS (SELECT 1 FROM syncs n WHERE n.tenant_id = s.tenant_id AND n.connection_id = s.connection_id
                              AND (n.created_at > s.created_at OR (n.created_at = s.created_at AND n.sync_id > s.sync_id)))
              ORDER BY s.updated_at, s.sync_id LIMIT ?`,
          )
          .pluck()
          .all(finishedSyncs, limit);
        if (ids.length > 0) {
          const list = JSON.stringify(ids);
          const inList = 'sync_id IN (SELECT value FROM json_each(?))';
          counts.timers = db.prepare(`DELETE FROM timers WHERE ${inList}`).run(list).changes;
          counts.effects = db.prepare(`DELETE FROM effects WHERE ${inList}`).run(list).changes;
          counts.transitions = db.prepare(`DELETE FROM transitions WHERE ${inList}`).run(list).changes;
          counts.syncs = db.prepare(`DELETE FROM syncs WHERE ${inList}`).run(list).changes;
        }
      }
      if (transitions !== undefined && limit > 0) {
        counts.transitions += db
          .prepare(
            `DELETE FROM transitions WHERE rowid IN (
               SELECT t.rowid FROM transitions t JOIN syncs s ON s.sync_id = t.sync_id
                WHERE s.active = 0 AND t.at < ? ORDER BY t.at LIMIT ?)`,
          )
          .run(transitions, limit).changes;
      }
      if (effects !== undefined && limit > 0) {
        counts.effects += db
          .prepare(
            `DELETE FROM effects WHERE effect_key IN (
               SELECT e.effect_key FROM effects e JOIN syncs s ON s.sync_id = e.sync_id
                WHERE s.active = 0 AND COALESCE(e.finished_at, e.started_at, e.created_at) < ?
                ORDER BY COALESCE(e.finished_at, e.started_at, e.created_at) LIMIT ?)`,
          )
          .run(effects, limit).changes;
      }
      if (events !== undefined && limit > 0) {
        counts.events = db.prepare('DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE at < ? ORDER BY at, seq LIMIT ?)').run(events, limit).changes;
      }
      if (request.dryRun) throw new DryRunRollback(counts);
      return counts;
    });
    try {
      return work.immediate();
    } catch (error) {
      if (error instanceof DryRunRollback) return error.counts;
      throw toStorageError(error, 'sqlite prune');
    }
  }

  async close(): Promise<void> {
    if (this.#checkpointTimer !== null) clearTimeout(this.#checkpointTimer);
    this.#checkpointTimer = null;
    await this.#checkpointer?.close();
    if (this.db.open) this.db.close();
  }
}

/** Thrown inside a dry-run transaction so better-sqlite3 rolls it back; carries what would have gone. */
class DryRunRollback extends Error {
  constructor(readonly counts: PruneCounts) {
    super('dry run');
  }
}
