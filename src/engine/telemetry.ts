/**
 * Observability of the engine: OpenTelemetry spans and metrics, and one structured log line per committed
 * transition. The only module that touches `@opentelemetry/api` (an optional peer): it is loaded once, when an
 * engine is created; without it every hook here is a no-op (the transition log still works).
 *
 * Spans. A sync can live for days and cross processes (scale-out workers, restarts), so there is no single
 * span per sync: each *hosting segment* (from the moment a process hosts the sync's actor until it lets go of
 * it: the whole sync in one resident engine, one job activation on a worker) is one `banksync.sync` span.
 * Segments of one sync share `banksync.sync.id`; query by it to see the whole sync. Every committed transition
 * is an event on its segment; every provider effect (trigger, poll, answer) is a child span, and every HTTP
 * request of that effect a grandchild with HTTP attributes. Attributes carry ids, states, codes and
 * statuses only: never credentials, tokens, TANs, URLs with query strings or bodies.
 *
 * Metrics (Prometheus names; counters get `_total`):
 *   banksync_syncs_started_total{provider}
 *   banksync_syncs_finished_total{provider,outcome,error_code}
 *   banksync_sync_duration_seconds{provider,outcome}                  (histogram, request to end)
 *   banksync_active_syncs{state}                                      (gauge, from the store: database-wide)
 *   banksync_provider_call_duration_seconds{provider,operation,status} (histogram, per HTTP request)
 *   banksync_provider_retries_total{provider,kind,code}               (retryable effect failures: the machine retries)
 *   banksync_provider_rate_limited_total{provider,operation}          (HTTP 429 answers)
 *   banksync_breaker_stops_total{provider,state,reason}               (a connection stopped autosync)
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';
import type { Logger } from './logger.js';

/** What an engine accepts to report to (OpenTelemetry SDK objects; structural so the API stays optional). */
export interface TelemetryOptions {
  /** Default: the globally registered TracerProvider (a no-op unless an OpenTelemetry SDK registered one). */
  tracerProvider?: { getTracer(name: string, version?: string): unknown };
  /** Default: the globally registered MeterProvider. */
  meterProvider?: { getMeter(name: string, version?: string): unknown };
}

type Api = typeof OtelApi;

let loaded: Api | null | undefined;
/** `@opentelemetry/api`, loaded once; null when it is not installed. Its globals are shared across copies. */
function otel(): Api | null {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)('@opentelemetry/api') as Api;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

const SCOPE = 'banksync';
const ACTIVE_STATES = ['QUEUED', 'RUNNING', 'AWAIT_AUTH'] as const;
const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SYNC_SECONDS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400];

interface Instruments {
  api: Api;
  tracer: OtelApi.Tracer;
  tracerProvider: OtelApi.TracerProvider;
  /** The meter is the API's no-op (no MeterProvider given or registered when the engine was created). */
  metricsOff: boolean;
  started: OtelApi.Counter;
  finished: OtelApi.Counter;
  duration: OtelApi.Histogram;
  callDuration: OtelApi.Histogram;
  retries: OtelApi.Counter;
  rateLimited: OtelApi.Counter;
  breakerStops: OtelApi.Counter;
}

/** The effect in progress: its span parents the HTTP requests the adapter makes for it. */
interface CallScope {
  instruments: Instruments;
  parent: OtelApi.Span;
  provider: string;
}
const callScope = new AsyncLocalStorage<CallScope>();

export interface SyncIdentity {
  syncId: string;
  connectionId: string;
  tenantId: string;
  provider: string;
  createdAt: number;
}

export interface CommittedTransition {
  from: string | null;
  to: string;
  event: string;
  at: number;
}

export interface SyncEnd {
  status: 'COMPLETED' | 'FAILED';
  errorCode: string | null;
}

interface Segment {
  span: OtelApi.Span;
  /** The actor finished: the span ends once that end is committed (or its commit failed). */
  endPending: boolean;
}

/** The engine's narrow hook for logs, spans and metrics; see the module comment. */
export class SyncObserver {
  private readonly instruments: Instruments | null;
  private readonly segments = new Map<string, Segment>();

  constructor(
    private readonly logger: Logger,
    options: TelemetryOptions | false | undefined,
    activeByStatus: () => Promise<Record<string, number>>,
  ) {
    const api = options === false ? null : otel();
    this.instruments = api ? createInstruments(api, options || {}, activeByStatus) : null;
  }

  /** This process now hosts the sync's actor: a segment span starts. */
  hosted(sync: SyncIdentity, resumed: boolean): void {
    const instruments = this.instruments;
    if (!instruments) return;
    this.segments.get(sync.syncId)?.span.end();
    if (quiet(instruments)) {
      this.segments.delete(sync.syncId);
      return;
    }
    const span = instruments.tracer.startSpan('banksync.sync', {
      kind: instruments.api.SpanKind.INTERNAL,
      attributes: { ...identity(sync), 'banksync.sync.resumed': resumed },
    });
    this.segments.set(sync.syncId, { span, endPending: false });
  }

