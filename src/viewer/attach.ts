/**
 * Attaching the operator console to an existing store (`banksync serve --config | --database-url | --db`).
 *
 * Read-mostly: the console never resumes or hosts syncs unless asked.
 * - PostgreSQL with providers: a dispatching engine (the API side of a scale-out deployment). Retry enqueues a
 *   start job and cancel runs under the sync's advisory lock, then evicts the sync: the workers do the work.
 * - PostgreSQL without providers: read-only (retry needs the provider's adapter to validate the request).
 * - SQLite: an engine there hosts every sync it touches (there is no job queue). So the console is read-only
 *   unless `runSyncs` is set, for when no other process runs these syncs (the app is stopped); the console then
 *   resumes the active syncs like the app would (engine.start()).
 */
import type { SyncPolicy } from '../../machines/synchronization.js';
import { createEngine, type SyncEngine } from '../engine/engine.js';
import { silentLogger, type Logger } from '../engine/logger.js';
import type { ProviderAdapter } from '../providers/types.js';
import type { Store } from '../stores/types.js';
import type { ConsoleOptions } from './console.js';

export type ConsoleStoreTarget = { postgres: { url: string; schema?: string; graphileSchema?: string } } | { sqlite: string };

export interface AttachOptions {
  target: ConsoleStoreTarget;
  providers?: Record<string, ProviderAdapter>;
  policy?: Partial<SyncPolicy>;
  webhookSecrets?: Record<string, string>;
  logger?: Logger;
  /** SQLite only: host (and resume) syncs in this process so retry and cancel can run. */
  runSyncs?: boolean;
}

export interface AttachedConsole {
  engine: SyncEngine;
  store: Store;
  console: ConsoleOptions;
  /** One line about what the console is attached to (never the connection string: it may hold a password). */
  about: string;
  close(): Promise<void>;
}

export async function attachConsole(options: AttachOptions): Promise<AttachedConsole> {
  const providers = options.providers ?? {};
  const hasProviders = Object.keys(providers).length > 0;
  const common = {
    providers,
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.webhookSecrets ? { webhookSecrets: options.webhookSecrets } : {}),
    logger: options.logger ?? silentLogger,
  };
  if ('postgres' in options.target) {
    const { url, schema, graphileSchema } = options.target.postgres;
    const shown = `PostgreSQL schema ${schema ?? 'banksync'}`;
    if (hasProviders) {
      const { createDispatchingEngine } = await import('../dispatch/worker.js');
      const api = await createDispatchingEngine({ databaseUrl: url, ...(schema ? { schema } : {}), ...(graphileSchema ? { graphileSchema } : {}), ...common });
      return { engine: api.engine, store: api.store, console: { store: api.store, actions: true }, about: `${shown} (retry and cancel enqueue work for the workers)`, close: () => api.close() };
    }
    const { PostgresStore } = await import('../stores/postgres.js');
    const store = await PostgresStore.open({ connectionString: url, ...(schema ? { schema } : {}), max: 4 });
    const engine = createEngine({ store, ...common });
    return {
      engine,
      store,
      console: { store, actions: { disabled: 'no providers configured (give --config to retry and cancel)' } },
      about: `${shown} (read-only)`,
      close: async () => {
        await engine.stop();
        await store.close();
      },
    };
  }
  const { SqliteStore } = await import('../stores/sqlite.js');
  const store = SqliteStore.open(options.target.sqlite);
  const engine = createEngine({ store, ...common });
  let actions: ConsoleOptions['actions'];
  if (options.runSyncs && hasProviders) {
    await engine.start();
    actions = true;
  } else {
    actions = {
      disabled: hasProviders
        ? 'on SQLite this process would host the syncs it acts on; restart with --run-syncs when no other process runs them'
        : 'no providers configured (give --config, and --run-syncs on SQLite, to retry and cancel)',
    };
  }
  return {
    engine,
    store,
    console: { store, actions },
    about: `SQLite ${options.target.sqlite}${actions === true ? ' (hosting its syncs: --run-syncs)' : ' (read-only)'}`,
    close: async () => {
      await engine.stop();
      await store.close();
    },
  };
}
