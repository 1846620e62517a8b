/**
 * `npm run bench [-- --quick] [-- --write] [-- --sizes 1000,10000,100000]`
 *
 * Runs every benchmark scenario in its own child process (node --expose-gc --import tsx bench/worker.ts), one at
 * a time, and prints one markdown report in which every figure reads `value (baseline value, ratio x)`.
 * The full run also writes the report to bench/RESULTS.md; `--quick` only prints it unless `--write` is given.
 * Progress goes to stderr, the report to stdout. No figure is asserted: this is a measurement, not a test.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { ResumeResult } from './resume.js';
import type { ScaleoutResult } from './scaleout.js';
import type { MemoryResult, Target, ThroughputResult, WalPagesResult } from './scenarios.js';
import type { WorkerJob } from './worker.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

// ---------------------------------------------------------------------------------------------------------------
// Configuration

interface Config {
  quick: boolean;
  write: boolean;
  /** Connections per throughput run for the scaling curve; the largest is section 2's figure. */
  sizes: number[];
  overheadSyncs: number;
  overheadRepeats: number;
  memorySyncs: number;
  /** Syncs for the unloaded-latency run (one sync in flight at a time). */
  latencySyncs: number;
  /** Syncs for the loaded-latency run (`concurrency` in flight). */
  loadedLatencySyncs: number;
  concurrency: number;
  warmup: number;
  /** Persisted active syncs `engine.start()` resumes (section 5). */
  resumeSyncs: number;
  /** Syncs (and no-op jobs) per worker count in the scale-out section, and the worker process counts. */
  scaleoutSyncs: number;
  scaleoutWorkers: number[];
  scaleoutConcurrency: number;
}

/** As test/support/postgres.ts: DATABASE_URL, else the local development database. */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://banksync:banksync@127.0.0.1:5432/banksync_dev';

async function postgresReachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

