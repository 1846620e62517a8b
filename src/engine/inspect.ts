/**
 * Live inspection of every hosted sync actor in the Stately inspector, over a localhost WebSocket.
 *
 *   const inspector = await createStatelyInspector();          // starts the local bridge on :8080
 *   const engine = createEngine({ ..., inspect: inspector.inspect });
 *   // open inspector.url (http://localhost:8080) in a browser: it embeds https://stately.ai/inspect
 *   await inspector.stop();
 *
 * Wraps `@statelyai/inspect`: `createWebSocketInspector` sends the engine's XState inspection events to a
 * WebSocket; the bridge (`@statelyai/inspect/server`) relays them to the page it serves, which posts them
 * into the Stately inspector UI. Events carry machine snapshots (context: ids, provider refs, challenge
 * prompts, results); no TAN or credential is ever in them (answers travel as opaque `responseRef`s).
 * The library's bridge listens on every interface of the port: use it on a developer machine.
 */
import { createServer } from 'node:net';
import { createWebSocketInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import type { AnyEventObject, InspectionEvent, MachineContext } from 'xstate';

export const DEFAULT_INSPECTOR_PORT = 8080;

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
    probe.listen(port, () => probe.close(() => resolve()));
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
    bridge = createInspectorServer({ port, autoOpen: options.open ?? false });
  }
  const inspector = createWebSocketInspector({
    url: options.url ?? `ws://localhost:${port}`,
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
