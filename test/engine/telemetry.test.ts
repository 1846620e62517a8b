/**
 * Spans, metrics and the transition log of real syncs against the sandbox over HTTP (engine + SQLite in memory),
 * read back through OpenTelemetry's in-memory exporters.
 */
import { Writable } from 'node:stream';
import { trace } from '@opentelemetry/api';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_POLICY } from '../../src/cli/demo/run.js';
import { createEngine, type EngineOptions, type SyncEngine } from '../../src/engine/engine.js';
import { createLogger } from '../../src/engine/logger.js';
import type { SyncView } from '../../src/engine/view.js';
import { createFinxAdapter, type FinxAdapter } from '../../src/providers/finx/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/server.js';
import { SqliteStore } from '../../src/stores/sqlite.js';

const TOKEN = 'otel-secret-token-93a1';
const PIN = 'otel-secret-pin-5521';

interface Rig {
  engine: SyncEngine;
  store: SqliteStore;
  spans: InMemorySpanExporter;
  metrics: () => Promise<Map<string, DataPoint<unknown>[]>>;
  run(scenario: string, answers?: string[]): Promise<SyncView>;
  close(): Promise<void>;
}

let sandbox: Sandbox;
let finx: FinxAdapter;
beforeAll(async () => {
  sandbox = await startSandbox();
  finx = createFinxAdapter({ baseUrl: `${sandbox.url}/finx`, token: TOKEN });
});
afterAll(() => sandbox?.close());

function rig(extra: Partial<EngineOptions> = {}): Rig {
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const store = SqliteStore.open(':memory:');
  const engine = createEngine({ store, providers: { finx }, policy: DEMO_POLICY, telemetry: { tracerProvider, meterProvider }, ...extra });
  const answers = new Map<string, string[]>();
  engine.events.on('sync.awaitingUser', (view) => {
    const answer = answers.get(view.syncId)?.shift();
    if (answer !== undefined && view.challenge?.kind === 'EMBEDDED') {
      void engine.submitChallengeResponse(view.syncId, { challengeId: view.challenge.id, response: answer }).catch(() => {});
    }
  });
  return {
    engine,
    store,
    spans,
    async metrics() {
      exporter.reset();
      await reader.forceFlush();
      const byName = new Map<string, DataPoint<unknown>[]>();
      for (const resource of exporter.getMetrics()) {
        for (const scope of resource.scopeMetrics) for (const metric of scope.metrics) byName.set(metric.descriptor.name, metric.dataPoints as DataPoint<unknown>[]);
      }
      return byName;
    },
    async run(scenario, list = []) {
      const access = await finx.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: PIN }, scenario });
      const view = await engine.requestSync({ connectionId: access.id, provider: 'finx' });
      answers.set(view.syncId, [...list]);
      const current = await engine.get(view.syncId);
      if (current.state === 'AWAIT_AUTH.AwaitingUser' && current.challenge?.kind === 'EMBEDDED' && list.length > 0) {
        await engine.submitChallengeResponse(view.syncId, { challengeId: current.challenge.id, response: answers.get(view.syncId)!.shift()! });
      }
      return engine.waitForTerminal(view.syncId);
    },
    async close() {
      await engine.stop();
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
      store.close();
    },
  };
}

const sum = (points: DataPoint<unknown>[] | undefined, match: Record<string, string>) =>
  (points ?? []).filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v)).reduce((n, p) => n + (typeof p.value === 'number' ? p.value : (p.value as Histogram).count), 0);

const attr = (span: ReadableSpan, key: string) => span.attributes[key];

