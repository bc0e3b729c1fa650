/**
 * A relay written by hand for attacks on the hub: the tunnel handshake with
 * a real connector key, then raw mux frames, whatever the test sends.
 */
import https from 'node:https';
import WebSocket from 'ws';
import { CLUSTER_HEADER } from '../../src/tunnel/handshake.js';
import { MAX_MESSAGE_BYTES } from '../../src/tunnel/mux.js';
import type { Stack } from './stack.js';

export function frame(type: number, id: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(id, 1);
  return Buffer.concat([header, Buffer.from(payload)]);
}

export interface FakeRelay {
  ws: WebSocket;
  /** Frames the hub sent, in order (while the relay reads). */
  frames: { type: number; id: number; payload: Buffer }[];
  /** The close code, once the tunnel is closed. */
  closed: Promise<number>;
  /** Stops reading the connection: the hub's bytes stay in the kernel's buffers, then in the hub's. */
  stopReading(): void;
}

/** `headers`: more handshake headers, such as the channel mark of a direct-mode relay's control channel. */
export function dialHub(stack: Stack, key: string, cluster: string, headers: Record<string, string> = {}): Promise<FakeRelay> {
  const ws = new WebSocket(`${stack.issuer.url.replace('https', 'wss')}/v1/tunnel`, {
    ca: stack.caPem,
    perMessageDeflate: false,
    maxPayload: MAX_MESSAGE_BYTES, // as the real relay
    headers: { authorization: `Bearer ${key}`, [CLUSTER_HEADER]: cluster, ...headers },
  });
  const frames: FakeRelay['frames'] = [];
  ws.on('message', (data: Buffer) => frames.push({ type: data.readUInt8(0), id: data.readUInt32BE(1), payload: data.subarray(5) }));
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  const stopReading = () => (ws as unknown as { _socket: { pause(): void } })._socket.pause();
  return new Promise((resolve, reject) => {
    ws.on('open', () => resolve({ ws, frames, closed, stopReading }));
    // Rejects with the hub's own sentence (its Status body) and the HTTP status.
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => {
        let message = `the hub refused the tunnel: ${res.statusCode}`;
        try {
          message = (JSON.parse(body) as { message?: string }).message ?? message;
        } catch {
          // not a Status body: keep the status line
        }
        reject(Object.assign(new Error(message), { status: res.statusCode }));
      });
    });
    ws.on('error', () => undefined);
  });
}

/**
 * An agent's upload of `size` bytes through the hub, written as fast as the
 * connection takes it. Resolves with the answer's status, or 0 when the
 * connection broke without one; `sent` counts the bytes the client wrote.
 */
export function upload(stack: Stack, path: string, token: string, size: number): { result: Promise<number>; sent: () => number; abort(): void } {
  const chunk = Buffer.alloc(64 * 1024, 'u');
  let sent = 0;
  const req = https.request(`${stack.issuer.url}${path}`, {
    method: 'POST',
    ca: stack.caPem,
    agent: false,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': size },
  });
  const result = new Promise<number>((resolve) => {
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', () => resolve(0));
    req.on('close', () => resolve(0));
  });
  const pump = () => {
    while (sent < size && !req.destroyed) {
      const piece = chunk.subarray(0, Math.min(chunk.length, size - sent));
      sent += piece.length;
      if (!req.write(piece)) {
        req.once('drain', pump);
        return;
      }
    }
    if (sent >= size) req.end();
  };
  pump();
  return { result, sent: () => sent, abort: () => req.destroy() };
}

/** The value of a hub gauge for one cluster on the issuer's /metrics (0 when the cluster has no tunnel). */
export async function hubGauge(stack: Stack, name: string, cluster: string): Promise<number> {
  const metrics = await (await fetch(`http://127.0.0.1:${stack.issuer.adminPort}/metrics`)).text();
  return Number(new RegExp(`^${name}\\{cluster="${cluster}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
}
