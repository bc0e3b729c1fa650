/** The agent's side: `kube-relay token` (the exec credential plugin) and `kube-relay kubeconfig` (DESIGN §6). */
import { buildKubeconfig } from '../../client/kubeconfig.js';
import { execCredential, type IssuedToken, requestToken } from '../../client/token.js';
import { type CommandSpec, required, str, UsageError } from '../command.js';
import { adminKey, API_KEY_FILE, apiKey, httpsUrl, readFileFlag } from '../flag-values.js';


export const clientCommands: CommandSpec[] = [
  {
    words: ['token'],
    summary: 'Get a 60-second token for a cluster, as an ExecCredential for kubectl.',
    synopsis: '--issuer URL --cluster NAME [--ca-file F] [--api-key-file F | --agent NAME --admin-key-file F] [--raw]',
    description:
      'Prints a client.authentication.k8s.io/v1 ExecCredential with the token and its expirationTimestamp, so kubectl runs it as an exec credential plugin and again when the token expires; --raw prints the bare JWT. The API key comes from --api-key-file or the environment variable KUBE_RELAY_API_KEY. With --agent, a platform that runs agents mints the token of one of its org\'s agents with an admin key instead (POST /v1/agents/NAME/tokens), so the agent\'s sandbox holds only 60-second tokens and never a key.',
    flags: [
      { name: 'issuer', value: 'URL', description: 'The issuer URL (https).' },
      { name: 'cluster', value: 'NAME', description: 'The cluster the token is for (its audience).' },
      { name: 'ca-file', value: 'F', description: "Trust for the issuer's certificate (PEM).", default: 'system roots' },
      API_KEY_FILE,
      { name: 'agent', value: 'NAME', description: 'Mint the token of agent NAME with an admin key of its org, instead of with its API key.' },
      { name: 'admin-key-file', value: 'F', description: 'With --agent: the file holding an admin key (krl_admin_…).', default: 'env KUBE_RELAY_ADMIN_KEY' },
      { name: 'raw', description: 'Print the bare JWT instead of an ExecCredential.' },
    ],
    examples: [
      'KUBE_RELAY_API_KEY=$(cat deployer.api-key) kube-relay token --issuer https://127.0.0.1:8443 --cluster prod-eu --ca-file .kube-relay/tls/ca.crt --raw',
      'kube-relay token --agent task-4711 --admin-key-file acme-platform.admin-key --issuer https://127.0.0.1:8443 --cluster prod-eu --ca-file .kube-relay/tls/ca.crt --raw',
    ],
    async run({ values }, io) {
      const issuer = httpsUrl(values, 'issuer', 'the issuer URL');
      const cluster = required(values, 'cluster', 'the cluster to get a token for');
      const issuerCa = readFileFlag(values, 'ca-file');
      const agent = str(values, 'agent');
      let issued: IssuedToken;
      if (agent !== undefined) {
        if (str(values, 'api-key-file') !== undefined) throw new UsageError('--api-key-file and --agent exclude each other: an agent\'s own key, or an admin key minting for the agent');
        const key = adminKey(values, io.env);
        if (key === undefined) throw new UsageError('--agent needs an admin key: pass --admin-key-file F or set KUBE_RELAY_ADMIN_KEY');
        const { AdminApiClient } = await import('../../admin-api/client.js');
        const api = new AdminApiClient({ issuer, adminKey: key, ca: issuerCa, trustFlag: '--ca-file' });
        issued = await api.post<IssuedToken>(`/v1/agents/${encodeURIComponent(agent)}/tokens`, { cluster });
      } else {
        if (str(values, 'admin-key-file') !== undefined) throw new UsageError('--admin-key-file needs --agent NAME: the agent to mint a token for');
        const key = apiKey(values, io.env);
        if (key === undefined) throw new UsageError('no API key: set KUBE_RELAY_API_KEY or pass --api-key-file (or mint with --agent and an admin key)');
        issued = await requestToken({ issuer, cluster, apiKey: key, issuerCa, trustFlag: '--ca-file' });
      }
      io.stdout(values.raw ? `${issued.token}\n` : `${JSON.stringify(execCredential(issued))}\n`);
      return 0;
    },
  },
  {
    words: ['kubeconfig'],
    summary: 'Print a kubeconfig whose user runs `kube-relay token` as an exec plugin.',
    synopsis: '--issuer URL --cluster NAME --server URL [--ca-file F] [--issuer-ca-file F] [--api-key-file F] [--no-check]',
    description:
      'Before printing, it mints one token with the given issuer URL, trust, API key and cluster, so a mistake shows here (with the issuer\'s reason) rather than later inside kubectl; --no-check skips that, for a kubeconfig made offline. The plugin command is an absolute path, so the kubeconfig works from any directory. Without --api-key-file the plugin reads KUBE_RELAY_API_KEY from the environment kubectl runs in.',
    flags: [
      { name: 'issuer', value: 'URL', description: 'The issuer URL (https), as the issuer prints it.' },
      { name: 'cluster', value: 'NAME', description: 'The cluster name.' },
      { name: 'server', value: 'URL', description: 'The URL kubectl talks to (https): the relay, or https://HUB/clusters/NAME in tunnel mode.' },
      { name: 'ca-file', value: 'F', description: 'Trust for --server, written into the kubeconfig.', default: 'system roots' },
      { name: 'issuer-ca-file', value: 'F', description: 'Trust for the issuer, passed on to the plugin as its --ca-file.', default: 'system roots' },
      API_KEY_FILE,
      { name: 'no-check', description: 'Do not mint a token to check the settings first.' },
    ],
    examples: [
      'kube-relay kubeconfig --cluster prod-eu --server https://127.0.0.1:9443 --ca-file .kube-relay/tls/ca.crt --issuer https://127.0.0.1:8443 --issuer-ca-file .kube-relay/tls/ca.crt --api-key-file deployer.api-key > deployer.kubeconfig',
    ],
    async run({ values }, io) {
      const issuer = httpsUrl(values, 'issuer', 'the issuer URL');
      const cluster = required(values, 'cluster', 'the cluster name');
      const server = httpsUrl(values, 'server', 'the relay URL kubectl talks to');
      readFileFlag(values, 'ca-file');
      const issuerCa = readFileFlag(values, 'issuer-ca-file');
      const key = apiKey(values, io.env);
      if (!values['no-check']) {
        if (key === undefined) throw new UsageError('no API key to check the settings with: pass --api-key-file (or set KUBE_RELAY_API_KEY), or --no-check to skip the check');
        await requestToken({ issuer, cluster, apiKey: key, issuerCa, trustFlag: '--issuer-ca-file' });
      }
      io.stdout(
        buildKubeconfig({ issuer, cluster, server, caFile: str(values, 'ca-file'), issuerCaFile: str(values, 'issuer-ca-file'), apiKeyFile: str(values, 'api-key-file') }),
      );
      return 0;
    },
  },
];
