import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine/engine.js';
import { signWebhook, SIGNATURE_HEADER, verifyWebhook } from '../../src/engine/webhook-auth.js';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox } from '../../src/sandbox/server.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { completed, FakeAdapter, settle } from '../support/fake-adapter.js';

const SECRET = 'whsec-test-31415926';
const NOW = 1_800_000_000_000;

describe('webhook authenticity', () => {
  const body = JSON.stringify({ ref: 'ref-1', observation: completed });
  const signed = (b = body, t = NOW / 1000, secret = SECRET) => ({ headers: { [SIGNATURE_HEADER]: signWebhook(secret, b, t) }, body: b });

  it('accepts a fresh, correctly signed delivery and rejects every other kind', () => {
    expect(verifyWebhook(SECRET, signed(), NOW)).toBeNull();
    expect(verifyWebhook(SECRET, { headers: {}, body }, NOW)).toBe('MISSING_SIGNATURE');
    expect(verifyWebhook(SECRET, { headers: { [SIGNATURE_HEADER]: 'garbage' }, body }, NOW)).toBe('MALFORMED_SIGNATURE');
    expect(verifyWebhook(SECRET, signed(body, NOW / 1000, 'other-secret'), NOW)).toBe('BAD_SIGNATURE');
    expect(verifyWebhook(SECRET, { ...signed(), body: body.replace('COMPLETED', 'FAILED') }, NOW)).toBe('BAD_SIGNATURE');
    expect(verifyWebhook(SECRET, signed(body, NOW / 1000 - 301), NOW)).toBe('TIMESTAMP_OUT_OF_WINDOW');
    expect(verifyWebhook(SECRET, signed(body, NOW / 1000 + 301), NOW)).toBe('TIMESTAMP_OUT_OF_WINDOW');
  });

  it('the engine rejects and records unverified deliveries without applying them, and applies verified ones', async () => {
    const clock = { now: () => NOW, setTimeout: () => 0, clearTimeout: () => {} };
    const store = new MemoryStore();
    const engine = createEngine({ store, providers: { fake: new FakeAdapter('fake', { poll: ['hang'] }) }, clock, webhookSecrets: { fake: SECRET } });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    const forged = engine.handleWebhook('fake', signed(body, NOW / 1000, 'guessed'));
    await expect(forged).rejects.toMatchObject({ code: 'WEBHOOK_UNAUTHORIZED' });
    await expect(engine.handleWebhook('fake', { headers: {}, body })).rejects.toMatchObject({ code: 'WEBHOOK_UNAUTHORIZED' });
    expect((await engine.get(sync.syncId)).status).toBe('RUNNING');
    expect(engine.rejectedWebhooks().map((r) => r.reason)).toEqual(['BAD_SIGNATURE', 'MISSING_SIGNATURE']);
    expect(JSON.stringify(engine.rejectedWebhooks())).not.toContain(SECRET);
    expect((await engine.handleWebhook('fake', signed())).applied).toBe(true);
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
  });

  it('answers 401 over HTTP, and a sandbox that signs its deliveries gets through', async () => {
    const store = new MemoryStore();
    const sandbox = await startSandbox({ webhookSecrets: { finx: SECRET } });
    const finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 't' });
    const engine = createEngine({ store, providers: { finx }, webhookSecrets: { finx: SECRET }, policy: { pollBaseMs: 60_000 } });
    const server = createServer(engine.webhookHandler('finx'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    sandbox.setWebhookUrl(url, 'finx');
    const response = await fetch(url, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(response.status).toBe(401);
    expect(await response.text()).not.toContain(SECRET);
    const access = await finx.createAccess({ providerId: 'b', accessMethodId: 'FINTS', credentials: { pin: '1' } });
    const sync = await engine.requestSync({ connectionId: access.id, provider: 'finx' });
    await sandbox.webhooksIdle();
    await settle();
    expect(engine.rejectedWebhooks()).toHaveLength(1);
    const stats = sandbox.stats().finx.connections[access.id]!;
    expect(stats.webhooks).toBeGreaterThan(0);
    expect(stats.webhookFailures).toBe(0);
    expect((await engine.get(sync.syncId)).status).not.toBe('FAILED');
    server.close();
    await engine.stop();
    await sandbox.close();
  });
});
