/**
 * The consumer test's driver (not README material): starts the sandbox from `banksync/sandbox`, creates a
 * finX access that asks for one TAN, runs the README's `startBankSync` against it and answers the TAN.
 * Prints one JSON line; exit 0 when the sync completed and the app was told.
 */
import type { AddressInfo } from 'node:net';
import { createFinxAdapter, type SyncView } from 'banksync';
import { startSandbox } from 'banksync/sandbox';
import { startBankSync } from './embed.js';

const secret = 'consumer-client-secret';
const sandbox = await startSandbox({ auth: { clients: { 'consumer-app': secret } }, webhookSecrets: { finx: 'consumer-webhook-secret' } });
const setup = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'fixture' });
const access = await setup.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'one-challenge' });

const asked: SyncView[] = [];
let refreshed: SyncView | undefined;
const { engine, webhooks } = await startBankSync(
  {
    BANKSYNC_DB: process.env.BANKSYNC_DB,
    FINX_BASE_URL: `${sandbox.url}/finx`,
    FINX_TOKEN_URL: `${sandbox.url}/finx/oauth/token`,
    FINX_CLIENT_ID: 'consumer-app',
    FINX_CLIENT_SECRET: secret,
    FINX_WEBHOOK_SECRET: 'consumer-webhook-secret',
    WEBHOOK_PORT: '0',
  },
  { notifyUser: (sync) => asked.push(sync), refreshAccounts: (sync) => (refreshed = sync) },
);
if (!webhooks.listening) await new Promise((resolve) => webhooks.once('listening', resolve));
sandbox.setWebhookUrl(`http://127.0.0.1:${(webhooks.address() as AddressInfo).port}`, 'finx');

const sync = await engine.requestSync({ tenantId: 'tenant-1', connectionId: access.id, provider: 'finx' });
const deadline = Date.now() + 30_000;
while (asked.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
const challenge = asked[0]?.challenge;
if (!challenge) throw new Error('the user was never asked for a TAN');
await engine.submitChallengeResponse(sync.syncId, { challengeId: challenge.id, response: '123456' }, { tenantId: 'tenant-1' });
const final = await engine.waitForTerminal(sync.syncId, { tenantId: 'tenant-1' });
// The durable event log, read with a cursor as another process would, and what retention would remove a year on.
const log = await engine.readEvents({ after: null, limit: 100 });
const events = log.events.filter((e) => e.syncId === sync.syncId).map((e) => e.name);
const yearLater = await engine.prune({ dryRun: true, now: Date.now() + 366 * 24 * 3_600_000 });
process.stdout.write(
  `${JSON.stringify({ status: final.status, outcome: final.result?.outcome, refreshed: refreshed?.syncId === final.syncId, tokenGrants: sandbox.auth.grants, events, logged: log.events.length, yearLater })}\n`,
);
webhooks.close();
await engine.stop();
await sandbox.close();
process.exit(final.status === 'COMPLETED' && refreshed ? 0 : 1);
