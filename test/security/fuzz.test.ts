/**
 * Fuzzing, for every provider family in the registry:
 * 1. 10,000 hostile webhook bodies per adapter through `engine.handleWebhook` (random JSON, non-JSON, near-valid
 *    mutations of bodies the sandbox really sent; plus every huge body of hugeBodies() once): never a crash or an unhandled rejection; a typed
 *    INVALID_WEBHOOK or a no-op; no change to any stored sync (full store dump compared after every body),
 *    no event. A sample also goes over HTTP through `engine.webhookHandler` (202 / 400 / 413, never 500).
 * 2. Random provider responses per adapter from a stub HTTP server: the adapter returns a valid canonical
 *    observation or throws a typed ProviderError, and maps to COMPLETED only when an independent oracle says
 *    the provider documented a completed update.
 * 3. Random invalid CLI arguments through `main(argv)` in-process (and a few spawned processes): a clear
 *    message, exit code 2, never a stack trace.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { InvalidArgumentError, type Command, type Option } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BanksyncError } from '../../src/engine/errors.js';
import { ProviderError, ProviderInputError } from '../../src/providers/errors.js';
import type { WebhookRequest } from '../../src/providers/types.js';
import { FAMILIES, FAMILY_FIXTURES, fixtureFor, isCanonical, type StubWorld } from '../reliability/families.js';
import { dumpSqlite, httpPost, startRig, T0, type Rig } from '../reliability/rig.js';
import { contentTypes, hugeBodies, jsonMutation, mutateJson, webhookBodies } from './arbitraries.js';

const WEBHOOK_RUNS = 10_000;
const HTTP_WEBHOOK_RUNS = 300;
const RESPONSE_RUNS = 1_000;
const CLI_RUNS = 300;
const STUB_TOKEN = 'stub-token-7f3a9c';

/** Collects unhandled rejections while a property runs. */
function watchUnhandled() {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', listener);
  return { seen, stop: () => process.off('unhandledRejection', listener) };
}

/** Compares two store dumps, naming the tables that differ instead of printing megabytes. */
function expectSameStore(actual: string, expected: string): void {
  if (actual === expected) return;
  const a = new Map(JSON.parse(actual) as [string, unknown][]);
  const e = new Map(JSON.parse(expected) as [string, unknown][]);
  const changed = [...new Set([...a.keys(), ...e.keys()])].filter((t) => JSON.stringify(a.get(t)) !== JSON.stringify(e.get(t)));
  expect.fail(`the store changed (tables: ${changed.join(', ')})`);
}

const ENGINE_EVENTS = ['sync.updated', 'sync.awaitingUser', 'sync.completed', 'sync.failed', 'connection.updated'] as const;

// -------------------------------------------------------------------------------------------------------
// 1. Webhook bodies
// -------------------------------------------------------------------------------------------------------

