/**
 * A recording HTTP proxy for contract tests: the adapter talks to the proxy, the proxy to the sandbox; every
 * exchange (method, path, request body, status, response body) is kept so it can be checked against the
 * provider's published schemas, independently of the sandbox's own code. Plus a receiver for callbacks.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Exchange {
  method: string;
  /** Path and query below the proxy root, e.g. `/finapi/api/tasks?page=1`. */
  path: string;
  requestBody: string;
  status: number;
  contentType: string;
  responseBody: string;
}

export interface Recorder {
  readonly url: string;
  readonly exchanges: Exchange[];
  /** Where requests go (changeable between scenarios). */
  target: string;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export async function startRecorder(target: string): Promise<Recorder> {
  const exchanges: Exchange[] = [];
  const recorder = { exchanges, target } as Recorder & { url: string };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const requestBody = Buffer.concat(chunks).toString('utf8');
      const upstream = new URL(req.url ?? '/', recorder.target);
      const headers = { ...req.headers, host: upstream.host };
      const forward = httpRequest(upstream, { method: req.method ?? 'GET', headers }, (answer) => {
        const body: Buffer[] = [];
        answer.on('data', (c: Buffer) => body.push(c));
        answer.on('end', () => {
          const responseBody = Buffer.concat(body).toString('utf8');
          exchanges.push({
            method: req.method ?? 'GET',
            path: req.url ?? '/',
            requestBody,
            status: answer.statusCode ?? 0,
            contentType: String(answer.headers['content-type'] ?? ''),
            responseBody,
          });
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(responseBody);
        });
      });
      forward.on('error', () => {
        res.statusCode = 502;
        res.end();
      });
      forward.end(requestBody);
    });
  });
  recorder.url = await listen(server);
  recorder.close = () => closeServer(server);
  return recorder;
}

export interface Receiver {
  readonly url: string;
  readonly bodies: { path: string; body: string }[];
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const bodies: { path: string; body: string }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push({ path: req.url ?? '', body: Buffer.concat(chunks).toString('utf8') });
      res.statusCode = 200;
      res.end();
    });
  });
  const url = await listen(server);
  return { url, bodies, close: () => closeServer(server) };
}
