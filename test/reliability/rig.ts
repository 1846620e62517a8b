/**
 * One provider family under test, over real HTTP: sandbox <- fault proxy <- adapter <- engine (SQLite, SimulatedClock),
 * and sandbox -> webhook relay -> engine.webhookHandler. The engine's timers run on a SimulatedClock that `drive()`
 * advances only when the system is quiescent (no request in flight, the sync waiting on a timer), so retry gaps are
 * measured in simulated time from the proxy log, deterministically, and no assertion depends on wall-clock speed.
 * Only adapter timeouts and slow bodies use the wall clock (that is what they are about).
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SimulatedClock } from 'xstate';
import { defaultSyncPolicy, type SyncPolicy } from '../../machines/synchronization.js';
import { createEngine, type SyncEngine } from '../../src/engine/engine.js';
import type { Logger } from '../../src/engine/logger.js';
import type { SyncView } from '../../src/engine/view.js';
import type { ProviderAdapter } from '../../src/providers/types.js';
import { startFaultProxy, type FaultProxy, type ProxyRecord } from '../../src/sandbox/faults.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { SqliteStore } from '../../src/stores/sqlite.js';
import { fixtureFor, type CallKind, type FamilyFixture, type FixtureScenario } from './families.js';

/** Simulated time starts at (about) the real time, so consent ages and dates computed by the sandbox make sense. */
export const T0 = Math.floor(Date.now() / 60_000) * 60_000;
/** Adapter timeout (wall clock): long enough that a loaded CI box never trips it by accident. */
export const ADAPTER_TIMEOUT_MS = 500;
export const RIG_TOKEN = 'rig-token';

export type WebhookMode = 'pass' | 'drop' | 'hold';

export interface CapturedWebhook {
  headers: Record<string, string>;
  body: string;
}

export interface WebhookReply {
  status: number;
  body: string;
}

/** Between the sandbox and the engine: passes deliveries through, drops them, or holds them for later. */
export interface WebhookRelay {
  url: string;
  mode: WebhookMode;
  /** Every delivery the sandbox made, in arrival order. */
  readonly captured: CapturedWebhook[];
  /** Deliveries held in `hold` mode and not yet delivered. */
  readonly held: CapturedWebhook[];
  /** POSTs one delivery to the engine's webhook endpoint over HTTP. */
  deliver(webhook: CapturedWebhook): Promise<WebhookReply>;
  inFlight(): number;
}

export interface Rig {
  family: string;
  fixture: FamilyFixture;
  clock: SimulatedClock;
  sandbox: Sandbox;
  proxy: FaultProxy;
  store: SqliteStore;
  engine: SyncEngine;
  adapter: ProviderAdapter;
  relay: WebhookRelay;
  /** The engine's own webhook endpoint (engine.webhookHandler) and the replies it sent. */
  engineWebhookUrl: string;
  engineReplies: WebhookReply[];
  policy: SyncPolicy;
  connect(scenario: FixtureScenario, credentials?: Record<string, string>): Promise<string>;
  /** Provider calls (classified) in the proxy log from index `from` on. */
  calls(from: number, kind?: CallKind): ProxyRecord[];
  /** Waits until nothing is in flight and the sync waits on a timer or the user (or has finished). */
  quiesce(syncId: string): Promise<SyncView>;
  /** Runs a sync to its end: answers embedded challenges from `answers`, advances the clock timer by timer. */
  drive(syncId: string, options?: DriveOptions): Promise<SyncView>;
  /** Advances the clock to the sync's next timer and waits until it settles again. */
  advance(syncId: string): Promise<SyncView>;
  close(): Promise<void>;
}

export interface DriveOptions {
  answers?: string[];
  /** Stop (without finishing) once the sync reaches a state for which this returns true. */
  until?: (view: SyncView) => boolean;
  /** Called at every quiescent point before the driver acts (answers, follows a link or advances the clock). */
  onQuiescent?: (view: SyncView) => Promise<void>;
  maxSteps?: number;
}

