/** Engine + sandbox + webhook receiver over real HTTP, on an in-memory SQLite store, for end-to-end tests. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEMO_POLICY } from '../../src/cli/demo/run.js';
import { createEngine, type SyncEngine } from '../../src/engine/engine.js';
import type { SyncView } from '../../src/engine/view.js';
import type { ProviderAdapter } from '../../src/providers/types.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { SqliteStore } from '../../src/stores/sqlite.js';

/** Half of vitest's testTimeout (vitest.config.ts). */
export const SYNC_DEADLINE_MS = 30_000;

export interface Harness {
  sandbox: Sandbox;
  engine: SyncEngine;
  store: SqliteStore;
  /** Runs one sync to its end, answering embedded challenges with `answers` and opening redirect links. */
  runSync(provider: string, connectionId: string, answers?: readonly string[], options?: Record<string, unknown>): Promise<SyncView>;
  close(): Promise<void>;
}

export async function startHarness(makeAdapters: (sandbox: Sandbox) => Record<string, ProviderAdapter>): Promise<Harness> {
  const hooks = createServer();
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  const hooksUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}`;
  const sandbox = await startSandbox();
  const adapters = makeAdapters(sandbox);
  const store = SqliteStore.open(':memory:');
  // A stuck sync must fail as itself (TIMEOUT in its error) well before vitest's 60 s test timeout; the
  // demo's deadline equals that timeout, so both fired together and the cause was lost.
  const engine = createEngine({ store, providers: adapters, policy: { ...DEMO_POLICY, syncDeadlineMs: SYNC_DEADLINE_MS } });
  hooks.on('request', (req, res) => engine.webhookHandler(/^\/webhooks\/(\w+)/.exec(req.url ?? '')?.[1] ?? '')(req, res));
  for (const provider of Object.keys(adapters)) sandbox.setWebhookUrl(`${hooksUrl}/webhooks/${provider}`, provider);
  const answersFor = new Map<string, string[]>();
  // What the simulated user did that failed, per sync: runSync rejects with it instead of timing out.
  const failures = new Map<string, Error>();
  const onFailure = new Map<string, (error: Error) => void>();
  const failed = (syncId: string, what: string) => (error: unknown) => {
    const failure = new Error(`harness: ${what} for ${syncId} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    if (!failures.has(syncId)) failures.set(syncId, failure);
    onFailure.get(syncId)?.(failure);
  };
  engine.events.on('sync.awaitingUser', (view) => {
    const challenge = view.challenge!;
    if (challenge.kind === 'EMBEDDED') {
      const answer = answersFor.get(view.syncId)?.shift();
      if (answer !== undefined) {
        engine.submitChallengeResponse(view.syncId, { challengeId: challenge.id, response: answer }).catch(failed(view.syncId, 'answering the challenge'));
      }
    } else if (challenge.redirectUrl) {
      fetch(challenge.redirectUrl)
        .then((r) => r.arrayBuffer())
        .catch(failed(view.syncId, 'opening the redirect link'));
    }
  });
  return {
    sandbox,
    engine,
    store,
    async runSync(provider, connectionId, answers = [], options) {
      const view = await engine.requestSync({ connectionId, provider, ...(options ? { options } : {}) });
      answersFor.set(view.syncId, [...answers]);
      // The first challenge may have been raised before the answers were registered.
      const current = await engine.get(view.syncId);
      if (current.challenge?.kind === 'EMBEDDED' && current.state === 'AWAIT_AUTH.AwaitingUser') {
        const answer = answersFor.get(view.syncId)?.shift();
        if (answer !== undefined) await engine.submitChallengeResponse(view.syncId, { challengeId: current.challenge.id, response: answer });
      }
      const earlier = failures.get(view.syncId);
      if (earlier) throw earlier;
      const userFailed = new Promise<never>((_, reject) => onFailure.set(view.syncId, reject));
      try {
        return await Promise.race([engine.waitForTerminal(view.syncId), userFailed]);
      } finally {
        onFailure.delete(view.syncId);
      }
    },
    async close() {
      await engine.stop();
      await sandbox.close();
      hooks.closeAllConnections();
      await new Promise<void>((resolve) => hooks.close(() => resolve()));
      await store.close();
    },
  };
}
