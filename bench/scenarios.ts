/**
 * The benchmark scenarios. Each one runs in its own child process (see worker.ts), so peak RSS, heap and JIT
 * state of one measurement never leak into another.
 *
 * Every sync goes through the same sequence: trigger -> RUNNING, wait, poll -> RUNNING, wait, poll ->
 * AWAIT_AUTH (embedded challenge), the user answers, answer -> COMPLETED: 8 macrosteps including the initial one.
 * Timers run on a VirtualClock advanced 1 ms per driver tick (pollBaseMs = pollMaxMs = 1), so waiting costs
 * no wall time; syncs run concurrently in batches so memory stays bounded.
 */
import Database from 'better-sqlite3';
import { existsSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createActor, fromPromise, type Actor, type InspectionEvent } from 'xstate';
import {
  synchronizationMachine,
  type AnswerInput,
  type EffectInput,
  type ObservationEnvelope,
  type SyncPolicy,
  type TriggerEnvelope,
} from '../machines/synchronization.js';
import { createEngine, type SyncEngine } from '../src/engine/engine.js';
import { MemoryStore } from '../src/stores/memory.js';
import { SqliteStore } from '../src/stores/sqlite.js';
import type { Store } from '../src/stores/types.js';
import { VirtualClock } from './clock.js';
import { LatencyProbe, MacrostepCounter, instrumentStore } from './instrument.js';
import { BENCH_PROVIDER, BENCH_TAN, ZeroLatencyProvider } from './provider.js';

export type Target = 'engine-memory' | 'engine-sqlite' | 'bare';

/** Tiny timing policy: the two poll waits take 1 virtual ms; nothing else fires during a run. */
export const BENCH_POLICY: Partial<SyncPolicy> = {
  pollBaseMs: 1,
  pollMaxMs: 1,
  authPollMs: 5 * 60_000,
};

export const MACROSTEPS_PER_SYNC = 8;

export interface ThroughputResult {
  target: Target;
  syncs: number;
  concurrency: number;
  elapsedMs: number;
  macrosteps: number;
  syncsPerSec: number;
  eventsPerSec: number;
  usPerSync: number;
  usPerEvent: number;
  /** Process CPU time (user + system, all threads) of the measured run. */
  cpuMs: number;
  /** 1-minute host load average when the measured run started (other processes compete for the CPUs). */
  loadAvg: number;
  /** Bytes the process handed to write syscalls during the measured run (/proc/self/io wchar), per sync; null off Linux. */
  writeBytesPerSync: number | null;
  writeSyscallsPerSync: number | null;
  latency: { samples: number; p50Us: number; p99Us: number } | null;
  peakRssBytes: number;
  /** engine-sqlite: db + wal file bytes per sync at the end of the run; memory/bare: null. */
  fileBytesPerSync: number | null;
  /** engine-sqlite: db file bytes per sync after a TRUNCATE checkpoint (the WAL folded in). */
  checkpointedBytesPerSync: number | null;
  /** engine-sqlite: stored column payload bytes per sync (sum of value lengths). */
  rowBytesPerSync: number | null;
  /** JSON size of the final persisted snapshot (what a bare actor would minimally have to store). */
  snapshotBytes: number;
}

export interface MemoryResult {
  target: 'engine-sqlite' | 'bare';
  syncs: number;
  heapBeforeBytes: number;
  heapActiveBytes: number;
  heapIdleBytes: number;
  rssBeforeBytes: number;
  rssActiveBytes: number;
  rssIdleBytes: number;
  activeBytesPerSync: number;
  idleBytesPerSync: number;
  activeRssBytesPerSync: number;
}

const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run with node --expose-gc');
  // Several passes: weak maps and finalizers need more than one to settle.
  for (let i = 0; i < 4; i++) collect();
}

export async function settledGc(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await immediate();
    gc();
  }
}