const WAITING = new Set(['QUEUED.Backoff', 'RUNNING.Waiting', 'AWAIT_AUTH.AwaitingUser']);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const tick = () => new Promise((resolve) => setImmediate(resolve));

function flatHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (typeof v === 'string') out[k] = v;
  return out;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function readText(req: import('node:http').IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export interface RigOptions {
  policy?: Partial<SyncPolicy>;
  logger?: Logger;
  webhookSecrets?: Record<string, string>;
  token?: string;
  /** SQLite file for the engine's store (default ':memory:'). */
  storePath?: string;
}

export async function startRig(family: string, options: RigOptions = {}): Promise<Rig> {
  const fixture = fixtureFor(family);
  const clock = new SimulatedClock();
  clock.set(T0);
  const now = () => clock.now();
  const sandbox = await startSandbox({
    now,
    ...(options.webhookSecrets ? { webhookSecrets: options.webhookSecrets } : {}),
  });
  const proxy = await startFaultProxy({ target: sandbox.url, now });
  const token = options.token ?? RIG_TOKEN;
  const adapter = fixture.createAdapter(`${proxy.url}/${family}`, { token, timeoutMs: ADAPTER_TIMEOUT_MS, now });
  const store = SqliteStore.open(options.storePath ?? ':memory:');
  // Exact gaps are asserted here; jitter has its own tests (test/machines/synchronization.test.ts).
  const policy: SyncPolicy = { ...defaultSyncPolicy, jitterRatio: 0, ...options.policy };
  const engine = createEngine({
    store,
    providers: { [family]: adapter },
    clock,
    policy,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.webhookSecrets ? { webhookSecrets: options.webhookSecrets } : {}),
  });
  await engine.start();

  // The engine's endpoint, with every reply recorded (status and body).
  const engineReplies: WebhookReply[] = [];
  const handler = engine.webhookHandler(family);
  const engineServer = createServer((req, res) => {
    const chunks: Buffer[] = [];
    const write = res.write.bind(res);
    const end = res.end.bind(res);
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      if (chunk) chunks.push(Buffer.from(chunk as string));
      return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk as string));
      engineReplies.push({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') });
      return (end as (...a: unknown[]) => typeof res)(chunk, ...rest);
    }) as typeof res.end;
    handler(req, res);
  });
  const engineWebhookUrl = await listen(engineServer);

  let relayOpen = 0;
  const deliver = (webhook: CapturedWebhook): Promise<WebhookReply> => httpPost(engineWebhookUrl, webhook.headers, webhook.body);
  const relay: WebhookRelay = {
    url: '',
    mode: 'pass',
    captured: [],
    held: [],
    deliver,
    inFlight: () => relayOpen,
  };
  const relayServer = createServer((req, res) => {
    relayOpen += 1;
    const done = () => {
      relayOpen -= 1;
    };
    readText(req)
      .then(async (body) => {
        const headers = flatHeaders(req.headers);
        delete headers.host;
        delete headers['content-length'];
        delete headers.connection;
        const webhook = { headers, body };
        relay.captured.push(webhook);
        if (relay.mode === 'pass') {
          const reply = await deliver(webhook);
          res.writeHead(reply.status, { 'content-type': 'application/json' }).end(reply.body);
        } else {
          if (relay.mode === 'hold') relay.held.push(webhook);
          res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
        }
      })
      .catch(() => res.destroy())
      .finally(done);
  });
  relay.url = await listen(relayServer);
  sandbox.setWebhookUrl(relay.url, family);

  async function fire(syncId: string, state: string): Promise<void> {
    const timers = await store.listTimers(syncId);
    if (timers.length === 0) throw new Error(`rig: active sync ${syncId} in ${state} has no timer`);
    const next = Math.min(...timers.map((t) => t.dueAt));
    clock.increment(Math.max(0, next - clock.now()));
  }

  const rig: Rig = {
    family,
    fixture,
    clock,
    sandbox,
    proxy,
    store,
    engine,
    adapter,
    relay,
    engineWebhookUrl,
    engineReplies,
    policy,
    connect: (scenario, credentials) => fixture.connect(`${sandbox.url}/${family}`, token, scenario, credentials),
    calls(from, kind) {
      return proxy.log.slice(from).filter((r) => kind === undefined || fixture.classify(r.method, r.path) === kind);
    },
    async quiesce(syncId) {
      const deadline = Date.now() + 20_000;
      let stable = 0;
      let last = '';
      for (;;) {
        for (let i = 0; i < 5; i++) await tick();
        const busy = proxy.inFlight() > 0 || relay.inFlight() > 0;
        const view = await engine.get(syncId);
        const key = `${view.version}:${view.state}`;
        const waiting = !view.active || WAITING.has(view.state);
        if (!busy && waiting && key === last) {
          await sandbox.webhooksIdle();
          if (++stable >= 3) return engine.get(syncId);
        } else {
          stable = 0;
        }
        last = key;
        if (Date.now() > deadline) {
          throw new Error(`rig: sync ${syncId} never settled (state ${view.state}, proxy in flight ${proxy.inFlight()}, relay ${relay.inFlight()})`);
        }
        await sleep(busy || !waiting ? 5 : 1);
      }
    },
    async drive(syncId, driveOptions = {}) {
      const answers = [...(driveOptions.answers ?? [])];
      const answered = new Set<string>();
      const opened = new Set<string>();
      const maxSteps = driveOptions.maxSteps ?? 400;
      for (let step = 0; step < maxSteps; step++) {
        let view = await rig.quiesce(syncId);
        if (view.active && driveOptions.onQuiescent) {
          await driveOptions.onQuiescent(view);
          view = await rig.quiesce(syncId);
        }
        if (!view.active || driveOptions.until?.(view)) return view;
        const challenge = view.challenge;
        if (view.state === 'AWAIT_AUTH.AwaitingUser' && challenge?.kind === 'EMBEDDED' && !answered.has(challenge.id) && answers.length > 0) {
          answered.add(challenge.id);
          await engine.submitChallengeResponse(syncId, { challengeId: challenge.id, response: answers.shift()! });
          continue;
        }
        // The user follows redirect and web form links once (the sandbox's pages complete them).
        if (view.status === 'AWAIT_AUTH' && challenge?.redirectUrl && challenge.kind !== 'EMBEDDED' && !opened.has(challenge.id)) {
          opened.add(challenge.id);
          await (await fetch(challenge.redirectUrl)).arrayBuffer();
          continue;
        }
        await fire(syncId, view.state);
      }
      throw new Error(`rig: sync ${syncId} did not finish within ${maxSteps} steps`);
    },
    async advance(syncId) {
      const view = await rig.quiesce(syncId);
      if (view.active) await fire(syncId, view.state);
      return rig.quiesce(syncId);
    },
    async close() {
      await engine.stop();
      await proxy.close();
      await sandbox.close();
      for (const server of [engineServer, relayServer]) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      await store.close();
    },
  };
  return rig;
}

/**
 * POST over a fresh connection (no keep-alive pool: a socket the server closed while idle is never reused, so a
 * test never sees a spurious ECONNRESET).
 */
export function httpPost(url: string, headers: Record<string, string>, body: string): Promise<WebhookReply> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const req = httpRequest(
      { host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Gaps (simulated ms) between consecutive records. */
export function gaps(records: readonly ProxyRecord[]): number[] {
  return records.slice(1).map((r, i) => r.at - records[i]!.at);
}

/** Every row of every table of the SQLite store, as one string (for "nothing changed" comparisons and secret scans). */
export function dumpSqlite(store: SqliteStore): string {
  const tables = store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[];
  return JSON.stringify(tables.map(({ name }) => [name, store.db.prepare(`SELECT * FROM "${name.replace(/"/g, '""')}"`).all()]));
}
