/**
 * A fault-injecting HTTP proxy for the sandbox: node:http on 127.0.0.1, in front of a loopback target (the
 * sandbox). Requests that match a rule get a fault instead of (or on top of) the real answer; everything else
 * is forwarded unchanged. It works for every provider family without touching its module: point the adapter
 * at `${proxy.url}/<family>` instead of `${sandbox.url}/<family>`.
 *
 * Faults: hang (before or after the provider saw the request), connection reset (before or after), a canned
 * status (5xx bursts, 429 with any Retry-After), slow bodies, truncated bodies (short but well-formed, or cut
 * off mid-body), rewritten JSON bodies (unknown enum values...), and plain delays.
 *
 * Every request is recorded with the time of an injectable clock (`now`, e.g. XState's SimulatedClock), so a
 * test can count provider calls and measure the gaps between retries in simulated time.
 *
 * Test tooling only: nothing in the engine or the adapters imports it.
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ProxyRequestInfo {
  method: string;
  /** Path and query as received, e.g. `/finx/v2/accesses/acc_1/syncs`. */
  path: string;
}

export type FaultAction =
  /** Never answer. `forward: true` first lets the provider handle the request (its effect happens, the answer is lost). */
  | { kind: 'hang'; forward?: boolean }
  /** Destroy the connection. `forward: true` first lets the provider handle the request. */
  | { kind: 'reset'; forward?: boolean }
  /** Answer with this status, headers and body; the provider never sees the request. */
  | { kind: 'respond'; status: number; headers?: Record<string, string>; body?: string }
  /** Forward, then send the provider's body `chunkBytes` at a time, one chunk per `intervalMs` (wall clock). */
  | { kind: 'slow-body'; intervalMs: number; chunkBytes?: number }
  /**
   * Forward, then send only the first `keep` fraction (default 0.5) of the provider's body. By default the
   * response is well-formed with a short Content-Length (a body that is simply cut); with
   * `declareFullLength: true` the full length is announced and the connection dropped mid-body.
   */
  | { kind: 'truncate'; keep?: number; declareFullLength?: boolean }
  /** Forward, then replace the provider's JSON body by `transform(body)` (non-JSON bodies pass unchanged). */
  | { kind: 'rewrite'; transform: (body: unknown, request: ProxyRequestInfo) => unknown }
  /** Forward after `ms` (wall clock). */
  | { kind: 'delay'; ms: number };

export interface FaultRule {
  /** Shown in the request log. */
  name: string;
  match: (request: ProxyRequestInfo) => boolean;
  action: FaultAction;
  /** How many matching requests get the fault (default: all of them). */
  times?: number;
}

export type ProxyOutcome = 'pending' | 'answered' | 'reset' | 'hung' | 'client-aborted';

export interface ProxyRecord {
  seq: number;
  method: string;
  path: string;
  /** `now()` when the request arrived. */
  at: number;
  /** Name of the rule that applied, or null when forwarded unchanged. */
  fault: string | null;
  /** Whether the provider behind the proxy saw the request. */
  forwarded: boolean;
  /** Status sent to the client, or null if none was sent. */
  status: number | null;
  outcome: ProxyOutcome;
}

export interface FaultProxyOptions {
  /** Loopback base URL of the real server, e.g. `sandbox.url`. */
  target: string;
  /** Clock for `ProxyRecord.at`. Default Date.now. */
  now?: () => number;
}

