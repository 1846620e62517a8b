/**
 * The offline viewer: a local web page (fastify; inline JS/CSS, no CDN, no external request) that lists
 * connections and syncs, shows a selected sync's machine diagram with its current state highlighted and
 * its transition history, updates live over Server-Sent Events (engine `sync.updated`), and triggers
 * syncs (`POST /api/syncs`), answers embedded challenges and cancels syncs.
 *
 * HTTP API (JSON):
 *   GET  /api/connections            configured connections + any seen in syncs
 *   GET  /api/syncs                  newest first (engine.list)
 *   GET  /api/syncs/:id              { sync, history, svg }  (svg: diagram with the current state highlighted)
 *   POST /api/syncs                  { connectionId, provider, scope? } -> 201 { sync }
 *   POST /api/syncs/:id/answer       { challengeId, response }  (the TAN goes to the engine, never stored)
 *   POST /api/syncs/:id/cancel       {}
 *   GET  /api/events                 text/event-stream, `event: sync` with a SyncView per committed transition
 *   GET  /machines/:name.svg         plain diagram
 *
 * With `console` (the operator console, attached to a real store) the page and API are those of console.ts
 * instead of the demo's connections/syncs/answer routes.
 *
 * Binds 127.0.0.1 by default; on a loopback address, requests whose Host is not a loopback name are refused
 * (DNS rebinding), and every POST must be `application/json` (no cross-site form posts) and, when the browser
 * names an Origin, same-origin. Any other address needs `token`, checked (constant-time) on every request.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { isIPv4 } from 'node:net';
import Fastify, { type FastifyError, type FastifyReply } from 'fastify';
import { z } from 'zod';
import type { SyncEngine } from '../engine/engine.js';
import { BanksyncError } from '../engine/errors.js';
import type { SyncView } from '../engine/view.js';
import { highlightSvg, type MachineRegistry } from '../viz/index.js';
import { machines as registry } from '../../machines/index.js';
import { renderPage } from './page.js';
import { registerConsole, type ConsoleOptions } from './console.js';
import { renderConsolePage } from './console-page.js';

export interface ViewerConnection {
  connectionId: string;
  provider: string;
  /** Short name shown in the list (e.g. the sandbox scenario). */
  label?: string;
  description?: string;
}

export interface ViewerOptions {
  engine: SyncEngine;
  /** Default 0: a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Connections offered for "Sync now" before they have any sync. */
  connections?: ViewerConnection[];
  /** Registry name of the machine that drives syncs (its diagram is shown). Default 'synchronization'. */
  machine?: string;
  machines?: MachineRegistry;
  tenantId?: string;
  /** Page title. Default 'banksync viewer' ('banksync console' with `console`). */
  title?: string;
  /**
   * Operator console mode (attached to a real store): the console page and API (src/viewer/console.ts)
   * instead of the demo page and its sync/answer routes.
   */
  console?: ConsoleOptions;
  /**
   * Required to bind a non-loopback address. Every request must then carry it: `Authorization: Bearer <token>`,
   * or the HttpOnly SameSite=Strict cookie set by opening `/?token=<token>` once in the browser.
   */
  token?: string;
}

/** The viewer was asked to listen somewhere it may not (a non-loopback address without a token). */
export class ViewerConfigError extends Error {
  override readonly name = 'ViewerConfigError';
}

const TOKEN_COOKIE = 'banksync_console';
const digest = (text: string) => createHash('sha256').update(text).digest();
/** Constant-time: both sides are hashed to the same length first. */
function tokenMatches(given: string | undefined, expected: Buffer): boolean {
  return given !== undefined && timingSafeEqual(digest(given), expected);
}
function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

export interface Viewer {
  /** e.g. `http://127.0.0.1:4610` */
  readonly url: string;
  close(): Promise<void>;
}

const SyncRequestBody = z.object({
  connectionId: z.string().min(1).max(256),
  provider: z.string().min(1).max(64),
  scope: z.enum(['TRANSACTIONS', 'ACCOUNTS']).optional(),
});
const AnswerBody = z.object({ challengeId: z.string().min(1).max(256), response: z.string().min(1).max(4096) });
const HEARTBEAT_MS = 15_000;

