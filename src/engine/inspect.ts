/**
 * Live inspection of every hosted sync actor in the Stately inspector, over a localhost WebSocket.
 *
 *   const inspector = await createStatelyInspector();          // starts the local bridge on :8080
 *   const engine = createEngine({ ..., inspect: inspector.inspect });
 *   // open inspector.url (http://localhost:8080) in a browser: it embeds https://stately.ai/inspect
 *   await inspector.stop();
 *
 * Wraps `@statelyai/inspect`: `createWebSocketInspector` sends the engine's XState inspection events to a
 * WebSocket; the bridge (ours, on loopback, like `@statelyai/inspect/server`) relays them to the page it serves, which posts them
 * into the Stately inspector UI. Events carry machine snapshots (context: ids, provider refs, challenge
 * prompts, results); no TAN or credential is ever in them (answers travel as opaque `responseRef`s).
 * The bridge listens on 127.0.0.1 only and answers only to localhost Host names.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { createWebSocketInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import type { AnyEventObject, InspectionEvent, MachineContext } from 'xstate';

export const DEFAULT_INSPECTOR_PORT = 8080;
/** The bridge relays every sync's states to whoever connects: loopback only. */
const BRIDGE_HOST = '127.0.0.1';
const STATELY_INSPECTOR_URL = 'https://stately.ai/inspect';
/** Events replayed to an inspector page that connects late. */
const BRIDGE_REPLAY = 200;

interface WsSocket {
  readyState: number;
  send(data: string): void;
  on(event: 'message', listener: (data: Buffer) => void): void;
}
interface WsServer {
  clients: Set<WsSocket>;
  on(event: 'connection', listener: (socket: WsSocket) => void): void;
  close(): void;
}
interface WsModule {
  WebSocketServer: new (options: { server: Server; verifyClient: (info: { req: IncomingMessage }) => boolean }) => WsServer;
  WebSocket: { OPEN: number };
}
// `ws` is @statelyai/inspect's own WebSocket dependency, installed with it. Its bridge server
// (createInspectorServer) listens on every interface and cannot be told otherwise, hence this one.
const ws = createRequire(import.meta.url)('ws') as WsModule;

/** Host headers of a local browser, matched exactly (DNS rebinding: `127.evil.example` is another site). */
function localHost(req: IncomingMessage, port: number): boolean {
  const host = (req.headers.host ?? '').toLowerCase();
  return ['localhost', '127.0.0.1', '[::1]'].some((name) => host === name || host === `${name}:${port}`);
}

/** The page embeds the Stately inspector and forwards what the bridge relays to it (postMessage). */
function bridgePage(): string {
  return `<!DOCTYPE html>
<html><head><title>banksync: Stately inspector</title>
<style>html, body { height: 100%; margin: 0; } iframe { width: 100%; height: 100%; border: none; }</style></head>
<body><iframe id="inspector" src="${STATELY_INSPECTOR_URL}"></iframe>
<script>
  const iframe = document.getElementById('inspector');
  const pending = [];
  let connected = false;
  window.addEventListener('message', (e) => {
    if (e.data && e.data.type === '@statelyai.connected') {
      connected = true;
      for (const event of pending.splice(0)) iframe.contentWindow.postMessage(event, '*');
    }
  });
  new WebSocket('ws://' + location.host).onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (connected) iframe.contentWindow.postMessage(event, '*');
    else pending.push(event);
  };
</script></body></html>`;
}