describe.each(FAMILIES)('webhook fuzzing: %s', (family) => {
  const fixture = FAMILY_FIXTURES[family];
  if (!fixture) {
    it('has a security fixture', () => {
      fixtureFor(family);
    });
    return;
  }
  let rig: Rig;
  let activeSyncId: string;
  let activeRef: string;
  let realBodies: string[];

  beforeAll(async () => {
    rig = await startRig(family);
    const fx = rig.fixture;
    const embedded = 'correctTan' in fx.embedded;
    // A finished sync, with the callbacks it really got...
    const done = await rig.connect(embedded ? 'embedded' : 'success');
    rig.relay.mode = 'pass';
    const first = await rig.engine.requestSync({ connectionId: done, provider: family });
    await rig.drive(first.syncId, { answers: 'correctTan' in fx.embedded ? [fx.embedded.correctTan] : [] });
    // ...and an active one, waiting on a timer or the user, whose callbacks are held back.
    rig.relay.mode = 'hold';
    const active = await rig.connect(embedded ? 'embedded' : 'success');
    const view = await rig.engine.requestSync({ connectionId: active, provider: family });
    const waiting = await rig.drive(view.syncId, {
      until: (v) => v.providerRef !== null && (embedded ? v.state === 'AWAIT_AUTH.AwaitingUser' : v.state === 'RUNNING.Waiting'),
    });
    activeSyncId = waiting.syncId;
    activeRef = waiting.providerRef!;
    realBodies = rig.relay.captured.map((c) => c.body);
  }, 60_000);
  afterAll(() => rig?.close());

  it(`${WEBHOOK_RUNS.toLocaleString('en')} hostile bodies: INVALID_WEBHOOK or a no-op, no crash, no state change`, async () => {
    const fx = rig.fixture;
    const baseline = dumpSqlite(rig.store);
    // No write at all: SQLite's total_changes() counts every row this (only) connection inserted, updated or
    // deleted. Checked after every body; the full dump is compared every 500 bodies and at the end.
    const writes = rig.store.db.prepare('SELECT total_changes() AS n');
    const changesBefore = (writes.get() as { n: number }).n;
    let runs = 0;
    const before = await rig.engine.get(activeSyncId);
    const events: string[] = [];
    const off = ENGINE_EVENTS.map((name) => rig.engine.events.on(name, () => events.push(name)));
    const unhandled = watchUnhandled();
    const tally = { invalid: 0, ignored: 0, heldForUnknownRef: 0, skippedValidForActiveSync: 0 };
    const contractBreaches: string[] = [];
    const unknownRefBodies = 'unsupported' in fx.webhook ? [] : [fc.string({ minLength: 1, maxLength: 24 }).map((seed) => (fx.webhook as { unknownSync(s: string): string }).unknownSync(seed))];
    try {
      await fc.assert(
        fc.asyncProperty(webhookBodies(realBodies, unknownRefBodies, { huge: false }), contentTypes, async (body, contentType) => {
          const request: WebhookRequest = { headers: contentType === undefined ? {} : { 'content-type': contentType }, body };
          // The adapter contract: a delivery parses, or it throws ProviderInputError (nothing else).
          try {
            const delivery = rig.adapter.parseWebhook(request);
            // A valid reading of the active sync is a real callback, not fuzz (late ones are covered in reliability).
            if (delivery.providerRef === activeRef) {
              tally.skippedValidForActiveSync += 1;
              return;
            }
          } catch (error) {
            if (!(error instanceof ProviderInputError)) contractBreaches.push(`${family}.parseWebhook threw ${(error as Error)?.name}: ${String((error as Error)?.message).slice(0, 120)}`);
          }
          let outcome: { applied: boolean; syncId: string | null } | undefined;
          try {
            outcome = await rig.engine.handleWebhook(family, request);
          } catch (error) {
            expect(error).toBeInstanceOf(BanksyncError);
            expect((error as BanksyncError).code).toBe('INVALID_WEBHOOK');
            tally.invalid += 1;
          }
          if (outcome) {
            expect(outcome.applied).toBe(false);
            if (outcome.syncId === null) tally.heldForUnknownRef += 1;
            else tally.ignored += 1;
          }
          expect((writes.get() as { n: number }).n).toBe(changesBefore);
          if (++runs % 500 === 0) expectSameStore(dumpSqlite(rig.store), baseline);
        }),
        { numRuns: WEBHOOK_RUNS, endOnFailure: true },
      );
    } finally {
      off.forEach((f) => f());
      unhandled.stop();
    }
    console.info(`[fuzz] ${family} webhooks: ${JSON.stringify(tally)}`);
    expect(contractBreaches).toEqual([]);
    expect(unhandled.seen).toEqual([]);
    expect(events).toEqual([]);
    const after = await rig.engine.get(activeSyncId);
    expect(after).toEqual(before);
    expectSameStore(dumpSqlite(rig.store), baseline);
    expect(tally.invalid + tally.ignored + tally.heldForUnknownRef + tally.skippedValidForActiveSync).toBe(WEBHOOK_RUNS);
  }, 180_000);

  it('huge bodies (2 MB strings, 50,000-deep nesting, megabyte fields in a real body): INVALID_WEBHOOK or a no-op', async () => {
    const writes = rig.store.db.prepare('SELECT total_changes() AS n');
    const changesBefore = (writes.get() as { n: number }).n;
    const unhandled = watchUnhandled();
    try {
      for (const body of hugeBodies(realBodies)) {
        for (const headers of [{ 'content-type': 'application/json' }, {}]) {
          const outcome = await rig.engine.handleWebhook(family, { headers, body }).then(
            (result) => result,
            (error: unknown) => error,
          );
          if (outcome instanceof Error) expect((outcome as BanksyncError).code, String(outcome)).toBe('INVALID_WEBHOOK');
          else expect((outcome as { applied: boolean }).applied).toBe(false);
        }
      }
    } finally {
      unhandled.stop();
    }
    expect(unhandled.seen).toEqual([]);
    expect((writes.get() as { n: number }).n).toBe(changesBefore);
  }, 60_000);

  it(`${HTTP_WEBHOOK_RUNS} hostile bodies over HTTP: 202, 400 or 413 with a JSON body, never a 5xx or a stack trace`, async () => {
    const baseline = dumpSqlite(rig.store);
    const statuses = new Map<number, number>();
    // Huge bodies are covered by the oversize test below (the HTTP reader caps bodies at 1 MB).
    const bodies = webhookBodies(realBodies, [], { huge: false });
    await fc.assert(
      fc.asyncProperty(bodies, contentTypes, async (body, contentType) => {
        const headers: Record<string, string> = contentType === undefined ? {} : { 'content-type': contentType };
        try {
          if (rig.adapter.parseWebhook({ headers, body }).providerRef === activeRef) return; // a real callback, not fuzz
        } catch {
          // not a valid delivery: exactly what this property is about
        }
        const response = await httpPost(rig.engineWebhookUrl, contentType === undefined || !/^[\t\x20-\x7e]*$/.test(contentType) ? {} : { 'content-type': contentType }, body);
        const text = response.body;
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        expect([202, 400, 413]).toContain(response.status);
        const json = JSON.parse(text) as { error?: { code: string; message: string } };
        if (response.status !== 202) expect(json.error?.code).toBe('INVALID_WEBHOOK');
        expect(text).not.toMatch(/\n\s+at\s|node_modules|\.ts:\d+/);
        expectSameStore(dumpSqlite(rig.store), baseline);
      }),
      { numRuns: HTTP_WEBHOOK_RUNS, endOnFailure: true },
    );
    console.info(`[fuzz] ${family} webhooks over HTTP by status: ${JSON.stringify(Object.fromEntries(statuses))}`);
  }, 120_000);

  // Regression: the socket used to be destroyed before the 413 was written (the provider saw a reset).
  it('an oversized delivery (> 1 MB) is answered 413 INVALID_WEBHOOK', async () => {
    const response = await httpPost(rig.engineWebhookUrl, { 'content-type': 'application/json' }, `{"pad":"${'x'.repeat(1024 * 1024)}"}`);
    expect(response.status).toBe(413);
    expect(JSON.parse(response.body).error.code).toBe('INVALID_WEBHOOK');
  });
});