describe('OpenTelemetry spans and metrics of sandbox syncs', () => {
  let current: Rig | undefined;
  afterEach(async () => {
    await current?.close();
    current = undefined;
  });

  it('a completed sync: one segment span with the effects and their HTTP requests nested under it', async () => {
    current = rig();
    const final = await current.run('one-challenge', ['123456']);
    expect(final.status).toBe('COMPLETED');
    const finished = current.spans.getFinishedSpans();
    const segments = finished.filter((s) => s.name === 'banksync.sync');
    expect(segments).toHaveLength(1);
    const segment = segments[0]!;
    expect(attr(segment, 'banksync.sync.id')).toBe(final.syncId);
    expect(attr(segment, 'banksync.connection.id')).toBe(final.connectionId);
    expect(attr(segment, 'banksync.provider')).toBe('finx');
    expect(attr(segment, 'banksync.outcome')).toBe('COMPLETED');
    const history = await current.engine.history(final.syncId);
    expect(segment.events.map((e) => e.attributes?.['banksync.to'])).toEqual(history.map((t) => t.to));

    const effects = finished.filter((s) => ['banksync.trigger', 'banksync.poll', 'banksync.answer'].includes(s.name));
    expect(new Set(effects.map((s) => s.name))).toEqual(new Set(['banksync.trigger', 'banksync.poll', 'banksync.answer']));
    for (const effect of effects) {
      expect(effect.parentSpanContext?.spanId).toBe(segment.spanContext().spanId);
      expect(effect.spanContext().traceId).toBe(segment.spanContext().traceId);
    }
    const http = finished.filter((s) => s.attributes['http.request.method'] !== undefined);
    expect(http.length).toBeGreaterThanOrEqual(effects.length);
    const effectIds = new Set(effects.map((s) => s.spanContext().spanId));
    for (const call of http) {
      expect(effectIds.has(call.parentSpanContext!.spanId)).toBe(true);
      expect(call.attributes['http.response.status_code']).toBeTypeOf('number');
      expect(call.attributes['server.address']).toBe('127.0.0.1');
    }

    const metrics = await current.metrics();
    expect(sum(metrics.get('banksync_syncs_started'), { provider: 'finx' })).toBe(1);
    expect(sum(metrics.get('banksync_syncs_finished'), { provider: 'finx', outcome: 'COMPLETED', error_code: 'none' })).toBe(1);
    expect(sum(metrics.get('banksync_sync_duration_seconds'), { provider: 'finx', outcome: 'COMPLETED' })).toBe(1);
    expect(sum(metrics.get('banksync_provider_call_duration_seconds'), { provider: 'finx' })).toBe(http.length);
    expect(sum(metrics.get('banksync_active_syncs'), {})).toBe(0);
  });

  it('counts failures by error code, rate limits and retries, and breaker stops', async () => {
    current = rig();
    expect((await current.run('failed')).error?.code).toBe('BANK_REJECTED');
    expect((await current.run('failed')).error?.code).toBe('BANK_REJECTED');
    expect((await current.run('invalid-credentials')).error?.code).toBe('INVALID_CREDENTIALS');
    expect((await current.run('rate-limited')).status).toBe('COMPLETED');
    const metrics = await current.metrics();
    const finished = metrics.get('banksync_syncs_finished');
    expect(sum(finished, { outcome: 'FAILED', error_code: 'BANK_REJECTED' })).toBe(2);
    expect(sum(finished, { outcome: 'FAILED', error_code: 'INVALID_CREDENTIALS' })).toBe(1);
    expect(sum(finished, { outcome: 'COMPLETED' })).toBe(1);
    expect(sum(metrics.get('banksync_syncs_started'), { provider: 'finx' })).toBe(4);
    expect(sum(metrics.get('banksync_provider_rate_limited'), { provider: 'finx' })).toBe(1);
    expect(sum(metrics.get('banksync_provider_retries'), { provider: 'finx', code: 'RATE_LIMITED' })).toBe(1);
    expect(sum(metrics.get('banksync_provider_call_duration_seconds'), { provider: 'finx', status: '429' })).toBe(1);
    // Invalid credentials need the user: automatic syncs of that connection stop.
    expect(sum(metrics.get('banksync_breaker_stops'), { provider: 'finx', state: 'NEEDS_USER' })).toBe(1);
    expect(sum(metrics.get('banksync_breaker_stops'), {})).toBe(1);
    const failedSegments = current.spans.getFinishedSpans().filter((s) => s.name === 'banksync.sync' && s.attributes['banksync.outcome'] === 'FAILED');
    expect(failedSegments).toHaveLength(3);
    for (const span of failedSegments) expect(span.status.code).toBe(2); // SpanStatusCode.ERROR
  });

  it('active syncs by state come from the store while a sync waits for the user', async () => {
    current = rig();
    const access = await finx.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: PIN }, scenario: 'one-challenge' });
    const view = await current.engine.requestSync({ connectionId: access.id, provider: 'finx' });
    await expect.poll(async () => (await current!.engine.get(view.syncId)).state, { timeout: 20_000 }).toBe('AWAIT_AUTH.AwaitingUser');
    const metrics = await current.metrics();
    expect(sum(metrics.get('banksync_active_syncs'), { state: 'AWAIT_AUTH' })).toBe(1);
    expect(sum(metrics.get('banksync_active_syncs'), { state: 'RUNNING' })).toBe(0);
    await current.engine.cancel(view.syncId);
  });

  it('never puts credentials, tokens or TANs into spans or metric labels', async () => {
    current = rig();
    await current.run('wrong-tan', ['000000', '123456']);
    // Everything a span or metric says, except timings (whose digits could match a TAN by chance).
    const spans = current.spans.getFinishedSpans().map((s) => ({ name: s.name, attributes: s.attributes, events: s.events.map((e) => [e.name, e.attributes]), status: s.status }));
    const labels = [...(await current.metrics()).values()].flat().map((p) => p.attributes);
    expect(spans.length).toBeGreaterThan(0);
    const text = JSON.stringify(spans) + JSON.stringify(labels);
    for (const secret of [TOKEN, PIN, '000000', '123456']) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/authorization|bearer/i);
  });

  it('a sync resumed by another engine after a restart is a second segment span with the same sync id', async () => {
    current = rig();
    const first = current;
    const access = await finx.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: PIN }, scenario: 'one-challenge' });
    const view = await first.engine.requestSync({ connectionId: access.id, provider: 'finx' });
    await expect.poll(async () => (await first.engine.get(view.syncId)).state, { timeout: 20_000 }).toBe('AWAIT_AUTH.AwaitingUser');
    await first.engine.stop();
    const [before] = first.spans.getFinishedSpans().filter((s) => s.name === 'banksync.sync');
    expect(before?.attributes).toMatchObject({ 'banksync.sync.id': view.syncId, 'banksync.sync.resumed': false });
    expect(before?.attributes['banksync.outcome']).toBeUndefined();

    const second = createEngine({ store: first.store, providers: { finx }, policy: DEMO_POLICY, telemetry: { tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(first.spans)] }) } });
    try {
      await second.start();
      const challenge = (await second.get(view.syncId)).challenge!;
      await second.submitChallengeResponse(view.syncId, { challengeId: challenge.id, response: '123456' });
      expect((await second.waitForTerminal(view.syncId)).status).toBe('COMPLETED');
    } finally {
      await second.stop();
    }
    const segments = first.spans.getFinishedSpans().filter((s) => s.name === 'banksync.sync');
    expect(segments).toHaveLength(2);
    expect(segments[1]!.attributes).toMatchObject({ 'banksync.sync.id': view.syncId, 'banksync.sync.resumed': true, 'banksync.outcome': 'COMPLETED' });
    // Together the segments' events are the sync's whole history, each transition once.
    const history = await first.store.listTransitions(view.syncId);
    expect(segments.flatMap((s) => s.events.map((e) => e.attributes?.['banksync.to']))).toEqual(history.map((t) => t.to));
  });

  it('a global tracer provider registered after the engine was created still gets the HTTP requests under the effects', async () => {
    // No SDK when the engine is created (metrics are the API's no-ops): effects skip the call scope until one is there.
    current = rig({ telemetry: {} });
    const spans = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
    expect(trace.setGlobalTracerProvider(provider)).toBe(true);
    try {
      expect((await current.run('success')).status).toBe('COMPLETED');
      const finished = spans.getFinishedSpans();
      const effects = new Set(finished.filter((s) => s.name.startsWith('banksync.') && s.name !== 'banksync.sync').map((s) => s.spanContext().spanId));
      const http = finished.filter((s) => s.attributes['http.request.method'] !== undefined);
      expect(effects.size).toBeGreaterThan(0);
      expect(http.length).toBeGreaterThanOrEqual(effects.size);
      for (const call of http) expect(effects.has(call.parentSpanContext!.spanId)).toBe(true);
    } finally {
      trace.disable();
      await provider.shutdown();
    }
  });

  it('metrics without tracing still time every provider request', async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const meterProvider = new MeterProvider({ readers: [reader] });
    current = rig({ telemetry: { meterProvider } });
    try {
      expect((await current.run('success')).status).toBe('COMPLETED');
      await reader.forceFlush();
      const points = exporter
        .getMetrics()
        .flatMap((r) => r.scopeMetrics.flatMap((m) => m.metrics))
        .filter((m) => m.descriptor.name === 'banksync_provider_call_duration_seconds')
        .flatMap((m) => m.dataPoints as DataPoint<Histogram>[]);
      expect(points.reduce((n, p) => n + p.value.count, 0)).toBeGreaterThan(0);
      expect(current.spans.getFinishedSpans()).toHaveLength(0);
    } finally {
      await meterProvider.shutdown();
    }
  });

  it('telemetry: false records nothing', async () => {
    current = rig({ telemetry: false });
    expect((await current.run('success')).status).toBe('COMPLETED');
    expect(current.spans.getFinishedSpans()).toHaveLength(0);
    expect((await current.metrics()).size).toBe(0);
  });
});

