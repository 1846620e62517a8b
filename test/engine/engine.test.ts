import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createEngine } from '../../src/engine/engine.js';
import { BanksyncError } from '../../src/engine/errors.js';
import { SIGNATURE_HEADER, signWebhook } from '../../src/engine/webhook-auth.js';
import { ProviderError } from '../../src/providers/errors.js';
import { MemoryStore } from '../../src/stores/memory.js';
import type { Store } from '../../src/stores/types.js';
import { completed, embedded, FakeAdapter, running, settle, type FakeAdapterScript } from '../support/fake-adapter.js';

const policy = { pollBaseMs: 1_000, pollMaxMs: 4_000, authPollMs: 5_000, retryBaseMs: 1_000, retryMaxMs: 8_000, jitterRatio: 0 };

const WEBHOOK_SECRET = 'whsec-engine-test';

function setup(script: FakeAdapterScript, store: Store = new MemoryStore(), clock = new SimulatedClock()) {
  const adapter = new FakeAdapter('fake', script);
  // Webhooks are applied as provider state only when authenticated (see test/security/forged-webhooks.test.ts).
  const engine = createEngine({ store, providers: { fake: adapter }, clock, policy, webhookSecrets: { fake: WEBHOOK_SECRET } });
  const advance = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  const signed = (body: string) => ({ headers: { [SIGNATURE_HEADER]: signWebhook(WEBHOOK_SECRET, body, Math.floor(clock.now() / 1000)) }, body });
  return { adapter, engine, store, clock, advance, signed };
}

async function expectCode(promise: Promise<unknown>, code: string) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BanksyncError);
  expect((error as BanksyncError).code).toBe(code);
}

async function dumpStore(store: Store, syncId: string) {
  return JSON.stringify({
    sync: await store.getSync(syncId),
    timers: await store.listTimers(syncId),
    effects: await store.listEffects(syncId),
    transitions: await store.listTransitions(syncId),
  });
}

