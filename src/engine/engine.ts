/**
 * The sync engine: hosts one XState actor per active sync, commits every transition (snapshot, timers,
 * history, effect outbox) in one store transaction, owns the machine's timers durably, runs provider
 * effects through the journal, and resumes everything after a restart without repeating a provider call.
 */
import { v7 as uuidv7 } from 'uuid';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createActor, fromPromise, type InspectionEvent, type Snapshot } from 'xstate';
import { z } from 'zod';
import { SyncScope, type Observation } from '../../machines/canonical.js';
import {
  statusOf,
  synchronizationMachine,
  type AnswerInput,
  type EffectInput,
  type ObservationEnvelope,
  type SyncContext,
  type SyncPolicy,
  type TriggerEnvelope,
} from '../../machines/synchronization.js';
import { ProviderInputError } from '../providers/errors.js';
import type { ProviderAdapter, WebhookRequest } from '../providers/types.js';
import { StaleWriteError, type Store, type SyncFilter, type SyncRecord, type TimerRecord } from '../stores/types.js';
import { systemClock, type Clock } from './clock.js';
import { EffectRunner } from './effects.js';
import { ProviderEffects } from './provider-effects.js';
import { BanksyncError, invalidRequest } from './errors.js';
import { assertSafeOptions } from './options.js';
import { EngineEventStream, type EngineErrorCode } from './events.js';
import { connectionEvent, subscribeEvents, syncEvent, toBanksyncEvent, type BanksyncEvent, type EventSubscription, type SubscribeOptions } from './event-log.js';
import { InvalidCursorError, type NewEventRecord } from '../stores/types.js';
import { silentLogger, type Logger } from './logger.js';
import { scrubObservation, scrubText, SecretVault } from './secrets.js';
import { stateName, toView, type SyncView } from './view.js';
import { ConnectionService, type ConnectionView } from './connections.js';
import { WebhookIntake, type RejectedWebhook } from './webhook-intake.js';
import type { Activation, Dispatch } from './dispatch.js';
import { createHosting, type ActivateOptions, type HostingStrategy } from './hosting.js';
import { describeError, SyncRuntime } from './runtime.js';
import { CommitPipeline } from './commit-pipeline.js';
import { childInput, fireScheduledEvent, listScheduledEvents, scheduleEvent, type ScheduledEvent } from './xstate-internals.js';
import { consentExpiry, nextUnattendedAt, refusalReason, type ConnectionContext } from '../../machines/connection.js';
import { CONSENT_WARNING_MS, consentExpiresAt } from './consent.js';
import { SyncObserver, type TelemetryOptions } from './telemetry.js';
import { DEFAULT_RETENTION, pruneStore, type PruneOptions, type PruneReport, type Retention } from './retention.js';

export interface EngineOptions {
  store: Store;
  providers: Record<string, ProviderAdapter>;
  clock?: Clock;
  logger?: Logger;
  /** Overrides of the machine's timing and retry policy for every sync of this engine. */
  policy?: Partial<SyncPolicy>;
  /** Receives XState inspection events of every hosted actor (e.g. the Stately inspector). */
  inspect?: (event: InspectionEvent) => void;
  /**
   * Shared webhook secrets by provider. A provider listed here has every delivery verified (HMAC-SHA256,
   * constant-time compare, timestamp window); unverified deliveries are rejected, recorded and never applied.
   * A provider without a secret cannot prove a delivery is its own: its deliveries are only a hint to poll
   * the sync now; what they claim is never applied.
   */
  webhookSecrets?: Record<string, string>;
  /** Scale-out: no resident actors; work arrives as jobs (see src/engine/dispatch.ts). */
  dispatch?: Dispatch;
  /**
   * Dispatched only: a job keeps its sync and fires the next timer itself when it is due within this many ms
   * (default 1000; 0: every timer is a job of its own). See InlineTimerOptions in src/engine/hosting.ts.
   */
  inlineTimerMaxMs?: number;
  /** Dispatched only: how long one job may go on firing timers inline, in ms (default 5000). */
  inlineTimerBudgetMs?: number;
  /** Longest cooldown after passing trouble, and longest Retry-After honoured, in ms. Default 24 h. */
  cooldownCeilingMs?: number;
  /**
   * Maps a stored snapshot written by an older machine (`fromVersion` < SYNC_MACHINE_VERSION) to the current
   * machine, after a deploy that changed its states. Without it, or if it throws, such a sync fails with
   * ENGINE_ERROR (only that sync; the process goes on).
   */
  migrateSnapshot?: (snapshot: PersistedSyncSnapshot, fromVersion: number) => PersistedSyncSnapshot;
  /**
   * OpenTelemetry spans and metrics (see src/engine/telemetry.ts). Default: the global providers when
   * `@opentelemetry/api` is installed (no-ops unless an SDK registered them); false turns them off.
   */
  telemetry?: TelemetryOptions | false;
  /** How long finished syncs, transitions, effects and events are kept (see `prune`). Default 90 days each. */
  retention?: Partial<Retention>;
}

/**
 * Version of the synchronization machine's states and context, stored with every snapshot. Bump it when a
 * change would make an older snapshot unrestorable (a state renamed or removed), and supply migrateSnapshot.
 */
export const SYNC_MACHINE_VERSION = 1;

/** A stored snapshot: XState's persisted snapshot plus the machine version that wrote it. */
export interface PersistedSyncSnapshot {
  value: unknown;
  context: SyncContext;
  status: string;
  machineVersion?: number;
  [key: string]: unknown;
}

export type { RejectedWebhook } from './webhook-intake.js';
export { EARLY_CALLBACK_BYTES_MAX } from './webhook-intake.js';

/** Ids are stored and compared as text: a lone UTF-16 surrogate would be mangled into another id. */
const Id = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((value) => value.isWellFormed(), 'must be well-formed Unicode');
const TenantId = Id(128);

const RequestSyncInput = z.object({
  tenantId: TenantId.default('default'),
  connectionId: Id(256),
  provider: Id(64),
  scope: SyncScope.default('TRANSACTIONS'),
  options: z.record(z.string(), z.unknown()).optional(),
  /** Background/autosync request: refused unless the connection is eligible (see machines/connection.ts). */
  unattended: z.boolean().default(false),
});
export type RequestSyncInput = z.input<typeof RequestSyncInput>;

