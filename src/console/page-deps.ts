/** What every page module of the console is given (src/console/console.ts composes them). */
import type { Request, Response } from 'express';
import type { Registry } from '../issuer/registry.js';
import { callerOf, type ConsoleAuthDeps, csrfToken } from './auth.js';
import type { RecordChange } from './forms.js';
import type { PageContext, Section } from './layout.js';

export interface ConsolePageDeps {
  registry: Registry;
  auth: ConsoleAuthDeps;
  record: RecordChange;
  now: () => Date;
  /** The issuer's URL, for the commands the console fills in (helm install, kubeconfig). */
  publicUrl: string;
  /** The PEM of the CA that issued the issuer's certificate, when it is the data directory's own (relays must be told to trust it). */
  issuerCaPem?: string | undefined;
  /** The longest expiry of a grant (undefined: no limit). */
  maxGrantDurationMs?: number | undefined;
  /** A grant of `cluster` was added or removed. */
  onGrantsChanged?: ((cluster: string) => void) | undefined;
}

export function pageContext(req: Request, res: Response, section?: Section): PageContext {
  return { caller: callerOf(res), csrf: csrfToken(req), section };
}
