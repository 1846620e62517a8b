/**
 * Every CLI command's default invocation, run as a process (`node --import tsx src/cli/main.ts ...`; the
 * compiled bin is run from an installed tarball by test/package/consumer.test.ts). Long-running commands are
 * waited on until they say they are ready, then stopped with SIGTERM and must exit 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'src/cli/main.ts');
/** tsx's loader by absolute path: commands run in temporary folders with no node_modules of their own. */
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

interface Running {
  child: ChildProcess;
  output: () => string;
  /** stdout alone (logs go to stderr). */
  stdout: () => string;
  exited: Promise<number | null>;
}

/** Every command started by a test; one a failed test left running is stopped after it. */
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
});

function start(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Running {
  const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let text = '';
  let stdout = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    stdout += chunk.toString();
  });
  child.stderr!.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => text, stdout: () => stdout, exited };
}

async function cli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; out: string; stdout: string }> {
  const running = start(args, options);
  const code = await running.exited;
  return { code, out: running.output(), stdout: running.stdout() };
}

/** Resolves with the first match of `pattern` in the process's output; rejects if it exits first. */
function ready(running: Running, pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = running.output().match(pattern);
      if (match) {
        clearInterval(timer);
        resolve(match);
      }
    };
    const timer = setInterval(check, 50);
    void running.exited.then((code) => {
      clearInterval(timer);
      const match = running.output().match(pattern);
      if (match) resolve(match);
      else reject(new Error(`exited with ${code} before ${pattern}:\n${running.output()}`));
    });
  });
}

async function stop(running: Running): Promise<number | null> {
  running.child.kill('SIGTERM');
  return running.exited;
}

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await startSandbox();
});
afterAll(async () => sandbox?.close());

const finxAccess = async (scenario: string) =>
  (await createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'fixture' }).createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: '1' }, scenario })).id;

