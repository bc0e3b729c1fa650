/** A watch request as a client sees it: the body as it arrives, and how the response ended. */
import https from 'node:https';

export const podEvent = (name: string) => ({ type: 'ADDED', object: { kind: 'Pod', metadata: { name } } });

export interface WatchClient {
  /** 'complete': the response ended cleanly (chunked terminator); 'cut': the connection went away before. */
  ended: Promise<'complete' | 'cut'>;
  body(): string;
  /** The body so far, one JSON value per line (throws on a line that is not JSON). */
  lines(): unknown[];
}

export function openWatch(baseUrl: string, ca: string, path: string, token: string, headers: Record<string, string> = {}): WatchClient {
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
