/** The public API a service embeds. */
export { createEngine, SyncEngine, type EngineOptions, type RequestSyncInput } from './engine/engine.js';
export { BanksyncError, type BanksyncErrorCode } from './engine/errors.js';
export type { EngineEvents, EngineEventName } from './engine/events.js';
export type { SyncView } from './engine/view.js';
export type { Clock } from './engine/clock.js';
export { createLogger } from './engine/logger.js';
export { MemoryStore } from './stores/memory.js';
export { SqliteStore } from './stores/sqlite.js';
export type { Store } from './stores/types.js';
export { createFinxAdapter } from './providers/finx/index.js';
export type { ProviderAdapter } from './providers/types.js';
export { ProviderError, ProviderInputError } from './providers/errors.js';
export type { Challenge, Observation, SyncError, SyncResult, AccountOutcome } from '../machines/canonical.js';