const ConnectionSettingsInput = z.object({
  tenantId: TenantId.default('default'),
  connectionId: Id(256),
  provider: Id(64),
  storedCredentials: z.boolean().optional(),
  hasWebScraping: z.boolean().optional(),
  /** When the user last gave consent (SCA): epoch ms or ISO 8601. */
  consentGrantedAt: z.union([z.number().int().nonnegative(), z.iso.datetime({ offset: true }).transform((v) => Date.parse(v))]).nullable().optional(),
});
export type ConnectionSettingsInput = z.input<typeof ConnectionSettingsInput>;

const ChallengeResponseInput = z.object({
  challengeId: z.string().min(1).max(256),
  response: z.string().min(1).max(4096),
});
const SyncIdInput = Id(256);
const ReadEventsInput = z.object({
  after: z.string().max(64).nullable().optional(),
  limit: z.number().int().min(1).max(1_000).default(100),
});
const TenantInput = z.object({ tenantId: TenantId.default('default') }).default({ tenantId: 'default' });
type TenantOption = z.input<typeof TenantInput>;

function parseTenant(options: TenantOption | undefined): { tenantId: string } {
  const parsed = TenantInput.safeParse(options ?? {});
  if (!parsed.success) throw invalidRequest('tenant', parsed.error);
  return parsed.data;
}

export class SyncEngine {
  readonly events = new EngineEventStream();
  private readonly store: Store;
  private readonly providers: Record<string, ProviderAdapter>;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly policy: Partial<SyncPolicy>;
  private readonly inspect: ((event: InspectionEvent) => void) | undefined;
  /** Embedded (resident actors) or dispatched (jobs): chosen once, from options.dispatch. */
  private readonly hosting: HostingStrategy;
  private readonly cooldownCeilingMs: number | undefined;
  private readonly migrateSnapshot: EngineOptions['migrateSnapshot'];
  private readonly retention: Retention;
  private readonly vault = new SecretVault();
  /** The provider effects the machine invokes (trigger, poll, answer). */
  private readonly effects: ProviderEffects;
  /** Group commit: every transition committed in one turn of the event loop goes to the store as one write. */
  private readonly commits: CommitPipeline;
  private readonly connections: ConnectionService;
  private readonly observer: SyncObserver;
  private readonly runtimes = new Map<string, SyncRuntime>();
  private readonly loading = new Map<string, Promise<SyncRuntime | null>>();
  /** Webhook intake: verification, the held early deliveries, the node:http handler. */
  private readonly webhooks: WebhookIntake;
  private readonly machine;
  private stopped = false;
  /** Set while engine.events is fed from the durable event log (see followEventLog). */
  private follower: EventSubscription | null = null;

  constructor(options: EngineOptions) {
    this.store = options.store;
    this.providers = options.providers;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.policy = options.policy ?? {};
    this.inspect = options.inspect;
    this.hosting = createHosting(
      {
        store: this.store,
        clock: this.clock,
        logger: this.logger,
        stopped: () => this.stopped,
        hosted: (syncId) => this.runtimes.get(syncId),
        resident: (syncId) => this.resident(syncId),
        host: (record, options, timers, unattended) => this.host(record, options, timers, unattended),
        close: (runtime) => this.close(runtime),
        deliver: (runtime, observation) => this.deliver(runtime, observation),
        readNow: (runtime) => this.readNow(runtime),
      },
      options.dispatch,
      { maxMs: options.inlineTimerMaxMs, budgetMs: options.inlineTimerBudgetMs },
    );
    this.cooldownCeilingMs = options.cooldownCeilingMs;
    this.migrateSnapshot = options.migrateSnapshot;
    this.retention = { ...DEFAULT_RETENTION, ...options.retention };
    this.commits = new CommitPipeline(this.store);
    this.connections = new ConnectionService(
      {
        getConnection: (tenantId, connectionId) => this.store.getConnection(tenantId, connectionId),
        saveConnection: (record, expected, events) => this.commits.saveConnection(record, expected, events),
      },
      () => this.clock.now(),
    );
    this.webhooks = new WebhookIntake({
      providers: this.providers,
      webhookSecrets: options.webhookSecrets ?? {},
      store: this.store,
      clock: this.clock,
      logger: this.logger,
      apply: (record, verified, observation) => this.hosting.webhook(record, verified, observation),
    });
    this.observer = new SyncObserver(this.logger, options.telemetry, () => this.store.countByStatus());
    this.effects = new ProviderEffects({
      providers: this.providers,
      effects: new EffectRunner(this.commits, this.clock, this.logger),
      vault: this.vault,
      observer: this.observer,
      clock: this.clock,
      logger: this.logger,
      hosted: (syncId) => this.runtimes.get(syncId),
    });
    this.machine = synchronizationMachine.provide({
      actors: {
        triggerSync: fromPromise<TriggerEnvelope, EffectInput>(({ input }) => this.effects.trigger(input)),
        pollSync: fromPromise<ObservationEnvelope, EffectInput>(({ input }) => this.effects.poll(input)),
        answerChallenge: fromPromise<ObservationEnvelope, AnswerInput>(({ input }) => this.effects.answer(input)),
      },
    });
  }

  /** Resumes every active sync found in the store (after a restart or on another process). */
  async start(): Promise<{ resumed: number }> {
    const active = await this.reconcileConnections();
    return { resumed: await this.hosting.resumeAll(active) };
  }

