/**
 * The load generators the benchmark runs: found on PATH, or installed from
 * Debian's packages when this is a Debian machine and we may (root), or a
 * sentence saying how to install them.
 */
import { execFileSync } from 'node:child_process';

function onPath(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function requireTool(command: string, packages: { debian: string; brew: string }, purpose: string): void {
  if (onPath(command)) return;
  const howTo = `install it (Debian/Ubuntu: apt-get install ${packages.debian}; macOS: brew install ${packages.brew})`;
  if (onPath('apt-get') && process.getuid?.() === 0) {
    console.log(`${command} is missing (${purpose}): installing Debian's ${packages.debian}`);
    try {
      execFileSync('apt-get', ['install', '-y', '--no-install-recommends', packages.debian], { stdio: ['ignore', 'ignore', 'inherit'] });
    } catch {
      throw new Error(`the benchmark needs ${command} (${purpose}) and apt-get could not install ${packages.debian}: ${howTo}`);
    }
    if (onPath(command)) return;
  }
  throw new Error(`the benchmark needs ${command} (${purpose}): ${howTo}`);
}
