// `--listen [ADDR:]PORT`: /healthz and /metrics over plain HTTP (docs/operations.md). Off by
// default; an address-less port binds 127.0.0.1 only.
import { createServer, type Server } from 'node:http';
import { isIP } from 'node:net';
import type { Registry } from 'prom-client';
import { UsageError } from '../errors.js';
import type { Health } from './health.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/** `9100`, `0.0.0.0:9100`, `[::1]:9100`; port 0 picks a free port (logged at start). */
export function parseListen(text: string): ListenAddress {
  const match = /^(?:(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):)?(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw new UsageError(`--listen ${JSON.stringify(text)} is not [ADDR:]PORT (e.g. 9100, 127.0.0.1:9100, [::1]:9100)`);
  const host = (match[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) === 0) throw new UsageError(`--listen ${JSON.stringify(text)}: ${JSON.stringify(host)} is not an IP address`);
  return { host, port };
}

export interface HttpHandlers {
  health(): Health;
  registry: Registry;
}

export async function startHttp(address: ListenAddress, handlers: HttpHandlers): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const reply = (status: number, type: string, body: string): void => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      response.end(request.method === 'HEAD' ? undefined : body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') return reply(405, 'text/plain', 'method not allowed\n');
    if (path === '/healthz') {
      const health = handlers.health();
      return reply(health.healthy ? 200 : 503, 'application/json', `${JSON.stringify(health)}\n`);
    }
    if (path === '/metrics') {
      handlers.registry.metrics().then(
        (text) => reply(200, handlers.registry.contentType, text),
        (error: Error) => reply(500, 'text/plain', `metrics failed: ${error.message}\n`),
      );
      return;
    }
    reply(404, 'text/plain', 'not found: try /healthz or /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : address.port;
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
