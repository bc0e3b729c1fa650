/** kubectl's streaming commands against the e2e cluster's kwok pod `web` (namespace e2e), as the e2e tests drive them. */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { until } from '../helpers/http.js';

/**
 * `kubectl exec -i … -- head -c N` fed N bytes, its output hashed as it
 * arrives. `head -c`, not `cat`: kwok's local exec never passes the end of
 * stdin on to the process, so cat would never exit.
 *
 * kubectl's stdin stays open until kubectl has exited, on purpose. kwok, like
 * the kubelet (ServeExec in k8s.io/kubelet/pkg/cri/streaming/remotecommand),
 * closes the connection as soon as the command exits, and kube-apiserver's
 * proxy closes its client's connection as soon as kwok's ends. The end of
 * stdin, an empty SPDY DATA frame with FLAG_FIN that kubectl sends once its
 * own stdin reaches EOF, can arrive after `head -c` has exited and either of
 * them has closed; Linux answers bytes that reach a closed socket with a
 * reset (RFC 1122 §4.2.2.13) and drops what that socket still had queued,
 * the tail of the output, and kubectl exits 0 without it (an error stream
 * that ends empty counts as success). That happens straight to
 * kube-apiserver too, the more often the slower the reader
 * (kubernetes/kubernetes#124571): a test that sent the end of stdin would
 * fail on upstream's race. Without it, every byte of the session is the
 * relay's to lose.
 */
export async function execRoundTrip(kubectl: string, kubeconfig: string, payload: Buffer, env: Record<string, string>): Promise<{ exit: string; bytes: number; digest: string; stderr: string }> {
  const child = spawn(kubectl, ['--kubeconfig', kubeconfig, 'exec', '-i', 'web', '-n', 'e2e', '--', 'head', '-c', String(payload.length)], {
    env: { ...process.env, ...env },
  });
  const hash = createHash('sha256');
  let bytes = 0;
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.on('error', () => undefined); // a kubectl that fails early leaves our writes unread: EPIPE
  child.stdin.write(payload);
  const stdoutEnded = new Promise((resolve) => child.stdout.once('close', resolve));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const exit = await new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? String(code))));
  clearTimeout(timer);
  await stdoutEnded;
  child.stdin.destroy();
  return { exit, bytes, digest: hash.digest('hex'), stderr };
}

export async function streamUntil(kubectl: string, args: string[], env: Record<string, string>, marker: string): Promise<string> {
  const child = spawn(kubectl, args, { env: { ...process.env, ...env } });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    await until(() => output.includes(marker), 20_000, `"${marker}" from kubectl ${args.join(' ')}`);
    return output;
  } finally {
    child.kill();
  }
}

export async function portForwardRoundTrip(kubectl: string, kubeconfig: string, bytes: number, env: Record<string, string>): Promise<{ sent: string; received: string }> {
  const child: ChildProcess = spawn(kubectl, ['--kubeconfig', kubeconfig, 'port-forward', '-n', 'e2e', 'pod/web', ':8080', '--address', '127.0.0.1'], {
    env: { ...process.env, ...env },
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    await until(() => /Forwarding from 127\.0\.0\.1:(\d+)/.test(output), 20_000, `kubectl port-forward to start (${output})`);
    const port = Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(output)![1]);
    const payload = randomBytes(bytes);
    const sent = createHash('sha256').update(payload).digest('hex');
    const received = await new Promise<string>((resolve, reject) => {
      const hash = createHash('sha256');
      let count = 0;
      // No half-close: the echo must come back in full before we hang up.
      const socket = connect(port, '127.0.0.1', () => socket.write(payload));
      socket.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        count += chunk.length;
        if (count >= bytes) {
          socket.destroy();
          resolve(hash.digest('hex'));
        }
      });
      socket.on('error', reject);
      socket.on('close', () => count < bytes && reject(new Error(`port-forward closed after ${count} of ${bytes} bytes: ${output}`)));
    });
    return { sent, received };
  } finally {
    child.kill();
  }
}
