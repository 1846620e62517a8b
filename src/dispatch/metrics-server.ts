/**
 * A worker's metrics endpoint: `/metrics` in Prometheus text (an OpenTelemetry MeterProvider read by the
 * Prometheus exporter, no server of its own) and `/healthz` (200 while the worker is healthy, else 503, with a
 * small JSON body). Needs the optional peers @opentelemetry/sdk-metrics and @opentelemetry/exporter-prometheus;
 * loaded only when a metrics port is asked for.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

export interface Health {
  ok: boolean;
  [detail: string]: unknown;
}

export interface MetricsEndpoint {
  /** Give it to the engine (`telemetry.meterProvider`): what it records is served at /metrics. */
  readonly meterProvider: MeterProvider;
  /** Starts serving; resolves with the base URL (e.g. http://127.0.0.1:9464). */
  listen(port: number, host: string | undefined, health: () => Promise<Health>): Promise<string>;
  close(): Promise<void>;
}

export function createMetricsEndpoint(): MetricsEndpoint {
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const meterProvider = new MeterProvider({ readers: [exporter] });
  let server: Server | null = null;
  return {
    meterProvider,
    async listen(port, host, health) {
      server = createServer((req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.writeHead(405, { allow: 'GET, HEAD' }).end();
        } else if (path === '/metrics') {
          exporter.getMetricsRequestHandler(req, res);
        } else if (path === '/healthz') {
          health().then(
            (report) => {
              res.writeHead(report.ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
              res.end(JSON.stringify({ status: report.ok ? 'ok' : 'unavailable', ...report }));
            },
            () => {
              res.writeHead(503, { 'content-type': 'application/json' });
              res.end(JSON.stringify({ status: 'unavailable', ok: false }));
            },
          );
        } else {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
        }
      });
      const listening = server;
      await new Promise<void>((resolve, reject) => {
        listening.once('error', reject);
        listening.listen(port, host, () => {
          listening.off('error', reject);
          resolve();
        });
      });
      const address = listening.address() as AddressInfo;
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return `http://${shown === '0.0.0.0' || shown === '[::]' ? '127.0.0.1' : shown}:${address.port}`;
    },
    async close() {
      const listening = server;
      server = null;
      if (listening) {
        listening.closeAllConnections();
        await new Promise<void>((resolve) => listening.close(() => resolve()));
      }
      await meterProvider.shutdown().catch(() => {});
    },
  };
}
