/**
 * The README's embedding example is test/package/consumer/embed.ts, word for word. Here it runs against this
 * checkout's sources (vitest maps `banksync` to ./src); test/package/consumer.test.ts runs the same file from
 * the packed tarball with plain node.
 */
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { createFinxAdapter, type SyncView } from '../src/index.js';
import { startSandbox } from '../src/sandbox/server.js';
import { startBankSync } from './package/consumer/embed.js';

const read = (path: string) => readFileSync(fileURLToPath(new URL(path, import.meta.url)), 'utf8');

it('the README shows the embedding example exactly as the consumer test runs it', () => {
  const readme = read('../README.md');
  const example = read('./package/consumer/embed.ts').trimEnd();
  expect(readme).toContain('```ts\n' + example + '\n```');
  // The commands stay first.
  expect(readme.split('\n').slice(2, 6).join('\n')).toMatch(/npx banksync demo[\s\S]*npm test/);
});

it('the embedding example syncs a finX access with one TAN (OAuth client token, signed webhooks)', async () => {
  const sandbox = await startSandbox({ webhookSecrets: { finx: 'readme-webhook-secret' } });
  const access = await createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'fixture' }).createAccess({
    providerId: 'bank',
    accessMethodId: 'FINTS',
    credentials: { pin: '1' },
    scenario: 'one-challenge',
  });
  const asked: SyncView[] = [];
  let refreshed: SyncView | undefined;
  const { engine, webhooks } = await startBankSync(
    {
      BANKSYNC_DB: join(mkdtempSync(join(tmpdir(), 'banksync-readme-')), 'banksync.sqlite'),
      FINX_BASE_URL: `${sandbox.url}/finx`,
      FINX_TOKEN_URL: `${sandbox.url}/finx/oauth/token`,
      FINX_CLIENT_ID: 'sandbox-client',
      FINX_CLIENT_SECRET: 'sandbox-secret',
      FINX_WEBHOOK_SECRET: 'readme-webhook-secret',
      WEBHOOK_PORT: '0',
    },
    { notifyUser: (sync) => asked.push(sync), refreshAccounts: (sync) => (refreshed = sync) },
  );
  if (!webhooks.listening) await new Promise((resolve) => webhooks.once('listening', resolve));
  sandbox.setWebhookUrl(`http://127.0.0.1:${(webhooks.address() as AddressInfo).port}`, 'finx');
  const sync = await engine.requestSync({ tenantId: 't1', connectionId: access.id, provider: 'finx' });
  await expect.poll(() => asked.length, { timeout: 20_000 }).toBe(1);
  await engine.submitChallengeResponse(sync.syncId, { challengeId: asked[0]!.challenge!.id, response: '123456' }, { tenantId: 't1' });
  const final = await engine.waitForTerminal(sync.syncId, { tenantId: 't1' });
  expect(final.status).toBe('COMPLETED');
  expect(refreshed?.syncId).toBe(final.syncId);
  expect(sandbox.auth.grants).toEqual({ client_credentials: 1 });
  webhooks.close();
  await engine.stop();
  await sandbox.close();
});
