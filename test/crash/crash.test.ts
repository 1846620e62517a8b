/**
 * Kills the engine process (SIGKILL) at random points of real syncs and restarts it on the same SQLite
 * file: every sync must finish, the sandbox must have seen exactly one provider sync per connection, and
 * the committed transition history must be one unbroken chain.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { SqliteStore } from '../../src/stores/sqlite.js';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const SCENARIOS = ['success', 'one-challenge', 'two-challenges', 'decoupled', 'provider-5xx', 'trigger-lost'] as const;
const ROUNDS = 3;
const MAX_KILLS_PER_SYNC = 8;

/** Deterministic kill schedule (printed seed), so a failing run can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

interface RunOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  done: boolean;
}

/** Where to kill: after the child committed `afterTransitions` transitions, `delayMs` later (mid-effect, mid-commit...). */
interface KillPoint {
  afterTransitions: number;
  delayMs: number;
}

function runChild(env: Record<string, string>, kill: KillPoint | null): Promise<RunOutcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let transitions = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      if (kill && !timer && transitions >= kill.afterTransitions) timer = setTimeout(() => child.kill('SIGKILL'), kill.delayMs);
    };
    child.stdout.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      out += text;
      transitions += (text.match(/"state"/g) ?? []).length;
      arm();
    });
    child.stderr.on('data', () => {});
    arm();
    child.on('exit', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, done: out.includes('"done":true') });
    });
  });
}

describe('crash recovery: SIGKILL at random points, restart, finish exactly once', () => {
  let sandbox: Sandbox;
  const dir = mkdtempSync(join(tmpdir(), 'banksync-crash-'));
  const db = join(dir, 'crash.sqlite');
  const seed = Number(process.env.CRASH_SEED ?? Date.now() % 100_000);

  beforeAll(async () => {
    sandbox = await startSandbox();
  });
  afterAll(() => sandbox.close());

  it('every sync completes with one provider sync, no overlap and an unbroken history', async () => {
    const random = rng(seed);
    const finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'crash-token' });
    const connections: { id: string; scenario: string }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const scenario of SCENARIOS) {
        const access = await finx.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario });
        connections.push({ id: access.id, scenario });
      }
    }
    let kills = 0;
    const runConnection = async (connectionId: string) => {
      const env = { CRASH_DB: db, CRASH_SANDBOX_URL: sandbox.url, CRASH_CONNECTION: connectionId };
      for (let attempt = 0; attempt < 40; attempt++) {
        const kill =
          attempt < MAX_KILLS_PER_SYNC && random() < 0.9
            ? { afterTransitions: Math.floor(random() * 4), delayMs: Math.floor(random() * (random() < 0.3 ? 400 : 30)) }
            : null;
        const outcome = await runChild(env, kill);
        if (outcome.signal === 'SIGKILL') kills++;
        if (outcome.done) return;
      }
      throw new Error(`sync of ${connectionId} did not finish`);
    };
    // Two processes at a time share the SQLite file, as two engine restarts would.
    for (let i = 0; i < connections.length; i += 2) await Promise.all(connections.slice(i, i + 2).map((c) => runConnection(c.id)));
    console.log(`crash test: seed ${seed}, ${kills} SIGKILLs over ${connections.length} syncs`);

    const store = SqliteStore.open(db);
    try {
      for (const connection of connections) {
        const syncs = await store.listSyncs({ connectionId: connection.id });
        expect(syncs, connection.scenario).toHaveLength(1);
        expect(syncs[0]!.status, connection.scenario).toBe('COMPLETED');
        const stats = sandbox.stats().finx.connections[connection.id]!;
        expect(stats.syncsStarted, connection.scenario).toBe(1);
        expect(stats.overlaps, connection.scenario).toBe(0);
        expect(stats.wrongAnswers, connection.scenario).toBe(0);
        const history = await store.listTransitions(syncs[0]!.syncId);
        history.forEach((t, i) => {
          expect(t.seq).toBe(i + 1);
          expect(t.from).toBe(i === 0 ? null : history[i - 1]!.to);
        });
        expect(history.at(-1)!.to).toBe('COMPLETED');
      }
      expect(kills).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  }, 600_000);
});