  /**
   * Connection and sync are written in separate transactions (sync first). After a crash between the two,
   * bring each connection's lock in line with its syncs.
   */
  private async reconcileConnections(): Promise<SyncRecord[]> {
    for (const connection of await this.store.listConnections({ state: 'SYNCING' })) {
      const context = connection.context as ConnectionView;
      const sync = context.activeSyncId ? await this.store.getSync(context.activeSyncId) : null;
      if (sync && !sync.active) await this.finishConnection(sync);
    }
    const active = await this.store.listSyncs({ active: true });
    for (const sync of active) {
      const connection = await this.connections.get(sync.tenantId, sync.connectionId);
      if (connection?.activeSyncId !== sync.syncId) {
        const unattended = Boolean((sync.snapshot as { context?: SyncContext } | null)?.context?.unattended);
        await this.connections.apply(
          { tenantId: sync.tenantId, connectionId: sync.connectionId, provider: sync.provider },
          { type: 'SYNC.REQUEST', syncId: sync.syncId, unattended, at: sync.createdAt },
        );
      }
    }
    return active;
  }

  /**
   * Settles the connection after its sync finished. `publish` receives the events of every connection write,
   * in log order; callers that emit the sync's own terminal event first pass a collector (see onSnapshot).
   */
  private async finishConnection(sync: SyncRecord, publish: (events: readonly NewEventRecord[]) => void = (e) => this.publish(e)): Promise<void> {
    const view = toView(sync);
    if (view.status !== 'COMPLETED' && view.status !== 'FAILED') return;
    const failureLimit = this.providers[sync.provider]?.failureLimit;
    const at = this.clock.now();
    const { view: connection, before, previous, changed, events } = await this.connections.apply(
      { tenantId: sync.tenantId, connectionId: sync.connectionId, provider: sync.provider },
      {
        type: 'SYNC.FINISHED',
        syncId: sync.syncId,
        status: view.status,
        result: view.result,
        error: view.error,
        at,
        ...(failureLimit !== undefined ? { providerFailureLimit: failureLimit } : {}),
        ...(this.cooldownCeilingMs !== undefined ? { cooldownCeilingMs: this.cooldownCeilingMs } : {}),
      },
      ({ view, changed }) => [
        ...(changed ? [connectionEvent('connection.updated', view, view, at)] : []),
        // Tell the app whenever automatic syncs stop for the user (PSD2: no SCA without the user present).
        ...(view.needsUser?.at === at && view.state === 'NEEDS_USER' ? [connectionEvent('connection.needsUser', view, view, at)] : []),
        ...(changed && view.state === 'RETIRED' ? [connectionEvent('connection.retired', view, view, at)] : []),
      ],
    );
    publish(events);
    if (changed && before === 'SYNCING' && (connection.state === 'NEEDS_USER' || connection.state === 'DISABLED')) {
      this.observer.breakerStop(sync.provider, connection.state, connection.needsUser?.reason ?? null);
    }
    const known = new Set(previous?.linkedAccessIds ?? []);
    const created = connection.linkedAccessIds.filter((id) => !known.has(id));
    if (created.length > 0) await this.adoptUpgradedAccesses(connection, created, publish);
    await this.warnConsent(connection, publish);
  }

  /** Warns of a consent about to run out, once per consent, whoever first sees it inside the window. */
  private async warnConsent(view: ConnectionView, publish: (events: readonly NewEventRecord[]) => void = (e) => this.publish(e)): Promise<boolean> {
    const at = this.clock.now();
    // Logged with the connection write that records the warning, so exactly one process reports it.
    const events = await this.connections.warnConsentIfDue(view, (warned) => [connectionEvent('connection.consentExpiring', warned, warned, at)]);
    publish(events);
    return events.length > 0;
  }

  /**
   * An access upgrade (finX 40002/40003) moved accounts to accesses the provider created: each becomes a
   * connection of the same tenant with the old one's settings, so autosync keeps the moved accounts fresh.
   */
  private async adoptUpgradedAccesses(from: ConnectionView, accessIds: string[], publish: (events: readonly NewEventRecord[]) => void): Promise<void> {
    const views: ConnectionView[] = [];
    for (const [i, connectionId] of accessIds.entries()) {
      const at = this.clock.now();
      // The upgrade event is written with the last connection it creates, so it is logged once all exist.
      const last = i === accessIds.length - 1;
      const { view, events } = await this.connections.apply(
        { tenantId: from.tenantId, connectionId, provider: from.provider },
        {
          type: 'SETTINGS.UPDATE',
          storedCredentials: from.storedCredentials,
          hasWebScraping: from.hasWebScraping,
          consentGrantedAt: from.consentGrantedAt,
          consentExpiresAt: from.consentExpiresAt,
          at,
        },
        (outcome) => (last ? [connectionEvent('connection.upgraded', outcome.view, { from, created: [...views, outcome.view] }, at)] : []),
      );
      views.push(view);
      publish(events);
    }
  }

  /** Registers or updates what autosync eligibility depends on (stored credentials, consent, interfaces). */
  async registerConnection(settings: ConnectionSettingsInput): Promise<ConnectionView> {
    this.assertRunning();
    const parsed = ConnectionSettingsInput.safeParse(settings);
    if (!parsed.success) throw invalidRequest('connection settings', parsed.error);
    const { tenantId, connectionId, provider, ...rest } = parsed.data;
    const adapter = this.providers[provider];
    if (!adapter) throw new BanksyncError('PROVIDER_NOT_CONFIGURED', `provider ${JSON.stringify(provider)} is not configured`);
    // The consent's end is a calendar term in the provider's zone (90 days, wealthAPI 3 months), not n x 24 h.
    const consentEnd = rest.consentGrantedAt === undefined ? undefined : rest.consentGrantedAt === null ? null : consentExpiresAt(rest.consentGrantedAt, adapter.consentTerm);
    const { view } = await this.connections.apply(
      { tenantId, connectionId, provider },
      {
        type: 'SETTINGS.UPDATE',
        at: this.clock.now(),
        ...(rest.storedCredentials !== undefined ? { storedCredentials: rest.storedCredentials } : {}),
        ...(rest.hasWebScraping !== undefined ? { hasWebScraping: rest.hasWebScraping } : {}),
        ...(rest.consentGrantedAt !== undefined ? { consentGrantedAt: rest.consentGrantedAt, consentExpiresAt: consentEnd ?? null } : {}),
      },
    );
    await this.warnConsent(view);
    return (await this.connections.get(tenantId, connectionId)) ?? view;
  }

