/** `kube-relay issuer` and `issuer rotate-keys` (DESIGN §2, §6, §9). */
import { hostname } from 'node:os';
import { createLogger } from '../../log.js';
import { DEFAULT_MAX_REQUESTS_PER_AGENT } from '../../request-stages/agent-quotas.js';
import { DEFAULT_AUDIT_RETENTION_MS } from '../../sessions/retention.js';
import { type CommandSpec, list, str, UsageError } from '../command.js';
import { AUDIT_FLAGS, auditConfig, CONNECTION_FLAGS, connectionLimits, duration, hostPort, logLevel, optionalHostPort, positiveInteger, untilSignal } from '../flag-values.js';
import { MAX_GRANT_DURATION_FLAG, maxGrantDuration } from './grants.js';
import { dataDir, STORE_FLAGS, storeLocation, withStore } from '../local-store.js';

/** Sent in a response header: a host name's characters (the default is the host name, a pod's name in Kubernetes). */
function replicaId(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(value)) throw new UsageError(`--hub-replica-id "${value}" must be letters, digits, ".", "_" or "-" (a pod name, say)`);
  return value;
}

/**
 * The JWKS keeps the current and the previous key, so a key must stay current for longer than a
 * token lives (60 s plus skew) or tokens it signed would be refused before they expire.
 */
const MIN_ROTATION_INTERVAL_MS = 5 * 60_000;

function rotationInterval(value: string): number {
  const ms = duration(value, '--key-rotation-interval');
  if (ms < MIN_ROTATION_INTERVAL_MS) {
    throw new UsageError(`--key-rotation-interval "${value}" is too short: give at least 5m (tokens signed with the previous key must stay verifiable for their 60 s)`);
  }
  return ms;
}

