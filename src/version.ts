/** kube-relay's version, as package.json states it: printed by `--version`, sent by relays in the tunnel handshake. */
import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** Read once: from src/ and from dist/ alike, package.json is one directory up. */
export function version(): string {
  cached ??= (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cached;
}