  async getConnection(connectionId: string, options?: TenantOption): Promise<ConnectionView> {
    const { tenantId } = parseTenant(options);
    const connection = Id(256).safeParse(connectionId);
    if (!connection.success) throw invalidRequest('connection id', connection.error);
    const view = await this.connections.get(tenantId, connectionId);
    if (!view) throw new BanksyncError('CONNECTION_NOT_FOUND', `connection ${connectionId} not found`);
    return view;
  }

  /**
   * Emits `connection.consentExpiring` once per consent for every connection whose consent runs out within
   * CONSENT_WARNING_MS (driven by the autosync tick). Returns how many were warned.
   */
  async warnExpiringConsents(): Promise<number> {
    let warned = 0;
    const now = this.clock.now();
    for (const record of await this.store.listConnections()) {
      const context = record.context as ConnectionContext;
      const expiry = consentExpiry(context);
      if (expiry === null || expiry <= now || expiry - now > CONSENT_WARNING_MS || context.consentWarnedAt != null) continue;
      const view = await this.connections.get(record.tenantId, record.connectionId);
      if (view && (await this.warnConsent(view))) warned++;
    }
    return warned;
  }

  /** After a disabled connection was deleted and recreated at the provider: start counting afresh. */
  async recreateConnection(connectionId: string, options?: TenantOption): Promise<ConnectionView> {
    const current = await this.getConnection(connectionId, options);
    const at = this.clock.now();
    const { view, events } = await this.connections.apply(
      { tenantId: current.tenantId, connectionId, provider: current.provider },
      { type: 'RECREATED', at },
      (outcome) => [connectionEvent('connection.updated', outcome.view, outcome.view, at)],
    );
    this.publish(events);
    return view;
  }

  /**
   * Deletes finished syncs, transitions, effects (and events) past retention in bounded batches; never an
   * active sync or the newest sync of a connection. `{ dryRun: true }` only counts. Returns the counts.
   */
  async prune(options: PruneOptions = {}): Promise<PruneReport> {
    return pruneStore(this.store, this.retention, options, this.clock.now());
  }

  /** Stops hosting actors. Durable state stays in the store; another engine can resume it. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.follower?.close();
    for (const runtime of this.runtimes.values()) this.close(runtime);
    await Promise.allSettled([...this.runtimes.values()].map((r) => r.chain));
    this.runtimes.clear();
    this.observer.close();
  }

  /** Starts a sync, or returns the connection's active one (single-flight). */
  async requestSync(request: RequestSyncInput): Promise<SyncView> {
    this.assertRunning();
    const parsed = RequestSyncInput.safeParse(request);
    if (!parsed.success) throw invalidRequest('sync request', parsed.error);
    const { tenantId, connectionId, provider, scope, options, unattended } = parsed.data;
    const adapter = this.providers[provider];
    if (!adapter) {
      throw new BanksyncError('PROVIDER_NOT_CONFIGURED', `provider ${JSON.stringify(provider)} is not configured`);
    }
    // Input the provider could never accept fails here: no sync, no lock, nothing counted.
    try {
      adapter.validateRequest?.({ connectionId, scope, ...(options ? { options } : {}) });
    } catch (error) {
      if (!(error instanceof ProviderInputError)) throw error;
      throw new BanksyncError('INVALID_REQUEST', `invalid sync request: ${error.message}`, error.issues);
    }
    // Options are stored with the sync (snapshot, job payload, inspector): only keys declared safe pass.
    assertSafeOptions(provider, adapter, options);
    const active = await this.store.findActiveSync(tenantId, connectionId);
    if (active) {
      await this.resident(active.syncId);
      return this.get(active.syncId, { tenantId });
    }
    const connectionInput = { tenantId, connectionId, provider };
    let connection = await this.connections.peek(connectionInput);
    if (connection.state === 'SYNCING') {
      // The lock outlived its sync (crash between the two writes): settle it first.
      const stale = connection.activeSyncId ? await this.store.getSync(connection.activeSyncId) : null;
      if (stale && !stale.active) await this.finishConnection(stale);
      connection = await this.connections.peek(connectionInput);
    }
    const now = this.clock.now();
    const refusal = refusalReason(connection.state, connection, unattended, now);
    if (refusal) {
      // A refusal that passes with time says when: the caller (autosync) schedules the attempt then.
      const nextAttemptAt = unattended ? nextUnattendedAt(connection.state, connection, now) : null;
      const when = nextAttemptAt !== null ? `; next attempt at ${new Date(nextAttemptAt).toISOString()}` : '';
      throw new BanksyncError('SYNC_REFUSED', `sync of connection ${connectionId} refused: ${refusal}${when}`, [refusal], nextAttemptAt);
    }
    const { sync, created } = await this.commits.createSync({
      // Time-ordered (UUIDv7): rows keyed by the sync (its row, timers, effects, transitions, events) of the
      // syncs in flight sit on neighbouring B-tree pages, so a group commit rewrites few pages, not one per sync.
      syncId: `sync_${uuidv7()}`,
      tenantId,
      connectionId,
      provider,
      scope,
      createdAt: this.clock.now(),
    });
    // The sync is committed: from here on the caller must learn of it, whatever else fails (a failed step is
    // reported as engine.error and repaired: start() reconciles the connection, the stale sweep or the
    // hosting retry resumes the sync).
    let runtime: SyncRuntime | null = null;
    try {
      runtime = await this.hosting.hostRequested(sync, created, options, unattended);
      if (created) {
        const at = this.clock.now();
        const { events } = await this.connections.apply(connectionInput, { type: 'SYNC.REQUEST', syncId: sync.syncId, unattended, at }, ({ view }) => [
          connectionEvent('connection.updated', view, view, at),
        ]);
        this.publish(events);
        await this.hosting.requested(sync, options, unattended);
      }
      if (runtime) await runtime.committed();
    } catch (error) {
      this.reportError(sync.syncId, `sync ${sync.syncId} was created, but a step after it failed: ${describeError(error)}`, 'STORAGE_ERROR');
    }
    try {
      return await this.get(sync.syncId, { tenantId });
    } catch (error) {
      throw new BanksyncError(
        'STORAGE_UNAVAILABLE',
        `sync ${sync.syncId} was created but could not be read back (${describeError(error)}); look it up by connection once the store is back`,
      );
    }
  }

