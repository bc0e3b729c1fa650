/** `kube-relay proxy` (DESIGN §12): a local proxy that holds the agent's credential for clients that cannot run an exec plugin. */
import { writeFileSync } from 'node:fs';
import { proxyKubeconfig } from '../../client/kubeconfig.js';
import { createLogger } from '../../log.js';
import { type CommandSpec, required, str, UsageError } from '../command.js';
import { API_KEY_FILE, apiKey, hostPort, httpsUrl, logLevel, readFileFlag, untilSignal } from '../flag-values.js';

export const proxyCommands: CommandSpec[] = [
  {
    words: ['proxy'],
    summary: 'Serve the cluster on a loopback address with no credential needed: the proxy holds the API key and adds fresh tokens.',
    synopsis: '--issuer URL --cluster NAME --server URL [--ca-file F] [--issuer-ca-file F] [--api-key-file F] [--listen 127.0.0.1:8001] [--kubeconfig-out F]',
    description:
      'For clients that cannot run an exec credential plugin (curl, scripts, some agent sandboxes): plain HTTP in, on a loopback address only; HTTPS out to the relay or hub, every request and upgrade (watch, logs -f, exec, attach, port-forward, cp) carrying a 60-second token the proxy mints and renews itself. A credential a client sends is dropped. When the issuer refuses the key (the agent revoked, the key rotated) requests are refused with its reason, said once on stderr. --kubeconfig-out writes a kubeconfig for the proxy, with no credential in it. One run is one session in the central audit (kube-relay sessions), from start to Ctrl-C. Runs until SIGINT or SIGTERM.',
    flags: [
      { name: 'issuer', value: 'URL', description: 'The issuer URL (https).' },
      { name: 'cluster', value: 'NAME', description: 'The cluster (the tokens\' audience).' },
      { name: 'server', value: 'URL', description: 'Where requests go (https): the relay, or https://HUB/clusters/NAME in tunnel mode.' },
      { name: 'ca-file', value: 'F', description: 'Trust for --server (PEM).', default: 'system roots' },
      { name: 'issuer-ca-file', value: 'F', description: 'Trust for the issuer (PEM).', default: 'system roots' },
      API_KEY_FILE,
      { name: 'listen', value: 'HOST:PORT', description: 'Where clients connect: a loopback address (127.0.0.0/8, ::1, localhost).', default: '127.0.0.1:8001' },
      { name: 'kubeconfig-out', value: 'F', description: 'Write a kubeconfig for the proxy (no credential) to F.' },
    ],
    examples: [
      'kube-relay proxy --issuer https://127.0.0.1:8443 --issuer-ca-file .kube-relay/tls/ca.crt --cluster prod-eu --server https://127.0.0.1:9443 --ca-file .kube-relay/tls/ca.crt --api-key-file deployer.api-key --kubeconfig-out proxy.kubeconfig',
    ],
    async run({ values }, io) {
      const [{ isLoopbackHost, startLocalProxy }, { ProxyRun }, { TokenSource }] = await Promise.all([import('../../proxy/local-proxy.js'), import('../../proxy/proxy-run.js'), import('../../proxy/token-source.js')]);
      const issuer = httpsUrl(values, 'issuer', 'the issuer URL');
      const cluster = required(values, 'cluster', 'the cluster to proxy to');
      const server = httpsUrl(values, 'server', 'the relay URL (or https://HUB/clusters/NAME)');
      const listen = hostPort(str(values, 'listen') ?? '127.0.0.1:8001', '--listen');
      if (!isLoopbackHost(listen.host)) {
        throw new UsageError(`--listen ${listen.host} is not a loopback address: the proxy adds the agent's credential to whatever reaches it, so it serves 127.0.0.1, ::1 or localhost only`);
      }
      const serverCa = readFileFlag(values, 'ca-file');
      const issuerCa = readFileFlag(values, 'issuer-ca-file');
      const key = apiKey(values, io.env);
      if (key === undefined) throw new UsageError('no API key: pass --api-key-file or set KUBE_RELAY_API_KEY');
      const log = createLogger(logLevel(values), { component: 'proxy', cluster });
      const tokens = new TokenSource({ issuer, cluster, apiKey: key, issuerCa, trustFlag: '--issuer-ca-file' });
      // A first token now, so a wrong issuer, key or cluster is said here rather than at the first request.
      await tokens.token();
      const run = await ProxyRun.open({ issuer, cluster, apiKey: key, issuerCa }, log, (reason) => {
        log.error(`the issuer refuses this proxy's API key: requests are refused until it is fixed (${reason})`);
        tokens.refuse(reason);
      });
      const proxy = await startLocalProxy({ host: listen.host, port: listen.port, server, serverCa, tokens, session: run?.id, log });
      const kubeconfigOut = str(values, 'kubeconfig-out');
      if (kubeconfigOut !== undefined) writeFileSync(kubeconfigOut, proxyKubeconfig(cluster, proxy.url));
      // Listening for signals before saying it is up: a script that stops it on that line must not kill it mid-start.
      const stopped = untilSignal();
      io.stderr(`kube-relay proxy for cluster "${cluster}" at ${proxy.url} (to ${server})${kubeconfigOut ? `; kubeconfig in ${kubeconfigOut}` : ''}. Clients need no credential. Ctrl-C ends it.\n`);
      await stopped;
      await Promise.all([proxy.close(), run?.end()]);
      return 0;
    },
  },
];