  /** The process let go of the actor. A finished sync's span waits for its final commit. */
  released(syncId: string, finished: boolean): void {
    const segment = this.segments.get(syncId);
    if (!segment) return;
    if (finished) {
      segment.endPending = true;
      return;
    }
    segment.span.end();
    this.segments.delete(syncId);
  }

  /** A transition's commit failed: the segment ends with an error. */
  commitFailed(syncId: string, code: string): void {
    const segment = this.segments.get(syncId);
    if (!segment || !this.instruments) return;
    segment.span.setStatus({ code: this.instruments.api.SpanStatusCode.ERROR, message: code });
    if (segment.endPending) {
      segment.span.end();
      this.segments.delete(syncId);
    }
  }

  /** Transitions made durable: one log line each, span events, started/finished counters. */
  committed(sync: SyncIdentity, transitions: readonly CommittedTransition[], end: SyncEnd | null, now: number): void {
    for (const t of transitions) {
      this.logger.info(
        { syncId: sync.syncId, connectionId: sync.connectionId, tenantId: sync.tenantId, provider: sync.provider, from: t.from, to: t.to, event: t.event },
        'sync transition',
      );
    }
    const instruments = this.instruments;
    if (!instruments) return;
    const segment = this.segments.get(sync.syncId);
    if (!segment && quiet(instruments)) return;
    for (const t of transitions) {
      segment?.span.addEvent('banksync.transition', { 'banksync.from': t.from ?? '', 'banksync.to': t.to, 'banksync.event': t.event }, t.at);
      if (t.from === null) instruments.started.add(1, { provider: sync.provider });
    }
    if (!end) return;
    const errorCode = end.errorCode ?? 'none';
    instruments.finished.add(1, { provider: sync.provider, outcome: end.status, error_code: errorCode });
    instruments.duration.record(Math.max(0, now - sync.createdAt) / 1000, { provider: sync.provider, outcome: end.status });
    if (segment) {
      segment.span.setAttributes({ 'banksync.outcome': end.status, 'banksync.error_code': errorCode });
      if (end.status === 'FAILED') segment.span.setStatus({ code: instruments.api.SpanStatusCode.ERROR, message: errorCode });
      if (segment.endPending) {
        segment.span.end();
        this.segments.delete(sync.syncId);
      }
    }
  }

  /** Runs one provider effect as a child span of the sync's segment; its HTTP requests nest under it. */
  async effect<T>(sync: SyncIdentity, kind: string, run: () => Promise<T>): Promise<T> {
    const instruments = this.instruments;
    if (!instruments) return run();
    const parent = this.segments.get(sync.syncId)?.span;
    if (!parent && quiet(instruments)) return run();
    const { api } = instruments;
    const context = parent ? api.trace.setSpan(api.ROOT_CONTEXT, parent) : api.ROOT_CONTEXT;
    const span = instruments.tracer.startSpan(`banksync.${kind}`, { kind: api.SpanKind.INTERNAL, attributes: { ...identity(sync), 'banksync.effect': kind } }, context);
    try {
      // The call scope only feeds no-op instruments when no SDK is there: skip it. Entering an AsyncLocalStorage
      // turns on Node's promise hooks, which then tax every promise of the process (node 20).
      if (quiet(instruments)) return await run();
      const result = await callScope.run({ instruments, parent: span, provider: sync.provider }, run);
      return result;
    } catch (error) {
      const failure = error as { code?: unknown; retryable?: unknown };
      const code = typeof failure?.code === 'string' ? failure.code : 'UNKNOWN';
      span.setAttributes({ 'banksync.error_code': code, 'banksync.retryable': failure?.retryable === true });
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: code });
      if (failure?.retryable === true) instruments.retries.add(1, { provider: sync.provider, kind, code });
      throw error;
    } finally {
      span.end();
    }
  }

  /** A finished sync stopped the connection's automatic syncs (failure breaker, user needed, disabled). */
  breakerStop(provider: string, state: string, reason: string | null): void {
    this.instruments?.breakerStops.add(1, { provider, state, reason: reason ?? 'none' });
  }

  /** Ends open segment spans (the engine stopped). */
  close(): void {
    for (const segment of this.segments.values()) segment.span.end();
    this.segments.clear();
  }
}

export interface ProviderCall {
  provider: string;
  operation: string;
  method: string;
  url: string;
}

/**
 * Times one HTTP request of a provider client: a CLIENT span under the effect in progress and the latency
 * histogram (status: the HTTP status, or `error` when no answer came). Outside an engine effect: no-op.
 */