describe('engine', () => {
  it('drives a sync to COMPLETED by polling, committing every transition and emitting events after commit', async () => {
    const { engine, store, advance, adapter } = setup({ poll: [running, completed] });
    const seen: string[] = [];
    engine.events.on('sync.updated', (v) => seen.push(v.state));
    engine.events.on('sync.completed', (v) => seen.push(`completed:${v.result?.outcome}`));
    const sync = await engine.requestSync({ connectionId: 'conn-1', provider: 'fake' });
    expect(sync.status).toBe('QUEUED');
    await settle();
    await advance(1_000);
    await advance(2_000);
    const done = await engine.get(sync.syncId);
    expect(done.status).toBe('COMPLETED');
    expect(done.active).toBe(false);
    expect(done.result?.accounts).toEqual([{ accountId: 'a1', status: 'UPDATED' }]);
    expect(adapter.calls).toMatchObject({ trigger: 1, poll: 2 });
    expect(seen).toEqual([
      'QUEUED.Triggering',
      'RUNNING.Waiting',
      'RUNNING.Polling',
      'RUNNING.Waiting',
      'RUNNING.Polling',
      'COMPLETED',
      'completed:COMPLETE',
    ]);
    const history = await store.listTransitions(sync.syncId);
    expect(history.map((t) => t.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await store.listTimers(sync.syncId)).toEqual([]);
  });

  it('is single-flight: concurrent requests for one connection share one sync and one provider trigger', async () => {
    const { engine, adapter } = setup({ trigger: ['hang'] });
    const views = await Promise.all(Array.from({ length: 5 }, () => engine.requestSync({ connectionId: 'c', provider: 'fake' })));
    await settle();
    expect(new Set(views.map((v) => v.syncId)).size).toBe(1);
    expect(adapter.calls.trigger).toBe(1);
    const other = await engine.requestSync({ connectionId: 'c', provider: 'fake', tenantId: 'tenant-b' });
    expect(other.syncId).not.toBe(views[0]!.syncId);
  });

  it('after a restart mid-trigger, reconciles with the provider instead of triggering twice', async () => {
    const store = new MemoryStore();
    const clock = new SimulatedClock();
    const first = setup({ trigger: ['hang'] }, store, clock);
    const sync = await first.engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    expect(first.adapter.calls.trigger).toBe(1);
    // The process dies with the trigger in flight: the journal says STARTED, no outcome.
    const second = setup({ findTriggered: [{ providerRef: 'ref-9', observation: running }], poll: [completed] }, store, clock);
    expect((await second.engine.start()).resumed).toBe(1);
    await settle();
    expect(second.adapter.calls).toMatchObject({ trigger: 0, findTriggered: 1 });
    await second.advance(1_000);
    const view = await second.engine.get(sync.syncId);
    expect(view.status).toBe('COMPLETED');
    expect(view.providerRef).toBe('ref-9');
  });

  it('replays a finished effect from the journal on restore instead of calling the provider again', async () => {
    const store = new MemoryStore();
    const clock = new SimulatedClock();
    const first = setup({ poll: ['hang'] }, store, clock);
    const sync = await first.engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    const before = await store.getSync(sync.syncId);
    // Simulate the window "trigger outcome journaled, transition not yet committed": roll the snapshot back.
    const triggerEffect = (await store.listEffects(sync.syncId)).find((e) => e.kind === 'trigger');
    expect(triggerEffect?.state).toBe('DONE');
    await first.engine.stop();
    const second = setup({ poll: [completed] }, store, clock);
    await second.engine.start();
    await second.advance(1_000);
    expect(second.adapter.calls.trigger).toBe(0);
    expect((await second.engine.get(sync.syncId)).status).toBe('COMPLETED');
    expect(before?.status).toBe('RUNNING');
  });

  it('re-arms durable timers on restore with the remaining delay', async () => {
    const store = new MemoryStore();
    const clock = new SimulatedClock();
    const first = setup({ poll: [running] }, store, clock);
    const sync = await first.engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    const [pollTimer] = (await store.listTimers(sync.syncId)).filter((t) => t.timerId.includes('nextDelay'));
    expect(pollTimer?.dueAt).toBe(clock.now() + 1_000);
    await first.engine.stop();
    clock.increment(400);
    const second = setup({ poll: [completed] }, store, clock);
    await second.engine.start();
    await second.advance(500);
    expect(second.adapter.calls.poll).toBe(0);
    await second.advance(100);
    expect(second.adapter.calls.poll).toBe(1);
    expect((await second.engine.get(sync.syncId)).status).toBe('COMPLETED');
  });

  it('passes a TAN to the provider once and never stores it; an answer in flight at a crash is not resent', async () => {
    const store = new MemoryStore();
    const clock = new SimulatedClock();
    const first = setup({ poll: [embedded('ch-1', 600_000)], answer: ['hang'] }, store, clock);
    const sync = await first.engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    await first.advance(1_000);
    expect((await first.engine.get(sync.syncId)).challenge?.id).toBe('ch-1');
    await first.engine.submitChallengeResponse(sync.syncId, { challengeId: 'ch-1', response: 'TAN-918273' });
    await settle();
    expect(first.adapter.answers).toEqual(['TAN-918273']);
    expect(await dumpStore(store, sync.syncId)).not.toContain('918273');
    const second = setup({ poll: [embedded('ch-1', 600_000)] }, store, clock);
    const asked: string[] = [];
    second.engine.events.on('sync.awaitingUser', (v) => asked.push(v.challenge!.id));
    await second.engine.start();
    await settle();
    // Recovery reads the provider state and goes back to the user; it does not send the TAN again.
    expect(second.adapter.calls.answer).toBe(0);
    expect(second.adapter.calls.poll).toBe(1);
    const view = await second.engine.get(sync.syncId);
    expect(view.state).toBe('AWAIT_AUTH.AwaitingUser');
    // The challenge is still open at the provider: the answer was lost, so the user is asked again at once, with why.
    expect(asked).toEqual(['ch-1']);
    expect(view.lastFailure).toMatchObject({ code: 'ANSWER_NOT_SENT', userActionRequired: true, retryable: false });
  });

  it('after a crash mid-answer, a provider that moved on (answer arrived) is followed without asking again', async () => {
    const store = new MemoryStore();
    const clock = new SimulatedClock();
    const first = setup({ poll: [embedded('ch-1', 600_000)], answer: ['hang'] }, store, clock);
    const sync = await first.engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    await first.advance(1_000);
    await first.engine.submitChallengeResponse(sync.syncId, { challengeId: 'ch-1', response: 'TAN-555' });
    await settle();
    const second = setup({ poll: [completed] }, store, clock);
    const asked: string[] = [];
    second.engine.events.on('sync.awaitingUser', (v) => asked.push(v.challenge!.id));
    await second.engine.start();
    await settle();
    expect((await second.engine.get(sync.syncId)).status).toBe('COMPLETED');
    expect(asked).toEqual([]);
  });

  it('asks the user again (event + lastFailure) when an answer could not be delivered, without resending it', async () => {
    const unavailable = new ProviderError('503', { code: 'PROVIDER_UNAVAILABLE', retryable: true });
    const { engine, adapter, advance } = setup({ poll: [embedded('ch-1', 600_000)], answer: [unavailable] });
    const asked: string[] = [];
    engine.events.on('sync.awaitingUser', (v) => asked.push(v.challenge!.id));
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    await advance(1_000);
    await engine.submitChallengeResponse(sync.syncId, { challengeId: 'ch-1', response: '111111' });
    await settle();
    const view = await engine.get(sync.syncId);
    expect(view.state).toBe('AWAIT_AUTH.AwaitingUser');
    expect(view.lastFailure?.code).toBe('PROVIDER_UNAVAILABLE');
    expect(asked).toEqual(['ch-1', 'ch-1']);
    expect(adapter.calls.answer).toBe(1);
  });

  it('rejects an answer for another challenge with a typed error and changes nothing', async () => {
    const { engine, store, advance } = setup({ poll: [embedded('ch-1', 600_000)] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    await advance(1_000);
    const before = await dumpStore(store, sync.syncId);
    await expectCode(engine.submitChallengeResponse(sync.syncId, { challengeId: 'other', response: '1' }), 'CHALLENGE_NOT_PENDING');
    await expectCode(engine.submitChallengeResponse(sync.syncId, { challengeId: '', response: '1' }), 'INVALID_REQUEST');
    expect(await dumpStore(store, sync.syncId)).toBe(before);
  });

  it('fails with CHALLENGE_EXPIRED when the user does not answer in time', async () => {
    const { engine, advance, clock } = setup({ poll: [embedded('ch-1', 1_000 + 60_000)] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    await advance(1_000);
    expect(clock.now()).toBe(1_000);
    for (let i = 0; i < 12; i++) await advance(5_000);
    const view = await engine.get(sync.syncId);
    expect(view.status).toBe('FAILED');
    expect(view.error).toMatchObject({ code: 'CHALLENGE_EXPIRED', userActionRequired: true, retryable: false });
  });

  it('never retries a credential failure automatically', async () => {
    const bad = new ProviderError('bank rejected credentials', { code: 'INVALID_CREDENTIALS', retryable: false, userActionRequired: true });
    const { engine, adapter, advance } = setup({ trigger: [bad] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    for (let i = 0; i < 5; i++) await advance(60_000);
    expect(adapter.calls.trigger).toBe(1);
    expect((await engine.get(sync.syncId)).error).toMatchObject({ code: 'INVALID_CREDENTIALS', retryable: false });
  });

  it('retries transient trigger failures with backoff, reconciling before each retry', async () => {
    const unavailable = new ProviderError('503', { code: 'PROVIDER_UNAVAILABLE', retryable: true });
    const { engine, adapter, advance } = setup({ trigger: [unavailable, unavailable, { providerRef: 'r', observation: running }], poll: [completed] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    expect(adapter.calls.trigger).toBe(1);
    await advance(1_000);
    expect(adapter.calls).toMatchObject({ trigger: 2, findTriggered: 1 });
    await advance(2_000);
    expect(adapter.calls).toMatchObject({ trigger: 3, findTriggered: 2 });
    await advance(1_000);
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
  });

  it('rejects bad requests with typed errors and creates nothing', async () => {
    const { engine, store } = setup({});
    await expectCode(engine.requestSync({ connectionId: '', provider: 'fake' }), 'INVALID_REQUEST');
    await expectCode(engine.requestSync({ connectionId: 'c', provider: 'nope' }), 'PROVIDER_NOT_CONFIGURED');
    await expectCode(engine.requestSync({ connectionId: 'c', provider: 'fake', scope: 'EVERYTHING' as never }), 'INVALID_REQUEST');
    await expectCode(engine.get('missing'), 'SYNC_NOT_FOUND');
    expect(await store.listSyncs()).toEqual([]);
  });

  it('keeps tenants apart: another tenant cannot read, cancel or answer a sync', async () => {
    const { engine } = setup({ trigger: ['hang'] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake', tenantId: 'acme' });
    await expectCode(engine.get(sync.syncId, { tenantId: 'evil' }), 'SYNC_NOT_FOUND');
    await expectCode(engine.cancel(sync.syncId, { tenantId: 'evil' }), 'SYNC_NOT_FOUND');
    await expectCode(engine.submitChallengeResponse(sync.syncId, { challengeId: 'x', response: '1' }, { tenantId: 'evil' }), 'SYNC_NOT_FOUND');
    expect((await engine.get(sync.syncId, { tenantId: 'acme' })).status).toBe('QUEUED');
  });

  it('applies webhooks, ignores duplicates, and rejects malformed ones without a state change', async () => {
    const { engine, store, signed } = setup({ poll: ['hang'] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    const before = await dumpStore(store, sync.syncId);
    await expectCode(engine.handleWebhook('fake', signed('{not json')), 'INVALID_WEBHOOK');
    await expectCode(engine.handleWebhook('fake', signed('{"x":1}')), 'INVALID_WEBHOOK');
    expect(await dumpStore(store, sync.syncId)).toBe(before);
    const unknown = await engine.handleWebhook('fake', signed(JSON.stringify({ ref: 'nope', observation: completed })));
    expect(unknown).toEqual({ applied: false, syncId: null, verified: true });
    const body = JSON.stringify({ ref: 'ref-1', observation: completed });
    expect((await engine.handleWebhook('fake', signed(body))).applied).toBe(true);
    expect((await engine.handleWebhook('fake', signed(body))).applied).toBe(false);
    const view = await engine.get(sync.syncId);
    expect(view.status).toBe('COMPLETED');
    expect((await store.listTransitions(sync.syncId)).filter((t) => t.to === 'COMPLETED')).toHaveLength(1);
  });

  it('holds a callback that beats the trigger response and applies it once the provider id is known', async () => {
    let release!: () => void;
    const triggered = new Promise<void>((resolve) => (release = resolve));
    const { engine, signed } = setup({
      trigger: [async () => (await triggered, { providerRef: 'ref-early', observation: running })],
      poll: ['hang'],
    });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    const early = await engine.handleWebhook('fake', signed(JSON.stringify({ ref: 'ref-early', observation: completed })));
    expect(early).toEqual({ applied: false, syncId: null, verified: true });
    release();
    await settle();
    expect((await engine.get(sync.syncId)).status).toBe('COMPLETED');
  });

  it('ignores a pushed reading ranked below one already applied (late, out-of-order callback)', async () => {
    const { engine, store, signed } = setup({ trigger: [{ providerRef: 'r', observation: { status: 'RUNNING', progress: 3 } }], poll: ['hang'] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    await settle();
    const late = { ...embedded('wf-1', 600_000), progress: 2 };
    await engine.handleWebhook('fake', signed(JSON.stringify({ ref: 'r', observation: late })));
    expect((await engine.get(sync.syncId)).status).toBe('RUNNING');
    const fresh = { ...embedded('wf-2', 600_000), progress: 4 };
    await engine.handleWebhook('fake', signed(JSON.stringify({ ref: 'r', observation: fresh })));
    expect((await engine.get(sync.syncId)).challenge?.id).toBe('wf-2');
    // Exactly one entry into AWAIT_AUTH: the late wf-1 callback never moved the sync.
    expect((await store.listTransitions(sync.syncId)).filter((t) => t.to.startsWith('AWAIT_AUTH'))).toHaveLength(1);
  });

  it('cancels an active sync and refuses to cancel a finished one', async () => {
    const { engine } = setup({ trigger: ['hang'] });
    const sync = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    const cancelled = await engine.cancel(sync.syncId, { reason: 'user left' });
    expect(cancelled.status).toBe('FAILED');
    expect(cancelled.error).toMatchObject({ code: 'CANCELLED', message: 'cancelled: user left' });
    await expectCode(engine.cancel(sync.syncId), 'SYNC_ALREADY_FINISHED');
    const next = await engine.requestSync({ connectionId: 'c', provider: 'fake' });
    expect(next.syncId).not.toBe(sync.syncId);
  });

  it('refuses work after stop', async () => {
    const { engine } = setup({});
    await engine.stop();
    await expectCode(engine.requestSync({ connectionId: 'c', provider: 'fake' }), 'ENGINE_STOPPED');
  });
});

