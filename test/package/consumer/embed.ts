import http from 'node:http';
import { createEngine, createFinxAdapter, type SyncView } from 'banksync';
import { SqliteStore } from 'banksync/sqlite';

export interface App {
  notifyUser(sync: SyncView): void; // e.g. push "enter your TAN" to the user's device
  refreshAccounts(sync: SyncView): void; // e.g. re-read balances and transactions
}

export async function startBankSync(env: NodeJS.ProcessEnv, app: App) {
  const engine = createEngine({
    store: SqliteStore.open(env.BANKSYNC_DB ?? 'banksync.sqlite'),
    providers: {
      finx: createFinxAdapter({
        baseUrl: env.FINX_BASE_URL!,
        auth: { type: 'clientCredentials', tokenUrl: env.FINX_TOKEN_URL!, clientId: env.FINX_CLIENT_ID!, clientSecret: env.FINX_CLIENT_SECRET! },
      }),
    },
    webhookSecrets: { finx: env.FINX_WEBHOOK_SECRET! },
  });
  await engine.start(); // resumes syncs that were running before a restart
  engine.events.on('sync.awaitingUser', (sync) => app.notifyUser(sync));
  engine.events.on('sync.completed', (sync) => app.refreshAccounts(sync));
  const webhooks = http.createServer(engine.webhookHandler('finx')).listen(Number(env.WEBHOOK_PORT ?? 8080));
  return { engine, webhooks };
}

// Later, per user request:
//   const sync = await engine.requestSync({ tenantId, connectionId: accessId, provider: 'finx' }); // one per connection
//   await engine.submitChallengeResponse(sync.syncId, { challengeId, response: tan }, { tenantId }); // never stored