describe('structured transition log', () => {
  it('writes one info line per committed transition with sync, connection, tenant, provider, from, to, event', async () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const store = SqliteStore.open(':memory:');
    const engine = createEngine({ store, providers: { finx }, policy: DEMO_POLICY, logger: createLogger({ level: 'info', destination }), telemetry: false });
    try {
      const access = await finx.createAccess({ providerId: 'bank', accessMethodId: 'FINTS', credentials: { pin: PIN }, scenario: 'one-challenge' });
      const view = await engine.requestSync({ tenantId: 'tenant-7', connectionId: access.id, provider: 'finx' });
      await expect.poll(async () => (await engine.get(view.syncId, { tenantId: 'tenant-7' })).state, { timeout: 20_000 }).toBe('AWAIT_AUTH.AwaitingUser');
      const challenge = (await engine.get(view.syncId, { tenantId: 'tenant-7' })).challenge!;
      await engine.submitChallengeResponse(view.syncId, { challengeId: challenge.id, response: '123456' }, { tenantId: 'tenant-7' });
      const final = await engine.waitForTerminal(view.syncId, { tenantId: 'tenant-7' });
      expect(final.status).toBe('COMPLETED');
      const history = await engine.history(view.syncId, { tenantId: 'tenant-7' });
      // The last line may follow the terminal event by a tick.
      await expect.poll(() => lines.filter((l) => l.msg === 'sync transition').length).toBe(history.length);
      const logged = lines.filter((l) => l.msg === 'sync transition');
      expect(logged.map((l) => ({ from: l.from, to: l.to, event: l.event }))).toEqual(history.map((t) => ({ from: t.from, to: t.to, event: t.event })));
      for (const line of logged) {
        expect(line).toMatchObject({ level: 30, syncId: view.syncId, connectionId: access.id, tenantId: 'tenant-7', provider: 'finx' });
      }
      const text = JSON.stringify(lines);
      for (const secret of [TOKEN, PIN, '123456']) expect(text).not.toContain(secret);
    } finally {
      await engine.stop();
      store.close();
    }
  });
});
