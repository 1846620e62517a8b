/**
 * `banksync serve [--port N]`: the offline viewer on a self-contained setup — the engine on an embedded
 * SQLite store (a fresh temp directory unless `--demo --db`), the provider sandbox, the finX adapter against it,
 * one finX access per listed sandbox scenario — and prints the viewer URL. Runs until interrupted.
 *
 * `banksync serve --config F | --database-url URL | --db FILE`: the operator console attached to that store
 * (no sandbox, no demo accesses; see src/viewer/attach.ts for what it may do there).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { SyncPolicy } from '../../../machines/synchronization.js';
import { adaptersFromConfig, loadConfig } from '../../config/index.js';
import { createEngine, type SyncEngine } from '../../engine/engine.js';
import { createLogger } from '../../engine/logger.js';
import { createFinxAdapter } from '../../providers/finx/index.js';
import { FINX_SCENARIOS, isFinxScenario } from '../../sandbox/finx.js';
import type { ViewerConnection } from '../../viewer/index.js';
import type { StatelyInspector } from '../../engine/inspect.js';
import { LOG_LEVELS, oneOf, port, postgresUrl, type LogLevel } from '../options.js';
import { openInspector } from '../inspect.js';
import { loadFor, UsageError } from '../peers.js';
import type { ConsoleStoreTarget } from '../../viewer/attach.js';
import type { ConsoleOptions } from '../../viewer/console.js';

export const SERVE_DEFAULT_PORT = 4610;
export const SERVE_DEFAULT_SCENARIOS = ['success', 'one-challenge', 'decoupled', 'redirect', 'provider-5xx', 'partial', 'failed'] as const;

/** Slow enough to watch each state on the page, fast enough that a sync finishes in seconds. */
export const SERVE_POLICY: Partial<SyncPolicy> = {
  pollBaseMs: 600,
  pollMaxMs: 2_000,
  authPollMs: 1_500,
  retryBaseMs: 500,
  retryMaxMs: 4_000,
  syncDeadlineMs: 15 * 60_000,
};

/** Sandbox-only API token and credentials (the sandbox accepts any; they never reach logs or the store). */
const SANDBOX_TOKEN = 'sandbox-token';

function scenarioList(value: string): string[] {
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !isFinxScenario(n));
  if (names.length === 0 || unknown.length > 0) {
    throw new InvalidArgumentError(`unknown scenario(s) ${unknown.join(', ')}; known: ${FINX_SCENARIOS.map((s) => s.name).join(', ')}`);
  }
  return names;
}

interface ServeOptions {
  config?: string;
  databaseUrl?: string;
  schema?: string;
  demo?: boolean;
  runSyncs?: boolean;
  token?: string;
  inspect?: boolean | string;
  port: number;
  host: string;
  db?: string;
  scenarios: string[];
  logLevel: LogLevel;
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|\[::1\])$/;

function consoleToken(value: string): string {
  if (value.length < 16) throw new InvalidArgumentError('the token must be at least 16 characters');
  return value;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('start the local web viewer and print its URL: on a sandbox with finX accesses, or on the store and providers of --config')
    .option('--config <file>', "operator console on the configured store and providers (no sandbox)")
    .option('--database-url <url>', 'operator console on this PostgreSQL database', postgresUrl)
    .option('--schema <name>', 'PostgreSQL schema of banksync tables (default: the config\'s, else banksync)')
    .option('--db <path>', 'operator console on this SQLite file (with --demo: the file the demo keeps its syncs in)')
    .option('--run-syncs', 'SQLite console: host and resume the syncs in this process, so retry and cancel work (only when nothing else runs them)')
    .option('--demo', 'the self-contained demo (sandbox + finX accesses) even with --db')
    .option('--token <token>', 'required to bind a non-loopback --host; every request must carry it (default: $BANKSYNC_CONSOLE_TOKEN)', consoleToken)
    .option('--port <n>', `viewer port (default ${SERVE_DEFAULT_PORT})`, port, SERVE_DEFAULT_PORT)
    .option('--host <host>', 'address to bind (default 127.0.0.1, local only; another address needs --token)', '127.0.0.1')
    .option('--inspect [port]', 'stream actor events to the Stately inspector (local bridge, default port 8080)')
    .option('--log-level <level>', `log level on stderr (${LOG_LEVELS.join(', ')}); info logs one line per sync transition`, oneOf(LOG_LEVELS), 'info')
    .option('--scenarios <names>', 'comma-separated finX sandbox scenarios to create accesses for (demo)', scenarioList, [...SERVE_DEFAULT_SCENARIOS])
    .action(async (opts: ServeOptions) => {
      const { startViewer } = await loadFor('serve', () => import('../../viewer/index.js'));
      const token = opts.token ?? process.env.BANKSYNC_CONSOLE_TOKEN;
      if (token !== undefined) consoleToken(token);
      if (!LOOPBACK.test(opts.host) && token === undefined) {
        throw new UsageError(`binding ${opts.host} (not a loopback address) requires --token (or $BANKSYNC_CONSOLE_TOKEN)`);
      }
      const attach = !opts.demo && Boolean(opts.config || opts.databaseUrl || opts.db);
      const inspector = attach ? null : await openInspector(opts.inspect);
      const hosting = attach ? await consoleHosting(opts) : await sandboxHosting(opts, inspector);
      let viewer: Awaited<ReturnType<typeof startViewer>> | null = null;
      try {
        if (!hosting.console) await hosting.engine.start();
        viewer = await startViewer({
          engine: hosting.engine,
          port: opts.port,
          host: opts.host,
          connections: hosting.connections,
          ...(hosting.console ? { console: hosting.console } : {}),
          ...(token !== undefined ? { token } : {}),
        });
        process.stdout.write(`banksync viewer: ${viewer.url}\n${hosting.about.map((line) => `  ${line}\n`).join('')}`);
        for (const c of hosting.connections) process.stdout.write(`  ${c.label}: ${c.connectionId}\n`);
        process.stdout.write('press Ctrl+C to stop\n');
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
      } finally {
        await viewer?.close();
        await hosting.engine.stop();
        await inspector?.stop();
        await hosting.close();
      }
    });
}