const STATUS_BY_CODE: Record<string, number> = {
  INVALID_REQUEST: 400,
  PROVIDER_NOT_CONFIGURED: 400,
  SYNC_NOT_FOUND: 404,
  CONNECTION_NOT_FOUND: 404,
  CHALLENGE_NOT_PENDING: 409,
  SYNC_ALREADY_FINISHED: 409,
  SYNC_REFUSED: 409,
  ENGINE_STOPPED: 503,
  STORAGE_UNAVAILABLE: 503,
  STORE_FULL: 503,
  STORE_READ_ONLY: 503,
  STORE_CORRUPT: 503,
  STORE_UNAVAILABLE: 503,
  STORE_ERROR: 503,
};

/** The bind address is a loopback one (an address, or the name localhost). */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || (isIPv4(host) && host.startsWith('127.'));
}

/**
 * Host headers a browser sends to this server on this machine, matched exactly: a prefix test would let
 * `127.evil.example` (a DNS-rebinding name) through.
 */
function allowedHosts(bound: string, port: number): Set<string> {
  const names = ['localhost', '127.0.0.1', '[::1]', bound.includes(':') && !bound.startsWith('[') ? `[${bound}]` : bound];
  return new Set(names.flatMap((name) => [name, `${name}:${port}`]));
}

