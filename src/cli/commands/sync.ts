import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { adaptersFromConfig } from '../../config/index.js';
import { createEngine } from '../../engine/engine.js';
import { createLogger } from '../../engine/logger.js';
import type { SyncView } from '../../engine/view.js';
import { PROVIDER_FAMILIES, type ProviderFamily } from '../../providers/registry.js';
import { DEMO_POLICY } from '../demo/policy.js';
import { httpUrl, LOG_LEVELS, oneOf, type LogLevel } from '../options.js';
import { openInspector } from '../inspect.js';
import { openStore, providerSource, UsageError } from '../peers.js';

interface SyncOptions {
  provider: ProviderFamily;
  connection: string;
  config?: string;
  sandboxUrl?: string;
  token?: string;
  db?: string;
  scope: 'TRANSACTIONS' | 'ACCOUNTS';
  tan?: string[];
  tenant: string;
  inspect?: boolean | string;
  json?: boolean;
  logLevel: LogLevel;
}

export const DEFAULT_SYNC_DB = '.banksync/banksync.sqlite';

export function registerSync(program: Command): void {
  program
    .command('sync')
    .description('drive one sync of a connection: real providers from --config, or a running sandbox (--sandbox-url)')
    .requiredOption('--provider <family>', `provider family (${PROVIDER_FAMILIES.join(', ')})`, oneOf(PROVIDER_FAMILIES))
    .requiredOption('--connection <id>', 'provider-side connection id (finX access id, finAPI bank connection id, ...)')
    .option('--config <file>', 'banksync.config.json (providers, auth, store, timings)')
    .option('--sandbox-url <url>', 'base URL printed by `banksync sandbox` (sandbox credentials)', httpUrl)
    .option('--token <token>', 'sandbox token (default: $BANKSYNC_TOKEN, else a sandbox token)')
    .option('--db <path>', `SQLite file of the engine (default: the config's store, else ${DEFAULT_SYNC_DB})`)
    .option('--scope <scope>', 'TRANSACTIONS or ACCOUNTS', oneOf(['TRANSACTIONS', 'ACCOUNTS'] as const), 'TRANSACTIONS')
    .option('--tan <tan...>', 'answers for embedded challenges, in order (otherwise asked on the terminal)')
    .option('--tenant <id>', 'tenant id', 'default')
    .option('--inspect [port]', 'stream actor events to the Stately inspector (local bridge, default port 8080)')
    .option('--json', 'print the final sync as JSON on stdout; progress goes to stderr')
    .option('--log-level <level>', `log level on stderr (${LOG_LEVELS.join(', ')}); info logs one line per sync transition`, oneOf(LOG_LEVELS), 'info')
    .action(async (opts: SyncOptions) => {
      const { config, sandbox } = await providerSource(opts);
      const adapters = adaptersFromConfig(config);
      const adapter = adapters[opts.provider];
      if (!adapter) throw new UsageError(`provider ${opts.provider} is not configured in ${opts.config}`);
      const store = await openStore('sync', opts.db ?? (config.store ? undefined : DEFAULT_SYNC_DB), config.store);
      const progress = opts.json ? process.stderr : process.stdout;
      const inspector = await openInspector(opts.inspect);
      const engine = createEngine({
        store,
        providers: { [opts.provider]: adapter },
        // Sub-second polls are for the sandbox only; a configured provider gets production timings.
        policy: sandbox ? DEMO_POLICY : config.policy,
        webhookSecrets: config.webhookSecrets,
        logger: createLogger({ level: opts.logLevel, destination: process.stderr }),
        ...(inspector ? { inspect: inspector.inspect } : {}),
      });
      const tans = [...(opts.tan ?? [])];
      const ask = async (view: SyncView) => {
        const challenge = view.challenge!;
        let answer = tans.shift();
        if (answer === undefined && process.stdin.isTTY) {
          const rl = createInterface({ input: process.stdin, output: process.stderr });
          answer = await rl.question(`${challenge.message ?? 'TAN required'} (challenge ${challenge.id}): `);
          rl.close();
        }
        if (answer) await engine.submitChallengeResponse(view.syncId, { challengeId: challenge.id, response: answer }, { tenantId: view.tenantId });
      };
      engine.events.on('sync.updated', (v) => progress.write(`${v.syncId}  ${v.state}\n`));
      engine.events.on('sync.awaitingUser', (v) => {
        if (v.challenge?.kind === 'EMBEDDED') ask(v).catch((e: Error) => process.stderr.write(`answer not accepted: ${e.message}\n`));
        else progress.write(`user action: ${v.challenge?.kind} ${v.challenge?.redirectUrl ?? v.challenge?.message ?? ''}\n`);
      });
      try {
        await engine.start();
        const view = await engine.requestSync({ connectionId: opts.connection, provider: opts.provider, scope: opts.scope, tenantId: opts.tenant });
        const final = await engine.waitForTerminal(view.syncId, { tenantId: opts.tenant });
        const summary = { syncId: final.syncId, status: final.status, result: final.result, error: final.error };
        process.stdout.write(`${JSON.stringify(summary, null, opts.json ? undefined : 2)}\n`);
        process.exitCode = final.status === 'COMPLETED' ? 0 : 1;
      } finally {
        await engine.stop();
        await inspector?.stop();
        await store.close();
      }
    });
}

