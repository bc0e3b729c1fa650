/**
 * Sessions (DESIGN §12): one client's work on one cluster, built at the
 * issuer from the audit records its relays send. A session is one
 * `kube-relay proxy` run, or else an agent's requests to one cluster with no
 * gap over five minutes. kubectl's `Kubectl-Session` header ties together
 * the requests of one kubectl invocation (KEP-859: a fresh UUID per run of
 * kubectl): all of them land in one session, even a `logs -f` or a watch
 * that outlasts the gap, and each invocation is one entry of the session's
 * commands.
 */

/** The longest pause between two requests of one session. */
/** Items per page of sessions or audit records when the caller does not say. */
export const DEFAULT_AUDIT_PAGE_SIZE = 100;
/** The largest page of sessions or records; more is refused (422), not cut. */
export const MAX_AUDIT_PAGE_SIZE = 1000;

export const SESSION_GAP_MS = 5 * 60_000;
/** A proxy run that has not said it is alive for this long has ended (it renews its token every minute or so, and says so then). */
export const PROXY_SILENCE_MS = 3 * 60_000;
/** Commands kept per session, in time order; the rest are counted. */
export const MAX_SESSION_COMMANDS = 500;

export type SessionKind = 'activity' | 'proxy';

/** One entry of a session's commands: a kubectl invocation, or an exec or attach into a pod. */
export interface SessionCommand {
  /** When it began (RFC 3339). */
  time: string;
  kind: 'kubectl' | 'exec' | 'attach';
  /** kubectl's Kubectl-Command (`kubectl get`), or the exec's command line ('' for attach or a command not given). */
  command: string;
  kubectlSession?: string;
  namespace?: string;
  pod?: string;
  container?: string;
  /** exec and attach: the HTTP status the client got. */
  status?: number;
}

export interface Session {
  id: string;
  org: string;
  cluster: string;
  agent: string;
  kind: SessionKind;
  startedAt: Date;
  /** When its last request ended. */
  lastActivityAt: Date;
  /** A proxy run that ended cleanly, or any session of an agent revoked while it was open. */
  endedAt?: Date | undefined;
  /** A proxy run's last sign of life. */
  proxySeenAt?: Date | undefined;
  requests: number;
  refusals: number;
  commands: SessionCommand[];
  commandsOmitted: number;
}

/** A session as the API and CLI show it. `endedAt` is null while it is open. */
export interface SessionView {
  id: string;
  agent: string;
  org: string;
  cluster: string;
  kind: SessionKind;
  startedAt: string;
  endedAt: string | null;
  open: boolean;
  durationMs: number;
  requests: number;
  refusals: number;
  commands: SessionCommand[];
  commandsOmitted: number;
}

/** When the session ended, or undefined while it is open at `now`. */
export function sessionEnd(session: Session, now: Date): Date | undefined {
  if (session.endedAt) return session.endedAt;
  if (session.kind === 'proxy') {
    const seen = Math.max(session.proxySeenAt?.getTime() ?? 0, session.lastActivityAt.getTime());
    return now.getTime() - seen > PROXY_SILENCE_MS ? new Date(seen) : undefined;
  }
  return now.getTime() - session.lastActivityAt.getTime() > SESSION_GAP_MS ? session.lastActivityAt : undefined;
}

export function sessionView(session: Session, now: Date): SessionView {
  const ended = sessionEnd(session, now);
  return {
    id: session.id,
    agent: session.agent,
    org: session.org,
    cluster: session.cluster,
    kind: session.kind,
    startedAt: session.startedAt.toISOString(),
    endedAt: ended?.toISOString() ?? null,
    open: ended === undefined,
    durationMs: Math.max(0, (ended ?? now).getTime() - session.startedAt.getTime()),
    requests: session.requests,
    refusals: session.refusals,
    commands: session.commands,
    commandsOmitted: session.commandsOmitted,
  };
}

/** `agent:<name>` to the agent's name; other users (none, or not an agent) have no sessions. */
export function agentOfUser(user: unknown): string | undefined {
  return typeof user === 'string' && user.startsWith('agent:') && user.length > 'agent:'.length ? user.slice('agent:'.length) : undefined;
}
