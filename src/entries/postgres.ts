/**
 * `banksync/postgres`: the scale-out store and work dispatch. Needs the optional peers `pg` and
 * `graphile-worker`.
 */
export { PostgresStore, POSTGRES_MIGRATIONS, type PostgresStoreOptions, type PostgresMigration } from '../stores/postgres.js';
export { startWorker, createDispatchingEngine, type WorkerOptions, type BanksyncWorker } from '../dispatch/worker.js';
export { ACTIVATE_TASK, AUTOSYNC_TASK } from '../dispatch/graphile.js';
