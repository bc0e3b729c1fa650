/**
 * `kube-relay proxy` (DESIGN §12): a plain-HTTP proxy on a loopback address
 * for clients that cannot run an exec credential plugin (curl, scripts,
 * some agent sandboxes). Every request and upgrade (watch, logs -f, exec,
 * attach, port-forward over WebSocket or SPDY) goes on to the relay or the
 * hub over HTTPS with the proxy's own fresh token in `Authorization`; a
 * credential the client sends is dropped, never forwarded. When no token
 * can be had, requests are answered with a Kubernetes Status naming the
 * issuer's reason, so kubectl prints it.
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { PROXY_SESSION_HEADER } from '../audit/record.js';
import type { Logger } from '../log.js';
import { writeStatus, writeStatusToSocket } from '../request-stages/errors.js';
import { type ProxyTarget, proxyRequest, proxyUpgrade } from '../request-stages/kubernetes-proxy.js';
import type { TokenSource } from './token-source.js';

export interface LocalProxyOptions {
  host: string;
  port: number;
  /** The relay's URL, or https://HUB/clusters/NAME. */
  server: string;
  /** Trust for the server (PEM); undefined: the system roots. */
  serverCa?: string | Buffer | undefined;
  tokens: TokenSource;
  /** The run's session id (proxy-run.ts), sent as Kube-Relay-Session on every request; undefined when the issuer opened none. */
  session?: string | undefined;
  log: Logger;
}

export interface RunningLocalProxy {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Headers a client behind the proxy must not set: the proxy's token is the only credential. */
const CLIENT_CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization', 'cookie'];

export async function startLocalProxy(options: LocalProxyOptions): Promise<RunningLocalProxy> {
  const { log } = options;
  const server = new URL(options.server);
  const agent = new https.Agent({ keepAlive: true, ...(options.serverCa ? { ca: options.serverCa } : {}) });
  const target: ProxyTarget = {
    protocol: 'https:',
    hostname: server.hostname.replace(/^\[|\]$/g, ''),
    port: Number(server.port || 443),
    agent,
    pathPrefix: server.pathname.replace(/\/+$/, ''),
    host: 'target',
  };
  const unreachable = (err: Error) => {
    log.warn('the relay could not be reached', { server: options.server, error: err.message });
    return `kube-relay proxy cannot reach ${options.server}: ${err.message}`;
  };

  let refusalSaid: string | undefined;
  const withToken = async (req: IncomingMessage): Promise<string | undefined> => {
    try {
      const token = await options.tokens.token();
      if (refusalSaid !== undefined) log.info('tokens are minted again; forwarding');
      refusalSaid = undefined;
      for (const name of CLIENT_CREDENTIAL_HEADERS) delete req.headers[name];
      delete req.headers[PROXY_SESSION_HEADER];
      return token;
    } catch (err) {
      const reason = (err as Error).message;
      if (refusalSaid !== reason) log.error(`no token: requests are refused until one can be minted (${reason})`);
      refusalSaid = reason;
      return undefined;
    }
  };
  const upstreamHeaders = (req: IncomingMessage, token: string): http.OutgoingHttpHeaders => ({
    ...req.headers,
    authorization: `Bearer ${token}`,
    ...(options.session ? { [PROXY_SESSION_HEADER]: options.session } : {}),
  });
  const refusal = () => `kube-relay proxy has no token for the cluster: ${options.tokens.failure ?? 'the issuer did not answer'}`;

  const listener = http.createServer(async (req, res) => {
    const token = await withToken(req);
    if (token === undefined) return writeStatus(res, 401, refusal());
    proxyRequest(target, req, res, {
      headers: upstreamHeaders(req, token),
      onError: (err) => {
        const message = unreachable(err);
        if (!res.headersSent) writeStatus(res, 502, message);
        else res.destroy();
      },
    });
  });
  listener.on('upgrade', async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const token = await withToken(req);
    if (token === undefined) return writeStatusToSocket(socket, 401, refusal());
    proxyUpgrade(target, req, socket, head, { headers: upstreamHeaders(req, token), onError: (err) => writeStatusToSocket(socket, 502, unreachable(err)) });
  });
  // Upgraded connections (exec, port-forward) are the listener's no more: closing must end them itself.
  const sockets = new Set<Duplex>();
  listener.on('connection', (socket: Duplex) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(options.port, options.host, () => resolve());
  });
  const port = (listener.address() as { port: number }).port;
  const hostPart = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${hostPart}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        listener.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** Loopback only: the proxy adds a credential to whatever reaches it. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