// -------------------------------------------------------------------------------------------------------
// 2. Provider responses
// -------------------------------------------------------------------------------------------------------

/** A documented completion, as is or with one small structural mutation of one of its bodies. */
function nearCompleted(completed: StubWorld): fc.Arbitrary<StubWorld> {
  const resources = Object.keys(completed.bodies);
  return fc
    .record({ mutate: fc.boolean(), resource: fc.constantFrom(...resources), mutation: jsonMutation, status: fc.oneof({ weight: 9, arbitrary: fc.constant(200) }, { weight: 1, arbitrary: fc.constantFrom(201, 203, 404, 500) }) })
    .map(({ mutate, resource, mutation, status }) => ({
      ...completed,
      status,
      bodies: mutate ? { ...completed.bodies, [resource]: mutateJson(completed.bodies[resource], mutation) } : completed.bodies,
    }));
}

describe('provider response fuzzing (stub HTTP server)', () => {
  let server: Server;
  let url: string;
  let world: StubWorld | null = null;

  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const current = world;
        const resource = current?.route(req.method ?? 'GET', req.url ?? '/');
        if (!current || !resource) {
          res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"NOT_FOUND"}}');
          return;
        }
        const raw = current.bodies[resource];
        let text: string;
        try {
          text = typeof raw === 'string' ? raw : (JSON.stringify(raw) ?? '');
        } catch {
          text = String(raw);
        }
        try {
          res.writeHead(current.status, current.headers).end(text);
        } catch {
          // A header value Node refuses to send (generated garbage): send it without the extra headers.
          res.writeHead(current.status, { 'content-type': 'application/json' }).end(text);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it.each(FAMILIES)(`%s: ${RESPONSE_RUNS.toLocaleString('en')} random read responses -> a canonical observation or a typed ProviderError; COMPLETED only when documented`, async (family) => {
    const fx = fixtureFor(family);
    const adapter = fx.createAdapter(`${url}/${family}`, { token: STUB_TOKEN, timeoutMs: 5_000, now: () => T0 });
    const tally: Record<string, number> = {};
    const bump = (key: string) => (tally[key] = (tally[key] ?? 0) + 1);
    const unhandled = watchUnhandled();
    try {
      await fc.assert(
        fc.asyncProperty(fc.oneof({ weight: 3, arbitrary: fx.responses.world }, { weight: 1, arbitrary: nearCompleted(fx.responses.completed) }), async (w) => {
          world = w;
          let observation: unknown;
          try {
            observation = await adapter.poll(fx.responses.ref);
          } catch (error) {
            expect(error, `untyped ${(error as Error)?.name}: ${(error as Error)?.message}`).toBeInstanceOf(ProviderError);
            const e = error as ProviderError;
            expect(typeof e.retryable).toBe('boolean');
            expect(e.message).not.toContain(STUB_TOKEN);
            bump(`${e.name}:${e.code}`);
            return;
          } finally {
            world = null;
          }
          expect(isCanonical(observation), JSON.stringify(observation)).toBe(true);
          const status = (observation as { status: string }).status;
          bump(status);
          if (status === 'COMPLETED') {
            expect(fx.responses.isValidCompleted(w), `mapped to COMPLETED: ${JSON.stringify(w.bodies).slice(0, 600)}`).toBe(true);
          }
        }),
        { numRuns: RESPONSE_RUNS, endOnFailure: true },
      );
    } finally {
      unhandled.stop();
    }
    console.info(`[fuzz] ${family} responses: ${JSON.stringify(tally)}`);
    expect(unhandled.seen).toEqual([]);
    // The generator must reach both sides of the oracle: some valid completions and plenty of typed errors.
    expect(tally.COMPLETED ?? 0, 'some generated worlds are valid completions').toBeGreaterThan(0);
  }, 180_000);
});

