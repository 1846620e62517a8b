import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { createEngine } from '../../engine/engine.js';
import { createLogger } from '../../engine/logger.js';
import type { SyncView } from '../../engine/view.js';
import { createAdapter, PROVIDER_FAMILIES, type ProviderFamily } from '../../providers/registry.js';
import { SqliteStore } from '../../stores/sqlite.js';
import { DEMO_POLICY } from '../demo/run.js';
import { httpUrl, oneOf } from '../options.js';
import { openInspector } from '../inspect.js';

interface SyncOptions {
  provider: ProviderFamily;
  connection: string;
  sandboxUrl: string;
  token: string;
  db: string;
  scope: 'TRANSACTIONS' | 'ACCOUNTS';
  tan?: string[];
  tenant: string;
  inspect?: boolean | string;
}

export function registerSync(program: Command): void {
  program
    .command('sync')
    .description('drive one sync of a connection against a running sandbox (see `banksync sandbox`)')
    .requiredOption('--provider <family>', `provider family (${PROVIDER_FAMILIES.join(', ')})`, oneOf(PROVIDER_FAMILIES))
    .requiredOption('--connection <id>', 'provider-side connection id (finX access id, ...)')
    .requiredOption('--sandbox-url <url>', 'base URL printed by `banksync sandbox`', httpUrl)
    .option('--token <token>', 'provider API token (default: BANKSYNC_TOKEN or a sandbox token)', process.env.BANKSYNC_TOKEN ?? 'sandbox-token')
    .option('--db <path>', 'SQLite file of the engine', '.banksync/banksync.sqlite')
    .option('--scope <scope>', 'TRANSACTIONS or ACCOUNTS', oneOf(['TRANSACTIONS', 'ACCOUNTS'] as const), 'TRANSACTIONS')
    .option('--tan <tan...>', 'answers for embedded challenges, in order (otherwise asked on the terminal)')
    .option('--tenant <id>', 'tenant id', 'default')
    .option('--inspect [port]', 'stream actor events to the Stately inspector (local bridge, default port 8080)')
    .action(async (opts: SyncOptions) => {
      mkdirSync(dirname(opts.db), { recursive: true });
      const store = SqliteStore.open(opts.db);
      const adapter = createAdapter(opts.provider, { baseUrl: `${opts.sandboxUrl}/${opts.provider}`, token: opts.token });
      const inspector = await openInspector(opts.inspect);
      const engine = createEngine({
        store,
        providers: { [opts.provider]: adapter },
        policy: DEMO_POLICY,
        logger: createLogger({ level: 'warn', destination: process.stderr }),
        ...(inspector ? { inspect: inspector.inspect } : {}),
      });
      const tans = [...(opts.tan ?? [])];
      const ask = async (view: SyncView) => {
        const challenge = view.challenge!;
        let answer = tans.shift();
        if (answer === undefined && process.stdin.isTTY) {
          const rl = createInterface({ input: process.stdin, output: process.stdout });
          answer = await rl.question(`${challenge.message ?? 'TAN required'} (challenge ${challenge.id}): `);
          rl.close();
        }
        if (answer) await engine.submitChallengeResponse(view.syncId, { challengeId: challenge.id, response: answer }, { tenantId: view.tenantId });
      };
      engine.events.on('sync.updated', (v) => process.stdout.write(`${v.syncId}  ${v.state}\n`));
      engine.events.on('sync.awaitingUser', (v) => {
        if (v.challenge?.kind === 'EMBEDDED') ask(v).catch((e: Error) => process.stderr.write(`answer not accepted: ${e.message}\n`));
        else process.stdout.write(`user action: ${v.challenge?.kind} ${v.challenge?.redirectUrl ?? v.challenge?.message ?? ''}\n`);
      });
      try {
        await engine.start();
        const view = await engine.requestSync({ connectionId: opts.connection, provider: opts.provider, scope: opts.scope, tenantId: opts.tenant });
        const final = await engine.waitForTerminal(view.syncId, { tenantId: opts.tenant });
        process.stdout.write(`${JSON.stringify({ syncId: final.syncId, status: final.status, result: final.result, error: final.error }, null, 2)}\n`);
        process.exitCode = final.status === 'COMPLETED' ? 0 : 1;
      } finally {
        await engine.stop();
        await inspector?.stop();
        await store.close();
      }
    });
}
