/**
 * `@opentelemetry/api` is an optional peer: with it missing, an engine runs its syncs as before, records no
 * spans or metrics, and still writes its transition log.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';

const attempts = vi.hoisted(() => [] as string[]);
vi.mock('node:module', async (original) => {
  const actual = await original<typeof import('node:module')>();
  const createRequire = (from: string | URL) => {
    const real = actual.createRequire(from);
    return Object.assign((id: string) => {
      if (id.startsWith('@opentelemetry/')) {
        attempts.push(id);
        throw Object.assign(new Error(`Cannot find module '${id}'`), { code: 'MODULE_NOT_FOUND' });
      }
      return real(id);
    }, real);
  };
  return { ...actual, createRequire, default: { ...actual, createRequire } };
});

const { DEMO_POLICY } = await import('../../src/cli/demo/run.js');
const { createEngine } = await import('../../src/engine/engine.js');
const { createLogger } = await import('../../src/engine/logger.js');
const { createFinxAdapter } = await import('../../src/providers/finx/index.js');
const { startSandbox } = await import('../../src/sandbox/server.js');
const { MemoryStore } = await import('../../src/stores/memory.js');

let sandbox: Awaited<ReturnType<typeof startSandbox>>;
beforeAll(async () => {
  sandbox = await startSandbox();
});
afterAll(() => sandbox?.close());

it('without @opentelemetry/api a sync completes, and its transitions are still logged', async () => {
  const lines: { msg?: string; to?: string }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as { msg?: string });
      done();
    },
  });
  const finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 't' });
  const engine = createEngine({ store: new MemoryStore(), providers: { finx }, policy: DEMO_POLICY, logger: createLogger({ destination }) });
  try {
    const access = await finx.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario: 'success' });
    const view = await engine.requestSync({ connectionId: access.id, provider: 'finx' });
    expect((await engine.waitForTerminal(view.syncId)).status).toBe('COMPLETED');
    expect(attempts).toContain('@opentelemetry/api');
    const history = await engine.history(view.syncId);
    await expect.poll(() => lines.filter((l) => l.msg === 'sync transition').map((l) => l.to)).toEqual(history.map((t) => t.to));
  } finally {
    await engine.stop();
  }
});