function parseArgs(argv: string[]): Config {
  const quick = argv.includes('--quick');
  const write = argv.includes('--write') || !quick;
  const sizesAt = argv.indexOf('--sizes');
  const sizesArg = sizesAt >= 0 ? argv[sizesAt + 1] : undefined;
  const sizes = sizesArg
    ? sizesArg.split(',').map((s) => Number(s.trim()))
    : quick
      ? [100, 1_000]
      : [1_000, 10_000, 100_000];
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n <= 0)) {
    throw new Error(`--sizes expects positive integers, e.g. --sizes 1000,10000,100000 (got ${sizesArg})`);
  }
  sizes.sort((a, b) => a - b);
  return {
    quick,
    write,
    sizes,
    overheadSyncs: quick ? 1_000 : 5_000,
    overheadRepeats: quick ? 1 : 3,
    memorySyncs: quick ? 1_000 : 10_000,
    latencySyncs: quick ? 200 : 2_000,
    loadedLatencySyncs: quick ? 1_000 : 10_000,
    concurrency: 500,
    warmup: quick ? 200 : 1_000,
    resumeSyncs: quick ? 1_000 : 100_000,
    scaleoutSyncs: quick ? 60 : 600,
    scaleoutWorkers: [1, 2, 4],
    scaleoutConcurrency: 4,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Running workers

function runWorker<T>(job: WorkerJob, label: string): T {
  const started = Date.now();
  process.stderr.write(`bench: ${label} ... `);
  const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', join(here, 'worker.ts'), JSON.stringify(job)], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const line = child.stdout?.split('\n').find((l) => l.startsWith('RESULT '));
  if (child.status !== 0 || !line) {
    process.stderr.write('failed\n');
    throw new Error(`benchmark worker "${label}" failed (exit ${child.status ?? child.signal}):\n${child.stderr}`);
  }
  process.stderr.write(`${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return JSON.parse(line.slice('RESULT '.length)) as T;
}

function throughputJob(config: Config, target: Target, syncs: number, probe: boolean, concurrency = config.concurrency): WorkerJob {
  return { kind: 'throughput', target, syncs, concurrency, probe, warmup: config.warmup };
}

// ---------------------------------------------------------------------------------------------------------------
// Formatting

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const num = (n: number, digits = 1) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a';
const mib = (bytes: number) => `${num(bytes / (1024 * 1024))} MiB`;
const bytes = (n: number) => `${int(n)} B`;
const ratio = (value: number, baseline: number): string => {
  const r = value / baseline;
  if (!Number.isFinite(r)) return 'n/a';
  const abs = Math.abs(r);
  return abs !== 0 && abs < 0.1 ? r.toPrecision(2) : r.toFixed(2);
};
/** The one format every figure uses: `value (baseline value, ratio x)`. */
const figure = (value: string, baselineLabel: string, baseline: string, r: string) => `${value} (${baselineLabel}: ${baseline}, ratio ${r}x)`;
const sizeLabel = (n: number) => (n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n));

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const config = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const loadBefore = os.loadavg();
  const t0 = Date.now();

  // 1. Engine overhead: bare / engine+memory / engine+SQLite, interleaved so drift hits all three alike.
  const overhead: Record<Target, ThroughputResult[]> = { bare: [], 'engine-memory': [], 'engine-sqlite': [] };
  for (let rep = 1; rep <= config.overheadRepeats; rep++) {
    for (const target of ['bare', 'engine-memory', 'engine-sqlite'] as const) {
      overhead[target].push(
        runWorker<ThroughputResult>(
          throughputJob(config, target, config.overheadSyncs, false),
          `overhead ${target} ${int(config.overheadSyncs)} syncs (run ${rep}/${config.overheadRepeats})`,
        ),
      );
    }
  }
  const eventsPerSec = (target: Target) => median(overhead[target].map((r) => r.eventsPerSec));
  const cpuUsPerEvent = (target: Target) => median(overhead[target].map((r) => (r.cpuMs * 1000) / r.macrosteps));

  // 2. Event latency, with the probe attached on both sides: loaded (`concurrency` in flight) and unloaded (1 in flight).
  const latencyRun = (syncs: number, concurrency: number) => ({
    syncs,
    concurrency,
    engine: runWorker<ThroughputResult>(
      throughputJob(config, 'engine-sqlite', syncs, true, concurrency),
      `latency engine-sqlite ${int(syncs)} syncs, ${concurrency} in flight`,
    ),
    bare: runWorker<ThroughputResult>(throughputJob(config, 'bare', syncs, true, concurrency), `latency bare ${int(syncs)} syncs, ${concurrency} in flight`),
  });
  const loaded = latencyRun(Math.min(config.loadedLatencySyncs, config.sizes[config.sizes.length - 1]!), config.concurrency);
  const unloaded = latencyRun(config.latencySyncs, 1);

  // 2 + 4. Throughput at every size, engine+SQLite and bare, no probe (the engine keeps its own inspection, as in production).
  const scaling: { size: number; engine: ThroughputResult; bare: ThroughputResult }[] = [];
  for (const size of config.sizes) {
    const engine = runWorker<ThroughputResult>(throughputJob(config, 'engine-sqlite', size, false), `throughput engine-sqlite ${int(size)} syncs`);
    const bare = runWorker<ThroughputResult>(throughputJob(config, 'bare', size, false), `throughput bare ${int(size)} syncs`);
    scaling.push({ size, engine, bare });
  }

  // 2a. Where the page writes go (WAL frames by table), at the middle size.
  const walSyncs = config.quick ? 1_000 : 10_000;
  const wal = runWorker<WalPagesResult>(
    { kind: 'wal-pages', syncs: walSyncs, concurrency: config.concurrency, warmup: config.warmup },
    `WAL pages by table, engine-sqlite ${int(walSyncs)} syncs`,
  );

  // 3. Memory.
  const memoryJob = (target: 'engine-sqlite' | 'bare'): WorkerJob => ({
    kind: 'memory',
    target,
    syncs: config.memorySyncs,
    concurrency: config.concurrency,
    warmup: config.warmup,
  });
  const memEngine = runWorker<MemoryResult>(memoryJob('engine-sqlite'), `memory engine-sqlite ${int(config.memorySyncs)} syncs`);
  const memBare = runWorker<MemoryResult>(memoryJob('bare'), `memory bare ${int(config.memorySyncs)} syncs`);

  // 5. Resume time.
  const resume = runWorker<ResumeResult>(
    { kind: 'resume', syncs: config.resumeSyncs, concurrency: config.concurrency },
    `resume ${int(config.resumeSyncs)} active syncs (SQLite)`,
  );

  // 6. Scale-out on PostgreSQL, when there is one.
  const scaleout = (await postgresReachable())
    ? runWorker<ScaleoutResult>(
        {
          kind: 'scaleout',
          databaseUrl: DATABASE_URL,
          syncs: config.scaleoutSyncs,
          workerCounts: config.scaleoutWorkers,
          concurrency: config.scaleoutConcurrency,
        },
        `scale-out ${int(config.scaleoutSyncs)} syncs / no-op jobs through ${config.scaleoutWorkers.join(', ')} worker processes (PostgreSQL)`,
      )
    : null;

  const report = render(config, {
    startedAt,
    load: [loadBefore[0]!, os.loadavg()[0]!],
    totalSeconds: (Date.now() - t0) / 1000,
    overhead,
    eventsPerSec,
    cpuUsPerEvent,
    loaded,
    unloaded,
    scaling,
    wal,
    memEngine,
    memBare,
    resume,
    scaleout,
  });
  process.stdout.write(report);
  if (config.write) {
    const path = join(here, 'RESULTS.md');
    writeFileSync(path, report);
    process.stderr.write(`bench: wrote ${path}\n`);
  }
}

interface LatencyRun {
  syncs: number;
  concurrency: number;
  engine: ThroughputResult;
  bare: ThroughputResult;
}

interface Results {
  startedAt: Date;
  /** 1-minute load average at the start and the end of the run. */
  load: [number, number];
  totalSeconds: number;
  overhead: Record<Target, ThroughputResult[]>;
  eventsPerSec: (target: Target) => number;
  cpuUsPerEvent: (target: Target) => number;
  loaded: LatencyRun;
  unloaded: LatencyRun;
  scaling: { size: number; engine: ThroughputResult; bare: ThroughputResult }[];
  wal: WalPagesResult;
  memEngine: MemoryResult;
  memBare: MemoryResult;
  resume: ResumeResult;
  /** null: no PostgreSQL reachable. */
  scaleout: ScaleoutResult | null;
}

function render(config: Config, r: Results): string {
  const cpus = os.cpus();
  const command = config.quick ? `npm run bench -- --quick${config.write ? ' --write' : ''}` : 'npm run bench';
  const sizesNote = process.argv.includes('--sizes') ? ` --sizes ${config.sizes.join(',')}` : '';
  const lines: string[] = [];
  const out = (line = '') => lines.push(line);

  out('# banksync benchmarks');
  out();
  out(`- Command: \`${command}${sizesNote}\` (${config.quick ? 'quick' : 'full'} run, ${num(r.totalSeconds, 0)} s, ${r.startedAt.toISOString()})`);
  out(`- Machine: ${cpus[0]?.model ?? 'unknown CPU'} × ${cpus.length} logical CPUs, ${num(os.totalmem() / 1024 ** 3)} GiB RAM, ${os.type()} ${os.release()} (${os.arch()})`);
  out(
    `- Load: 1-min load average ${num(r.load[0], 2)} at start, ${num(r.load[1], 2)} at end (other work on this host competes for the ${cpus.length} CPUs; ` +
      'the CPU-time rows in section 1 are less sensitive to that than wall-clock rows)',
  );
  out(`- Runtime: Node ${process.version}, every scenario in its own \`node --expose-gc --import tsx\` child process, one at a time`);
  out(
    `- Workload per sync: trigger → RUNNING, 2 polls (RUNNING, then AWAIT_AUTH with one EMBEDDED challenge), the answer → COMPLETED: ` +
      `8 macrosteps. Zero-latency in-process provider double (bench/provider.ts); timers on a virtual clock advanced 1 ms per tick ` +
      `(pollBaseMs = pollMaxMs = 1); ${config.concurrency} syncs in flight per batch; ${int(config.warmup)} warm-up syncs per process (not measured).`,
  );
  out('- Every figure reads `value (baseline: value, ratio x)` with ratio = value / baseline. No figure is asserted anywhere.');
  out();

  // 1 -----------------------------------------------------------------------------------------------------------
  const bareEps = r.eventsPerSec('bare');
  const memEps = r.eventsPerSec('engine-memory');
  const sqlEps = r.eventsPerSec('engine-sqlite');
  const sqlSlowdown = bareEps / sqlEps;
  out('## 1. Engine overhead per event');
  out();
  out(
    `${int(config.overheadSyncs)} syncs per run, median of ${config.overheadRepeats} run(s) per variant. Baseline: the same machine as a bare ` +
      'XState actor (`createActor(synchronizationMachine.provide({...the same zero-latency actors...}))`, no inspection, no store), ' +
      'driven through the same events. SQLite: WAL, synchronous=NORMAL, file in a temp dir.',
  );
  out();
  out('| Figure | Result |');
  out('|---|---|');
  out(`| engine + MemoryStore, events/s | ${figure(`${int(memEps)} events/s`, 'bare actor', `${int(bareEps)} events/s`, ratio(memEps, bareEps))} |`);
  out(`| engine + SQLite, events/s | ${figure(`${int(sqlEps)} events/s`, 'bare actor', `${int(bareEps)} events/s`, ratio(sqlEps, bareEps))} |`);
  out(`| engine + MemoryStore, cost per event | ${figure(`${num(1e6 / memEps)} µs`, 'bare actor', `${num(1e6 / bareEps)} µs`, ratio(bareEps, memEps))} |`);
  out(`| engine + SQLite, cost per event | ${figure(`${num(1e6 / sqlEps)} µs`, 'bare actor', `${num(1e6 / bareEps)} µs`, ratio(bareEps, sqlEps))} |`);
  const bareCpu = r.cpuUsPerEvent('bare');
  const memCpu = r.cpuUsPerEvent('engine-memory');
  const sqlCpu = r.cpuUsPerEvent('engine-sqlite');
  out(`| engine + MemoryStore, CPU time per event | ${figure(`${num(memCpu)} µs`, 'bare actor', `${num(bareCpu)} µs`, ratio(memCpu, bareCpu))} |`);
  out(`| engine + SQLite, CPU time per event | ${figure(`${num(sqlCpu)} µs`, 'bare actor', `${num(bareCpu)} µs`, ratio(sqlCpu, bareCpu))} |`);
  out(`| engine + SQLite vs engine + MemoryStore, cost per event | ${figure(`${num(1e6 / sqlEps)} µs`, 'engine + MemoryStore', `${num(1e6 / memEps)} µs`, ratio(memEps, sqlEps))} |`);
  out();
  out(
    `Target "engine with SQLite persistence within 3x of the bare actor": **${sqlSlowdown <= 3 ? 'MET' : 'NOT MET'}** — ` +
      `engine + SQLite costs ${num(sqlSlowdown, 2)}x the bare actor per event in wall time and ${num(sqlCpu / bareCpu, 2)}x in CPU time ` +
      `(engine + MemoryStore: ${num(bareEps / memEps, 2)}x wall, ${num(memCpu / bareCpu, 2)}x CPU).`,
  );
  out();
  const loads = Object.values(r.overhead).flat().map((x) => x.loadAvg);
  out(
    `Host load (1-min average) during these runs: ${num(Math.min(...loads), 2)}–${num(Math.max(...loads), 2)}. ` +
    `Runs (events/s): bare ${r.overhead.bare.map((x) => int(x.eventsPerSec)).join(', ')}; engine + MemoryStore ${r.overhead['engine-memory']
      .map((x) => int(x.eventsPerSec))
      .join(', ')}; engine + SQLite ${r.overhead['engine-sqlite'].map((x) => int(x.eventsPerSec)).join(', ')}.`,
  );
  out();

  // 2 -----------------------------------------------------------------------------------------------------------
  const largest = r.scaling[r.scaling.length - 1]!;
  const e = largest.engine;
  const b = largest.bare;
  out(`## 2. Throughput (${int(largest.size)} connections, engine + SQLite)`);
  out();
  out(
    'One process, one SQLite file (WAL, temp dir), every sync through the full sequence; baseline: the same number of bare actors ' +
      'through the same event sequence (no inspection, no store). Throughput, RSS and bytes come from these runs. ' +
      'Event latency comes from separate runs with a latency probe attached to both sides (XState inspection + a commit hook): ' +
      'from the cause of an event (provider double returned, user answer submitted, timer fired) to the durable commit of the ' +
      'macrostep it caused; for the bare actor, to the end of that macrostep (it has nothing to commit).',
  );
  out();
  const lat = (run: LatencyRun, q: 'p50Us' | 'p99Us', label: string) =>
    `| event latency ${q.slice(0, 3)}, ${label} (${int(run.syncs)} syncs) | ${figure(
      `${num(run.engine.latency![q])} µs`,
      'bare actors',
      `${num(run.bare.latency![q])} µs`,
      ratio(run.engine.latency![q], run.bare.latency![q]),
    )} |`;
  out('| Figure | Result |');
  out('|---|---|');
  out(`| syncs/s | ${figure(`${int(e.syncsPerSec)} syncs/s`, 'bare actors', `${int(b.syncsPerSec)} syncs/s`, ratio(e.syncsPerSec, b.syncsPerSec))} |`);
  out(`| events/s | ${figure(`${int(e.eventsPerSec)} events/s`, 'bare actors', `${int(b.eventsPerSec)} events/s`, ratio(e.eventsPerSec, b.eventsPerSec))} |`);
  const cpuPerSync = (x: ThroughputResult) => (x.cpuMs * 1000) / x.syncs;
  out(`| CPU time per sync (all threads) | ${figure(`${int(cpuPerSync(e))} µs`, 'bare actors', `${int(cpuPerSync(b))} µs`, ratio(cpuPerSync(e), cpuPerSync(b)))} |`);
  out(lat(r.loaded, 'p50Us', `${int(r.loaded.concurrency)} syncs in flight`));
  out(lat(r.loaded, 'p99Us', `${int(r.loaded.concurrency)} syncs in flight`));
  out(lat(r.unloaded, 'p50Us', '1 sync in flight'));
  out(lat(r.unloaded, 'p99Us', '1 sync in flight'));
  out(`| peak RSS | ${figure(mib(e.peakRssBytes), 'bare actors', mib(b.peakRssBytes), ratio(e.peakRssBytes, b.peakRssBytes))} |`);
  const perSync = (label: string, value: number) =>
    `| ${label} | ${figure(bytes(value), 'final snapshot JSON of a bare actor', bytes(b.snapshotBytes), ratio(value, b.snapshotBytes))} |`;
  out(perSync('bytes persisted per sync (db + wal files at the end of the run)', e.fileBytesPerSync!));
  out(perSync('bytes persisted per sync (db file after a TRUNCATE checkpoint)', e.checkpointedBytesPerSync!));
  out(perSync('stored row payload per sync (sum of column sizes)', e.rowBytesPerSync!));
  if (e.writeBytesPerSync !== null) out(perSync('bytes written per sync (write syscalls, /proc/self/io wchar)', e.writeBytesPerSync));
  const four = r.scaleout?.runs.find((x) => x.workers === 4) ?? r.scaleout?.runs[r.scaleout.runs.length - 1];
  out(
    four
      ? `| scale-out syncs/s, ${four.workers} worker processes on PostgreSQL (section 6) | ${figure(`${num(four.syncsPerSec)} syncs/s`, 'graphile-worker no-op jobs', `${num(four.jobsPerSec)} jobs/s`, ratio(four.syncsPerSec, four.jobsPerSec))} |`
      : '| scale-out syncs/s, 4 worker processes on PostgreSQL (section 6) | n/a (no PostgreSQL) |',
  );
  out();
  out(
    `Wall time: engine ${num(e.elapsedMs / 1000)} s, bare ${num(b.elapsedMs / 1000)} s. ` +
      `Latency samples: loaded engine ${int(r.loaded.engine.latency!.samples)} / bare ${int(r.loaded.bare.latency!.samples)}, ` +
      `1 in flight engine ${int(r.unloaded.engine.latency!.samples)} / bare ${int(r.unloaded.bare.latency!.samples)}. ` +
      `With ${int(r.loaded.concurrency)} syncs in flight an event also waits behind the other syncs' work, so those latencies mostly ` +
      "reflect throughput (Little's law); the 1-in-flight rows show the per-event path itself." +
      (e.writeSyscallsPerSync !== null ? ` Write syscalls per sync: engine ${num(e.writeSyscallsPerSync)}, bare ${num(b.writeSyscallsPerSync ?? NaN)}.` : ''),
  );
  out();

  // 2a ----------------------------------------------------------------------------------------------------------
  const w = r.wal;
  out(`## 2a. Where the bytes written go (${int(w.syncs)} syncs, engine + SQLite)`);
  out();
  out(
    'The same run as section 2 with a second connection holding a read transaction open, so no checkpoint can copy a page back ' +
      'and every page the run writes stays in the WAL as one frame. Each frame names its page and `dbstat` names the table or index ' +
      `that owns it. A frame is ${int(w.pageSize + 24)} B; checkpoints then copy each page written since the last one into the database file once more.`,
  );
  out();
  out('| Figure | Result |');
  out('|---|---|');
  const all = `${num(w.framesPerSync, 2)} frames/sync`;
  for (const o of w.byObject.slice(0, 10)) {
    out(`| WAL frames per sync, ${o.name} | ${figure(`${num(o.framesPerSync, 2)} frames/sync`, 'all tables and indexes', all, ratio(o.framesPerSync, w.framesPerSync))} |`);
  }
  const rest = w.byObject.slice(10).reduce((sum, o) => sum + o.framesPerSync, 0);
  if (rest > 0) out(`| WAL frames per sync, ${w.byObject.length - 10} other tables and indexes | ${figure(`${num(rest, 2)} frames/sync`, 'all tables and indexes', all, ratio(rest, w.framesPerSync))} |`);
  const walBytes = w.framesPerSync * (w.pageSize + 24);
  out(`| WAL bytes per sync, all tables and indexes | ${figure(bytes(walBytes), 'column bytes the run stored per sync: sync, connection, events, timers, effects, transitions', bytes(w.storedBytesPerSync), ratio(walBytes, w.storedBytesPerSync))} |`);
  out();

  // 3 -----------------------------------------------------------------------------------------------------------
  const me = r.memEngine;
  const mb = r.memBare;
  out(`## 3. Memory (${int(me.syncs)} syncs waiting in AWAIT_AUTH)`);
  out();
  out(
    'Heap delta (process.memoryUsage().heapUsed after repeated global.gc()) against the heap after warm-up. Active: K syncs hosted ' +
      'and waiting for the user\'s answer. Idle: after `engine.stop()` (every sync persisted in SQLite, none hosted) or after the ' +
      'bare actors were stopped and dropped. The provider double\'s own per-connection state is cleared before measuring.',
  );
  out();
  out('| Figure | Result |');
  out('|---|---|');
  out(`| heap per active sync (AWAIT_AUTH, resident) | ${figure(bytes(me.activeBytesPerSync), 'bare actor', bytes(mb.activeBytesPerSync), ratio(me.activeBytesPerSync, mb.activeBytesPerSync))} |`);
  out(`| RSS per active sync (noisy: RSS includes SQLite page cache and allocator slack) | ${figure(bytes(me.activeRssBytesPerSync), 'bare actor', bytes(mb.activeRssBytesPerSync), ratio(me.activeRssBytesPerSync, mb.activeRssBytesPerSync))} |`);
  out(`| heap per idle persisted sync (after engine.stop()) | ${figure(bytes(me.idleBytesPerSync), 'same sync while active', bytes(me.activeBytesPerSync), ratio(me.idleBytesPerSync, me.activeBytesPerSync))} |`);
  out(`| bare: heap per stopped and dropped actor | ${figure(bytes(mb.idleBytesPerSync), 'same actor while active', bytes(mb.activeBytesPerSync), ratio(mb.idleBytesPerSync, mb.activeBytesPerSync))} |`);
  out();
  out(
    `Heap (MiB) before / active / idle: engine ${num(me.heapBeforeBytes / 2 ** 20)} / ${num(me.heapActiveBytes / 2 ** 20)} / ${num(me.heapIdleBytes / 2 ** 20)}; ` +
      `bare ${num(mb.heapBeforeBytes / 2 ** 20)} / ${num(mb.heapActiveBytes / 2 ** 20)} / ${num(mb.heapIdleBytes / 2 ** 20)}.`,
  );
  out();

  // 4 -----------------------------------------------------------------------------------------------------------
  const smallest = r.scaling[0]!;
  out('## 4. Scaling curve (cost per sync)');
  out();
  out(
    `Section 2's measurement at each size (${r.scaling.map((s) => sizeLabel(s.size)).join(', ')} connections). Each cell: cost per sync ` +
      `(the smallest size, ${sizeLabel(smallest.size)}, as baseline, ratio); flat means ratio ≈ 1. Wall time is what a user sees but ` +
      'also absorbs other load on the host (last column); CPU time (user + system, all threads of the process) is the steadier measure. ' +
      'The smallest size amortises JIT tiering and GC start-up over the fewest syncs, so ratios below 1 at larger sizes mean "no growth", not a speed-up.',
  );
  out();
  out('| Connections | engine + SQLite, wall | bare actors, wall | engine + SQLite, CPU | bare actors, CPU | engine / bare, wall | engine + SQLite, bytes written | host load (1 min) |');
  out('|---|---|---|---|---|---|---|---|');
  const small = sizeLabel(smallest.size);
  const cpu = (x: ThroughputResult) => (x.cpuMs * 1000) / x.syncs;
  for (const s of r.scaling) {
    const cells = [
      int(s.size),
      figure(`${int(s.engine.usPerSync)} µs/sync`, small, `${int(smallest.engine.usPerSync)} µs/sync`, ratio(s.engine.usPerSync, smallest.engine.usPerSync)),
      figure(`${int(s.bare.usPerSync)} µs/sync`, small, `${int(smallest.bare.usPerSync)} µs/sync`, ratio(s.bare.usPerSync, smallest.bare.usPerSync)),
      figure(`${int(cpu(s.engine))} µs/sync`, small, `${int(cpu(smallest.engine))} µs/sync`, ratio(cpu(s.engine), cpu(smallest.engine))),
      figure(`${int(cpu(s.bare))} µs/sync`, small, `${int(cpu(smallest.bare))} µs/sync`, ratio(cpu(s.bare), cpu(smallest.bare))),
      figure(`${int(s.engine.usPerSync)} µs/sync`, 'bare', `${int(s.bare.usPerSync)} µs/sync`, ratio(s.engine.usPerSync, s.bare.usPerSync)),
      s.engine.writeBytesPerSync === null || smallest.engine.writeBytesPerSync === null
        ? 'n/a (no /proc/self/io)'
        : figure(bytes(s.engine.writeBytesPerSync), small, bytes(smallest.engine.writeBytesPerSync), ratio(s.engine.writeBytesPerSync, smallest.engine.writeBytesPerSync)),
      `engine ${num(s.engine.loadAvg, 2)}, bare ${num(s.bare.loadAvg, 2)}`,
    ];
    out(`| ${cells.join(' | ')} |`);
  }
  out();

  // 5 -----------------------------------------------------------------------------------------------------------
  const rs = r.resume;
  out(`## 5. Resume time (${int(rs.syncs)} persisted active syncs, SQLite)`);
  out();
  out(
    `\`engine.start()\` of a new engine on a SQLite file holding ${int(rs.syncs)} active syncs, each waiting in AWAIT_AUTH (${int(Math.min(rs.syncs, 50))} ` +
      'driven there by the engine, the rest copies of their rows under new ids), until every one is hosted again with its timers re-armed. ' +
      'Baselines on the same file in the same process, each with its own connection: one plain SELECT of the same rows, and bare XState ' +
      'actors restored from the same snapshots (`createActor(machine, { snapshot }).start()`, no store, no inspection).',
  );
  out();
  out('| Figure | Result |');
  out('|---|---|');
  out(`| engine.start(), wall | ${figure(`${int(rs.startMs)} ms`, 'bare actors restored from the same snapshots', `${int(rs.bareRestoreMs)} ms`, ratio(rs.startMs, rs.bareRestoreMs))} |`);
  out(`| engine.start(), CPU | ${figure(`${int(rs.startCpuMs)} ms`, 'bare actors restored from the same snapshots', `${int(rs.bareRestoreCpuMs)} ms`, ratio(rs.startCpuMs, rs.bareRestoreCpuMs))} |`);
  out(`| engine.start() vs reading the rows | ${figure(`${int(rs.startMs)} ms`, 'one plain SELECT of the same rows', `${num(rs.selectMs)} ms`, ratio(rs.startMs, rs.selectMs))} |`);
  out(`| engine.start(), per sync | ${figure(`${num((rs.startMs * 1000) / rs.syncs)} µs`, 'bare actor', `${num((rs.bareRestoreMs * 1000) / rs.syncs)} µs`, ratio(rs.startMs, rs.bareRestoreMs))} |`);
  out();
  out(`Resumed: ${int(rs.resumed)}. Setup (not measured): ${num(rs.setupMs / 1000)} s. Host load (1 min) at the start of engine.start(): ${num(rs.loadAvg, 2)}.`);
  out();

  // 6 -----------------------------------------------------------------------------------------------------------
  out('## 6. Scale-out (worker processes on PostgreSQL)');
  out();
  const so = r.scaleout;
  if (!so) {
    out('No PostgreSQL reachable at DATABASE_URL (or the local default): not measured.');
    out();
    out('| Figure | Result |');
    out('|---|---|');
    for (const workers of config.scaleoutWorkers) out(`| syncs/s, ${workers} worker process${workers === 1 ? '' : 'es'} | n/a (no PostgreSQL) |`);
    out();
    return `${lines.join('\n')}\n`;
  }
  out(
    `${int(so.syncs)} syncs through 1, 2 and 4 banksync worker processes (\`startWorker\`, graphile-worker concurrency ${so.concurrency} each; ` +
      'finX adapter over HTTP to the sandbox in the bench process, scenario `success`: trigger, three polls 10–20 ms apart; ' +
      'timers due within `inlineTimerMaxMs` (1 s by default) run inside the job that holds the sync), timed from the first request ' +
      'to the last sync ended. Baseline, same run and database (PostgreSQL ' +
      `${so.postgres}), fresh schemas: graphile-worker alone draining ${int(so.syncs)} no-op jobs with as many processes and the same ` +
      'concurrency, timed from the first addJob to the last job done. Worker processes are started before the clock starts; ' +
      'one small run of each side (20 syncs / jobs, one process) warms up the bench process first and is not counted. ' +
      'All processes, the sandbox and PostgreSQL share this host\'s CPUs.',
  );
  out();
  out('| Figure | Result |');
  out('|---|---|');
  for (const run of so.runs) {
    const label = `${run.workers} worker process${run.workers === 1 ? '' : 'es'}`;
    out(`| syncs/s, ${label} | ${figure(`${num(run.syncsPerSec)} syncs/s`, 'graphile-worker no-op jobs', `${num(run.jobsPerSec)} jobs/s`, ratio(run.syncsPerSec, run.jobsPerSec))} |`);
  }
  for (const run of so.runs) {
    out(
      `| PostgreSQL transactions per sync, ${run.workers} worker process${run.workers === 1 ? '' : 'es'} (whole run, setup included) | ` +
        `${figure(num(run.xactsPerSync), 'per no-op job', num(run.xactsPerJob), ratio(run.xactsPerSync, run.xactsPerJob))} |`,
    );
  }
  const first = so.runs[0]!;
  for (const run of so.runs.slice(1)) {
    out(`| scaling, ${run.workers} vs ${first.workers} worker process${first.workers === 1 ? '' : 'es'} (syncs/s) | ${figure(`${num(run.syncsPerSec)} syncs/s`, `${first.workers} worker process${first.workers === 1 ? '' : 'es'}`, `${num(first.syncsPerSec)} syncs/s`, ratio(run.syncsPerSec, first.syncsPerSec))} |`);
  }
  out();
  if (four) {
    const met = four.syncsPerSec / four.jobsPerSec >= 0.5;
    out(
      `Target "scale-out syncs/s at 4 workers >= 0.5x graphile-worker no-op jobs/s": **${met ? 'MET' : 'NOT MET'}** — ` +
        `${num(four.syncsPerSec / four.jobsPerSec, 2)}x. A sync here is the API's createSync and connection writes, then a job that locks, ` +
        'loads and restores the sync, commits every step and calls the provider over HTTP (its short poll timers inline); a no-op job is one row claimed and deleted.',
    );
    out();
  }
  out(
    `Wall time per run (s), syncs / no-op jobs, of which enqueueing (the API's requestSync calls / addJob calls, 100 in flight): ` +
      `${so.runs.map((x) => `${x.workers}: ${num(x.syncsElapsedMs / 1000)} (${num(x.syncsEnqueueMs / 1000)}) / ${num(x.noopElapsedMs / 1000)} (${num(x.noopEnqueueMs / 1000)})`).join('; ')}. ` +
      `Host load (1 min) at the start of each run: ${so.runs.map((x) => num(x.loadAvg, 2)).join(', ')}.`,
  );
  out();
  return `${lines.join('\n')}\n`;
}

await main();
