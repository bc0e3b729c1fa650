/** `HOST:PORT` as given to `--listen` and `--admin-listen`; IPv6 hosts in brackets. */
export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(value: string, flag: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new Error(`${flag} "${value}" is not HOST:PORT (for example 127.0.0.1:8443 or [::1]:8443)`);
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

/** The host part of a URL authority for `host`, bracketing IPv6 literals. */
export function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** The https URL of a listener on this machine: "localhost" for a wildcard host. */
export function listenerUrl(listenHost: string, port: number): string {
  const wildcard = listenHost === '' || listenHost === '0.0.0.0' || listenHost === '::';
  return `https://${wildcard ? 'localhost' : urlHost(listenHost)}:${port}`;
}
