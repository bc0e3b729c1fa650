/**
 * Real kubectl binaries from the machine: `kubectl.<minor>` next to the
 * `kubectl` that PATH finds, or on PATH. A missing binary fails the test
 * loudly; it is never skipped.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';

export function kubectlBinary(version: string): string {
  const name = `kubectl.${version}`;
  const candidates: string[] = [];
  try {
    const onPath = execFileSync('sh', ['-c', 'command -v kubectl'], { encoding: 'utf8' }).trim();
    if (onPath) candidates.push(path.join(path.dirname(realpathSync(onPath)), name));
  } catch {
    // no kubectl on PATH; try kubectl.<version> itself below
  }
  try {
    const direct = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    if (direct) candidates.push(direct);
  } catch {
    // not on PATH either
  }
  const found = candidates.find((candidate) => existsSync(candidate));
  if (!found) {
    throw new Error(`${name} is required for this test and was not found next to kubectl or on PATH; install kubectl ${version} as ${name}`);
  }
  return found;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runKubectl(binary: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<KubectlResult> {
  return new Promise((resolve) => {
    execFile(binary, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