export interface FaultProxy {
  /** Base URL of the proxy, e.g. `http://127.0.0.1:41235`. */
  readonly url: string;
  /** Every request so far, in arrival order. */
  readonly log: readonly ProxyRecord[];
  /** Requests whose client connection is still open (hung requests count until the client gives up). */
  inFlight(): number;
  /** Adds a rule; rules are tried in the order they were added. Returns a function that removes it. */
  inject(rule: FaultRule): () => void;
  clearFaults(): void;
  /** Resolves once no request is in flight. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'proxy-connection', 'upgrade', 'te', 'trailer']);

interface Upstream {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

function forwardHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || name === 'host') continue;
    out[name] = value;
  }
  return out;
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  if (target.protocol !== 'http:' || !LOOPBACK.has(target.hostname)) {
    throw new Error('fault proxy: the target must be a loopback http:// URL');
  }
  const now = options.now ?? Date.now;
  const rules: { rule: FaultRule; left: number }[] = [];
  const log: ProxyRecord[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let open = 0;
  let idleWaiters: (() => void)[] = [];
  let closing = false;

  const finished = () => {
    open -= 1;
    if (open === 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  };

  const forward = (req: IncomingMessage, body: Buffer): Promise<Upstream> =>
    new Promise((resolve, reject) => {
      const upstream = httpRequest(
        {
          host: target.hostname.replace(/^\[|\]$/g, ''),
          port: target.port,
          method: req.method,
          path: req.url,
          headers: { ...forwardHeaders(req.headers), 'content-length': String(body.length) },
        },
        (response) => {
          readAll(response).then((buffer) => resolve({ status: response.statusCode ?? 502, headers: response.headers, body: buffer }), reject);
        },
      );
      upstream.on('error', reject);
      upstream.end(body);
    });

  const later = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  function pick(info: ProxyRequestInfo): FaultRule | null {
    for (const entry of rules) {
      if (entry.left > 0 && entry.rule.match(info)) {
        entry.left -= 1;
        return entry.rule;
      }
    }
    return null;
  }

  async function handle(req: IncomingMessage, res: ServerResponse, record: ProxyRecord): Promise<void> {
    const body = await readAll(req);
    const info = { method: record.method, path: record.path };
    const rule = pick(info);
    record.fault = rule?.name ?? null;
    const action = rule?.action;
    const alive = () => !res.destroyed && !req.socket.destroyed && !closing;

    const send = (upstream: Upstream, replacement?: Buffer) => {
      const payload = replacement ?? upstream.body;
      record.status = upstream.status;
      res.writeHead(upstream.status, { ...forwardHeaders(upstream.headers), 'content-length': String(payload.length) });
      res.end(payload);
      record.outcome = 'answered';
    };

    if (action?.kind === 'respond') {
      record.status = action.status;
      const payload = Buffer.from(action.body ?? '');
      res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers, 'content-length': String(payload.length) });
      res.end(payload);
      record.outcome = 'answered';
      return;
    }
    if ((action?.kind === 'hang' || action?.kind === 'reset') && !action.forward) {
      if (action.kind === 'reset') {
        record.outcome = 'reset';
        req.socket.destroy();
      } else {
        record.outcome = 'hung';
      }
      return;
    }
    if (action?.kind === 'delay') await later(action.ms);
    if (!alive()) return;

    const upstream = await forward(req, body);
    record.forwarded = true;
    if (!alive()) return;

    switch (action?.kind) {
      case 'hang':
        record.outcome = 'hung';
        return;
      case 'reset':
        record.outcome = 'reset';
        req.socket.destroy();
        return;
      case 'truncate': {
        const keep = Math.max(0, Math.min(upstream.body.length - 1, Math.floor(upstream.body.length * (action.keep ?? 0.5))));
        const part = upstream.body.subarray(0, keep);
        if (!action.declareFullLength) {
          send(upstream, part);
          return;
        }
        record.status = upstream.status;
        res.writeHead(upstream.status, { ...forwardHeaders(upstream.headers), 'content-length': String(upstream.body.length) });
        res.write(part, () => {
          record.outcome = 'reset';
          req.socket.destroy();
        });
        return;
      }
      case 'slow-body': {
        const size = Math.max(1, action.chunkBytes ?? 8);
        record.status = upstream.status;
        res.writeHead(upstream.status, { ...forwardHeaders(upstream.headers), 'content-length': String(upstream.body.length) });
        for (let offset = 0; offset < upstream.body.length; offset += size) {
          if (!alive()) return;
          res.write(upstream.body.subarray(offset, offset + size));
          await later(action.intervalMs);
        }
        if (!alive()) return;
        res.end();
        record.outcome = 'answered';
        return;
      }
      case 'rewrite': {
        let json: unknown;
        try {
          json = JSON.parse(upstream.body.toString('utf8'));
        } catch {
          send(upstream);
          return;
        }
        send(upstream, Buffer.from(JSON.stringify(action.transform(json, info))));
        return;
      }
      default:
        send(upstream);
    }
  }

  const server = createServer((req, res) => {
    open += 1;
    const record: ProxyRecord = {
      seq: log.length + 1,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      at: now(),
      fault: null,
      forwarded: false,
      status: null,
      outcome: 'pending',
    };
    log.push(record);
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      if (record.outcome === 'pending') record.outcome = 'client-aborted';
      finished();
    };
    res.on('close', end);
    handle(req, res, record).catch(() => {
      // The provider behind the proxy is gone or the client left: drop the connection.
      if (record.outcome === 'pending') record.outcome = 'reset';
      req.socket.destroy();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    log,
    inFlight: () => open,
    inject(rule) {
      const entry = { rule, left: rule.times ?? Number.POSITIVE_INFINITY };
      rules.push(entry);
      return () => {
        const index = rules.indexOf(entry);
        if (index >= 0) rules.splice(index, 1);
      };
    },
    clearFaults() {
      rules.length = 0;
    },
    idle() {
      return open === 0 ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    async close() {
      closing = true;
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