export async function startViewer(options: ViewerOptions): Promise<Viewer> {
  const { engine } = options;
  const host = options.host ?? '127.0.0.1';
  const machineName = options.machine ?? 'synchronization';
  const machines = options.machines ?? registry;
  const tenantId = options.tenantId ?? 'default';
  if (!machines[machineName]) throw new Error(`viewer: unknown machine ${JSON.stringify(machineName)}`);
  if (options.token !== undefined && options.token.length < 16) throw new ViewerConfigError('viewer: the token must be at least 16 characters');
  if (!isLoopback(host) && options.token === undefined) {
    throw new ViewerConfigError(`viewer: binding ${host} (not a loopback address) requires a token (--token or BANKSYNC_CONSOLE_TOKEN)`);
  }
  const configured = options.connections ?? [];
  const streams = new Set<ServerResponse>();

  const app = Fastify({ logger: false, forceCloseConnections: true, bodyLimit: 64 * 1024 });

  // Filled in once listening (the port may be chosen by the OS); no request is served before.
  let allowed = new Set<string>();
  if (isLoopback(host)) {
    app.addHook('onRequest', async (request, reply) => {
      if (!allowed.has((request.headers.host ?? '').toLowerCase())) {
        return reply.status(403).send({ error: { code: 'FORBIDDEN_HOST', message: 'the viewer only answers to localhost' } });
      }
    });
  }
  if (options.token !== undefined) {
    const expected = digest(options.token);
    app.addHook('onRequest', async (request, reply) => {
      const auth = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
      if (tokenMatches(auth, expected) || tokenMatches(cookieValue(request.headers.cookie, TOKEN_COOKIE), expected)) return;
      const url = new URL(request.url, 'http://viewer.invalid');
      const query = url.searchParams.get('token') ?? undefined;
      if (request.method === 'GET' && url.pathname === '/' && tokenMatches(query, expected)) {
        // Trade the token in the address for a cookie the browser sends on same-site requests only.
        return reply
          .header('set-cookie', `${TOKEN_COOKIE}=${encodeURIComponent(options.token!)}; HttpOnly; SameSite=Strict; Path=/`)
          .redirect('/', 303);
      }
      return reply.status(401).header('www-authenticate', 'Bearer').send({ error: { code: 'UNAUTHORIZED', message: 'a valid token is required' } });
    });
  }
  // State changes are same-origin only: a browser names the page that sent a POST in Origin.
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    if (request.method === 'POST' && origin !== undefined && origin !== 'null') {
      let sameHost = false;
      try {
        sameHost = new URL(origin).host.toLowerCase() === (request.headers.host ?? '').toLowerCase();
      } catch {
        sameHost = false;
      }
      if (!sameHost) return reply.status(403).send({ error: { code: 'FORBIDDEN_ORIGIN', message: 'cross-origin requests may not change anything' } });
    }
    if (request.method === 'POST' && origin === 'null') {
      return reply.status(403).send({ error: { code: 'FORBIDDEN_ORIGIN', message: 'cross-origin requests may not change anything' } });
    }
  });
  // Every POST must be JSON: a cross-site <form> cannot send application/json (that needs a CORS
  // preflight, which this server never answers), so no other site can trigger, answer or cancel a sync.
  app.addHook('onRequest', async (request, reply) => {
    if (request.method === 'POST' && !/^application\/json\s*(;|$)/i.test(request.headers['content-type'] ?? '')) {
      return reply.status(415).send({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send a JSON body (application/json)' } });
    }
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    void reply.header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer');
    return payload;
  });
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    if (error instanceof BanksyncError) {
      return reply.status(STATUS_BY_CODE[error.code] ?? 400).send({ error: error.toJSON() });
    }
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    return reply.status(status).send({ error: { code: status === 500 ? 'INTERNAL' : 'BAD_REQUEST', message: status === 500 ? 'internal error' : error.message } });
  });

  const invalid = (reply: FastifyReply, issues: z.ZodError) =>
    reply.status(400).send({
      error: { code: 'INVALID_REQUEST', message: 'invalid request body', issues: issues.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`) },
    });
  const syncs = async () => (await engine.list({ tenantId })).sort((a, b) => b.createdAt - a.createdAt || a.syncId.localeCompare(b.syncId));

  app.get('/', async (_request, reply) => {
    const nonce = randomBytes(16).toString('base64');
    return reply
      .header(
        'content-security-policy',
        `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      )
      .type('text/html; charset=utf-8')
      .send(
        options.console
          ? renderConsolePage({ nonce, title: options.title ?? 'banksync console', machine: machineName })
          : renderPage({ nonce, title: options.title ?? 'banksync viewer', machine: machineName }),
      );
  });

  app.get('/favicon.ico', async (_request, reply) => reply.status(204).send());

  if (options.console) {
    registerConsole(app, { ...options.console, engine, machine: machineName, machines });
  } else {
    app.get('/api/connections', async () => {
      const seen = new Map<string, ViewerConnection & { lastSync: SyncView | null }>();
      for (const c of configured) seen.set(`${c.provider}\u0000${c.connectionId}`, { ...c, lastSync: null });
      for (const s of await syncs()) {
        const key = `${s.provider}\u0000${s.connectionId}`;
        const entry = seen.get(key) ?? { connectionId: s.connectionId, provider: s.provider, lastSync: null };
        if (!entry.lastSync) entry.lastSync = s;
        seen.set(key, entry);
      }
      return { connections: [...seen.values()] };
    });

    app.get('/api/syncs', async () => ({ syncs: await syncs() }));

    app.get<{ Params: { id: string } }>('/api/syncs/:id', async (request) => {
      const sync = await engine.get(request.params.id, { tenantId });
      const history = await engine.history(sync.syncId, { tenantId });
      return { sync, history, machine: machineName, svg: highlightSvg(machineName, sync.state, machines) };
    });

    app.post('/api/syncs', async (request, reply) => {
      const body = SyncRequestBody.safeParse(request.body);
      if (!body.success) return invalid(reply, body.error);
      const sync = await engine.requestSync({ tenantId, ...body.data });
      return reply.status(201).send({ sync });
    });

    app.post<{ Params: { id: string } }>('/api/syncs/:id/answer', async (request, reply) => {
      const body = AnswerBody.safeParse(request.body);
      if (!body.success) return invalid(reply, body.error);
      const sync = await engine.submitChallengeResponse(request.params.id, body.data, { tenantId });
      return { sync };
    });

    app.post<{ Params: { id: string } }>('/api/syncs/:id/cancel', async (request) => {
      const sync = await engine.cancel(request.params.id, { tenantId, reason: 'cancelled in the viewer' });
      return { sync };
    });
  }

  app.get<{ Params: { name: string } }>('/machines/:name', async (request, reply) => {
    const name = request.params.name.replace(/\.svg$/, '');
    if (!machines[name]) return reply.status(404).send({ error: { code: 'NOT_FOUND', message: 'no such machine' } });
    return reply.type('image/svg+xml').header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'").send(highlightSvg(name, null, machines));
  });

  app.get('/api/events', (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    streams.add(res);
    const off = engine.events.on('sync.updated', (view) => {
      if (view.tenantId === tenantId) res.write(`event: sync\ndata: ${JSON.stringify(view)}\n\n`);
    });
    const heartbeat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    const done = () => {
      off();
      clearInterval(heartbeat);
      streams.delete(res);
    };
    request.raw.on('close', done);
    res.on('close', done);
  });

  await app.listen({ host, port: options.port ?? 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('viewer: unexpected listen address');
  allowed = allowedHosts(host, address.port);
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  let closed = false;
  return {
    url: `http://${shownHost}:${address.port}`,
    async close() {
      if (closed) return;
      closed = true;
      for (const res of streams) res.end();
      streams.clear();
      await app.close();
    },
  };
}