  async get(syncId: string, options?: TenantOption): Promise<SyncView> {
    return toView(await this.record(syncId, options));
  }

  async list(filter: SyncFilter = {}): Promise<SyncView[]> {
    return (await this.store.listSyncs(filter)).map(toView);
  }

  async history(syncId: string, options?: TenantOption) {
    await this.record(syncId, options);
    return this.store.listTransitions(syncId);
  }

  /** Passes the user's answer (e.g. a TAN) to the current embedded challenge. The answer is never stored. */
  async submitChallengeResponse(
    syncId: string,
    answer: { challengeId: string; response: string },
    options?: TenantOption,
  ): Promise<SyncView> {
    this.assertRunning();
    const parsed = ChallengeResponseInput.safeParse(answer);
    if (!parsed.success) throw invalidRequest('challenge response', parsed.error);
    await this.record(syncId, options);
    await this.withRuntime(syncId, (runtime) => {
      const ref = this.vault.put(syncId, parsed.data.response);
      runtime.actor.send({ type: 'CHALLENGE.ANSWER', challengeId: parsed.data.challengeId, responseRef: ref });
      if (runtime.actor.getSnapshot().context.pendingResponseRef !== ref) {
        this.vault.take(ref);
        throw new BanksyncError(
          'CHALLENGE_NOT_PENDING',
          `sync ${syncId} is not waiting for an answer to challenge ${JSON.stringify(parsed.data.challengeId)}`,
        );
      }
    });
    return this.get(syncId, options);
  }

  /**
   * Runs `work` on the sync's live actor and waits for its commit. Dispatched: under the sync's lock, in this
   * process (a TAN must not travel through the job table), until no effect is in flight, then evicts it.
   */
  private async withRuntime(syncId: string, work: (runtime: SyncRuntime) => void): Promise<void> {
    await this.hosting.withRuntime(syncId, work);
  }

  /**
   * Dispatched mode: one activation of a sync by a worker job. Idempotent: a job that runs twice (a worker died
   * mid-job) finds the committed state, and the effect journal keeps provider calls from repeating. `rerun`: the
   * job ran before (graphile-worker's attempts > 1); every pending timer is handed to the dispatcher again.
   */
  async activate(syncId: string, activation: Activation, options: ActivateOptions = {}): Promise<void> {
    await this.hosting.activate(syncId, activation, options);
  }

  /** Queues a resume for active syncs that nothing has moved for `staleAfterMs` (e.g. a lost job). */
  async recoverStuck(staleAfterMs: number): Promise<number> {
    return this.hosting.recoverStuck(staleAfterMs);
  }

  async cancel(syncId: string, options?: TenantOption & { reason?: string }): Promise<SyncView> {
    this.assertRunning();
    await this.record(syncId, options);
    await this.withRuntime(syncId, (runtime) => {
      runtime.actor.send({ type: 'CANCEL', ...(options?.reason ? { reason: options.reason } : {}) });
    });
    return this.get(syncId, options);
  }

  /** Resolves with the sync once it is COMPLETED or FAILED. */
  waitForTerminal(syncId: string, options?: TenantOption): Promise<SyncView> {
    return new Promise<SyncView>((resolve, reject) => {
      const done = (view: SyncView) => {
        if (view.syncId !== syncId) return;
        offCompleted();
        offFailed();
        resolve(view);
      };
      const offCompleted = this.events.on('sync.completed', done);
      const offFailed = this.events.on('sync.failed', done);
      this.get(syncId, options).then(
        (view) => {
          if (!view.active) done(view);
        },
        (error: unknown) => {
          offCompleted();
          offFailed();
          reject(error);
        },
      );
    });
  }

  /**
   * Applies a provider webhook/callback. Invalid bodies throw INVALID_WEBHOOK and change nothing; a
   * delivery for an unknown or finished sync is acknowledged and ignored. Only an authenticated delivery
   * (the provider has a webhook secret) is applied as provider state; any other is a hint (`verified: false`,
   * `applied: false`): the sync reads the provider now, through its own poll.
   */
  async handleWebhook(provider: string, request: WebhookRequest): Promise<{ applied: boolean; syncId: string | null; verified: boolean }> {
    return this.webhooks.handle(provider, request);
  }

  /**
   * Has the sync read the provider now: fires its pending poll (or challenge check) timer early, so the read
   * runs as the machine's own effect with its own error handling (an unknown status still fails the sync).
   * At most one early read per sync per HINT_MIN_INTERVAL_MS, so a flood of hints cannot hammer the provider.
   */
  private async readNow(runtime: SyncRuntime): Promise<boolean> {
    const now = this.clock.now();
    if (runtime.closed || now - runtime.lastHintAt < HINT_MIN_INTERVAL_MS) return false;
    const timer = this.pendingTimers(runtime).find((t) => READ_TIMERS.has(t.eventType));
    if (!timer) return false; // a read is under way already, or the sync is not polling (trigger, backoff)
    runtime.lastHintAt = now;
    fireScheduledEvent(runtime.actor, timer.timerId, timer.eventType);
    await runtime.committed();
    return true;
  }

  /** The most recent unverified webhook deliveries (kept for inspection; never applied). */
  rejectedWebhooks(): readonly RejectedWebhook[] {
    return this.webhooks.rejected();
  }

  /** A node:http request listener for one provider's webhooks: `http.createServer(engine.webhookHandler('finx'))`. */
  webhookHandler(provider: string): (req: IncomingMessage, res: ServerResponse) => void {
    return this.webhooks.handler(provider);
  }

  // ---------------------------------------------------------------------------------------------
  // Hosting

  private assertRunning(): void {
    if (this.stopped) throw new BanksyncError('ENGINE_STOPPED', 'the engine has been stopped');
  }

