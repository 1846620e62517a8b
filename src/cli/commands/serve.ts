/**
 * `banksync serve [--port N]`: the offline viewer on a self-contained setup — the engine on an embedded
 * SQLite store (a fresh temp directory unless `--db`), the provider sandbox, the finX adapter against it,
 * one finX access per listed sandbox scenario — and prints the viewer URL. Runs until interrupted.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { SyncPolicy } from '../../../machines/synchronization.js';
import { adaptersFromConfig, loadConfig } from '../../config/index.js';
import { startWebhookDelivery } from '../../engine/outgoing-webhooks.js';
import { createEngine, type SyncEngine } from '../../engine/engine.js';
import { createLogger } from '../../engine/logger.js';
import { createFinxAdapter } from '../../providers/finx/index.js';
import { FINX_SCENARIOS, isFinxScenario } from '../../sandbox/finx.js';
import type { ViewerConnection } from '../../viewer/index.js';
import type { StatelyInspector } from '../../engine/inspect.js';
import { port } from '../options.js';
import { openInspector } from '../inspect.js';
import { loadFor, openStore } from '../peers.js';

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
  inspect?: boolean | string;
  port: number;
  host: string;
  db?: string;
  scenarios: string[];
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('start the local web viewer and print its URL: on a sandbox with finX accesses, or on the store and providers of --config')
    .option('--config <file>', "attach to the configured store and providers (no sandbox); lists the store's connections")
    .option('--port <n>', `viewer port (default ${SERVE_DEFAULT_PORT})`, port, SERVE_DEFAULT_PORT)
    .option('--host <host>', 'address to bind (default 127.0.0.1, local only)', '127.0.0.1')
    .option('--db <path>', 'SQLite file to keep syncs in (default: a fresh temporary directory)')
    .option('--inspect [port]', 'stream actor events to the Stately inspector (local bridge, default port 8080)')
    .option('--scenarios <names>', 'comma-separated finX sandbox scenarios to create accesses for', scenarioList, [...SERVE_DEFAULT_SCENARIOS])
    .action(async (opts: ServeOptions) => {
      const { startViewer } = await loadFor('serve', () => import('../../viewer/index.js'));
      const inspector = await openInspector(opts.inspect);
      const hosting = opts.config ? await configuredHosting(opts.config, opts.db, inspector) : await sandboxHosting(opts, inspector);
      let viewer: Awaited<ReturnType<typeof startViewer>> | null = null;
      try {
        await hosting.engine.start();
        viewer = await startViewer({ engine: hosting.engine, port: opts.port, host: opts.host, connections: hosting.connections });
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
  close(): Promise<void>;
}

const inspectOption = (inspector: StatelyInspector | null) => (inspector ? { inspect: inspector.inspect } : {});

/** `--config`: the configured store and providers; the connections the store already knows. */
async function configuredHosting(file: string, db: string | undefined, inspector: StatelyInspector | null): Promise<Hosting> {
  const config = await loadConfig(file);
  const store = await openStore('serve', db, config.store);
  const engine = createEngine({
    store,
    providers: adaptersFromConfig(config),
    policy: config.policy,
    webhookSecrets: config.webhookSecrets,
    logger: createLogger({ level: 'warn', destination: process.stderr }),
    ...inspectOption(inspector),
  });
  const connections = (await store.listConnections()).map((c) => ({
    connectionId: c.connectionId,
    provider: c.provider,
    label: `${c.provider} ${c.connectionId}`,
    description: `tenant ${c.tenantId}, ${c.state}`,
  }));
  // webhooks.outgoing: this process delivers the event log to the app (with workers, they do it instead).
  const webhooks = config.outgoingWebhook ? await startWebhookDelivery(store, { ...config.outgoingWebhook, logger: createLogger({ level: 'warn', destination: process.stderr }) }) : null;
  return {
    engine,
    connections,
    about: [`config: ${file}`, ...(webhooks ? ['outgoing webhooks: on'] : [])],
    close: async () => {
      await webhooks?.stop();
      await store.close();
    },
  };
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
    const engine = createEngine({ store, providers: { finx: adapter }, policy: SERVE_POLICY, logger: createLogger({ level: 'warn', destination: process.stderr }), ...inspectOption(inspector) });
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