export async function observeProviderCall<T extends { response: Response }>(call: ProviderCall, send: () => Promise<T>): Promise<T> {
  const scope = callScope.getStore();
  if (!scope) return send();
  const { api, tracer, callDuration, rateLimited } = scope.instruments;
  let server: { address: string; port?: number } | null = null;
  try {
    const url = new URL(call.url);
    server = { address: url.hostname, ...(url.port ? { port: Number(url.port) } : {}) };
  } catch {
    // no server attributes
  }
  const span = tracer.startSpan(
    `${call.method} ${call.operation}`,
    {
      kind: api.SpanKind.CLIENT,
      attributes: {
        'http.request.method': call.method,
        'banksync.provider': call.provider,
        'banksync.operation': call.operation,
        ...(server ? { 'server.address': server.address, ...(server.port ? { 'server.port': server.port } : {}) } : {}),
      },
    },
    api.trace.setSpan(api.ROOT_CONTEXT, scope.parent),
  );
  const startedAt = performance.now();
  let status = 'error';
  try {
    const result = await send();
    status = String(result.response.status);
    span.setAttribute('http.response.status_code', result.response.status);
    if (result.response.status >= 400) span.setStatus({ code: api.SpanStatusCode.ERROR, message: `HTTP ${status}` });
    if (result.response.status === 429) rateLimited.add(1, { provider: call.provider, operation: call.operation });
    return result;
  } catch (error) {
    const code = (error as { code?: unknown })?.code;
    span.setAttribute('error.type', typeof code === 'string' ? code : 'error');
    span.setStatus({ code: api.SpanStatusCode.ERROR });
    throw error;
  } finally {
    callDuration.record((performance.now() - startedAt) / 1000, { provider: call.provider, operation: call.operation, status });
    span.end();
  }
}

function identity(sync: SyncIdentity): OtelApi.Attributes {
  return {
    'banksync.sync.id': sync.syncId,
    'banksync.connection.id': sync.connectionId,
    'banksync.tenant.id': sync.tenantId,
    'banksync.provider': sync.provider,
  };
}

/**
 * A tracer provider that can record: one given in the options, or a global one registered (now or since the
 * engine was created; the API's proxy then delegates to it).
 */
function tracing(instruments: Instruments): boolean {
  const provider = instruments.tracerProvider;
  if (!(provider instanceof instruments.api.ProxyTracerProvider)) return true;
  noopTracerProvider ??= new instruments.api.ProxyTracerProvider().getDelegate();
  return provider.getDelegate() !== noopTracerProvider;
}
let noopTracerProvider: OtelApi.TracerProvider | undefined;

/**
 * Nothing can record: the API's no-op meter and no tracer provider. Every span would be non-recording and every
 * metric a no-op, so the hooks skip building them (same outcome, none of the objects).
 */
function quiet(instruments: Instruments): boolean {
  return instruments.metricsOff && !tracing(instruments);
}

function createInstruments(api: Api, options: TelemetryOptions, activeByStatus: () => Promise<Record<string, number>>): Instruments {
  const tracerProvider = (options.tracerProvider as OtelApi.TracerProvider | undefined) ?? api.trace.getTracerProvider();
  const meterProvider = (options.meterProvider as OtelApi.MeterProvider | undefined) ?? api.metrics.getMeterProvider();
  const meter = meterProvider.getMeter(SCOPE);
  const active = meter.createObservableGauge('banksync_active_syncs', {
    description: 'Active syncs by state (database-wide: every process reports the same store count)',
  });
  active.addCallback(async (result) => {
    let counts: Record<string, number>;
    try {
      counts = await activeByStatus();
    } catch {
      return; // the store is unavailable: no observation rather than a wrong zero
    }
    for (const state of ACTIVE_STATES) result.observe(counts[state] ?? 0, { state });
  });
  return {
    api,
    tracer: tracerProvider.getTracer(SCOPE),
    tracerProvider,
    metricsOff: meter === api.createNoopMeter(),
    started: meter.createCounter('banksync_syncs_started', { description: 'Syncs whose first transition was committed' }),
    finished: meter.createCounter('banksync_syncs_finished', { description: 'Syncs that ended, by outcome and error code' }),
    duration: meter.createHistogram('banksync_sync_duration_seconds', {
      description: 'Time from the sync request to its end',
      unit: 's',
      advice: { explicitBucketBoundaries: SYNC_SECONDS },
    }),
    callDuration: meter.createHistogram('banksync_provider_call_duration_seconds', {
      description: 'Latency of each HTTP request to a provider',
      unit: 's',
      advice: { explicitBucketBoundaries: SECONDS },
    }),
    retries: meter.createCounter('banksync_provider_retries', { description: 'Retryable provider effect failures (the sync retries them)' }),
    rateLimited: meter.createCounter('banksync_provider_rate_limited', { description: 'HTTP 429 answers from providers' }),
    breakerStops: meter.createCounter('banksync_breaker_stops', { description: 'Connections whose automatic syncs were stopped after a sync' }),
  };
}