export const issuerCommands: CommandSpec[] = [
  {
    words: ['issuer'],
    summary: 'Serve the issuer and the tunnel hub over HTTPS.',
    synopsis: '[--listen HOST:PORT] [--public-url URL] [--tls-cert F --tls-key F] [--tls-san NAME]... [--admin-listen HOST:PORT] [AUDIT FLAGS]',
    description:
      'Mints 60-second tokens for agents (POST /v1/token), publishes its JWKS and revocations, and accepts relay tunnels (/v1/tunnel) and agent requests for tunnelled clusters (/clusters/NAME/…). Without --tls-cert it serves a certificate from the data directory\'s local CA, DATA/tls/ca.crt. Runs until SIGINT or SIGTERM, then drains its tunnels.',
    flags: [
      { name: 'listen', value: 'HOST:PORT', description: 'Address to serve on.', default: '127.0.0.1:8443' },
      { name: 'public-url', value: 'URL', description: "The URL agents and relays reach the issuer at; it is the tokens' iss.", default: 'https://LISTEN' },
      { name: 'tls-cert', value: 'F', description: 'Serving certificate (PEM), with --tls-key.', default: 'from the local CA' },
      { name: 'tls-key', value: 'F', description: 'Private key of --tls-cert (PEM).' },
      { name: 'tls-san', value: 'NAME', multiple: true, description: 'Extra DNS name or IP for the local-CA certificate.' },
      { name: 'admin-listen', value: 'HOST:PORT', description: 'Serve /healthz, /readyz and /metrics here.', default: 'none' },
      { name: 'key-rotation-interval', value: 'DURATION', description: 'Rotate the signing key this often (at least 5m); the previous key stays in the JWKS.', default: '24h' },
      { name: 'hub-replicas', value: 'N', description: 'Hub replicas behind the public URL; relays keep a tunnel to each.', default: '1' },
      { name: 'hub-replica-id', value: 'ID', description: "This replica's id, told to relays in the tunnel handshake.", default: 'the host name' },
      { name: 'max-requests-per-agent', value: 'N', description: 'Requests one agent may have in flight through the hub at once (tunnelled clusters, long-running ones included); more get 429.', default: String(DEFAULT_MAX_REQUESTS_PER_AGENT) },
      MAX_GRANT_DURATION_FLAG,
      { name: 'audit-retention', value: 'DURATION', description: 'How long the central audit (the relays\' records, sessions) is kept in the store; older records are pruned in the background (at least 1h).', default: '30d' },
      { name: 'console-idle-timeout', value: 'DURATION', description: 'A web console (/ui/) session ends after this long without a page view or form; the admin signs in again (1m to 12h).', default: '30m' },
      ...STORE_FLAGS,
      ...CONNECTION_FLAGS,
      ...AUDIT_FLAGS,
    ],
    examples: ['kube-relay issuer --listen 0.0.0.0:8443 --public-url https://issuer.example.com --admin-listen 127.0.0.1:9090'],
    async run({ values }, io) {
      const options = {
        ...storeLocation(values),
        pepperFile: str(values, 'pepper-file'),
        listen: hostPort(str(values, 'listen') ?? '127.0.0.1:8443', '--listen'),
        publicUrl: str(values, 'public-url'),
        tlsCertFile: str(values, 'tls-cert'),
        tlsKeyFile: str(values, 'tls-key'),
        tlsSans: list(values, 'tls-san'),
        adminListen: optionalHostPort(str(values, 'admin-listen'), '--admin-listen'),
        keyRotationIntervalMs: rotationInterval(str(values, 'key-rotation-interval') ?? '24h'),
        audit: auditConfig(values),
        limits: connectionLimits(values),
        maxGrantDurationMs: maxGrantDuration(values),
        auditRetentionMs: auditRetention(str(values, 'audit-retention')),
        consoleIdleTimeoutMs: consoleIdleTimeout(str(values, 'console-idle-timeout')),
        maxRequestsPerAgent: positiveInteger(str(values, 'max-requests-per-agent') ?? String(DEFAULT_MAX_REQUESTS_PER_AGENT), '--max-requests-per-agent'),
        hubReplica: {
          id: replicaId(str(values, 'hub-replica-id') ?? hostname()),
          count: positiveInteger(str(values, 'hub-replicas') ?? '1', '--hub-replicas'),
        },
        log: createLogger(logLevel(values), { component: 'issuer' }),
      };
      // Loaded here, not with the command list: other commands' processes never hold the issuer's modules.
      const { startIssuer } = await import('../../issuer/server.js');
      const issuer = await startIssuer(options);
      // Listening for signals before saying it is up: a script that stops it on that line must not kill it mid-start.
      const stopped = untilSignal();
      io.stderr(`kube-relay issuer serving at ${issuer.url}${issuer.caFile ? ` (trust ${issuer.caFile})` : ''}\nweb console at ${issuer.url}/ui/ (sign in with an admin key: kube-relay admin create NAME --org ORG --out FILE)\n`);
      await stopped;
      await issuer.close();
      return 0;
    },
  },
  {
    words: ['issuer', 'rotate-keys'],
    summary: 'Make a new signing key current now.',
    synopsis: '',
    description: "Rotates the key of the issuer whose data directory this is (each replica has its own). The previous key stays in the JWKS until the next rotation, so tokens it signed stay valid for their 60 seconds. A running issuer picks the new key up within seconds.",
    flags: [...STORE_FLAGS],
    examples: ['kube-relay issuer rotate-keys --data /var/lib/kube-relay'],
    run({ values }, io) {
      return withStore(values, async (store) => {
        const { PROPAGATION_MS, SigningKeys } = await import('../../issuer/signing-keys.js');
        const shared = storeLocation(values).storeUrl !== undefined;
        const kid = await new SigningKeys(store, dataDir(values), shared ? PROPAGATION_MS : 0).rotate();
        io.stderr(`new signing key ${kid} is current for this data directory's issuer${shared ? ' once every replica has seen it (about 10 s)' : ''}; the previous key stays in the JWKS until the next rotation.\n`);
        return 0;
      });
    },
  },
];

/** --console-idle-timeout in milliseconds (undefined: the console's default): under a minute nobody could fill a form; a session lasts 12 h however active. */
function consoleIdleTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = duration(value, '--console-idle-timeout');
  if (ms < 60_000 || ms > 12 * 3_600_000) throw new UsageError(`--console-idle-timeout ${value} is outside 1m to 12h: give a duration such as 30m`);
  return ms;
}

/** --audit-retention in milliseconds: a day's records must survive at least an hour. */
function auditRetention(value: string | undefined): number {
  if (value === undefined) return DEFAULT_AUDIT_RETENTION_MS;
  const ms = duration(value, '--audit-retention');
  if (ms < 3_600_000) throw new UsageError(`--audit-retention ${value} is shorter than 1h: the central audit would lose records before anyone could read them`);
  return ms;
}
