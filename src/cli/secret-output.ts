/**
 * Where a new key goes: stdout alone on its line, or with `--out FILE` a
 * file created with mode 0600 that must not exist yet. The file is created
 * before the key is made, so a path that cannot be written fails before
 * anything changes, and a key is never made only to be lost.
 */
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { type Io, UsageError } from './command.js';

export const OUT_FLAG = {
  name: 'out',
  value: 'FILE',
  description: 'Write the key to FILE (created with mode 0600; an existing file is never overwritten) instead of stdout.',
};

export interface SecretOutput {
  /** Writes the key; returns where it went, for the confirmation on stderr. */
  write(key: string): string;
  /** The key was not made: removes the empty file. */
  abandon(): void;
}

export function openSecretOutput(file: string | undefined, io: Io): SecretOutput {
  if (file === undefined) {
    return {
      write(key) {
        io.stdout(`${key}\n`);
        return 'above';
      },
      abandon() {},
    };
  }
  const target = path.resolve(io.cwd ?? process.cwd(), file);
  let fd: number;
  try {
    fd = openSync(target, 'wx', 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new UsageError(`--out ${file} exists; kube-relay never overwrites a key file: remove it or choose another path`);
    throw new UsageError(`--out ${file} cannot be created: ${code ?? (err as Error).message}`);
  }
  return {
    write(key) {
      try {
        writeSync(fd, `${key}\n`);
      } finally {
        closeSync(fd);
      }
      return `in ${file} (mode 0600)`;
    },
    abandon() {
      closeSync(fd);
      unlinkSync(target);
    },
  };
}
