/**
 * Every finAPI scenario end to end: engine + SQLite (:memory:) + the sandbox over HTTP, callbacks delivered
 * through a node:http server running engine.webhookHandler('finapi'), web forms completed by a simulated user
 * who opens `challenge.redirectUrl`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFinapiAdapter, type FinapiAdapter } from '../../src/providers/finapi/index.js';
import { FINAPI_SCENARIOS, createFinapiSandboxConnection } from '../../src/sandbox/finapi.js';
import { startHarness, type Harness } from '../support/harness.js';

const TOKEN = 'e2e-finapi-token-5d1c';

describe('finAPI end to end over HTTP (engine + SQLite + sandbox + callbacks)', () => {
  let harness: Harness;
  let finapi: FinapiAdapter;
  let finapiUrl: string;

  beforeAll(async () => {
    harness = await startHarness((sandbox) => {
      finapiUrl = `${sandbox.url}/finapi`;
      finapi = createFinapiAdapter({ baseUrl: finapiUrl, token: TOKEN });
      return { finapi };
    });
  });
  afterAll(() => harness.close());

  it.concurrent.each(FINAPI_SCENARIOS.map((s) => [s.name, s] as const))('%s ends as scripted, with exactly one finAPI update task', async (_name, scenario) => {
    const { id } = await createFinapiSandboxConnection(finapiUrl, TOKEN, scenario.name);
    const connectionId = String(id);
    const final = await harness.runSync('finapi', connectionId, scenario.answers, scenario.options);

    expect(final.status).toBe(scenario.terminal);
    if (scenario.errorCode) expect(final.error?.code).toBe(scenario.errorCode);
    if (scenario.providerCode) expect(final.error?.providerCode).toBe(scenario.providerCode);
    if (scenario.outcome) expect(final.result?.outcome).toBe(scenario.outcome);
    if (final.result) expect(final.result.accounts.length).toBeGreaterThan(0);

    await harness.sandbox.webhooksIdle();
    const stats = harness.sandbox.stats()['finapi']!.connections[connectionId]!;
    expect(stats.tasksCreated).toBe(1);
    expect(stats.overlaps).toBe(scenario.name === 'locked-then-success' ? 1 : 0);
    if (scenario.callbacks === 'never') expect(stats.callbacks).toBe(0);
    // The sync fails on the undocumented status before the task ends: no callback was due yet.
    else if (scenario.name !== 'unknown-task-status') expect(stats.callbacks).toBeGreaterThan(0);
    if (scenario.callbacks === 'duplicated') expect(stats.callbacks).toBe(4);
    expect(stats.callbackFailures).toBe(0);

    const history = await harness.engine.history(final.syncId);
    expect(history[0]?.to).toBe('QUEUED.Triggering');
    expect(history.at(-1)?.to).toBe(scenario.terminal);
    // Web form scenarios show the user a WEB_FORM challenge; the others never wait for the user.
    expect(history.some((t) => t.to.startsWith('AWAIT_AUTH'))).toBe(scenario.webForm);
    if (scenario.webForm) expect(stats.webFormsOpened).toBe(1);

    const stored = JSON.stringify(await harness.store.getSync(final.syncId));
    expect(stored).not.toContain(TOKEN);
  });

  it('the challenge a user sees is the finAPI web form', async () => {
    const { id } = await createFinapiSandboxConnection(finapiUrl, TOKEN, 'web-form');
    const seen: { kind: string; redirectUrl?: string; expiresAt: string }[] = [];
    const off = harness.engine.events.on('sync.awaitingUser', (view) => {
      if (view.connectionId === String(id) && view.challenge) seen.push(view.challenge);
    });
    try {
      const final = await harness.runSync('finapi', String(id));
      expect(final.status).toBe('COMPLETED');
    } finally {
      off();
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]!.kind).toBe('WEB_FORM');
    expect(seen[0]!.redirectUrl).toMatch(/\/finapi\/webform\/[0-9a-f-]{36}$/);
    const ttl = Date.parse(seen[0]!.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(19 * 60_000);
    expect(ttl).toBeLessThanOrEqual(20 * 60_000);
  });

  // Issue #13: invalid input is refused before a sync exists (it used to create a sync that failed at the trigger).
  it('invalid finAPI options are INVALID_REQUEST: no sync is created and nothing is sent', async () => {
    const { id } = await createFinapiSandboxConnection(finapiUrl, TOKEN, 'success');
    const error = await harness.runSync('finapi', String(id), [], { accountTypes: ['CHEQUE'] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'INVALID_REQUEST', issues: ['accountTypes.0'] });
    expect(await harness.engine.list({ connectionId: String(id) })).toEqual([]);
    expect(harness.sandbox.stats()['finapi']!.connections[String(id)]!.triggers).toBe(0);
  });
});
