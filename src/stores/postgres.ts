/**
 * PostgreSQL Store (`pg`), the scale-out store. Same contract and conformance suite as SQLite:
 * the single-flight lock is a partial unique index, every sync row carries a version (fencing token),
 * and a commit is one transaction whose fenced UPDATE rejects a stale writer before anything is written.
 * Tables live in their own schema (default `banksync`); migrations run on open under an advisory lock,
 * so several worker processes can start at once.
 */
import pg from 'pg';
import { toStorageError } from './errors.js';
import { guardPool, type ConnectionErrorListener } from './pg-pool.js';
import type { SyncScope } from '../../machines/canonical.js';
import type { SyncStatus } from '../../machines/synchronization.js';
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

export interface PostgresMigration {
  version: number;
  name: string;
  sql: (schema: string) => string;
}

/** Append-only: never edit a shipped migration, add a new one with the next version. */
export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: (s) => `
      CREATE TABLE ${s}.syncs (
        sync_id       TEXT PRIMARY KEY,
        tenant_id     TEXT NOT NULL,
        connection_id TEXT NOT NULL,
        provider      TEXT NOT NULL,
        scope         TEXT NOT NULL,
        status        TEXT NOT NULL,
        active        BOOLEAN NOT NULL,
        provider_ref  TEXT,
        snapshot      JSONB,
        version       BIGINT NOT NULL,
        created_at    BIGINT NOT NULL,
        updated_at    BIGINT NOT NULL
      );
      -- The single-flight lock: at most one active sync per (tenant, connection).
      CREATE UNIQUE INDEX syncs_one_active_per_connection ON ${s}.syncs (tenant_id, connection_id) WHERE active;
      CREATE INDEX syncs_provider_ref ON ${s}.syncs (provider, provider_ref);
      CREATE INDEX syncs_created_at ON ${s}.syncs (created_at);
      CREATE INDEX syncs_active_status ON ${s}.syncs (status) WHERE active;

      CREATE TABLE ${s}.timers (
        sync_id    TEXT NOT NULL REFERENCES ${s}.syncs (sync_id),
        timer_id   TEXT NOT NULL,
        event_type TEXT NOT NULL,
        due_at     BIGINT NOT NULL,
        PRIMARY KEY (sync_id, timer_id)
      );
      CREATE INDEX timers_due_at ON ${s}.timers (due_at);

      CREATE TABLE ${s}.effects (
        effect_key  TEXT PRIMARY KEY,
        sync_id     TEXT NOT NULL REFERENCES ${s}.syncs (sync_id),
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('PENDING', 'STARTED', 'DONE', 'FAILED')),
        created_at  BIGINT NOT NULL,
        started_at  BIGINT,
        finished_at BIGINT,
        outcome     JSONB
      );
      CREATE INDEX effects_sync_id ON ${s}.effects (sync_id);

      CREATE TABLE ${s}.transitions (
        sync_id    TEXT NOT NULL REFERENCES ${s}.syncs (sync_id),
        seq        INTEGER NOT NULL,
        from_state TEXT,
        to_state   TEXT NOT NULL,
        event      TEXT NOT NULL,
        at         BIGINT NOT NULL,
        PRIMARY KEY (sync_id, seq)
      );

      CREATE TABLE ${s}.connections (
        tenant_id     TEXT NOT NULL,
        connection_id TEXT NOT NULL,
        provider      TEXT NOT NULL,
        state         TEXT NOT NULL,
        context       JSONB NOT NULL,
        version       BIGINT NOT NULL,
        updated_at    BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, connection_id)
      );
      CREATE INDEX connections_state ON ${s}.connections (state);
    `,
  },
  {
    version: 2,
    name: 'worker heartbeats',
    sql: (s) => `
      -- One row per worker process: the graphile-worker ids it runs and when it last proved alive.
      CREATE TABLE ${s}.workers (
        process_id          TEXT PRIMARY KEY,
        graphile_worker_ids TEXT[] NOT NULL,
        started_at          BIGINT NOT NULL,
        heartbeat_at        BIGINT NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'retention indexes',
    sql: (s) => `
      -- prune(): finished syncs by age, the newest sync of a connection, old rows of finished syncs.
      CREATE INDEX syncs_finished_updated_at ON ${s}.syncs (updated_at) WHERE NOT active;
      CREATE INDEX syncs_connection_created_at ON ${s}.syncs (tenant_id, connection_id, created_at);
      CREATE INDEX transitions_at ON ${s}.transitions (at);
      CREATE INDEX effects_settled_at ON ${s}.effects ((COALESCE(finished_at, started_at, created_at)));
    `,
  },
  {
    version: 4,
    name: 'event log',
    sql: (s) => `
      -- Sequence values can commit out of order; tx (the writer's transaction id) makes the order stable:
      -- readers take rows of finished transactions only (tx below the oldest running one), by (tx, seq).
      CREATE TABLE ${s}.events (
        seq           BIGSERIAL PRIMARY KEY,
        tx            xid8 NOT NULL DEFAULT pg_current_xact_id(),
        event_id      TEXT NOT NULL UNIQUE,
        name          TEXT NOT NULL,
        tenant_id     TEXT NOT NULL,
        connection_id TEXT NOT NULL,
        sync_id       TEXT,
        payload       JSONB NOT NULL,
        at            BIGINT NOT NULL
      );
      CREATE INDEX events_commit_order ON ${s}.events (tx, seq);
      CREATE TABLE ${s}.event_cursors (
        consumer   TEXT PRIMARY KEY,
        cursor     TEXT NOT NULL,
        updated_at BIGINT NOT NULL
      );
      -- prune(): old events first.
      CREATE INDEX events_at ON ${s}.events (at);
    `,
  },
  {
    version: 5,
    name: 'group commit function',
    // One call writes a whole group of commits in one statement (one round trip, one transaction). Each change
    // is fenced on its own: a stale one yields null in its slot and writes nothing; timers are diffed; a change's
    // events go to the event log in the same transaction.
    sql: (s) => `
      CREATE FUNCTION ${s}.commit_many(changes JSONB, channel TEXT) RETURNS JSONB LANGUAGE plpgsql AS $fn$
      DECLARE
        c       JSONB;
        id      TEXT;
        v       BIGINT;
        last    INTEGER;
        results JSONB := '[]'::jsonb;
        notify  BOOLEAN := false;
      BEGIN
        FOR c IN SELECT value FROM jsonb_array_elements(changes) LOOP
          id := c->>'syncId';
          UPDATE ${s}.syncs
             SET status = c->>'status', active = (c->>'active')::boolean, provider_ref = c->>'providerRef',
                 snapshot = NULLIF(c->'snapshot', 'null'::jsonb), updated_at = (c->>'at')::bigint, version = version + 1
           WHERE sync_id = id AND version = (c->>'expectedVersion')::bigint
          RETURNING version INTO v;
          IF NOT FOUND THEN
            results := results || jsonb_build_array(NULL::jsonb);
            CONTINUE;
          END IF;
          DELETE FROM ${s}.timers t
           WHERE t.sync_id = id
             AND NOT EXISTS (SELECT 1 FROM jsonb_to_recordset(c->'timers') AS n("timerId" TEXT, "eventType" TEXT, "dueAt" BIGINT)
                              WHERE n."timerId" = t.timer_id AND n."eventType" = t.event_type AND n."dueAt" = t.due_at);
          INSERT INTO ${s}.timers (sync_id, timer_id, event_type, due_at)
          SELECT id, n."timerId", n."eventType", n."dueAt"
            FROM jsonb_to_recordset(c->'timers') AS n("timerId" TEXT, "eventType" TEXT, "dueAt" BIGINT)
          ON CONFLICT (sync_id, timer_id) DO NOTHING;
          IF jsonb_array_length(c->'transitions') > 0 THEN
            SELECT COALESCE(MAX(seq), 0) INTO last FROM ${s}.transitions WHERE sync_id = id;
            INSERT INTO ${s}.transitions (sync_id, seq, from_state, to_state, event, at)
            SELECT id, last + e.ord::int, e.t->>'from', e.t->>'to', e.t->>'event', (e.t->>'at')::bigint
              FROM jsonb_array_elements(c->'transitions') WITH ORDINALITY AS e(t, ord);
          END IF;
          IF jsonb_array_length(c->'pendingEffects') > 0 THEN
            INSERT INTO ${s}.effects (effect_key, sync_id, kind, state, created_at)
            SELECT p."effectKey", id, p.kind, 'PENDING', (c->>'at')::bigint
              FROM jsonb_to_recordset(c->'pendingEffects') AS p("effectKey" TEXT, kind TEXT)
            ON CONFLICT (effect_key) DO NOTHING;
          END IF;
          IF jsonb_array_length(COALESCE(c->'events', '[]'::jsonb)) > 0 THEN
            INSERT INTO ${s}.events (event_id, name, tenant_id, connection_id, sync_id, payload, at)
            SELECT ev."eventId", ev.name, ev."tenantId", ev."connectionId", ev."syncId", COALESCE(ev.payload, 'null'::jsonb), ev.at
              FROM jsonb_to_recordset(c->'events') AS ev("eventId" TEXT, name TEXT, "tenantId" TEXT, "connectionId" TEXT, "syncId" TEXT, payload JSONB, at BIGINT)
            ON CONFLICT (event_id) DO NOTHING;
            notify := true;
          END IF;
          results := results || jsonb_build_array(v);
        END LOOP;
        -- Delivered at commit, like the single commit's NOTIFY.
        IF notify THEN PERFORM pg_notify(channel, ''); END IF;
        RETURN results;
      END
      $fn$;
    `,
  },
  {
    version: 6,
    name: 'sweep and autosync indexes',
    sql: (s) => `
      -- The stale sweep: active syncs not written since a cutoff (listSyncs({ active: true, updatedBefore })).
      CREATE INDEX syncs_active_updated_at ON ${s}.syncs (updated_at) WHERE active;
      -- The autosync scan: connections in one state, in key order (listConnections({ state })), without a sort.
      CREATE INDEX connections_state_key ON ${s}.connections (state, tenant_id COLLATE "C", connection_id COLLATE "C");
      -- Its prefix: redundant now (one index less to write on every connection save).
      DROP INDEX ${s}.connections_state;
    `,
  },
];

/** PostgreSQL cursors: `<tx>-<seq>` of the last event read (commit order, see migration 4). */
function parsePgCursor(cursor: string | null): [string, string] {
  if (cursor === null) return ['0', '0'];
  const match = /^(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,18})$/.exec(cursor);
  if (!match) throw new InvalidCursorError(cursor);
  return [match[1]!, match[2]!];
}

interface EventRow {
  seq: number;
  tx: string;
  event_id: string;
  name: string;
  tenant_id: string;
  connection_id: string;
  sync_id: string | null;
  payload: unknown;
  at: number;
}

const toEvent = (r: EventRow): EventRecord => ({
  seq: r.seq,
  cursor: `${r.tx}-${r.seq}`,
  eventId: r.event_id,
  name: r.name,
  tenantId: r.tenant_id,
  connectionId: r.connection_id,
  syncId: r.sync_id,
  payload: r.payload,
  at: r.at,
});
const EVENT_COLUMNS = 'seq, tx::text AS tx, event_id, name, tenant_id, connection_id, sync_id, payload, at';
/** LISTEN client reconnect backoff. */
const LISTEN_RETRY_BASE_MS = 250;
const LISTEN_RETRY_MAX_MS = 10_000;

// BIGINT (int8) and NUMERIC arrive as strings by default; every one of ours fits a double exactly.
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

interface SyncRow {
  sync_id: string;
  tenant_id: string;
  connection_id: string;
  provider: string;
  scope: string;
  status: string;
  active: boolean;
  provider_ref: string | null;
  snapshot: unknown;
  version: number;
  created_at: number;
  updated_at: number;
}

const toSync = (r: SyncRow): SyncRecord => ({
  syncId: r.sync_id,
  tenantId: r.tenant_id,
  connectionId: r.connection_id,
  provider: r.provider,
  scope: r.scope as SyncScope,
  status: r.status as SyncStatus,
  active: r.active,
  providerRef: r.provider_ref,
  snapshot: r.snapshot ?? null,
  version: r.version,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const toTimer = (r: { sync_id: string; timer_id: string; event_type: string; due_at: number }): TimerRecord => ({
  syncId: r.sync_id,
  timerId: r.timer_id,
  eventType: r.event_type,
  dueAt: r.due_at,
});

interface EffectRow {
  effect_key: string;
  sync_id: string;
  kind: string;
  state: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  outcome: unknown;
}

const toEffect = (r: EffectRow): EffectRecord => ({
  effectKey: r.effect_key,
  syncId: r.sync_id,
  kind: r.kind,
  state: r.state as EffectState,
  createdAt: r.created_at,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  outcome: r.outcome ?? null,
});

const toConnection = (r: { tenant_id: string; connection_id: string; provider: string; state: string; context: unknown; version: number; updated_at: number }): ConnectionRecord => ({
  tenantId: r.tenant_id,
  connectionId: r.connection_id,
  provider: r.provider,
  state: r.state,
  context: r.context,
  version: r.version,
  updatedAt: r.updated_at,
});

/** What a JSON column holds; JSON.stringify throws for BigInt like the other stores. */
function json(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  const text = JSON.stringify(value);
  return text === undefined ? null : text;
}

const clampLimit = (limit: number): number => Math.max(0, Math.floor(limit));
const SYNC_COLUMNS = 'sync_id, tenant_id, connection_id, provider, scope, status, active, provider_ref, snapshot, version, created_at, updated_at';
const EFFECT_COLUMNS = 'effect_key, sync_id, kind, state, created_at, started_at, finished_at, outcome';
const CONNECTION_COLUMNS = 'tenant_id, connection_id, provider, state, context, version, updated_at';

export interface PostgresStoreOptions {
  connectionString: string;
  /** Schema holding banksync's tables; created if missing. Letters, digits and underscores only. */
  schema?: string;
  /** Pool size per process. */
  max?: number;
  /** A pooled connection broke (e.g. the server restarted); the pool reconnects on the next query. For logs. */
  onConnectionError?: ConnectionErrorListener;
}

export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  /** @internal The pool the worker and dispatch share; not part of the public API. */
  readonly pool: pg.Pool;
  readonly schema: string;

  private readonly connectionString: string;

  private constructor(pool: pg.Pool, schema: string, connectionString: string) {
    this.pool = pool;
    this.schema = schema;
    this.connectionString = connectionString;
  }

  /** The NOTIFY channel that wakes event readers of this schema. */
  get eventChannel(): string {
    return `banksync_events_${this.schema}`;
  }

  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const schema = options.schema ?? 'banksync';
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid schema name ${JSON.stringify(schema)}`);
    // A client losing its server connection (idle or checked out) must not crash the process; the next query reconnects.
    const pool = guardPool(new pg.Pool({ connectionString: options.connectionString, max: options.max ?? 10, types }), options.onConnectionError);
    const store = new PostgresStore(pool, schema, options.connectionString);
    try {
      await store.migrate();
    } catch (error) {
      await pool.end();
      throw toStorageError(error, store.where);
    }
    return store;
  }

  /** Names the store in errors; never the connection string (it may hold the password). */
  private get where(): string {
    return `PostgreSQL store (schema ${this.schema})`;
  }

  /** Every query's driver error becomes a StorageError worded for the operator (the pg error is its cause). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as pg.Pool.query: untyped rows unless named
  private async query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values);
    } catch (error) {
      throw toStorageError(error, this.where);
    }
  }

  private async migrate(): Promise<void> {
    await this.transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`banksync-migrate:${this.schema}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${this.schema}.migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
      const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${this.schema}.migrations`);
      const applied = new Set(rows.map((r) => r.version));
      for (const migration of [...POSTGRES_MIGRATIONS].sort((a, b) => a.version - b.version)) {
        if (applied.has(migration.version)) continue;
        await client.query(migration.sql(this.schema));
        await client.query(`INSERT INTO ${this.schema}.migrations (version, name, applied_at) VALUES ($1, $2, $3)`, [migration.version, migration.name, Date.now()]);
      }
    });
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw toStorageError(error, this.where);
    });
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw toStorageError(error, this.where);
    } finally {
      client.release();
    }
  }

  private t(table: string): string {
    return `${this.schema}.${table}`;
  }

  async createSync(sync: NewSync): Promise<{ sync: SyncRecord; created: boolean }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const inserted = await this.query<SyncRow>(
        `INSERT INTO ${this.t('syncs')} (${SYNC_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, 'QUEUED', TRUE, NULL, NULL, 0, $6, $6)
         ON CONFLICT (tenant_id, connection_id) WHERE active DO NOTHING
         RETURNING ${SYNC_COLUMNS}`,
        [sync.syncId, sync.tenantId, sync.connectionId, sync.provider, sync.scope, sync.createdAt],
      );
      if (inserted.rows[0]) return { sync: toSync(inserted.rows[0]), created: true };
      const winner = await this.findActiveSync(sync.tenantId, sync.connectionId);
      if (winner) return { sync: winner, created: false };
      // The winner finished between our insert and our read: try again.
    }
    throw new Error(`createSync for ${sync.tenantId}/${sync.connectionId} kept racing; giving up`);
  }

  async commit(change: CommitChange): Promise<number> {
    const snapshot = json(change.snapshot);
    return this.transaction(async (client) => {
      const updated = await client.query<{ version: number }>(
        `UPDATE ${this.t('syncs')}
            SET status = $3, active = $4, provider_ref = $5, snapshot = $6::jsonb, updated_at = $7, version = version + 1
          WHERE sync_id = $1 AND version = $2
         RETURNING version`,
        [change.syncId, change.expectedVersion, change.status, change.active, change.providerRef, snapshot, change.at],
      );
      if (!updated.rows[0]) throw new StaleWriteError(change.syncId, change.expectedVersion);
      await client.query(`DELETE FROM ${this.t('timers')} WHERE sync_id = $1`, [change.syncId]);
      // A timer id listed twice keeps the last entry (as in the other stores).
      const timers = [...new Map(change.timers.map((t) => [t.timerId, t])).values()];
      if (timers.length > 0) {
        await client.query(
          `INSERT INTO ${this.t('timers')} (sync_id, timer_id, event_type, due_at)
           SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bigint[])`,
          [change.syncId, timers.map((t) => t.timerId), timers.map((t) => t.eventType), timers.map((t) => t.dueAt)],
        );
      }
      if (change.transitions.length > 0) {
        const { rows } = await client.query<{ seq: number }>(`SELECT COALESCE(MAX(seq), 0)::int AS seq FROM ${this.t('transitions')} WHERE sync_id = $1`, [change.syncId]);
        const first = (rows[0]?.seq ?? 0) + 1;
        await client.query(
          `INSERT INTO ${this.t('transitions')} (sync_id, seq, from_state, to_state, event, at)
           SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[], $5::text[], $6::bigint[])`,
          [
            change.syncId,
            change.transitions.map((_, i) => first + i),
            change.transitions.map((t) => t.from),
            change.transitions.map((t) => t.to),
            change.transitions.map((t) => t.event),
            change.transitions.map((t) => t.at),
          ],
        );
      }
      if (change.pendingEffects.length > 0) {
        await client.query(
          `INSERT INTO ${this.t('effects')} (effect_key, sync_id, kind, state, created_at)
           SELECT e.key, $1, e.kind, 'PENDING', $2 FROM UNNEST($3::text[], $4::text[]) AS e(key, kind)
           ON CONFLICT (effect_key) DO NOTHING`,
          [change.syncId, change.at, change.pendingEffects.map((e) => e.effectKey), change.pendingEffects.map((e) => e.kind)],
        );
      }
      await this.appendEvents(client, change.events ?? []);
      return updated.rows[0].version;
    });
  }

  /** Appends events in the caller's transaction; NOTIFY is delivered when (and only if) it commits. */
  private async appendEvents(client: pg.PoolClient, events: readonly NewEventRecord[]): Promise<void> {
    if (events.length === 0) return;
    await client.query(
      `INSERT INTO ${this.t('events')} (event_id, name, tenant_id, connection_id, sync_id, payload, at)
       SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::bigint[])
       ON CONFLICT (event_id) DO NOTHING`,
      [
        events.map((e) => e.eventId),
        events.map((e) => e.name),
        events.map((e) => e.tenantId),
        events.map((e) => e.connectionId),
        events.map((e) => e.syncId),
        events.map((e) => json(e.payload) ?? 'null'),
        events.map((e) => e.at),
      ],
    );
    await client.query('SELECT pg_notify($1, \'\')', [this.eventChannel]);
  }

  async readEvents(after: string | null, limit: number): Promise<EventPage> {
    const [tx, seq] = parsePgCursor(after);
    const max = clampLimit(limit);
    // Only rows of transactions that have finished: any row committed later has a tx at or above the horizon,
    // so nothing can appear behind a cursor once it moved past it.
    const { rows } = await this.pool.query<EventRow & { held: boolean }>(
      `WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
       SELECT ${EVENT_COLUMNS}, tx >= horizon.xmin AS held FROM ${this.t('events')}, horizon
        WHERE (tx, seq) > ($1::text::xid8, $2::bigint)
        ORDER BY tx, seq LIMIT $3`,
      [tx, seq, max + 1],
    );
    const readable: EventRecord[] = [];
    let more = false;
    for (const row of rows) {
      if (row.held || readable.length === max) {
        more = true;
        break;
      }
      readable.push(toEvent(row));
    }
    return { events: readable, more };
  }

  async latestEventCursor(): Promise<string | null> {
    const { rows } = await this.pool.query<{ tx: string; seq: number }>(
      `SELECT tx::text AS tx, seq FROM ${this.t('events')} WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx DESC, seq DESC LIMIT 1`,
    );
    return rows[0] ? `${rows[0].tx}-${rows[0].seq}` : null;
  }

  /**
   * LISTENs on a dedicated connection (not the pool's) and calls onWake for every NOTIFY. A lost connection
   * is reconnected with backoff; onWake is called after each reconnect, since NOTIFYs meanwhile were missed.
   */
  async watchEvents(onWake: () => void): Promise<() => Promise<void>> {
    let closed = false;
    let client: pg.Client | null = null;
    let attempt = 0;
    let retry: NodeJS.Timeout | undefined;
    const connect = async (): Promise<void> => {
      const next = new pg.Client({ connectionString: this.connectionString, application_name: 'banksync-events' });
      // Every client needs an 'error' listener: without one a lost server connection kills the process.
      next.on('error', () => reconnect(next));
      next.on('end', () => reconnect(next));
      next.on('notification', () => onWake());
      try {
        await next.connect();
        await next.query(`LISTEN "${this.eventChannel}"`);
      } catch (error) {
        next.end().catch(() => {});
        throw error;
      }
      if (closed) {
        await next.end().catch(() => {});
        return;
      }
      client = next;
      attempt = 0;
      onWake();
    };
    const reconnect = (broken: pg.Client): void => {
      if (closed || (client !== broken && client !== null)) return;
      client = null;
      broken.end().catch(() => {});
      const delay = Math.min(LISTEN_RETRY_MAX_MS, LISTEN_RETRY_BASE_MS * 2 ** attempt++);
      retry = setTimeout(() => {
        connect().catch(() => reconnect(broken));
      }, delay);
    };
    await connect();
    return async () => {
      closed = true;
      clearTimeout(retry);
      const current = client;
      client = null;
      await current?.end().catch(() => {});
    };
  }

  async getEventCursor(consumer: string): Promise<string | null> {
    const { rows } = await this.pool.query<{ cursor: string }>(`SELECT cursor FROM ${this.t('event_cursors')} WHERE consumer = $1`, [consumer]);
    return rows[0]?.cursor ?? null;
  }

  async saveEventCursor(consumer: string, cursor: string, at: number): Promise<void> {
    parsePgCursor(cursor);
    await this.pool.query(
      `INSERT INTO ${this.t('event_cursors')} (consumer, cursor, updated_at) VALUES ($1, $2, $3)
       ON CONFLICT (consumer) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at`,
      [consumer, cursor, at],
    );
  }

  /**
   * Holds a session advisory lock on a dedicated connection while `work` runs, if no other process holds it;
   * returns null (without running `work`) otherwise. For single-instance consumers such as webhook delivery.
   */
  async tryExclusive(name: string): Promise<{ release(): Promise<void>; lost: Promise<void> } | null> {
    const client = new pg.Client({ connectionString: this.connectionString, application_name: 'banksync-exclusive' });
    let markLost!: () => void;
    const lost = new Promise<void>((resolve) => (markLost = resolve));
    client.on('error', () => markLost());
    client.on('end', () => markLost());
    await client.connect();
    try {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [`banksync-exclusive:${this.schema}:${name}`]);
      if (!rows[0]?.ok) {
        await client.end();
        return null;
      }
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    return { lost, release: () => client.end().catch(() => {}) };
  }

  async commitMany(changes: readonly CommitChange[]): Promise<CommitResult[]> {
    const results: CommitResult[] = new Array(changes.length);
    const encoded: { index: number; json: string }[] = [];
    changes.forEach((change, index) => {
      try {
        // A timer id listed twice keeps the last entry (as in the other stores).
        const timers = [...new Map(change.timers.map((t) => [t.timerId, { timerId: t.timerId, eventType: t.eventType, dueAt: t.dueAt }])).values()];
        const json = JSON.stringify({
          syncId: change.syncId,
          expectedVersion: change.expectedVersion,
          status: change.status,
          active: change.active,
          providerRef: change.providerRef,
          snapshot: change.snapshot ?? null,
          at: change.at,
          timers,
          transitions: change.transitions.map((t) => ({ from: t.from, to: t.to, event: t.event, at: t.at })),
          pendingEffects: change.pendingEffects.map((e) => ({ effectKey: e.effectKey, kind: e.kind })),
          events: (change.events ?? []).map((e) => ({ eventId: e.eventId, name: e.name, tenantId: e.tenantId, connectionId: e.connectionId, syncId: e.syncId, payload: e.payload ?? null, at: e.at })),
        });
        encoded.push({ index, json });
      } catch (error) {
        results[index] = { ok: false, error };
      }
    });
    // Rows locked in one order by every process, so two groups touching the same syncs cannot deadlock.
    encoded.sort((a, b) => (changes[a.index]!.syncId < changes[b.index]!.syncId ? -1 : changes[a.index]!.syncId > changes[b.index]!.syncId ? 1 : a.index - b.index));
    if (encoded.length > 0) {
      const { rows } = await this.pool.query<{ r: (number | null)[] }>(`SELECT ${this.t('commit_many')}($1::jsonb, $2::text) AS r`, [`[${encoded.map((e) => e.json).join(',')}]`, this.eventChannel]);
      const versions = rows[0]?.r ?? [];
      encoded.forEach(({ index }, i) => {
        const version = versions[i];
        const change = changes[index]!;
        results[index] = typeof version === 'number' ? { ok: true, version } : { ok: false, error: new StaleWriteError(change.syncId, change.expectedVersion) };
      });
    }
    return results;
  }

  /** Commits in one `commit_many` call; the other writes as single statements beside it (in order per effect/connection). */
  async writeMany(writes: readonly StoreWrite[]): Promise<WriteResult[]> {
    const results: WriteResult[] = new Array(writes.length);
    const commits: number[] = [];
    writes.forEach((w, i) => {
      if (w.op === 'commit') commits.push(i);
    });
    const settle = async (i: number, run: () => Promise<unknown>) => {
      try {
        results[i] = { ok: true, value: await run() };
      } catch (error) {
        results[i] = { ok: false, error };
      }
    };
    const committing = (async () => {
      if (commits.length === 0) return;
      try {
        const done = await this.commitMany(commits.map((i) => (writes[i] as { change: CommitChange }).change));
        done.forEach((r, k) => (results[commits[k]!] = r.ok ? { ok: true, value: r.version } : r));
      } catch (error) {
        for (const i of commits) results[i] = { ok: false, error };
      }
    })();
    // Writes of one effect (or one connection) stay in order; different ones run side by side.
    const byEffect = new Map<string, number[]>();
    writes.forEach((w, i) => {
      if (w.op === 'commit') return;
      const key = w.op === 'createSync' ? `c\u0000${w.sync.tenantId}\u0000${w.sync.connectionId}` : w.op === 'saveConnection' ? `c\u0000${w.record.tenantId}\u0000${w.record.connectionId}` : `e\u0000${w.effectKey}`;
      byEffect.set(key, [...(byEffect.get(key) ?? []), i]);
    });
    const journaling = [...byEffect.values()].map(async (indexes) => {
      for (const i of indexes) {
        const w = writes[i]!;
        if (w.op === 'startEffect') await settle(i, () => this.startEffect(w.effectKey, w.syncId, w.kind, w.at));
        else if (w.op === 'finishEffect') await settle(i, () => this.finishEffect(w.effectKey, w.state, w.outcome, w.at));
        else if (w.op === 'createSync') await settle(i, () => this.createSync(w.sync));
        else if (w.op === 'saveConnection') await settle(i, () => this.saveConnection(w.record, w.expectedVersion, w.events));
      }
    });
    await Promise.all([committing, ...journaling]);
    return results;
  }

  async getSync(syncId: string): Promise<SyncRecord | null> {
    const { rows } = await this.query<SyncRow>(`SELECT ${SYNC_COLUMNS} FROM ${this.t('syncs')} WHERE sync_id = $1`, [syncId]);
    return rows[0] ? toSync(rows[0]) : null;
  }

  async findActiveSync(tenantId: string, connectionId: string): Promise<SyncRecord | null> {
    const { rows } = await this.query<SyncRow>(
      `SELECT ${SYNC_COLUMNS} FROM ${this.t('syncs')} WHERE tenant_id = $1 AND connection_id = $2 AND active`,
      [tenantId, connectionId],
    );
    return rows[0] ? toSync(rows[0]) : null;
  }

  async findSyncByProviderRef(provider: string, providerRef: string): Promise<SyncRecord | null> {
    const { rows } = await this.query<SyncRow>(
      `SELECT ${SYNC_COLUMNS} FROM ${this.t('syncs')} WHERE provider = $1 AND provider_ref = $2
       ORDER BY active DESC, created_at DESC, sync_id COLLATE "C" DESC LIMIT 1`,
      [provider, providerRef],
    );
    return rows[0] ? toSync(rows[0]) : null;
  }

  async listSyncs(filter: SyncFilter = {}): Promise<SyncRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (filter.tenantId !== undefined) add('tenant_id = ?', filter.tenantId);
    if (filter.connectionId !== undefined) add('connection_id = ?', filter.connectionId);
    // A literal, so the planner can prove a partial index's `WHERE active` / `WHERE NOT active` from the query.
    if (filter.active !== undefined) where.push(filter.active ? 'active' : 'NOT active');
    if (filter.status !== undefined) add('status = ?', filter.status);
    if (filter.provider !== undefined) add('provider = ?', filter.provider);
    if (filter.createdBefore !== undefined) add('created_at < ?', filter.createdBefore);
    if (filter.createdAfter !== undefined) add('created_at >= ?', filter.createdAfter);
    if (filter.updatedBefore !== undefined) add('updated_at < ?', filter.updatedBefore);
    if (filter.after !== undefined) {
      params.push(filter.after.createdAt, filter.after.syncId);
      const [c, id] = [`$${params.length - 1}`, `$${params.length}`];
      where.push(`(created_at < ${c} OR (created_at = ${c} AND sync_id COLLATE "C" < ${id}))`);
    }
    const limit = filter.limit === undefined ? '' : ` LIMIT ${clampLimit(filter.limit)}`;
    const { rows } = await this.query<SyncRow>(
      `SELECT ${SYNC_COLUMNS} FROM ${this.t('syncs')}${where.length ? ` WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at DESC, sync_id COLLATE "C" DESC${limit}`,
      params,
    );
    return rows.map(toSync);
  }

  async countByStatus(): Promise<Record<string, number>> {
    const { rows } = await this.query<{ status: string; n: number }>(`SELECT status, COUNT(*)::int AS n FROM ${this.t('syncs')} GROUP BY status ORDER BY status`);
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  async listTransitions(syncId: string): Promise<TransitionRecord[]> {
    const { rows } = await this.query<{ sync_id: string; seq: number; from_state: string | null; to_state: string; event: string; at: number }>(
      `SELECT sync_id, seq, from_state, to_state, event, at FROM ${this.t('transitions')} WHERE sync_id = $1 ORDER BY seq`,
      [syncId],
    );
    return rows.map((r) => ({ syncId: r.sync_id, seq: r.seq, from: r.from_state, to: r.to_state, event: r.event, at: r.at }));
  }

  async listTimers(syncId: string): Promise<TimerRecord[]> {
    const { rows } = await this.query(`SELECT sync_id, timer_id, event_type, due_at FROM ${this.t('timers')} WHERE sync_id = $1 ORDER BY due_at, timer_id COLLATE "C"`, [syncId]);
    return rows.map(toTimer);
  }

  async dueTimers(until: number, limit: number): Promise<TimerRecord[]> {
    const { rows } = await this.query(
      `SELECT sync_id, timer_id, event_type, due_at FROM ${this.t('timers')} WHERE due_at <= $1 ORDER BY due_at, sync_id COLLATE "C", timer_id COLLATE "C" LIMIT $2`,
      [until, clampLimit(limit)],
    );
    return rows.map(toTimer);
  }

  async getEffect(effectKey: string): Promise<EffectRecord | null> {
    const { rows } = await this.query<EffectRow>(`SELECT ${EFFECT_COLUMNS} FROM ${this.t('effects')} WHERE effect_key = $1`, [effectKey]);
    return rows[0] ? toEffect(rows[0]) : null;
  }

  async startEffect(effectKey: string, syncId: string, kind: string, at: number): Promise<EffectRecord | null> {
    return this.transaction(async (client) => {
      const before = await client.query<EffectRow>(`SELECT ${EFFECT_COLUMNS} FROM ${this.t('effects')} WHERE effect_key = $1 FOR UPDATE`, [effectKey]);
      if (!before.rows[0]) {
        const exists = await client.query(`SELECT 1 FROM ${this.t('syncs')} WHERE sync_id = $1`, [syncId]);
        if (exists.rowCount === 0) throw new NotFoundError(`sync ${syncId} not found`);
      }
      // DONE and FAILED rows are left as they are.
      await client.query(
        `INSERT INTO ${this.t('effects')} (effect_key, sync_id, kind, state, created_at, started_at)
         VALUES ($1, $2, $3, 'STARTED', $4, $4)
         ON CONFLICT (effect_key) DO UPDATE SET state = 'STARTED', started_at = excluded.started_at
          WHERE ${this.t('effects')}.state IN ('PENDING', 'STARTED')`,
        [effectKey, syncId, kind, at],
      );
      return before.rows[0] ? toEffect(before.rows[0]) : null;
    });
  }

  async finishEffect(effectKey: string, state: 'DONE' | 'FAILED', outcome: unknown, at: number): Promise<void> {
    const result = await this.query(`UPDATE ${this.t('effects')} SET state = $1, outcome = $2::jsonb, finished_at = $3 WHERE effect_key = $4`, [
      state,
      json(outcome),
      at,
      effectKey,
    ]);
    if (result.rowCount === 0) throw new NotFoundError(`effect ${effectKey} not found`);
  }

  async listEffects(syncId: string): Promise<EffectRecord[]> {
    const { rows } = await this.query<EffectRow>(`SELECT ${EFFECT_COLUMNS} FROM ${this.t('effects')} WHERE sync_id = $1 ORDER BY created_at, effect_key COLLATE "C"`, [syncId]);
    return rows.map(toEffect);
  }

  async getConnection(tenantId: string, connectionId: string): Promise<ConnectionRecord | null> {
    const { rows } = await this.query(`SELECT ${CONNECTION_COLUMNS} FROM ${this.t('connections')} WHERE tenant_id = $1 AND connection_id = $2`, [tenantId, connectionId]);
    return rows[0] ? toConnection(rows[0]) : null;
  }

  async saveConnection(record: Omit<ConnectionRecord, 'version'>, expectedVersion: number, events: NewEventRecord[] = []): Promise<number> {
    if (events.length === 0) return this.writeConnection(this.pool, record, expectedVersion);
    return this.transaction(async (client) => {
      const version = await this.writeConnection(client, record, expectedVersion);
      await this.appendEvents(client, events);
      return version;
    });
  }

  private async writeConnection(db: pg.Pool | pg.PoolClient, record: Omit<ConnectionRecord, 'version'>, expectedVersion: number): Promise<number> {
    const key = `connection ${record.tenantId}/${record.connectionId}`;
    const params = [record.tenantId, record.connectionId, record.provider, record.state, json(record.context) ?? 'null', record.updatedAt];
    if (expectedVersion === 0) {
      const inserted = await db.query(
        `INSERT INTO ${this.t('connections')} (${CONNECTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5::jsonb, 1, $6)
         ON CONFLICT (tenant_id, connection_id) DO NOTHING`,
        params,
      );
      if (inserted.rowCount === 0) throw new StaleWriteError(key, expectedVersion);
      return 1;
    }
    const { rows } = await db.query<{ version: number }>(
      `UPDATE ${this.t('connections')} SET provider = $3, state = $4, context = $5::jsonb, updated_at = $6, version = version + 1
        WHERE tenant_id = $1 AND connection_id = $2 AND version = $7
       RETURNING version`,
      [...params, expectedVersion],
    );
    if (!rows[0]) throw new StaleWriteError(key, expectedVersion);
    return rows[0].version;
  }

  async listConnections(filter: ConnectionFilter = {}): Promise<ConnectionRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (column: string, value: unknown) => {
      params.push(value);
      where.push(`${column} = $${params.length}`);
    };
    if (filter.tenantId !== undefined) add('tenant_id', filter.tenantId);
    if (filter.provider !== undefined) add('provider', filter.provider);
    if (filter.state !== undefined) add('state', filter.state);
    const limit = filter.limit === undefined ? '' : ` LIMIT ${clampLimit(filter.limit)}`;
    const { rows } = await this.query(
      `SELECT ${CONNECTION_COLUMNS} FROM ${this.t('connections')}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY tenant_id COLLATE "C", connection_id COLLATE "C"${limit}`,
      params,
    );
    return rows.map(toConnection);
  }

  /** Drops the schema (tests use a throwaway schema per store). */
  async prune(request: PruneRequest): Promise<PruneCounts> {
    const limit = Math.max(0, Math.floor(request.limit));
    const { finishedSyncs, transitions, effects, events } = request.cutoffs;
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const counts: PruneCounts = { syncs: 0, transitions: 0, effects: 0, timers: 0 };
      if (finishedSyncs !== undefined && limit > 0) {
        // Finished, old, and not the newest sync of its connection (the connection may still point at it).
        // SKIP LOCKED: pruners in several workers take disjoint batches.
        const { rows } = await client.query<{ sync_id: string }>(
          `SELECT s.sync_id FROM ${this.t('syncs')} s
            WHERE NOT s.active AND s.updated_at < $1
              AND EXISTS (SELECT 1 FROM ${this.t('syncs')} n WHERE n.tenant_id = s.tenant_id AND n.connection_id = s.connection_id
                            AND (n.created_at > s.created_at OR (n.created_at = s.created_at AND n.sync_id > s.sync_id)))
            ORDER BY s.updated_at, s.sync_id LIMIT $2
            FOR UPDATE OF s SKIP LOCKED`,
          [finishedSyncs, limit],
        );
        const ids = rows.map((r) => r.sync_id);
        if (ids.length > 0) {
          const del = async (table: string) => (await client.query(`DELETE FROM ${this.t(table)} WHERE sync_id = ANY($1::text[])`, [ids])).rowCount ?? 0;
          counts.timers = await del('timers');
          counts.effects = await del('effects');
          counts.transitions = await del('transitions');
          counts.syncs = await del('syncs');
        }
      }
      if (transitions !== undefined && limit > 0) {
        const result = await client.query(
          `DELETE FROM ${this.t('transitions')} WHERE (sync_id, seq) IN (
             SELECT t.sync_id, t.seq FROM ${this.t('transitions')} t JOIN ${this.t('syncs')} s ON s.sync_id = t.sync_id
              WHERE NOT s.active AND t.at < $1 ORDER BY t.at LIMIT $2 FOR UPDATE OF t SKIP LOCKED)`,
          [transitions, limit],
        );
        counts.transitions += result.rowCount ?? 0;
      }
      if (effects !== undefined && limit > 0) {
        const result = await client.query(
          `DELETE FROM ${this.t('effects')} WHERE effect_key IN (
             SELECT e.effect_key FROM ${this.t('effects')} e JOIN ${this.t('syncs')} s ON s.sync_id = e.sync_id
              WHERE NOT s.active AND COALESCE(e.finished_at, e.started_at, e.created_at) < $1
              ORDER BY COALESCE(e.finished_at, e.started_at, e.created_at) LIMIT $2 FOR UPDATE OF e SKIP LOCKED)`,
          [effects, limit],
        );
        counts.effects += result.rowCount ?? 0;
      }
      if (events !== undefined && limit > 0) {
        const result = await client.query(
          `DELETE FROM ${this.t('events')} WHERE seq IN (
             SELECT seq FROM ${this.t('events')} WHERE at < $1 ORDER BY at, seq LIMIT $2 FOR UPDATE SKIP LOCKED)`,
          [events, limit],
        );
        counts.events = result.rowCount ?? 0;
      }
      await client.query(request.dryRun ? 'ROLLBACK' : 'COMMIT');
      return counts;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  async dropSchema(): Promise<void> {
    await this.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
