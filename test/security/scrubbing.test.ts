/**
 * Issue 12, point 8: what a provider says is scrubbed of secrets before it is stored, logged or emitted. A TAN
 * echoed back (as an error code or in a message) and credentials in free text ("PIN 4711 and password=...")
 * must appear in no store row, event, log line or view.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { createEngine } from '../../src/engine/engine.js';
import { createLogger } from '../../src/engine/logger.js';
import { scrubText } from '../../src/engine/secrets.js';
import { SIGNATURE_HEADER, signWebhook } from '../../src/engine/webhook-auth.js';
import { ProviderError } from '../../src/providers/errors.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { embedded, FakeAdapter, running, settle, type FakeAdapterScript } from '../support/fake-adapter.js';

const policy = { pollBaseMs: 1_000, pollMaxMs: 1_000, authPollMs: 60_000, retryBaseMs: 1_000, retryMaxMs: 8_000 };
const SECRET = 'whsec-scrubbing';

function setup(script: FakeAdapterScript) {
  const clock = new SimulatedClock();
  const store = new MemoryStore();
  const adapter = new FakeAdapter('fake', script);
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', destination: new Writable({ write: (chunk, _enc, done) => (logs.push(String(chunk)), done()) }) });
  const engine = createEngine({ store, providers: { fake: adapter }, clock, policy, logger, webhookSecrets: { fake: SECRET } });
  const events: string[] = [];
  for (const name of ['sync.updated', 'sync.awaitingUser', 'sync.completed', 'sync.failed', 'connection.updated'] as const) {
    engine.events.on(name, (payload) => events.push(JSON.stringify(payload)));
  }
  /** Everything the engine wrote or said about a sync. */
  const everything = async (syncId: string, connectionId: string) =>
    JSON.stringify({
      sync: await store.getSync(syncId),
      view: await engine.get(syncId),
      effects: await store.listEffects(syncId),
      transitions: await store.listTransitions(syncId),
      connection: await store.getConnection('default', connectionId),
      connectionView: await engine.getConnection(connectionId),
      events,
      logs,
    });
  const advance = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  return { engine, clock, advance, everything };
}

describe('provider text is scrubbed of secrets', () => {
  it('a TAN echoed as the error code and in the message of a rejected answer is stored, logged and emitted nowhere', async () => {
    const tan = '98765432';
    const rejected = new ProviderError(`bank rejected the answer ${tan} (attempt 1)`, { code: 'SCA_FAILED', retryable: false, userActionRequired: true, providerCode: tan });
    const { engine, advance, everything } = setup({ poll: [embedded('ch-1', 10_000_000)], answer: [rejected] });
    const sync = await engine.requestSync({ connectionId: 'conn-tan', provider: 'fake' });
    await settle();
    await advance(1_000);
    expect((await engine.get(sync.syncId)).state).toBe('AWAIT_AUTH.AwaitingUser');
    await engine.submitChallengeResponse(sync.syncId, { challengeId: 'ch-1', response: tan });
    await settle();
    const final = await engine.get(sync.syncId);
    expect(final.status).toBe('FAILED');
    expect(final.error?.code).toBe('SCA_FAILED');
    expect(final.error?.providerCode).toBe('[redacted]');
    expect(await everything(sync.syncId, 'conn-tan')).not.toContain(tan);
  });

  it('credentials in a failure message are redacted in sync.error, events, logs and the connection', async () => {
    const failure = new ProviderError('login refused: PIN 4711 and password=hunter2! Please retry', {
      code: 'INVALID_CREDENTIALS',
      retryable: false,
      userActionRequired: true,
    });
    const { engine, advance, everything } = setup({ poll: [failure] });
    const sync = await engine.requestSync({ connectionId: 'conn-pin', provider: 'fake' });
    await settle();
    await advance(1_000);
    const final = await engine.get(sync.syncId);
    expect(final.error?.code).toBe('INVALID_CREDENTIALS');
    expect(final.error?.message).toBe('login refused: PIN [redacted] and password=[redacted] Please retry');
    const all = await everything(sync.syncId, 'conn-pin');
    expect(all).not.toContain('4711');
    expect(all).not.toContain('hunter2');
  });

  it('a pushed (authenticated) FAILED reading is scrubbed too', async () => {
    const { engine, clock, everything } = setup({ trigger: [{ providerRef: 'ref-1', observation: running }], poll: ['hang'] });
    const sync = await engine.requestSync({ connectionId: 'conn-push', provider: 'fake' });
    await settle();
    const observation = { status: 'FAILED', error: { code: 'BANK_REJECTED', retryable: false, userActionRequired: true, message: 'Your TAN: 554433 expired; Passwort ist geheim99' } };
    const body = JSON.stringify({ ref: 'ref-1', observation });
    await engine.handleWebhook('fake', { headers: { [SIGNATURE_HEADER]: signWebhook(SECRET, body, Math.floor(clock.now() / 1000)) }, body });
    expect((await engine.get(sync.syncId)).error?.message).toBe('Your TAN: [redacted] expired; Passwort ist [redacted]');
    const all = await everything(sync.syncId, 'conn-push');
    expect(all).not.toContain('554433');
    expect(all).not.toContain('geheim99');
  });

  it('leaves ordinary provider text alone', () => {
    for (const text of ['PIN blocked by the bank', 'token expired', 'error 40001: access upgrade required', 'consent expired on 2026-01-01']) {
      expect(scrubText(text)).toBe(text);
    }
  });
});