describe('banksync CLI, default invocations', () => {
  it('--version prints the package version; help never shows a token from the environment', async () => {
    const version = await cli(['--version']);
    expect(version).toMatchObject({ code: 0, out: '0.2.0\n' });
    for (const command of ['sync', 'worker', 'status', 'serve']) {
      const help = await cli([command, '--help'], { env: { BANKSYNC_TOKEN: 'env-token-DO-NOT-SHOW', DATABASE_URL: 'postgres://u:db-password-DO-NOT-SHOW@h/d' } });
      expect(help.code).toBe(0);
      expect(help.out).not.toContain('DO-NOT-SHOW');
    }
  });

  it('demo: every scenario ends as scripted', async () => {
    const { code, out } = await cli(['demo']);
    expect(code).toBe(0);
    expect(out).toMatch(/(\d+)\/\1 scenarios ended as scripted/);
  });

  it('sandbox: listens, serves its scenarios, stops on SIGTERM', async () => {
    const running = start(['sandbox']);
    const [, url] = await ready(running, /sandbox listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const scenarios = (await (await fetch(`${url}/_sandbox/scenarios`)).json()) as Record<string, unknown[]>;
    expect(Object.keys(scenarios).sort()).toEqual(['finapi', 'finx', 'wealthapi', 'xs2a']);
    expect(await stop(running)).toBe(0);
  });

  it('sync --sandbox-url: one sync, the final view as JSON, exit 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'banksync-cli-'));
    const { code, out, stdout } = await cli(['sync', '--provider', 'finx', '--connection', await finxAccess('success'), '--sandbox-url', sandbox.url], { cwd: dir });
    expect(code).toBe(0);
    expect(JSON.parse(stdout.slice(stdout.indexOf('{')))).toMatchObject({ status: 'COMPLETED' });
    // The CLI logs at info by default: one JSON line per committed transition on stderr, the last one into COMPLETED.
    const transitions = out.split('\n').filter((line) => line.includes('"sync transition"')).map((line) => JSON.parse(line) as { to: string; provider: string });
    expect(transitions.length).toBeGreaterThan(1);
    expect(transitions.at(-1)).toMatchObject({ provider: 'finx', to: 'COMPLETED' });
  });

  it('sync --config --json: providers and OAuth client credentials from the file; JSON alone on stdout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'banksync-cli-'));
    const config = join(dir, 'banksync.config.json');
    writeFileSync(
      config,
      JSON.stringify({
        providers: {
          finx: {
            baseUrl: `${sandbox.url}/finx`,
            auth: { type: 'clientCredentials', tokenUrl: `${sandbox.url}/finx/oauth/token`, clientId: 'sandbox-client', clientSecret: { env: 'FINX_CLIENT_SECRET' } },
          },
        },
        store: { sqlite: join(dir, 'store.sqlite') },
        policy: { pollBaseMs: 50, pollMaxMs: 200, authPollMs: 50 },
      }),
    );
    const grants = sandbox.auth.grants.client_credentials ?? 0;
    const running = start(['sync', '--provider', 'finx', '--connection', await finxAccess('success'), '--config', config, '--json'], { cwd: dir, env: { FINX_CLIENT_SECRET: 'sandbox-secret' } });
    let stdout = '';
    running.child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    expect(await running.exited).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ status: 'COMPLETED' });
    expect(sandbox.auth.grants.client_credentials).toBe(grants + 1);
    expect(running.output()).not.toContain('sandbox-secret');
  });

  it('sync with a bad config names the field and exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'banksync-cli-'));
    const config = join(dir, 'banksync.config.json');
    writeFileSync(config, JSON.stringify({ providers: { finx: { baseUrl: 'https://x.example', auth: { type: 'bearer', token: 'inline-token' } } } }));
    const { code, out } = await cli(['sync', '--provider', 'finx', '--connection', 'a', '--config', config]);
    expect(code).toBe(2);
    expect(out).toContain('providers.finx.auth.token');
    expect(out).not.toContain('inline-token');
    expect(await cli(['sync', '--provider', 'finx', '--connection', 'a'])).toMatchObject({ code: 2 });
  });

  it('status: reports on the default SQLite file; --json is JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'banksync-cli-'));
    expect(await cli(['status'], { cwd: dir })).toMatchObject({ code: 0, out: expect.stringContaining('no syncs') });
    const json = await cli(['status', '--json'], { cwd: dir });
    expect(JSON.parse(json.out)).toMatchObject({ counts: {}, oldestActive: null, stale: [] });
  });

  it('viz --check: the committed diagrams are current', async () => {
    expect(await cli(['viz', '--check'])).toMatchObject({ code: 0, out: expect.stringMatching(/up to date/) });
  });

  it('serve: the viewer answers at the printed URL; SIGTERM stops it', async () => {
    const running = start(['serve']);
    const [, url] = await ready(running, /banksync viewer: (http:\/\/\S+)/);
    expect((await fetch(url!)).status).toBe(200);
    expect(await stop(running)).toBe(0);
  });

  it('serve --config: attaches to the configured store and lists the connections it knows', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'banksync-cli-'));
    const config = join(dir, 'banksync.config.json');
    writeFileSync(config, JSON.stringify({ providers: { finx: { baseUrl: `${sandbox.url}/finx`, auth: { type: 'bearer', token: { env: 'FINX_TOKEN' } } } }, store: { sqlite: join(dir, 'store.sqlite') }, policy: { pollBaseMs: 50, pollMaxMs: 200 } }));
    const connection = await finxAccess('success');
    expect(await cli(['sync', '--provider', 'finx', '--connection', connection, '--config', config], { env: { FINX_TOKEN: 't' } })).toMatchObject({ code: 0 });
    const running = start(['serve', '--config', config, '--port', '4611'], { env: { FINX_TOKEN: 't' } });
    try {
      await ready(running, /banksync viewer: (http:\/\/\S+)/);
      // The connection lines follow the URL line: wait for them rather than read the output at once.
      await ready(running, new RegExp(`finx ${connection}`));
    } finally {
      expect(await stop(running)).toBe(0);
    }
  });

  it('serve --db: attaches the console read-only to an existing SQLite store; refuses a missing file and an open bind without a token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'banksync-cli-'));
    const missing = await cli(['serve', '--db', join(dir, 'nope.sqlite')]);
    expect(missing.code).toBe(2);
    expect(missing.out).toMatch(/no SQLite store at/);
    expect(existsSync(join(dir, 'nope.sqlite'))).toBe(false);
    const open = await cli(['serve', '--host', '0.0.0.0', '--port', '4612']);
    expect(open.code).toBe(2);
    expect(open.out).toMatch(/requires --token/);

    const db = join(dir, 'store.sqlite');
    expect(await cli(['demo', '--scenario', 'success', '--db', db])).toMatchObject({ code: 0 });
    const running = start(['serve', '--db', db, '--port', '4613']);
    try {
      const [, url] = await ready(running, /banksync viewer: (http:\/\/\S+)/);
      const about = (await (await fetch(`${url}/api/console/about`)).json()) as { store: string; actions: { enabled: boolean } };
      expect(about).toMatchObject({ store: 'sqlite', actions: { enabled: false } });
      const { syncs } = (await (await fetch(`${url}/api/console/syncs`)).json()) as { syncs: { status: string }[] };
      expect(syncs.length).toBeGreaterThan(0);
      expect((await fetch(`${url}/api/console/syncs?status=nope`)).status).toBe(400);
    } finally {
      expect(await stop(running)).toBe(0);
    }
  });

  describe.runIf(postgresAvailable)('worker (PostgreSQL)', () => {
    it('worker with default options (autosync on) starts, registers the autosync crontab, stays up, stops on SIGTERM', async () => {
      const schema = throwawaySchema('cli');
      const running = start(['worker', '--sandbox-url', sandbox.url, '--schema', schema], { env: { DATABASE_URL } });
      await ready(running, /worker started/);
      // graphile-worker records the crontab's task once its cron runs; before the fix the parser rejected it at start.
      const client = new pg.Client({ connectionString: DATABASE_URL });
      await client.connect();
      try {
        await expect
          .poll(async () => (await client.query("SELECT count(*)::int AS n FROM graphile_worker._private_known_crontabs WHERE identifier LIKE 'banksync:autosync%'")).rows[0].n, { timeout: 30_000 })
          .toBeGreaterThan(0);
      } finally {
        await client.end();
      }
      expect(running.child.exitCode).toBeNull();
      expect(await stop(running)).toBe(0);
    });

    it('worker --metrics-port serves /healthz and /metrics and logs one info line per sync transition', async () => {
      const schema = throwawaySchema('cli');
      const free = createServer();
      await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
      const metricsPort = (free.address() as AddressInfo).port;
      await new Promise((resolve) => free.close(resolve));
      const running = start(['worker', '--sandbox-url', sandbox.url, '--schema', schema, '--no-autosync', '--metrics-port', String(metricsPort), '--metrics-host', '127.0.0.1'], { env: { DATABASE_URL } });
      const api = await (async () => {
        await ready(running, /worker started/);
        const { createDispatchingEngine } = await import('../../src/dispatch/worker.js');
        const finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: 'sandbox-token' });
        return createDispatchingEngine({ databaseUrl: DATABASE_URL, schema, providers: { finx }, telemetry: false });
      })();
      try {
        const base = `http://127.0.0.1:${metricsPort}`;
        expect((await fetch(`${base}/healthz`)).status).toBe(200);
        const connectionId = await finxAccess('success');
        const { syncId } = await api.engine.requestSync({ connectionId, provider: 'finx' });
        await expect.poll(async () => (await api.engine.get(syncId)).status, { timeout: 30_000 }).toBe('COMPLETED');
        await expect.poll(async () => (await (await fetch(`${base}/metrics`)).text()), { timeout: 10_000 }).toMatch(/^banksync_syncs_finished_total\{provider="finx",outcome="COMPLETED",error_code="none"\} 1$/m);
        const history = await api.engine.history(syncId);
        await expect.poll(() => running.output().split('\n').filter((l) => l.includes('"sync transition"') && l.includes(syncId)).length, { timeout: 10_000 }).toBe(history.length);
        const last = running.output().split('\n').filter((l) => l.includes('"sync transition"') && l.includes(syncId)).at(-1)!;
        expect(JSON.parse(last)).toMatchObject({ level: 30, syncId, connectionId, tenantId: 'default', provider: 'finx', to: 'COMPLETED' });
        expect(running.output()).not.toContain('sandbox-token');
      } finally {
        await api.store.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
        await api.close();
      }
      expect(await stop(running)).toBe(0);
    });
  });
});
