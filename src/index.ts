/**
 * `banksync`: the public API a service embeds. Nothing here loads a native or heavy dependency: the SQLite
 * store, the PostgreSQL store and worker, and the sandbox have their own entry points (`banksync/sqlite`,
 * `banksync/postgres`, `banksync/sandbox`), each loading only what it needs.
 */
export {
  createEngine,
  SyncEngine,
  SYNC_MACHINE_VERSION,
  type EngineOptions,
  type RequestSyncInput,
  type ConnectionSettingsInput,
  type RejectedWebhook,
  type PersistedSyncSnapshot,
} from './engine/engine.js';
export { BanksyncError, type BanksyncErrorCode } from './engine/errors.js';
export type { EngineEvents, EngineEventName, EngineErrorEvent, EngineErrorCode } from './engine/events.js';
export { LOGGED_EVENTS, type BanksyncEvent, type LoggedEventName, type SubscribeOptions, type EventSubscription } from './engine/event-log.js';
export { startWebhookDelivery, type OutgoingWebhookOptions, type OutgoingWebhookBody, type OutgoingWebhookDelivery } from './engine/outgoing-webhooks.js';
export { CONSENT_WARNING_MS, DEFAULT_CONSENT_TERM, consentExpiresAt } from './engine/consent.js';
export type { SyncView } from './engine/view.js';
export type { ConnectionView } from './engine/connections.js';
export { systemClock, type Clock } from './engine/clock.js';
export { createLogger, type Logger } from './engine/logger.js';
export type { TelemetryOptions } from './engine/telemetry.js';
export { AutosyncScheduler, startAutosync, type AutosyncReport } from './engine/autosync.js';
export { DEFAULT_RETENTION, pruneStore, type Retention, type PruneOptions, type PruneReport } from './engine/retention.js';
export { MemoryStore } from './stores/memory.js';
export type { Store, SyncFilter, SyncRecord, PruneCounts, PruneCutoffs, PruneKind, PruneRequest, EventRecord, NewEventRecord, EventPage } from './stores/types.js';
export { InvalidCursorError } from './stores/types.js';
export type { Dispatch } from './engine/dispatch.js';
export { createFinxAdapter, type FinxAdapter, type FinxAdapterConfig } from './providers/finx/index.js';
export { createFinapiAdapter, type FinapiAdapter, type FinapiAdapterConfig } from './providers/finapi/index.js';
export { createXs2aAdapter, type Xs2aAdapter, type Xs2aAdapterConfig } from './providers/xs2a/index.js';
export { createWealthAdapter, type WealthAdapter, type WealthAdapterConfig } from './providers/wealthapi/index.js';
export { createAdapter, PROVIDER_FAMILIES, type ProviderFamily } from './providers/registry.js';
export type { ProviderAdapter, TriggerRequest, SyncRef, WebhookRequest, WebhookDelivery, SyncRequestInput, ConsentTerm } from './providers/types.js';
export { ProviderError, ProviderInputError, InvalidProviderResponseError } from './providers/errors.js';
export * from './providers/auth.js';
export { loadConfig, parseConfig, adaptersFromConfig, ConfigError, type BanksyncConfig } from './config/index.js';
export { machines } from '../machines/index.js';
export { synchronizationMachine, type SyncContext, type SyncPolicy, type SyncStatus } from '../machines/synchronization.js';
export { connectionMachine } from '../machines/connection.js';
export { finapiTaskMachine } from '../machines/finapiTask.js';
export { xs2aConnectionMachine } from '../machines/xs2aConnection.js';
export { wealthUpdateMachine } from '../machines/wealthUpdate.js';
export type { Challenge, Observation, SyncError, SyncResult, AccountOutcome, SyncScope } from '../machines/canonical.js';
