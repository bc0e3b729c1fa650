import { readFileSync } from 'node:fs';
import { issueCertificate, loadOrCreateCa, servingNames } from './local-ca.js';

export interface ServingTlsOptions {
  dataDir: string;
  /** `--tls-cert` / `--tls-key`: both or neither. */
  certFile?: string | undefined;
  keyFile?: string | undefined;
  listenHost: string;
  /** `--tls-san`: extra names for the certificate issued by the local CA. */
  extraNames?: string[];
}

export interface ServingTls {
  cert: string;
  key: string;
  /** Where clients find the CA to trust, when the local CA issued the certificate. */
  caFile?: string;
}

/** The serving certificate of a listener: the operator's files, or one issued by the data directory's CA. */
export function servingTls(options: ServingTlsOptions): ServingTls {
  if (options.certFile || options.keyFile) {
    if (!options.certFile || !options.keyFile) throw new Error('--tls-cert and --tls-key go together: give both or neither');
    return { cert: readFileSync(options.certFile, 'utf8'), key: readFileSync(options.keyFile, 'utf8') };
  }
  const ca = loadOrCreateCa(options.dataDir);
  const issued = issueCertificate(ca, {
    commonName: 'kube-relay',
    sans: servingNames(options.listenHost, options.extraNames),
    usage: 'server',
  });
  return { cert: issued.certPem, key: issued.keyPem, caFile: ca.certPath };
}

/** The TLS settings every listener takes from its flags (`--tls-cert`, `--tls-key`, `--tls-san`). */
export interface ListenerTlsFlags {
  dataDir: string;
  listen: { host: string };
  tlsCertFile?: string | undefined;
  tlsKeyFile?: string | undefined;
  tlsSans?: string[];
}

export function listenerTls(flags: ListenerTlsFlags): ServingTls {
  return servingTls({
    dataDir: flags.dataDir,
    certFile: flags.tlsCertFile,
    keyFile: flags.tlsKeyFile,
    listenHost: flags.listen.host,
    extraNames: flags.tlsSans ?? [],
  });
}
