/**
 * The operator console's JSON API, on the viewer's server when it is attached to a real store
 * (`banksync serve --config | --database-url | --db`).
 *
 *   GET  /api/console/syncs?status&provider&tenant&olderThan&newerThan&limit&after   newest first, keyset pages
 *   GET  /api/console/stale?minutes&tenant&limit        active syncs nothing has written for `minutes`
 *   GET  /api/console/connections?kind&tenant&limit     kind: breaker (DISABLED), user (NEEDS_USER), cooldown
 *   GET  /api/console/syncs/:id?tenant                  { sync, history, svg } (diagram: current state + path taken)
 *   POST /api/console/connections/retry                 { tenantId, connectionId, provider } -> 201 { sync } (attended)
 *   POST /api/console/syncs/:id/cancel                  { tenantId }
 *
 * Every query is bounded (limit <= 200) and served by an index (created_at order, the partial index on active
 * syncs, the connections' state index); ages are in minutes. Unknown or malformed parameters get 400 with the
 * parameter named. Actions go through the engine API; a read-only console (no engine that may act) answers 409.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { SyncEngine } from '../engine/engine.js';
import { toView, type SyncView } from '../engine/view.js';
import type { ConnectionContext } from '../../machines/connection.js';
import type { ConnectionRecord, Store } from '../stores/types.js';
import { highlightSvgPath, type MachineRegistry } from '../viz/index.js';

export interface ConsoleOptions {
  /** The attached store (read directly for the bounded console queries). */
  store: Store;
  /**
   * Whether retry and cancel may run in this process: true, or why not (shown to the operator). An engine
   * that would host syncs itself must not act unless asked (see `banksync serve --run-syncs`).
   */
  actions: true | { disabled: string };
  /** Default Date.now. */
  now?: () => number;
}

const MINUTES_MAX = 366 * 24 * 60;
const Minutes = z.coerce.number().int().min(0).max(MINUTES_MAX);
const Limit = z.coerce.number().int().min(1).max(200).default(50);
const Tenant = z.string().min(1).max(128);
const Status = z.enum(['QUEUED', 'RUNNING', 'AWAIT_AUTH', 'COMPLETED', 'FAILED']);
/** `<createdAt>.<syncId>` of the last row of the previous page. */
const Cursor = z
  .string()
  .max(300)
  .regex(/^\d{1,16}\.\S+$/, 'must be the `next` value of the previous page')
  .transform((value) => {
    const dot = value.indexOf('.');
    return { createdAt: Number(value.slice(0, dot)), syncId: value.slice(dot + 1) };
  });

const SyncsQuery = z.strictObject({
  status: Status.optional(),
  provider: z.string().min(1).max(64).optional(),
  tenant: Tenant.optional(),
  /** Created at least this many minutes ago. */
  olderThan: Minutes.optional(),
  /** Created within the last this many minutes. */
  newerThan: Minutes.optional(),
  limit: Limit,
  after: Cursor.optional(),
});
const StaleQuery = z.strictObject({ minutes: Minutes.default(15), tenant: Tenant.optional(), limit: Limit });
const ConnectionsQuery = z.strictObject({ kind: z.enum(['breaker', 'user', 'cooldown']), tenant: Tenant.optional(), limit: Limit });
const DetailQuery = z.strictObject({ tenant: Tenant.default('default') });
const RetryBody = z.strictObject({ tenantId: Tenant.default('default'), connectionId: z.string().min(1).max(256), provider: z.string().min(1).max(64) });
const CancelBody = z.strictObject({ tenantId: Tenant.default('default') });

/** How many IDLE connections a cooldown listing looks at (cooldowns live in the context, not in an index). */
const COOLDOWN_SCAN = 500;

export interface ConsoleConnection {
  tenantId: string;
  connectionId: string;
  provider: string;
  state: string;
  consecutiveFailures: number;
  transientFailures: number;
  cooldownUntil: number | null;
  needsUser: ConnectionContext['needsUser'];
  lastSync: ConnectionContext['lastSync'];
  activeSyncId: string | null;
  updatedAt: number;
}

function toConsoleConnection(record: ConnectionRecord): ConsoleConnection {
  const c = (record.context ?? {}) as Partial<ConnectionContext>;
  return {
    tenantId: record.tenantId,
    connectionId: record.connectionId,
    provider: record.provider,
    state: record.state,
    consecutiveFailures: c.consecutiveFailures ?? 0,
    transientFailures: c.transientFailures ?? 0,
    cooldownUntil: c.cooldownUntil ?? null,
    needsUser: c.needsUser ?? null,
    lastSync: c.lastSync ?? null,
    activeSyncId: c.activeSyncId ?? null,
    updatedAt: record.updatedAt,
  };
}

