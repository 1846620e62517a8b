/**
 * Issue 12, point 5. A provider without a webhook secret cannot prove a delivery is its own, so what such a
 * delivery claims is never applied: it only makes the engine read the sync from the provider now. An
 * authenticated delivery must name the sync's own connection. Early deliveries (provider id not known yet)
 * are held within per-id and byte bounds.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createEngine, EARLY_CALLBACK_BYTES_MAX, type SyncEngine } from '../../src/engine/engine.js';
import { SIGNATURE_HEADER, signWebhook } from '../../src/engine/webhook-auth.js';
import { UnknownProviderStatusError } from '../../src/providers/errors.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { completed, FakeAdapter, running, settle, type FakeAdapterScript } from '../support/fake-adapter.js';

const SECRET = 'whsec-forged-webhooks-2718';
const policy = { pollBaseMs: 60_000, pollMaxMs: 60_000, authPollMs: 60_000, retryBaseMs: 1_000, retryMaxMs: 8_000 };
const attackerAccounts = { status: 'COMPLETED', result: { outcome: 'COMPLETE', accounts: [{ accountId: 'attacker-acct', status: 'UPDATED' }] } };

let server: Server | undefined;
let engine: SyncEngine | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  await engine?.stop();
});

function setup(script: FakeAdapterScript, webhookSecrets?: Record<string, string>) {
  const clock = new SimulatedClock();
  const store = new MemoryStore();
  const adapter = new FakeAdapter('fake', script);
  engine = createEngine({ store, providers: { fake: adapter }, clock, policy, ...(webhookSecrets ? { webhookSecrets } : {}) });
  const signed = (body: string) => ({ headers: { [SIGNATURE_HEADER]: signWebhook(SECRET, body, Math.floor(clock.now() / 1000)) }, body });
  return { engine, store, adapter, signed, clock };
}

async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  server = createServer(handler);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('webhooks without a secret are hints to poll, never provider state', () => {
  it('a forged POST over HTTP cannot complete a live sync with its own account list; the sync reads the provider instead', async () => {
    const { engine, store, adapter, clock } = setup({ trigger: [{ providerRef: 'ref-1', observation: running }], poll: [running, completed] });
    const url = await listen(engine.webhookHandler('fake'));
    const sync = await engine.requestSync({ connectionId: 'conn-victim', provider: 'fake' });
    await settle();
    const forged = JSON.stringify({ ref: 'ref-1', connectionId: 'conn-victim', observation: attackerAccounts });
    const post = async () => {
      const reply = await fetch(url, { method: 'POST', body: forged, headers: { 'content-type': 'application/json' } });
      await settle();
      return reply;
    };

    const first = await post();
    expect(first.status).toBe(202);
    expect(await first.json()).toEqual({ applied: false, syncId: sync.syncId, verified: false });
    expect(adapter.calls.poll).toBe(1);
    expect((await engine.get(sync.syncId)).status).toBe('RUNNING');

    // The provider really finishes: a later hint has the sync read that, with the provider's accounts.
    clock.increment(1_000);
    expect((await post()).status).toBe(202);
    const done = await engine.get(sync.syncId);
    expect(done.status).toBe('COMPLETED');
    expect(done.result?.accounts).toEqual([{ accountId: 'a1', status: 'UPDATED' }]);
    expect(JSON.stringify(await store.getSync(sync.syncId))).not.toContain('attacker-acct');
  });

  it('the read a hint starts is the machine\'s own poll: an unknown provider status still fails the sync', async () => {
    const { engine } = setup({ trigger: [{ providerRef: 'ref-1', observation: running }], poll: [new UnknownProviderStatusError('fake', 'status', 'PAUSED_BY_BANK')] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    await engine.handleWebhook('fake', { headers: {}, body: JSON.stringify({ ref: 'ref-1', observation: completed }) });
    await settle();
    expect((await engine.get(sync.syncId)).error?.code).toBe('UNKNOWN_PROVIDER_STATUS');
  });

  it('a flood of hints makes the sync read the provider at most once per interval', async () => {
    const { engine, adapter, clock } = setup({ trigger: [{ providerRef: 'ref-1', observation: running }], poll: [running] });
    await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    const body = JSON.stringify({ ref: 'ref-1', observation: attackerAccounts });
    await Promise.all(Array.from({ length: 50 }, () => engine.handleWebhook('fake', { headers: {}, body })));
    await settle();
    expect(adapter.calls.poll).toBe(1);
    clock.increment(1_000);
    await Promise.all(Array.from({ length: 50 }, () => engine.handleWebhook('fake', { headers: {}, body })));
    await settle();
    expect(adapter.calls.poll).toBe(2);
  });

  it('an unauthenticated delivery for an unknown provider id is not held', async () => {
    const { engine } = setup({ trigger: ['hang'] });
    await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    const body = JSON.stringify({ ref: 'ref-early', observation: attackerAccounts });
    expect(await engine.handleWebhook('fake', { headers: {}, body })).toEqual({ applied: false, syncId: null, verified: false });
    expect(engine.heldWebhooks()).toEqual({ ids: 0, deliveries: 0, bytes: 0 });
  });
});

describe('authenticated webhooks', () => {
  it('are rejected (401, recorded) when they name another connection than the sync of their provider id', async () => {
    const { engine, signed } = setup({ trigger: [{ providerRef: 'ref-1', observation: running }], poll: ['hang'] }, { fake: SECRET });
    const url = await listen(engine.webhookHandler('fake'));
    const sync = await engine.requestSync({ connectionId: 'conn-victim', provider: 'fake' });
    await settle();
    const other = signed(JSON.stringify({ ref: 'ref-1', connectionId: 'conn-attacker', observation: attackerAccounts }));
    const reply = await fetch(url, { method: 'POST', body: other.body, headers: { 'content-type': 'application/json', ...other.headers } });
    expect(reply.status).toBe(401);
    expect(engine.rejectedWebhooks().map((r) => r.reason)).toEqual(['CONNECTION_MISMATCH']);
    expect((await engine.get(sync.syncId)).status).toBe('RUNNING');

    const own = signed(JSON.stringify({ ref: 'ref-1', connectionId: 'conn-victim', observation: completed }));
    expect(await engine.handleWebhook('fake', own)).toEqual({ applied: true, syncId: sync.syncId, verified: true });
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
  });

  it('early deliveries are held within a per-id bound and a byte bound', async () => {
    const { engine, signed } = setup({ trigger: ['hang'] }, { fake: SECRET });
    await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    for (let i = 0; i < 40; i++) await engine.handleWebhook('fake', signed(JSON.stringify({ ref: 'same-id', observation: { ...running, progress: i } })));
    const perId = engine.heldWebhooks();
    expect(perId.ids).toBe(1);
    expect(perId.deliveries).toBeLessThan(40);

    // 61 KB deliveries under distinct ids, well past the byte bound in total.
    const padding = 'x'.repeat(61 * 1024);
    const count = Math.ceil((2 * EARLY_CALLBACK_BYTES_MAX) / padding.length);
    for (let i = 0; i < count; i++) {
      const outcome = await engine.handleWebhook('fake', signed(JSON.stringify({ ref: `id-${i}`, padding, observation: running })));
      expect(outcome.applied).toBe(false);
    }
    const held = engine.heldWebhooks();
    expect(held.bytes).toBeLessThanOrEqual(EARLY_CALLBACK_BYTES_MAX);
    expect(held.ids).toBeLessThan(count);
  });
});
