/**
 * An issuer in a process of its own, for tests that kill it with SIGKILL: a
 * hub replica that dies without closing anything or writing a last word to
 * the store. Run as `node --import tsx issuer-process.ts '<IssuerConfig as
 * JSON, without log>'`; prints `{"url", "port"}` on one line once it listens.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { IssuerConfig } from '../../src/issuer/server.js';

export type IssuerProcessConfig = Omit<IssuerConfig, 'log'>;

export interface IssuerProcess {
  url: string;
  port: number;
  /** SIGKILL, and resolves once the process is gone. */
  kill(): Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

export function startIssuerProcess(config: IssuerProcessConfig): Promise<IssuerProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', SELF, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let stdout = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const line = stdout.split('\n')[0];
      if (!stdout.includes('\n') || !line) return;
      const { url, port } = JSON.parse(line) as { url: string; port: number };
      resolve({
        url,
        port,
        async kill() {
          child.kill('SIGKILL');
          await exited;
        },
      });
    });
    void exited.then(() => reject(new Error(`the issuer process exited before it listened: ${stderr.slice(0, 2_000)}`)));
  });
}

if (process.argv[1] === SELF) {
  const { startIssuer } = await import('../../src/issuer/server.js');
  const { createLogger } = await import('../../src/log.js');
  const issuer = await startIssuer({ ...(JSON.parse(process.argv[2]!) as IssuerProcessConfig), log: createLogger('error') });
  process.stdout.write(`${JSON.stringify({ url: issuer.url, port: issuer.port })}\n`);
}