/** HTTP page + WebSocket relay on 127.0.0.1: every message from one client goes to all the others. */
async function startLoopbackBridge(port: number): Promise<{ stop(): void }> {
  const server = createHttpServer((req, res) => {
    if (!localHost(req, port)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('the inspector bridge only answers to localhost');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(bridgePage());
  });
  const relay = new ws.WebSocketServer({ server, verifyClient: ({ req }) => localHost(req, port) });
  const replay: string[] = [];
  relay.on('connection', (socket) => {
    for (const message of replay) socket.send(message);
    socket.on('message', (data) => {
      const message = data.toString();
      replay.push(message);
      if (replay.length > BRIDGE_REPLAY) replay.shift();
      for (const client of relay.clients) if (client !== socket && client.readyState === ws.WebSocket.OPEN) client.send(message);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, BRIDGE_HOST, () => resolve());
  });
  return {
    stop() {
      relay.close();
      server.close();
      server.closeAllConnections();
    },
  };
}

function openBrowser(url: string): void {
  const command = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'start' : 'xdg-open';
  import('node:child_process').then(({ execFile }) => execFile(command, [url], () => {}));
}

export interface StatelyInspectorOptions {
  /** Port of the local bridge (HTTP page + WebSocket). Default 8080. */
  port?: number;
  /**
   * Start the local bridge in this process. Default true; set false to connect to a bridge that runs
   * elsewhere (e.g. `npx @statelyai/inspect` style setups) at `url`.
   */
  server?: boolean;
  /** WebSocket URL to send events to. Default `ws://localhost:<port>`. */
  url?: string;
  /** Open the inspector page in the default browser (xdg-open/open/start). Default false. */
  open?: boolean;
  /** Only events for which this returns true are sent. */
  filter?: (event: StatelyInspectionEvent) => boolean;
  /** Rewrites snapshot contexts before they leave the process. */
  sanitizeContext?: (context: MachineContext) => MachineContext;
  /** Rewrites events before they leave the process. */
  sanitizeEvent?: (event: AnyEventObject) => AnyEventObject;
  /** How long to wait for the WebSocket to connect to our own bridge. Default 5000 ms. */
  connectTimeoutMs?: number;
}

export interface StatelyInspector {
  /** Pass as the engine's `inspect` option. */
  inspect: (event: InspectionEvent) => void;
  /** The page to open (`http://localhost:<port>`), or null when no bridge runs in this process. */
  url: string | null;
  /** Disconnects and stops the bridge; idempotent. */
  stop(): Promise<void>;
}

/** Fails early and clearly when the port is taken (the library's server would crash the process). */
function assertPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        new Error(
          error.code === 'EADDRINUSE'
            ? `inspector port ${port} is already in use (choose another port)`
            : `inspector port ${port} is not usable: ${error.message}`,
        ),
      );
    });
    probe.listen(port, BRIDGE_HOST, () => probe.close(() => resolve()));
  });
}

interface AdapterInternals {
  status?: string;
  ws?: unknown;
}

/**
 * The library's WebSocket adapter reconnects 5 s after any socket error, even after `stop()`. Once we
 * stop, sockets it opens later are terminated at once and its handlers land on a dummy, so no reconnect
 * loop keeps the process alive.
 */
function disarm(adapter: AdapterInternals): void {
  const dummy = {};
  Object.defineProperty(adapter, 'ws', {
    configurable: true,
    get: () => dummy,
    set: (socket: { on?: (event: string, fn: () => void) => void; terminate?: () => void; close?: () => void }) => {
      socket.on?.('error', () => undefined);
      if (socket.terminate) socket.terminate();
      else socket.close?.();
    },
  });
}

export async function createStatelyInspector(options: StatelyInspectorOptions = {}): Promise<StatelyInspector> {
  const port = options.port ?? DEFAULT_INSPECTOR_PORT;
  const withServer = options.server ?? true;
  let bridge: { stop(): void } | null = null;
  if (withServer) {
    await assertPortFree(port);
    bridge = await startLoopbackBridge(port);
    if (options.open) openBrowser(`http://localhost:${port}`);
  }
  const inspector = createWebSocketInspector({
    url: options.url ?? `ws://${BRIDGE_HOST}:${port}`,
    ...(options.filter ? { filter: options.filter } : {}),
    ...(options.sanitizeContext ? { sanitizeContext: options.sanitizeContext } : {}),
    ...(options.sanitizeEvent ? { sanitizeEvent: options.sanitizeEvent } : {}),
  });
  const adapter = inspector.adapter as unknown as AdapterInternals;

  if (bridge) {
    // Our own bridge is up (or about to be): wait for the socket so `stop()` never races a connect.
    const deadline = Date.now() + (options.connectTimeoutMs ?? 5_000);
    while (adapter.status !== 'open' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (adapter.status !== 'open') {
      inspector.stop();
      disarm(adapter);
      bridge.stop();
      throw new Error(`could not connect to the inspector bridge on port ${port}`);
    }
  }

  let stopped = false;
  return {
    inspect: (event) => {
      if (!stopped) inspector.inspect.next?.(event);
    },
    url: bridge ? `http://localhost:${port}` : null,
    async stop() {
      if (stopped) return;
      stopped = true;
      // Let already queued events (the library defers each by a timer tick) go out first.
      await new Promise((r) => setTimeout(r, 50));
      inspector.stop();
      disarm(adapter);
      bridge?.stop();
    },
  };
}
