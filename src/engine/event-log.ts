/**
 * The durable event log: every sync and connection event is written to the store in the same transaction as
 * the change that causes it (a transactional outbox), so any process reads it with a cursor, whichever
 * process made the change. Readers get every committed event, in commit order, exactly once per cursor they
 * advance; a crash can neither lose nor invent one. Delivery to a reader is at-least-once across its own
 * restarts (it resumes from the cursor it saved), and every event keeps one stable id.
 */
import { createHash } from 'node:crypto';
import type { ConnectionView } from './connections.js';
import type { EngineEvents } from './events.js';
import type { SyncView } from './view.js';
import type { EventRecord, NewEventRecord, Store } from '../stores/types.js';

/** The events the log carries. `engine.error` stays in the process that saw it. */
export const LOGGED_EVENTS = [
  'sync.updated',
  'sync.awaitingUser',
  'sync.completed',
  'sync.failed',
  'connection.updated',
  'connection.needsUser',
  'connection.consentExpiring',
  'connection.upgraded',
  'connection.retired',
] as const;
export type LoggedEventName = (typeof LOGGED_EVENTS)[number];

/** One event of the log. */
export interface BanksyncEvent<K extends LoggedEventName = LoggedEventName> {
  /** Stable: the same event always has the same id (use it to deduplicate; it is the webhook-id). */
  id: string;
  /** Pass it back as `after` to read what follows. Opaque; ordered by commit. */
  cursor: string;
  /** The store's insert number: unique, but PostgreSQL may commit them out of order; order by cursor. */
  seq: number;
  name: K;
  tenantId: string;
  connectionId: string;
  syncId: string | null;
  /** The secret-free view, as `engine.events` delivers it. */
  payload: EngineEvents[K];
  /** When the change was committed (epoch ms). */
  at: number;
}

const LOGGED = new Set<string>(LOGGED_EVENTS);
export const isLoggedEvent = (name: string): name is LoggedEventName => LOGGED.has(name);

const digest = (parts: (string | number)[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('hex');

function eventId(parts: (string | number)[]): string {
  return `evt_${digest(parts).slice(0, 32)}`;
}

/**
 * A sync event's id starts with the first 12 hex digits of its sync id (for `sync_<UUIDv7>` ids, their
 * millisecond timestamp), then 20 of the hash. Still deterministic (a retried write gets the same id), but the
 * unique index on event ids takes a commit's events next to its sync's earlier ones: with hashed ids every
 * event landed on a random index page, and the index was the largest share of the pages each commit wrote.
 */
function syncEventId(syncId: string, parts: (string | number)[]): string {
  const prefix = syncId.slice(syncId.indexOf('_') + 1).replaceAll('-', '').slice(0, 12);
  const hash = digest(parts);
  return /^[0-9a-f]{12}$/.test(prefix) ? `evt_${prefix}${hash.slice(0, 20)}` : `evt_${hash.slice(0, 32)}`;
}

/** A sync event of the commit that brings the sync to `view.version`. */
export function syncEvent(name: 'sync.updated' | 'sync.awaitingUser' | 'sync.completed' | 'sync.failed', view: SyncView, at: number): NewEventRecord {
  return {
    eventId: syncEventId(view.syncId, ['sync', view.syncId, view.version, name]),
    name,
    tenantId: view.tenantId,
    connectionId: view.connectionId,
    syncId: view.syncId,
    payload: view,
    at,
  };
}

/** A connection event of the write that brings the connection to `view.version`. */
export function connectionEvent<K extends 'connection.updated' | 'connection.needsUser' | 'connection.consentExpiring' | 'connection.upgraded' | 'connection.retired'>(
  name: K,
  view: ConnectionView,
  payload: EngineEvents[K],
  at: number,
): NewEventRecord {
  return {
    eventId: eventId(['connection', view.tenantId, view.connectionId, view.version, name]),
    name,
    tenantId: view.tenantId,
    connectionId: view.connectionId,
    syncId: null,
    payload,
    at,
  };
}

export function toBanksyncEvent(record: EventRecord): BanksyncEvent {
  return {
    id: record.eventId,
    cursor: record.cursor,
    seq: record.seq,
    name: record.name as LoggedEventName,
    tenantId: record.tenantId,
    connectionId: record.connectionId,
    syncId: record.syncId,
    payload: record.payload as EngineEvents[LoggedEventName],
    at: record.at,
  };
}

export interface SubscribeOptions {
  /** Start after this cursor; null or absent: from the first event. */
  after?: string | null;
  /** Called once per event, in order; the cursor advances only after it resolves. A throw is retried. */
  onEvent: (event: BanksyncEvent) => void | Promise<void>;
  /** A read or onEvent failed; the subscription retries from its cursor at the next wake. */
  onError?: (error: unknown) => void;
  /** Only this tenant's events (the cursor still advances over the others). */
  tenantId?: string;
  /** Fallback poll when no wake-up arrives (other SQLite processes, a lost NOTIFY). Default 1000 ms. */
  pollMs?: number;
  /** Events per read. Default 200. */
  batchSize?: number;
}

export interface EventSubscription {
  /** The cursor of the last event handled (null: none yet). Save it to resume after a restart. */
  readonly cursor: string | null;
  close(): Promise<void>;
}

const HELD_BACK_BASE_MS = 10;

/** Follows the log from a cursor, woken by the store (NOTIFY, in-process signal) and a fallback poll. */
export async function subscribeEvents(store: Store, options: SubscribeOptions): Promise<EventSubscription> {
  const pollMs = options.pollMs ?? 1_000;
  const batchSize = options.batchSize ?? 200;
  let cursor = options.after ?? null;
  let closed = false;
  let running: Promise<void> | null = null;
  let again = false;
  let heldBack = 0;

  const drain = async (): Promise<void> => {
    do {
      again = false;
      const page = await store.readEvents(cursor, batchSize);
      for (const record of page.events) {
        if (closed) return;
        if (options.tenantId === undefined || record.tenantId === options.tenantId) await options.onEvent(toBanksyncEvent(record));
        cursor = record.cursor;
      }
      if (page.more) {
        again = true;
        // Committed but held back behind an older transaction still in flight: look again shortly.
        if (page.events.length === 0) await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, HELD_BACK_BASE_MS * 2 ** heldBack++)));
        else heldBack = 0;
      } else {
        heldBack = 0;
      }
    } while (again && !closed);
  };

  const kick = (): Promise<void> => {
    if (closed) return Promise.resolve();
    if (running) {
      again = true;
      return running;
    }
    running = drain()
      .catch((error: unknown) => options.onError?.(error))
      .finally(() => {
        running = null;
      });
    return running;
  };

  const stopWatching = await store.watchEvents(() => void kick());
  const timer = setInterval(() => void kick(), pollMs);
  timer.unref?.();
  void kick();

  return {
    get cursor() {
      return cursor;
    },
    async close() {
      closed = true;
      clearInterval(timer);
      await stopWatching();
      await running;
    },
  };
}