  private async record(syncId: string, options?: TenantOption): Promise<SyncRecord> {
    const id = SyncIdInput.safeParse(syncId);
    if (!id.success) throw invalidRequest('sync id', id.error);
    const { tenantId } = parseTenant(options);
    const record = await this.store.getSync(id.data);
    // Another tenant's sync is reported exactly like a missing one.
    if (!record || record.tenantId !== tenantId) throw new BanksyncError('SYNC_NOT_FOUND', `sync ${id.data} not found`);
    return record;
  }

  /** The resident runtime of an active sync, restoring it from the store if this process does not host it. */
  private async resident(syncId: string): Promise<SyncRuntime | null> {
    const existing = this.runtimes.get(syncId);
    if (existing) return existing;
    let pending = this.loading.get(syncId);
    if (!pending) {
      pending = (async () => {
        const record = await this.store.getSync(syncId);
        if (!record?.active || this.stopped) return null;
        const timers = await this.store.listTimers(syncId);
        const runtime = this.runtimes.get(syncId) ?? this.host(record, undefined, timers);
        if (!runtime.closed) return runtime;
        await runtime.failure;
        return null;
      })().finally(() => this.loading.delete(syncId));
      this.loading.set(syncId, pending);
    }
    return pending;
  }

  /** Creates the actor: fresh from input, or restored from the record's snapshot with its timers re-armed. */
  private host(record: SyncRecord, options?: Record<string, unknown>, timers: TimerRecord[] = [], unattended = false): SyncRuntime {
    const runtime = new SyncRuntime(record, record.version);
    runtime.lastTimers = timers;
    this.runtimes.set(record.syncId, runtime);
    this.observer.hosted(record, record.snapshot !== null);
    const clock = this.hosting.actorClock;
    const inspect = (event: InspectionEvent) => {
      this.inspect?.(event);
      if (event.type === '@xstate.snapshot' && event.actorRef === runtime.actor) this.onSnapshot(runtime, event.event.type);
    };
    const input = {
      syncId: record.syncId,
      connectionId: record.connectionId,
      provider: record.provider,
      scope: record.scope,
      ...(options ? { options } : {}),
      unattended,
      policy: this.policy,
    };
    if (record.snapshot) {
      const restorable = this.restorable(record);
      if ('problem' in restorable) {
        runtime.closed = true;
        this.runtimes.delete(record.syncId);
        this.observer.released(record.syncId, false);
        runtime.failure = restorable.fail ? this.failSync(record.syncId, restorable.problem) : Promise.resolve(this.reportError(record.syncId, restorable.problem));
        return runtime;
      }
      // Restored: XState ignores `input` when given a snapshot.
      runtime.restoring = true;
      runtime.lastChallengeId = restorable.snapshot.context.challenge?.id ?? null;
      runtime.actor = createActor(this.machine, { input, snapshot: restorable.snapshot as unknown as Snapshot<unknown>, clock, inspect });
      // An observer with an error handler: an actor error (e.g. a snapshot naming a state that no longer
      // exists) reaches onActorError instead of XState's unhandled-error report, which kills the process.
      runtime.actor.subscribe({ error: (error) => this.onActorError(runtime, error) });
      runtime.actor.start();
      if (!runtime.closed) this.rearm(runtime, timers);
      runtime.restoring = false;
    } else {
      runtime.actor = createActor(this.machine, { input, clock, inspect });
      runtime.actor.subscribe({ error: (error) => this.onActorError(runtime, error) });
      runtime.actor.start();
    }
    return runtime;
  }

  /** The record's snapshot as the current machine can restore it, or why not (and whether to fail the sync). */
  private restorable(record: SyncRecord): { snapshot: PersistedSyncSnapshot } | { problem: string; fail: boolean } {
    const stored = record.snapshot as PersistedSyncSnapshot;
    const { machineVersion = 1, ...snapshot } = stored;
    if (machineVersion > SYNC_MACHINE_VERSION) {
      // Written by a newer deploy (a rolling update, or a rollback): leave it to the processes that know it.
      return { problem: `snapshot written by machine version ${machineVersion}; this process runs version ${SYNC_MACHINE_VERSION}`, fail: false };
    }
    if (machineVersion === SYNC_MACHINE_VERSION) return { snapshot };
    if (!this.migrateSnapshot) return { problem: `snapshot of machine version ${machineVersion} and no migrateSnapshot for it (current version ${SYNC_MACHINE_VERSION})`, fail: true };
    try {
      return { snapshot: this.migrateSnapshot(snapshot as PersistedSyncSnapshot, machineVersion) };
    } catch (error) {
      return { problem: `migrating the snapshot from machine version ${machineVersion} failed: ${(error as Error)?.message ?? String(error)}`, fail: true };
    }
  }

  private onActorError(runtime: SyncRuntime, error: unknown): void {
    if (runtime.failure) return;
    const message = `the sync's state machine failed: ${error instanceof Error ? error.message : String(error)}`;
    this.close(runtime);
    // After the commits already queued (they are skipped once closed) so the failure is the last write.
    runtime.failure = runtime.chain.then(() => this.failSync(runtime.record.syncId, message));
  }

  /**
   * Tells this process's listeners about events just committed. An engine that follows the event log hears
   * them (and every other process's) from the log instead, once, in commit order.
   */
  private publish(events: readonly NewEventRecord[]): void {
    if (this.follower) return;
    for (const event of events) this.events.emit(event.name as 'sync.updated', event.payload as SyncView);
  }

  /**
   * Makes `engine.events` (and so waitForTerminal) report what every process commits, by tailing the durable
   * event log from now on, instead of only what this process does. createDispatchingEngine turns it on: the API
   * process hears of syncs its workers run. `engine.error` stays local to the process that saw it.
   */
  async followEventLog(options: Pick<SubscribeOptions, 'pollMs'> = {}): Promise<void> {
    if (this.follower) return;
    const placeholder: EventSubscription = { cursor: null, close: async () => {} };
    this.follower = placeholder;
    try {
      const after = await this.store.latestEventCursor();
      const follower = await subscribeEvents(this.store, {
        after,
        ...options,
        onEvent: (event) => this.events.emit(event.name as 'sync.updated', event.payload as SyncView),
        onError: (error) => this.logger.warn({ err: describeError(error) }, 'reading the event log failed; retrying'),
      });
      if (this.follower === placeholder) this.follower = follower;
      else await follower.close();
    } catch (error) {
      if (this.follower === placeholder) this.follower = null;
      throw error;
    }
  }