/** What the viewer shows: an engine, the connections to offer, lines about where things are, and cleanup. */
interface Hosting {
  engine: SyncEngine;
  connections: ViewerConnection[];
  about: string[];
  /** Set when attached to a real store: the console, which starts nothing by itself. */
  console?: ConsoleOptions;
  close(): Promise<void>;
}

const inspectOption = (inspector: StatelyInspector | null) => (inspector ? { inspect: inspector.inspect } : {});

/** Shown at start: a few connections the store knows (bounded: a production store may hold millions). */
const LISTED_CONNECTIONS = 20;

/** `--config` / `--database-url` / `--db`: the operator console on that store. */
async function consoleHosting(opts: ServeOptions): Promise<Hosting> {
  const config = opts.config ? await loadConfig(opts.config) : undefined;
  const configured = config?.store;
  let target: ConsoleStoreTarget;
  if (opts.databaseUrl) {
    target = { postgres: { url: opts.databaseUrl, schema: opts.schema ?? (configured && 'postgres' in configured ? configured.postgres.schema : undefined) ?? 'banksync' } };
  } else if (opts.db) {
    if (!existsSync(opts.db)) throw new UsageError(`banksync serve: no SQLite store at ${opts.db} (the console attaches to an existing store; --demo --db creates one)`);
    target = { sqlite: opts.db };
  } else if (configured && 'postgres' in configured) {
    target = { postgres: { url: configured.postgres.url, schema: opts.schema ?? configured.postgres.schema ?? 'banksync' } };
  } else if (configured && 'sqlite' in configured) {
    target = { sqlite: configured.sqlite };
  } else {
    throw new UsageError('banksync serve: the configuration has no store: give --database-url or --db');
  }
  if (opts.runSyncs && !('sqlite' in target)) throw new UsageError('--run-syncs is for SQLite; on PostgreSQL the workers run the syncs');
  const { attachConsole } = await loadFor('serve', () => import('../../viewer/attach.js'));
  const attached = await attachConsole({
    target,
    ...(config ? { providers: adaptersFromConfig(config), policy: config.policy, webhookSecrets: config.webhookSecrets } : {}),
    logger: createLogger({ level: opts.logLevel, destination: process.stderr }),
    ...(opts.runSyncs ? { runSyncs: true } : {}),
  });
  try {
    const connections = (await attached.store.listConnections({ limit: LISTED_CONNECTIONS })).map((c) => ({
      connectionId: c.connectionId,
      provider: c.provider,
      label: `${c.provider} ${c.connectionId}`,
      description: `tenant ${c.tenantId}, ${c.state}`,
    }));
    return {
      engine: attached.engine,
      connections,
      console: attached.console,
      about: [`console on ${attached.about}`, ...(opts.config ? [`config: ${opts.config}`] : [])],
      close: () => attached.close(),
    };
  } catch (error) {
    await attached.close();
    throw error;
  }
}

/** No config: a sandbox, a SQLite file (temporary unless --db) and one finX access per scenario. */
async function sandboxHosting(opts: ServeOptions, inspector: StatelyInspector | null): Promise<Hosting> {
  const { startSandbox } = await loadFor('serve', () => import('../../sandbox/server.js'));
  const { SqliteStore } = await loadFor('serve', () => import('../../stores/sqlite.js'));
  const tempDir = opts.db ? null : mkdtempSync(join(tmpdir(), 'banksync-serve-'));
  const dbPath = opts.db ?? join(tempDir!, 'serve.sqlite');
  if (opts.db) mkdirSync(dirname(opts.db), { recursive: true });
  const store = SqliteStore.open(dbPath);
  const sandbox = await startSandbox();
  const close = async () => {
    await sandbox.close();
    await store.close();
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  };
  try {
    const adapter = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: SANDBOX_TOKEN });
    const engine = createEngine({ store, providers: { finx: adapter }, policy: SERVE_POLICY, logger: createLogger({ level: opts.logLevel, destination: process.stderr }), ...inspectOption(inspector) });
    const connections: ViewerConnection[] = [];
    for (const name of opts.scenarios) {
      const info = FINX_SCENARIOS.find((s) => s.name === name)!;
      const access = await adapter.createAccess({ providerId: 'sandbox-bank', accessMethodId: 'FINTS', credentials: { login: 'viewer-user', pin: 'viewer-pin' }, scenario: name });
      connections.push({
        connectionId: access.id,
        provider: 'finx',
        label: `finX ${name}`,
        description: `${info.description}${info.answers.length > 0 ? ` (TAN: ${info.answers.join(', ')})` : ''}`,
      });
    }
    return { engine, connections, about: [`store: ${dbPath}${tempDir ? ' (temporary)' : ''}`, `sandbox: ${sandbox.url}`], close };
  } catch (error) {
    await close();
    throw error;
  }
}
