/**
 * The relay's log of what it waits for (issue 13): the Kubernetes API
 * server, the issuer's JWKS, the impersonation self-check. Each is checked
 * again every readiness interval until it answers; the operator needs to
 * hear once, at warn, that it cannot be reached, why and what the relay
 * does meanwhile, and once that it is back, not a line per retry.
 */
import type { Logger } from '../log.js';

export interface DependencyMessages {
  /** Logged at warn when the dependency starts failing. */
  failing(cause: string): string;
  /** Logged at info when it answers after failing. */
  recovered(downForSeconds: number): string;
  /** Logged at info the first time it answers, if it never failed. */
  firstAnswer?: string;
  fields?: Record<string, unknown>;
}

/** Error messages come from peers and OpenSSL; a log line needs the start. */
const MAX_CAUSE_CHARS = 300;

export class DependencyLog {
  private failingSince: number | undefined;
  private answered = false;

  constructor(
    private readonly log: Logger,
    private readonly messages: DependencyMessages,
    private readonly now: () => number = Date.now,
  ) {}

  failed(cause: string): void {
    if (this.failingSince !== undefined) {
      this.log.debug(this.messages.failing(cause), this.messages.fields);
      return;
    }
    this.failingSince = this.now();
    this.log.warn(this.messages.failing(cause), this.messages.fields);
  }

  succeeded(): void {
    if (this.failingSince !== undefined) {
      this.log.info(this.messages.recovered(Math.round((this.now() - this.failingSince) / 1000)), this.messages.fields);
    } else if (!this.answered && this.messages.firstAnswer) {
      this.log.info(this.messages.firstAnswer, this.messages.fields);
    }
    this.failingSince = undefined;
    this.answered = true;
  }
}

/** "ECONNREFUSED"-style code and message of a failed call, bounded: "connect ECONNREFUSED 127.0.0.1:6443". */
export function causeOf(err: unknown): string {
  const { code, message } = err as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' && message !== '' ? message : String(err);
  const cause = typeof code === 'string' && !text.includes(code) ? `${code}: ${text}` : text;
  return cause.length > MAX_CAUSE_CHARS ? `${cause.slice(0, MAX_CAUSE_CHARS)}…` : cause;
}