// -------------------------------------------------------------------------------------------------------
// 3. CLI arguments
// -------------------------------------------------------------------------------------------------------

const CLI_ENTRY = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const STACK_TRACE = /\n\s+at\s+\S|^\s*at\s+\S+\s+\(|node:internal|\.ts:\d+:\d+/m;
const CLEAR_MESSAGE = /error|invalid|unknown|missing|required|too many|not a|expected|must/i;

interface CliResult {
  code: number | 'threw' | 'hung';
  stdout: string;
  stderr: string;
  thrown?: string;
}

describe('CLI argument fuzzing', () => {
  let main: (argv: string[]) => Promise<number>;
  let program: Command;
  // Options fall back to these variables (e.g. `worker --database-url`); CI sets DATABASE_URL, which would turn
  // some generated "invalid" invocations into valid ones that start a worker.
  const savedEnv = { DATABASE_URL: process.env.DATABASE_URL, BANKSYNC_TOKEN: process.env.BANKSYNC_TOKEN };

  afterAll(() => {
    for (const [name, value] of Object.entries(savedEnv)) if (value !== undefined) process.env[name] = value;
  });

  beforeAll(async () => {
    delete process.env.DATABASE_URL;
    delete process.env.BANKSYNC_TOKEN;
    const cli = await import('../../src/cli/main.js');
    main = cli.main;
    program = cli.buildProgram();
  });

  async function runInProcess(argv: string[]): Promise<CliResult> {
    let stdout = '';
    let stderr = '';
    const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown) => ((stdout += String(chunk)), true));
    const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: unknown) => ((stderr += String(chunk)), true));
    const savedExitCode = process.exitCode;
    process.exitCode = undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      const code = await Promise.race([
        main(argv),
        new Promise<'hung'>((resolve) => {
          timer = setTimeout(() => resolve('hung'), 10_000);
        }),
      ]);
      return { code, stdout, stderr };
    } catch (error) {
      return { code: 'threw', stdout, stderr, thrown: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
    } finally {
      clearTimeout(timer);
      out.mockRestore();
      err.mockRestore();
      process.exitCode = savedExitCode;
    }
  }

  function expectUsageError(argv: string[], result: CliResult): void {
    const shown = JSON.stringify(argv);
    expect(result.thrown, `${shown} threw`).toBeUndefined();
    expect(result.code, `${shown}: ${result.stderr}`).toBe(2);
    expect(result.stderr, `${shown} explains itself on stderr`).toMatch(CLEAR_MESSAGE);
    expect(result.stderr + result.stdout, `${shown} printed a stack trace`).not.toMatch(STACK_TRACE);
  }

  /** Invocations that are invalid by construction (so no command ever runs): derived from the registered commands. */
  function invalidInvocations(): fc.Arbitrary<string[]> {
    const commands = program.commands;
    const names = new Set(['help', ...commands.flatMap((c) => [c.name(), ...c.aliases()])]);
    const word = fc.stringMatching(/^[a-z][a-z0-9-]{0,14}$/);
    const junk = fc.array(fc.string({ maxLength: 12 }).filter((s) => !s.startsWith('-') && s !== 'help'), { maxLength: 3 });
    const valueOptions = commands.flatMap((c) => c.options.filter((o: Option) => o.required).map((o) => [c, o] as const));
    const parsed = commands.flatMap((c) => c.options.filter((o: Option) => o.required && o.parseArg).map((o) => [c, o] as const));
    const rejects = (option: Option, value: string) => {
      try {
        option.parseArg!(value, undefined);
        return false;
      } catch (error) {
        return error instanceof InvalidArgumentError;
      }
    };
    const acceptableValue = (option: Option): string | undefined => {
      for (const candidate of ['finx', 'TRANSACTIONS', '1', 'x', 'http://127.0.0.1:9']) if (!option.parseArg || !rejects(option, candidate)) return candidate;
      return undefined;
    };
    const cases: fc.Arbitrary<string[]>[] = [
      // unknown command
      fc.tuple(word.filter((w) => !names.has(w)), junk).map(([w, rest]) => [w, ...rest]),
      // unknown option, globally or on a command
      fc.tuple(word, fc.constantFrom(undefined, ...commands)).map(([w, c]) => (c ? [c.name(), `--zz-${w}`] : [`--zz-${w}`])),
      // an option that needs a value, given none
      ...(valueOptions.length ? [fc.constantFrom(...valueOptions).map(([c, o]) => [c.name(), o.long ?? o.short!])] : []),
      // a value the option's own parser rejects
      ...(parsed.length
        ? [
            fc
              .tuple(fc.constantFrom(...parsed), fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('0', '-1', '1.5', '1e3', 'abc', '', ' ', '99999999999999999999', 'NaN', 'finx ', 'FINX')), junk)
              .filter(([[, o], value]) => rejects(o, value))
              .map(([[c, o], value, rest]) => [c.name(), `${o.long}=${value}`, ...rest]),
          ]
        : []),
      // a mandatory option left out
      ...commands
        .filter((c) => c.options.some((o: Option) => o.mandatory))
        .map((c) =>
          fc.constantFrom(...c.options.filter((o: Option) => o.mandatory)).map((missing) => [
            c.name(),
            ...c.options.filter((o: Option) => o.mandatory && o !== missing).flatMap((o: Option) => {
              const value = acceptableValue(o);
              return value === undefined ? [] : [o.long!, value];
            }),
          ]),
        ),
      // arguments a command does not take
      ...commands
        .filter((c) => c.registeredArguments.length === 0 && !(c as unknown as { _allowExcessArguments: boolean })._allowExcessArguments)
        .map((c) => fc.tuple(word, junk).map(([w, rest]) => [c.name(), `x${w}`, ...rest])),
    ];
    return fc.oneof(...cases);
  }

  it(`${CLI_RUNS} random invalid invocations through main(argv): a clear message, exit code 2, no stack trace`, async () => {
    const kinds = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(invalidInvocations(), async (argv) => {
        const result = await runInProcess(argv);
        const first = /error: ([a-z ]+)/.exec(result.stderr)?.[1] ?? result.stderr.split('\n')[0]!.slice(0, 40);
        kinds.set(first, (kinds.get(first) ?? 0) + 1);
        expectUsageError(argv, result);
      }),
      { numRuns: CLI_RUNS, endOnFailure: true },
    );
    console.info(`[fuzz] CLI messages: ${JSON.stringify(Object.fromEntries(kinds))}`);
  }, 120_000);

  // Regression: ports used to pass parsing beyond 65535 and crash listen() (exit 1 instead of 2).
  it.each([
    [['sandbox', '--port', '70000']],
    [['sandbox', '--port', '65536']],
  ])('%j is a usage error (exit 2), not a crash', async (argv) => {
    expectUsageError(argv, await runInProcess(argv));
  });

  it('spawned processes exit with code 2 and print no stack trace', async () => {
    const samples = fc.sample(invalidInvocations(), { numRuns: 2, seed: 4242 });
    const results = await Promise.all(
      samples.map(
        (argv) =>
          new Promise<{ argv: string[]; code: number | null; stderr: string; stdout: string }>((resolve) => {
            const child = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
            let stdout = '';
            let stderr = '';
            child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
            child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
            const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
            child.on('exit', (code) => {
              clearTimeout(timer);
              resolve({ argv, code, stderr, stdout });
            });
          }),
      ),
    );
    for (const r of results) {
      expect(r.code, `${JSON.stringify(r.argv)}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(CLEAR_MESSAGE);
      expect(r.stderr + r.stdout).not.toMatch(STACK_TRACE);
    }
  }, 60_000);
});