/** Ticks the clock until `done()` or a generous virtual-time budget is exhausted (which means a stall). */
async function pump(clock: VirtualClock, done: () => boolean, label: string): Promise<void> {
  for (let ticks = 0; ; ticks++) {
    await immediate();
    if (done()) return;
    if (ticks > 1_000) throw new Error(`${label}: batch stalled (no progress after ${ticks} virtual ms)`);
    clock.advance(1);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Engine

export interface EngineRig {
  engine: SyncEngine;
  clock: VirtualClock;
  provider: ZeroLatencyProvider;
  store: Store;
  sqlite: SqliteStore | null;
  dbPath: string | null;
  counter: MacrostepCounter;
  probe: LatencyProbe | null;
}

export function engineRig(target: 'engine-memory' | 'engine-sqlite', dir: string, name: string, withProbe: boolean): EngineRig {
  const clock = new VirtualClock();
  const provider = new ZeroLatencyProvider(clock);
  const dbPath = target === 'engine-sqlite' ? join(dir, `${name}.db`) : null;
  const sqlite = dbPath ? SqliteStore.open(dbPath) : null;
  const base: Store = sqlite ?? new MemoryStore();
  const counter = new MacrostepCounter();
  const probe = withProbe ? new LatencyProbe('commit') : null;
  if (probe) provider.onResult = (connectionId) => probe.stamp(connectionId);
  const store = probe ? instrumentStore(base, probe) : base;
  const inspect = probe ? probe.inspect : counter.inspect;
  const engine = createEngine({ store, providers: { [BENCH_PROVIDER]: provider }, clock, policy: BENCH_POLICY, inspect });
  return { engine, clock, provider, store, sqlite, dbPath, counter, probe };
}

/**
 * Drives `n` syncs through the engine, `concurrency` at a time. With `answer: false` the syncs are left
 * waiting in AWAIT_AUTH (memory scenario) and the promise resolves once all of them got there.
 */
export async function driveEngine(rig: EngineRig, n: number, concurrency: number, tag: string, answer = true): Promise<number> {
  const { engine, clock, probe } = rig;
  let finished = 0;
  let awaiting = 0;
  let failures = 0;
  let firstFailure: unknown;
  const fail = (reason: unknown) => {
    failures++;
    firstFailure ??= reason;
  };
  const offs = [
    engine.events.on('sync.completed', () => finished++),
    engine.events.on('sync.failed', (view) => {
      finished++;
      fail(view.error);
    }),
    engine.events.on('sync.awaitingUser', (view) => {
      awaiting++;
      if (!answer) return;
      probe?.stamp(view.connectionId);
      engine
        .submitChallengeResponse(view.syncId, { challengeId: view.challenge!.id, response: BENCH_TAN })
        .catch((error: unknown) => {
          finished++;
          fail(error);
        });
    }),
  ];
  try {
    for (let start = 0; start < n; start += concurrency) {
      const end = Math.min(n, start + concurrency);
      const requests: Promise<unknown>[] = [];
      for (let i = start; i < end; i++) {
        requests.push(engine.requestSync({ connectionId: `${tag}-${i}`, provider: BENCH_PROVIDER }));
      }
      await Promise.all(requests);
      await pump(clock, () => (answer ? finished : awaiting + failures) >= end, 'engine');
      if (failures > 0) throw new Error(`engine: ${failures} syncs failed; first: ${JSON.stringify(firstFailure)}`);
    }
  } finally {
    for (const off of offs) off();
  }
  return failures;
}

interface Sizes {
  file: number;
  checkpointed: number;
  rows: number;
}

/** Column bytes of the syncs matching `where` (a condition on syncs) and of their timers, effects and transitions. */
function storedRowBytes(db: Database.Database, where: string): number {
  const mine = `sync_id IN (SELECT sync_id FROM syncs WHERE ${where})`;
  return db
    .prepare(
      `SELECT
        (SELECT COALESCE(SUM(length(sync_id) + length(tenant_id) + length(connection_id) + length(provider) + length(scope)
           + length(status) + COALESCE(length(provider_ref), 0) + COALESCE(length(snapshot), 0) + 4 * 8), 0) FROM syncs WHERE ${where})
      + (SELECT COALESCE(SUM(length(sync_id) + length(timer_id) + length(event_type) + 8), 0) FROM timers WHERE ${mine})
      + (SELECT COALESCE(SUM(length(effect_key) + length(sync_id) + length(kind) + length(state) + COALESCE(length(outcome), 0) + 3 * 8), 0) FROM effects WHERE ${mine})
      + (SELECT COALESCE(SUM(length(sync_id) + COALESCE(length(from_state), 0) + length(to_state) + length(event) + 2 * 8), 0) FROM transitions WHERE ${mine})`,
    )
    .pluck()
    .get() as number;
}

function sqliteSizes(rig: EngineRig, syncs: number): Sizes {
  const db = rig.sqlite!.db;
  const size = (path: string) => (existsSync(path) ? statSync(path).size : 0);
  const file = size(rig.dbPath!) + size(`${rig.dbPath!}-wal`);
  const payload = storedRowBytes(db, '1');
  db.pragma('wal_checkpoint(TRUNCATE)');
  const checkpointed = size(rig.dbPath!) + size(`${rig.dbPath!}-wal`);
  return { file: file / syncs, checkpointed: checkpointed / syncs, rows: payload / syncs };
}

async function finalSnapshotBytes(rig: EngineRig): Promise<number> {
  const [sample] = await rig.store.listSyncs({ limit: 1 });
  return sample ? Buffer.byteLength(JSON.stringify(sample.snapshot)) : NaN;
}

// ---------------------------------------------------------------------------------------------------------------
// Bare actor: the same machine, the same zero-latency provider, no engine and no store.

export function bareMachine(clock: VirtualClock, provider: ZeroLatencyProvider) {
  return synchronizationMachine.provide({
    actors: {
      triggerSync: fromPromise<TriggerEnvelope, EffectInput>(async ({ input }) => {
        const output = await provider.trigger({
          syncId: input.syncId,
          connectionId: input.connectionId,
          scope: input.scope,
          idempotencyKey: input.syncId,
          since: clock.now(),
          options: input.options,
        });
        return { ...output, observedAt: clock.now() };
      }),
      pollSync: fromPromise<ObservationEnvelope, EffectInput>(async ({ input }) => {
        const observation = await provider.poll({ connectionId: input.connectionId, providerRef: input.providerRef ?? '' });
        return { observation, observedAt: clock.now() };
      }),
      answerChallenge: fromPromise<ObservationEnvelope, AnswerInput>(async ({ input }) => {
        const ref = { connectionId: input.connectionId, providerRef: input.providerRef ?? '' };
        const observation = await provider.answerChallenge(ref, input.challengeId, BENCH_TAN);
        return { observation, observedAt: clock.now() };
      }),
    },
  });
}

type BareActor = Actor<ReturnType<typeof bareMachine>>;

interface BareRig {
  clock: VirtualClock;
  provider: ZeroLatencyProvider;
  machine: ReturnType<typeof bareMachine>;
  counter: MacrostepCounter;
  probe: LatencyProbe | null;
  snapshotBytes: number[];
}

function bareRig(withProbe: boolean): BareRig {
  const clock = new VirtualClock();
  const provider = new ZeroLatencyProvider(clock);
  const probe = withProbe ? new LatencyProbe('macrostep') : null;
  if (probe) provider.onResult = (connectionId) => probe.stamp(connectionId);
  return { clock, provider, machine: bareMachine(clock, provider), counter: new MacrostepCounter(), probe, snapshotBytes: [] };
}

/** Drives `n` bare actors; with `answer: false` returns the actors left waiting in AWAIT_AUTH. */
async function driveBare(rig: BareRig, n: number, concurrency: number, tag: string, answer = true): Promise<BareActor[]> {
  const { clock, machine, probe } = rig;
  const resident: BareActor[] = [];
  let finished = 0;
  let awaiting = 0;
  let failures = 0;
  let firstFailure: unknown;
  for (let start = 0; start < n; start += concurrency) {
    const end = Math.min(n, start + concurrency);
    for (let i = start; i < end; i++) {
      const connectionId = `${tag}-${i}`;
      // Without a probe the bare actor runs with no inspection at all: the purest baseline.
      const inspect: ((event: InspectionEvent) => void) | undefined = probe ? probe.inspect : undefined;
      const actor: BareActor = createActor(machine, {
        input: { syncId: `sync-${tag}-${i}`, connectionId, provider: BENCH_PROVIDER, scope: 'TRANSACTIONS', policy: BENCH_POLICY },
        clock,
        ...(inspect ? { inspect } : {}),
      });
      let answered = false;
      actor.subscribe({
        next: (snapshot) => {
          if (!probe) rig.counter.count++;
          if (snapshot.status === 'done') {
            finished++;
            if (snapshot.output?.status !== 'COMPLETED') {
              failures++;
              firstFailure ??= snapshot.output?.error;
            }
            if (rig.snapshotBytes.length < 100) rig.snapshotBytes.push(Buffer.byteLength(JSON.stringify(actor.getPersistedSnapshot())));
            return;
          }
          const value = snapshot.value as { AWAIT_AUTH?: string };
          if (!answered && typeof value === 'object' && value.AWAIT_AUTH === 'AwaitingUser' && snapshot.context.challenge) {
            answered = true;
            awaiting++;
            if (!answer) return;
            const challengeId = snapshot.context.challenge.id;
            // Answer asynchronously, as a user (or the engine's event listener) would.
            queueMicrotask(() => {
              probe?.stamp(connectionId);
              actor.send({ type: 'CHALLENGE.ANSWER', challengeId, responseRef: 'bench' });
            });
          }
        },
        error: (error) => {
          finished++;
          failures++;
          firstFailure ??= error;
        },
      });
      actor.start();
      if (!answer) resident.push(actor);
    }
    await pump(clock, () => (answer ? finished : awaiting + failures) >= end, 'bare');
    if (failures > 0) throw new Error(`bare: ${failures} syncs failed; first: ${JSON.stringify(firstFailure)}`);
  }
  return resident;
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

export interface ThroughputOptions {
  target: Target;
  syncs: number;
  concurrency: number;
  /** Attach the latency probe (inspection + commit wrapper). */
  probe: boolean;
  warmup: number;
  dir: string;
}

export async function throughput(options: ThroughputOptions): Promise<ThroughputResult> {
  const { target, syncs, concurrency } = options;
  // Warm up the JIT on a separate rig so the measured one starts cold only in its data, not its code.
  if (options.warmup > 0) {
    if (target === 'bare') await driveBare(bareRig(options.probe), options.warmup, concurrency, 'warm');
    else {
      const warm = engineRig(target, options.dir, 'warmup', options.probe);
      await driveEngine(warm, options.warmup, concurrency, 'warm');
      await warm.engine.stop();
      await warm.store.close();
    }
  }
  await settledGc();

  if (target === 'bare') {
    const rig = bareRig(options.probe);
    const span = startSpan();
    await driveBare(rig, syncs, concurrency, 'conn');
    const spent = span.end();
    const macrosteps = rig.probe ? rig.probe.macrosteps : rig.counter.count;
    return summarize(options, spent, macrosteps, rig.probe, null, avg(rig.snapshotBytes), rig.provider.calls.answer);
  }

  const rig = engineRig(target, options.dir, 'measured', options.probe);
  const span = startSpan();
  await driveEngine(rig, syncs, concurrency, 'conn');
  const spent = span.end();
  const macrosteps = rig.probe ? rig.probe.macrosteps : rig.counter.count;
  const sizes = rig.sqlite ? sqliteSizes(rig, syncs) : null;
  const snapshotBytes = await finalSnapshotBytes(rig);
  await rig.engine.stop();
  await rig.store.close();
  return summarize(options, spent, macrosteps, rig.probe, sizes, snapshotBytes, rig.provider.calls.answer);
}

interface Spent {
  loadAvg: number;
  elapsedMs: number;
  cpuMs: number;
  io: { wchar: number; syscw: number } | null;
}

function procIo(): { wchar: number; syscw: number } | null {
  try {
    const text = readFileSync('/proc/self/io', 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    return { wchar: field('wchar'), syscw: field('syscw') };
  } catch {
    return null;
  }
}

function startSpan(): { end(): Spent } {
  const loadAvg = os.loadavg()[0]!;
  const io0 = procIo();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  return {
    end() {
      const elapsedMs = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const io1 = procIo();
      return {
        loadAvg,
        elapsedMs,
        cpuMs: (cpu.user + cpu.system) / 1000,
        io: io0 && io1 ? { wchar: io1.wchar - io0.wchar, syscw: io1.syscw - io0.syscw } : null,
      };
    },
  };
}

function avg(values: number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

function summarize(
  options: ThroughputOptions,
  spent: Spent,
  macrosteps: number,
  probe: LatencyProbe | null,
  sizes: Sizes | null,
  snapshotBytes: number,
  answers: number,
): ThroughputResult {
  const { syncs } = options;
  const { elapsedMs } = spent;
  if (answers !== syncs) throw new Error(`${options.target}: expected ${syncs} answered challenges, saw ${answers}`);
  if (macrosteps !== syncs * MACROSTEPS_PER_SYNC) {
    throw new Error(`${options.target}: expected ${syncs * MACROSTEPS_PER_SYNC} macrosteps, counted ${macrosteps}`);
  }
  return {
    target: options.target,
    syncs,
    concurrency: options.concurrency,
    elapsedMs,
    macrosteps,
    syncsPerSec: (syncs * 1000) / elapsedMs,
    eventsPerSec: (macrosteps * 1000) / elapsedMs,
    usPerSync: (elapsedMs * 1000) / syncs,
    usPerEvent: (elapsedMs * 1000) / macrosteps,
    cpuMs: spent.cpuMs,
    loadAvg: spent.loadAvg,
    writeBytesPerSync: spent.io ? spent.io.wchar / syncs : null,
    writeSyscallsPerSync: spent.io ? spent.io.syscw / syncs : null,
    latency: probe ? probe.summary() : null,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    fileBytesPerSync: sizes?.file ?? null,
    checkpointedBytesPerSync: sizes?.checkpointed ?? null,
    rowBytesPerSync: sizes?.rows ?? null,
    snapshotBytes,
  };
}

export interface WalPagesOptions {
  syncs: number;
  concurrency: number;
  warmup: number;
  dir: string;
}

export interface WalPagesResult {
  syncs: number;
  pageSize: number;
  /** WAL frames written per sync, in all. */
  framesPerSync: number;
  /** WAL frames per sync by the table or index the page belongs to, largest first. */
  byObject: { name: string; framesPerSync: number }[];
  /** Column bytes the run stored per sync: the section 2 row payload plus the event log and the connection row. */
  storedBytesPerSync: number;
}

/**
 * Where the bytes written go: the same SQLite run as section 2, with a second connection holding a read
 * transaction open from the start, so no checkpoint can copy a frame back and every page write of the run stays
 * in the WAL. Each frame names its page; dbstat names the table or index that owns the page.
 */
export async function walPages(options: WalPagesOptions): Promise<WalPagesResult> {
  const rig = engineRig('engine-sqlite', options.dir, 'wal-pages', false);
  await driveEngine(rig, options.warmup, options.concurrency, 'warm');
  const reader = new Database(rig.dbPath!, { readonly: true });
  reader.exec('BEGIN');
  reader.prepare('SELECT count(*) FROM syncs').get(); // the read transaction starts at its first read
  const walBefore = statSync(`${rig.dbPath!}-wal`).size;
  await driveEngine(rig, options.syncs, options.concurrency, 'conn');
  const db = rig.sqlite!.db;
  const owner = new Map<number, string>();
  for (const row of db.prepare('SELECT name, pageno FROM dbstat').all() as { name: string; pageno: number }[]) owner.set(row.pageno, row.name);
  const wal = readFileSync(`${rig.dbPath!}-wal`);
  const pageSize = wal.readUInt32BE(8);
  const frameSize = 24 + pageSize;
  // Frames written before the reader started are skipped: they belong to the warm-up.
  const firstFrame = Math.max(0, Math.floor((walBefore - 32) / frameSize));
  const counts = new Map<string, number>();
  let frames = 0;
  for (let at = 32 + firstFrame * frameSize; at + frameSize <= wal.length; at += frameSize) {
    const name = owner.get(wal.readUInt32BE(at)) ?? '(freed or new page)';
    counts.set(name, (counts.get(name) ?? 0) + 1);
    frames++;
  }
  reader.exec('COMMIT');
  reader.close();
  const eventBytes = db
    .prepare(
      `SELECT COALESCE(SUM(length(event_id) + length(name) + length(tenant_id) + length(connection_id) + COALESCE(length(sync_id), 0)
         + length(payload) + 2 * 8), 0) FROM events WHERE connection_id LIKE 'conn-%'`,
    )
    .pluck()
    .get() as number;
  const connectionBytes = db
    .prepare(
      `SELECT COALESCE(SUM(length(tenant_id) + length(connection_id) + length(provider) + length(state) + length(context) + 2 * 8), 0)
       FROM connections WHERE connection_id LIKE 'conn-%'`,
    )
    .pluck()
    .get() as number;
  const stored = storedRowBytes(db, "connection_id LIKE 'conn-%'") + eventBytes + connectionBytes;
  await rig.engine.stop();
  await rig.store.close();
  return {
    syncs: options.syncs,
    pageSize,
    framesPerSync: frames / options.syncs,
    byObject: [...counts].sort((a, b) => b[1] - a[1]).map(([name, n]) => ({ name, framesPerSync: n / options.syncs })),
    storedBytesPerSync: stored / options.syncs,
  };
}

export interface MemoryOptions {
  target: 'engine-sqlite' | 'bare';
  syncs: number;
  concurrency: number;
  warmup: number;
  dir: string;
}

/**
 * Heap bytes per sync resident in AWAIT_AUTH (waiting for the user), then per sync after the engine stopped
 * (everything persisted, nothing hosted). Deltas are taken against a gc'd heap after warm-up.
 */
export async function memory(options: MemoryOptions): Promise<MemoryResult> {
  const { syncs, concurrency } = options;
  const measure = async () => {
    await settledGc();
    const usage = process.memoryUsage();
    return { heap: usage.heapUsed, rss: usage.rss };
  };

  if (options.target === 'bare') {
    const rig = bareRig(false);
    await driveBare(rig, options.warmup, concurrency, 'warm');
    const before = await measure();
    let actors: BareActor[] | null = await driveBare(rig, syncs, concurrency, 'conn', false);
    rig.provider.forget();
    const active = await measure();
    if (actors.length !== syncs) throw new Error(`bare: ${actors.length} actors resident, expected ${syncs}`);
    for (const actor of actors) actor.stop();
    actors = null;
    const idle = await measure();
    return memoryResult(options, before, active, idle);
  }

  const rig = engineRig('engine-sqlite', options.dir, 'memory', false);
  await driveEngine(rig, options.warmup, concurrency, 'warm');
  const before = await measure();
  await driveEngine(rig, syncs, concurrency, 'conn', false);
  rig.provider.forget();
  const active = await measure();
  const waiting = (await rig.store.countByStatus())['AWAIT_AUTH'] ?? 0;
  if (waiting !== syncs) throw new Error(`engine: ${waiting} syncs in AWAIT_AUTH, expected ${syncs}`);
  await rig.engine.stop();
  const idle = await measure();
  await rig.store.close();
  return memoryResult(options, before, active, idle);
}

function memoryResult(
  options: MemoryOptions,
  before: { heap: number; rss: number },
  active: { heap: number; rss: number },
  idle: { heap: number; rss: number },
): MemoryResult {
  return {
    target: options.target,
    syncs: options.syncs,
    heapBeforeBytes: before.heap,
    heapActiveBytes: active.heap,
    heapIdleBytes: idle.heap,
    rssBeforeBytes: before.rss,
    rssActiveBytes: active.rss,
    rssIdleBytes: idle.rss,
    activeBytesPerSync: (active.heap - before.heap) / options.syncs,
    idleBytesPerSync: (idle.heap - before.heap) / options.syncs,
    activeRssBytesPerSync: (active.rss - before.rss) / options.syncs,
  };
}
