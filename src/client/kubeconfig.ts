/**
 * `kube-relay kubeconfig`: a kubeconfig whose user runs `kube-relay token`
 * as an exec credential plugin. The plugin command is absolute (this Node
 * binary and this package's bin script), so the kubeconfig works from any
 * directory and without kube-relay on PATH.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export interface KubeconfigRequest {
  issuer: string;
  cluster: string;
  server: string;
  /** Trust for `server`, written into the kubeconfig. */
  caFile?: string | undefined;
  /** Trust for the issuer, passed to the plugin as its `--ca-file`. */
  issuerCaFile?: string | undefined;
  apiKeyFile?: string | undefined;
}

const BIN_SCRIPT = fileURLToPath(new URL('../../bin/kube-relay.js', import.meta.url));

export function buildKubeconfig(request: KubeconfigRequest): string {
  const name = request.cluster;
  const args = ['token', '--issuer', request.issuer, '--cluster', request.cluster];
  if (request.issuerCaFile) args.push('--ca-file', path.resolve(request.issuerCaFile));
  if (request.apiKeyFile) args.push('--api-key-file', path.resolve(request.apiKeyFile));
  const cluster: Record<string, string> = { server: request.server };
  if (request.caFile) cluster['certificate-authority-data'] = readFileSync(request.caFile).toString('base64');
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster }],
    users: [
      {
        name: `kube-relay-${name}`,
        user: {
          exec: {
            apiVersion: 'client.authentication.k8s.io/v1',
            command: process.execPath,
            args: [BIN_SCRIPT, ...args],
            interactiveMode: 'Never',
            provideClusterInfo: false,
            installHint: 'kube-relay token needs an agent API key: set KUBE_RELAY_API_KEY or pass --api-key-file to kube-relay kubeconfig',
          },
        },
      },
    ],
    contexts: [{ name, context: { cluster: name, user: `kube-relay-${name}` } }],
    'current-context': name,
  });
}

/** A kubeconfig for `kube-relay proxy`: its plain-HTTP loopback URL and no credential at all (the proxy holds it). */
export function proxyKubeconfig(cluster: string, proxyUrl: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: `${cluster}-via-kube-relay-proxy`, cluster: { server: proxyUrl } }],
    users: [{ name: 'kube-relay-proxy', user: {} }],
    contexts: [{ name: cluster, context: { cluster: `${cluster}-via-kube-relay-proxy`, user: 'kube-relay-proxy' } }],
    'current-context': cluster,
  });
}
