/**
 * A banksync process for the crash test: resumes whatever the SQLite file holds, starts the connection's
 * sync if it has none yet, answers embedded challenges like a user, and exits 0 once the sync has ended.
 * The parent test kills it with SIGKILL at random moments.
 */
import { createEngine } from '../../src/engine/engine.js';
import type { SyncView } from '../../src/engine/view.js';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { SqliteStore } from '../../src/stores/sqlite.js';

const { CRASH_DB, CRASH_SANDBOX_URL, CRASH_CONNECTION } = process.env;
if (!CRASH_DB || !CRASH_SANDBOX_URL || !CRASH_CONNECTION) throw new Error('CRASH_DB, CRASH_SANDBOX_URL and CRASH_CONNECTION are required');

const store = SqliteStore.open(CRASH_DB);
const engine = createEngine({
  store,
  providers: { finx: createFinxAdapter({ baseUrl: `${CRASH_SANDBOX_URL}/finx`, token: 'crash-token' }) },
  policy: { pollBaseMs: 25, pollMaxMs: 100, authPollMs: 40, retryBaseMs: 50, retryMaxMs: 300 },
});

const answer = (view: SyncView) => {
  if (view.status !== 'AWAIT_AUTH' || view.challenge?.kind !== 'EMBEDDED' || view.state !== 'AWAIT_AUTH.AwaitingUser') return;
  engine.submitChallengeResponse(view.syncId, { challengeId: view.challenge.id, response: '123456' }).catch(() => {});
};
engine.events.on('sync.updated', answer);
engine.events.on('sync.updated', (view) => process.stdout.write(`${JSON.stringify({ state: view.state })}\n`));

await engine.start();
const [latest] = await store.listSyncs({ connectionId: CRASH_CONNECTION, limit: 1 });
const syncId = latest?.syncId ?? (await engine.requestSync({ connectionId: CRASH_CONNECTION, provider: 'finx' })).syncId;
answer(await engine.get(syncId));
const final = await engine.waitForTerminal(syncId);
process.stdout.write(`${JSON.stringify({ done: true, status: final.status, syncId })}\n`);
await engine.stop();
await store.close();
process.exit(0);