const cursorOf = (page: SyncView[], limit: number): string | null => {
  const last = page[page.length - 1];
  return page.length === limit && last ? `${last.createdAt}.${last.syncId}` : null;
};

export function registerConsole(
  app: FastifyInstance,
  options: ConsoleOptions & { engine: SyncEngine; machine: string; machines: MachineRegistry },
): void {
  const { store, engine } = options;
  const now = options.now ?? Date.now;
  const MINUTE = 60_000;

  const invalid = (reply: FastifyReply, where: string, error: z.ZodError) =>
    reply.status(400).send({
      error: {
        code: 'INVALID_REQUEST',
        message: `invalid ${where}: ${error.issues.map((i) => `${i.path.join('.') || (i.code === 'unrecognized_keys' ? i.keys.join(', ') : '(root)')}: ${i.message}`).join('; ')}`,
        issues: error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
      },
    });
  const readOnly = (reply: FastifyReply) =>
    options.actions === true ? null : reply.status(409).send({ error: { code: 'READ_ONLY', message: `this console is read-only: ${options.actions.disabled}` } });

  app.get('/api/console/about', async () => ({
    store: store.kind,
    machine: options.machine,
    actions: options.actions === true ? { enabled: true } : { enabled: false, reason: options.actions.disabled },
  }));

  app.get('/api/console/syncs', async (request, reply) => {
    const q = SyncsQuery.safeParse(request.query);
    if (!q.success) return invalid(reply, 'query', q.error);
    const { status, provider, tenant, olderThan, newerThan, limit, after } = q.data;
    const at = now();
    const records = await store.listSyncs({
      ...(status ? { status } : {}),
      ...(provider ? { provider } : {}),
      ...(tenant ? { tenantId: tenant } : {}),
      ...(olderThan !== undefined ? { createdBefore: at - olderThan * MINUTE + 1 } : {}),
      ...(newerThan !== undefined ? { createdAfter: at - newerThan * MINUTE } : {}),
      ...(after ? { after } : {}),
      limit,
    });
    const syncs = records.map(toView);
    return { syncs, next: cursorOf(syncs, limit) };
  });

  app.get('/api/console/stale', async (request, reply) => {
    const q = StaleQuery.safeParse(request.query);
    if (!q.success) return invalid(reply, 'query', q.error);
    const records = await store.listSyncs({
      active: true,
      updatedBefore: now() - q.data.minutes * MINUTE + 1,
      ...(q.data.tenant ? { tenantId: q.data.tenant } : {}),
      limit: q.data.limit,
    });
    return { minutes: q.data.minutes, syncs: records.map(toView) };
  });

  app.get('/api/console/connections', async (request, reply) => {
    const q = ConnectionsQuery.safeParse(request.query);
    if (!q.success) return invalid(reply, 'query', q.error);
    const { kind, tenant, limit } = q.data;
    const tenantFilter = tenant ? { tenantId: tenant } : {};
    if (kind !== 'cooldown') {
      const records = await store.listConnections({ state: kind === 'breaker' ? 'DISABLED' : 'NEEDS_USER', ...tenantFilter, limit });
      return { kind, connections: records.map(toConsoleConnection) };
    }
    const at = now();
    const records = await store.listConnections({ state: 'IDLE', ...tenantFilter, limit: COOLDOWN_SCAN });
    const cooling = records.map(toConsoleConnection).filter((c) => c.cooldownUntil !== null && c.cooldownUntil > at);
    return { kind, connections: cooling.slice(0, limit), scanned: records.length, complete: records.length < COOLDOWN_SCAN };
  });

  app.get<{ Params: { id: string } }>('/api/console/syncs/:id', async (request, reply) => {
    const q = DetailQuery.safeParse(request.query);
    if (!q.success) return invalid(reply, 'query', q.error);
    const sync = await engine.get(request.params.id, { tenantId: q.data.tenant });
    const history = await engine.history(sync.syncId, { tenantId: q.data.tenant });
    return { sync, history, machine: options.machine, svg: highlightSvgPath(options.machine, sync.state, history, options.machines) };
  });

  app.post('/api/console/connections/retry', async (request, reply) => {
    const body = RetryBody.safeParse(request.body);
    if (!body.success) return invalid(reply, 'request body', body.error);
    const refused = readOnly(reply);
    if (refused) return refused;
    const sync = await engine.requestSync({ ...body.data, unattended: false });
    return reply.status(201).send({ sync });
  });

  app.post<{ Params: { id: string } }>('/api/console/syncs/:id/cancel', async (request, reply) => {
    const body = CancelBody.safeParse(request.body ?? {});
    if (!body.success) return invalid(reply, 'request body', body.error);
    const refused = readOnly(reply);
    if (refused) return refused;
    const sync = await engine.cancel(request.params.id, { tenantId: body.data.tenantId, reason: 'cancelled in the operator console' });
    return { sync };
  });
}
