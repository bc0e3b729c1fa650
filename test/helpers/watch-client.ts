/** A watch request as a client sees it: the body as it arrives, and how the response ended. */
import https from 'node:https';
import { h2Session, h2Watch } from './h2-client.js';
import { type ClientProtocol, requestProtocol } from './http.js';

export const podEvent = (name: string) => ({ type: 'ADDED', object: { kind: 'Pod', metadata: { name } } });

export interface WatchClient {
  /** 'complete': the response ended cleanly (chunked terminator); 'cut': the connection went away before. */
  ended: Promise<'complete' | 'cut'>;
  body(): string;
  /** The body so far, one JSON value per line (throws on a line that is not JSON). */
  lines(): unknown[];
}

export function openWatch(baseUrl: string, ca: string, path: string, token: string, headers: Record<string, string> = {}, protocol: ClientProtocol = requestProtocol()): WatchClient {
  if (protocol === 'h2') return openH2Watch(baseUrl, ca, path, token, headers);
  let body = '';
  const ended = new Promise<'complete' | 'cut'>((resolve) => {
    const req = https.get(`${baseUrl}${path}`, { headers: { authorization: `Bearer ${token}`, ...headers }, ca, agent: false }, (res) => {
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      res.on('error', () => undefined);
      res.on('close', () => resolve(res.complete ? 'complete' : 'cut'));
    });
    req.on('error', () => resolve('cut'));
  });
  return { ended, body: () => body, lines: () => body.trimEnd().split('\n').map((line) => JSON.parse(line) as unknown) };
}

/** The same over HTTP/2, on a session of its own that closes when the watch has ended. */
function openH2Watch(baseUrl: string, ca: string, path: string, token: string, headers: Record<string, string>): WatchClient {
  let watch: ReturnType<typeof h2Watch> | undefined;
  const ended = h2Session(baseUrl, ca).then(async (session) => {
    watch = h2Watch(session, `${new URL(baseUrl).pathname.replace(/\/$/, '')}${path}`, token, headers);
    const how = await watch.ended;
    session.close();
    return how;
  });
  return { ended, body: () => watch?.body() ?? '', lines: () => watch?.lines() ?? [] };
}