  /** Reads the durable event log after `after` (a cursor from an earlier event; absent: from the start). */
  async readEvents(options: { after?: string | null; limit?: number } = {}): Promise<{ events: BanksyncEvent[]; cursor: string | null; more: boolean }> {
    const parsed = ReadEventsInput.safeParse(options);
    if (!parsed.success) throw invalidRequest('event read', parsed.error);
    const after = parsed.data.after ?? null;
    try {
      const page = await this.store.readEvents(after, parsed.data.limit);
      return { events: page.events.map(toBanksyncEvent), cursor: page.events.at(-1)?.cursor ?? after, more: page.more };
    } catch (error) {
      if (error instanceof InvalidCursorError) throw new BanksyncError('INVALID_REQUEST', error.message, ['after: not a cursor of this store']);
      throw error;
    }
  }

  /**
   * Calls `onEvent` for every event after `after`, in commit order, then for each new one as it is committed
   * (any process): at-least-once across restarts if you save `subscription.cursor`, exactly once per cursor.
   */
  async subscribe(options: SubscribeOptions): Promise<EventSubscription> {
    const parsed = ReadEventsInput.safeParse({ after: options.after });
    if (!parsed.success) throw invalidRequest('event subscription', parsed.error);
    try {
      await this.store.readEvents(options.after ?? null, 0);
    } catch (error) {
      if (error instanceof InvalidCursorError) throw new BanksyncError('INVALID_REQUEST', error.message, ['after: not a cursor of this store']);
      throw error;
    }
    return subscribeEvents(this.store, options);
  }

  private reportError(syncId: string | null, message: string, code: EngineErrorCode = 'ENGINE_ERROR'): void {
    this.logger.error({ syncId, code }, message);
    this.events.emit('engine.error', { syncId, code, message: scrubText(message) });
  }

  /** Fails one sync that cannot be hosted (unrestorable snapshot, actor error) with ENGINE_ERROR; never throws. */
  private async failSync(syncId: string, problem: string): Promise<void> {
    this.reportError(syncId, problem);
    try {
      const record = await this.store.getSync(syncId);
      if (!record?.active) return;
      const stored = (record.snapshot ?? {}) as Partial<PersistedSyncSnapshot>;
      const error = { code: 'ENGINE_ERROR' as const, retryable: false, userActionRequired: false, message: scrubText(problem) };
      const snapshot = { ...stored, status: 'done', value: 'FAILED', children: {}, context: { ...(stored.context ?? {}), error }, machineVersion: SYNC_MACHINE_VERSION };
      const at = this.clock.now();
      const failedView = toView({ ...record, status: 'FAILED', active: false, snapshot, version: record.version + 1, updatedAt: at });
      const events = [syncEvent('sync.failed', failedView, at)];
      const version = await this.store.commit({
        syncId,
        expectedVersion: record.version,
        status: 'FAILED',
        active: false,
        providerRef: record.providerRef,
        snapshot,
        timers: [],
        transitions: [{ from: stored.value === undefined ? null : stateName(stored.value), to: 'FAILED', event: 'engine.error', at }],
        pendingEffects: [],
        at,
        events,
      });
      const failed = { ...record, status: 'FAILED' as const, active: false, snapshot, version, updatedAt: at };
      this.observer.committed(record, [{ from: stored.value === undefined ? null : stateName(stored.value), to: 'FAILED', event: 'engine.error', at }], { status: 'FAILED', errorCode: 'ENGINE_ERROR' }, at);
      // The sync's events first (the log's order), but only once the connection is settled: a listener that
      // reads the connection on sync.failed sees the outcome.
      const connectionEvents: NewEventRecord[] = [];
      try {
        await this.finishConnection(failed, (e) => connectionEvents.push(...e));
      } finally {
        this.publish(events);
        this.publish(connectionEvents);
      }
    } catch (error) {
      this.reportError(syncId, `could not record the failure of sync ${syncId}: ${(error as Error)?.message ?? String(error)}`, 'STORAGE_ERROR');
    }
  }

  /** XState forgets delayed events on restore; schedule them again under their own ids so exits still cancel them. */
  private rearm(runtime: SyncRuntime, timers: TimerRecord[]): void {
    const { actor } = runtime;
    for (const timer of timers) {
      scheduleEvent(actor, { type: timer.eventType }, Math.max(0, timer.dueAt - this.clock.now()), timer.timerId);
      const scheduled = this.scheduledEvents(runtime).find((e) => e.id === timer.timerId);
      if (scheduled) runtime.dueAt.set(scheduled, timer.dueAt);
    }
  }

  private scheduledEvents(runtime: SyncRuntime): ScheduledEvent[] {
    return listScheduledEvents(runtime.actor);
  }

  private pendingTimers(runtime: SyncRuntime): TimerRecord[] {
    return this.scheduledEvents(runtime).map((scheduled) => {
      let dueAt = runtime.dueAt.get(scheduled);
      if (dueAt === undefined) {
        dueAt = this.clock.now() + scheduled.delay;
        runtime.dueAt.set(scheduled, dueAt);
      }
      return { syncId: runtime.record.syncId, timerId: scheduled.id, eventType: scheduled.event.type, dueAt };
    }).sort((a, b) => a.dueAt - b.dueAt || (a.timerId < b.timerId ? -1 : a.timerId > b.timerId ? 1 : 0));
  }

