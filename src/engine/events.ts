/** The engine's typed event stream. Emitted only after the state it reports is durably committed. */
import { EventEmitter } from 'node:events';
import type { ConnectionView } from './connections.js';
import type { SyncView } from './view.js';

/** ENGINE_ERROR: a sync could not be hosted (unrestorable snapshot, actor error). STORAGE_ERROR: a store write failed. */
export type EngineErrorCode = 'ENGINE_ERROR' | 'STORAGE_ERROR';

export interface EngineErrorEvent {
  syncId: string | null;
  code: EngineErrorCode;
  /** For operators; scrubbed of secrets. */
  message: string;
}

export interface EngineEvents {
  'sync.updated': SyncView;
  'sync.awaitingUser': SyncView;
  'sync.completed': SyncView;
  'sync.failed': SyncView;
  /** The connection machine moved (lock taken/released, needs the user, disabled, accounts remapped). */
  'connection.updated': ConnectionView;
  /** Automatic syncs stopped until the user is present (SCA met unattended, credentials, the breaker's stop...). */
  'connection.needsUser': ConnectionView;
  /**
   * The consent runs out within CONSENT_WARNING_MS: the user should renew it. Sent once per consent, by
   * whatever first sees the connection inside the window (a finished sync, a settings change, the autosync scan).
   */
  'connection.consentExpiring': ConnectionView;
  /** An access upgrade moved accounts to new provider accesses; each became a connection (see `created`). */
  'connection.upgraded': { from: ConnectionView; created: ConnectionView[] };
  /** An access upgrade moved every account of this access to new ones (state RETIRED): it is never synced again. */
  'connection.retired': ConnectionView;
  /** Something went wrong that no caller is waiting for: a sync failed by the engine, a lost commit. */
  'engine.error': EngineErrorEvent;
}
export type EngineEventName = keyof EngineEvents;

export class EngineEventStream {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  on<K extends EngineEventName>(name: K, listener: (payload: EngineEvents[K]) => void): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }

  once<K extends EngineEventName>(name: K, listener: (payload: EngineEvents[K]) => void): void {
    this.emitter.once(name, listener);
  }

  emit<K extends EngineEventName>(name: K, payload: EngineEvents[K]): void {
    this.emitter.emit(name, payload);
  }
}
