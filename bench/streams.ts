/** The single-stream phase of npm run bench: one large body or upgraded stream each way, in MB/s. */
import https from 'node:https';
import tls from 'node:tls';
import type { Target } from './stack.js';

const CHUNK = Buffer.alloc(64 * 1024, 'b');

export function writeBytes(out: NodeJS.WritableStream, size: number, done: () => void): void {
  let left = size;
  const pump = () => {
    while (left > 0) {
      const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= chunk.length;
      if (!out.write(chunk)) {
        out.once('drain', pump);
        return;
      }
    }
    done();
  };
  pump();
}

const megabytesPerSecond = (bytes: number, startedAt: number) => bytes / 1e6 / ((performance.now() - startedAt) / 1000);

export async function bodyDownload(target: Target, ca: string, size: number): Promise<number> {
  const headers = await target.headers();
  const startedAt = performance.now();
  return new Promise((resolve, reject) => {
    https
      .get(`${target.base}/bench/bytes?size=${size}`, { ca, agent: false, headers }, (res) => {
        let received = 0;
        res.on('data', (chunk: Buffer) => (received += chunk.length));
        res.on('end', () => (received === size ? resolve(megabytesPerSecond(size, startedAt)) : reject(new Error(`got ${received} of ${size} bytes`))));
      })
      .on('error', reject);
  });
}

export async function bodyUpload(target: Target, ca: string, size: number): Promise<number> {
  const headers = await target.headers();
  const startedAt = performance.now();
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${target.base}/bench/sink`,
      { method: 'POST', ca, agent: false, headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': size } },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => {
          const received = (JSON.parse(text) as { received: number }).received;
          if (received === size) resolve(megabytesPerSecond(size, startedAt));
          else reject(new Error(`upstream got ${received} of ${size} bytes`));
        });
      },
    );
    req.on('error', reject);
    writeBytes(req, size, () => req.end());
  });
}

/** A port-forward-like upgrade: `source` streams `size` bytes to us, `sink` takes `size` bytes from us. */
export async function upgradedStream(target: Target, ca: string, kind: 'source' | 'sink', size: number): Promise<number> {
  const headers = await target.headers();
  const base = new URL(target.base);
  const socket = tls.connect({ host: base.hostname, port: Number(base.port), ca });
  await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  const headerLines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.write(
    `POST ${base.pathname.replace(/\/$/, '')}/api/v1/namespaces/bench/pods/${kind}/portforward?size=${size} HTTP/1.1\r\nHost: ${base.host}\r\n${headerLines}` +
      'Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n',
  );
  let startedAt = 0;
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let upgraded = false;
    let received = 0;
    let tail = '';
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      if (!upgraded) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        if (!head.subarray(0, 12).toString().startsWith('HTTP/1.1 101')) return reject(new Error(`no upgrade: ${head.toString().split('\r\n')[0]}`));
        upgraded = true;
        startedAt = performance.now();
        chunk = head.subarray(end + 4);
        if (kind === 'sink') writeBytes(socket, size, () => socket.end());
      }
      if (kind === 'source') received += chunk.length;
      else tail += chunk.toString();
    });
    socket.on('end', () => {
      socket.end();
      let got = received;
      if (kind === 'sink') {
        try {
          got = (JSON.parse(tail) as { received: number }).received;
        } catch {
          return reject(new Error(`${target.base}: the sink's answer never came back (${JSON.stringify(tail)})`));
        }
      }
      if (got === size) resolve(megabytesPerSecond(size, startedAt));
      else reject(new Error(`${target.base}: ${kind} moved ${got} of ${size} bytes`));
    });
  });
}