  /** Called synchronously after every macrostep of a hosted actor: enqueue its commit. */
  private onSnapshot(runtime: SyncRuntime, eventType: string): void {
    if (runtime.closed) return;
    const snapshot = runtime.actor.getSnapshot();
    if (runtime.restoring || snapshot === runtime.lastSnapshot) {
      runtime.lastSnapshot = snapshot;
      return;
    }
    runtime.lastSnapshot = snapshot;
    const state = stateName(snapshot.value);
    const status = statusOf(snapshot.value);
    const finished = snapshot.status === 'done';
    const context = snapshot.context;
    const persisted = { ...(runtime.actor.getPersistedSnapshot() as object), machineVersion: SYNC_MACHINE_VERSION };
    const timers = finished ? [] : this.pendingTimers(runtime);
    const pendingEffects = Object.values(snapshot.children).flatMap((child) => {
      const input = childInput<EffectInput>(child);
      return input?.effectKey ? [{ effectKey: input.effectKey, kind: child!.id }] : [];
    });
    const transitions = state !== runtime.lastState ? [{ from: runtime.lastState || null, to: state, event: eventType, at: this.clock.now() }] : [];
    // The user is asked when a challenge appears, and again when their answer could not be delivered.
    const answerNotDelivered = runtime.lastState === 'AWAIT_AUTH.Answering' && state === 'AWAIT_AUTH.AwaitingUser' && eventType.startsWith('xstate.error.actor');
    const newChallenge = status === 'AWAIT_AUTH' && context.challenge && (context.challenge.id !== runtime.lastChallengeId || answerNotDelivered);
    runtime.lastState = state;
    runtime.lastChallengeId = context.challenge?.id ?? null;
    if (finished) this.close(runtime);
    runtime.notify();

    runtime.chain = runtime.chain.then(async () => {
      if (runtime.closed && !finished) return;
      const at = this.clock.now();
      // Every commit bumps the version by one: the view (and the events it causes) of the state committed now.
      const view = toView({
        ...runtime.record,
        status,
        active: !finished,
        providerRef: context.providerRef,
        snapshot: persisted,
        version: runtime.version + 1,
        updatedAt: at,
      });
      const events = [
        ...(transitions.length > 0 ? [syncEvent('sync.updated', view, at)] : []),
        ...(newChallenge ? [syncEvent('sync.awaitingUser', view, at)] : []),
        ...(finished ? [syncEvent(status === 'COMPLETED' ? 'sync.completed' : 'sync.failed', view, at)] : []),
      ];
      try {
        runtime.version = await this.commits.commit({
          syncId: runtime.record.syncId,
          expectedVersion: runtime.version,
          status,
          active: !finished,
          providerRef: context.providerRef,
          snapshot: persisted,
          timers,
          transitions,
          pendingEffects,
          at,
          events,
        });
      } catch (error) {
        this.onCommitFailure(runtime, error);
        return;
      }
      this.observer.committed(runtime.record, transitions, finished ? { status: status as 'COMPLETED' | 'FAILED', errorCode: context.error?.code ?? null } : null, this.clock.now());
      await this.hosting.timersCommitted(runtime, timers);
      if (context.providerRef && runtime.record.providerRef !== context.providerRef) {
        runtime.record = { ...runtime.record, providerRef: context.providerRef };
        this.releaseEarly(runtime, context.providerRef);
      }
      // A finished sync's events are emitted in the log's order (the sync's commit, then the connection's
      // writes), but only after the connection is settled: a listener that reads the connection on
      // sync.completed / sync.failed sees the outcome.
      const connectionEvents: NewEventRecord[] = [];
      if (finished) {
        try {
          await this.finishConnection({ ...runtime.record, status, active: false, snapshot: persisted, version: runtime.version }, (e) => connectionEvents.push(...e));
        } catch (error) {
          // The sync's outcome is committed; start() settles the connection if this write was lost.
          this.logger.error({ syncId: runtime.record.syncId, err: (error as Error)?.message }, 'connection update failed');
        }
      }
      this.publish(events);
      this.publish(connectionEvents);
    });
  }

  private onCommitFailure(runtime: SyncRuntime, error: unknown): void {
    // Without a durable commit no further effect may run: stop hosting; the last committed state resumes later.
    const syncId = runtime.record.syncId;
    this.observer.commitFailed(syncId, error instanceof StaleWriteError ? 'STALE_WRITE' : 'STORAGE_ERROR');
    if (error instanceof StaleWriteError) {
      this.logger.warn({ syncId }, 'sync is owned by a newer writer; stopped hosting it');
      this.close(runtime);
      return;
    }
    runtime.commitError = error;
    this.close(runtime);
    this.reportError(syncId, `commit of sync ${syncId} failed; it resumes from its last committed state: ${describeError(error)}`, 'STORAGE_ERROR');
    // Dispatched: the job fails and graphile-worker retries it. Resident: retry hosting with backoff.
    this.hosting.commitFailed(syncId);
  }

  private close(runtime: SyncRuntime): void {
    if (runtime.closed) return;
    runtime.closed = true;
    if (this.runtimes.get(runtime.record.syncId) === runtime) this.runtimes.delete(runtime.record.syncId);
    this.observer.released(runtime.record.syncId, runtime.actor.getSnapshot().status === 'done');
    this.vault.forgetSync(runtime.record.syncId);
    if (runtime.actor.getSnapshot().status === 'active') runtime.actor.stop();
  }

  /** Early deliveries held until a trigger reports their provider id: how many, and their body bytes. */
  heldWebhooks(): { ids: number; deliveries: number; bytes: number } {
    return this.webhooks.held();
  }

  private releaseEarly(runtime: SyncRuntime, providerRef: string): void {
    for (const observation of this.webhooks.takeEarly(runtime.record.provider, providerRef)) if (!runtime.closed) this.deliver(runtime, observation);
  }

  private deliver(runtime: SyncRuntime, observation: Observation): void {
    const scrubbed = scrubObservation(observation, this.vault.known(runtime.record.syncId));
    runtime.actor.send({ type: 'PROVIDER.OBSERVED', observation: scrubbed, observedAt: this.clock.now() });
  }
}

export function createEngine(options: EngineOptions): SyncEngine {
  return new SyncEngine(options);
}

/** An unauthenticated webhook makes a sync read the provider at most this often. */
const HINT_MIN_INTERVAL_MS = 1_000;
/** The machine's timers that start a read of the provider (see machines/synchronization.ts). */
const READ_TIMERS = new Set(['xstate.after.nextDelay.sync.RUNNING.Waiting', 'xstate.after.authPollInterval.sync.AWAIT_AUTH.AwaitingUser']);
